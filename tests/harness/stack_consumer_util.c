/* stack_consumer_util.c — see stack_consumer_util.h. */
#include "stack_consumer_util.h"

/* The consumer's own topics of the world. */
static int sc_topics(su_ctx_t *c, int create)
{
        static const char *const sfx[] = {"results", "metrics", "workers"};
        return su_topics(c, sfx, 3, create);
}

int sc_init(su_ctx_t *c, const char *what)
{
        if (su_init(c, what) || sc_topics(c, 1))
                return -1;
        return 0;
}

/* The test's own Kafka producer (lazily created, flushed per batch). */
static rd_kafka_t *sc_prod;

/* Publishes one signal as parallel-producer would (Avro Signal, key =
 * resource or id, traceparent header) — so consumer tests do not depend on
 * the producer. */
static int sc_publish(su_ctx_t *c, const char *id, int priority,
                      const char *recipe, const char *resource,
                      int64_t created_at)
{
        char es[512], topic[160], tp[PAR_TRACEPARENT_LEN + 1];
        par_trace_t t;
        void *buf = NULL;
        size_t len = 0;
        par_error_t err;

        if (!sc_prod) {
                rd_kafka_conf_t *conf = rd_kafka_conf_new();
                rd_kafka_conf_set(conf, "bootstrap.servers", c->kafka, es,
                                  sizeof(es));
                rd_kafka_conf_set(conf, "linger.ms", "5", es, sizeof(es));
                if (!(sc_prod = rd_kafka_new(RD_KAFKA_PRODUCER, conf, es,
                                             sizeof(es))))
                        return -1;
        }
        par_kafka_trace_root(&t);
        par_kafka_trace_format(&t, tp);
        json_t *v = json_pack("{s:s,s:i,s:s,s:s,s:{s:s},s:I,s:n,s:i,s:s}", "id",
                              id, "priority", priority, "recipe", recipe,
                              "resource", resource ? resource : id, "params",
                              "n", "1", "created_at", (json_int_t)created_at,
                              "expires_at", "attempt", 0, "traceparent", tp);
        if (!v || par_codec_encode(c->codec, PAR_SCHEMA_SIGNAL, v, &buf, &len,
                                   &err)) {
                fprintf(stderr, "sc_publish: %s\n", v ? err.msg : "nomem");
                json_decref(v);
                return -1;
        }
        json_decref(v);
        snprintf(topic, sizeof(topic), "%s.signals.p%d", c->name, priority);
        const char *key = resource ? resource : id;
        rd_kafka_headers_t *h = rd_kafka_headers_new(1);
        rd_kafka_header_add(h, "traceparent", -1, tp, -1);
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(sc_prod, RD_KAFKA_V_TOPIC(topic),
                                      RD_KAFKA_V_KEY(key, strlen(key)),
                                      RD_KAFKA_V_VALUE(buf, len),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                                      RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END)) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(sc_prod, 10);
        if (e) {
                rd_kafka_headers_destroy(h);
                free(buf);
                return -1;
        }
        return 0;
}

static void sc_flush(void)
{
        if (sc_prod)
                rd_kafka_flush(sc_prod, 30000);
}

static void sc_prod_destroy(void)
{
        if (sc_prod) {
                rd_kafka_flush(sc_prod, 30000);
                rd_kafka_destroy(sc_prod);
                sc_prod = NULL;
        }
}

void sc_cleanup(su_ctx_t *c)
{
        sc_prod_destroy();
        sc_topics(c, 0);
        su_cleanup(c);
}

/*
 * Inserts n pending signals: priority, recipe, resource "res-<r>" with r =
 * res_base + i % nres (nres 0: no resource), and publishes each to its
 * signal topic in insertion order. Each is added to the ledger (its idx is
 * the insertion order). Returns how many.
 */
size_t sc_insert(su_ctx_t *c, su_ledger_t *l, size_t n, int priority,
                 const char *recipe, int nres, int res_base)
{
        size_t done = 0;
        while (done < n) {
                bson_t reply;
                bson_error_t e;
                size_t k = n - done < 500 ? n - done : 500;
                mongoc_bulk_operation_t *b =
                    mongoc_collection_create_bulk_operation_with_opts(
                        c->signals, NULL);
                for (size_t i = 0; i < k; i++) {
                        bson_t d = BSON_INITIALIZER;
                        bson_oid_t oid;
                        char id[25];
                        int res =
                            nres ? res_base + (int)((done + i) % nres) : -1;
                        su_signal_doc(&d, &oid, priority, res, recipe);
                        bson_oid_to_string(&oid, id);
                        su_ledger_add(l, id, priority, res);
                        mongoc_bulk_operation_insert(b, &d);
                        bson_destroy(&d);
                }
                bool ok = mongoc_bulk_operation_execute(b, &reply, &e);
                bson_destroy(&reply);
                mongoc_bulk_operation_destroy(b);
                if (!ok) {
                        fprintf(stderr, "sc_insert: %s\n", e.message);
                        break;
                }
                for (size_t i = l->n - k; i < l->n; i++) {
                        char res[32];
                        su_entry_t *x = &l->e[i];
                        snprintf(res, sizeof(res), "res-%d", x->resource);
                        if (sc_publish(c, x->id, priority, recipe,
                                       x->resource >= 0 ? res : NULL,
                                       par_clock_wall_ms()))
                                return done;
                }
                sc_flush();
                done += k;
        }
        return done;
}

/*
 * Spawns a consumer node named tag for this world (its own HTTP port,
 * fast failure detection, 1 s metrics), with extra -X "key=value" options
 * (NULL-terminated). Waits up to 20 s for its "started" line.
 */
int sc_node_start(su_ctx_t *c, su_proc_t *p, const char *tag, ...)
{
        char *argv[80], xs[32][256], bin[512];
        int n = 0, k = 0;
        va_list ap;

        memset(p, 0, sizeof(*p));
        snprintf(bin, sizeof(bin), "%s/parallel-consumer",
                 tu_env("PARALLEL_BINARY_DIR", "."));
        snprintf(p->log, sizeof(p->log), "%s/%s-%s.log", c->logdir, c->name,
                 tag);
        argv[n++] = bin;
#define SC_X(...)                                                              \
        do {                                                                   \
                snprintf(xs[k], sizeof(xs[k]), __VA_ARGS__);                   \
                argv[n++] = "-X";                                              \
                argv[n++] = xs[k++];                                           \
        } while (0)
        SC_X("mongo.uri=%s", c->mongo_uri);
        SC_X("mongo.database=%s", c->name);
        SC_X("kafka.bootstrap.servers=%s", c->kafka);
        SC_X("topic.prefix=%s", c->name);
        SC_X("consumer.group=%s", c->name);
        SC_X("node.id=%s", tag);
        SC_X("http.listen=127.0.0.1:0");
        SC_X("recipes.dir=");
        SC_X("metrics.interval=1s");
        SC_X("kafka.session.timeout.ms=6000");
        SC_X("kafka.heartbeat.interval.ms=1000");
        va_start(ap, tag);
        for (const char *x; (x = va_arg(ap, const char *)) && k < 32;)
                SC_X("%s", x);
        va_end(ap);
#undef SC_X
        argv[n] = NULL;
        if ((p->pid = fork()) < 0)
                return -1;
        if (p->pid == 0) {
                FILE *f = freopen(p->log, "a", stderr);
                (void)f;
                dup2(2, 1);
                execv(bin, argv);
                _exit(127);
        }
        double deadline = par_clock_mono_s() + 20;
        while (par_clock_mono_s() < deadline && !p->port) {
                FILE *f = fopen(p->log, "r");
                char line[1024];
                while (f && fgets(line, sizeof(line), f)) {
                        char *s = strstr(line, "event=started");
                        char *q = s ? strstr(s, " http=") : NULL;
                        if (q)
                                p->port = atoi(q + 6);
                }
                if (f)
                        fclose(f);
                int st;
                if (!p->port && waitpid(p->pid, &st, WNOHANG) == p->pid) {
                        fprintf(stderr, "node %s exited at start, see %s\n",
                                tag, p->log);
                        p->pid = 0;
                        return -1;
                }
                if (!p->port)
                        par_clock_sleep_ms(50);
        }
        return p->port ? 0 : -1;
}

int sc_node_held(const su_proc_t *p, int by_level[4])
{
        char buf[65536];
        json_t *st, *parts, *by;
        int held = -1;

        if (su_http_get(p->port, "/status", buf, sizeof(buf)) != 200 ||
            !(st = json_loads(buf, 0, NULL)))
                return -1;
        parts = json_object_get(st, "partitions");
        by = json_object_get(parts, "by_level");
        if (json_is_integer(json_object_get(parts, "held")) &&
            json_array_size(by) == 4) {
                held = (int)json_integer_value(json_object_get(parts, "held"));
                for (int L = 0; L < 4; L++)
                        by_level[L] =
                            (int)json_integer_value(json_array_get(by, L));
        }
        json_decref(st);
        return held;
}

int sc_reader_new(su_ctx_t *c, sc_reader_t *r, size_t cap)
{
        char es[512], name[128];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();

        memset(r, 0, sizeof(*r));
        r->recs = calloc(cap, sizeof(*r->recs));
        r->cap = cap;
        rd_kafka_conf_set(conf, "bootstrap.servers", c->kafka, es, sizeof(es));
        rd_kafka_conf_set(conf, "group.id", "sc-reader", es, sizeof(es));
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", es, sizeof(es));
        if (!(r->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, es, sizeof(es))))
                return -1;
        rd_kafka_topic_partition_list_t *tp =
            rd_kafka_topic_partition_list_new(8);
        for (int part = 0; part < SU_PARTITIONS; part++) {
                snprintf(name, sizeof(name), "%s.results", c->name);
                rd_kafka_topic_partition_list_add(tp, name, part)->offset =
                    RD_KAFKA_OFFSET_BEGINNING;
                snprintf(name, sizeof(name), "%s.dlq", c->name);
                rd_kafka_topic_partition_list_add(tp, name, part)->offset =
                    RD_KAFKA_OFFSET_BEGINNING;
        }
        rd_kafka_assign(r->rk, tp);
        rd_kafka_topic_partition_list_destroy(tp);
        return r->recs ? 0 : -1;
}

void sc_reader_destroy(sc_reader_t *r)
{
        if (r->rk) {
                rd_kafka_consumer_close(r->rk);
                rd_kafka_destroy(r->rk);
        }
        free(r->recs);
}

static int64_t sc_ts(json_t *v, const char *k)
{
        return json_integer_value(json_object_get(v, k));
}

int sc_is_final(const char *s)
{
        return !strcmp(s, "done") || !strcmp(s, "failed") ||
               !strcmp(s, "dead") || !strcmp(s, "expired");
}

void sc_take(su_ctx_t *c, sc_reader_t *r, su_ledger_t *l, rd_kafka_message_t *m)
{
        json_t *v = NULL;
        const char *schema = NULL;
        par_error_t err;

        if (par_codec_decode(c->codec, m->payload, m->len, NULL, &v, &schema,
                             &err)) {
                fprintf(stderr, "sc: undecodable: %s\n", err.msg);
                return;
        }
        bool dl = !strcmp(schema, PAR_SCHEMA_DLQ);
        const char *id = json_string_value(json_object_get(v, "signal_id"));
        su_entry_t *e = id ? su_ledger_find(l, id) : NULL;
        if (!e || e->idx - 1 >= r->cap) {
                r->unknown++;
                json_decref(v);
                return;
        }
        sc_rec_t *rec = &r->recs[e->idx - 1];
        if (dl) {
                r->dead_letters++;
                rec->dlq++;
                json_decref(v);
                return;
        }
        r->results++;
        const char *st = json_string_value(json_object_get(v, "status"));
        if (sc_is_final(st))
                rec->finals++;
        if (!strcmp(st, "done"))
                rec->dones++;
        if (!strcmp(st, "retrying"))
                rec->retrying++;
        if (!strcmp(st, "skipped"))
                rec->skipped++;
        if (rec->nres < SC_MAX_RESULTS) {
                sc_result_t *x = &rec->r[rec->nres++];
                snprintf(x->status, sizeof(x->status), "%s", st);
                x->attempt =
                    (int)json_integer_value(json_object_get(v, "attempt"));
                x->created_at = sc_ts(v, "created_at");
                x->queued_at = sc_ts(v, "queued_at");
                x->claimed_at = sc_ts(v, "claimed_at");
                x->started_at = sc_ts(v, "started_at");
                x->finished_at = sc_ts(v, "finished_at");
                snprintf(x->node, sizeof(x->node), "%s",
                         json_string_value(json_object_get(v, "node_id")));
                json_t *er = json_object_get(v, "error");
                if (json_is_object(er))
                        snprintf(
                            x->error, sizeof(x->error), "%s: %s",
                            json_string_value(json_object_get(er, "code")),
                            json_string_value(json_object_get(er, "message")));
                const char *vk;
                json_t *vv;
                json_object_foreach(json_object_get(v, "values"), vk, vv)
                {
                        if (!x->value[0])
                                snprintf(
                                    x->value, sizeof(x->value), "%s=%s", vk,
                                    json_is_string(vv) ? json_string_value(vv)
                                                       : "?");
                }
        }
        json_decref(v);
}

/* Signals (of the first `upto` ledger entries) without a final result. */
static size_t sc_missing(sc_reader_t *r, size_t upto)
{
        size_t miss = 0;
        for (size_t i = 0; i < upto && i < r->cap; i++)
                miss += r->recs[i].finals == 0;
        return miss;
}

/* Reads results until the first `upto` signals all have a final result and
 * settle_ms passed without news, or timeout_s. Returns signals missing. */
size_t sc_read(su_ctx_t *c, sc_reader_t *r, su_ledger_t *l, size_t upto,
               double timeout_s, int settle_ms)
{
        double deadline = par_clock_mono_s() + timeout_s,
               last = par_clock_mono_s();
        while (par_clock_mono_s() < deadline) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, 100);
                if (!m) {
                        if ((par_clock_mono_s() - last) * 1000 > settle_ms &&
                            !sc_missing(r, upto))
                                break;
                        continue;
                }
                if (!m->err) {
                        sc_take(c, r, l, m);
                        last = par_clock_mono_s();
                }
                rd_kafka_message_destroy(m);
        }
        return sc_missing(r, upto);
}

/* Signals with at least one final result so far. */
size_t sc_finals(sc_reader_t *r)
{
        size_t f = 0;
        for (size_t i = 0; i < r->cap; i++)
                f += r->recs[i].finals > 0;
        return f;
}

/* Reads results until at least want signals are final (or timeout_s). */
void sc_read_until(su_ctx_t *c, sc_reader_t *r, su_ledger_t *l, size_t want,
                   double timeout_s)
{
        double deadline = par_clock_mono_s() + timeout_s;
        while (sc_finals(r) < want && par_clock_mono_s() < deadline) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, 100);
                if (!m)
                        continue;
                if (!m->err)
                        sc_take(c, r, l, m);
                rd_kafka_message_destroy(m);
        }
}

/* Counts documents by final/non-final status; *nonfinal gets the rest. */
size_t sc_docs_final(su_ctx_t *c, size_t *nonfinal)
{
        size_t fin = 0, other = 0;
        bson_t q = BSON_INITIALIZER;
        mongoc_cursor_t *cur =
            mongoc_collection_find_with_opts(c->signals, &q, NULL, NULL);
        const bson_t *d;
        while (mongoc_cursor_next(cur, &d)) {
                bson_iter_t it;
                const char *s = "";
                if (bson_iter_init_find(&it, d, "status") &&
                    BSON_ITER_HOLDS_UTF8(&it))
                        s = bson_iter_utf8(&it, NULL);
                if (sc_is_final(s))
                        fin++;
                else
                        other++;
        }
        mongoc_cursor_destroy(cur);
        if (nonfinal)
                *nonfinal = other;
        return fin;
}

/* Prints up to max documents that are not final (diagnostics). */
void sc_dump_nonfinal(su_ctx_t *c, int max)
{
        bson_t *q = BCON_NEW("status", "{", "$nin", "[", BCON_UTF8("done"),
                             BCON_UTF8("failed"), BCON_UTF8("dead"),
                             BCON_UTF8("expired"), "]", "}");
        mongoc_cursor_t *cur =
            mongoc_collection_find_with_opts(c->signals, q, NULL, NULL);
        const bson_t *d;
        while (max-- > 0 && mongoc_cursor_next(cur, &d)) {
                char *j = bson_as_relaxed_extended_json(d, NULL);
                fprintf(stderr, "   not final: %s\n", j);
                bson_free(j);
        }
        mongoc_cursor_destroy(cur);
        bson_destroy(q);
}

static int sc_cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return x < y ? -1 : x > y;
}

/* The q-quantile (nearest rank) of v[0..n) (sorted in place). */
int64_t sc_quantile(int64_t *v, size_t n, double q)
{
        if (!n)
                return 0;
        qsort(v, n, sizeof(*v), sc_cmp_i64);
        size_t k = (size_t)(q * n + 0.999999);
        if (k < 1)
                k = 1;
        if (k > n)
                k = n;
        return v[k - 1];
}
