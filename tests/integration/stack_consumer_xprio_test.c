/*
 * stack_consumer_xprio_test.c — a resource is exclusive cluster-wide, also
 * across priorities.
 *
 * Signals of one resource at different priorities travel in different
 * topics, so different nodes can receive them at the same time; only the
 * resource lock in MongoDB (claim.resource_lock) keeps them apart. 128
 * signals on 4 resources, spread evenly over all 4 priorities, run on 3
 * nodes (the third joins at 20 %: a rebalance) with Chromium and a recipe
 * that takes ~200 ms (navigate, then wait until performance.now() > 200). From
 * the results' timings, per resource, no two executions (claimed_at ..
 * finished_at; with the lock, claimed_at is when the worker held claim and
 * lock) may overlap; every signal ends with exactly one done result, on its
 * first attempt (waiting for a lock is not an attempt; a spin that failed
 * transiently and was retried is), and no lock is left behind.
 *
 * PARALLEL_TEST_RESOURCE_LOCK=false runs the nodes with the lock off, to
 * show that the test catches what the lock prevents (it then fails).
 */
#include <sys/stat.h>

#include "base/clock.h"
#include "fixture_server.h"
#include "stack_consumer_util.h"

#define NRES   4
#define NPRIO  4
#define ROUNDS 8
#define N      (ROUNDS * NPRIO * NRES)

typedef struct ex {
        int64_t start, end;   /* claimed_at .. finished_at */
        int64_t sstart, send; /* started_at .. finished_at (the spin) */
        int prio;
        char node[64];
} ex_t;

static int by_start(const void *a, const void *b)
{
        const ex_t *x = a, *y = b;
        if (x->start != y->start)
                return x->start < y->start ? -1 : 1;
        return x->end < y->end ? -1 : x->end > y->end;
}

static int by_sstart(const void *a, const void *b)
{
        const ex_t *x = a, *y = b;
        if (x->sstart != y->sstart)
                return x->sstart < y->sstart ? -1 : 1;
        return x->send < y->send ? -1 : x->send > y->send;
}

/* The nodes' log lines about one signal (why it ran more than once). */
static void print_log_lines(const su_proc_t *nodes, int n, const char *id)
{
        char line[1024];
        for (int i = 0; i < n; i++) {
                FILE *f = fopen(nodes[i].log, "r");
                if (!f)
                        continue;
                while (fgets(line, sizeof(line), f))
                        if (strstr(line, id))
                                fprintf(stderr, "   [%s] %s", nodes[i].log,
                                        line);
                fclose(f);
        }
}

static void test_xprio(void)
{
        su_ctx_t c;
        su_ledger_t l;
        sc_reader_t r;
        su_proc_t nodes[3];
        fx_server_t fx;
        static ex_t ex[NRES][N];
        size_t nex[NRES] = {0};
        char dir[] = "/tmp/parallel-xprio-XXXXXX", pages[600], recipe[1024],
             rdir[700], path[700], lock[64];
        const char *lock_on = tu_env("PARALLEL_TEST_RESOURCE_LOCK", "true");

        snprintf(pages, sizeof(pages), "%s/tests/fixtures/pages",
                 tu_env("PARALLEL_SOURCE_DIR", "."));
        REQUIRE(fx_server_start(&fx, pages) == 0);
        REQUIRE(mkdtemp(dir) != NULL);
        /* navigate first: performance.now() restarts with each document */
        snprintf(recipe, sizeof(recipe),
                 "{\"title\": \"takes 200 ms\", \"steps\": ["
                 "{\"type\": \"navigate\", \"url\": "
                 "\"http://127.0.0.1:%d/index.html\"},"
                 "{\"type\": \"waitForExpression\", "
                 "\"expression\": \"performance.now() > 200\", "
                 "\"timeout\": 10000}]}\n",
                 fx.port);
        snprintf(path, sizeof(path), "%s/slow.json", dir);
        REQUIRE(tu_write_file(dir, "slow.json", recipe) == 0);
        snprintf(rdir, sizeof(rdir), "recipes.dir=%s", dir);
        snprintf(lock, sizeof(lock), "claim.resource_lock=%s", lock_on);

        REQUIRE(sc_init(&c, "cxprio") == 0);
        REQUIRE(su_ledger_init(&l, N, NRES) == 0);
        /* Interleaved: every round, each resource gets one signal at each
         * priority. */
        for (int round = 0; round < ROUNDS; round++)
                for (int p = 1; p <= NPRIO; p++)
                        REQUIRE(sc_insert(&c, &l, NRES, p, "slow", NRES, 0) ==
                                NRES);
        REQUIRE(sc_reader_new(&c, &r, N) == 0);
        /* Two nodes first, the third joins at 20 %: with 3 partitions per
         * topic, 3 members that join together get partition k of every
         * topic (all priorities of a resource on one node, which the
         * scheduler alone keeps exclusive); 2 members, and the moves of a
         * rebalance, split a resource's priorities over nodes. */
        const char *tags[3] = {"x1", "x2", "x3"};
        double t0 = par_clock_mono_s();
        for (int i = 0; i < 3; i++) {
                if (i == 2)
                        sc_read_until(&c, &r, &l, N / 5, 120);
                REQUIRE(sc_node_start(&c, &nodes[i], tags[i], rdir, lock,
                                      "workers.min=2", "workers.max=2",
                                      "spin.timeout=20s", NULL) == 0);
        }
        size_t missing = sc_read(&c, &r, &l, N, 240, 2000);
        double took = par_clock_mono_s() - t0;
        CHECKF(missing == 0, "%zu signals without a final result", missing);

        size_t multi = 0, later_attempt = 0, retried = 0;
        for (size_t i = 0; i < N; i++) {
                su_entry_t *e = &l.e[i];
                sc_rec_t *x = &r.recs[i];
                multi += x->dones > 1;
                for (int k = 0; k < x->nres; k++) {
                        if (strcmp(x->r[k].status, "done"))
                                continue;
                        if (x->r[k].attempt != 1) {
                                /* A transient spin failure retried is an
                                 * attempt; waiting for the lock is not. */
                                if (x->retrying >= x->r[k].attempt - 1)
                                        retried++;
                                else
                                        later_attempt++;
                                /* Say why: every result of this signal. */
                                for (int q = 0; q < x->nres; q++)
                                        fprintf(stderr,
                                                "   %s: %s attempt %d on %s "
                                                "%s\n",
                                                e->id, x->r[q].status,
                                                x->r[q].attempt, x->r[q].node,
                                                x->r[q].error);
                                print_log_lines(nodes, 3, e->id);
                        }
                        ex_t *y = &ex[e->resource][nex[e->resource]++];
                        y->start = x->r[k].claimed_at;
                        y->end = x->r[k].finished_at;
                        y->sstart = x->r[k].started_at;
                        y->send = x->r[k].finished_at;
                        y->prio = e->priority;
                        snprintf(y->node, sizeof(y->node), "%s", x->r[k].node);
                }
        }
        size_t overlaps = 0, spin_overlaps = 0, cross_node = 0, runs = 0;
        int64_t worst = 0; /* longest overlap, ms */
        for (int res = 0; res < NRES; res++) {
                runs += nex[res];
                qsort(ex[res], nex[res], sizeof(ex_t), by_start);
                int64_t end = 0;
                const char *end_node = "";
                for (size_t k = 0; k < nex[res]; k++) {
                        if (k && ex[res][k].start < end) {
                                overlaps++;
                                if (end - ex[res][k].start > worst)
                                        worst = end - ex[res][k].start;
                                cross_node +=
                                    strcmp(ex[res][k].node, end_node) != 0;
                        }
                        if (ex[res][k].end > end) {
                                end = ex[res][k].end;
                                end_node = ex[res][k].node;
                        }
                }
                qsort(ex[res], nex[res], sizeof(ex_t), by_sstart);
                end = 0;
                for (size_t k = 0; k < nex[res]; k++) {
                        if (k && ex[res][k].sstart < end)
                                spin_overlaps++;
                        if (ex[res][k].send > end)
                                end = ex[res][k].send;
                }
        }
        double spin_ms = 0, setup_ms = 0;
        for (int res = 0; res < NRES; res++)
                for (size_t k = 0; k < nex[res]; k++) {
                        spin_ms += ex[res][k].send - ex[res][k].sstart;
                        setup_ms += ex[res][k].sstart - ex[res][k].start;
                }
        fprintf(stderr, "   mean spin %.0f ms, claim to spin start %.0f ms\n",
                runs ? spin_ms / runs : 0, runs ? setup_ms / runs : 0);
        double deferred = 0;
        size_t nodes_used = 0;
        for (int i = 0; i < 3; i++) {
                char buf[4096];
                double d =
                    su_metric(nodes[i].port, "parallel_claims_deferred_total");
                if (d > 0)
                        deferred += d;
                if (su_http_get(nodes[i].port, "/status", buf, sizeof(buf)) ==
                        200 &&
                    !strstr(buf, "\"done\":0,"))
                        nodes_used++;
        }
        for (int i = 0; i < 3; i++)
                CHECK(su_producer_stop(&nodes[i], SIGTERM, 40) == 0);

        /* Every lock was given back. */
        mongoc_collection_t *locks =
            mongoc_client_get_collection(c.client, c.name, "signals_resources");
        bson_t empty = BSON_INITIALIZER;
        int64_t left = mongoc_collection_count_documents(locks, &empty, NULL,
                                                         NULL, NULL, NULL);
        bson_destroy(&empty);
        mongoc_collection_destroy(locks);
        size_t nonfinal = 0;
        sc_docs_final(&c, &nonfinal);

        fprintf(stderr,
                "   resource_lock=%s: %d signals (%d resources x %d "
                "priorities) on 3 nodes in %.1f s: %zu executions, %zu "
                "overlapping claim..finish (%zu across nodes, longest %lld "
                "ms), %zu "
                "overlapping spins, %zu done twice, %zu done on attempt > 1 "
                "without a failed attempt before (%zu after one), "
                "%.0f deferrals, %lld locks left, %zu nodes ran spins\n",
                lock_on, N, NRES, NPRIO, took, runs, overlaps, cross_node,
                (long long)worst, spin_overlaps, multi, later_attempt, retried,
                deferred, (long long)left, nodes_used);
        CHECK(runs == N);
        CHECKF(overlaps == 0, "%zu overlapping executions", overlaps);
        CHECK(spin_overlaps == 0);
        CHECK(multi == 0);
        CHECK(later_attempt == 0);
        CHECK(left == 0);
        CHECK(nonfinal == 0);
        CHECK(nodes_used >= 2);

        sc_reader_destroy(&r);
        su_ledger_free(&l);
        sc_cleanup(&c);
        fx_server_stop(&fx);
        unlink(path);
        rmdir(dir);
}

TEST_MAIN(test_xprio)
