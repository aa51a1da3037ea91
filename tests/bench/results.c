/*
 * bench-results — the measuring end of the pipeline, latency and workers
 * benchmarks (tests/bench/pipeline.sh, latency.sh, workers.sh). A program that
 * prints numbers; it asserts nothing.
 *
 *   bench-results [-X key=value]... count SUFFIX...
 *       Prints the number of messages held by the topics
 *       <topic.prefix>.<SUFFIX> (sum of high − low watermarks), e.g.
 *       `count signals.p1 signals.p2`.
 *
 *   bench-results [-X key=value]... copy FROM_PREFIX SUFFIX...
 *       Copies every message of <FROM_PREFIX>.<SUFFIX> (low to high
 *       watermark when it starts) to <topic.prefix>.<SUFFIX>, into the same
 *       partition, with its key, headers and value: all read first, then
 *       written, waiting for every delivery. Prints `copied n=… read_ms=…
 *       ms=… rate=…` (ms and rate: the writing). So a benchmark can
 *       start its nodes, let them settle into the group, and only then
 *       give them work that was moved into Kafka beforehand.
 *
 *   bench-results [-X key=value]... wait --count N [--timeout S]
 *                 [--ready FILE] [--timeline FILE]
 *       Notes the high watermarks of <topic.prefix>.results, writes FILE
 *       (so a script knows it may start the nodes), then reads the results
 *       produced after that point until N distinct signals have a final
 *       result (done, failed, dead, expired) or S seconds (default 600)
 *       pass. Prints one `results key=value …` line:
 *         n, done, failed, expired   distinct signals by final outcome;
 *         dups                       final results beyond one per signal;
 *         skipped, retrying          non-final results seen;
 *         span_ms, rate              last − first finished_at, and
 *                                    (n − 1) / span: signals/s from the
 *                                    first result to the last;
 *         wall_ms, wall_rate         from the ready file to the last result
 *                                    read (includes node start-up, and
 *                                    up to 100 ms of the reader's own
 *                                    batching);
 *       and p50/p99 (ms) of, per signal, from the result's timestamps
 *       (all milliseconds, one clock: one machine):
 *         ins_start    started_at − created_at (Mongo insert → spin start;
 *                      created_at is stamped by the inserting client just
 *                      before the insert);
 *         ins_kafka    queued_at − created_at (the signal message's Kafka
 *                      timestamp: insert → produced by parallel-producer);
 *         kafka_start  started_at − queued_at;
 *         claim_ms     started_at − claimed_at (0 without claims);
 *         spin_ms      finished_at − started_at;
 *         steps_us     sum of the steps' duration_us (µs precision).
 *       With --timeline FILE, also writes one line per final result to
 *       FILE: `finished_at node_id priority` (where each node spent the
 *       run; pipeline.sh TIMELINE=1 sums it per 100 ms).
 *
 * Exit status: 0 when N signals were seen, 1 otherwise (timeout, error).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "base/clock.h"
#include "base/config.h"
#include "msg/admin.h"
#include "msg/codec.h"
#include "msg/kafka.h"

#define MAXPART 256

/* reader: fetch in batches of up to 100 ms (the `wait` reader). Every
 * figure it prints comes from the results' own timestamps except wall_ms,
 * so it need not see each result at once; fetching each as it landed
 * cost the broker a fetch per produce request of the nodes, CPU the
 * nodes then shared the machine with. */
static rd_kafka_t *client(par_config_t *cfg, bool reader)
{
        par_error_t err = {0};
        rd_kafka_conf_t *conf = NULL;
        rd_kafka_t *rk;
        char errstr[256];

        if (par_kafka_conf_new(&conf, cfg, "bench-results", &err)) {
                fprintf(stderr, "bench-results: %s\n", err.msg);
                return NULL;
        }
        rd_kafka_conf_set(conf, "group.id", "bench-results", NULL, 0);
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
        if (reader) {
                rd_kafka_conf_set(conf, "fetch.wait.max.ms", "100", NULL, 0);
                rd_kafka_conf_set(conf, "fetch.min.bytes", "262144", NULL, 0);
        }
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
        if (!rk) {
                rd_kafka_conf_destroy(conf);
                fprintf(stderr, "bench-results: %s\n", errstr);
        }
        return rk;
}

/* Fills lo[]/hi[] for every partition of topic; returns the partition
 * count, or -1. */
static int watermarks(rd_kafka_t *rk, const char *topic, int64_t *lo,
                      int64_t *hi)
{
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        int n = -1;

        if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) || md->topic_cnt != 1 ||
            md->topics[0].err) {
                fprintf(stderr, "bench-results: no topic %s\n", topic);
                goto out;
        }
        n = md->topics[0].partition_cnt;
        if (n > MAXPART)
                n = MAXPART;
        for (int p = 0; p < n; p++)
                if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo[p],
                                                     &hi[p], 10000)) {
                        fprintf(stderr, "bench-results: watermarks of %s[%d]\n",
                                topic, p);
                        n = -1;
                        goto out;
                }
out:
        if (md)
                rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        return n;
}

static int cmd_count(par_config_t *cfg, int argc, char **argv)
{
        rd_kafka_t *rk = client(cfg, false);
        int64_t lo[MAXPART], hi[MAXPART], total = 0;
        char topic[PAR_KAFKA_TOPIC_MAX];
        int rc = 1;

        if (!rk)
                return 1;
        for (int i = 0; i < argc; i++) {
                int n;
                if (!par_kafka_topic_name(cfg, argv[i], topic, sizeof(topic)))
                        goto out;
                n = watermarks(rk, topic, lo, hi);
                if (n < 0)
                        goto out;
                for (int p = 0; p < n; p++)
                        total += hi[p] - lo[p];
        }
        printf("%lld\n", (long long)total);
        rc = 0;
out:
        rd_kafka_destroy(rk);
        return rc;
}

static int delivery_errors; /* copy's failed deliveries */

/* The topics being copied: where each partition ends, and how many
 * partitions have not reached their end. */
typedef struct copyset {
        int ntopics;
        char from[8][PAR_KAFKA_TOPIC_MAX], to[8][PAR_KAFKA_TOPIC_MAX];
        int64_t hi[8][MAXPART];
        int left;
        struct {
                rd_kafka_message_t *m;
                int t;
        } * msgs; /* read, not yet written */
        size_t nmsgs, cap;
} copyset_t;

static int copy_index(copyset_t *c, const char *topic)
{
        for (int i = 0; i < c->ntopics; i++)
                if (!strcmp(c->from[i], topic))
                        return i;
        return -1;
}

/* Keeps m (its destination topic t) for copy_write; non-zero when it
 * cannot. */
static int copy_keep(copyset_t *c, rd_kafka_message_t *m, int t)
{
        if (c->nmsgs == c->cap) {
                size_t cap = c->cap ? c->cap * 2 : 4096;
                void *grown = realloc(c->msgs, cap * sizeof(*c->msgs));
                if (!grown)
                        return -1;
                c->msgs = grown;
                c->cap = cap;
        }
        c->msgs[c->nmsgs].m = m;
        c->msgs[c->nmsgs++].t = t;
        return 0;
}

/* Produces every kept message to its destination (same partition, key,
 * headers, value) and waits for every delivery. */
static int copy_write(rd_kafka_t *out, copyset_t *c)
{
        for (size_t i = 0; i < c->nmsgs; i++) {
                rd_kafka_message_t *m = c->msgs[i].m;
                int t = c->msgs[i].t;
                rd_kafka_headers_t *h = NULL;
                rd_kafka_message_detach_headers(m, &h);
                rd_kafka_resp_err_t e;
                while ((e = rd_kafka_producev(
                            out, RD_KAFKA_V_TOPIC(c->to[t]),
                            RD_KAFKA_V_PARTITION(m->partition),
                            RD_KAFKA_V_KEY(m->key, m->key_len),
                            RD_KAFKA_V_VALUE(m->payload, m->len),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END)) ==
                       RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        rd_kafka_poll(out, 10);
                if (e) {
                        fprintf(stderr, "bench-results: produce to %s: %s\n",
                                c->to[t], rd_kafka_err2str(e));
                        if (h)
                                rd_kafka_headers_destroy(h);
                        return -1;
                }
        }
        if (rd_kafka_flush(out, 60000) || delivery_errors) {
                fprintf(stderr, "bench-results: copy not delivered (%d)\n",
                        delivery_errors);
                return -1;
        }
        return 0;
}

/* Reads every partition of every topic in c from its low watermark to its
 * high one, all at once, keeping the messages. */
static int copy_read(rd_kafka_t *in, copyset_t *c)
{
        int64_t lo[MAXPART];
        rd_kafka_topic_partition_list_t *l =
            rd_kafka_topic_partition_list_new(64);
        for (int t = 0; t < c->ntopics; t++) {
                int n = watermarks(in, c->from[t], lo, c->hi[t]);
                if (n < 0) {
                        rd_kafka_topic_partition_list_destroy(l);
                        return -1;
                }
                for (int p = 0; p < n; p++)
                        if (c->hi[t][p] > lo[p]) {
                                rd_kafka_topic_partition_list_add(l, c->from[t],
                                                                  p)
                                    ->offset = lo[p];
                                c->left++;
                        }
        }
        rd_kafka_assign(in, l);
        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(in);
        rd_kafka_message_t *batch[1024];
        int64_t until = par_clock_mono_ms() + 60000;
        while (c->left > 0 && par_clock_mono_ms() < until) {
                /* Whatever is there now; wait a little only when nothing
                 * is (a batch call waits its whole timeout for a full
                 * batch). */
                ssize_t got = rd_kafka_consume_batch_queue(q, 0, batch, 1024);
                if (got == 0)
                        got = rd_kafka_consume_batch_queue(q, 5, batch, 1);
                for (ssize_t i = 0; i < got; i++) {
                        rd_kafka_message_t *m = batch[i];
                        int t =
                            m->err ? -1
                                   : copy_index(c, rd_kafka_topic_name(m->rkt));
                        if (t < 0 || m->offset >= c->hi[t][m->partition] ||
                            copy_keep(c, m, t)) {
                                rd_kafka_message_destroy(m);
                                continue;
                        }
                        if (m->offset == c->hi[t][m->partition] - 1)
                                c->left--;
                }
        }
        rd_kafka_queue_destroy(q);
        rd_kafka_assign(in, NULL);
        if (c->left) {
                fprintf(stderr,
                        "bench-results: %d partitions not read to "
                        "their end\n",
                        c->left);
                return -1;
        }
        return 0;
}

static void copy_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *op)
{
        (void)rk;
        (void)op;
        if (m->err)
                delivery_errors++;
}

static int cmd_copy(par_config_t *cfg, int argc, char **argv)
{
        par_error_t err = {0};
        rd_kafka_conf_t *pc = NULL;
        char es[256];
        int rc = 1;
        copyset_t *c = calloc(1, sizeof(*c));

        if (!c)
                return 1;
        if (argc < 2 || argc > 9) {
                free(c);
                fprintf(stderr, "bench-results: copy FROM_PREFIX SUFFIX... "
                                "(1 to 8 suffixes)\n");
                return 2;
        }
        rd_kafka_t *in = client(cfg, false), *out = NULL;
        if (!in) {
                free(c);
                return 1;
        }
        if (par_kafka_conf_new(&pc, cfg, "bench-copy", &err)) {
                fprintf(stderr, "bench-results: %s\n", err.msg);
                goto done;
        }
        rd_kafka_conf_set(pc, "linger.ms", "5", NULL, 0);
        rd_kafka_conf_set(pc, "enable.idempotence", "true", NULL, 0);
        rd_kafka_conf_set_dr_msg_cb(pc, copy_dr);
        if (!(out = rd_kafka_new(RD_KAFKA_PRODUCER, pc, es, sizeof(es)))) {
                rd_kafka_conf_destroy(pc);
                fprintf(stderr, "bench-results: %s\n", es);
                goto done;
        }
        for (int i = 1; i < argc; i++, c->ntopics++) {
                snprintf(c->from[c->ntopics], sizeof(c->from[0]), "%s.%s",
                         argv[0], argv[i]);
                if (!par_kafka_topic_name(cfg, argv[i], c->to[c->ntopics],
                                          sizeof(c->to[0])))
                        goto done;
        }
        /* Read everything first, then write as fast as the producer goes:
         * the write is what the readers downstream see. */
        int64_t t0 = par_clock_mono_ms();
        if (copy_read(in, c))
                goto done;
        /* The producer learns each topic's leaders before the clock
         * starts: new topics cost it a metadata round of up to a second,
         * which the nodes would otherwise wait on as if the write were
         * slow. */
        {
                const char *to[sizeof(c->to) / sizeof(c->to[0])];
                for (int t = 0; t < c->ntopics; t++)
                        to[t] = c->to[t];
                par_admin_learn_leaders(out, to, (size_t)c->ntopics, 5000);
        }
        int64_t t1 = par_clock_mono_ms();
        if (copy_write(out, c))
                goto done;
        int64_t ms = par_clock_mono_ms() - t1;
        printf("copied n=%zu read_ms=%lld ms=%lld rate=%.0f\n", c->nmsgs,
               (long long)(t1 - t0), (long long)ms,
               ms ? c->nmsgs * 1000.0 / (double)ms : 0.0);
        rc = 0;
done:
        for (size_t i = 0; i < c->nmsgs; i++)
                rd_kafka_message_destroy(c->msgs[i].m);
        free(c->msgs);
        if (out)
                rd_kafka_destroy(out);
        rd_kafka_destroy(in);
        free(c);
        return rc;
}

/* A set of 24-character signal ids (open addressing, never shrinks). */
typedef struct idset {
        char (*slot)[25];
        size_t cap, n;
} idset_t;

/* Adds id; returns 1 if new, 0 if already there, -1 on allocation failure. */
static int idset_add(idset_t *s, const char *id)
{
        size_t h = 1469598103934665603ULL;

        if ((s->n + 1) * 2 > s->cap) {
                idset_t g = {calloc(s->cap ? s->cap * 2 : 4096, 25),
                             s->cap ? s->cap * 2 : 4096, 0};
                if (!g.slot)
                        return -1;
                for (size_t i = 0; i < s->cap; i++)
                        if (s->slot[i][0])
                                idset_add(&g, s->slot[i]);
                free(s->slot);
                *s = g;
        }
        for (const char *c = id; *c; c++)
                h = (h ^ (unsigned char)*c) * 1099511628211ULL;
        for (size_t i = h % s->cap;; i = (i + 1) % s->cap) {
                if (!s->slot[i][0]) {
                        snprintf(s->slot[i], 25, "%s", id);
                        s->n++;
                        return 1;
                }
                if (!strncmp(s->slot[i], id, 24))
                        return 0;
        }
}

typedef struct series {
        int64_t *v;
        size_t n, cap;
} series_t;

static void put(series_t *s, int64_t x)
{
        if (s->n == s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 1024;
                int64_t *v = realloc(s->v, cap * sizeof(*v));
                if (!v)
                        return;
                s->v = v;
                s->cap = cap;
        }
        s->v[s->n++] = x;
}

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return x < y ? -1 : x > y;
}

/* Prints " NAME_p50=… NAME_p99=…" (nearest rank). */
static void pcts(const char *name, series_t *s)
{
        int64_t p50 = 0, p99 = 0;

        if (s->n) {
                qsort(s->v, s->n, sizeof(*s->v), cmp_i64);
                p50 = s->v[(size_t)(0.50 * (double)(s->n - 1) + 0.5)];
                p99 = s->v[(size_t)(0.99 * (double)(s->n - 1) + 0.5)];
        }
        printf(" %s_p50=%lld %s_p99=%lld", name, (long long)p50, name,
               (long long)p99);
}

static int64_t ts(json_t *r, const char *k)
{
        return json_integer_value(json_object_get(r, k));
}

static int cmd_wait(par_config_t *cfg, int argc, char **argv)
{
        static const struct option opts[] = {
            {"count", required_argument, NULL, 'n'},
            {"timeout", required_argument, NULL, 't'},
            {"ready", required_argument, NULL, 'r'},
            {"timeline", required_argument, NULL, 'l'},
            {NULL, 0, NULL, 0}};
        long want = 0, timeout = 600;
        const char *ready = NULL;
        FILE *timeline = NULL;
        rd_kafka_t *rk = NULL;
        rd_kafka_topic_partition_list_t *parts = NULL;
        par_codec_t *codec = NULL;
        par_error_t err = {0};
        int64_t lo[MAXPART], hi[MAXPART];
        int64_t first = INT64_MAX, last = 0;
        char topic[PAR_KAFKA_TOPIC_MAX];
        series_t ins_start = {0}, ins_kafka = {0}, kafka_start = {0},
                 claim = {0}, spin = {0}, steps = {0};
        idset_t seen = {0};
        long done = 0, failed = 0, expired = 0, dups = 0, skipped = 0,
             retrying = 0;
        double t0, t_last = 0;
        int np, c, rc = 1;

        optind = 0;
        while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                if (c == 'n')
                        want = atol(optarg);
                else if (c == 't')
                        timeout = atol(optarg);
                else if (c == 'r')
                        ready = optarg;
                else if (c == 'l' && !timeline) {
                        if (!(timeline = fopen(optarg, "w"))) {
                                perror(optarg);
                                return 2;
                        }
                } else
                        return 2;
        }
        if (want <= 0) {
                fprintf(stderr, "bench-results wait: --count N required\n");
                return 2;
        }
        if (par_codec_new(&codec, &err)) {
                fprintf(stderr, "bench-results: %s\n", err.msg);
                return 1;
        }
        rk = client(cfg, true);
        par_kafka_topic_name(cfg, "results", topic, sizeof(topic));
        if (!rk || (np = watermarks(rk, topic, lo, hi)) < 0)
                goto out;
        parts = rd_kafka_topic_partition_list_new(np);
        for (int p = 0; p < np; p++)
                rd_kafka_topic_partition_list_add(parts, topic, p)->offset =
                    hi[p];
        if (rd_kafka_assign(rk, parts)) {
                fprintf(stderr, "bench-results: assign failed\n");
                goto out;
        }
        t0 = par_clock_mono_s();
        if (ready) {
                FILE *f = fopen(ready, "w");
                if (f)
                        fclose(f);
        }
        while ((long)seen.n < want &&
               par_clock_mono_s() - t0 < (double)timeout) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
                json_t *r = NULL;
                const char *st, *id;
                int64_t started, finished, created, queued, claimed, us = 0;
                size_t i;
                json_t *step;

                if (!m)
                        continue;
                if (m->err || par_codec_decode(codec, m->payload, m->len,
                                               PAR_SCHEMA_RESULT, &r, NULL,
                                               NULL) != PAR_OK) {
                        rd_kafka_message_destroy(m);
                        continue;
                }
                rd_kafka_message_destroy(m);
                st = json_string_value(json_object_get(r, "status"));
                id = json_string_value(json_object_get(r, "signal_id"));
                if (!st || !id) {
                        json_decref(r);
                        continue;
                }
                if (!strcmp(st, "skipped") || !strcmp(st, "retrying")) {
                        skipped += st[0] == 's';
                        retrying += st[0] == 'r';
                        json_decref(r);
                        continue;
                }
                if (idset_add(&seen, id) != 1) {
                        dups++;
                        json_decref(r);
                        continue;
                }
                t_last = par_clock_mono_s();
                done += !strcmp(st, "done");
                expired += !strcmp(st, "expired");
                failed += strcmp(st, "done") && strcmp(st, "expired");
                created = ts(r, "created_at");
                queued = ts(r, "queued_at");
                claimed = ts(r, "claimed_at");
                started = ts(r, "started_at");
                finished = ts(r, "finished_at");
                if (finished < first)
                        first = finished;
                if (finished > last)
                        last = finished;
                if (timeline) {
                        const char *node =
                            json_string_value(json_object_get(r, "node_id"));
                        fprintf(timeline, "%lld %s %lld\n", (long long)finished,
                                node ? node : "-",
                                (long long)json_integer_value(
                                    json_object_get(r, "priority")));
                }
                put(&ins_kafka, queued - created);
                if (started) {
                        put(&ins_start, started - created);
                        put(&kafka_start, started - queued);
                        put(&spin, finished - started);
                        put(&claim, claimed ? started - claimed : 0);
                }
                json_array_foreach(json_object_get(r, "steps"), i, step) us +=
                    ts(step, "duration_us");
                if (!strcmp(st, "done"))
                        put(&steps, us);
                json_decref(r);
        }
        printf("results n=%zu want=%ld done=%ld failed=%ld expired=%ld "
               "dups=%ld skipped=%ld retrying=%ld",
               seen.n, want, done, failed, expired, dups, skipped, retrying);
        printf(" span_ms=%lld rate=%.1f wall_ms=%.0f wall_rate=%.1f",
               (long long)(seen.n ? last - first : 0),
               seen.n > 1 && last > first
                   ? (double)(seen.n - 1) * 1000.0 / (double)(last - first)
                   : 0.0,
               seen.n ? (t_last - t0) * 1000.0 : 0.0,
               seen.n && t_last > t0 ? (double)seen.n / (t_last - t0) : 0.0);
        pcts("ins_start", &ins_start);
        pcts("ins_kafka", &ins_kafka);
        pcts("kafka_start", &kafka_start);
        pcts("claim_ms", &claim);
        pcts("spin_ms", &spin);
        pcts("steps_us", &steps);
        printf("\n");
        rc = (long)seen.n >= want ? 0 : 1;
out:
        if (parts)
                rd_kafka_topic_partition_list_destroy(parts);
        if (rk) {
                rd_kafka_consumer_close(rk);
                rd_kafka_destroy(rk);
        }
        par_codec_destroy(codec);
        free(seen.slot);
        free(ins_start.v);
        free(ins_kafka.v);
        free(kafka_start.v);
        free(claim.v);
        free(spin.v);
        free(steps.v);
        if (timeline)
                fclose(timeline);
        return rc;
}

int main(int argc, char **argv)
{
        par_config_t *cfg = NULL;
        par_error_t err = {0};
        int rc = 2;

        if (par_config_new(&cfg, &err) ||
            par_config_parse_args(cfg, &argc, argv, NULL, &err)) {
                fprintf(stderr, "bench-results: %s\n", err.msg);
                goto out;
        }
        if (argc >= 2 && !strcmp(argv[1], "count"))
                rc = cmd_count(cfg, argc - 2, argv + 2);
        else if (argc >= 2 && !strcmp(argv[1], "copy"))
                rc = cmd_copy(cfg, argc - 2, argv + 2);
        else if (argc >= 2 && !strcmp(argv[1], "wait"))
                rc = cmd_wait(cfg, argc - 1, argv + 1);
        else
                fprintf(stderr, "usage: bench-results [-X k=v]... count "
                                "SUFFIX... | copy FROM_PREFIX SUFFIX... | "
                                "wait --count N [--timeout S] "
                                "[--ready FILE]\n");
out:
        par_config_destroy(cfg);
        return rc;
}
