/*
 * stack_consumer_crash_test.c — kill -9 consumer nodes during a run and
 * restart them. Afterwards: zero signals missing (every document final,
 * every signal with a final result), and the executions beyond one per
 * signal are bounded by what was in flight at the kills (workers per node ×
 * kills), each extra one on a later attempt (attempt > 1).
 */
#include "stack_consumer_util.h"

#define N       4000
#define WORKERS 3
#define KILLS   3

static void test_crash(void)
{
        su_ctx_t c;
        su_ledger_t l;
        sc_reader_t r;
        su_proc_t nodes[3];
        const char *tags[3] = {"n1", "n2", "n3"};
        char wmax[32];

        snprintf(wmax, sizeof(wmax), "workers.max=%d", WORKERS);
        REQUIRE(sc_init(&c, "ccrash") == 0);
        REQUIRE(su_ledger_init(&l, N, 30) == 0);
        size_t ins = sc_insert(&c, &l, N / 2, 2, "noop", 30, 0);
        ins += sc_insert(&c, &l, N / 4, 1, "noop", 0, 0);
        ins += sc_insert(&c, &l, N - ins, 3, "noop", 0, 0);
        REQUIRE(ins == N);
        REQUIRE(sc_reader_new(&c, &r, N) == 0);
        for (int i = 0; i < 3; i++)
                REQUIRE(sc_node_start(&c, &nodes[i], tags[i], wmax,
                                      "workers.min=2", "claim.lease=3s",
                                      NULL) == 0);

        /* Kill -9 a node at 20 %, 45 % and 70 %, restarting each. */
        size_t marks[KILLS] = {N / 5, N * 45 / 100, N * 70 / 100};
        for (int k = 0; k < KILLS; k++) {
                sc_read_until(&c, &r, &l, marks[k], 120);
                int victim = (1 + k) % 3; /* n2, n3, n1 */
                fprintf(stderr, "   kill -9 %s at %zu final\n", tags[victim],
                        sc_finals(&r));
                CHECK(su_producer_stop(&nodes[victim], SIGKILL, 10) ==
                      128 + SIGKILL);
                su_sleep_ms(500);
                CHECK(sc_node_start(&c, &nodes[victim], tags[victim], wmax,
                                    "workers.min=2", "claim.lease=3s",
                                    NULL) == 0);
        }

        size_t missing = sc_read(&c, &r, &l, N, 240, 3000);
        CHECKF(missing == 0, "%zu signals without a final result", missing);
        size_t nonfinal = 0, fin = sc_docs_final(&c, &nonfinal);
        CHECKF(fin == N && nonfinal == 0, "documents: %zu final, %zu not", fin,
               nonfinal);
        if (nonfinal)
                sc_dump_nonfinal(&c, 5);

        size_t extra = 0, extra_bad = 0, no_done = 0, reclaimed = 0;
        for (size_t i = 0; i < N; i++) {
                sc_rec_t *x = &r.recs[i];
                if (!x->dones)
                        no_done++;
                for (int k = 0; k < x->nres; k++)
                        if (!strcmp(x->r[k].status, "done") &&
                            x->r[k].attempt > 1) {
                                reclaimed++;
                                break;
                        }
                if (x->dones <= 1)
                        continue;
                extra += (size_t)x->dones - 1;
                /* All but the first execution must be a later attempt. */
                int later = 0;
                for (int k = 0; k < x->nres; k++)
                        later += !strcmp(x->r[k].status, "done") &&
                                 x->r[k].attempt > 1;
                if (later < x->dones - 1)
                        extra_bad++;
        }
        fprintf(stderr,
                "   %d signals, %d kills: %zu extra executions (bound %d), "
                "%zu with attempt 1; %zu finished on a later attempt\n",
                N, KILLS, extra, KILLS * WORKERS, extra_bad, reclaimed);
        /* A busy node killed leaves claims behind: they must have been
         * taken over once their lease lapsed. */
        CHECK(reclaimed >= 1);
        CHECK(no_done == 0);
        CHECKF(extra <= KILLS * WORKERS, "%zu extra executions", extra);
        CHECK(extra_bad == 0);

        for (int i = 0; i < 3; i++)
                CHECK(su_producer_stop(&nodes[i], SIGTERM, 40) == 0);
        sc_reader_destroy(&r);
        su_ledger_free(&l);
        sc_cleanup(&c);
}

int main(void)
{
        RUN(test_crash);
        TEST_DONE();
}
