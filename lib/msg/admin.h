/*
 * admin.h — the one topic-admin module: create and delete Kafka topics and
 * read their partition counts through librdkafka's Admin API, for
 * `parallel-ctl topics` and for the tests' private worlds alike.
 *
 * Calls are synchronous: each sends one Admin request on the given handle
 * and waits for its result event (request and operation timeouts set to
 * timeout_ms, so the answer comes after the controller has finished, not
 * merely accepted). Per-topic outcomes are reported in the caller's
 * results array, in the order of the request.
 *
 * Threads: any thread; a handle may be shared (librdkafka's Admin API is
 * thread-safe), each call uses its own reply queue.
 */
#ifndef PAR_MSG_ADMIN_H
#define PAR_MSG_ADMIN_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "base/err.h"
#include "msg/kafka.h"

/* One topic to create. */
typedef struct par_admin_topic {
        const char *name;
        int partitions;
        int replication;
        /* Topic configs as name, value, name, value, …, ended by NULL
         * (e.g. {"cleanup.policy", "compact", NULL}). */
        const char *config[9];
} par_admin_topic_t;

typedef enum par_admin_outcome {
        PAR_ADMIN_DONE,    /* created / deleted */
        PAR_ADMIN_EXISTED, /* create: the topic was already there */
        PAR_ADMIN_ABSENT,  /* delete: there was no such topic */
        PAR_ADMIN_FAILED,  /* see msg */
} par_admin_outcome_t;

/* A short stable name for an outcome ("done", "existed", …). */
const char *par_admin_outcome_name(par_admin_outcome_t o);

typedef struct par_admin_result {
        char name[PAR_KAFKA_TOPIC_MAX];
        par_admin_outcome_t outcome;
        char msg[256]; /* the broker's reason when FAILED, else "" */
} par_admin_result_t;

/*
 * A handle for Admin requests from conf (taken, also on failure), which
 * never auto-creates topics. Fails within timeout_ms, naming
 * bootstrap.servers, when no broker answers a metadata request — so an
 * unreachable cluster is reported in seconds, not after an Admin timeout.
 * *out (destroy with rd_kafka_destroy) is written only on success.
 */
par_err_t par_admin_client_new(rd_kafka_t **out, rd_kafka_conf_t *conf,
                               int timeout_ms, par_error_t *err);

/*
 * Creates topics[0..n). Returns PAR_OK when the cluster answered for every
 * topic; results (n entries, may be NULL) then holds each outcome. A topic
 * that already exists is PAR_ADMIN_EXISTED and is left as it is (never
 * altered). With results NULL, a FAILED topic makes the call fail
 * (PAR_ERR_IO naming it). Request-level failures (no answer within
 * timeout_ms: PAR_ERR_TIMEOUT; the request refused: PAR_ERR_IO) leave
 * results unwritten.
 */
par_err_t par_admin_create(rd_kafka_t *rk, const par_admin_topic_t *topics,
                           size_t n, int timeout_ms,
                           par_admin_result_t *results, par_error_t *err);

/* Deletes names[0..n), with the same contract as par_admin_create (an
 * absent topic is PAR_ADMIN_ABSENT, not a failure). */
par_err_t par_admin_delete(rd_kafka_t *rk, const char *const *names, size_t n,
                           int timeout_ms, par_admin_result_t *results,
                           par_error_t *err);

/* The partition count of `name` from fresh metadata: -1 when the topic
 * does not exist (yet), -2 when metadata could not be fetched. */
int par_admin_partitions(rd_kafka_t *rk, const char *name, int timeout_ms);

/* Has client rk (a producer) look up who leads every partition of
 * names[0..n), waiting up to timeout_ms in all, so that its first messages
 * do not wait for it to learn them on first use (a metadata round of up to
 * a second on a topic created just before). Asks again while a topic
 * answers without leaders; gives up silently at the deadline, since the
 * client learns them on first use anyway. */
void par_admin_learn_leaders(rd_kafka_t *rk, const char *const *names, size_t n,
                             int timeout_ms);

/*
 * The smallest max.message.bytes among the topics names[0..n) as the
 * cluster applies it (the topic's own setting, else the broker's
 * default), into *out. Topics the cluster does not know are left out;
 * PAR_ERR_NOTFOUND when none answered with the setting. Request-level
 * failures as par_admin_create. Any client handle will do (a producer's
 * too).
 */
par_err_t par_admin_message_max(rd_kafka_t *rk, const char *const *names,
                                size_t n, int timeout_ms, int64_t *out,
                                par_error_t *err);

#endif
