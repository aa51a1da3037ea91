/*
 * pipeline.c — change stream in, validated Avro signals and dead letters
 * out, with the completion window deciding what may be checkpointed.
 *
 * Start-up. With a checkpoint the stream resumes after it (resumeAfter).
 * Without one (first start, or history lost) and producer.backfill on, the
 * stream is opened first and positioned before the scan, then every
 * not-yet-finished signal is published in created_at order, then the stream
 * is followed; a signal inserted during the scan is seen twice (a
 * duplicate), never zero times. A real replica set reports operationTime in
 * command replies; that time, taken before the scan, is passed as
 * startAtOperationTime. The stand-in reports none; its change-stream cursor
 * is positioned at its oplog clock when the aggregate runs, which is
 * before the scan too, so opening the stream first gives the same
 * guarantee there (see docs/PRODUCER.md).
 *
 * Events. Inserts, and updates whose document is (now) pending, pass the
 * $match. Each event becomes one window item carrying its resume token and
 * zero or one outstanding message: a valid pending signal → Signal on
 * <prefix>.signals.p<priority> keyed by resource; an invalid document →
 * status "rejected" + error written to the document, then a DeadLetter on
 * <prefix>.dlq; anything else (not pending, expired, deleted before the
 * lookup) → nothing to deliver. The $match is repeated in code because the
 * stand-in's and a real server's lookups can differ.
 *
 * Idle. getMore carries maxAwaitTimeMS (producer.idle.max_wait): MongoDB
 * and the stand-in hold an empty getMore until an event or that time, so
 * an idle producer sleeps in the server and sees an insert at once. A
 * server that answers empty at once instead gets a doubling wait (1 ms …
 * producer.idle.max_wait) spent in rd_kafka_poll between polls (main.c).
 */
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/text.h"
#include "producer.h"

static par_err_t item_push(prod_t *p, const bson_t *token, unsigned parts,
                           uint64_t *seq, par_error_t *err)
{
        uint8_t *buf = NULL;
        size_t len = 0;
        int64_t now = par_clock_wall_ms();
        par_err_t rc;

        if (token) {
                len = 8 + token->len;
                buf = malloc(len);
                if (!buf)
                        return par_error_set(err, PAR_ERR_NOMEM,
                                             "out of memory");
                memcpy(buf, &now, 8);
                memcpy(buf + 8, bson_get_data(token), token->len);
        }
        rc = par_seqwin_push(p->win, buf, len, parts, seq, err);
        free(buf);
        return rc;
}

static void make_trace(const par_signal_t *s, char tp[PAR_TRACEPARENT_LEN + 1])
{
        par_trace_t parent, t;

        if (s && s->traceparent[0] &&
            !par_kafka_trace_parse(s->traceparent, strlen(s->traceparent),
                                   &parent, NULL))
                par_kafka_trace_child(&parent, &t);
        else
                par_kafka_trace_root(&t);
        par_kafka_trace_format(&t, tp);
}

static rd_kafka_headers_t *headers(const char *tp, const char *id)
{
        rd_kafka_headers_t *h = rd_kafka_headers_new(2);
        rd_kafka_header_add(h, PAR_TRACEPARENT_HEADER, -1, tp, -1);
        rd_kafka_header_add(h, "signal-id", -1, id, -1);
        return h;
}

/* Encodes value (borrowed) as schema and publishes it as one part of the
 * event whose resume token is token, with traceparent and signal-id
 * headers. */
static par_err_t send_event(prod_t *p, const bson_t *token, const char *schema,
                            const json_t *value, const char *topic,
                            const char *key, const char *tp, const char *id,
                            par_error_t *err)
{
        void *buf = NULL;
        size_t len = 0;
        uint64_t seq;
        par_err_t rc;

        rc = par_codec_encode(p->codec, schema, value, &buf, &len, err);
        if (rc)
                return rc;
        if (len > p->value_max) {
                /* Kafka would refuse it, and the restart would read the
                 * same event again: permanent for this input. */
                free(buf);
                return par_error_set(
                    err, PAR_ERR_PERMANENT,
                    "%s of %zu bytes exceeds the message limit (%zu bytes "
                    "for a value, %s)",
                    schema, len, p->value_max,
                    p->message_max < par_kafka_message_max(p->cfg)
                        ? "the topics' max.message.bytes"
                        : "topics.message.max.bytes");
        }
        rc = item_push(p, token, 1, &seq, err);
        if (rc) {
                free(buf);
                return rc;
        }
        return publish(p, topic, key, buf, len, headers(tp, id), seq, err);
}

static par_err_t publish_signal(prod_t *p, const par_signal_t *s,
                                const bson_t *token, par_error_t *err)
{
        char topic[PAR_KAFKA_TOPIC_MAX], tp[PAR_TRACEPARENT_LEN + 1];
        json_t *j;
        par_err_t rc;

        if (!par_kafka_signal_topic(p->cfg, s->priority, topic, sizeof(topic)))
                return par_error_set(err, PAR_ERR_INVALID,
                                     "no topic for priority %d", s->priority);
        make_trace(s, tp);
        j = par_signal_to_json(s, tp);
        if (!j)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        rc = send_event(p, token, PAR_SCHEMA_SIGNAL, j, topic, s->resource, tp,
                        s->id, err);
        json_decref(j);
        return rc;
}

/* True when a MongoDB error says the server could not be reached (retry
 * later), false when it refused this one write (retrying the same input
 * would fail the same way). */
static bool mongo_transient(const bson_error_t *e)
{
        return e->domain == MONGOC_ERROR_STREAM ||
               e->domain == MONGOC_ERROR_SERVER_SELECTION ||
               e->domain == MONGOC_ERROR_CLIENT ||
               e->domain == MONGOC_ERROR_PROTOCOL;
}

/* Marks the document rejected, then sends the dead letter. When the server
 * refuses the update itself (e.g. a field name it cannot handle), the
 * dead letter still goes out, naming that too: the document is set aside
 * rather than replayed forever. */
static par_err_t reject(prod_t *p, const bson_t *doc, const char *id,
                        const char *reason, const bson_t *token,
                        par_error_t *err)
{
        char tp[PAR_TRACEPARENT_LEN + 1], why[600];
        bson_iter_t it;
        bson_error_t e;
        bson_t filter = BSON_INITIALIZER, *upd;
        json_t *dl;
        char *orig;
        size_t olen;
        bool ok;
        par_err_t rc;

        par_counter_inc(p->m_rejected);
        par_counter_inc(p->m_dead_letters);
        par_log(PAR_LOG_WARN, COMP, "signal.rejected", "id=%s reason=%s", id,
                reason);
        par_text_clip(why, sizeof(why), reason, strlen(reason), 400, NULL);
        if (bson_iter_init_find(&it, doc, "_id")) {
                bson_append_iter(&filter, "_id", 3, &it);
                upd = BCON_NEW("$set", "{", "status",
                               BCON_UTF8(PAR_SIGNAL_REJECTED), "error",
                               BCON_UTF8(reason), "rejected_at",
                               BCON_DATE_TIME(par_clock_wall_ms()), "}");
                ok = mongoc_collection_update_one(p->signals, &filter, upd,
                                                  NULL, NULL, &e);
                bson_destroy(upd);
                bson_destroy(&filter);
                if (!ok && mongo_transient(&e))
                        return par_error_set(err, PAR_ERR_MONGO,
                                             "marking %s rejected: %s", id,
                                             e.message);
                if (!ok) {
                        size_t n = strlen(why);
                        par_counter_inc(p->m_set_aside);
                        par_log(PAR_LOG_ERROR, COMP, "signal.unmarkable",
                                "id=%s error=%s", id, e.message);
                        snprintf(why + n, sizeof(why) - n,
                                 " (not marked rejected: %s)", e.message);
                        par_utf8_scrub(why);
                }
        } else {
                bson_destroy(&filter);
        }

        orig = bson_as_canonical_extended_json(doc, &olen);
        make_trace(NULL, tp);
        dl =
            json_pack("{s:s?, s:s, s:s, s:s, s:i, s:s, s:n, s:n, s:n, s:s, "
                      "s:I, s:s}",
                      "signal_id", strcmp(id, "?") ? id : NULL, "source",
                      "producer", "reason", why, "error_class", "permanent",
                      "attempt", 0, "node_id", p->node_id, "topic", "partition",
                      "offset", "original_format", orig ? "json" : "raw", "ts",
                      (json_int_t)par_clock_wall_ms(), "traceparent", tp);
        /* A bounded prefix of the document, its length and hash: a huge
         * document must not make the dead letter too large to send. */
        if (dl && par_codec_dead_letter_original(
                      dl, orig ? orig : "", orig ? olen : 0,
                      par_codec_dead_letter_max(p->value_max))) {
                json_decref(dl);
                dl = NULL;
        }
        bson_free(orig);
        if (!dl)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        rc = send_event(p, token, PAR_SCHEMA_DLQ, dl, p->dlq_topic,
                        strcmp(id, "?") ? id : NULL, tp, id, err);
        json_decref(dl);
        return rc;
}

/* Marks an expired pending signal "expired" instead of publishing it. */
static par_err_t expire(prod_t *p, const par_signal_t *s, par_error_t *err)
{
        bson_error_t e;
        bson_t *filter = BCON_NEW("_id", BCON_OID(&s->oid), "status",
                                  BCON_UTF8(PAR_SIGNAL_PENDING));
        bson_t *upd =
            BCON_NEW("$set", "{", "status", BCON_UTF8("expired"), "error",
                     BCON_UTF8("expired before it was published"),
                     "finished_at", BCON_DATE_TIME(par_clock_wall_ms()), "}");
        bool ok = mongoc_collection_update_one(p->signals, filter, upd, NULL,
                                               NULL, &e);

        bson_destroy(filter);
        bson_destroy(upd);
        par_counter_inc(p->m_expired);
        if (!ok)
                return par_error_set(err, PAR_ERR_MONGO,
                                     "marking %s expired: %s", s->id,
                                     e.message);
        return PAR_OK;
}

/*
 * The last line of defence against a poison document: an error that is
 * not about reaching MongoDB or Kafka (those are retried by restarting
 * from the checkpoint, with backoff) comes from the input itself, and
 * replaying it would fail the same way forever. Such a document is logged,
 * counted and skipped (its event completes with no message).
 */
static par_err_t set_aside_if_stuck(prod_t *p, const bson_t *doc,
                                    const bson_t *token, par_err_t rc,
                                    par_error_t *err)
{
        char id[64];
        uint64_t seq;

        if (rc == PAR_OK || rc == PAR_ERR_MONGO || rc == PAR_ERR_KAFKA ||
            rc == PAR_ERR_CANCELLED)
                return rc;
        par_signal_doc_id(doc, id, sizeof(id));
        par_counter_inc(p->m_set_aside);
        par_log(PAR_LOG_ERROR, COMP, "signal.set_aside", "id=%s error=%s", id,
                err ? err->msg : "?");
        return item_push(p, token, 0, &seq, err);
}

/*
 * One document, from an event (token set) or from the backfill scan (token
 * NULL).
 */
static par_err_t handle_doc(prod_t *p, const bson_t *doc, const bson_t *token,
                            par_error_t *err)
{
        par_signal_t s;
        par_error_t why;
        char id[64];
        uint64_t seq;
        bson_iter_t it;
        par_err_t rc;

        par_signal_init(&s);
        if (par_signal_parse(&s, doc, &p->limits, &why)) {
                /* A malformed document with a known, non-pending status
                 * was already dealt with (rejected, or finished). */
                if (bson_iter_init_find(&it, doc, "status") &&
                    BSON_ITER_HOLDS_UTF8(&it) &&
                    strcmp(bson_iter_utf8(&it, NULL), PAR_SIGNAL_PENDING) &&
                    par_signal_status_known(bson_iter_utf8(&it, NULL))) {
                        par_counter_inc(p->m_skipped);
                        return item_push(p, token, 0, &seq, err);
                }
                par_signal_doc_id(doc, id, sizeof(id));
                return set_aside_if_stuck(
                    p, doc, token, reject(p, doc, id, why.msg, token, err),
                    err);
        }
        if (strcmp(s.status, PAR_SIGNAL_PENDING)) {
                /* Inserted as already finished, or moved on before the
                 * lookup: nothing to publish. */
                par_counter_inc(p->m_skipped);
                rc = item_push(p, token, 0, &seq, err);
        } else if (s.expires_at && s.expires_at <= par_clock_wall_ms()) {
                rc = expire(p, &s, err);
                if (!rc)
                        rc = item_push(p, token, 0, &seq, err);
        } else {
                rc = publish_signal(p, &s, token, err);
                /* Valid but unpublishable (too large for the topic): set
                 * aside as rejected, with the reason. */
                if (rc == PAR_ERR_PERMANENT) {
                        char reason[sizeof(err->msg) + 64];
                        snprintf(reason, sizeof(reason), "signal %s: %s", s.id,
                                 err->msg);
                        par_utf8_scrub(reason);
                        rc = reject(p, doc, s.id, reason, token, err);
                }
                rc = set_aside_if_stuck(p, doc, token, rc, err);
        }
        par_signal_clear(&s);
        return rc;
}

static par_err_t handle_event(prod_t *p, const bson_t *ev, par_error_t *err)
{
        bson_iter_t it;
        bson_t token, full;
        const uint8_t *data;
        uint32_t len;
        const char *op = "";
        uint64_t seq;
        bool has_token = false, has_full = false;

        par_counter_inc(p->m_events);
        p->last_read_ms = par_clock_wall_ms();
        if (bson_iter_init_find(&it, ev, "_id") &&
            BSON_ITER_HOLDS_DOCUMENT(&it)) {
                bson_iter_document(&it, &len, &data);
                has_token = bson_init_static(&token, data, len);
        }
        if (bson_iter_init_find(&it, ev, "operationType") &&
            BSON_ITER_HOLDS_UTF8(&it))
                op = bson_iter_utf8(&it, NULL);
        if (bson_iter_init_find(&it, ev, "clusterTime") &&
            BSON_ITER_HOLDS_TIMESTAMP(&it)) {
                uint32_t ts, inc;
                bson_iter_timestamp(&it, &ts, &inc);
                par_gauge_set(p->m_lag,
                              (double)(p->last_read_ms / 1000 - (int64_t)ts));
        }
        if (bson_iter_init_find(&it, ev, "fullDocument") &&
            BSON_ITER_HOLDS_DOCUMENT(&it)) {
                bson_iter_document(&it, &len, &data);
                has_full = bson_init_static(&full, data, len);
        }
        if (!strcmp(op, "invalidate")) {
                /* The collection went away: start over without a token. */
                par_log(PAR_LOG_WARN, COMP, "stream.invalidated", "%s", "");
                p->lost_history = true;
                p->restart = true;
                return PAR_OK;
        }
        if (!has_full || (strcmp(op, "insert") && strcmp(op, "update") &&
                          strcmp(op, "replace")))
                return item_push(p, has_token ? &token : NULL, 0, &seq, err);
        return handle_doc(p, &full, has_token ? &token : NULL, err);
}

/* operationTime from a command reply of a replica-set member, if any. */
static bool operation_time(prod_t *p, uint32_t *ts, uint32_t *inc)
{
        bson_t *cmd = BCON_NEW("ping", BCON_INT32(1));
        bson_t reply;
        bson_iter_t it;
        bool found = false;

        if (mongoc_client_command_simple(
                p->client, par_config_str(p->cfg, "mongo.database"), cmd, NULL,
                &reply, NULL) &&
            bson_iter_init_find(&it, &reply, "operationTime") &&
            BSON_ITER_HOLDS_TIMESTAMP(&it)) {
                bson_iter_timestamp(&it, ts, inc);
                found = true;
        }
        bson_destroy(&reply);
        bson_destroy(cmd);
        return found;
}

static par_err_t open_stream(prod_t *p, const bson_t *resume, uint32_t ts,
                             uint32_t inc, par_error_t *err)
{
        bson_t *pipeline =
            BCON_NEW("pipeline", "[", "{", "$match", "{", "$or", "[", "{",
                     "operationType", BCON_UTF8("insert"), "}", "{",
                     "operationType", "{", "$in", "[", BCON_UTF8("update"),
                     BCON_UTF8("replace"), "]", "}", "fullDocument.status",
                     BCON_UTF8(PAR_SIGNAL_PENDING), "}", "]", "}", "}", "]");
        bson_t opts = BSON_INITIALIZER;
        const bson_t *errdoc;
        bson_error_t e;

        BSON_APPEND_UTF8(&opts, "fullDocument", "updateLookup");
        BSON_APPEND_INT32(
            &opts, "batchSize",
            (int32_t)par_config_int(p->cfg, "producer.batch.size"));
        BSON_APPEND_INT64(&opts, "maxAwaitTimeMS",
                          par_config_int(p->cfg, "producer.idle.max_wait"));
        if (resume)
                BSON_APPEND_DOCUMENT(&opts, "resumeAfter", resume);
        else if (ts)
                BSON_APPEND_TIMESTAMP(&opts, "startAtOperationTime", ts, inc);
        p->stream = mongoc_collection_watch(p->signals, pipeline, &opts);
        bson_destroy(pipeline);
        bson_destroy(&opts);
        if (mongoc_change_stream_error_document(p->stream, &e, &errdoc)) {
                par_err_t rc =
                    par_error_set(err, PAR_ERR_MONGO,
                                  "opening the change stream: %s", e.message);
                if (e.code == 286 || e.code == 280 || e.code == 136)
                        p->lost_history = true;
                mongoc_change_stream_destroy(p->stream);
                p->stream = NULL;
                return rc;
        }
        atomic_store(&p->h_last_ok, (long long)par_clock_wall_ms());
        return PAR_OK;
}

/* Publishes every unfinished signal, oldest first. */
static par_err_t backfill(prod_t *p, par_error_t *err)
{
        bson_t *filter = BCON_NEW(
            "status", "{", "$nin", "[", BCON_UTF8("claimed"), BCON_UTF8("done"),
            BCON_UTF8("failed"), BCON_UTF8("expired"), BCON_UTF8("rejected"),
            BCON_UTF8("dead"), "]", "}");
        bson_t *opts =
            BCON_NEW("sort", "{", "created_at", BCON_INT32(1), "_id",
                     BCON_INT32(1), "}", "batchSize", BCON_INT32(1000));
        mongoc_cursor_t *c =
            mongoc_collection_find_with_opts(p->signals, filter, opts, NULL);
        const bson_t *doc;
        bson_error_t e;
        size_t n = 0;
        par_err_t rc = PAR_OK;

        while (!par_producer_stop && mongoc_cursor_next(c, &doc)) {
                rc = handle_doc(p, doc, NULL, err);
                if (rc)
                        break;
                n++;
                par_counter_inc(p->m_backfilled);
                if (n % 1000 == 0) {
                        pipeline_advance(p);
                        if (lease_held(p) != p->epoch) {
                                rc = par_error_set(err, PAR_ERR_CANCELLED,
                                                   "lease lost");
                                break;
                        }
                }
        }
        if (!rc && mongoc_cursor_error(c, &e))
                rc = par_error_set(err, PAR_ERR_MONGO, "backfill scan: %s",
                                   e.message);
        mongoc_cursor_destroy(c);
        bson_destroy(filter);
        bson_destroy(opts);
        par_log(PAR_LOG_INFO, COMP, "backfill.done", "signals=%zu ok=%d", n,
                rc == PAR_OK);
        return rc;
}

par_err_t pipeline_start(prod_t *p, par_error_t *err)
{
        bson_t *token = NULL;
        uint32_t ts = 0, inc = 0;
        par_err_t rc;

        p->restart = false;
        p->idle_wait_ms = 0;
        p->head_since_ms = 0;
        rc = par_seqwin_new(&p->win, err);
        if (!rc)
                rc = publish_new_producer(p, err);
        if (!rc && publish_size_to_topics(p)) {
                publish_destroy_producer(p);
                rc = publish_new_producer(p, err);
        }
        if (rc)
                goto fail;
        publish_learn_topics(p);
        if (p->lost_history) {
                par_log(PAR_LOG_WARN, COMP, "checkpoint.discarded",
                        "why=\"change stream history lost\"");
                rc = lease_clear_token(p, err);
                if (rc)
                        goto fail;
                p->lost_history = false;
        }
        rc = lease_read_token(p, &token, err);
        if (rc)
                goto fail;
        if (token) {
                char *j = bson_as_relaxed_extended_json(token, NULL);
                par_log(PAR_LOG_INFO, COMP, "stream.resume", "token=%s", j);
                bson_free(j);
                rc = open_stream(p, token, 0, 0, err);
                bson_destroy(token);
                if (rc)
                        goto fail;
        } else {
                bool have_optime = operation_time(p, &ts, &inc);
                par_log(PAR_LOG_INFO, COMP, "stream.start",
                        "checkpoint=none backfill=%d start_at_operation_time="
                        "%s",
                        par_config_bool(p->cfg, "producer.backfill"),
                        have_optime ? "server" : "cursor-open");
                rc = open_stream(p, NULL, ts, inc, err);
                if (rc)
                        goto fail;
                if (par_config_bool(p->cfg, "producer.backfill")) {
                        rc = backfill(p, err);
                        if (rc)
                                goto fail;
                }
        }
        p->running = true;
        return PAR_OK;
fail:
        p->running = true; /* so that stop tears down what was built */
        pipeline_stop(p, false);
        return rc;
}

void pipeline_advance(prod_t *p)
{
        const void *pos = NULL;
        size_t len = 0;

        if (!p->rk)
                return;
        rd_kafka_poll(p->rk, 0);
        int64_t now = par_clock_wall_ms();
        if (par_seqwin_advance(p->win, &pos, &len)) {
                p->progressed = true;
                p->head_since_ms = now;
        } else if (par_seqwin_size(p->win) == 0 || !p->head_since_ms) {
                p->head_since_ms = now;
        } else if (p->delivery_timeout_ms > 0 && !p->restart &&
                   now - p->head_since_ms > p->delivery_timeout_ms) {
                /* The delivery deadline (publish.c) passed. */
                par_counter_inc(p->m_delivery_errors);
                par_counter_inc(p->m_kafka_delivery);
                par_log(PAR_LOG_WARN, COMP, "delivery.timeout",
                        "waited_ms=%lld outstanding=%zu (restarting from the "
                        "checkpoint)",
                        (long long)(now - p->head_since_ms),
                        par_seqwin_size(p->win));
                p->restart = true;
        }
        if (pos && len > 8) {
                uint8_t *copy = malloc(len);
                if (copy) {
                        memcpy(copy, pos, len);
                        free(p->cp_pending);
                        p->cp_pending = copy;
                        p->cp_pending_len = len;
                        p->cp_dirty = true;
                }
        }
        par_gauge_set(p->m_inflight, (double)par_seqwin_size(p->win));
        /* Checkpoint age: how long ago the checkpointed event was read,
         * while anything newer is not yet checkpointed. */
        int64_t ref = p->cp_read_ms ? p->cp_read_ms : p->last_read_ms;
        if ((!p->cp_dirty && par_seqwin_size(p->win) == 0) || !ref)
                par_gauge_set(p->m_cp_age, 0);
        else
                par_gauge_set(p->m_cp_age,
                              (par_clock_wall_ms() - ref) / 1000.0);
}

void pipeline_stop(prod_t *p, bool flush)
{
        par_error_t err;

        if (!p->running)
                return;
        if (p->stream) {
                mongoc_change_stream_destroy(p->stream);
                p->stream = NULL;
        }
        if (p->rk && p->win) {
                /* When flushing, wait (bounded) for outstanding deliveries
                 * while none fails; then checkpoint whatever prefix is
                 * complete (fenced: a lost lease writes nothing). */
                int64_t deadline = par_clock_wall_ms() + 30000;
                while (flush && par_seqwin_size(p->win) > 0 && !p->restart &&
                       par_clock_wall_ms() < deadline) {
                        rd_kafka_flush(p->rk, 100);
                        pipeline_advance(p);
                }
                pipeline_advance(p);
                if (p->cp_dirty &&
                    lease_checkpoint(p, true, &err) > PAR_ERR_CANCELLED)
                        par_log(PAR_LOG_WARN, COMP, "checkpoint.failed",
                                "err=\"%s\"", err.msg);
                if (par_seqwin_size(p->win))
                        par_log(PAR_LOG_INFO, COMP, "stop.undelivered",
                                "events=%zu (published again after the "
                                "checkpoint)",
                                par_seqwin_size(p->win));
        }
        publish_destroy_producer(p);
        par_seqwin_destroy(p->win);
        p->win = NULL;
        free(p->cp_pending);
        p->cp_pending = NULL;
        p->cp_pending_len = 0;
        p->cp_dirty = false;
        bson_destroy(p->stream_token);
        p->stream_token = NULL;
        p->running = false;
}

par_err_t pipeline_step(prod_t *p, int *handled, par_error_t *err)
{
        const bson_t *ev;
        const bson_t *errdoc;
        bson_error_t e;
        int64_t max_inflight = par_config_int(p->cfg, "producer.inflight.max");
        int batch = (int)par_config_int(p->cfg, "producer.batch.size");
        par_err_t rc = PAR_OK;

        *handled = 0;
        if ((int64_t)par_seqwin_size(p->win) >= max_inflight) {
                rd_kafka_poll(p->rk, 10); /* let deliveries catch up */
                return PAR_OK;
        }
        /* Bounded in time too, so deliveries and checkpoints keep up. */
        int64_t until = par_clock_wall_ms() + 500;
        while (*handled < batch && !p->restart && par_clock_wall_ms() < until &&
               mongoc_change_stream_next(p->stream, &ev)) {
                rc = handle_event(p, ev, err);
                if (rc)
                        return rc;
                (*handled)++;
        }
        if (mongoc_change_stream_error_document(p->stream, &e, &errdoc)) {
                if (e.code == 286 || e.code == 280 || e.code == 136)
                        p->lost_history = true;
                return par_error_set(err, PAR_ERR_MONGO, "change stream: %s",
                                     e.message);
        }
        atomic_store(&p->h_last_ok, (long long)par_clock_wall_ms());
        if (*handled == 0) {
                /* Empty batch: remember the stream's own position (a real
                 * server's postBatchResumeToken moves past filtered events)
                 * so the checkpoint can follow it once earlier events are
                 * delivered. */
                const bson_t *tok =
                    mongoc_change_stream_get_resume_token(p->stream);
                if (tok &&
                    (!p->stream_token || !bson_equal(tok, p->stream_token))) {
                        uint64_t seq;
                        bson_destroy(p->stream_token);
                        p->stream_token = bson_copy(tok);
                        rc = item_push(p, tok, 0, &seq, err);
                }
                par_gauge_set(p->m_lag, 0);
        }
        return rc;
}
