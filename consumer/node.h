/*
 * node.h — one parallel-consumer node (internal to consumer/).
 *
 * Threads of a node:
 *   main (node.c)   owns the Kafka consumer: polls, applies incremental
 *                   rebalances, pauses/resumes levels on the scheduler's
 *                   watermarks, commits the finished offset prefix, sizes
 *                   the worker pool, publishes metrics and worker status,
 *                   and runs the shutdown sequence.
 *   kpoll (node.c)  serves the producer's delivery reports.
 *   renew (node.c)  renews the leases of every claim this node holds.
 *   workers (pool.c) take jobs from the scheduler and run the pipeline
 *                   claim → spin → result → document → offset done.
 *   http            the observability endpoint's service thread.
 * Workers never touch the consumer handle; they share the producer
 * (thread-safe), the scheduler and offsets (locked), and the node's counters
 * (atomics / metrics handles).
 */
#ifndef PAR_CONSUMER_NODE_H
#define PAR_CONSUMER_NODE_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <mongoc/mongoc.h>

#include "browser/chrome.h"
#include "msg/codec.h"
#include "base/config.h"
#include "base/err.h"
#include "obs/http.h"
#include "msg/kafka.h"
#include "obs/metrics.h"
#include "offsets.h"
#include "browser/recipe.h"
#include "scheduler.h"
#include "browser/spin.h"

#define NODE_MAX_LEVELS  16
#define NODE_MAX_WORKERS 256

typedef struct node node_t;

/* A message turned into work: the scheduler payload. Owned by whoever holds
 * the scheduler job (freed with job_free). */
typedef struct job {
        node_t *node;
        char topic[PAR_KAFKA_TOPIC_MAX];
        int32_t partition;
        int64_t offset;
        int64_t queued_at;   /* Kafka message timestamp (ms epoch) */
        int64_t received_ms; /* monotonic, when the poll thread got it */
        json_t *signal;      /* decoded Signal record */
        void *raw;           /* the message value as read (for the DLQ) */
        size_t raw_len;
        const char *id, *recipe, *resource, *traceparent; /* in signal */
        int priority;
        int64_t created_at, expires_at;
        int32_t msg_attempt;   /* Signal.attempt */
        char prev_owner[160];  /* local retry: the worker that ran before */
        int attempts_here;     /* failed attempts run by this node */
        int deferrals;         /* times put back because leased elsewhere */
        bool holds_claim;      /* claim held while deferred (renewed) */
        bool lock_wait;        /* deferred for its resource lock: the claim
                                  kept meanwhile is not a failed attempt */
        int32_t claim_attempt; /* the document's attempt when lock_wait */
} job_t;

/* Frees a job; a job dropped while holding a claim for its retry (revoke,
 * shutdown) has that claim queued for release. Any thread; takes only the
 * held-claims lock. */
void job_free(void *job);

/* Worker states (WorkerStatus.state). */
enum {
        WS_STARTING,
        WS_IDLE,
        WS_BUSY,
        WS_RECYCLING,
        WS_CRASHED,
        WS_STOPPED,
};

typedef struct worker {
        node_t *node;
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
        char signal_id[32]; /* while busy (under node->wlock) */
        char recipe[72];
        int published_state; /* main thread: last published */
        long long published_since;
} worker_t;

/* A claim the node holds, for the lease renewer, with the resource lock
 * taken for it (resource[0] == 0: none). */
typedef struct held {
        struct held *next;
        char id[32];
        char owner[160];
        char resource[260];
        bool waiting; /* kept while waiting for a lock: never ran */
        bool release; /* give it back instead of renewing */
} held_t;

struct node {
        par_config_t *cfg;
        char id[128];
        int levels;
        char topics[NODE_MAX_LEVELS][PAR_KAFKA_TOPIC_MAX];
        char t_results[PAR_KAFKA_TOPIC_MAX], t_dlq[PAR_KAFKA_TOPIC_MAX],
            t_metrics[PAR_KAFKA_TOPIC_MAX], t_workers[PAR_KAFKA_TOPIC_MAX];

        rd_kafka_t *consumer; /* main thread only */
        rd_kafka_t *producer; /* any thread */
        par_codec_t *codec;
        par_sched_t *sched;
        par_offsets_t *offsets;
        mongoc_uri_t *muri;
        mongoc_client_pool_t *mpool;
        par_recipe_set_t *recipes;
        par_chrome_t *chrome;
        par_spin_opts_t spin_opts;
        par_metrics_t *metrics;
        par_http_t *http;

        /* settings */
        bool claims;
        bool resource_lock; /* claim.resource_lock (and claims) */
        int64_t lease_ms, backoff_ms, backoff_max_ms, grace_ms;
        int max_attempts, workers_min, workers_max;
        int64_t idle_timeout_ms, memory_limit_mb;

        /* pool (workers[] slots are reused; guarded by wlock) */
        pthread_mutex_t wlock;
        worker_t workers[NODE_MAX_WORKERS];
        atomic_int nworkers; /* threads alive */
        atomic_int busy;

        /* delivery waits: one lock for all, signalled by the kpoll thread */
        pthread_mutex_t dlock;
        pthread_cond_t dcond;

        /* claims held (lease renewal) */
        pthread_mutex_t hlock;
        held_t *held;

        /* Pause state, main thread. A level is paused as a whole, but
         * each assigned partition is paused only once it has delivered a
         * message since it was assigned: librdkafka resumes a partition
         * from the last position delivered to the application, which for
         * a partition just (re)assigned may be stale (from a previous
         * assignment) and would skip messages. */
        uint32_t paused;
        struct npart {
                char topic[PAR_KAFKA_TOPIC_MAX];
                int32_t partition;
                int level;
                bool delivered, paused;
        } * parts;
        int nparts, cap_parts;

        /* lifecycle */
        atomic_bool draining;   /* stop taking new work */
        atomic_bool quit_renew; /* stop the renewer */
        atomic_bool quit_bg;    /* stop kpoll */
        atomic_bool closed;     /* rd_kafka_consumer_close returned */
        pthread_t kpoll_thread, renew_thread;
        int64_t started_ms; /* wall */
        atomic_bool assigned_any;
        atomic_llong lag; /* -1 unknown */

        /* counters since start */
        par_counter_t *c_done, *c_failed, *c_retrying, *c_dead, *c_expired,
            *c_skipped, *c_deferred, *c_undecodable, *c_claim_errors;
        par_hist_t *h_wait, *h_spin, *h_e2e; /* µs */
        par_hist_t *w_wait, *w_spin, *w_e2e; /* metrics windows */
        uint64_t last_final;                 /* for throughput */
        uint64_t last_done;
};

/* node.c */
par_err_t node_new(node_t **out, par_config_t *cfg, par_error_t *err);
/* Runs until *stop (set by a signal handler) then shuts down gracefully;
 * *stop >= 2 asks for an immediate exit. Returns the exit code. */
int node_run(node_t *n, volatile sig_atomic_t *stop);
void node_destroy(node_t *n);

/* Produces value (taken: malloc'd, freed by librdkafka) with key to topic
 * and, when wait is set, blocks until its delivery report. Any thread. */
par_err_t node_produce(node_t *n, const char *topic, const char *key,
                       void *value, size_t len, const char *traceparent,
                       bool wait, par_error_t *err);

/* Adds a claim to the renewer's list; resource (may be NULL) is a resource
 * lock held by the same owner, renewed and released with it. waiting: the
 * claim is only kept while waiting for the resource lock (given back, its
 * attempt is uncounted). */
void node_hold(node_t *n, const char *id, const char *owner,
               const char *resource, bool waiting);
void node_unhold(node_t *n, const char *id, const char *owner);
/* Marks a held claim (and its resource lock) for release by the renewer
 * (job dropped). */
void node_release_later(node_t *n, const char *id, const char *owner);

/* pool.c */
par_err_t pool_start_worker(node_t *n, par_error_t *err);
/* Workers alive and the ones without a job. */
int pool_size(node_t *n);
/* Asks every worker to stop after its current job; joins those that
 * finished within deadline_ms (monotonic). Returns how many still run. */
int pool_stop(node_t *n, int64_t deadline_ms);
/* Joins exited worker threads; returns how many were reaped. */
int pool_reap(node_t *n);

#endif
