/*
 * stack_consumer_resources_test.c — signals sharing a resource never run at
 * the same time and run in insertion order, across nodes and through a
 * rebalance (a third node joins mid-run). Checked from the results'
 * timings: per resource, executions (claimed_at .. finished_at) sorted by
 * claim never overlap and follow insertion order.
 */
#include "base/clock.h"
#include "stack_consumer_util.h"

#define N    1000
#define NRES 10

typedef struct ex {
        size_t idx;
        int64_t start, end;
} ex_t;

static int by_start(const void *a, const void *b)
{
        const ex_t *x = a, *y = b;
        if (x->start != y->start)
                return x->start < y->start ? -1 : 1;
        if (x->end != y->end)
                return x->end < y->end ? -1 : 1;
        return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static void test_resources(void)
{
        su_ctx_t c;
        su_ledger_t l;
        sc_reader_t r;
        su_proc_t nodes[3];
        static ex_t ex[NRES][N];
        size_t nex[NRES] = {0};

        REQUIRE(sc_init(&c, "cres") == 0);
        REQUIRE(su_ledger_init(&l, N, NRES) == 0);
        REQUIRE(sc_insert(&c, &l, N, 2, "noop", NRES, 0) == N);
        REQUIRE(sc_reader_new(&c, &r, N) == 0);
        REQUIRE(sc_node_start(&c, &nodes[0], "r1", "workers.max=4", NULL) == 0);
        REQUIRE(sc_node_start(&c, &nodes[1], "r2", "workers.max=4", NULL) == 0);
        par_clock_sleep_ms(1000);
        REQUIRE(sc_node_start(&c, &nodes[2], "r3", "workers.max=4", NULL) == 0);
        size_t missing = sc_read(&c, &r, &l, N, 180, 2000);
        CHECKF(missing == 0, "%zu signals without a final result", missing);

        for (size_t i = 0; i < N; i++) {
                su_entry_t *e = &l.e[i];
                sc_rec_t *x = &r.recs[i];
                for (int k = 0; k < x->nres; k++) {
                        if (strcmp(x->r[k].status, "done"))
                                continue;
                        ex_t *y = &ex[e->resource][nex[e->resource]++];
                        y->idx = e->idx;
                        /* From the claim: the node holds the resource from
                         * before its claim until after the result. */
                        y->start = x->r[k].claimed_at;
                        y->end = x->r[k].finished_at;
                }
        }
        size_t overlaps = 0, disorder = 0, runs = 0, nodes_used = 0;
        for (int res = 0; res < NRES; res++) {
                qsort(ex[res], nex[res], sizeof(ex_t), by_start);
                runs += nex[res];
                for (size_t k = 1; k < nex[res]; k++) {
                        if (ex[res][k].start < ex[res][k - 1].end)
                                overlaps++;
                        if (ex[res][k].idx < ex[res][k - 1].idx)
                                disorder++;
                }
        }
        for (int i = 0; i < 3; i++) {
                char buf[4096];
                if (su_http_get(nodes[i].port, "/status", buf, sizeof(buf)) ==
                        200 &&
                    !strstr(buf, "\"done\":0,"))
                        nodes_used++;
        }
        fprintf(stderr,
                "   %d signals on %d resources: %zu executions, %zu "
                "overlapping, %zu out of order, %zu nodes ran spins\n",
                N, NRES, runs, overlaps, disorder, nodes_used);
        CHECK(runs == N);
        CHECK(overlaps == 0);
        CHECK(disorder == 0);
        CHECK(nodes_used >= 2);
        for (int i = 0; i < 3; i++)
                CHECK(su_producer_stop(&nodes[i], SIGTERM, 40) == 0);
        sc_reader_destroy(&r);
        su_ledger_free(&l);
        sc_cleanup(&c);
}

TEST_MAIN(test_resources)
