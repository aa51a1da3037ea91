/*
 * report.c — `parallel-ctl report`: a summary of outcomes read from
 * <prefix>.results, per priority: count, done, failed (failed + dead),
 * expired, p50/p99 wait (created → started) and end to end (created →
 * finished), and spins/s.
 *
 * It reads every partition from the beginning up to the high watermark seen
 * at start (no consumer group, nothing committed), so it is repeatable and
 * never waits for traffic. Results are deduplicated per signal, keeping the
 * last final outcome: "retrying" and "skipped" results are not outcomes.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "msg/codec.h"
#include "ctl.h"
#include "msg/kafka.h"

#define MAXP 16

typedef struct outcome {
        char id[25];
        int priority;
        int status; /* 0 done, 1 failed, 2 expired */
        int64_t created, started, finished;
} outcome_t;

typedef struct table {
        outcome_t *v;
        size_t n, cap;
} table_t;

static int cmp_id(const void *a, const void *b)
{
        const outcome_t *x = a, *y = b;
        int c = strcmp(x->id, y->id);
        if (c)
                return c;
        return x->finished < y->finished ? -1 : x->finished > y->finished;
}

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return x < y ? -1 : x > y;
}

static double pct(int64_t *v, size_t n, double q)
{
        size_t i;

        if (!n)
                return 0;
        qsort(v, n, sizeof(*v), cmp_i64);
        i = (size_t)(q * (double)(n - 1) + 0.5);
        return (double)v[i];
}

static int add(table_t *t, json_t *r, int64_t since)
{
        const char *st = json_string_value(json_object_get(r, "status"));
        const char *id = json_string_value(json_object_get(r, "signal_id"));
        outcome_t o = {0};

        if (!st || !id)
                return 0;
        if (!strcmp(st, "done"))
                o.status = 0;
        else if (!strcmp(st, "failed") || !strcmp(st, "dead"))
                o.status = 1;
        else if (!strcmp(st, "expired"))
                o.status = 2;
        else
                return 0;
        o.finished = json_integer_value(json_object_get(r, "finished_at"));
        if (o.finished < since)
                return 0;
        snprintf(o.id, sizeof(o.id), "%s", id);
        o.priority = (int)json_integer_value(json_object_get(r, "priority"));
        o.created = json_integer_value(json_object_get(r, "created_at"));
        o.started = json_integer_value(json_object_get(r, "started_at"));
        if (!o.started)
                o.started = o.finished;
        if (t->n == t->cap) {
                size_t cap = t->cap ? t->cap * 2 : 1024;
                outcome_t *v = realloc(t->v, cap * sizeof(*v));
                if (!v)
                        return -1;
                t->v = v;
                t->cap = cap;
        }
        t->v[t->n++] = o;
        return 0;
}

/* Reads every message below the start-time high watermarks. */
static int read_results(par_config_t *cfg, int64_t since, table_t *t,
                        int timeout_ms)
{
        par_error_t err = {0};
        rd_kafka_conf_t *conf = NULL;
        rd_kafka_t *rk = NULL;
        rd_kafka_topic_partition_list_t *parts = NULL;
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt = NULL;
        par_codec_t *codec = NULL;
        char topic[PAR_KAFKA_TOPIC_MAX], errstr[256];
        int64_t *end = NULL;
        int nparts = 0, remaining = 0, rc = 1, bad = 0;

        par_kafka_topic_name(cfg, "results", topic, sizeof(topic));
        if (par_codec_new(&codec, &err) ||
            par_kafka_conf_new(&conf, cfg, "parallel-ctl-report", &err)) {
                fprintf(stderr, "parallel-ctl report: %s\n", err.msg);
                goto out;
        }
        rd_kafka_conf_set(conf, "group.id", "parallel-ctl-report", NULL, 0);
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
        if (!rk) {
                rd_kafka_conf_destroy(conf);
                fprintf(stderr, "parallel-ctl report: %s\n", errstr);
                goto out;
        }
        rkt = rd_kafka_topic_new(rk, topic, NULL);
        if (rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms) ||
            md->topic_cnt != 1 || md->topics[0].err) {
                fprintf(stderr,
                        "parallel-ctl report: topic %s not found (run "
                        "`parallel-ctl topics create`)\n",
                        topic);
                goto out;
        }
        nparts = md->topics[0].partition_cnt;
        end = calloc((size_t)nparts + 1, sizeof(*end));
        parts = rd_kafka_topic_partition_list_new(nparts);
        for (int p = 0; p < nparts; p++) {
                int64_t lo, hi;
                if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi,
                                                     timeout_ms)) {
                        fprintf(stderr,
                                "parallel-ctl report: watermarks of %s[%d] "
                                "unavailable\n",
                                topic, p);
                        goto out;
                }
                end[p] = hi;
                if (hi > lo) {
                        rd_kafka_topic_partition_list_add(parts, topic, p)
                            ->offset = RD_KAFKA_OFFSET_BEGINNING;
                        remaining++;
                }
        }
        if (remaining && rd_kafka_assign(rk, parts)) {
                fprintf(stderr, "parallel-ctl report: assign failed\n");
                goto out;
        }
        while (remaining > 0) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, timeout_ms);
                json_t *v = NULL;
                if (!m) {
                        fprintf(stderr,
                                "parallel-ctl report: no message for %d ms "
                                "before the end of %s\n",
                                timeout_ms, topic);
                        goto out;
                }
                if (m->err) {
                        rd_kafka_message_destroy(m);
                        continue;
                }
                if (par_codec_decode(codec, m->payload, m->len, "SpinResult",
                                     &v, NULL, &err) == PAR_OK) {
                        if (add(t, v, since)) {
                                json_decref(v);
                                rd_kafka_message_destroy(m);
                                goto out;
                        }
                        json_decref(v);
                } else {
                        bad++;
                }
                if (m->offset + 1 >= end[m->partition])
                        remaining--;
                rd_kafka_message_destroy(m);
        }
        if (bad)
                fprintf(stderr,
                        "parallel-ctl report: %d undecodable messages "
                        "ignored\n",
                        bad);
        rc = 0;
out:
        if (md)
                rd_kafka_metadata_destroy(md);
        if (parts)
                rd_kafka_topic_partition_list_destroy(parts);
        if (rkt)
                rd_kafka_topic_destroy(rkt);
        if (rk) {
                rd_kafka_consumer_close(rk);
                rd_kafka_destroy(rk);
        }
        free(end);
        par_codec_destroy(codec);
        return rc;
}

static void row(const char *name, outcome_t **v, size_t n)
{
        int64_t *wait = malloc((n + 1) * sizeof(*wait));
        int64_t *e2e = malloc((n + 1) * sizeof(*e2e));
        size_t done = 0, failed = 0, expired = 0;
        int64_t first = INT64_MAX, last = 0;

        if (!wait || !e2e)
                goto out;
        for (size_t i = 0; i < n; i++) {
                wait[i] = v[i]->started - v[i]->created;
                e2e[i] = v[i]->finished - v[i]->created;
                done += v[i]->status == 0;
                failed += v[i]->status == 1;
                expired += v[i]->status == 2;
                if (v[i]->started < first)
                        first = v[i]->started;
                if (v[i]->finished > last)
                        last = v[i]->finished;
        }
        printf("%-8s %7zu %7zu %7zu %7zu %9.0f %9.0f %9.0f %9.0f %8.1f\n", name,
               n, done, failed, expired, pct(wait, n, 0.5), pct(wait, n, 0.99),
               pct(e2e, n, 0.5), pct(e2e, n, 0.99),
               n && last > first
                   ? (double)done * 1000.0 / (double)(last - first)
                   : 0.0);
out:
        free(wait);
        free(e2e);
}

int par_ctl_report(par_config_t *cfg, int argc, char **argv)
{
        static const struct option opts[] = {
            {"since-ms", required_argument, NULL, 's'},
            {"timeout-ms", required_argument, NULL, 't'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0}};
        int64_t since = 0;
        int timeout = 10000, c, levels;
        table_t t = {0};
        outcome_t **byp = NULL;
        size_t n = 0;

        optind = 1;
        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                switch (c) {
                case 's':
                case 't': {
                        char *end;
                        long long v = strtoll(optarg, &end, 10);
                        if (*end || end == optarg || v < 0 ||
                            (c == 't' && v > 3600000)) {
                                fprintf(stderr,
                                        "parallel-ctl report: --%s: '%s' is "
                                        "not a valid number\n",
                                        c == 's' ? "since-ms" : "timeout-ms",
                                        optarg);
                                return 2;
                        }
                        if (c == 's')
                                since = v;
                        else
                                timeout = (int)v;
                        break;
                }
                case 'h':
                        printf("usage: parallel-ctl report [--since-ms "
                               "EPOCH_MS] [--timeout-ms N]\n"
                               "Summarises <prefix>.results per priority: "
                               "outcomes, wait (created→started) and\n"
                               "end-to-end (created→finished) p50/p99 in "
                               "ms, and done spins per second.\n");
                        return 0;
                default:
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr,
                        "parallel-ctl report: unexpected argument '%s'\n",
                        argv[optind]);
                return 2;
        }
        if (read_results(cfg, since, &t, timeout > 0 ? timeout : 10000))
                return 1;
        /* Keep each signal's last final outcome. */
        qsort(t.v, t.n, sizeof(*t.v), cmp_id);
        for (size_t i = 0; i < t.n; i++)
                if (i + 1 == t.n || strcmp(t.v[i].id, t.v[i + 1].id))
                        t.v[n++] = t.v[i];
        byp = malloc((n + 1) * sizeof(*byp));
        if (!byp) {
                free(t.v);
                return 1;
        }
        levels = (int)par_config_int(cfg, "priority.levels");
        printf("%-8s %7s %7s %7s %7s %9s %9s %9s %9s %8s\n", "priority",
               "signals", "done", "failed", "expired", "wait p50", "wait p99",
               "e2e p50", "e2e p99", "spins/s");
        for (int p = levels; p >= 1; p--) {
                size_t k = 0;
                char name[16];
                for (size_t i = 0; i < n; i++)
                        if (t.v[i].priority == p)
                                byp[k++] = &t.v[i];
                snprintf(name, sizeof(name), "p%d", p);
                row(name, byp, k);
        }
        for (size_t i = 0; i < n; i++)
                byp[i] = &t.v[i];
        row("all", byp, n);
        free(byp);
        free(t.v);
        return 0;
}
