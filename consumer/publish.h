/*
 * publish.h — the node's Kafka producer (internal to consumer/).
 *
 * Owns: the producer handle, its delivery reports (served by the kpoll
 * thread), and waiting for a report. Stays out: what is produced (results
 * and dead letters in pipeline.c, status and metrics in status.c, raw dead
 * letters in intake.c) and the producer's configuration (node.c).
 *
 * Threads: pub_send from any thread; pub_start/pub_stop from the main
 * thread.
 */
#ifndef PAR_CONSUMER_PUBLISH_H
#define PAR_CONSUMER_PUBLISH_H

#include <stdbool.h>
#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "base/err.h"

typedef struct pub pub_t;

/* Takes conf (destroyed on failure too). */
par_err_t pub_new(pub_t **out, rd_kafka_conf_t *conf, par_error_t *err);
/* Accepts NULL. pub_stop must have run if pub_start did. */
void pub_destroy(pub_t *p);
/* Where delivery errors and acknowledgement times are counted (obs.h);
 * borrowed. Set before pub_start. */
struct node_obs;
void pub_set_obs(pub_t *p, struct node_obs *obs);

/* Starts the kpoll thread, which serves delivery reports. */
par_err_t pub_start(pub_t *p, par_error_t *err);
/* Flushes for up to flush_ms, then stops the kpoll thread. */
void pub_stop(pub_t *p, int flush_ms);
/* True once pub_stop began: senders give up retrying. */
bool pub_stopping(pub_t *p);

/* Produces value (taken: malloc'd, freed by librdkafka) with key to topic
 * and, when wait is set, blocks until its delivery report. Any thread. */
par_err_t pub_send(pub_t *p, const char *topic, const char *key, void *value,
                   size_t len, const char *traceparent, bool wait,
                   par_error_t *err);

#endif
