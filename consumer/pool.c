/*
 * pool.c — worker threads.
 *
 * A worker loops: take the most urgent runnable job from the scheduler,
 * run it through the pipeline, repeat. Above workers.min, a worker idle for
 * workers.idle_timeout retires; the main thread grows the pool (node.c) and
 * reaps exited threads. Each worker has its own claim handle, hence its own
 * MongoDB client from the pool, and its own Chrome slot (its index). With
 * claims on, a worker that takes a job while a backlog waits claims the
 * next ones along with it (batch.c).
 *
 * A slot's status fields (signal, recipe) change under one lock so that a
 * status snapshot never shows half of an update; the counters are atomics.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "batch.h"
#include "job.h"
#include "pool.h"
#include "store/claim.h"

typedef struct worker {
        pool_t *pool;
        int index;
        char id[16];     /* "w3" */
        char owner[160]; /* "<node id>/w3": claimed_by */
        pthread_t thread;
        bool used; /* slot taken (main thread) */
        atomic_int state;
        atomic_bool running; /* thread alive */
        atomic_bool stop;    /* asked to stop */
        atomic_llong since;  /* ms epoch of the last state change */
        atomic_llong spins, failures;
        char signal_id[32]; /* while busy (under pool->lock) */
        char recipe[72];
} worker_t;

struct pool {
        pool_opts_t o;
        pthread_mutex_t lock; /* the workers' signal_id / recipe */
        worker_t workers[POOL_MAX_WORKERS];
        atomic_int nworkers; /* threads alive */
        atomic_int busy;
};

const char *pool_state_name(int s)
{
        static const char *n[] = {"starting",  "idle",    "busy",
                                  "recycling", "crashed", "stopped"};
        return s >= 0 && s <= WS_STOPPED ? n[s] : "stopped";
}

par_err_t pool_new(pool_t **out, const pool_opts_t *opts, par_error_t *err)
{
        pool_t *p = calloc(1, sizeof(*p));
        if (!p)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        p->o = *opts;
        pthread_mutex_init(&p->lock, NULL);
        *out = p;
        return PAR_OK;
}

void pool_destroy(pool_t *p)
{
        if (!p)
                return;
        pthread_mutex_destroy(&p->lock);
        free(p);
}

static void set_state(worker_t *w, int state)
{
        atomic_store(&w->state, state);
        atomic_store(&w->since, par_clock_wall_ms());
}

static void run_one(worker_t *w, par_claim_t *claim,
                    par_session_store_t *sessions, par_sched_job_t *sj)
{
        pool_t *p = w->pool;
        const job_t *j = sj->payload;
        pipe_worker_t who = {.index = w->index,
                             .id = w->id,
                             .owner = w->owner,
                             .sessions = sessions,
                             .finishing_max = p->o.finishing_max};

        /* Not busy yet: this worker is among the idle ones. */
        if (claim)
                batch_claim(p->o.pipe, &who, claim, sj,
                            atomic_load(&p->nworkers) - atomic_load(&p->busy) -
                                1);
        pthread_mutex_lock(&p->lock);
        snprintf(w->signal_id, sizeof(w->signal_id), "%s", j->id);
        snprintf(w->recipe, sizeof(w->recipe), "%s", j->recipe);
        pthread_mutex_unlock(&p->lock);
        set_state(w, WS_BUSY);
        atomic_fetch_add(&p->busy, 1);

        pipe_outcome_t o = pipe_run(p->o.pipe, &who, claim, sj);
        /* A spin is every delivery that produced a result of its own run
         * (not one put back, nor one already finished elsewhere). */
        if (o != PIPE_DEFERRED && o != PIPE_SKIPPED) {
                atomic_fetch_add(&w->spins, 1);
                if (o != PIPE_DONE)
                        atomic_fetch_add(&w->failures, 1);
        }

        atomic_fetch_sub(&p->busy, 1);
        pthread_mutex_lock(&p->lock);
        w->signal_id[0] = w->recipe[0] = '\0';
        pthread_mutex_unlock(&p->lock);
        set_state(w, WS_IDLE);
}

static void *worker_main(void *arg)
{
        worker_t *w = arg;
        pool_t *p = w->pool;
        par_claim_t *claim = NULL;
        par_session_store_t *sessions = NULL;
        par_error_t e;
        bool counted = true;

        if (p->o.claims && par_claim_new(&claim, p->o.mpool, p->o.database,
                                         p->o.collection, w->owner, &e)) {
                par_log(PAR_LOG_ERROR, "consumer", "worker_failed",
                        "worker=%s error=\"%s\"", w->id, e.msg);
                set_state(w, WS_CRASHED);
                goto out;
        }
        if (p->o.sessions_collection && p->o.pipe->chrome &&
            par_session_store_new(&sessions, p->o.mpool, p->o.database,
                                  p->o.sessions_collection, &e)) {
                par_log(PAR_LOG_ERROR, "consumer", "worker_failed",
                        "worker=%s error=\"%s\"", w->id, e.msg);
                set_state(w, WS_CRASHED);
                goto out;
        }
        set_state(w, WS_IDLE);
        int64_t idle_since = par_clock_mono_ms();
        while (!atomic_load(&w->stop)) {
                par_sched_job_t *sj = par_sched_next(p->o.sched, 200);
                if (sj) {
                        run_one(w, claim, sessions, sj);
                        idle_since = par_clock_mono_ms();
                        continue;
                }
                if (atomic_load(p->o.draining))
                        break;
                if (par_clock_mono_ms() - idle_since < p->o.idle_timeout_ms)
                        continue;
                /* Idle long enough: retire if above the minimum. */
                int cur = atomic_load(&p->nworkers);
                if (cur > p->o.workers_min &&
                    atomic_compare_exchange_strong(&p->nworkers, &cur,
                                                   cur - 1)) {
                        counted = false;
                        par_log(PAR_LOG_INFO, "consumer", "worker_retired",
                                "worker=%s workers=%d", w->id, cur - 1);
                        break;
                }
                idle_since = par_clock_mono_ms();
        }
        set_state(w, WS_STOPPED);
out:
        par_session_store_destroy(sessions);
        par_claim_destroy(claim);
        if (counted)
                atomic_fetch_sub(&p->nworkers, 1);
        atomic_store(&w->running, false);
        return NULL;
}

par_err_t pool_start_worker(pool_t *p, par_error_t *err)
{
        worker_t *w = NULL;
        int limit = p->o.workers_max < POOL_MAX_WORKERS ? p->o.workers_max
                                                        : POOL_MAX_WORKERS;

        for (int i = 0; i < limit; i++)
                if (!p->workers[i].used) {
                        w = &p->workers[i];
                        break;
                }
        if (!w)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "no free worker slot");
        int index = (int)(w - p->workers);
        memset(w, 0, sizeof(*w));
        w->pool = p;
        w->index = index;
        w->used = true;
        snprintf(w->id, sizeof(w->id), "w%d", index);
        /* Via a local: gcc cannot tell w->owner from node_id apart. */
        char owner[sizeof(w->owner)];
        snprintf(owner, sizeof(owner), "%s/w%d", p->o.node_id, index);
        memcpy(w->owner, owner, sizeof(owner));
        atomic_store(&w->running, true);
        set_state(w, WS_STARTING);
        atomic_fetch_add(&p->nworkers, 1);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
                atomic_fetch_sub(&p->nworkers, 1);
                w->used = false;
                return par_error_set(err, PAR_ERR_IO,
                                     "cannot start worker thread");
        }
        return PAR_OK;
}

int pool_reap(pool_t *p)
{
        int reaped = 0;
        for (int i = 0; i < POOL_MAX_WORKERS; i++) {
                worker_t *w = &p->workers[i];
                if (w->used && !atomic_load(&w->running)) {
                        pthread_join(w->thread, NULL);
                        w->used = false;
                        reaped++;
                }
        }
        return reaped;
}

int pool_size(pool_t *p)
{
        return atomic_load(&p->nworkers);
}

int pool_busy(pool_t *p)
{
        return atomic_load(&p->busy);
}

void pool_worker(pool_t *p, int i, pool_worker_t *out)
{
        worker_t *w = &p->workers[i];

        pthread_mutex_lock(&p->lock);
        out->used = w->used;
        out->running = atomic_load(&w->running);
        out->index = w->index;
        snprintf(out->id, sizeof(out->id), "%s", w->id);
        out->state = atomic_load(&w->state);
        out->since = atomic_load(&w->since);
        out->spins = atomic_load(&w->spins);
        out->failures = atomic_load(&w->failures);
        snprintf(out->signal_id, sizeof(out->signal_id), "%s", w->signal_id);
        snprintf(out->recipe, sizeof(out->recipe), "%s", w->recipe);
        pthread_mutex_unlock(&p->lock);
}

int pool_stop(pool_t *p, int64_t deadline_ms)
{
        int left;
        for (int i = 0; i < POOL_MAX_WORKERS; i++)
                if (p->workers[i].used)
                        atomic_store(&p->workers[i].stop, true);
        for (;;) {
                left = 0;
                for (int i = 0; i < POOL_MAX_WORKERS; i++) {
                        worker_t *w = &p->workers[i];
                        if (!w->used)
                                continue;
                        if (atomic_load(&w->running)) {
                                left++;
                                continue;
                        }
                        pthread_join(w->thread, NULL);
                        w->used = false;
                }
                if (!left || par_clock_mono_ms() >= deadline_ms)
                        break;
                par_clock_sleep_ms(50);
        }
        return left;
}
