/*
 * pool.h — the worker threads (internal to consumer/).
 *
 * Owns: worker slots and threads, their state (WorkerStatus.state) and
 * counters, growth and retirement, and stopping them. Each worker takes
 * jobs from the scheduler and hands them to the pipeline (pipeline.h).
 * Stays out: what a job does (pipeline.c), publishing worker status
 * (status.c), and deciding when to grow (node.c).
 *
 * Threads: pool_start_worker, pool_reap, pool_stop from the main thread;
 * pool_size, pool_busy, pool_worker from any thread.
 */
#ifndef PAR_CONSUMER_POOL_H
#define PAR_CONSUMER_POOL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <mongoc/mongoc.h>

#include "base/err.h"
#include "pipeline.h"
#include "scheduler.h"

#define POOL_MAX_WORKERS 256

/* Worker states (WorkerStatus.state). */
typedef enum pool_state {
        WS_STARTING,
        WS_IDLE,
        WS_BUSY,
        WS_RECYCLING,
        WS_CRASHED,
        WS_STOPPED,
} pool_state_t;

/* "starting", "idle", …; out of range: "stopped". */
const char *pool_state_name(int state);

typedef struct pool pool_t;

typedef struct pool_opts {
        const char *node_id;
        const pipe_env_t *pipe; /* borrowed: outlives the pool */
        par_sched_t *sched;
        /* claims on: each worker opens its claim handle from mpool */
        bool claims;
        mongoc_client_pool_t *mpool;
        const char *database, *collection;
        /* state scope resource: each worker opens a session store on this
         * collection of database from mpool (NULL: sessions in memory) */
        const char *sessions_collection;
        int workers_min, workers_max;
        int finishing_max; /* claim.finishing: results acked, unwritten */
        int64_t idle_timeout_ms;
        const atomic_bool *draining; /* set: workers leave when idle */
} pool_opts_t;

/* A copy of a worker slot's status. */
typedef struct pool_worker {
        bool used;    /* slot taken */
        bool running; /* thread alive */
        int index;
        char id[16];
        int state;
        long long since; /* ms epoch of the last state change */
        long long spins, failures;
        char signal_id[32]; /* while busy */
        char recipe[72];
} pool_worker_t;

/* Copies *opts (the strings and handles in it are borrowed). */
par_err_t pool_new(pool_t **out, const pool_opts_t *opts, par_error_t *err);
/* Accepts NULL. No worker may still run. */
void pool_destroy(pool_t *p);

par_err_t pool_start_worker(pool_t *p, par_error_t *err);
/* Workers alive, and those running a job. */
int pool_size(pool_t *p);
int pool_busy(pool_t *p);
/* Copies slot i (0 <= i < POOL_MAX_WORKERS) into *out, under the lock the
 * workers update it with. */
void pool_worker(pool_t *p, int i, pool_worker_t *out);
/* Asks every worker to stop after its current job; joins those that
 * finished within deadline_ms (monotonic). Returns how many still run. */
int pool_stop(pool_t *p, int64_t deadline_ms);
/* Joins exited worker threads; returns how many were reaped. */
int pool_reap(pool_t *p);

#endif
