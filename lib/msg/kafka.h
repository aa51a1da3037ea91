/*
 * kafka.h — the few librdkafka helpers every Parallel program needs:
 * building an rd_kafka_conf_t from our config, naming topics, and W3C
 * Trace Context `traceparent` values carried as a message header.
 *
 * Configuration. par_kafka_conf_new() starts from librdkafka's defaults,
 * sets bootstrap.servers=127.0.0.1:9092, routes librdkafka's log lines to
 * par_log (component "kafka"), then applies every `kafka.*` key of the
 * config (prefix stripped) in the order they were set, so an operator can
 * set any librdkafka property (`-X kafka.acks=all`,
 * `PARALLEL_KAFKA_SECURITY_PROTOCOL=ssl`). Callers then set what their role
 * requires (group.id, enable.idempotence, callbacks) on the returned conf.
 *
 * Topics. Every topic is "<topic.prefix>.<suffix>": signals.p1 … signals.pN
 * (N = priority.levels), results, metrics, workers, dlq.
 *
 * Trace context. Every message carries a `traceparent` header
 * (https://www.w3.org/TR/trace-context/): "00-<32 hex trace-id>-<16 hex
 * parent-id>-<2 hex flags>". The producer starts a root per signal; each
 * later hop (consumer, result) makes a child span with the same trace-id.
 *
 * Threads: every function here is thread-safe (no shared state; random ids
 * come from getrandom(2)).
 */
#ifndef PAR_KAFKA_H
#define PAR_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "base/config.h"
#include "base/err.h"

/* Default broker list when kafka.bootstrap.servers is not set. */
#define PAR_KAFKA_DEFAULT_BOOTSTRAP "127.0.0.1:9092"
/* Kafka's own topic-name limit is 249 characters (+ NUL). */
#define PAR_KAFKA_TOPIC_MAX 250

/*
 * Builds a new rd_kafka_conf_t (see above). client_id, when non-NULL, sets
 * client.id (a kafka.client.id key still overrides it). On success the
 * caller owns *out (pass it to rd_kafka_new, which takes it, or free it with
 * rd_kafka_conf_destroy). Errors name the key as the user wrote it:
 * "kafka.acks: Invalid value "x" for configuration property "acks"".
 */
par_err_t par_kafka_conf_new(rd_kafka_conf_t **out, const par_config_t *cfg,
                             const char *client_id, par_error_t *err);

/* Client-level librdkafka errors (error_cb) of every handle built by
 * par_kafka_conf_new in this process, since it started. Any thread. */
uint64_t par_kafka_client_errors(void);
/* Counts one there: for a program that installs its own error_cb over the
 * one par_kafka_conf_new sets. Any thread. */
void par_kafka_client_error_seen(void);

/* Writes "<topic.prefix>.<suffix>" into buf (n bytes). Returns buf, or
 * NULL if it does not fit or suffix is empty. */
char *par_kafka_topic_name(const par_config_t *cfg, const char *suffix,
                           char *buf, size_t n);

/* Writes "<topic.prefix>.signals.p<priority>". Returns buf, or NULL if the
 * priority is outside 1..priority.levels or it does not fit. */
char *par_kafka_signal_topic(const par_config_t *cfg, int priority, char *buf,
                             size_t n);

/* ---------------------------------------------------------- message sizes */

/*
 * The one place that knows how large a message may be. Every Signal,
 * SpinResult and DeadLetter is sized against par_kafka_value_max() where
 * it is built, so nothing reaches Kafka that Kafka would refuse (a refused
 * message used to be retried forever).
 *
 * par_kafka_message_max: the smaller of topics.message.max.bytes (what the
 * topics were created with) and kafka.message.max.bytes when set.
 * par_kafka_value_max: what is left for an encoded value after the key,
 * headers and record framing (PAR_KAFKA_MESSAGE_OVERHEAD).
 */
#define PAR_KAFKA_MESSAGE_OVERHEAD 4096
/* A Signal's bytes besides its params: id, recipe (64), resource (256),
 * traceparent, times, Avro framing. */
#define PAR_KAFKA_SIGNAL_OVERHEAD 2048
size_t par_kafka_message_max(const par_config_t *cfg);
size_t par_kafka_value_max(const par_config_t *cfg);
/* The same for a given message limit (e.g. a topic's own, when smaller). */
size_t par_kafka_value_max_of(size_t message_max);
/* Start-up check: signal.max_params_bytes plus a Signal's own fields fit in
 * par_kafka_value_max(); PAR_ERR_INVALID naming both keys otherwise. */
par_err_t par_kafka_check_sizes(const par_config_t *cfg, par_error_t *err);

/* ---------------------------------------------------------- trace context */

/* The traceparent header's name. */
#define PAR_TRACEPARENT_HEADER "traceparent"
/* Length of a version-00 traceparent string (without the NUL). */
#define PAR_TRACEPARENT_LEN 55

typedef struct par_trace {
        uint8_t trace_id[16]; /* never all zero */
        uint8_t span_id[8];   /* the "parent-id" field; never all zero */
        uint8_t flags;        /* 0x01 = sampled */
} par_trace_t;

/* A new root: random trace-id and span-id, flags 01 (sampled). */
void par_kafka_trace_root(par_trace_t *out);

/* A child of parent: same trace-id and flags, new random span-id. */
void par_kafka_trace_child(const par_trace_t *parent, par_trace_t *out);

/* Writes the version-00 string (lowercase hex) into buf, which must hold
 * PAR_TRACEPARENT_LEN + 1 bytes. Returns buf. */
char *par_kafka_trace_format(const par_trace_t *t,
                             char buf[PAR_TRACEPARENT_LEN + 1]);

/*
 * Parses len bytes of s (need not be NUL-terminated) per the W3C rules:
 * version 2 hex digits, not "ff"; for version 00 exactly 55 characters; a
 * later version may be longer but then continues with '-'; ids lowercase
 * hex and not all zero. *out is written only on success. Errors say what is
 * wrong ("traceparent: trace-id is all zero").
 */
par_err_t par_kafka_trace_parse(const char *s, size_t len, par_trace_t *out,
                                par_error_t *err);

/* Adds a traceparent header for t to hdrs (borrowed). */
par_err_t par_kafka_trace_to_headers(rd_kafka_headers_t *hdrs,
                                     const par_trace_t *t, par_error_t *err);

/* Reads the last traceparent header of a message (borrowed). Returns
 * PAR_ERR_NOTFOUND if there is none, PAR_ERR_INVALID if it is malformed;
 * *out is written only on success. Call on the thread that owns the
 * message. */
par_err_t par_kafka_trace_from_message(const rd_kafka_message_t *msg,
                                       par_trace_t *out, par_error_t *err);

#endif
