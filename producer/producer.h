/*
 * producer.h — parallel-producer's internal interface (not installed).
 *
 * The main thread does the work (main loop in main.c): it reads the change
 * stream (pipeline.c), validates and publishes (publish.c), serves
 * librdkafka's delivery reports from rd_kafka_poll on this same thread,
 * writes the checkpoint (lease.c) and runs the lease sweeper (sweeper.c).
 * The lease thread (lease.c, its own MongoDB client) acquires and renews
 * the HA lease; the main thread sees it only through the atomics below.
 * The HTTP server's thread reads metrics handles and those atomics.
 *
 * Life cycle while active: pipeline_start() creates a Kafka producer and an
 * empty completion window and opens the change stream after the
 * checkpoint (or backfills); pipeline_stop() stops reading, flushes (on
 * shutdown), checkpoints the completed prefix (fenced by the lease epoch)
 * and destroys the Kafka producer, so no delivery report from an old
 * pipeline can reach a new window. Any error that might lose track of an
 * event (stream error, failed delivery, fatal Kafka error, lost lease)
 * stops the pipeline and starts a new one from the checkpoint: events after
 * it are published again, in order (duplicates, never losses).
 */
#ifndef PAR_PRODUCER_H
#define PAR_PRODUCER_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <mongoc/mongoc.h>

#include "msg/codec.h"
#include "base/config.h"
#include "base/err.h"
#include "obs/http.h"
#include "msg/kafka.h"
#include "obs/metrics.h"
#include "seqwin.h"
#include "store/signal.h"

#define COMP "producer"

#define PROD_MAX_LEVELS 16 /* priority.levels' bound */

typedef struct prod {
        par_config_t *cfg;
        par_codec_t *codec;
        par_signal_limits_t limits;
        char node_id[128];
        char dlq_topic[PAR_KAFKA_TOPIC_MAX];

        /* MongoDB: one client, used only by the main thread. */
        mongoc_client_t *client;
        mongoc_collection_t *signals;
        mongoc_collection_t *state;
        char lease_id[512];

        /* Lease (lease.c): its own thread and MongoDB client; the main
         * thread reads it through the atomics. Times are wall-clock ms. */
        int64_t lease_ttl;
        pthread_t lease_thread;
        bool lease_thread_started;
        mongoc_client_t *lease_client;
        mongoc_collection_t *lease_coll;
        atomic_llong lease_epoch; /* epoch held, 0 when not holding */
        atomic_llong lease_until; /* local expiry of the held lease */
        atomic_llong heartbeat;   /* main loop's last turn */
        atomic_int lease_stop;
        int64_t epoch; /* main thread: epoch the pipeline runs under */

        /* Pipeline (pipeline.c, publish.c). */
        bool running;
        rd_kafka_t *rk;
        par_seqwin_t *win;
        mongoc_change_stream_t *stream;
        bson_t *stream_token; /* last position reported by the stream */
        bool purging;         /* tearing down: ignore purge reports */
        bool kafka_fatal;
        bool restart; /* something asks for pipeline_stop + start */
        bool lost_history;
        bool progressed; /* pipeline_advance popped completed items */
        /* The delivery deadline (publish.c): the configured
         * message.timeout.ms, enforced here rather than by librdkafka, and
         * since when the window's oldest item has been waiting. */
        int64_t delivery_timeout_ms; /* 0: none */
        int64_t head_since_ms;

        /* Checkpoint: the released position and what was written. The
         * position bytes are an int64 read time (ms) + a BSON token. */
        uint8_t *cp_pending;
        size_t cp_pending_len;
        bool cp_dirty;
        int64_t cp_written_at; /* last successful write */
        int64_t cp_read_ms;    /* read time of the checkpointed event */
        int64_t last_read_ms;  /* read time of the last event read */

        /* Timers. */
        int64_t next_sweep;
        int idle_wait_ms;

        /* Metrics (thread-safe handles) and what /health reads. */
        par_metrics_t *metrics;
        par_http_t *http;
        par_counter_t *m_events, *m_produced, *m_rejected, *m_skipped,
            *m_expired, *m_delivery_errors, *m_backfilled, *m_requeued,
            *m_checkpoints, *m_restarts, *m_set_aside;
        par_gauge_t *m_cp_age, *m_lag, *m_active, *m_inflight,
            *m_restart_streak;
        par_counter_t *m_published[PROD_MAX_LEVELS + 1]; /* [prio] */
        par_buckets_t *m_publish_s[PROD_MAX_LEVELS + 1];
        par_counter_t *m_dead_letters, *m_kafka_delivery, *m_mongo_errors;
        /* Restarts since the last step that made progress: a restart loop
         * (the same event failing again and again) shows in /health. */
        atomic_int h_restart_streak;
        size_t value_max;   /* largest encoded value (msg/kafka) */
        size_t message_max; /* the message limit value_max is cut from */
        atomic_int h_active;
        atomic_llong h_last_ok; /* last successful MongoDB round trip */
} prod_t;

extern volatile sig_atomic_t par_producer_stop;

/* lease.c */
/* Starts the lease thread (acquires and renews while the main loop beats). */
par_err_t lease_start(prod_t *p, par_error_t *err);
/* Stops the thread, releasing the lease if held. Main thread. */
void lease_stop(prod_t *p);
/* Main thread: beats the heartbeat; returns the held epoch, 0 if none. */
int64_t lease_held(prod_t *p);
/* Main thread: writes the pending checkpoint when due (or force), fenced
 * by p->epoch. PAR_ERR_CANCELLED when the lease is no longer ours. */
par_err_t lease_checkpoint(prod_t *p, bool force, par_error_t *err);
/* Reads the checkpointed token (a new bson_t, or NULL when none). */
par_err_t lease_read_token(prod_t *p, bson_t **token, par_error_t *err);
/* Forgets the checkpoint (history lost): the next start backfills. */
par_err_t lease_clear_token(prod_t *p, par_error_t *err);

/* publish.c */
par_err_t publish_new_producer(prod_t *p, par_error_t *err);
void publish_destroy_producer(prod_t *p);
/* Main thread, with a producer: reads the topics' own message limit and,
 * when it is below the configured one, sizes against it (value_max,
 * message_max). True when the limit changed: the Kafka producer must then
 * be made again to batch within it. */
bool publish_size_to_topics(prod_t *p);
/* Asks the cluster for the topics' leaders (up to 3 s, failures ignored):
 * librdkafka learns them on first use, and on a topic created just before
 * that held the first signals for up to a second. */
void publish_learn_topics(prod_t *p);
/* Publishes one message for window item seq; takes payload (malloc'd) and
 * hdrs. Blocks (polling) while librdkafka's queue is full. */
par_err_t publish(prod_t *p, const char *topic, const char *key, void *payload,
                  size_t len, rd_kafka_headers_t *hdrs, uint64_t seq,
                  par_error_t *err);

/* pipeline.c */
par_err_t pipeline_start(prod_t *p, par_error_t *err);
/* flush: wait for deliveries and checkpoint (shutdown, orderly restart). */
void pipeline_stop(prod_t *p, bool flush);
/* Reads and handles up to one batch; returns events handled (0: idle). */
par_err_t pipeline_step(prod_t *p, int *handled, par_error_t *err);
/* Serves delivery reports and moves the checkpoint position forward. */
void pipeline_advance(prod_t *p);

/* sweeper.c */
void sweeper_run(prod_t *p);

#endif
