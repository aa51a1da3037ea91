/*
 * sweeper.c — puts signals whose worker lease expired back to "pending".
 *
 * A worker that dies mid-spin leaves its signal "claimed" with a
 * lease_until in the past. Kafka will not redeliver it (the offset may be
 * committed past it by then, or the message may sit behind a long
 * backlog), so the active producer re-queues it: status → "pending",
 * claimed_by and lease_until removed, attempt kept. The update is an
 * ordinary update, so the change stream sees a document turned pending and
 * the pipeline publishes it again.
 *
 * At most once per expiry: each update is conditional on the exact
 * lease_until that was found expired. If the worker renewed, finished, or
 * another sweeper (a producer that has not yet noticed losing its lease)
 * re-queued it first, the condition fails and nothing happens. A signal
 * re-claimed later gets a new lease_until, which is a new expiry.
 */
#include "base/clock.h"
#include "base/log.h"
#include "producer.h"

#define SWEEP_BATCH 1000

void sweeper_run(prod_t *p)
{
        int64_t now = par_clock_wall_ms();
        bson_t *filter =
            BCON_NEW("status", BCON_UTF8(PAR_SIGNAL_CLAIMED), "lease_until",
                     "{", "$lt", BCON_DATE_TIME(now), "}");
        bson_t *opts =
            BCON_NEW("projection", "{", "_id", BCON_INT32(1), "lease_until",
                     BCON_INT32(1), "}", "limit", BCON_INT64(SWEEP_BATCH));
        mongoc_cursor_t *c =
            mongoc_collection_find_with_opts(p->signals, filter, opts, NULL);
        const bson_t *doc;
        bson_error_t e;
        int found = 0, requeued = 0;

        while (mongoc_cursor_next(c, &doc)) {
                bson_iter_t id, lu;
                bson_t cond = BSON_INITIALIZER, reply;
                bson_t *upd;
                bson_iter_t it;

                found++;
                if (!bson_iter_init_find(&id, doc, "_id") ||
                    !bson_iter_init_find(&lu, doc, "lease_until") ||
                    !BSON_ITER_HOLDS_DATE_TIME(&lu))
                        continue;
                bson_append_iter(&cond, "_id", 3, &id);
                BSON_APPEND_UTF8(&cond, "status", PAR_SIGNAL_CLAIMED);
                BSON_APPEND_DATE_TIME(&cond, "lease_until",
                                      bson_iter_date_time(&lu));
                upd = BCON_NEW("$set", "{", "status",
                               BCON_UTF8(PAR_SIGNAL_PENDING), "requeued_at",
                               BCON_DATE_TIME(now), "}", "$unset", "{",
                               "claimed_by", BCON_UTF8(""), "lease_until",
                               BCON_UTF8(""), "}");
                if (!mongoc_collection_update_one(p->signals, &cond, upd, NULL,
                                                  &reply, &e))
                        par_log(PAR_LOG_WARN, COMP, "sweeper.failed",
                                "err=\"%s\"", e.message);
                else if (bson_iter_init_find(&it, &reply, "modifiedCount") &&
                         bson_iter_as_int64(&it) == 1)
                        requeued++;
                bson_destroy(&reply);
                bson_destroy(upd);
                bson_destroy(&cond);
        }
        if (mongoc_cursor_error(c, &e))
                par_log(PAR_LOG_WARN, COMP, "sweeper.failed", "err=\"%s\"",
                        e.message);
        if (found)
                par_log(PAR_LOG_INFO, COMP, "sweeper.requeued",
                        "expired=%d requeued=%d", found, requeued);
        par_counter_add(p->m_requeued, (uint64_t)requeued);
        mongoc_cursor_destroy(c);
        bson_destroy(filter);
        bson_destroy(opts);
}
