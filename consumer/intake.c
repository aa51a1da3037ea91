/*
 * intake.c — a polled message becomes a job.
 *
 * Every message's offset is tracked before anything else, so that the
 * committed offset never passes a message that has not finished: one that
 * cannot be decoded is dead-lettered and marked done at once, one that
 * cannot be queued (out of memory) is left undone and is redelivered after
 * a restart.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assign.h"
#include "base/clock.h"
#include "base/log.h"
#include "msg/kafka.h"
#include "store/signal.h"
#include "intake.h"
#include "job.h"
#include "node_state.h"
#include "obs.h"

static void dead_letter_raw(node_t *n, const rd_kafka_message_t *m,
                            const char *reason)
{
        void *buf = NULL;
        size_t len = 0;
        par_error_t e;
        json_t *dl = json_pack(
            "{s:n,s:s,s:s,s:s,s:i,s:s,s:s,s:i,s:I,s:s,s:I,s:n}", "signal_id",
            "source", "consumer", "reason", reason, "error_class", "permanent",
            "attempt", 0, "node_id", n->id, "topic",
            rd_kafka_topic_name(m->rkt), "partition", (int)m->partition,
            "offset", (json_int_t)m->offset, "original_format", "avro", "ts",
            (json_int_t)par_clock_wall_ms(), "traceparent");
        /* A bounded prefix, the length and a hash: an undecodable value
         * of any size still fits in a dead letter (a 1 MB one used to make
         * the dead letter itself too large). */
        if (dl && par_codec_dead_letter_original(
                      dl, m->payload, m->len,
                      par_codec_dead_letter_max(n->value_max))) {
                json_decref(dl);
                dl = NULL;
        }
        if (dl &&
            (par_codec_encode(n->codec, PAR_SCHEMA_DLQ, dl, &buf, &len, &e) ||
             pub_send(n->pub, n->t_dlq, NULL, buf, len, NULL, false, &e)))
                par_log(PAR_LOG_ERROR, "consumer", "dlq_failed",
                        "topic=%s offset=%lld error=\"%s\"",
                        rd_kafka_topic_name(m->rkt), (long long)m->offset,
                        e.msg);
        json_decref(dl);
}

static const char *jstr(json_t *o, const char *k)
{
        const char *s = json_string_value(json_object_get(o, k));
        return s ? s : "";
}

/*
 * A decoded Signal is checked again as the producer checks documents: the
 * topic is not a trust boundary (anything with write access can put a
 * Signal there, e.g. 10 MB of params written straight to it). Returns
 * false with why set.
 */
static bool signal_valid(node_t *n, json_t *sig, int level, par_error_t *why)
{
        const par_signal_limits_t *lim = &n->limits;
        const char *id = jstr(sig, "id"), *k;
        json_t *params = json_object_get(sig, "params"), *v;
        size_t total = 0, idlen = strlen(id);
        int prio = (int)json_integer_value(json_object_get(sig, "priority"));

        if (idlen != 24 || strspn(id, "0123456789abcdef") != 24) {
                par_error_set(why, PAR_ERR_INVALID,
                              "Signal id is not an "
                              "ObjectId in hex");
                return false;
        }
        if (prio != level) {
                par_error_set(why, PAR_ERR_INVALID,
                              "signal %s: priority %d on the topic of level "
                              "%d",
                              id, prio, level);
                return false;
        }
        if (!par_signal_name_valid(jstr(sig, "recipe"))) {
                par_error_set(why, PAR_ERR_INVALID,
                              "signal %s: recipe must match "
                              "[A-Za-z0-9_.-]{1,64}",
                              id);
                return false;
        }
        size_t rl = strlen(jstr(sig, "resource"));
        if (rl == 0 || rl > PAR_SIGNAL_RESOURCE_MAX) {
                par_error_set(why, PAR_ERR_INVALID,
                              "signal %s: resource must be 1..%d bytes", id,
                              PAR_SIGNAL_RESOURCE_MAX);
                return false;
        }
        json_object_foreach(params, k, v)
        {
                if (!par_signal_name_valid(k) || !json_is_string(v)) {
                        par_error_set(why, PAR_ERR_INVALID,
                                      "signal %s: params: bad name or value",
                                      id);
                        return false;
                }
                total += strlen(k) + json_string_length(v);
        }
        if (total > lim->max_params_bytes) {
                par_error_set(why, PAR_ERR_INVALID,
                              "signal %s: params larger than %zu bytes", id,
                              lim->max_params_bytes);
                return false;
        }
        return true;
}

void intake_message(node_t *n, const rd_kafka_message_t *m)
{
        const char *topic = rd_kafka_topic_name(m->rkt);
        int level = assign_level(n, topic);
        json_t *sig = NULL;
        par_error_t e;

        /* A message of a partition revoked a moment ago (librdkafka drops
         * them once the unassign is through, not before) is not ours:
         * tracking it could commit an offset for the partition's new
         * owner. */
        if (!level || !assign_owned(n, topic, m->partition))
                return;
        if (par_offsets_track(n->offsets, topic, m->partition, m->offset, &e)) {
                PAR_DEBUG("consumer", "duplicate", "error=\"%s\"", e.msg);
                return;
        }
        if (par_codec_decode(n->codec, m->payload, m->len, PAR_SCHEMA_SIGNAL,
                             &sig, NULL, &e)) {
                par_counter_inc(n->stats.undecodable);
                obs_dead_letter(n->obs, "undecodable");
                par_log(PAR_LOG_WARN, "consumer", "undecodable",
                        "topic=%s partition=%d offset=%lld error=\"%s\"", topic,
                        (int)m->partition, (long long)m->offset, e.msg);
                dead_letter_raw(n, m, e.msg);
                par_offsets_done(n->offsets, topic, m->partition, m->offset);
                return;
        }
        if (!signal_valid(n, sig, level, &e)) {
                par_counter_inc(n->stats.undecodable);
                obs_dead_letter(n->obs, "undecodable");
                par_log(PAR_LOG_WARN, "consumer", "invalid_signal",
                        "topic=%s partition=%d offset=%lld", topic,
                        (int)m->partition, (long long)m->offset);
                dead_letter_raw(n, m, e.msg);
                json_decref(sig);
                par_offsets_done(n->offsets, topic, m->partition, m->offset);
                return;
        }
        job_t *j = calloc(1, sizeof(*j));
        if (!j || !(j->raw = malloc(m->len ? m->len : 1))) {
                free(j);
                json_decref(sig);
                par_log(PAR_LOG_ERROR, "consumer", "nomem", "dropping=%lld",
                        (long long)m->offset);
                return; /* not done: never committed past */
        }
        memcpy(j->raw, m->payload, m->len);
        j->raw_len = m->len;
        j->holds = n->holds;
        snprintf(j->topic, sizeof(j->topic), "%s", topic);
        j->partition = m->partition;
        j->offset = m->offset;
        j->queued_at = rd_kafka_message_timestamp(m, NULL);
        j->received_ms = par_clock_mono_ms();
        j->signal = sig;
        j->id = jstr(sig, "id");
        j->recipe = jstr(sig, "recipe");
        j->resource = jstr(sig, "resource");
        j->traceparent = jstr(sig, "traceparent");
        j->priority = (int)json_integer_value(json_object_get(sig, "priority"));
        j->created_at = json_integer_value(json_object_get(sig, "created_at"));
        j->expires_at = json_integer_value(json_object_get(sig, "expires_at"));
        j->msg_attempt =
            (int32_t)json_integer_value(json_object_get(sig, "attempt"));
        if (j->queued_at <= 0)
                j->queued_at = par_clock_wall_ms();

        par_sched_job_t sj = {.level = level,
                              .partition = m->partition,
                              .offset = m->offset,
                              .resource = j->resource,
                              .payload = j,
                              .enqueued_ms = j->received_ms};
        if (par_sched_push(n->sched, &sj, &e)) {
                par_log(PAR_LOG_ERROR, "consumer", "enqueue_failed",
                        "error=\"%s\"", e.msg);
                job_free(j);
        }
}
