/*
 * stats.h — a node's counters and latency histograms (internal to
 * consumer/).
 *
 * Owns: registering them with the metrics registries. Stays out: who counts
 * (pipeline.c, intake.c) and who reports (status.c, endpoint.c). The handles
 * are thread-safe; the struct is filled once by stats_init and read-only
 * afterwards.
 */
#ifndef PAR_CONSUMER_STATS_H
#define PAR_CONSUMER_STATS_H

#include "obs/metrics.h"

typedef struct stats {
        /* deliveries handled, by outcome (parallel_spins{status}) */
        par_counter_t *done, *failed, *retrying, *dead, *expired, *skipped;
        par_counter_t *deferred, *undecodable, *mongo_errors;
        par_hist_t *wait, *spin, *e2e; /* µs, standalone: NodeMetrics */
        struct node_obs *obs; /* the labelled /metrics series (obs.h) */
} stats_t;

/* Registers the exported counters in m and the totals by status in
 * `totals` (a registry never served: /metrics has them by status, priority
 * and recipe through obs.c); creates the histograms, which stats_destroy
 * frees. The registries own the counters. */
par_err_t stats_init(stats_t *s, par_metrics_t *m, par_metrics_t *totals,
                     par_error_t *err);
void stats_destroy(stats_t *s);

#endif
