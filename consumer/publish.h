/*
 * publish.h — the node's Kafka producer (internal to consumer/).
 *
 * Owns: the producer handle, its delivery reports (served by the kpoll
 * thread), waiting for a report, and the bound on results in flight. Stays out:
 * what is produced (results and dead letters in pipeline.c, status and metrics
 * in status.c, raw dead letters in intake.c) and the producer's configuration
 * (node.c).
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

/* Takes conf (destroyed on failure too). max_inflight bounds
 * pub_send_async. */
par_err_t pub_new(pub_t **out, rd_kafka_conf_t *conf, int max_inflight,
                  par_error_t *err);
/* Accepts NULL. pub_stop must have run if pub_start did. */
void pub_destroy(pub_t *p);
/* Where delivery errors and acknowledgement times are counted (obs.h);
 * borrowed. Set before pub_start. */
struct node_obs;
void pub_set_obs(pub_t *p, struct node_obs *obs);

/* par_admin_learn_leaders on the producer: the first results then do not
 * wait for it to learn where names[0..n) are led. */
void pub_learn_topics(pub_t *p, const char *const *names, size_t n,
                      int timeout_ms);
/* Starts the kpoll thread, which serves delivery reports. */
par_err_t pub_start(pub_t *p, par_error_t *err);
/* Flushes for up to flush_ms, then stops the kpoll thread. */
void pub_stop(pub_t *p, int flush_ms);
/* True once pub_stop began: senders give up retrying. */
bool pub_stopping(pub_t *p);

/* A delivery-report callback: fn runs on the kpoll thread with the
 * message's error (0: acknowledged), once per pub_send_async that returned
 * PAR_OK. It may call pub_send_async again (a re-send). It returns true
 * when the message is settled, false when work that follows the report
 * goes on elsewhere (a document to write): the message then still counts
 * in flight (pub_inflight, and the bound of pub_send_async) until that work
 * calls pub_settle. */
typedef struct pub_cb pub_cb_t;
struct pub_cb {
        bool (*fn)(pub_cb_t *cb, rd_kafka_resp_err_t err);
};

/* Produces value (taken: malloc'd, freed by librdkafka) with key to topic
 * and, when wait is set, blocks until its delivery report. Any thread. */
par_err_t pub_send(pub_t *p, const char *topic, const char *key, void *value,
                   size_t len, const char *traceparent, bool wait,
                   par_error_t *err);

/* Produces value (taken) and returns; cb (borrowed until its fn runs)
 * gets the delivery report. At most max_inflight (pub_new) such messages
 * are unacknowledged at once: a sender beyond that waits (back-pressure),
 * except a re-send from a callback. When this returns an error, cb->fn is
 * never called. Any thread. */
par_err_t pub_send_async(pub_t *p, const char *topic, const char *key,
                         void *value, size_t len, const char *traceparent,
                         pub_cb_t *cb, par_error_t *err);
/* Messages sent with pub_send_async not yet settled: unreported, or
 * reported and their follow-up work not done. */
int pub_inflight(pub_t *p);
/* Settles a message whose callback returned false. Any thread. */
void pub_settle(pub_t *p);

#endif
