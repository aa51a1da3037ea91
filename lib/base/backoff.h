/*
 * backoff.h — the one doubling backoff: how long to wait before retrying
 * something that has failed `failures` times in a row.
 *
 * Used wherever Parallel retries with growing pauses (a Chrome slot that
 * will not start, a spin that failed and is tried again, the producer's
 * pipeline restart), so that every retry in the system follows the same
 * rule and the same configuration bounds mean the same thing.
 *
 * Pure function: thread-safe, keeps no state.
 */
#ifndef PAR_BACKOFF_H
#define PAR_BACKOFF_H

#include <stdint.h>

/*
 * min_ms after the first failure, doubled for each further one, capped at
 * max_ms: min, 2·min, 4·min, … max. failures <= 1 gives min_ms (also when
 * min_ms > max_ms, then max_ms). Negative bounds count as 0.
 */
int64_t par_backoff_ms(int64_t min_ms, int64_t max_ms, int failures);

#endif
