/*
 * decode.c — `parallel-ctl decode`: a topic's messages as JSON lines.
 *
 * Reads with a plain assign()ed consumer (no group, nothing committed, so it
 * never disturbs the consumers' offsets) from every partition of one topic,
 * at the end or at the beginning, and prints one JSON object per message:
 *
 *   {"topic":…,"partition":0,"offset":12,"timestamp":1795741200123,
 *    "key":"shop:42","headers":{"traceparent":"00-…"},
 *    "schema":"Signal","value":{…}}
 *
 * A value that does not decode is printed with "error" (the codec's reason)
 * and "value_base64" instead of "value", so one bad message never stops a
 * dump. A null value (a compaction tombstone) prints "value":null. Keys and
 * header values that are not UTF-8 print as {"base64":"…"}; a repeated
 * header keeps its last value.
 *
 * No signal handler: nothing is committed, so SIGINT's default (exit at
 * once) loses nothing; every line is flushed as it is printed.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libwebsockets.h>
#include <librdkafka/rdkafka.h>

#include "base/clock.h"
#include "msg/codec.h"
#include "ctl.h"
#include "msg/kafka.h"

#define METADATA_TIMEOUT_MS 10000

static void usage(FILE *out)
{
        fputs("usage: parallel-ctl decode --topic T [--from-beginning] "
              "[--count N] [--timeout-ms MS]\n"
              "                           [--to-end] [--follow] [--status S] "
              "[--priority N] [--recipe R]\n"
              "                           [--resource K]\n"
              "\n"
              "Prints the messages of topic T as JSON lines (key, headers, "
              "partition,\noffset, timestamp, decoded Avro value).\n"
              "\n"
              "  --topic T          a full topic name, or a short one "
              "(signals.p4, results,\n"
              "                     metrics, workers, dlq) that gets "
              "topic.prefix prepended\n"
              "  --from-beginning   start at the oldest message (default: "
              "only new ones)\n"
              "  --count N          stop after N messages (default: no "
              "limit)\n"
              "  --timeout-ms MS    stop after MS without a message "
              "(default 5000; 0 = never)\n"
              "  --to-end           stop once every partition is read up to "
              "where it ended\n"
              "                     when reading began (--timeout-ms still "
              "bounds a wait)\n"
              "  --follow           keep reading new messages until "
              "interrupted (--timeout-ms 0)\n"
              "  --status S         only values whose status (or, for "
              "workers, state) is S\n"
              "  --priority N       only values with priority N\n"
              "  --recipe R         only values with recipe R\n"
              "  --resource K       only values with resource K\n"
              "Filters apply to the decoded value; a message without the "
              "field never\nmatches. --count counts printed messages.\n",
              out);
}

typedef struct filter {
        const char *field, *alt, *want;
} filter_t;

/* A field of a decoded value as text ("" when absent); Avro unions may
 * decode as {"type": value}. */
static bool field_is(json_t *value, const char *field, const char *want)
{
        json_t *v = json_object_get(value, field);
        char buf[32];

        if (json_is_object(v) && json_object_size(v) == 1) {
                void *it = json_object_iter(v);
                v = json_object_iter_value(it);
        }
        if (json_is_string(v))
                return !strcmp(json_string_value(v), want);
        if (json_is_integer(v)) {
                snprintf(buf, sizeof(buf), "%lld",
                         (long long)json_integer_value(v));
                return !strcmp(buf, want);
        }
        return false;
}

static bool matches(json_t *line, const filter_t *f, int nf)
{
        json_t *value = json_object_get(line, "value");
        for (int i = 0; i < nf; i++)
                if (!field_is(value, f[i].field, f[i].want) &&
                    !(f[i].alt && field_is(value, f[i].alt, f[i].want)))
                        return false;
        return true;
}

/* A short name (signals.pN, results, …) gets the configured prefix. */
static const char *resolve_topic(const par_config_t *cfg, const char *t,
                                 char *buf, size_t n)
{
        static const char *const shorts[] = {"results", "metrics", "workers",
                                             "dlq", NULL};
        bool is_short = !strncmp(t, "signals.p", 9) && t[9];

        for (int i = 0; !is_short && shorts[i]; i++)
                is_short = !strcmp(t, shorts[i]);
        if (!is_short)
                return t;
        return par_kafka_topic_name(cfg, t, buf, n);
}

static json_t *base64_obj(const void *data, size_t len)
{
        size_t cap = 4 * ((len + 2) / 3) + 4;
        char *b = malloc(cap);
        json_t *j = NULL;

        if (b && lws_b64_encode_string(data, (int)len, b, (int)cap) >= 0)
                j = json_string(b);
        free(b);
        return j;
}

/* A UTF-8 string as itself, anything else as {"base64": …}. */
static json_t *text_or_base64(const void *data, size_t len)
{
        json_t *s = json_stringn(data, len);

        return s ? s : json_pack("{s:o*}", "base64", base64_obj(data, len));
}

static json_t *message_json(const par_codec_t *codec,
                            const rd_kafka_message_t *m)
{
        json_t *o = json_object(), *hdrs = json_object();
        rd_kafka_headers_t *h = NULL;
        rd_kafka_timestamp_type_t tstype;
        int64_t ts = rd_kafka_message_timestamp(m, &tstype);
        par_error_t err = {0};
        json_t *value = NULL;
        const char *schema = NULL;

        json_object_set_new(o, "topic",
                            json_string(rd_kafka_topic_name(m->rkt)));
        json_object_set_new(o, "partition", json_integer(m->partition));
        json_object_set_new(o, "offset", json_integer(m->offset));
        json_object_set_new(o, "timestamp",
                            tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
                                ? json_null()
                                : json_integer(ts));
        json_object_set_new(o, "key",
                            m->key ? text_or_base64(m->key, m->key_len)
                                   : json_null());
        if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                const char *name;
                const void *val;
                size_t size;

                for (size_t i = 0;
                     !rd_kafka_header_get_all(h, i, &name, &val, &size); i++)
                        json_object_set_new(hdrs, name,
                                            val ? text_or_base64(val, size)
                                                : json_null());
        }
        json_object_set_new(o, "headers", hdrs);
        if (!m->payload) {
                json_object_set_new(o, "value", json_null());
        } else if (par_codec_decode(codec, m->payload, m->len, NULL, &value,
                                    &schema, &err) == PAR_OK) {
                json_object_set_new(o, "schema", json_string(schema));
                json_object_set_new(o, "value", value);
        } else {
                json_object_set_new(o, "error", json_string(err.msg));
                json_object_set_new(o, "value_base64",
                                    base64_obj(m->payload, m->len));
        }
        return o;
}

/* Assigns every partition of topic at the beginning or the end; *nparts
 * gets their number. */
static int assign_all(rd_kafka_t *rk, const char *topic, bool beginning,
                      int timeout_ms, int *nparts)
{
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_partition_list_t *parts = NULL;
        rd_kafka_resp_err_t e;
        int rc = 1;

        if (!rkt) {
                fprintf(stderr, "parallel-ctl decode: topic %s: %s\n", topic,
                        rd_kafka_err2str(rd_kafka_last_error()));
                return 1;
        }
        e = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
        if (e) {
                fprintf(stderr, "parallel-ctl decode: metadata for %s: %s\n",
                        topic, rd_kafka_err2str(e));
                goto out;
        }
        if (md->topic_cnt != 1 || md->topics[0].err ||
            md->topics[0].partition_cnt == 0) {
                fprintf(stderr, "parallel-ctl decode: topic %s: %s\n", topic,
                        md->topic_cnt == 1 && md->topics[0].err
                            ? rd_kafka_err2str(md->topics[0].err)
                            : "no partitions");
                goto out;
        }
        *nparts = md->topics[0].partition_cnt;
        parts = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
        for (int i = 0; i < md->topics[0].partition_cnt; i++)
                rd_kafka_topic_partition_list_add(
                    parts, topic, md->topics[0].partitions[i].id)
                    ->offset =
                    beginning ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
        if ((e = rd_kafka_assign(rk, parts))) {
                fprintf(stderr, "parallel-ctl decode: assign %s: %s\n", topic,
                        rd_kafka_err2str(e));
                goto out;
        }
        rc = 0;
out:
        if (parts)
                rd_kafka_topic_partition_list_destroy(parts);
        if (md)
                rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        return rc;
}

int par_ctl_decode(par_config_t *cfg, int argc, char **argv)
{
        static const struct option opts[] = {
            {"topic", required_argument, NULL, 't'},
            {"from-beginning", no_argument, NULL, 'b'},
            {"count", required_argument, NULL, 'n'},
            {"timeout-ms", required_argument, NULL, 'w'},
            {"follow", no_argument, NULL, 'f'},
            {"to-end", no_argument, NULL, 'e'},
            {"status", required_argument, NULL, 'S'},
            {"priority", required_argument, NULL, 'P'},
            {"recipe", required_argument, NULL, 'R'},
            {"resource", required_argument, NULL, 'K'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        const char *topic_arg = NULL, *topic;
        char topic_buf[PAR_KAFKA_TOPIC_MAX], errstr[256], group[128];
        size_t gsize;
        bool beginning = false, follow = false, to_end = false;
        bool *at_end = NULL;
        int nparts = 0, ended = 0;
        filter_t filters[8];
        int nf = 0;
        long count = 0, timeout_ms = 5000, seen = 0;
        par_codec_t *codec = NULL;
        rd_kafka_conf_t *conf = NULL;
        rd_kafka_t *rk = NULL;
        par_error_t err = {0};
        double idle_since;
        double now;
        int c, rc = 1;
        char *end;

        optind = 1;
        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                if (nf == (int)(sizeof(filters) / sizeof(filters[0]))) {
                        fprintf(stderr, "parallel-ctl decode: too many "
                                        "filters\n");
                        return 2;
                }
                switch (c) {
                case 't':
                        topic_arg = optarg;
                        break;
                case 'b':
                        beginning = true;
                        break;
                case 'f':
                        follow = true;
                        break;
                case 'e':
                        to_end = true;
                        break;
                case 'S':
                        filters[nf++] = (filter_t){"status", "state", optarg};
                        break;
                case 'P':
                        filters[nf++] = (filter_t){"priority", NULL, optarg};
                        break;
                case 'R':
                        filters[nf++] = (filter_t){"recipe", NULL, optarg};
                        break;
                case 'K':
                        filters[nf++] = (filter_t){"resource", NULL, optarg};
                        break;
                case 'n':
                case 'w': {
                        long *dst = c == 'n' ? &count : &timeout_ms;

                        errno = 0;
                        *dst = strtol(optarg, &end, 10);
                        if (!*optarg || *end || errno || *dst < 0) {
                                fprintf(stderr,
                                        "parallel-ctl decode: --%s: '%s' is "
                                        "not a number >= 0\n",
                                        c == 'n' ? "count" : "timeout-ms",
                                        optarg);
                                return 2;
                        }
                        break;
                }
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        /* getopt has printed the one-line reason. */
                        return 2;
                }
        }
        if (!topic_arg || optind < argc) {
                fprintf(stderr, "parallel-ctl decode: %s%s (try --help)\n",
                        topic_arg ? "unexpected argument " : "--topic missing",
                        topic_arg ? argv[optind] : "");
                return 2;
        }
        if (follow)
                timeout_ms = 0;
        if (!(topic = resolve_topic(cfg, topic_arg, topic_buf,
                                    sizeof(topic_buf)))) {
                fprintf(stderr, "parallel-ctl decode: topic name too long\n");
                return 2;
        }
        if (par_codec_new(&codec, &err) ||
            par_kafka_conf_new(&conf, cfg, "parallel-ctl-decode", &err)) {
                fprintf(stderr, "parallel-ctl decode: %s\n", err.msg);
                goto out;
        }
        /* Only assign(): no group membership, nothing committed.
         * librdkafka still wants a group.id for assign(); a private one
         * never joins or commits, so it leaves no trace on the broker. */
        gsize = sizeof(group);
        if (rd_kafka_conf_get(conf, "group.id", group, &gsize) || !group[0]) {
                snprintf(group, sizeof(group), "parallel-ctl-decode-%ld",
                         (long)getpid());
                if (rd_kafka_conf_set(conf, "group.id", group, errstr,
                                      sizeof(errstr))) {
                        fprintf(stderr, "parallel-ctl decode: %s\n", errstr);
                        goto out;
                }
        }
        if (rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr,
                              sizeof(errstr)) ||
            rd_kafka_conf_set(conf, "enable.partition.eof",
                              to_end ? "true" : "false", errstr,
                              sizeof(errstr)) ||
            rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", errstr,
                              sizeof(errstr))) {
                fprintf(stderr, "parallel-ctl decode: %s\n", errstr);
                goto out;
        }
        if (!(rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr,
                                sizeof(errstr)))) {
                fprintf(stderr, "parallel-ctl decode: %s\n", errstr);
                goto out;
        }
        conf = NULL; /* rd_kafka_new took it */
        rd_kafka_poll_set_consumer(rk);
        if (assign_all(rk, topic, beginning, METADATA_TIMEOUT_MS, &nparts))
                goto out;
        if (!(at_end = calloc((size_t)nparts, sizeof(*at_end)))) {
                fprintf(stderr, "parallel-ctl decode: out of memory\n");
                goto out;
        }

        idle_since = par_clock_mono_s();
        while (!count || seen < count) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);

                now = par_clock_mono_s();
                if (!m) {
                        if (timeout_ms &&
                            (now - idle_since) * 1000 >= (double)timeout_ms)
                                break;
                        continue;
                }
                idle_since = now;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        if (m->partition >= 0 && m->partition < nparts &&
                            !at_end[m->partition]) {
                                at_end[m->partition] = true;
                                ended++;
                        }
                        rd_kafka_message_destroy(m);
                        if (ended == nparts)
                                break;
                        continue;
                }
                if (m->err) {
                        fprintf(stderr, "parallel-ctl decode: %s\n",
                                rd_kafka_message_errstr(m));
                        rd_kafka_message_destroy(m);
                        continue;
                }
                {
                        json_t *line = message_json(codec, m);
                        if (line && nf && !matches(line, filters, nf)) {
                                json_decref(line);
                                rd_kafka_message_destroy(m);
                                continue;
                        }
                        char *s =
                            line ? json_dumps(line, JSON_COMPACT |
                                                        JSON_PRESERVE_ORDER)
                                 : NULL;
                        if (s) {
                                fputs(s, stdout);
                                fputc('\n', stdout);
                                fflush(stdout);
                        }
                        free(s);
                        json_decref(line);
                }
                rd_kafka_message_destroy(m);
                seen++;
        }
        rc = 0;
out:
        if (rk) {
                rd_kafka_consumer_close(rk);
                rd_kafka_destroy(rk);
        }
        if (conf)
                rd_kafka_conf_destroy(conf);
        free(at_end);
        par_codec_destroy(codec);
        return rc;
}
