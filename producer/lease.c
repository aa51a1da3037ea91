/*
 * lease.c — the HA lease and the checkpoint, kept in one MongoDB document
 * of producer.state.collection:
 *
 *   { _id: "producer/<db>.<collection>/<topic.prefix>",
 *     holder: node id, epoch: n, lease_until: Date,
 *     token: <resume token>, token_at: Date }
 *
 * Why one document: the epoch fences the checkpoint. Taking the lease over
 * bumps the epoch with a compare-and-set on the previous epoch, and every
 * later write by the holder (renewal, checkpoint, release) is conditional on
 * {holder: me, epoch: mine}. A producer that stalled past its lease and
 * wakes up can therefore neither renew nor move the checkpoint the new
 * holder relies on: its write matches nothing and it steps down.
 *
 * Why a thread: acquisition and renewal run on their own thread with their
 * own MongoDB client, so a slow change-stream read (the stand-in's getMore
 * rescans its whole oplog and can take seconds on a busy machine) cannot
 * starve the renewal. The thread renews only while the main loop shows
 * progress (its heartbeat is younger than the ttl): a wedged main loop lets
 * the lease lapse and the standby take over. The main thread reads the
 * lease through atomics (lease_held) and stops publishing as soon as the
 * lease is lost or its local expiry passes.
 *
 * Only plain inserts and updates are used (one write path for the stand-in
 * and a real server). Times are wall-clock ms on the producer's host: a
 * takeover assumes clocks agree to well within a lease (NTP).
 */
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"
#include "producer.h"

/* Runs update_one on coll; *matched receives matchedCount. */
static par_err_t update_one(prod_t *p, mongoc_collection_t *coll,
                            const bson_t *filter, const bson_t *update,
                            int64_t *matched, par_error_t *err)
{
        bson_error_t e;
        bson_t reply;
        bson_iter_t it;
        bool ok;

        ok = mongoc_collection_update_one(coll, filter, update, NULL, &reply,
                                          &e);
        *matched = 0;
        if (ok && bson_iter_init_find(&it, &reply, "matchedCount"))
                *matched = bson_iter_as_int64(&it);
        bson_destroy(&reply);
        if (!ok)
                return par_error_set(err, PAR_ERR_MONGO, "%s: %s", p->lease_id,
                                     e.message);
        atomic_store(&p->h_last_ok, (long long)par_clock_wall_ms());
        return PAR_OK;
}

static par_err_t read_state(prod_t *p, mongoc_collection_t *coll, bson_t **out,
                            par_error_t *err)
{
        bson_error_t e;
        bson_t filter = BSON_INITIALIZER;
        const bson_t *doc;
        mongoc_cursor_t *c;
        par_err_t rc = PAR_OK;

        *out = NULL;
        BSON_APPEND_UTF8(&filter, "_id", p->lease_id);
        c = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
        if (mongoc_cursor_next(c, &doc))
                *out = bson_copy(doc);
        else if (mongoc_cursor_error(c, &e))
                rc = par_error_set(err, PAR_ERR_MONGO, "reading %s: %s",
                                   p->lease_id, e.message);
        if (!rc)
                atomic_store(&p->h_last_ok, (long long)par_clock_wall_ms());
        mongoc_cursor_destroy(c);
        bson_destroy(&filter);
        return rc;
}

static void set_held(prod_t *p, int64_t epoch, int64_t until)
{
        atomic_store(&p->lease_until, (long long)until);
        atomic_store(&p->lease_epoch, (long long)epoch);
        atomic_store(&p->h_active, epoch != 0);
        par_gauge_set(p->m_active, epoch != 0);
}

/* Lease thread: one acquisition attempt. */
static void try_acquire(prod_t *p)
{
        int64_t now = par_clock_wall_ms(), epoch = 0, until = 0, matched = 0;
        bson_t *doc = NULL;
        bson_iter_t it;
        par_error_t err;

        if (read_state(p, p->lease_coll, &doc, &err)) {
                par_counter_inc(p->m_mongo_errors);
                par_log(PAR_LOG_WARN, COMP, "lease.error", "err=\"%s\"",
                        err.msg);
                return;
        }
        if (!doc) {
                /* First producer ever: insert; a racing insert loses on the
                 * duplicate _id. */
                bson_error_t e;
                bson_t *ins =
                    BCON_NEW("_id", BCON_UTF8(p->lease_id), "holder",
                             BCON_UTF8(p->node_id), "epoch", BCON_INT64(1),
                             "lease_until", BCON_DATE_TIME(now + p->lease_ttl));
                bool ok = mongoc_collection_insert_one(p->lease_coll, ins, NULL,
                                                       NULL, &e);
                bson_destroy(ins);
                if (ok)
                        epoch = 1;
                else if (e.code != 11000)
                        par_log(PAR_LOG_WARN, COMP, "lease.error", "err=\"%s\"",
                                e.message);
        } else {
                if (bson_iter_init_find(&it, doc, "epoch"))
                        epoch = bson_iter_as_int64(&it);
                if (bson_iter_init_find(&it, doc, "lease_until") &&
                    BSON_ITER_HOLDS_DATE_TIME(&it))
                        until = bson_iter_date_time(&it);
                bson_destroy(doc);
                if (until >= now)
                        return; /* held by someone (maybe a past self) */
                /* Compare-and-set on the epoch we saw expire. */
                bson_t *filter = BCON_NEW("_id", BCON_UTF8(p->lease_id),
                                          "epoch", BCON_INT64(epoch));
                bson_t *upd =
                    BCON_NEW("$set", "{", "holder", BCON_UTF8(p->node_id),
                             "epoch", BCON_INT64(epoch + 1), "lease_until",
                             BCON_DATE_TIME(now + p->lease_ttl), "}");
                if (update_one(p, p->lease_coll, filter, upd, &matched, &err))
                        par_log(PAR_LOG_WARN, COMP, "lease.error", "err=\"%s\"",
                                err.msg);
                bson_destroy(filter);
                bson_destroy(upd);
                epoch = matched == 1 ? epoch + 1 : 0;
        }
        if (epoch) {
                set_held(p, epoch, now + p->lease_ttl);
                par_log(PAR_LOG_INFO, COMP, "lease.acquired",
                        "lease=%s node=%s epoch=%lld ttl_ms=%lld", p->lease_id,
                        p->node_id, (long long)epoch, (long long)p->lease_ttl);
        }
}

static void lost(prod_t *p, int64_t epoch, const char *why)
{
        par_log(PAR_LOG_WARN, COMP, "lease.lost", "lease=%s epoch=%lld why=%s",
                p->lease_id, (long long)epoch, why);
        set_held(p, 0, 0);
}

/* Lease thread: extends the lease; clears it when someone else holds it. */
static void renew(prod_t *p, int64_t epoch)
{
        int64_t now = par_clock_wall_ms(), matched = 0;
        par_error_t err;
        bson_t *filter =
            BCON_NEW("_id", BCON_UTF8(p->lease_id), "holder",
                     BCON_UTF8(p->node_id), "epoch", BCON_INT64(epoch));
        bson_t *upd = BCON_NEW("$set", "{", "lease_until",
                               BCON_DATE_TIME(now + p->lease_ttl), "}");
        par_err_t rc =
            update_one(p, p->lease_coll, filter, upd, &matched, &err);

        bson_destroy(filter);
        bson_destroy(upd);
        if (rc) {
                par_log(PAR_LOG_WARN, COMP, "lease.renew_failed", "err=\"%s\"",
                        err.msg);
                return; /* retried; the local expiry still protects us */
        }
        if (matched != 1) {
                lost(p, epoch, "taken over");
                return;
        }
        if (atomic_load(&p->lease_epoch) == epoch)
                atomic_store(&p->lease_until, (long long)(now + p->lease_ttl));
}

static void release(prod_t *p, int64_t epoch)
{
        int64_t matched = 0;
        par_error_t err;
        bson_t *filter =
            BCON_NEW("_id", BCON_UTF8(p->lease_id), "holder",
                     BCON_UTF8(p->node_id), "epoch", BCON_INT64(epoch));
        bson_t *upd =
            BCON_NEW("$set", "{", "lease_until", BCON_DATE_TIME(0), "}");

        if (update_one(p, p->lease_coll, filter, upd, &matched, &err))
                par_log(PAR_LOG_WARN, COMP, "lease.release_failed",
                        "err=\"%s\"", err.msg);
        else
                par_log(PAR_LOG_INFO, COMP, "lease.released",
                        "lease=%s epoch=%lld", p->lease_id, (long long)epoch);
        bson_destroy(filter);
        bson_destroy(upd);
        set_held(p, 0, 0);
}

static void *lease_main(void *arg)
{
        prod_t *p = arg;
        int64_t poll = p->lease_ttl / 10 < 500 ? p->lease_ttl / 10 : 500;
        int64_t next_renew = 0;
        bool stalled = false;

        while (!atomic_load(&p->lease_stop)) {
                int64_t now = par_clock_wall_ms();
                int64_t epoch = atomic_load(&p->lease_epoch);

                if (!epoch) {
                        /* Shutting down: never take the lease again. */
                        if (!par_producer_stop)
                                try_acquire(p);
                        next_renew = par_clock_wall_ms() + p->lease_ttl / 3;
                        par_clock_sleep_ms((int)poll);
                        continue;
                }
                if (now >= atomic_load(&p->lease_until)) {
                        lost(p, epoch, "expired before renewal");
                        continue;
                }
                if (now - atomic_load(&p->heartbeat) > p->lease_ttl) {
                        if (!stalled)
                                par_log(PAR_LOG_WARN, COMP, "lease.not_renewed",
                                        "why=\"main loop stalled\"");
                        stalled = true;
                } else if (now >= next_renew) {
                        stalled = false;
                        renew(p, epoch);
                        next_renew = now + p->lease_ttl / 3;
                }
                par_clock_sleep_ms(50);
        }
        if (atomic_load(&p->lease_epoch))
                release(p, atomic_load(&p->lease_epoch));
        return NULL;
}

par_err_t lease_start(prod_t *p, par_error_t *err)
{
        /* The lease thread must see a lost lease on time: a call to an
         * unreachable server (a partition drops packets silently) may not
         * block it past the lease, or it would neither step down nor say so
         * (libmongoc's default socket timeout is 5 minutes). So this client
         * always times out within a third of the ttl, whatever the URI
         * asks for the main client. */
        mongoc_uri_t *uri = mongoc_uri_copy(mongoc_client_get_uri(p->client));
        int32_t bound =
            (int32_t)(p->lease_ttl / 3 > 500 ? p->lease_ttl / 3 : 500);
        if (uri) {
                mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SOCKETTIMEOUTMS,
                                               bound);
                mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS,
                                               bound);
                mongoc_uri_set_option_as_int32(
                    uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, bound);
                p->lease_client = mongoc_client_new_from_uri(uri);
                mongoc_uri_destroy(uri);
        }
        if (!p->lease_client)
                return par_error_set(err, PAR_ERR_MONGO,
                                     "cannot create a MongoDB client");
        mongoc_client_set_appname(p->lease_client, "parallel-producer-lease");
        p->lease_coll = mongoc_client_get_collection(
            p->lease_client, par_config_str(p->cfg, "mongo.database"),
            par_config_str(p->cfg, "producer.state.collection"));
        atomic_store(&p->heartbeat, (long long)par_clock_wall_ms());
        if (pthread_create(&p->lease_thread, NULL, lease_main, p))
                return par_error_set(err, PAR_ERR_IO,
                                     "cannot start the lease thread");
        p->lease_thread_started = true;
        return PAR_OK;
}

void lease_stop(prod_t *p)
{
        if (p->lease_thread_started) {
                atomic_store(&p->lease_stop, 1);
                pthread_join(p->lease_thread, NULL);
                p->lease_thread_started = false;
        }
        if (p->lease_coll)
                mongoc_collection_destroy(p->lease_coll);
        if (p->lease_client)
                mongoc_client_destroy(p->lease_client);
        p->lease_coll = NULL;
        p->lease_client = NULL;
}

int64_t lease_held(prod_t *p)
{
        int64_t epoch = atomic_load(&p->lease_epoch);

        atomic_store(&p->heartbeat, (long long)par_clock_wall_ms());
        if (!epoch || par_clock_wall_ms() >= atomic_load(&p->lease_until))
                return 0;
        return epoch;
}

par_err_t lease_checkpoint(prod_t *p, bool force, par_error_t *err)
{
        int64_t now = par_clock_wall_ms(), matched = 0;
        bson_t *filter, update = BSON_INITIALIZER, set, tok;
        par_err_t rc;

        if (!p->cp_dirty)
                return PAR_OK;
        if (!force &&
            now - p->cp_written_at <
                par_config_int(p->cfg, "producer.checkpoint.interval"))
                return PAR_OK;
        if (lease_held(p) != p->epoch)
                return PAR_ERR_CANCELLED;
        filter = BCON_NEW("_id", BCON_UTF8(p->lease_id), "holder",
                          BCON_UTF8(p->node_id), "epoch", BCON_INT64(p->epoch));
        BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
        if (bson_init_static(&tok, p->cp_pending + 8, p->cp_pending_len - 8))
                BSON_APPEND_DOCUMENT(&set, "token", &tok);
        BSON_APPEND_DATE_TIME(&set, "token_at", now);
        bson_append_document_end(&update, &set);
        rc = update_one(p, p->state, filter, &update, &matched, err);
        bson_destroy(filter);
        bson_destroy(&update);
        if (rc)
                return rc; /* tried again at the next interval */
        if (matched != 1)
                return PAR_ERR_CANCELLED; /* fenced out: someone took over */
        memcpy(&p->cp_read_ms, p->cp_pending, 8);
        p->cp_dirty = false;
        p->cp_written_at = now;
        par_counter_inc(p->m_checkpoints);
        return PAR_OK;
}

par_err_t lease_read_token(prod_t *p, bson_t **token, par_error_t *err)
{
        bson_t *doc = NULL;
        bson_iter_t it;
        par_err_t rc;

        *token = NULL;
        rc = read_state(p, p->state, &doc, err);
        if (rc || !doc)
                return rc;
        if (bson_iter_init_find(&it, doc, "token") &&
            BSON_ITER_HOLDS_DOCUMENT(&it)) {
                const uint8_t *data;
                uint32_t len;
                bson_iter_document(&it, &len, &data);
                *token = bson_new_from_data(data, len);
        }
        bson_destroy(doc);
        return PAR_OK;
}

par_err_t lease_clear_token(prod_t *p, par_error_t *err)
{
        int64_t matched;
        bson_t *filter =
            BCON_NEW("_id", BCON_UTF8(p->lease_id), "holder",
                     BCON_UTF8(p->node_id), "epoch", BCON_INT64(p->epoch));
        bson_t *upd = BCON_NEW("$unset", "{", "token", BCON_UTF8(""), "}");
        par_err_t rc = update_one(p, p->state, filter, upd, &matched, err);

        bson_destroy(filter);
        bson_destroy(upd);
        if (!rc && matched != 1)
                rc = PAR_ERR_CANCELLED;
        return rc;
}
