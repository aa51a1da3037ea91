/*
 * stack_consumer_crash_test.c — a 4,000-signal run (PARALLEL_TEST_SIGNALS
 * sets another size; the long suite runs 10,000) on three consumer
 * nodes, one of them killed with SIGKILL every 10 s (round robin) and
 * restarted at once, until every signal has a final result. The signals
 * arrive in four waves, 2 s before a kill is due (the first before the
 * nodes start); the kill after a wave comes as soon as a tenth of the wave
 * is final, or when due, so the nodes are busy at every kill (a wave of
 * 1,000 took under 2 s once the store got faster) and the run spans at
 * least three kills however fast the machine is. Afterwards: zero
 * signals missing (every document final, every signal with a final
 * result), and the executions beyond one per signal are bounded by what
 * was in flight at the kills, each extra one on a later attempt
 * (attempt > 1). In flight at a kill: a spin per worker, and the
 * results acknowledged whose document the finisher has not written yet
 * (at most claim.finishing, set to FINISHING here), so the bound is
 * workers + FINISHING per kill.
 */
#include <math.h>

#include "base/clock.h"
#include "stack_consumer_util.h"

#define WAVES         4
#define WORKERS       3
#define KILL_EVERY_S  10.0
#define WAVE_LEAD_S   2.0 /* a wave arrives this long before a kill */
#define MIN_KILLS     3
#define RUN_TIMEOUT_S 300.0
#define FINISHING     8
/* What a kill can leave half done on one node: a running spin per worker
 * and a result per finisher place. */
#define IN_FLIGHT (WORKERS + FINISHING)

static size_t N; /* signals in the run */

/* One wave of N / WAVES signals: half p2 on 30 resources, a quarter p1,
 * a quarter p3 (no resource). Returns how many were inserted. */
static size_t insert_wave(su_ctx_t *c, su_ledger_t *l)
{
        size_t w = N / WAVES, ins;
        ins = sc_insert(c, l, w / 2, 2, "noop", 30, 0);
        ins += sc_insert(c, l, w / 4, 1, "noop", 0, 0);
        ins += sc_insert(c, l, w - ins, 3, "noop", 0, 0);
        return ins;
}

static void test_crash(void)
{
        su_ctx_t c;
        su_ledger_t l;
        sc_reader_t r;
        su_proc_t nodes[3];
        const char *tags[3] = {"n1", "n2", "n3"};
        char wmax[32], finq[32];

        N = (size_t)atol(tu_env("PARALLEL_TEST_SIGNALS", "4000"));
        REQUIRE(N >= WAVES);
        snprintf(wmax, sizeof(wmax), "workers.max=%d", WORKERS);
        snprintf(finq, sizeof(finq), "claim.finishing=%d", FINISHING);
        REQUIRE(sc_init(&c, "ccrash") == 0);
        REQUIRE(su_ledger_init(&l, N, 30) == 0);
        size_t ins = insert_wave(&c, &l);
        int waves = 1;
        REQUIRE(sc_reader_new(&c, &r, N) == 0);
        for (int i = 0; i < 3; i++)
                REQUIRE(sc_node_start(&c, &nodes[i], tags[i], wmax, finq,
                                      "workers.min=2", "claim.lease=3s",
                                      NULL) == 0);

        /* Every KILL_EVERY_S seconds, kill -9 the next node and restart
         * it, until every signal has a final result; the next wave of
         * signals WAVE_LEAD_S before each of the first kills. */
        int kills = 0;
        size_t kill_at = 0; /* after a wave: kill once this many are final */
        double t0 = par_clock_mono_s(), next_kill = t0 + KILL_EVERY_S;
        while (par_clock_mono_s() < t0 + RUN_TIMEOUT_S) {
                double next_wave = waves < WAVES
                                       ? t0 + waves * KILL_EVERY_S - WAVE_LEAD_S
                                       : INFINITY;
                double next = next_wave < next_kill ? next_wave : next_kill;
                double slice = next - par_clock_mono_s();
                if (kill_at && slice > 0.05)
                        slice = 0.05;
                sc_read_until(&c, &r, &l, N, slice);
                if (sc_finals(&r) >= N)
                        break;
                if (par_clock_mono_s() >= next_wave) {
                        kill_at = sc_finals(&r) + N / WAVES / 10;
                        ins += insert_wave(&c, &l);
                        waves++;
                        fprintf(stderr,
                                "   wave %d at +%.1f s: %zu inserted, %zu "
                                "final\n",
                                waves, par_clock_mono_s() - t0, ins,
                                sc_finals(&r));
                        continue;
                }
                if (par_clock_mono_s() < next_kill &&
                    !(kill_at && sc_finals(&r) >= kill_at))
                        continue;
                kill_at = 0;
                int victim = (1 + kills) % 3; /* n2, n3, n1, n2, … */
                fprintf(stderr, "   kill -9 %s at +%.1f s, %zu final\n",
                        tags[victim], par_clock_mono_s() - t0, sc_finals(&r));
                CHECK(su_producer_stop(&nodes[victim], SIGKILL, 10) ==
                      128 + SIGKILL);
                kills++;
                par_clock_sleep_ms(500);
                CHECK(sc_node_start(&c, &nodes[victim], tags[victim], wmax,
                                    finq, "workers.min=2", "claim.lease=3s",
                                    NULL) == 0);
                next_kill += KILL_EVERY_S;
        }
        CHECKF(ins == N, "%zu signals inserted", ins);
        fprintf(stderr, "   run of %zu signals: %d kills in %.1f s\n", N, kills,
                par_clock_mono_s() - t0);
        CHECKF(kills >= MIN_KILLS, "only %d kills before the run ended", kills);

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
                "   %zu signals, %d kills: %zu extra executions (bound %d), "
                "%zu with attempt 1; %zu finished on a later attempt\n",
                N, kills, extra, kills * IN_FLIGHT, extra_bad, reclaimed);
        /* A busy node killed leaves claims behind: they must have been
         * taken over once their lease lapsed. */
        CHECK(reclaimed >= 1);
        CHECK(no_done == 0);
        CHECKF(extra <= (size_t)kills * IN_FLIGHT, "%zu extra executions",
               extra);
        CHECK(extra_bad == 0);

        for (int i = 0; i < 3; i++)
                CHECK(su_producer_stop(&nodes[i], SIGTERM, 40) == 0);
        sc_reader_destroy(&r);
        su_ledger_free(&l);
        sc_cleanup(&c);
}

TEST_MAIN(test_crash)
