/*
 * scheduler.h — the node's priority scheduler: local queues between the Kafka
 * poll thread and the workers.
 *
 * Kafka prefetches per partition, so fetch order is not priority order;
 * priority is enforced here, at dispatch:
 *   - one FIFO queue per priority level (1 = least urgent … levels = most);
 *   - par_sched_next() gives a free worker the most urgent *runnable* job;
 *   - a job with a resource key is runnable only when no job of that
 *     resource is running and it is the oldest queued job of that resource,
 *     so one resource never runs twice at once and never out of order; a
 *     blocked job never blocks jobs of other resources. The oldest job of a
 *     resource inherits the urgency of any younger job queued behind it (a
 *     p4 signal stuck behind a p1 signal on its resource does not wait for
 *     the p1 backlog);
 *   - ageing: a job queued longer than `aging_ms` counts one level more
 *     urgent per full period waited (0 disables ageing);
 *   - watermarks: a level whose queue reaches `high` should take no more
 *     messages until it drains to `low` (on_resume says when);
 *   - a revoked partition's unstarted jobs are dropped;
 *   - a job can be put back (par_sched_defer) to run again no earlier than a
 *     given time, keeping its place at the head of its resource.
 *
 * Threads: every function is thread-safe (one mutex). Typically the poll
 * thread pushes, revokes and takes flow changes; workers call next/done/
 * defer. Times are monotonic milliseconds (par_clock_mono_ms), passed in so
 * tests can drive the clock.
 */
#ifndef PAR_SCHED_H
#define PAR_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"

typedef struct par_sched par_sched_t;

/* A job as the caller sees it. par_sched_push copies the fields; the job
 * returned by next() belongs to the scheduler until par_sched_done. */
typedef struct par_sched_job {
        int level;            /* 1..levels, higher = more urgent */
        int32_t partition;    /* Kafka partition within the level's topic */
        int64_t offset;       /* Kafka offset */
        const char *resource; /* copied on push; NULL or "" = no resource */
        void *payload;        /* the caller's (e.g. the decoded signal) */
        int64_t enqueued_ms;  /* when it entered the node (monotonic ms) */
        int attempt;          /* local retries so far (0 on push) */
} par_sched_job_t;

typedef struct par_sched_opts {
        int levels;         /* number of priority levels, 1..32 */
        int64_t aging_ms;   /* 0 = no ageing */
        int high_watermark; /* per level; <= 0 = never pause */
        int low_watermark;  /* per level; resume at or below this */
        /* Frees a payload of a job dropped by revoke/clear/destroy; may be
         * NULL. Called with the scheduler's lock held: must not call back. */
        void (*free_payload)(void *payload);
        /* Called when a level that had reached high_watermark drains to
         * low_watermark (its intake may go on), with wake_arg; may be
         * NULL. Called with the scheduler's lock held: must not call back
         * and must not block (the node writes one byte to a pipe). */
        void (*on_resume)(void *wake_arg);
        void *wake_arg;
} par_sched_opts_t;

par_err_t par_sched_new(par_sched_t **out, const par_sched_opts_t *opts,
                        par_error_t *err);
/* Frees queued jobs (free_payload on each). Jobs handed out and not yet
 * done must not be used after this. */
void par_sched_destroy(par_sched_t *s);

/* Queues a copy of job (level must be 1..levels). Wakes one waiter. */
par_err_t par_sched_push(par_sched_t *s, const par_sched_job_t *job,
                         par_error_t *err);

/* Non-blocking: the most urgent runnable job at time now_ms, or NULL. The
 * job's resource is marked busy until par_sched_done/defer. */
par_sched_job_t *par_sched_try_next(par_sched_t *s, int64_t now_ms);

/* Blocking: waits up to timeout_ms for a runnable job. Returns NULL on
 * timeout or once par_sched_close was called. */
par_sched_job_t *par_sched_next(par_sched_t *s, int timeout_ms);

/* The job has finished: releases its resource and frees the job record (not
 * its payload: the caller took that from job->payload). */
void par_sched_done(par_sched_t *s, par_sched_job_t *job);

/* Puts a handed-out job back, runnable again at not_before_ms, in its
 * original place (ahead of younger jobs of its resource and level).
 * job->attempt is incremented. The resource is released meanwhile but no
 * younger job of it can overtake. */
void par_sched_defer(par_sched_t *s, par_sched_job_t *job,
                     int64_t not_before_ms);

/* Puts a handed-out job back unrun, runnable at once, in its original
 * place: par_sched_defer without counting an attempt (a worker that took
 * it only to claim it ahead for whichever worker runs it). */
void par_sched_put_back(par_sched_t *s, par_sched_job_t *job);

/* Drops every queued (not handed-out) job of (level, partition), calling
 * free_payload on each. Returns how many were dropped. */
int par_sched_revoke(par_sched_t *s, int level, int32_t partition);

/* Drops every queued job (shutdown). Returns how many. */
int par_sched_clear(par_sched_t *s);

/* Flow control: bitmasks (bit level-1) of levels whose intake should now
 * stop / go on, relative to what the previous call reported.
 * Returns true when either mask is non-zero. */
bool par_sched_take_flow(par_sched_t *s, uint32_t *pause, uint32_t *resume);

/* Queued jobs at a level (0 = all levels); jobs handed out and not done. */
int par_sched_depth(par_sched_t *s, int level);
int par_sched_running(par_sched_t *s);
/* Jobs of (level, partition) handed out and not yet done or deferred. */
int par_sched_running_in(par_sched_t *s, int level, int32_t partition);

/* Makes par_sched_next return NULL from now on (waking every waiter). */
void par_sched_close(par_sched_t *s);

#endif
