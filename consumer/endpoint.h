/*
 * endpoint.h — the node's HTTP endpoint (internal to consumer/).
 *
 * Owns: the routes /health, /status (JSON), /metrics (the registry's
 * Prometheus text) and / (the dashboard, which reads /status). Stays out:
 * the HTTP server itself (lib/obs/http) and the figures (status.c,
 * stats.h). Handlers run on the HTTP service thread and read only
 * thread-safe state (the partitions held: assign_held).
 */
#ifndef PAR_CONSUMER_ENDPOINT_H
#define PAR_CONSUMER_ENDPOINT_H

#include "base/err.h"

typedef struct node node_t;

/* Creates n->http on listen (not yet serving) with the node's routes. */
par_err_t endpoint_new(node_t *n, const char *listen, par_error_t *err);

#endif
