/*
 * pipeline.h — what happens to one signal on a worker (internal to
 * consumer/).
 *
 * Owns: the per-signal state machine (claim → resource lock → spin →
 * result → document → offset done), its outcome, and what it produces (the
 * SpinResult, the dead letter, the document update). Stays out: worker
 * threads and their status (pool.c), the renewal of the claims it keeps
 * (holds.c), and everything on the main thread.
 *
 * Everything a worker may use is in pipe_env_t, filled once by the node
 * before any worker starts and read-only afterwards; the handles in it are
 * thread-safe (scheduler, offsets, producer, holds, metrics) or per worker
 * (the claim handle, the Chrome slot of the worker's index).
 */
#ifndef PAR_CONSUMER_PIPELINE_H
#define PAR_CONSUMER_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include "browser/chrome.h"
#include "browser/recipe.h"
#include "browser/spin.h"
#include "holds.h"
#include "msg/codec.h"
#include "offsets.h"
#include "publish.h"
#include "scheduler.h"
#include "stats.h"
#include "store/claim.h"
#include "store/session.h"

/* How a delivery left a worker. The final ones are SignalStatus values
 * (the result's and the document's status). */
typedef enum pipe_outcome {
        PIPE_DEFERRED = 0, /* put back: leased or locked elsewhere, or
                              MongoDB unreachable; nothing published */
        PIPE_DONE,
        PIPE_FAILED,   /* permanent failure: result + DLQ */
        PIPE_RETRYING, /* transient, attempts left: claim kept, re-queued */
        PIPE_DEAD,     /* transient, attempts exhausted: result + DLQ */
        PIPE_EXPIRED,  /* past expires_at: never ran */
        PIPE_SKIPPED,  /* already final (or no document): nothing ran */
} pipe_outcome_t;

/* "deferred", "done", "failed", …: the status string of a final outcome. */
const char *pipe_outcome_name(pipe_outcome_t o);

typedef struct pipe_env {
        const char *node_id;
        const char *t_results, *t_dlq;
        par_codec_t *codec;
        pub_t *pub;
        par_sched_t *sched;
        par_offsets_t *offsets;
        holds_t *holds;
        par_recipe_set_t *recipes;
        par_chrome_t *chrome; /* NULL: no browser configured */
        const par_spin_opts_t *spin_opts;
        stats_t *stats;
        bool resource_lock; /* take resource locks (claims on) */
        int64_t lease_ms, backoff_ms, backoff_max_ms;
        int max_attempts;
        int claim_batch;  /* claim.batch: most signals per claim round trip */
        size_t value_max; /* largest encoded value (msg/kafka) */
} pipe_env_t;

/* The worker running a delivery. */
typedef struct pipe_worker {
        int index;                     /* Chrome slot */
        const char *id;                /* "w3" */
        const char *owner;             /* "<node id>/w3": claimed_by */
        par_session_store_t *sessions; /* the worker's; NULL: none */
        /* claims on: outcomes the node may have between hand-over to the
         * producer and their document (fin_reserve's limit) */
        int finishing_max;
} pipe_worker_t;

/* Runs the delivery sj (taken: it is completed or put back into the
 * scheduler before this returns) on worker w; claim is the worker's claim
 * handle, NULL when claims are off. Worker thread. */
pipe_outcome_t pipe_run(const pipe_env_t *env, const pipe_worker_t *w,
                        par_claim_t *claim, par_sched_job_t *sj);

#endif
