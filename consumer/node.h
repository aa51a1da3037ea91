/*
 * node.h — one parallel-consumer node: build it, run it until a stop is
 * asked, destroy it. What a node holds is in node_state.h, read only by
 * the files of the main thread; what its threads do is described there.
 */
#ifndef PAR_CONSUMER_NODE_H
#define PAR_CONSUMER_NODE_H

#include <signal.h>

#include "base/config.h"
#include "base/err.h"

typedef struct node node_t;

par_err_t node_new(node_t **out, par_config_t *cfg, par_error_t *err);
/* Runs until *stop (set by a signal handler) then shuts down gracefully;
 * *stop >= 2 asks for an immediate exit. Returns the exit code. */
int node_run(node_t *n, volatile sig_atomic_t *stop);
void node_destroy(node_t *n);

#endif
