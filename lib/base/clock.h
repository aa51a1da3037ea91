/*
 * clock.h — the time helpers every module needs, in one place.
 *
 * Wall-clock milliseconds are for timestamps that leave the process
 * (documents, Avro records, leases compared across machines); monotonic
 * milliseconds are for durations and deadlines inside it. Condition
 * variables made with par_clock_cond_init wait against the monotonic clock,
 * so a deadline from par_clock_deadline is immune to wall-clock jumps.
 *
 * All functions are thread-safe and keep no state.
 */
#ifndef PAR_CLOCK_H
#define PAR_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t par_clock_wall_ms(void);

/* Milliseconds on CLOCK_MONOTONIC (an arbitrary origin). */
int64_t par_clock_mono_ms(void);

/* Seconds on CLOCK_MONOTONIC with the clock's full (nanosecond)
 * resolution: for measuring durations shorter than a millisecond (latency
 * figures) and for code that keeps its deadlines in seconds. */
double par_clock_mono_s(void);

/* Sleeps ms milliseconds; returns early when a signal handler runs, so a
 * loop that sleeps notices a stop flag at once. */
void par_clock_sleep_ms(int64_t ms);

/* Initialises cv to wait against CLOCK_MONOTONIC. */
void par_clock_cond_init(pthread_cond_t *cv);

/* The CLOCK_MONOTONIC time ms milliseconds from now, for
 * pthread_cond_timedwait on a condition made by par_clock_cond_init. */
void par_clock_deadline(struct timespec *ts, int64_t ms);

#endif
