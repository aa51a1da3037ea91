/* backoff.c — see backoff.h. */
#include "base/backoff.h"

int64_t par_backoff_ms(int64_t min_ms, int64_t max_ms, int failures)
{
        int64_t ms = min_ms > 0 ? min_ms : 0;

        if (max_ms < 0)
                max_ms = 0;
        /* Doubling stops at the cap, and jumps to it rather than past it,
         * so a long run of failures cannot overflow. */
        for (int i = 1; i < failures && ms < max_ms; i++)
                ms = ms > max_ms / 2 ? max_ms : ms * 2;
        return ms < max_ms ? ms : max_ms;
}
