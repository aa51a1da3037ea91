/*
 * cmd_status.c — `parallel-ctl status`: the cluster at a glance, built
 * from Kafka itself plus the producer lease in MongoDB.
 *
 * Sources, and why each:
 *   - the consumer group's description (Admin API DescribeConsumerGroups):
 *     which nodes are members now and which partitions each holds;
 *   - the group's committed offsets (ListConsumerGroupOffsets) and the
 *     partitions' watermarks: lag per priority exactly as
 *     kafka-consumer-groups computes it (msg/lag.h);
 *   - the compacted <prefix>.workers topic from the beginning: every live
 *     worker's last state and what it runs;
 *   - <prefix>.metrics over the last minute: each node's last NodeMetrics
 *     (throughput, wait, workers, memory);
 *   - <prefix>.results over the last minute: spins/s and wait per
 *     priority, cluster-wide;
 *   - the last dead letters of <prefix>.dlq with their reasons;
 *   - the producer lease document in producer.state.collection.
 * Nothing asks the nodes themselves: a node that died still shows as
 * missing from the group, and the view needs no route to the nodes.
 *
 * Reads assign partitions without joining any group and commit nothing.
 */
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <mongoc/mongoc.h>

#include "base/clock.h"
#include "ctl.h"
#include "obs/http.h"
#include "msg/codec.h"
#include "msg/kafka.h"
#include "msg/lag.h"

#define TIMEOUT_MS 10000
#define WINDOW_MS  60000  /* metrics, and results for spins/s and wait */
#define SERIES_MS  300000 /* results behind the page's charts */
#define BUCKET_MS  15000
#define LAST_DLQ   5

static volatile sig_atomic_t stop_watch;

static void on_signal(int sig)
{
        (void)sig;
        stop_watch = 1;
}

static void usage(FILE *out)
{
        fputs("usage: parallel-ctl status [--json] [--watch] "
              "[--interval-ms N] [--http ADDR]\n\n"
              "The cluster from Kafka (consumer group, workers, metrics, "
              "results,\ndead letters) and the producer lease in MongoDB.\n"
              "  --json          one JSON object (per refresh with --watch)\n"
              "  --watch         redraw every interval until interrupted\n"
              "  --interval-ms N refresh interval for --watch and --http "
              "(2000)\n"
              "  --http ADDR     serve the cluster page at http://ADDR/ "
              "(and its data\n"
              "                  at /cluster.json) until interrupted, e.g. "
              "127.0.0.1:9290\n",
              out);
}

typedef struct ctx {
        par_config_t *cfg;
        par_codec_t *codec;
        rd_kafka_t *rk; /* consumer handle: admin calls and reads */
        int levels;
        char group[256];
} ctx_t;

/* --------------------------------------------------------------- group */

static json_t *group_view(ctx_t *c)
{
        rd_kafka_queue_t *q = rd_kafka_queue_new(c->rk);
        const char *groups[1] = {c->group};
        json_t *out = json_object(), *members = json_array();
        char es[256];

        json_object_set_new(out, "id", json_string(c->group));
        json_object_set_new(out, "members", members);
        rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(
            c->rk, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS);
        rd_kafka_AdminOptions_set_request_timeout(o, TIMEOUT_MS, es,
                                                  sizeof(es));
        rd_kafka_DescribeConsumerGroups(c->rk, groups, 1, o, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, TIMEOUT_MS + 1000);
        const rd_kafka_DescribeConsumerGroups_result_t *res =
            ev ? rd_kafka_event_DescribeConsumerGroups_result(ev) : NULL;
        size_t n = 0;
        const rd_kafka_ConsumerGroupDescription_t **d =
            res ? rd_kafka_DescribeConsumerGroups_result_groups(res, &n) : NULL;
        if (!n || rd_kafka_ConsumerGroupDescription_error(d[0])) {
                json_object_set_new(
                    out, "error",
                    json_string(
                        !ev ? "timed out"
                        : n ? rd_kafka_error_string(
                                  rd_kafka_ConsumerGroupDescription_error(d[0]))
                            : rd_kafka_event_error_string(ev)));
                goto out;
        }
        json_object_set_new(
            out, "state",
            json_string(rd_kafka_consumer_group_state_name(
                rd_kafka_ConsumerGroupDescription_state(d[0]))));
        for (size_t i = 0;
             i < rd_kafka_ConsumerGroupDescription_member_count(d[0]); i++) {
                const rd_kafka_MemberDescription_t *m =
                    rd_kafka_ConsumerGroupDescription_member(d[0], i);
                const char *cid = rd_kafka_MemberDescription_client_id(m);
                const char *pfx = "parallel-consumer-";
                const rd_kafka_topic_partition_list_t *a =
                    rd_kafka_MemberAssignment_partitions(
                        rd_kafka_MemberDescription_assignment(m));
                json_t *parts = json_array();
                for (int k = 0; a && k < a->cnt; k++) {
                        char p[300];
                        snprintf(p, sizeof(p), "%s[%d]", a->elems[k].topic,
                                 (int)a->elems[k].partition);
                        json_array_append_new(parts, json_string(p));
                }
                json_array_append_new(
                    members, json_pack("{s:s,s:s,s:s,s:o}", "node",
                                       strncmp(cid, pfx, strlen(pfx))
                                           ? cid
                                           : cid + strlen(pfx),
                                       "client_id", cid, "host",
                                       rd_kafka_MemberDescription_host(m),
                                       "partitions", parts));
        }
out:
        if (ev)
                rd_kafka_event_destroy(ev);
        rd_kafka_AdminOptions_destroy(o);
        rd_kafka_queue_destroy(q);
        return out;
}

/* Lag per priority: every partition of every signal topic, the group's
 * committed offset where it has one (msg/lag.h for the rule). Fills
 * lag[1..levels]; -1 where unknown. */
static void lag_view(ctx_t *c, int64_t *lag)
{
        rd_kafka_queue_t *q = rd_kafka_queue_new(c->rk);
        rd_kafka_topic_partition_list_t *all =
            rd_kafka_topic_partition_list_new(16);
        const rd_kafka_topic_partition_list_t *committed = NULL;
        rd_kafka_event_t *ev = NULL;
        char topic[PAR_KAFKA_TOPIC_MAX];
        int64_t *per = NULL;
        par_error_t e;

        for (int L = 1; L <= c->levels; L++) {
                const struct rd_kafka_metadata *md = NULL;
                lag[L] = -1;
                if (!par_kafka_signal_topic(c->cfg, L, topic, sizeof(topic)))
                        continue;
                rd_kafka_topic_t *rkt = rd_kafka_topic_new(c->rk, topic, NULL);
                if (!rd_kafka_metadata(c->rk, 0, rkt, &md, TIMEOUT_MS) &&
                    md->topic_cnt == 1 && !md->topics[0].err)
                        for (int i = 0; i < md->topics[0].partition_cnt; i++)
                                rd_kafka_topic_partition_list_add(
                                    all, topic, md->topics[0].partitions[i].id)
                                    ->offset = RD_KAFKA_OFFSET_INVALID;
                if (md)
                        rd_kafka_metadata_destroy(md);
                rd_kafka_topic_destroy(rkt);
        }
        rd_kafka_ListConsumerGroupOffsets_t *req =
            rd_kafka_ListConsumerGroupOffsets_new(c->group, NULL);
        rd_kafka_ListConsumerGroupOffsets(c->rk, &req, 1, NULL, q);
        rd_kafka_ListConsumerGroupOffsets_destroy(req);
        ev = rd_kafka_queue_poll(q, TIMEOUT_MS);
        const rd_kafka_ListConsumerGroupOffsets_result_t *res =
            ev ? rd_kafka_event_ListConsumerGroupOffsets_result(ev) : NULL;
        size_t n = 0;
        const rd_kafka_group_result_t **gr =
            res ? rd_kafka_ListConsumerGroupOffsets_result_groups(res, &n)
                : NULL;
        if (n && !rd_kafka_group_result_error(gr[0]))
                committed = rd_kafka_group_result_partitions(gr[0]);
        for (int i = 0; committed && i < all->cnt; i++) {
                const rd_kafka_topic_partition_t *cp =
                    rd_kafka_topic_partition_list_find(committed,
                                                       all->elems[i].topic,
                                                       all->elems[i].partition);
                if (cp && !cp->err && cp->offset >= 0)
                        all->elems[i].offset = cp->offset;
        }
        if (!all->cnt || !(per = calloc((size_t)all->cnt, sizeof(*per))))
                goto out;
        par_lag_compute(c->rk, all, per, TIMEOUT_MS, &e);
        for (int i = 0; i < all->cnt; i++) {
                const char *t = all->elems[i].topic;
                int L = atoi(strrchr(t, 'p') + 1);
                if (L < 1 || L > c->levels || per[i] < 0)
                        continue;
                lag[L] = (lag[L] < 0 ? 0 : lag[L]) + per[i];
        }
out:
        free(per);
        if (ev)
                rd_kafka_event_destroy(ev);
        rd_kafka_topic_partition_list_destroy(all);
        rd_kafka_queue_destroy(q);
}

/* --------------------------------------------------------------- reads */

enum start { FROM_BEGINNING, FROM_TIME, LAST_N };

/*
 * Reads `suffix`'s partitions from the start chosen (the beginning, the
 * first offset at or after `since_ms`, or the last n messages of each)
 * to their end, calling fn with each decoded value (NULL for a
 * tombstone) and key.
 */
static void read_topic(ctx_t *c, const char *suffix, enum start from,
                       int64_t arg,
                       void (*fn)(void *, const char *key, json_t *v),
                       void *opaque)
{
        char topic[PAR_KAFKA_TOPIC_MAX];
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_partition_list_t *parts = NULL;

        if (!par_kafka_topic_name(c->cfg, suffix, topic, sizeof(topic)))
                return;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(c->rk, topic, NULL);
        if (rd_kafka_metadata(c->rk, 0, rkt, &md, TIMEOUT_MS) ||
            md->topic_cnt != 1 || md->topics[0].err)
                goto out;
        parts = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
        int open = 0;
        for (int i = 0; i < md->topics[0].partition_cnt; i++) {
                int32_t p = md->topics[0].partitions[i].id;
                int64_t lo = 0, hi = 0;
                if (rd_kafka_query_watermark_offsets(c->rk, topic, p, &lo, &hi,
                                                     TIMEOUT_MS) ||
                    hi <= lo)
                        continue; /* empty: nothing to wait for */
                int64_t off = from == FROM_BEGINNING ? RD_KAFKA_OFFSET_BEGINNING
                              : from == LAST_N ? (hi - arg > lo ? hi - arg : lo)
                                               : arg;
                rd_kafka_topic_partition_list_add(parts, topic, p)->offset =
                    off;
                open++;
        }
        if (from == FROM_TIME && parts->cnt &&
            rd_kafka_offsets_for_times(c->rk, parts, TIMEOUT_MS))
                goto out;
        for (int i = 0; i < parts->cnt; i++)
                if (parts->elems[i].offset == RD_KAFKA_OFFSET_END)
                        open--; /* nothing that recent */
        if (open <= 0 || rd_kafka_assign(c->rk, parts))
                goto out;
        int64_t deadline = par_clock_mono_ms() + TIMEOUT_MS;
        while (open > 0 && par_clock_mono_ms() < deadline) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 200);
                if (!m)
                        continue;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        open--;
                } else if (!m->err) {
                        char key[300] = "";
                        json_t *v = NULL;
                        par_error_t e;
                        if (m->key)
                                snprintf(key, sizeof(key), "%.*s",
                                         (int)m->key_len, (const char *)m->key);
                        if (!m->payload ||
                            !par_codec_decode(c->codec, m->payload, m->len,
                                              NULL, &v, NULL, &e))
                                fn(opaque, key, v);
                        json_decref(v);
                }
                rd_kafka_message_destroy(m);
        }
        rd_kafka_assign(c->rk, NULL);
out:
        if (parts)
                rd_kafka_topic_partition_list_destroy(parts);
        if (md)
                rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
}

/* the latest value per key (a tombstone deletes it) */
static void keep_latest(void *opaque, const char *key, json_t *v)
{
        if (v)
                json_object_set(opaque, key, v);
        else
                json_object_del(opaque, key);
}

static void append(void *opaque, const char *key, json_t *v)
{
        (void)key;
        if (v)
                json_array_append(opaque, v);
}

static int cmp_ll(const void *a, const void *b)
{
        long long x = *(const long long *)a, y = *(const long long *)b;
        return x < y ? -1 : x > y;
}

static double quantile_ms(long long *v, size_t n, double q)
{
        if (!n)
                return NAN;
        size_t r = (size_t)ceil(q * (double)n);
        return (double)v[r ? r - 1 : 0];
}

/* Spins per second and wait per priority from the results of the window. */
static json_t *priorities_view(ctx_t *c, const int64_t *lag, int64_t now)
{
        json_t *results = json_array(), *out = json_array();
        read_topic(c, "results", FROM_TIME, now - SERIES_MS, append, results);
        for (int L = c->levels; L >= 1; L--) {
                json_t *spins_s = json_array(), *wait_s = json_array();
                int nb = SERIES_MS / BUCKET_MS;
                for (int b = 0; b < nb; b++) {
                        int64_t lo = now - SERIES_MS + (int64_t)b * BUCKET_MS;
                        size_t i, k = 0, cnt = 0;
                        json_t *r;
                        long long *bw = calloc(json_array_size(results) + 1,
                                               sizeof(long long));
                        json_array_foreach(results, i, r)
                        {
                                json_int_t f = json_integer_value(
                                    json_object_get(r, "finished_at"));
                                if (json_integer_value(
                                        json_object_get(r, "priority")) != L ||
                                    f < lo || f >= lo + BUCKET_MS)
                                        continue;
                                cnt++;
                                long long q = json_integer_value(
                                              json_object_get(r, "queued_at")),
                                          s = json_integer_value(
                                              json_object_get(r, "started_at"));
                                if (bw && s > 0 && q > 0 && s >= q)
                                        bw[k++] = s - q;
                        }
                        if (bw)
                                qsort(bw, k, sizeof(*bw), cmp_ll);
                        json_array_append_new(
                            spins_s, json_real(cnt * 1000.0 / BUCKET_MS));
                        json_array_append_new(
                            wait_s, k ? json_real(quantile_ms(bw, k, 0.99))
                                      : json_null());
                        free(bw);
                }
                size_t i, n = 0, finals = 0;
                json_t *r;
                long long *w =
                    calloc(json_array_size(results) + 1, sizeof(long long));
                json_array_foreach(results, i, r)
                {
                        const char *st =
                            json_string_value(json_object_get(r, "status"));
                        if (json_integer_value(
                                json_object_get(r, "priority")) != L ||
                            !st ||
                            json_integer_value(json_object_get(
                                r, "finished_at")) < now - WINDOW_MS)
                                continue;
                        if (!strcmp(st, "done") || !strcmp(st, "failed") ||
                            !strcmp(st, "dead") || !strcmp(st, "expired"))
                                finals++;
                        long long q = json_integer_value(
                                      json_object_get(r, "queued_at")),
                                  s = json_integer_value(
                                      json_object_get(r, "started_at"));
                        if (w && s > 0 && q > 0 && s >= q)
                                w[n++] = s - q;
                }
                if (w)
                        qsort(w, n, sizeof(*w), cmp_ll);
                json_t *p = json_pack(
                    "{s:i,s:o,s:f,s:o,s:o}", "priority", L, "lag",
                    lag[L] >= 0 ? json_integer(lag[L]) : json_null(),
                    "spins_per_s", finals * 1000.0 / WINDOW_MS, "wait_p50_ms",
                    n ? json_real(quantile_ms(w, n, 0.5)) : json_null(),
                    "wait_p99_ms",
                    n ? json_real(quantile_ms(w, n, 0.99)) : json_null());
                json_object_set_new(p, "series_spins_per_s", spins_s);
                json_object_set_new(p, "series_wait_p99_ms", wait_s);
                json_array_append_new(out, p);
                free(w);
        }
        json_decref(results);
        return out;
}

static json_t *producer_view(ctx_t *c, int64_t now)
{
        mongoc_uri_t *uri = NULL;
        mongoc_client_t *cl = NULL;
        mongoc_collection_t *coll = NULL;
        bson_error_t e;
        json_t *out = json_null();
        char id[800];
        const bson_t *doc;

        snprintf(id, sizeof(id), "producer/%s.%s/%s",
                 par_config_str(c->cfg, "mongo.database"),
                 par_config_str(c->cfg, "mongo.collection"),
                 par_config_str(c->cfg, "topic.prefix"));
        if (!(uri = mongoc_uri_new_with_error(
                  par_config_str(c->cfg, "mongo.uri"), &e)))
                return json_pack("{s:s}", "error", e.message);
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS,
                                       3000);
        if (!(cl = mongoc_client_new_from_uri_with_error(uri, &e))) {
                out = json_pack("{s:s}", "error", e.message);
                goto done;
        }
        coll = mongoc_client_get_collection(
            cl, par_config_str(c->cfg, "mongo.database"),
            par_config_str(c->cfg, "producer.state.collection"));
        bson_t *f = BCON_NEW("_id", BCON_UTF8(id));
        mongoc_cursor_t *cur =
            mongoc_collection_find_with_opts(coll, f, NULL, NULL);
        if (mongoc_cursor_next(cur, &doc)) {
                bson_iter_t it;
                const char *holder = "";
                int64_t epoch = 0, until = 0;
                if (bson_iter_init_find(&it, doc, "holder") &&
                    BSON_ITER_HOLDS_UTF8(&it))
                        holder = bson_iter_utf8(&it, NULL);
                if (bson_iter_init_find(&it, doc, "epoch"))
                        epoch = bson_iter_as_int64(&it);
                if (bson_iter_init_find(&it, doc, "lease_until") &&
                    BSON_ITER_HOLDS_DATE_TIME(&it))
                        until = bson_iter_date_time(&it);
                out =
                    json_pack("{s:s,s:I,s:I,s:b}", "holder", holder, "epoch",
                              (json_int_t)epoch, "lease_ms_left",
                              (json_int_t)(until - now), "active", until > now);
        } else if (mongoc_cursor_error(cur, &e)) {
                out = json_pack("{s:s}", "error", e.message);
        }
        mongoc_cursor_destroy(cur);
        bson_destroy(f);
done:
        if (coll)
                mongoc_collection_destroy(coll);
        if (cl)
                mongoc_client_destroy(cl);
        mongoc_uri_destroy(uri);
        return out;
}

static json_t *build(ctx_t *c)
{
        int64_t now = par_clock_wall_ms(), lag[64];
        json_t *v = json_object(), *workers = json_object(),
               *metrics = json_object(), *dlq = json_array();

        json_object_set_new(v, "ts", json_integer(now));
        json_object_set_new(v, "group", group_view(c));
        json_object_set_new(v, "producer", producer_view(c, now));
        lag_view(c, lag);
        json_object_set_new(v, "priorities", priorities_view(c, lag, now));

        read_topic(c, "metrics", FROM_TIME, now - WINDOW_MS, keep_latest,
                   metrics);
        json_t *nodes = json_array(), *m;
        const char *k;
        json_object_foreach(metrics, k, m)
        {
                json_t *w = json_object_get(m, "wait");
                json_int_t ts = json_integer_value(json_object_get(m, "ts"));
                json_array_append_new(
                    nodes,
                    json_pack(
                        "{s:s,s:I,s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O}", "node", k,
                        "age_ms", (json_int_t)(now > ts ? now - ts : 0),
                        "throughput", json_object_get(m, "throughput"),
                        "workers_busy", json_object_get(m, "workers_busy"),
                        "workers_total", json_object_get(m, "workers_total"),
                        "wait_p99_ms",
                        w ? json_object_get(w, "p99_ms") : json_null(),
                        "consumer_lag", json_object_get(m, "consumer_lag"),
                        "rss_bytes", json_object_get(m, "rss_bytes"),
                        "chrome_rss_bytes",
                        json_object_get(m, "chrome_rss_bytes"), "queues",
                        json_object_get(m, "queues")));
        }
        json_object_set_new(v, "nodes", nodes);
        json_decref(metrics);

        read_topic(c, "workers", FROM_BEGINNING, 0, keep_latest, workers);
        json_t *wl = json_array();
        json_object_foreach(workers, k, m)
        {
                json_array_append_new(
                    wl, json_pack("{s:O,s:O,s:O,s:O,s:O,s:O}", "node",
                                  json_object_get(m, "node_id"), "worker",
                                  json_object_get(m, "worker_id"), "state",
                                  json_object_get(m, "state"), "signal_id",
                                  json_object_get(m, "signal_id"), "recipe",
                                  json_object_get(m, "recipe"), "since",
                                  json_object_get(m, "since")));
        }
        json_object_set_new(v, "workers", wl);
        json_decref(workers);

        read_topic(c, "dlq", LAST_N, LAST_DLQ, append, dlq);
        json_t *dl = json_array(), *d;
        size_t i, n = json_array_size(dlq);
        /* the newest LAST_DLQ over all partitions, newest first */
        for (size_t taken = 0; taken < LAST_DLQ && taken < n; taken++) {
                size_t best = n;
                json_int_t bts = -1;
                json_array_foreach(dlq, i, d)
                {
                        json_int_t ts =
                            json_integer_value(json_object_get(d, "ts"));
                        if (!json_object_get(d, "_taken") && ts > bts) {
                                bts = ts;
                                best = i;
                        }
                }
                if (best == n)
                        break;
                d = json_array_get(dlq, best);
                json_object_set_new(d, "_taken", json_true());
                json_array_append_new(
                    dl, json_pack("{s:O,s:O,s:O,s:O,s:O}", "ts",
                                  json_object_get(d, "ts"), "signal_id",
                                  json_object_get(d, "signal_id"), "source",
                                  json_object_get(d, "source"), "node_id",
                                  json_object_get(d, "node_id"), "reason",
                                  json_object_get(d, "reason")));
        }
        json_object_set_new(v, "dead_letters", dl);
        json_decref(dlq);
        return v;
}

/* ------------------------------------------------------------------ page */

/* The cluster page: self-contained (no external resources: the network
 * may be closed), polls /cluster.json every 2 s and draws the per-priority
 * series as SVG lines. */
static const char page[] =
    "<!doctype html>\n"
    "<html><head><meta charset=\"utf-8\"><title>Parallel cluster</title>\n"
    "<style>\n"
    "body{font:14px system-ui,sans-serif;margin:16px;color:#222}\n"
    "h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:18px 0 6px}\n"
    "table{border-collapse:collapse}td,th{padding:2px "
    "10px;text-align:right;border-bottom:1px solid #ddd}\n"
    "td:first-child,th:first-child{text-align:left}\n"
    ".charts{display:flex;gap:24px;flex-wrap:wrap}.chart{border:1px solid "
    "#ccc;background:#fafafa}\n"
    ".legend "
    "span{margin-right:12px}.bad{color:#b00;font-weight:bold}#meta{color:#555}"
    "\n"
    "</style></head><body>\n"
    "<h1>Parallel cluster</h1><div id=\"meta\">loading…</div>\n"
    "<div class=\"charts\">\n"
    "<div><h2>Spins/s per priority (last 5 min)</h2><svg id=\"c-spins\" "
    "class=\"chart\" width=\"520\" height=\"200\"></svg></div>\n"
    "<div><h2>Wait p99 per priority, ms (last 5 min)</h2><svg id=\"c-wait\" "
    "class=\"chart\" width=\"520\" height=\"200\"></svg></div>\n"
    "</div><div class=\"legend\" id=\"legend\"></div>\n"
    "<h2>Priorities</h2><table id=\"prio\"></table>\n"
    "<h2>Nodes</h2><table id=\"nodes\"></table>\n"
    "<h2>Workers</h2><table id=\"workers\"></table>\n"
    "<h2>Recent dead letters</h2><table id=\"dlq\"></table>\n"
    "<script>\n"
    "\"use strict\";\n"
    "const colors={4:\"#d62728\",3:\"#ff7f0e\",2:\"#1f77b4\",1:\"#2ca02c\"};\n"
    "function esc(s){return "
    "String(s??\"-\").replace(/[&<>\"]/"
    "g,c=>({\"&\":\"&amp;\",\"<\":\"&lt;\",\">\":\"&gt;\",'\"':\"&quot;\"}[c]))"
    "}\n"
    "function fmt(v,d){return "
    "v===null||v===undefined?\"-\":Number(v).toFixed(d)}\n"
    "function chart(id,prios,key){\n"
    "  const svg=document.getElementById(id),W=520,H=200,P=30;\n"
    "  let max=0,n=0;\n"
    "  for(const p of prios)for(const v of "
    "p[key]||[])if(v!==null){max=Math.max(max,v);n=Math.max(n,p[key].length)}\n"
    "  let out=`<line x1=\"${P}\" y1=\"${H-P}\" x2=\"${W-5}\" y2=\"${H-P}\" "
    "stroke=\"#999\"/><line x1=\"${P}\" y1=\"5\" x2=\"${P}\" y2=\"${H-P}\" "
    "stroke=\"#999\"/>`+\n"
    "    `<text x=\"2\" y=\"14\" "
    "font-size=\"10\">${fmt(max,max<10?2:0)}</text><text x=\"2\" y=\"${H-P}\" "
    "font-size=\"10\">0</text>`;\n"
    "  let points=0;\n"
    "  for(const p of prios){\n"
    "    const s=p[key]||[];let d=\"\",k=0,dots=\"\";\n"
    "    s.forEach((v,i)=>{if(v===null)return;const "
    "x=P+(W-P-5)*(s.length>1?i/(s.length-1):0),y=H-P-(max>0?(H-P-5)*v/max:0);\n"
    "      d+=(d?\" L\":\"M\")+x.toFixed(1)+\" \"+y.toFixed(1);k++;\n"
    "      dots+=`<circle cx=\"${x.toFixed(1)}\" cy=\"${y.toFixed(1)}\" "
    "r=\"2.5\" fill=\"${colors[p.priority]||\"#555\"}\"/>`});\n"
    "    points+=k;\n"
    "    out+=`<path d=\"${d}\" fill=\"none\" "
    "stroke=\"${colors[p.priority]||\"#555\"}\" stroke-width=\"2\" "
    "data-priority=\"${p.priority}\" data-points=\"${k}\"/>`+dots;\n"
    "  }\n"
    "  out+=`<text x=\"${W-120}\" y=\"${H-8}\" font-size=\"10\">5 min ago → "
    "now</text>`;\n"
    "  svg.innerHTML=out;svg.dataset.points=points;\n"
    "}\n"
    "function render(v){\n"
    "  const g=v.group||{},pr=v.producer;\n"
    "  const members=(g.members||[]).map(m=>m.node);\n"
    "  document.getElementById(\"meta\").innerHTML=`group <b>${esc(g.id)}</b> "
    "${esc(g.state||g.error)}, ${members.length} member(s) · producer: `+\n"
    "    (pr&&pr.holder?`${esc(pr.holder)} (epoch ${pr.epoch}) "
    "${pr.active?\"lease held\":\"<span class=bad>lease "
    "expired</span>\"}`:\"<span class=bad>none</span>\")+\n"
    "    ` · ${new Date(v.ts).toISOString()}`;\n"
    "  const prios=v.priorities||[];\n"
    "  "
    "chart(\"c-spins\",prios,\"series_spins_per_s\");chart(\"c-wait\",prios,"
    "\"series_wait_p99_ms\");\n"
    "  document.getElementById(\"legend\").innerHTML=prios.map(p=>`<span "
    "style=\"color:${colors[p.priority]}\">■ "
    "p${p.priority}</span>`).join(\"\");\n"
    "  "
    "document.getElementById(\"prio\").innerHTML=\"<tr><th>priority</"
    "th><th>lag</th><th>spins/s</th><th>wait p50 ms</th><th>wait p99 "
    "ms</th></tr>\"+\n"
    "    "
    "prios.map(p=>`<tr><td>p${p.priority}</td><td>${fmt(p.lag,0)}</"
    "td><td>${fmt(p.spins_per_s,2)}</td><td>${fmt(p.wait_p50_ms,0)}</"
    "td><td>${fmt(p.wait_p99_ms,0)}</td></tr>`).join(\"\");\n"
    "  document.getElementById(\"nodes\").innerHTML=\"<tr><th>node</th><th>in "
    "group</th><th>workers busy/total</th><th>spins/s</th><th>wait p99 "
    "ms</th><th>lag</th><th>chrome MB</th><th>age s</th></tr>\"+\n"
    "    (v.nodes||[]).map(n=>`<tr class=\"node\" "
    "data-node=\"${esc(n.node)}\"><td>${esc(n.node)}</"
    "td><td>${members.includes(n.node)?\"yes\":\"<span "
    "class=bad>NO</span>\"}</td><td>${n.workers_busy}/${n.workers_total}</"
    "td><td>${fmt(n.throughput,2)}</td><td>${fmt(n.wait_p99_ms,0)}</"
    "td><td>${fmt(n.consumer_lag,0)}</"
    "td><td>${n.chrome_rss_bytes==null?\"-\":fmt(n.chrome_rss_bytes/"
    "1048576,0)}</td><td>${fmt(n.age_ms/1000,1)}</td></tr>`).join(\"\");\n"
    "  "
    "document.getElementById(\"workers\").innerHTML=\"<tr><th>worker</"
    "th><th>state</th><th>signal</th><th>recipe</th></tr>\"+\n"
    "    "
    "(v.workers||[]).map(w=>`<tr><td>${esc(w.node)}/${esc(w.worker)}</"
    "td><td>${esc(w.state)}</td><td>${esc(w.signal_id)}</"
    "td><td>${esc(w.recipe)}</td></tr>`).join(\"\");\n"
    "  const dl=v.dead_letters||[];\n"
    "  "
    "document.getElementById(\"dlq\").innerHTML=dl.length?\"<tr><th>signal</"
    "th><th>source</th><th>reason</th></tr>\"+\n"
    "    "
    "dl.map(d=>`<tr><td>${esc(d.signal_id)}</td><td>${esc(d.source)}</"
    "td><td>${esc(d.reason)}</td></tr>`).join(\"\"):\"<tr><td>none</td></"
    "tr>\";\n"
    "  document.body.dataset.rendered=\"1\";\n"
    "}\n"
    "async function tick(){\n"
    "  try{const r=await "
    "fetch(\"/cluster.json\",{cache:\"no-store\"});if(r.ok)render(await "
    "r.json());}\n"
    "  catch(e){document.getElementById(\"meta\").textContent=\"cannot reach "
    "parallel-ctl: \"+e}\n"
    "  setTimeout(tick,2000);\n"
    "}\n"
    "tick();\n"
    "</script></body></html>\n"
    "\n";

typedef struct served {
        pthread_mutex_t lock;
        char *json; /* the last view, or NULL */
} served_t;

static int h_page(void *opaque, const char *path, const char *query,
                  par_http_body_t *body, const char **ct)
{
        (void)opaque, (void)path, (void)query;
        *ct = "text/html; charset=utf-8";
        return par_http_body_append(body, page, sizeof(page) - 1) ? 500 : 200;
}

static int h_json(void *opaque, const char *path, const char *query,
                  par_http_body_t *body, const char **ct)
{
        served_t *s = opaque;
        int code = 503;
        (void)path, (void)query;
        *ct = "application/json";
        pthread_mutex_lock(&s->lock);
        if (s->json)
                code = par_http_body_append(body, s->json, strlen(s->json))
                           ? 500
                           : 200;
        pthread_mutex_unlock(&s->lock);
        if (code == 503)
                par_http_body_printf(body, "{\"error\":\"not ready\"}\n");
        return code;
}

/* ------------------------------------------------------------------ text */

static const char *jstr(json_t *o, const char *k, const char *def)
{
        const char *s = json_string_value(json_object_get(o, k));
        return s ? s : def;
}

static void fmt_num(char *buf, size_t n, json_t *v, const char *fmt)
{
        if (json_is_number(v))
                snprintf(buf, n, fmt, json_number_value(v));
        else
                snprintf(buf, n, "-");
}

static void print_text(json_t *v, FILE *f)
{
        json_t *g = json_object_get(v, "group"),
               *p = json_object_get(v, "producer");
        json_t *x;
        size_t i;
        char a[32], b[32], c2[32], d[32];

        fprintf(f, "group %s: %s, %zu member(s)", jstr(g, "id", "?"),
                jstr(g, "state", jstr(g, "error", "?")),
                json_array_size(json_object_get(g, "members")));
        if (json_is_object(p) && json_object_get(p, "holder"))
                fprintf(
                    f, "    producer: %s (epoch %lld, %s)\n",
                    jstr(p, "holder", "?"),
                    (long long)json_integer_value(json_object_get(p, "epoch")),
                    json_is_true(json_object_get(p, "active"))
                        ? "lease held"
                        : "LEASE EXPIRED");
        else
                fprintf(f, "    producer: %s\n",
                        json_is_object(p) ? jstr(p, "error", "?")
                                          : "no lease document");
        fprintf(f, "\n%-8s %8s %9s %12s %12s\n", "priority", "lag", "spins/s",
                "wait p50 ms", "wait p99 ms");
        json_array_foreach(json_object_get(v, "priorities"), i, x)
        {
                fmt_num(a, sizeof(a), json_object_get(x, "lag"), "%.0f");
                fmt_num(b, sizeof(b), json_object_get(x, "spins_per_s"),
                        "%.2f");
                fmt_num(c2, sizeof(c2), json_object_get(x, "wait_p50_ms"),
                        "%.0f");
                fmt_num(d, sizeof(d), json_object_get(x, "wait_p99_ms"),
                        "%.0f");
                fprintf(f, "p%-7lld %8s %9s %12s %12s\n",
                        (long long)json_integer_value(
                            json_object_get(x, "priority")),
                        a, b, c2, d);
        }
        fprintf(f, "\n%-16s %-9s %8s %8s %11s %8s %10s %7s\n", "node",
                "in group", "workers", "spins/s", "wait p99 ms", "lag",
                "chrome MB", "age s");
        json_array_foreach(json_object_get(v, "nodes"), i, x)
        {
                const char *node = jstr(x, "node", "?");
                bool member = false;
                size_t k;
                json_t *m;
                json_array_foreach(json_object_get(g, "members"), k, m)
                    member |= !strcmp(jstr(m, "node", ""), node);
                char w[32], t[32], wp[32], l[32], cm[32];
                snprintf(w, sizeof(w), "%lld/%lld",
                         (long long)json_integer_value(
                             json_object_get(x, "workers_busy")),
                         (long long)json_integer_value(
                             json_object_get(x, "workers_total")));
                fmt_num(t, sizeof(t), json_object_get(x, "throughput"), "%.2f");
                fmt_num(wp, sizeof(wp), json_object_get(x, "wait_p99_ms"),
                        "%.0f");
                fmt_num(l, sizeof(l), json_object_get(x, "consumer_lag"),
                        "%.0f");
                json_t *cr = json_object_get(x, "chrome_rss_bytes");
                if (json_is_integer(cr))
                        snprintf(cm, sizeof(cm), "%.0f",
                                 json_integer_value(cr) / 1048576.0);
                else
                        snprintf(cm, sizeof(cm), "-");
                fprintf(f, "%-16s %-9s %8s %8s %11s %8s %10s %7.1f\n", node,
                        member ? "yes" : "NO", w, t, wp, l, cm,
                        json_integer_value(json_object_get(x, "age_ms")) /
                            1000.0);
        }
        fprintf(f, "\n%-22s %-10s %-26s %s\n", "worker", "state", "signal",
                "recipe");
        json_array_foreach(json_object_get(v, "workers"), i, x)
        {
                char id[200];
                snprintf(id, sizeof(id), "%s/%s", jstr(x, "node", "?"),
                         jstr(x, "worker", "?"));
                fprintf(f, "%-22s %-10s %-26s %s\n", id, jstr(x, "state", "?"),
                        jstr(x, "signal_id", "-"), jstr(x, "recipe", "-"));
        }
        fprintf(f, "\nlast dead letters\n");
        if (!json_array_size(json_object_get(v, "dead_letters")))
                fprintf(f, "  (none)\n");
        json_array_foreach(json_object_get(v, "dead_letters"), i, x)
        {
                fprintf(f, "  %-24s %-9s %.100s\n",
                        jstr(x, "signal_id", "(undecodable)"),
                        jstr(x, "source", "?"), jstr(x, "reason", ""));
        }
}

int par_ctl_status(par_config_t *cfg, int argc, char **argv)
{
        static const struct option opts[] = {
            {"json", no_argument, NULL, 'j'},
            {"watch", no_argument, NULL, 'w'},
            {"interval-ms", required_argument, NULL, 'i'},
            {"http", required_argument, NULL, 'H'},
            {"help", no_argument, NULL, 'h'},
            {NULL, 0, NULL, 0},
        };
        bool as_json = false, watch = false;
        const char *listen = NULL;
        par_http_t *http = NULL;
        served_t served = {.json = NULL};
        long interval = 2000;
        ctx_t c = {.cfg = cfg};
        rd_kafka_conf_t *conf = NULL;
        par_error_t err = {0};
        char es[512], grp[128];
        int o, rc = 1;

        optind = 1;
        while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
                switch (o) {
                case 'j':
                        as_json = true;
                        break;
                case 'w':
                        watch = true;
                        break;
                case 'H':
                        listen = optarg;
                        watch = true;
                        break;
                case 'i':
                        interval = atol(optarg);
                        if (interval < 200) {
                                fprintf(stderr,
                                        "parallel-ctl status: "
                                        "--interval-ms: at least 200\n");
                                return 2;
                        }
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr,
                        "parallel-ctl status: unexpected argument %s (try "
                        "--help)\n",
                        argv[optind]);
                return 2;
        }
        c.levels = (int)par_config_int(cfg, "priority.levels");
        snprintf(c.group, sizeof(c.group), "%s",
                 par_config_str(cfg, "consumer.group"));
        mongoc_init();
        if (par_codec_new(&c.codec, &err) ||
            par_kafka_conf_new(&conf, cfg, "parallel-ctl-status", &err)) {
                fprintf(stderr, "parallel-ctl status: %s\n", err.msg);
                goto out;
        }
        /* assign() only; a private group id that never joins or commits */
        snprintf(grp, sizeof(grp), "parallel-ctl-status-%ld", (long)getpid());
        if (rd_kafka_conf_set(conf, "group.id", grp, es, sizeof(es)) ||
            rd_kafka_conf_set(conf, "enable.auto.commit", "false", es,
                              sizeof(es)) ||
            rd_kafka_conf_set(conf, "enable.partition.eof", "true", es,
                              sizeof(es))) {
                fprintf(stderr, "parallel-ctl status: %s\n", es);
                goto out;
        }
        if (!(c.rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, es, sizeof(es)))) {
                fprintf(stderr, "parallel-ctl status: %s\n", es);
                goto out;
        }
        conf = NULL;
        rd_kafka_poll_set_consumer(c.rk);
        pthread_mutex_init(&served.lock, NULL);
        if (listen &&
            (par_http_new(&http, listen, &err) ||
             par_http_route(http, "/", h_page, NULL, &err) ||
             par_http_route(http, "/cluster.json", h_json, &served, &err) ||
             par_http_start(http, &err))) {
                fprintf(stderr, "parallel-ctl status: %s\n", err.msg);
                goto out;
        }
        if (http) {
                /* the port line tells a script (or test) where to look */
                printf("parallel-ctl status: serving http://%s:%d/\n",
                       strncmp(listen, "[", 1) ? "127.0.0.1" : listen,
                       par_http_port(http));
                fflush(stdout);
        }
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        do {
                json_t *v = build(&c);
                if (http) {
                        char *s = json_dumps(v, JSON_COMPACT);
                        pthread_mutex_lock(&served.lock);
                        free(served.json);
                        served.json = s;
                        pthread_mutex_unlock(&served.lock);
                } else if (as_json) {
                        json_dumpf(v, stdout, JSON_COMPACT);
                        fputc('\n', stdout);
                } else {
                        if (watch)
                                fputs("\033[H\033[2J", stdout);
                        print_text(v, stdout);
                }
                fflush(stdout);
                json_decref(v);
                for (long t = 0; watch && !stop_watch && t < interval; t += 100)
                        par_clock_sleep_ms(100);
        } while (watch && !stop_watch);
        rc = 0;
out:
        par_http_destroy(http);
        free(served.json);
        if (c.rk) {
                rd_kafka_consumer_close(c.rk);
                rd_kafka_destroy(c.rk);
        }
        if (conf)
                rd_kafka_conf_destroy(conf);
        par_codec_destroy(c.codec);
        return rc;
}
