/*
 * stack_consumer_resources_test.c — signals sharing a resource never run at
 * the same time and run in insertion order, across nodes and through
 * rebalances under load: a third node joins once a quarter of the signals
 * is final, and the first leaves (SIGTERM) at half. Resources are spread
 * over the four priority levels, so every node has work whichever levels
 * the assignor gives it. Checked from the results' timings: per resource,
 * executions (claimed_at .. finished_at) sorted by claim never overlap and
 * follow insertion order.
 */
#include "base/clock.h"
#include "stack_consumer_util.h"

#define N      4000
#define NRES   40
#define LEVELS 4

typedef struct ex {
        size_t idx;
        int64_t start, end;
        const char *node;
        int attempt;
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

static void print_pair(int res, const ex_t *a, const ex_t *b)
{
        fprintf(stderr,
                "   res-%d: #%zu (%s, attempt %d, %lld..%lld) ran before "
                "#%zu (%s, attempt %d, %lld..%lld)\n",
                res, a->idx, a->node, a->attempt, (long long)a->start,
                (long long)a->end, b->idx, b->node, b->attempt,
                (long long)b->start, (long long)b->end);
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
        /* Level p gets resources (p-1)*NRES/4 .. p*NRES/4 - 1. */
        for (int p = 1; p <= LEVELS; p++)
                REQUIRE(sc_insert(&c, &l, N / LEVELS, p, "noop", NRES / LEVELS,
                                  (p - 1) * (NRES / LEVELS)) == N / LEVELS);
        REQUIRE(sc_reader_new(&c, &r, N) == 0);
        REQUIRE(sc_node_start(&c, &nodes[0], "r1", "workers.max=4", NULL) == 0);
        REQUIRE(sc_node_start(&c, &nodes[1], "r2", "workers.max=4", NULL) == 0);
        sc_read_until(&c, &r, &l, N / 4, 120);
        REQUIRE(sc_node_start(&c, &nodes[2], "r3", "workers.max=4", NULL) == 0);
        sc_read_until(&c, &r, &l, N / 2, 120);
        size_t at_leave = sc_finals(&r);
        CHECK(su_producer_stop(&nodes[0], SIGTERM, 40) == 0);
        size_t missing = sc_read(&c, &r, &l, N, 180, 2000);
        CHECKF(missing == 0, "%zu signals without a final result", missing);

        char names[3][64] = {{0}};
        size_t nodes_used = 0;
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
                        y->node = x->r[k].node;
                        y->attempt = x->r[k].attempt;
                        size_t u = 0;
                        while (u < nodes_used && strcmp(names[u], y->node))
                                u++;
                        if (u == nodes_used && u < 3)
                                snprintf(names[nodes_used++], sizeof(names[0]),
                                         "%s", y->node);
                }
        }
        size_t overlaps = 0, disorder = 0, runs = 0;
        for (int res = 0; res < NRES; res++) {
                qsort(ex[res], nex[res], sizeof(ex_t), by_start);
                runs += nex[res];
                for (size_t k = 1; k < nex[res]; k++) {
                        const ex_t *a = &ex[res][k - 1], *b = &ex[res][k];
                        bool overlap = b->start < a->end;
                        bool before = b->idx < a->idx;
                        overlaps += overlap;
                        disorder += before;
                        if ((overlap || before) && overlaps + disorder <= 10)
                                print_pair(res, a, b);
                }
        }
        fprintf(stderr,
                "   %d signals on %d resources over %d levels (r1 left with "
                "%zu final): %zu executions, %zu overlapping, %zu out of "
                "order, %zu nodes ran spins\n",
                N, NRES, LEVELS, at_leave, runs, overlaps, disorder,
                nodes_used);
        CHECK(at_leave < N);
        CHECK(runs == N);
        CHECK(overlaps == 0);
        CHECK(disorder == 0);
        CHECK(nodes_used >= 2);
        for (int i = 1; i < 3; i++)
                CHECK(su_producer_stop(&nodes[i], SIGTERM, 40) == 0);
        sc_reader_destroy(&r);
        su_ledger_free(&l);
        sc_cleanup(&c);
}

TEST_MAIN(test_resources)
