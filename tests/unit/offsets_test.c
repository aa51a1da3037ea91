/*
 * offsets_test.c — out-of-order completion tracking against a reference
 * model: random gaps between offsets, random completion orders, several
 * partitions and topics, revoke, and collect's reporting.
 */
#include "offsets.h"

#include "testutil.h"

#define N 400

/* Reference: one past the largest tracked offset k such that every tracked
 * offset <= k is done; -1 if the first tracked offset is not done. */
static int64_t model(const int64_t *offs, const bool *done, int n)
{
        int64_t c = -1;
        for (int i = 0; i < n && done[i]; i++)
                c = offs[i] + 1;
        return c;
}

static void test_random_orders(void)
{
        srand(12345);
        for (int round = 0; round < 50; round++) {
                par_offsets_t *o = NULL;
                par_error_t e;
                REQUIRE(par_offsets_new(&o, &e) == PAR_OK);
                int64_t offs[N];
                bool done[N] = {0};
                int order[N];
                int64_t at = rand() % 1000;
                for (int i = 0; i < N; i++) {
                        offs[i] = at;
                        at += 1 + (rand() % 4 == 0 ? rand() % 5 : 0);
                        order[i] = i;
                }
                /* Shuffle, but keep some locality like real workers do. */
                for (int i = N - 1; i > 0; i--) {
                        int j = round % 2 ? rand() % (i + 1)
                                          : i - rand() % (i < 8 ? i + 1 : 8);
                        int t = order[i];
                        order[i] = order[j];
                        order[j] = t;
                }
                /* Track in order, interleaved with completions of already
                 * tracked offsets, as the poll thread and workers do. */
                int tracked = 0, completed = 0, mismatches = 0;
                while (completed < N) {
                        int batch = 1 + rand() % 20;
                        while (batch-- && tracked < N) {
                                CHECK(par_offsets_track(o, "t", 3,
                                                        offs[tracked++],
                                                        &e) == PAR_OK);
                        }
                        /* Complete any tracked offsets from the order. */
                        for (int k = completed; k < N; k++) {
                                int i = order[k];
                                if (i >= tracked)
                                        break;
                                CHECK(par_offsets_done(o, "t", 3, offs[i]) ==
                                      PAR_OK);
                                done[i] = true;
                                completed++;
                                int pend;
                                int64_t got =
                                    par_offsets_committable(o, "t", 3, &pend);
                                int64_t want = model(offs, done, tracked);
                                if (got != want)
                                        mismatches++;
                                int p2 = 0;
                                for (int x = 0; x < tracked; x++)
                                        p2 += !done[x];
                                if (pend != p2)
                                        mismatches++;
                        }
                }
                CHECKF(mismatches == 0, "round %d: %d mismatches", round,
                       mismatches);
                CHECK(par_offsets_committable(o, "t", 3, NULL) ==
                      offs[N - 1] + 1);
                CHECK(par_offsets_pending(o) == 0);
                par_offsets_destroy(o);
        }
}

static void collect_cb(const char *topic, int32_t partition, int64_t offset,
                       void *opaque)
{
        int64_t *seen = opaque;
        seen[(topic[0] == 'b') * 2 + partition] = offset;
}

static void test_partitions_collect_revoke(void)
{
        par_offsets_t *o = NULL;
        par_error_t e;
        int64_t seen[4];
        REQUIRE(par_offsets_new(&o, &e) == PAR_OK);
        CHECK(par_offsets_track(o, "a", 0, 5, &e) == PAR_OK);
        CHECK(par_offsets_track(o, "a", 0, 6, &e) == PAR_OK);
        CHECK(par_offsets_track(o, "a", 1, 5, &e) == PAR_OK);
        CHECK(par_offsets_track(o, "b", 0, 100, &e) == PAR_OK);
        /* Going backwards (redelivery) is refused. */
        CHECK(par_offsets_track(o, "a", 0, 6, &e) == PAR_ERR_INVALID);
        CHECK(par_offsets_track(o, "a", 0, 2, &e) == PAR_ERR_INVALID);
        CHECK(par_offsets_done(o, "a", 0, 7) == PAR_ERR_NOTFOUND);
        CHECK(par_offsets_done(o, "c", 0, 5) == PAR_ERR_NOTFOUND);

        /* Nothing finished: nothing to commit. */
        memset(seen, 0xff, sizeof(seen));
        CHECK(par_offsets_collect(o, false, collect_cb, seen) == 0);
        CHECK(par_offsets_done(o, "a", 0, 6) == PAR_OK);
        CHECK(par_offsets_collect(o, false, collect_cb, seen) ==
              0); /* 5 pending */
        CHECK(par_offsets_done(o, "a", 0, 5) == PAR_OK);
        CHECK(par_offsets_done(o, "b", 0, 100) == PAR_OK);
        CHECK(par_offsets_collect(o, false, collect_cb, seen) == 2);
        CHECK(seen[0] == 7 && seen[2] == 101 && seen[1] == -1);
        /* Reported once. */
        CHECK(par_offsets_collect(o, false, collect_cb, seen) == 0);
        CHECK(par_offsets_pending(o) == 1);

        /* Revoke returns the partition's committable offset. */
        CHECK(par_offsets_track(o, "a", 1, 9, &e) == PAR_OK);
        CHECK(par_offsets_done(o, "a", 1, 5) == PAR_OK);
        CHECK(par_offsets_revoke(o, "a", 1) == 6);
        CHECK(par_offsets_done(o, "a", 1, 9) == PAR_ERR_NOTFOUND);
        /* Revoke reports even what was reported before (the earlier async
         * commit may have failed); "all" re-sends every partition. */
        memset(seen, 0xff, sizeof(seen));
        CHECK(par_offsets_collect(o, true, collect_cb, seen) == 2);
        CHECK(seen[0] == 7 && seen[2] == 101);
        CHECK(par_offsets_revoke(o, "a", 0) == 7);
        CHECK(par_offsets_revoke(o, "zz", 0) == -1);
        /* Re-assigned later: starts afresh, even at a lower offset. */
        CHECK(par_offsets_track(o, "a", 1, 6, &e) == PAR_OK);
        CHECK(par_offsets_committable(o, "a", 1, NULL) == -1);
        CHECK(par_offsets_pending(o) == 1);
        par_offsets_destroy(o);
        par_offsets_destroy(NULL);
}

TEST_MAIN(test_random_orders, test_partitions_collect_revoke)
