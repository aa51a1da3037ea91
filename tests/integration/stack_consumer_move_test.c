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
 *
 * A third run churns the group: two nodes start together, and while
 * signals keep arriving pairs of nodes join and leave three times; every
 * node commits every 20 ms. A join or a leave makes every member rejoin,
 * and a commit sent meanwhile
 * is refused; librdkafka 2.0.2 takes that for a lost assignment and
 * re-reads from the last commit (consumer/commit.c). No node may lose its
 * assignment, and still no signal may run twice.
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

/* Reads results for ms (a node joining or leaving meanwhile). */
static void read_for(su_ctx_t *c, sc_reader_t *r, su_ledger_t *l, int ms)
{
        sc_read_until(c, r, l, SIZE_MAX, ms / 1000.0);
}

/* Lines of log that report a revoke of a lost assignment. */
static int lost_assignments(const char *log)
{
        FILE *f = fopen(log, "r");
        char line[1024];
        int n = 0;
        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                n += strstr(line, "event=revoked") && strstr(line, "lost=1");
        fclose(f);
        return n;
}

#define CHURN_N     6000
#define CHURN_STEPS 12

static void test_move_churn(void)
{
        su_ctx_t c;
        su_ledger_t l;
        sc_reader_t r;
        su_proc_t n1, n2, other[CHURN_STEPS * 2];
        int nother = 0, up = -1, lost = 0;
        const char *opts[] = {"claim.enabled=false", "commit.interval=20ms",
                              "workers.min=2", "workers.max=2"};

        REQUIRE(sc_init(&c, "cmovech") == 0);
        REQUIRE(su_ledger_init(&l, CHURN_N, 0) == 0);
        REQUIRE(sc_reader_new(&c, &r, CHURN_N) == 0);
        REQUIRE(sc_node_start(&c, &n1, "n1", opts[0], opts[1], opts[2], opts[3],
                              NULL) == 0);
        REQUIRE(sc_node_start(&c, &n2, "n2", opts[0], opts[1], opts[2], opts[3],
                              NULL) == 0);
        /* Every other step a second node joins, or the one that joined
         * leaves; through every step signals keep arriving, a slice every
         * 100 ms, so the nodes commit while the group rebalances. */
        for (int step = 0; step < CHURN_STEPS; step++) {
                if (step % 2 == 1 && up < 0) {
                        /* Two at once: back-to-back rounds. */
                        for (int j = 0; j < 2; j++) {
                                char tag[16];
                                snprintf(tag, sizeof(tag), "n%d", 3 + nother);
                                REQUIRE(sc_node_start(&c, &other[nother], tag,
                                                      opts[0], opts[1], opts[2],
                                                      opts[3], NULL) == 0);
                                nother++;
                        }
                        up = nother - 2;
                } else if (step % 2 == 1) {
                        for (int j = 0; j < 2; j++)
                                CHECK(su_producer_stop(&other[up + j], SIGTERM,
                                                       40) == 0);
                        up = -1;
                }
                for (int k = 0; k < 10; k++) {
                        size_t n = CHURN_N / CHURN_STEPS / 10;
                        REQUIRE(sc_insert(&c, &l, n, 1 + k % 4, "noop", 0, 0) ==
                                n);
                        read_for(&c, &r, &l, 100);
                }
        }
        size_t missing = sc_read(&c, &r, &l, CHURN_N, 240, 3000);
        for (int j = 0; up >= 0 && j < 2; j++)
                CHECK(su_producer_stop(&other[up + j], SIGTERM, 40) == 0);
        CHECK(su_producer_stop(&n1, SIGTERM, 40) == 0);
        CHECK(su_producer_stop(&n2, SIGTERM, 40) == 0);

        size_t twice = 0;
        for (size_t i = 0; i < CHURN_N; i++)
                twice += r.recs[i].nres > 1;
        lost += lost_assignments(n1.log) + lost_assignments(n2.log);
        for (int i = 0; i < nother; i++)
                lost += lost_assignments(other[i].log);
        fprintf(stderr,
                "   churn, %d signals, claims off, commits every 20 ms, %d "
                "joins and leaves: %ld results, %zu signals with more than "
                "one, %d lost assignments\n",
                CHURN_N, nother + nother - 2 * (up >= 0), r.results, twice,
                lost);
        CHECKF(missing == 0, "%zu signals without a result", missing);
        CHECKF(lost == 0, "%d revokes of a lost assignment (node logs in %s)",
               lost, c.logdir);
        CHECKF(twice == 0, "%zu signals ran more than once", twice);
        CHECK(r.results == CHURN_N);

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

TEST_MAIN(test_move_sticky, test_move_roundrobin, test_move_churn)
