/*
 * status.h — what a node reports about itself on Kafka (internal to
 * consumer/).
 *
 * Owns: WorkerStatus records on <prefix>.workers (one per worker, on
 * change, tombstoned when the worker goes), NodeMetrics on
 * <prefix>.metrics, the metrics windows and the gauges of the /metrics
 * page, and the memory figures (the node's and its browsers' RSS). Stays
 * out: serving HTTP (endpoint.c) and counting (pipeline.c). Main thread,
 * except the gauges (the HTTP thread).
 */
#ifndef PAR_CONSUMER_STATUS_H
#define PAR_CONSUMER_STATUS_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"

typedef struct node node_t;

/* The metrics windows and the gauges; needs n->metrics, n->sched and
 * n->pool. */
par_err_t status_init(node_t *n, par_error_t *err);
/* Frees the windows. */
void status_fini(node_t *n);

/* Publishes the workers whose state changed since last time. */
void status_publish_workers(node_t *n);
/* Tombstones the workers that stopped (before their slots are reaped). */
void status_tombstone_stopped(node_t *n);
/* Shutdown: every worker's last state. */
void status_publish_final(node_t *n);
void status_publish_metrics(node_t *n, int64_t interval_ms);
/* Resident bytes of every browser process; -1 without a browser. */
int64_t status_chrome_rss(node_t *n);

#endif
