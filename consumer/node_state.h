/*
 * node_state.h — the state of one parallel-consumer node, shared by the
 * main-thread files (internal to consumer/). The program's entry points are
 * in node.h; this header holds no functions, so the files that read the
 * state (intake, assign, commit, status, endpoint, obs) and node.c, which
 * calls them, never include each other in a circle.
 *
 * Threads of a node:
 *   main (node.c)      owns the Kafka consumer: takes messages from one
 *                      queue per priority level while the level's local
 *                      queue is below its watermark (intake.c), applies
 *                      incremental rebalances (assign.c), commits the
 *                      finished offset prefix (commit.c), sizes the worker
 *                      pool, publishes metrics and worker status
 *                      (status.c), and runs the shutdown sequence.
 *   kpoll (publish.c)  serves the producer's delivery reports.
 *   renew (holds.c)    renews the leases of every claim this node holds.
 *   workers (pool.c)   take jobs from the scheduler and run the pipeline
 *                      (pipeline.c) claim → spin → result → document →
 *                      offset done.
 *   http (endpoint.c)  the observability endpoint's service thread.
 *
 * The struct below is shared by the main-thread files (node.c, intake.c,
 * assign.c, commit.c, status.c, endpoint.c). Workers never see it: they
 * get a pipe_env_t (pipeline.h) and a pool_opts_t (pool.h), so they never
 * touch the consumer handle; they share the producer, the scheduler and
 * offsets (locked), and the counters (atomics / metrics handles).
 */
#ifndef PAR_CONSUMER_NODE_STATE_H
#define PAR_CONSUMER_NODE_STATE_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <mongoc/mongoc.h>

#include "base/config.h"
#include "base/err.h"
#include "browser/chrome.h"
#include "browser/recipe.h"
#include "browser/spin.h"
#include "holds.h"
#include "msg/codec.h"
#include "msg/kafka.h"
#include "obs/http.h"
#include "obs.h"
#include "obs/metrics.h"
#include "offsets.h"
#include "pipeline.h"
#include "pool.h"
#include "publish.h"
#include "scheduler.h"
#include "stats.h"
#include "store/signal.h"

#define NODE_MAX_LEVELS  OBS_MAX_LEVELS
#define NODE_MAX_WORKERS POOL_MAX_WORKERS
/* Browser processes a node can run: one per worker (chrome.isolation=
 * browser) or up to chrome.browsers (at most 64) shared ones. */
#define NODE_MAX_BROWSERS (NODE_MAX_WORKERS + 64)

typedef struct node node_t;

/* An assigned partition (assign.c). */
struct npart {
        char topic[PAR_KAFKA_TOPIC_MAX];
        int32_t partition;
        int level;
};

struct node {
        par_config_t *cfg;
        char id[128];
        int levels;
        char topics[NODE_MAX_LEVELS][PAR_KAFKA_TOPIC_MAX];
        char t_results[PAR_KAFKA_TOPIC_MAX], t_dlq[PAR_KAFKA_TOPIC_MAX],
            t_metrics[PAR_KAFKA_TOPIC_MAX], t_workers[PAR_KAFKA_TOPIC_MAX];
        /* What results and dead letters are sized against: the configured
         * message limit, or the output topics' own when smaller. */
        size_t message_max, value_max;

        rd_kafka_t *consumer; /* main thread only */
        /* One queue per level: every assigned partition's messages are
         * forwarded to its level's queue (assign.c), so the main thread
         * takes a level's messages only while its local queue has room,
         * without pausing partitions (a pause throws librdkafka's
         * prefetched messages away and a resume fetches them again). */
        rd_kafka_queue_t *lq[NODE_MAX_LEVELS];
        rd_kafka_queue_t *cq; /* the consumer queue: rebalances, errors */
        /* The main loop sleeps in poll() on wake[0]; librdkafka writes a
         * byte when a level queue or the consumer queue gets something,
         * and the scheduler when a level drains to its low watermark. */
        int wake[2];
        int queue_high; /* sched.queue.high: a level's local queue bound */
        pub_t *pub;     /* any thread */
        par_codec_t *codec;
        par_sched_t *sched;
        par_offsets_t *offsets;
        mongoc_uri_t *muri;
        mongoc_client_pool_t *mpool;
        par_recipe_set_t *recipes;
        par_chrome_t *chrome;
        par_spin_opts_t spin_opts;
        par_metrics_t *metrics; /* served on /metrics */
        par_metrics_t *totals;  /* outcome totals for NodeMetrics, /status */
        struct node_obs *obs;   /* the labelled series of /metrics */
        par_http_t *http;
        stats_t stats;
        holds_t *holds;
        pipe_env_t pipe; /* what workers see */
        pool_t *pool;

        /* settings */
        par_signal_limits_t limits; /* what intake checks a Signal against */
        bool claims;
        int64_t grace_ms;
        int workers_min, workers_max;
        int64_t memory_limit_mb;

        /* Levels whose messages are held back (bit level-1): the local
         * queue reached sched.queue.high and has not drained to
         * sched.queue.low, or the node is draining. Main thread. */
        uint32_t paused;
        struct npart *parts;
        int nparts, cap_parts;
        /* How many of parts each level has (index level-1), counted at
         * every rebalance for /status on the HTTP thread, which must not
         * read parts; under held_lock so a reader sees all levels of one
         * rebalance, never some before it and some after (assign.c). */
        pthread_mutex_t held_lock;
        int held[NODE_MAX_LEVELS];

        /* worker status last published, main thread (status.c) */
        int published_state[NODE_MAX_WORKERS]; /* -1: none */
        long long published_since[NODE_MAX_WORKERS];
        /* metrics windows and the last totals (status.c) */
        par_hist_t *w_wait, *w_spin, *w_e2e;
        uint64_t last_final, last_done;
        int64_t metrics_at; /* mono ms of the last snapshot (node.c) */

        /* lifecycle */
        atomic_bool draining; /* stop taking new work */
        atomic_bool closed;   /* rd_kafka_consumer_close returned */
        /* The broker holds the final offsets (commit_final): a commit
         * refused after that, the close's own, loses nothing. */
        atomic_bool final_committed;
        int64_t started_ms; /* wall */
        atomic_llong lag;   /* -1 unknown */
};

#endif
