/*
 * backoff_test.c — the one doubling backoff: min after the first failure,
 * doubled per further failure, capped at max, never overflowing.
 */
#include <stdint.h>

#include "base/backoff.h"
#include "testutil.h"

static void test_table(void)
{
        static const struct {
                int64_t min, max;
                int failures;
                int64_t want;
        } cases[] = {
            {250, 10000, 0, 250},
            {250, 10000, 1, 250},
            {250, 10000, 2, 500},
            {250, 10000, 3, 1000},
            {250, 10000, 6, 8000},
            {250, 10000, 7, 10000},
            {250, 10000, 1000, 10000}, /* long runs stay capped */
            {2000, 1000, 1, 1000},     /* min above max: max */
            {0, 1000, 5, 0},           /* no backoff configured */
            {-5, 1000, 3, 0},
            {100, -1, 3, 0},
            {1, INT64_MAX, 62, INT64_C(1) << 61},
            {1, INT64_MAX, 100, INT64_MAX}, /* no overflow near the top */
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                int64_t got = par_backoff_ms(cases[i].min, cases[i].max,
                                             cases[i].failures);
                CHECKF(got == cases[i].want,
                       "min=%lld max=%lld failures=%d: %lld, want %lld",
                       (long long)cases[i].min, (long long)cases[i].max,
                       cases[i].failures, (long long)got,
                       (long long)cases[i].want);
        }
}

TEST_MAIN(test_table)
