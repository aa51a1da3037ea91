/*
 * stack_consumer_move_test.c — partitions move under load without
 * re-running finished signals.
 *
 * Claims off, so nothing (no document state) would turn a redelivery into
 * a skip: a signal delivered twice runs twice and has two results. One
 * node starts on N noop signals; a second joins once a quarter are final
 * (a cooperative rebalance moves partitions away from a node that is busy
 * with them); the first leaves (SIGTERM) once half are final (its
 * partitions move to the second). Afterwards every signal must have
 * exactly one result: the offsets of everything that finished were
 * committed before its partition moved.
 */
#include "stack_consumer_util.h"

#define N 2000

static void test_move(void)
{
        su_ctx_t c;
        su_ledger_t l;
        sc_reader_t r;
        su_proc_t n1, n2;

        REQUIRE(sc_init(&c, "cmove") == 0);
        REQUIRE(su_ledger_init(&l, N, 0) == 0);
        size_t ins = 0;
        for (int p = 1; p <= 4; p++)
                ins += sc_insert(&c, &l, N / 4, p, "noop", 0, 0);
        REQUIRE(ins == N);
        REQUIRE(sc_reader_new(&c, &r, N) == 0);

        /* Small local queues: the node is always busy with what it holds,
         * so every move revokes partitions with work queued and running. */
        REQUIRE(sc_node_start(&c, &n1, "n1", "claim.enabled=false",
                              "workers.min=4", "workers.max=4",
                              "sched.queue.high=16", "sched.queue.low=4",
                              NULL) == 0);
        sc_read_until(&c, &r, &l, N / 4, 120);
        size_t at_join = sc_finals(&r);
        REQUIRE(sc_node_start(&c, &n2, "n2", "claim.enabled=false",
                              "workers.min=4", "workers.max=4",
                              "sched.queue.high=16", "sched.queue.low=4",
                              NULL) == 0);
        sc_read_until(&c, &r, &l, N / 2, 120);
        size_t at_leave = sc_finals(&r);
        CHECK(su_producer_stop(&n1, SIGTERM, 40) == 0);
        size_t missing = sc_read(&c, &r, &l, N, 240, 3000);
        CHECK(su_producer_stop(&n2, SIGTERM, 40) == 0);

        size_t twice = 0, first_twice = SIZE_MAX;
        for (size_t i = 0; i < N; i++)
                if (r.recs[i].nres > 1) {
                        twice++;
                        if (first_twice == SIZE_MAX)
                                first_twice = i;
                }
        fprintf(stderr,
                "   %d signals, claims off: join at %zu final, leave at %zu "
                "final; %ld results, %zu signals with more than one\n",
                N, at_join, at_leave, r.results, twice);
        if (first_twice != SIZE_MAX)
                for (int k = 0; k < r.recs[first_twice].nres; k++)
                        fprintf(stderr, "   e.g. #%zu: %s on %s\n",
                                first_twice + 1,
                                r.recs[first_twice].r[k].status,
                                r.recs[first_twice].r[k].node);
        CHECKF(missing == 0, "%zu signals without a result", missing);
        CHECK(at_join < N && at_leave < N); /* both moves happened under load */
        CHECKF(twice == 0, "%zu signals ran more than once", twice);
        CHECK(r.results == N);

        sc_reader_destroy(&r);
        su_ledger_free(&l);
        sc_cleanup(&c);
}

TEST_MAIN(test_move)
