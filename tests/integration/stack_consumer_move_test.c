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
 *
 * Run twice: with the default cooperative-sticky assignment, and with
 * consumer.assignment=roundrobin, where every rebalance revokes every
 * partition and deals them out afresh; there each node must also hold
 * partitions of every priority level once both are in the group (the
 * sticky assignment gives a joining node whole levels).
 */
#include "stack_consumer_util.h"

#define N 2000

/* Partitions per level (1..4) in the last `assigned` line of log; false
 * when there is none. */
static bool last_held(const char *log, int held[4])
{
        FILE *f = fopen(log, "r");
        char line[1024];
        bool found = false;
        if (!f)
                return false;
        while (fgets(line, sizeof(line), f)) {
                const char *h = strstr(line, "held_by_level=");
                if (h && strstr(line, "event=assigned") &&
                    sscanf(h, "held_by_level=%d,%d,%d,%d", &held[0], &held[1],
                           &held[2], &held[3]) == 4)
                        found = true;
        }
        fclose(f);
        return found;
}

/* Waits up to 30 s until both nodes' last assignments hold every level. */
static bool every_level_on_both(const su_proc_t *a, const su_proc_t *b)
{
        for (int i = 0; i < 300; i++) {
                int ha[4], hb[4];
                if (last_held(a->log, ha) && last_held(b->log, hb) && ha[0] &&
                    ha[1] && ha[2] && ha[3] && hb[0] && hb[1] && hb[2] && hb[3])
                        return true;
                par_clock_sleep_ms(100);
        }
        return false;
}

static void run_move(const char *assignment)
{
        su_ctx_t c;
        su_ledger_t l;
        sc_reader_t r;
        su_proc_t n1, n2;

        char opt[64];
        bool rr = !strcmp(assignment, "roundrobin");
        snprintf(opt, sizeof(opt), "consumer.assignment=%s", assignment);
        REQUIRE(sc_init(&c, rr ? "cmoverr" : "cmove") == 0);
        REQUIRE(su_ledger_init(&l, N, 0) == 0);
        size_t ins = 0;
        for (int p = 1; p <= 4; p++)
                ins += sc_insert(&c, &l, N / 4, p, "noop", 0, 0);
        REQUIRE(ins == N);
        REQUIRE(sc_reader_new(&c, &r, N) == 0);

        /* Small local queues: the node is always busy with what it holds,
         * so every move revokes partitions with work queued and running. */
        REQUIRE(sc_node_start(&c, &n1, "n1", "claim.enabled=false", opt,
                              "workers.min=4", "workers.max=4",
                              "sched.queue.high=16", "sched.queue.low=4",
                              NULL) == 0);
        sc_read_until(&c, &r, &l, N / 4, 120);
        size_t at_join = sc_finals(&r);
        REQUIRE(sc_node_start(&c, &n2, "n2", "claim.enabled=false", opt,
                              "workers.min=4", "workers.max=4",
                              "sched.queue.high=16", "sched.queue.low=4",
                              NULL) == 0);
        if (rr)
                CHECKF(every_level_on_both(&n1, &n2),
                       "with roundrobin, a node lacks a priority level (see "
                       "the assigned lines in %s and %s)",
                       n1.log, n2.log);
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
                "   %s, %d signals, claims off: join at %zu final, leave at "
                "%zu final; %ld results, %zu signals with more than one\n",
                assignment, N, at_join, at_leave, r.results, twice);
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

static void test_move_sticky(void)
{
        run_move("cooperative-sticky");
}

static void test_move_roundrobin(void)
{
        run_move("roundrobin");
}

TEST_MAIN(test_move_sticky, test_move_roundrobin)
