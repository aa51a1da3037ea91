/*
 * obs.h — a node's Prometheus series (docs/OPERATIONS.md, "Metrics"):
 * latencies as histograms labelled by priority (and recipe for spins),
 * outcomes by status, priority and recipe, lag and queue state per
 * priority, browsers, client errors and build info.
 *
 * What stays out: the NodeMetrics message and /status (status.c), which
 * keep their own per-interval windows and totals, and the node's state:
 * the caller passes what the gauges show (obs_refresh), so this module
 * depends on nothing of the node.
 *
 * Label values are bounded: priorities 1..levels; recipes are the names in
 * recipes.dir read at start, plus "noop", plus "other" for any name that is
 * neither. Outcome counters exist from the start (at 0) so rate() sees
 * their first increments; spin-duration histograms appear with the first
 * spin of their (priority, recipe).
 *
 * Threads: obs_outcome/obs_spin/obs_wait/obs_e2e/obs_claim/obs_publish/
 * obs_dead_letter/obs_kafka_error may be called from any thread (workers,
 * the kpoll thread, the main loop). obs_refresh runs on the main thread,
 * the owner of the consumer handle.
 */
#ifndef PAR_CONSUMER_OBS_H
#define PAR_CONSUMER_OBS_H

#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "base/config.h"
#include "base/err.h"
#include "browser/chrome.h"
#include "browser/recipe.h"
#include "msg/kafka.h"
#include "obs/metrics.h"
#include "scheduler.h"

/* The bound of priority.levels (lib/base/config.c). */
#define OBS_MAX_LEVELS 16

typedef struct node_obs node_obs_t;

/* What the series are built from. The object borrows everything here
 * except topics, which it copies; the rest must outlive it. */
typedef struct obs_opts {
        par_metrics_t *metrics; /* where the series are registered */
        const par_config_t
            *cfg; /* consumer.group, kafka.* for the lag client */
        const char *node_id;
        int levels;                                /* 1..OBS_MAX_LEVELS */
        const char (*topics)[PAR_KAFKA_TOPIC_MAX]; /* topics[L - 1]: level L */
        const par_recipe_set_t *recipes;           /* names read at start */
        par_sched_t *sched;                        /* queue depth per level */
} obs_opts_t;

par_err_t obs_new(node_obs_t **out, const obs_opts_t *opts, par_error_t *err);
void obs_destroy(node_obs_t *o); /* accepts NULL */

/* status: done failed retrying dead expired skipped */
void obs_outcome(node_obs_t *o, int priority, const char *recipe,
                 const char *status);
void obs_spin(node_obs_t *o, int priority, const char *recipe, double s);
void obs_wait(node_obs_t *o, int priority, double s);
void obs_e2e(node_obs_t *o, int priority, double s);
void obs_claim(node_obs_t *o, double s);
void obs_publish(node_obs_t *o, double s);
/* reason: failed dead undecodable */
void obs_dead_letter(node_obs_t *o, const char *reason);
/* kind: delivery commit (client errors are counted by lib/msg) */
void obs_kafka_error(node_obs_t *o, const char *kind);

/*
 * Starts the lag thread: every interval_ms it asks the group coordinator
 * for the committed offsets of the partitions assigned to consumer (borrowed;
 * rd_kafka_assignment is thread-safe) and their leaders for the watermarks
 * (msg/lag.h), and sets the lag per priority. obs_stop joins it; call it
 * before the consumer handle is closed (and obs_destroy does). Main thread.
 */
par_err_t obs_start(node_obs_t *o, rd_kafka_t *consumer, int64_t interval_ms,
                    par_error_t *err);
void obs_stop(node_obs_t *o);

/*
 * Main thread, every metrics.interval: sets the gauges the caller samples
 * from the node's state: paused[L - 1] partitions paused at level L, the
 * browsers' stats (NULL: no browsers) and their resident memory (< 0:
 * unknown). Returns the node's total lag as last computed by the lag
 * thread, or -1 when unknown (the gauges keep their last values then).
 */
int64_t obs_refresh(node_obs_t *o, const int *paused,
                    const par_chrome_stats_t *chrome, int64_t chrome_rss_bytes);

#endif
