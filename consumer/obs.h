/*
 * obs.h — a node's Prometheus series (docs/OPERATIONS.md, "Metrics"):
 * latencies as histograms labelled by priority (and recipe for spins),
 * outcomes by status, priority and recipe, lag and queue state per
 * priority, browsers, client errors and build info.
 *
 * What stays out: the NodeMetrics message and /status (node.c), which keep
 * their own per-interval windows and totals.
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

#include "base/err.h"

typedef struct node node_t;
typedef struct node_obs node_obs_t;

/* Registers the series in n->metrics. Borrows n (its cfg, recipes, sched,
 * metrics, id must be set and outlive the object). */
par_err_t obs_new(node_obs_t **out, node_t *n, par_error_t *err);
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
 * for the committed offsets of this node's assigned partitions and their
 * leaders for the watermarks (msg/lag.h), and sets the lag per priority.
 * obs_stop joins it; call it before the consumer handle is closed (and
 * obs_destroy does). Main thread.
 */
par_err_t obs_start(node_obs_t *o, int64_t interval_ms, par_error_t *err);
void obs_stop(node_obs_t *o);

/*
 * Main thread, every metrics.interval: samples the pause state and the
 * browsers. Returns the node's total lag as last computed by the lag
 * thread, or -1 when unknown (the gauges keep their last values then).
 */
int64_t obs_refresh(node_obs_t *o, int64_t chrome_rss_bytes);

#endif
