/*
 * stats.h — a node's counters and latency histograms (internal to
 * consumer/).
 *
 * Owns: registering them with the metrics registry (so /metrics exports
 * them). Stays out: who counts (pipeline.c, intake.c) and who reports
 * (status.c, endpoint.c). The handles are thread-safe; the struct is
 * filled once by stats_init and read-only afterwards.
 */
#ifndef PAR_CONSUMER_STATS_H
#define PAR_CONSUMER_STATS_H

#include "obs/metrics.h"

typedef struct stats {
        /* deliveries handled, by outcome (parallel_spins{status}) */
        par_counter_t *done, *failed, *retrying, *dead, *expired, *skipped;
        par_counter_t *deferred, *undecodable, *mongo_errors;
        par_hist_t *wait, *spin, *e2e; /* µs */
} stats_t;

/* Registers every handle in m (which owns them). */
void stats_init(stats_t *s, par_metrics_t *m);

#endif
