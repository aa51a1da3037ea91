/*
 * stack_e2e_test.c — the whole pipeline, end to end, through the real
 * binaries: signals inserted into MongoDB with bulk inserts, the real
 * parallel-producer tailing the change stream into the signal topics, and
 * three real parallel-consumer nodes running them — `noop` and a real
 * browser recipe (tests/fixtures/recipes/bench.json on the fixture server:
 * type a query, click, extract the answer in Chromium).
 *
 * 3,000 signals at mixed priorities (every 30th a browser one, 100 in all;
 * half of the rest on 40 resources). A ledger of the ids inserted is then
 * checked against <prefix>.results and the documents: every signal has
 * exactly one final result and it is `done` (browser ones carrying the
 * value their query implies), every document ended `done` (browser ones
 * with the value in result.values), zero missing, and no signal executed
 * twice (nothing crashed: every process is alive until stopped and exits 0
 * on SIGTERM). The producer is stopped once it has delivered everything
 * (see run()). Prints the end-to-end latency (created → finished).
 */
#include "base/clock.h"
#include "fixture_server.h"
#include "stack_consumer_util.h"

#define N        3000
#define EVERY    30 /* every EVERY-th signal runs the browser recipe */
#define NBROWSER (N / EVERY)
#define NRES     40
#define BATCH    500

static int is_browser(size_t i)
{
        return i % EVERY == EVERY - 1;
}

/* The value bench.json extracts for signal i. */
static void expected(size_t i, char *buf, size_t n)
{
        snprintf(buf, n, "answer=answer:q%zu", i);
}

/*
 * Inserts the N signals with ordered bulk inserts of BATCH documents:
 * signal i has priority 1 + i % 4; browser ones run `bench` with params
 * base (the fixture server) and q = "q<i>"; even noop ones are on resource
 * res-<i % NRES>. Returns the number inserted.
 */
static size_t insert_all(su_ctx_t *c, su_ledger_t *l, int port)
{
        char base[64];
        size_t done = 0;

        snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);
        while (done < N) {
                bson_t opts = BSON_INITIALIZER, reply;
                bson_error_t e;
                size_t k = N - done < BATCH ? N - done : BATCH;

                BSON_APPEND_BOOL(&opts, "ordered", true);
                mongoc_bulk_operation_t *b =
                    mongoc_collection_create_bulk_operation_with_opts(
                        c->signals, &opts);
                for (size_t j = 0; j < k; j++) {
                        size_t i = done + j;
                        bson_t d = BSON_INITIALIZER, params;
                        bson_oid_t oid;
                        char id[25], res[32], q[32];
                        int prio = 1 + (int)(i % 4);
                        int r =
                            !is_browser(i) && i % 2 == 0 ? (int)(i % NRES) : -1;

                        bson_oid_init(&oid, NULL);
                        BSON_APPEND_OID(&d, "_id", &oid);
                        BSON_APPEND_INT32(&d, "priority", prio);
                        BSON_APPEND_UTF8(&d, "recipe",
                                         is_browser(i) ? "bench" : "noop");
                        if (r >= 0) {
                                snprintf(res, sizeof(res), "res-%d", r);
                                BSON_APPEND_UTF8(&d, "resource", res);
                        }
                        BSON_APPEND_DOCUMENT_BEGIN(&d, "params", &params);
                        if (is_browser(i)) {
                                snprintf(q, sizeof(q), "q%zu", i);
                                BSON_APPEND_UTF8(&params, "base", base);
                                BSON_APPEND_UTF8(&params, "q", q);
                        } else {
                                BSON_APPEND_UTF8(&params, "n", "1");
                        }
                        bson_append_document_end(&d, &params);
                        BSON_APPEND_DATE_TIME(&d, "created_at",
                                              par_clock_wall_ms());
                        BSON_APPEND_UTF8(&d, "status", "pending");
                        bson_oid_to_string(&oid, id);
                        su_ledger_add(l, id, prio, r);
                        mongoc_bulk_operation_insert(b, &d);
                        bson_destroy(&d);
                }
                bool ok = mongoc_bulk_operation_execute(b, &reply, &e);
                bson_destroy(&reply);
                mongoc_bulk_operation_destroy(b);
                bson_destroy(&opts);
                if (!ok) {
                        fprintf(stderr, "   insert: %s\n", e.message);
                        break;
                }
                done += k;
        }
        return done;
}

/* Checks every document: status done, browser ones with their value. */
static void check_documents(su_ctx_t *c, su_ledger_t *l)
{
        size_t docs = 0, not_done = 0, bad_value = 0, unknown = 0;
        bson_t q = BSON_INITIALIZER;
        mongoc_cursor_t *cur =
            mongoc_collection_find_with_opts(c->signals, &q, NULL, NULL);
        const bson_t *d;

        while (mongoc_cursor_next(cur, &d)) {
                bson_iter_t it, v;
                char id[25], want[64];
                const char *st = "";

                docs++;
                if (!bson_iter_init_find(&it, d, "_id") ||
                    !BSON_ITER_HOLDS_OID(&it)) {
                        unknown++;
                        continue;
                }
                bson_oid_to_string(bson_iter_oid(&it), id);
                su_entry_t *e = su_ledger_find(l, id);
                if (!e) {
                        unknown++;
                        continue;
                }
                if (bson_iter_init_find(&it, d, "status") &&
                    BSON_ITER_HOLDS_UTF8(&it))
                        st = bson_iter_utf8(&it, NULL);
                if (strcmp(st, "done")) {
                        if (not_done++ < 5) {
                                char *j =
                                    bson_as_relaxed_extended_json(d, NULL);
                                fprintf(stderr, "   not done: %s\n", j);
                                bson_free(j);
                        }
                        continue;
                }
                if (!is_browser(e->idx - 1))
                        continue;
                expected(e->idx - 1, want, sizeof(want));
                if (!bson_iter_init(&it, d) ||
                    !bson_iter_find_descendant(&it, "result.values.answer",
                                               &v) ||
                    !BSON_ITER_HOLDS_UTF8(&v) ||
                    strcmp(bson_iter_utf8(&v, NULL), want + strlen("answer=")))
                        bad_value++;
        }
        mongoc_cursor_destroy(cur);
        CHECKF(docs == N && unknown == 0, "%zu documents, %zu unknown", docs,
               unknown);
        CHECKF(not_done == 0, "%zu documents not done", not_done);
        CHECKF(bad_value == 0, "%zu browser documents without their value",
               bad_value);
}

/* Everything the test starts, so that it is stopped even when a REQUIRE
 * returns early. */
typedef struct world {
        su_ctx_t c;
        su_ledger_t l;
        sc_reader_t r;
        su_proc_t prod, nodes[3];
        fx_server_t fx;
        int fx_up, ctx_up, ledger_up, reader_up;
} world_t;

static const char *tags[3] = {"n1", "n2", "n3"};

static void run(world_t *w)
{
        su_ctx_t *c = &w->c;
        sc_reader_t *r = &w->r;
        char pages[600], rdir[700];
        static int64_t lat_noop[N], lat_browser[N], lag[N];
        size_t nn = 0, nb = 0, ng = 0;

        snprintf(pages, sizeof(pages), "%s/tests/fixtures/pages",
                 tu_env("PARALLEL_SOURCE_DIR", "."));
        snprintf(rdir, sizeof(rdir), "recipes.dir=%s/tests/fixtures/recipes",
                 tu_env("PARALLEL_SOURCE_DIR", "."));
        REQUIRE(fx_server_start(&w->fx, pages) == 0);
        w->fx_up = 1;
        w->ctx_up = 1; /* su_cleanup copes with a partial world */
        REQUIRE(sc_init(c, "e2e") == 0);
        REQUIRE(su_ledger_init(&w->l, N, NRES) == 0);
        w->ledger_up = 1;
        REQUIRE(sc_reader_new(c, r, N) == 0);
        w->reader_up = 1;
        for (int i = 0; i < 3; i++)
                REQUIRE(sc_node_start(c, &w->nodes[i], tags[i], rdir,
                                      "workers.min=2", "workers.max=4",
                                      "spin.timeout=30s", NULL) == 0);
        REQUIRE(su_producer_start(c, &w->prod, "producer", NULL) == 0);
        /* Inserting during the producer's start-up backfill would
         * legitimately publish some signals twice (scan + stream). */
        REQUIRE(su_wait_log(&w->prod, "event=pipeline.started", 30) == 0);

        double t0 = par_clock_mono_s();
        size_t ins = insert_all(c, &w->l, w->fx.port);
        double ins_s = par_clock_mono_s() - t0;
        int st;
        REQUIRE(ins == N);

        /* The producer stays up until every signal is final, as in
         * production: it then also reads every claim and finish the
         * consumers write, as update events it must let pass. */
        double deadline = par_clock_mono_s() + 120;
        double delivered = 0;
        while (par_clock_mono_s() < deadline &&
               (delivered = su_metric(w->prod.port,
                                      "parallel_producer_delivered_total")) < N)
                sc_read_until(c, r, &w->l, N, 0.5);
        double prod_s = par_clock_mono_s() - t0;
        /* At least once: a pipeline restart may deliver some twice (the
         * consumers then skip the duplicates). */
        CHECKF(delivered >= N, "the producer delivered %.0f signals",
               delivered);
        size_t missing = sc_read(c, r, &w->l, N, 300, 2000);
        double secs = par_clock_mono_s() - t0;
        CHECKF(missing == 0, "%zu signals without a final result", missing);
        CHECK(waitpid(w->prod.pid, &st, WNOHANG) == 0); /* still alive */
        int prc = su_producer_stop(&w->prod, SIGTERM, 30);
        CHECKF(prc == 0, "producer exit %d", prc);

        /* Nothing crashed during the run. */
        int alive = 0;
        for (int i = 0; i < 3; i++)
                alive += waitpid(w->nodes[i].pid, &st, WNOHANG) == 0;
        CHECKF(alive == 3, "%d of 3 nodes alive after the run", alive);

        /* The ledger against the results: one final result per signal, and
         * it is `done` — no signal executed twice. */
        size_t twice = 0, not_done = 0, bad_value = 0, skipped = 0;
        for (size_t i = 0; i < N; i++) {
                sc_rec_t *x = &r->recs[i];
                char want[64];
                skipped += (size_t)x->skipped;
                if (x->finals != 1 || x->dones != 1) {
                        if (x->finals > 1 || x->dones > 1)
                                twice++;
                        else
                                not_done++;
                        continue;
                }
                for (int k = 0; k < x->nres; k++) {
                        sc_result_t *y = &x->r[k];
                        if (strcmp(y->status, "done"))
                                continue;
                        lag[ng++] = y->queued_at - y->created_at;
                        if (is_browser(i)) {
                                expected(i, want, sizeof(want));
                                if (strcmp(y->value, want))
                                        bad_value++;
                                lat_browser[nb++] =
                                    y->finished_at - y->created_at;
                        } else {
                                lat_noop[nn++] = y->finished_at - y->created_at;
                        }
                }
        }
        CHECKF(twice == 0, "%zu signals executed or finished twice", twice);
        CHECKF(not_done == 0, "%zu signals whose final result is not done",
               not_done);
        CHECKF(bad_value == 0, "%zu browser results without their value",
               bad_value);
        CHECKF(nb == NBROWSER && nn == N - NBROWSER, "%zu browser, %zu noop",
               nb, nn);
        CHECK(r->unknown == 0 && r->dead_letters == 0);
        check_documents(c, &w->l);

        /* Every browser spin took a clean context, and /metrics says where
         * it came from (refreshed every metrics.interval, 5 s). */
        double ctx = 0, stock = 0;
        for (double until = par_clock_mono_s() + 12; par_clock_mono_s() < until;
             par_clock_sleep_ms(500)) {
                ctx = stock = 0;
                for (int i = 0; i < 3; i++) {
                        ctx +=
                            su_metric_sum(w->nodes[i].port,
                                          "parallel_browser_contexts_total{");
                        stock += su_metric(w->nodes[i].port,
                                           "parallel_browser_contexts_total{"
                                           "source=\"stock\"}");
                }
                if (ctx >= NBROWSER)
                        break;
        }
        CHECKF(ctx >= NBROWSER && stock > 0,
               "clean contexts on /metrics: %.0f (%.0f from the stock) for "
               "%d browser spins",
               ctx, stock, NBROWSER);

        fprintf(stderr,
                "   %d signals (%d browser) via the producer and 3 nodes: "
                "inserted in %.1f s, all in Kafka in %.1f s, all final in "
                "%.1f s; producer deliveries %.0f, skipped deliveries %zu\n",
                N, NBROWSER, ins_s, prod_s, secs, delivered, skipped);
        fprintf(stderr,
                "   created -> finished: noop p50 %lld ms p99 %lld ms; "
                "browser p50 %lld ms p99 %lld ms; of which created -> "
                "in Kafka (the producer) p50 %lld ms p99 %lld ms\n",
                (long long)sc_quantile(lat_noop, nn, 0.5),
                (long long)sc_quantile(lat_noop, nn, 0.99),
                (long long)sc_quantile(lat_browser, nb, 0.5),
                (long long)sc_quantile(lat_browser, nb, 0.99),
                (long long)sc_quantile(lag, ng, 0.5),
                (long long)sc_quantile(lag, ng, 0.99));

        /* Graceful stops: every process exits 0. */
        for (int i = 0; i < 3; i++) {
                int rc = su_producer_stop(&w->nodes[i], SIGTERM, 40);
                CHECKF(rc == 0, "%s exit %d", tags[i], rc);
        }
}

/* Stops whatever is still running and deletes the world. */
static void teardown(world_t *w)
{
        for (int i = 0; i < 3; i++)
                if (w->nodes[i].pid > 0)
                        su_producer_stop(&w->nodes[i], SIGKILL, 10);
        if (w->prod.pid > 0)
                su_producer_stop(&w->prod, SIGKILL, 10);
        if (w->reader_up)
                sc_reader_destroy(&w->r);
        if (w->ledger_up)
                su_ledger_free(&w->l);
        if (w->ctx_up)
                sc_cleanup(&w->c);
        if (w->fx_up)
                fx_server_stop(&w->fx);
}

static void test_e2e(void)
{
        static world_t w;
        run(&w);
        teardown(&w);
}

TEST_MAIN(test_e2e)
