/*
 * claim.c — see claim.h.
 *
 * When the claiming findAndModify matches nothing, one plain read says why
 * (terminal, leased, missing). The read can race with the holder finishing
 * or a lease lapsing; a document found pending or with a lapsed lease is
 * simply claimed again (bounded retries), so the outcome always reflects a
 * state the document really had. Resource locks work the same way: a
 * failed upsert (duplicate key) is followed by one read of the holder, and
 * a lock found free by that read is tried again.
 */
#include "store/claim.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct par_claim {
        mongoc_client_pool_t *pool;
        mongoc_client_t *client;
        mongoc_collection_t *coll;
        mongoc_collection_t *locks; /* <coll>_resources */
        char owner[PAR_CLAIM_OWNER_MAX];
};

const char *par_claim_outcome_name(par_claim_outcome_t o)
{
        static const char *n[] = {"ok", "expired", "terminal", "leased",
                                  "notfound"};
        return (unsigned)o < sizeof(n) / sizeof(*n) ? n[o] : "?";
}

par_err_t par_claim_new(par_claim_t **out, mongoc_client_pool_t *pool,
                        const char *db, const char *coll, const char *owner,
                        par_error_t *err)
{
        if (strlen(owner) >= PAR_CLAIM_OWNER_MAX)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "claim owner longer than %d bytes",
                                     PAR_CLAIM_OWNER_MAX - 1);
        par_claim_t *c = calloc(1, sizeof(*c));
        if (!c)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        snprintf(c->owner, sizeof(c->owner), "%s", owner);
        c->pool = pool;
        c->client = mongoc_client_pool_pop(pool);
        c->coll = mongoc_client_get_collection(c->client, db, coll);
        char lname[256];
        snprintf(lname, sizeof(lname), "%s_resources", coll);
        c->locks = mongoc_client_get_collection(c->client, db, lname);
        *out = c;
        return PAR_OK;
}

void par_claim_destroy(par_claim_t *c)
{
        if (!c)
                return;
        mongoc_collection_destroy(c->coll);
        mongoc_collection_destroy(c->locks);
        if (c->client)
                mongoc_client_pool_push(c->pool, c->client);
        free(c);
}

par_err_t par_claim_set_owner(par_claim_t *c, const char *owner,
                              par_error_t *err)
{
        if (strlen(owner) >= sizeof(c->owner))
                return par_error_set(err, PAR_ERR_INVALID,
                                     "claim owner longer than %d bytes",
                                     PAR_CLAIM_OWNER_MAX - 1);
        snprintf(c->owner, sizeof(c->owner), "%s", owner);
        return PAR_OK;
}

static void append_id(bson_t *b, const char *id)
{
        bson_oid_t oid;
        if (strlen(id) == 24 && bson_oid_is_valid(id, 24)) {
                bson_oid_init_from_string(&oid, id);
                BSON_APPEND_OID(b, "_id", &oid);
        } else {
                BSON_APPEND_UTF8(b, "_id", id);
        }
}

static int64_t doc_date(const bson_t *doc, const char *key)
{
        bson_iter_t it;
        if (!bson_iter_init_find(&it, doc, key))
                return 0;
        if (BSON_ITER_HOLDS_DATE_TIME(&it))
                return bson_iter_date_time(&it);
        if (BSON_ITER_HOLDS_INT64(&it) || BSON_ITER_HOLDS_INT32(&it))
                return bson_iter_as_int64(&it);
        return 0;
}

static void doc_str(const bson_t *doc, const char *key, char *buf, size_t n)
{
        bson_iter_t it;
        buf[0] = '\0';
        if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
                snprintf(buf, n, "%s", bson_iter_utf8(&it, NULL));
}

static int32_t doc_int(const bson_t *doc, const char *key)
{
        bson_iter_t it;
        if (bson_iter_init_find(&it, doc, key) &&
            (BSON_ITER_HOLDS_INT32(&it) || BSON_ITER_HOLDS_INT64(&it) ||
             BSON_ITER_HOLDS_DOUBLE(&it)))
                return (int32_t)bson_iter_as_int64(&it);
        return 0;
}

/*
 * One findAndModify on coll returning the new document (with upsert when
 * asked). *found tells whether a document was matched or inserted; on that
 * and when doc is non-NULL, *doc receives a copy of the new document
 * (caller destroys). A duplicate-key failure (a racing upsert) sets *dup
 * when dup is non-NULL and is not an error then.
 */
static par_err_t fam_in(mongoc_collection_t *coll, const bson_t *query,
                        const bson_t *update, bool upsert, bool *found,
                        bson_t **doc, bool *dup, par_error_t *err)
{
        mongoc_find_and_modify_opts_t *opts = mongoc_find_and_modify_opts_new();
        bson_t reply;
        bson_error_t be;
        bson_iter_t it;
        par_err_t rc = PAR_OK;

        mongoc_find_and_modify_opts_set_update(opts, update);
        mongoc_find_and_modify_opts_set_flags(
            opts, MONGOC_FIND_AND_MODIFY_RETURN_NEW |
                      (upsert ? MONGOC_FIND_AND_MODIFY_UPSERT : 0));
        *found = false;
        if (dup)
                *dup = false;
        if (!mongoc_collection_find_and_modify_with_opts(coll, query, opts,
                                                         &reply, &be)) {
                if (dup && (be.code == 11000 ||
                            (bson_iter_init_find(&it, &reply, "code") &&
                             bson_iter_as_int64(&it) == 11000))) {
                        *dup = true;
                        goto out;
                }
                rc = par_error_set(err, PAR_ERR_MONGO, "findAndModify: %s",
                                   be.message);
                goto out;
        }
        if (bson_iter_init_find(&it, &reply, "value") &&
            BSON_ITER_HOLDS_DOCUMENT(&it)) {
                *found = true;
                if (doc) {
                        const uint8_t *data;
                        uint32_t len;
                        bson_iter_document(&it, &len, &data);
                        *doc = bson_new_from_data(data, len);
                }
        }
out:
        bson_destroy(&reply);
        mongoc_find_and_modify_opts_destroy(opts);
        return rc;
}

static par_err_t fam(par_claim_t *c, const bson_t *query, const bson_t *update,
                     bool *found, bson_t **doc, par_error_t *err)
{
        return fam_in(c->coll, query, update, false, found, doc, NULL, err);
}

static par_err_t find_one_in(mongoc_collection_t *coll, const bson_t *q,
                             bson_t **doc, par_error_t *err)
{
        bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
        const bson_t *d;
        bson_error_t be;
        par_err_t rc = PAR_OK;

        mongoc_cursor_t *cur =
            mongoc_collection_find_with_opts(coll, q, opts, NULL);
        *doc = NULL;
        if (mongoc_cursor_next(cur, &d))
                *doc = bson_copy(d);
        else if (mongoc_cursor_error(cur, &be))
                rc = par_error_set(err, PAR_ERR_MONGO, "find: %s", be.message);
        mongoc_cursor_destroy(cur);
        bson_destroy(opts);
        return rc;
}

static par_err_t find_one(par_claim_t *c, const char *id, bson_t **doc,
                          par_error_t *err)
{
        bson_t q = BSON_INITIALIZER;
        append_id(&q, id);
        par_err_t rc = find_one_in(c->coll, &q, doc, err);
        bson_destroy(&q);
        return rc;
}

par_err_t par_claim_acquire(par_claim_t *c, const char *id,
                            const char *prev_owner, int64_t now_ms,
                            int64_t lease_ms, par_claim_info_t *info,
                            par_error_t *err)
{
        par_err_t rc = PAR_OK;
        bson_t *doc = NULL;

        memset(info, 0, sizeof(*info));
        for (int tries = 0; tries < 3; tries++) {
                bson_t q = BSON_INITIALIZER, orr, a, b, lt;
                bool found = false;

                append_id(&q, id);
                BSON_APPEND_ARRAY_BEGIN(&q, "$or", &orr);
                BSON_APPEND_DOCUMENT_BEGIN(&orr, "0", &a);
                BSON_APPEND_UTF8(&a, "status", "pending");
                bson_append_document_end(&orr, &a);
                BSON_APPEND_DOCUMENT_BEGIN(&orr, "1", &b);
                BSON_APPEND_UTF8(&b, "status", "claimed");
                BSON_APPEND_DOCUMENT_BEGIN(&b, "lease_until", &lt);
                BSON_APPEND_DATE_TIME(&lt, "$lt", now_ms);
                bson_append_document_end(&b, &lt);
                bson_append_document_end(&orr, &b);
                if (prev_owner) {
                        BSON_APPEND_DOCUMENT_BEGIN(&orr, "2", &a);
                        BSON_APPEND_UTF8(&a, "status", "claimed");
                        BSON_APPEND_UTF8(&a, "claimed_by", prev_owner);
                        bson_append_document_end(&orr, &a);
                }
                bson_append_array_end(&q, &orr);

                bson_t *upd = BCON_NEW(
                    "$set", "{", "status", BCON_UTF8("claimed"), "claimed_by",
                    BCON_UTF8(c->owner), "claimed_at", BCON_DATE_TIME(now_ms),
                    "lease_until", BCON_DATE_TIME(now_ms + lease_ms), "}",
                    "$inc", "{", "attempt", BCON_INT32(1), "}");
                rc = fam(c, &q, upd, &found, &doc, err);
                bson_destroy(upd);
                bson_destroy(&q);
                if (rc)
                        goto out;
                if (found) {
                        info->attempt = doc_int(doc, "attempt");
                        info->claimed_at = now_ms;
                        info->lease_until = now_ms + lease_ms;
                        info->expires_at = doc_date(doc, "expires_at");
                        snprintf(info->status, sizeof(info->status), "claimed");
                        info->outcome =
                            info->expires_at && info->expires_at <= now_ms
                                ? PAR_CLAIM_EXPIRED
                                : PAR_CLAIM_OK;
                        goto out;
                }

                if ((rc = find_one(c, id, &doc, err)))
                        goto out;
                if (!doc) {
                        info->outcome = PAR_CLAIM_NOTFOUND;
                        goto out;
                }
                doc_str(doc, "status", info->status, sizeof(info->status));
                info->attempt = doc_int(doc, "attempt");
                info->expires_at = doc_date(doc, "expires_at");
                if (!strcmp(info->status, "claimed")) {
                        info->lease_until = doc_date(doc, "lease_until");
                        doc_str(doc, "claimed_by", info->holder,
                                sizeof(info->holder));
                        if (info->lease_until >= now_ms) {
                                info->outcome = PAR_CLAIM_LEASED;
                                goto out;
                        }
                } else if (strcmp(info->status, "pending") != 0) {
                        info->outcome = PAR_CLAIM_TERMINAL;
                        goto out;
                }
                /* Pending or lapsed between our two calls: try again. */
                bson_destroy(doc);
                doc = NULL;
        }
        /* Still racing after retries: someone else keeps winning it. */
        info->outcome = PAR_CLAIM_LEASED;
out:
        bson_destroy(doc);
        return rc;
}

/* Appends ids[0..n-1] (ObjectId or string _ids) as `{$in: [...]}` under
 * key. */
static void append_in(bson_t *b, const char *key, const char *const *ids,
                      size_t n)
{
        bson_t in, arr;
        char k[24];
        BSON_APPEND_DOCUMENT_BEGIN(b, key, &in);
        BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
        for (size_t i = 0; i < n; i++) {
                bson_t one = BSON_INITIALIZER;
                bson_iter_t it;
                append_id(&one, ids[i]);
                snprintf(k, sizeof(k), "%zu", i);
                if (bson_iter_init_find(&it, &one, "_id"))
                        bson_append_iter(&arr, k, -1, &it);
                bson_destroy(&one);
        }
        bson_append_array_end(&in, &arr);
        bson_append_document_end(b, &in);
}

/* Whether doc's _id is id (24 hex characters: an ObjectId in any case). */
static bool doc_is(const bson_t *doc, const char *id)
{
        bson_iter_t it;
        if (!bson_iter_init_find(&it, doc, "_id"))
                return false;
        if (BSON_ITER_HOLDS_OID(&it)) {
                char hex[25];
                bson_oid_to_string(bson_iter_oid(&it), hex);
                return strlen(id) == 24 && !strcasecmp(hex, id);
        }
        return BSON_ITER_HOLDS_UTF8(&it) &&
               !strcmp(bson_iter_utf8(&it, NULL), id);
}

/* Reads the documents of ids (fields of proj, NULL: all) into docs[i]
 * (NULL: no such document; caller destroys). One query. */
static par_err_t find_many(par_claim_t *c, const char *const *ids, size_t n,
                           const bson_t *proj, bson_t **docs, par_error_t *err)
{
        bson_t q = BSON_INITIALIZER;
        bson_t *opts =
            proj ? BCON_NEW("projection", BCON_DOCUMENT(proj)) : bson_new();
        const bson_t *d;
        bson_error_t be;
        par_err_t rc = PAR_OK;

        for (size_t i = 0; i < n; i++)
                docs[i] = NULL;
        append_in(&q, "_id", ids, n);
        mongoc_cursor_t *cur =
            mongoc_collection_find_with_opts(c->coll, &q, opts, NULL);
        while (mongoc_cursor_next(cur, &d))
                for (size_t i = 0; i < n; i++)
                        if (!docs[i] && doc_is(d, ids[i])) {
                                docs[i] = bson_copy(d);
                                break;
                        }
        if (mongoc_cursor_error(cur, &be)) {
                rc = par_error_set(err, PAR_ERR_MONGO, "find: %s", be.message);
                for (size_t i = 0; i < n; i++) {
                        bson_destroy(docs[i]);
                        docs[i] = NULL;
                }
        }
        mongoc_cursor_destroy(cur);
        bson_destroy(opts);
        bson_destroy(&q);
        return rc;
}

/*
 * Which of ids[0..n) a batched write just took (ours[i]), written only on
 * success. The write counted `matched` documents (-1: unknown); when that
 * is all of them every one is ours, with no round trip. Otherwise some were
 * fenced off (released, taken over, finished, missing), and one query reads
 * them back: a document is ours when it has status states[i], is held by
 * owners[i] and carries our value `at` in the date field `key`, which this
 * write set (the lease it renewed, the time it finished): status and
 * holder alone cannot tell our write from an earlier one that left the
 * same (the same outcome finished before, at another time).
 */
static par_err_t which_ours(par_claim_t *c, const char *const *ids,
                            const char *const *states,
                            const char *const *owners, size_t n,
                            int64_t matched, const char *key, int64_t at,
                            bool *ours, par_error_t *err)
{
        bson_t *docs[PAR_CLAIM_BATCH_MAX];
        par_err_t rc;

        if (matched == (int64_t)n) {
                for (size_t i = 0; i < n; i++)
                        ours[i] = true;
                return PAR_OK;
        }
        bson_t *proj = BCON_NEW("status", BCON_INT32(1), "claimed_by",
                                BCON_INT32(1), key, BCON_INT32(1));
        rc = find_many(c, ids, n, proj, docs, err);
        bson_destroy(proj);
        if (rc)
                return rc;
        for (size_t i = 0; i < n; i++) {
                char st[16], by[PAR_CLAIM_OWNER_MAX];
                ours[i] = false;
                if (!docs[i])
                        continue;
                doc_str(docs[i], "status", st, sizeof(st));
                doc_str(docs[i], "claimed_by", by, sizeof(by));
                ours[i] = !strcmp(st, states[i]) && !strcmp(by, owners[i]) &&
                          doc_date(docs[i], key) == at;
                bson_destroy(docs[i]);
        }
        return PAR_OK;
}

/* The claiming filter of par_claim_acquire (without prev_owner) for the
 * ids, and its update with the call's token. */
static par_err_t claim_many(par_claim_t *c, const char *const *ids, size_t n,
                            const char *token, int64_t now_ms, int64_t lease_ms,
                            par_error_t *err)
{
        bson_t q = BSON_INITIALIZER, orr, a, b, lt, reply;
        bson_error_t be;
        par_err_t rc = PAR_OK;

        append_in(&q, "_id", ids, n);
        BSON_APPEND_ARRAY_BEGIN(&q, "$or", &orr);
        BSON_APPEND_DOCUMENT_BEGIN(&orr, "0", &a);
        BSON_APPEND_UTF8(&a, "status", "pending");
        bson_append_document_end(&orr, &a);
        BSON_APPEND_DOCUMENT_BEGIN(&orr, "1", &b);
        BSON_APPEND_UTF8(&b, "status", "claimed");
        BSON_APPEND_DOCUMENT_BEGIN(&b, "lease_until", &lt);
        BSON_APPEND_DATE_TIME(&lt, "$lt", now_ms);
        bson_append_document_end(&b, &lt);
        bson_append_document_end(&orr, &b);
        bson_append_array_end(&q, &orr);
        bson_t *upd = BCON_NEW(
            "$set", "{", "status", BCON_UTF8("claimed"), "claimed_by",
            BCON_UTF8(c->owner), "claimed_at", BCON_DATE_TIME(now_ms),
            "lease_until", BCON_DATE_TIME(now_ms + lease_ms), "claim_token",
            BCON_UTF8(token), "}", "$inc", "{", "attempt", BCON_INT32(1), "}");
        if (!mongoc_collection_update_many(c->coll, &q, upd, NULL, &reply, &be))
                rc =
                    par_error_set(err, PAR_ERR_MONGO, "update: %s", be.message);
        bson_destroy(&reply);
        bson_destroy(upd);
        bson_destroy(&q);
        return rc;
}

par_err_t par_claim_acquire_batch(par_claim_t *c, const char *const *ids,
                                  size_t n, int64_t now_ms, int64_t lease_ms,
                                  par_claim_info_t *infos, par_error_t *err)
{
        const char *todo[PAR_CLAIM_BATCH_MAX];
        size_t at[PAR_CLAIM_BATCH_MAX], ntodo = 0;
        bson_t *docs[PAR_CLAIM_BATCH_MAX];
        char token[25];
        bson_oid_t oid;
        par_err_t rc = PAR_OK;

        if (n > PAR_CLAIM_BATCH_MAX)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "claim batch of %zu ids (at most %d)", n,
                                     PAR_CLAIM_BATCH_MAX);
        /* Unique to this call across processes (random per process, a
         * counter within it): the proof that a document is ours. */
        bson_oid_init(&oid, NULL);
        bson_oid_to_string(&oid, token);
        for (size_t i = 0; i < n; i++) {
                memset(&infos[i], 0, sizeof(infos[i]));
                bool dup = false;
                for (size_t k = 0; k < ntodo && !dup; k++)
                        dup = !strcmp(todo[k], ids[i]);
                if (dup) {
                        infos[i].outcome = PAR_CLAIM_LEASED;
                        infos[i].lease_until = now_ms + lease_ms;
                        snprintf(infos[i].status, sizeof(infos[i].status),
                                 "claimed");
                        snprintf(infos[i].holder, sizeof(infos[i].holder), "%s",
                                 c->owner);
                        continue;
                }
                todo[ntodo] = ids[i];
                at[ntodo++] = i;
        }
        for (int tries = 0; tries < 3 && ntodo; tries++) {
                if ((rc = claim_many(c, todo, ntodo, token, now_ms, lease_ms,
                                     err)) ||
                    (rc = find_many(c, todo, ntodo, NULL, docs, err)))
                        return rc;
                size_t left = 0;
                for (size_t k = 0; k < ntodo; k++) {
                        par_claim_info_t *info = &infos[at[k]];
                        bson_t *doc = docs[k];
                        char tok[32];
                        bool again = false;

                        if (!doc) {
                                info->outcome = PAR_CLAIM_NOTFOUND;
                                continue;
                        }
                        doc_str(doc, "status", info->status,
                                sizeof(info->status));
                        doc_str(doc, "claim_token", tok, sizeof(tok));
                        info->attempt = doc_int(doc, "attempt");
                        info->expires_at = doc_date(doc, "expires_at");
                        if (!strcmp(info->status, "claimed") &&
                            !strcmp(tok, token)) {
                                info->claimed_at = now_ms;
                                info->lease_until = now_ms + lease_ms;
                                info->outcome =
                                    info->expires_at &&
                                            info->expires_at <= now_ms
                                        ? PAR_CLAIM_EXPIRED
                                        : PAR_CLAIM_OK;
                        } else if (!strcmp(info->status, "claimed")) {
                                info->lease_until =
                                    doc_date(doc, "lease_until");
                                doc_str(doc, "claimed_by", info->holder,
                                        sizeof(info->holder));
                                info->outcome = PAR_CLAIM_LEASED;
                                again = info->lease_until < now_ms;
                        } else if (!strcmp(info->status, "pending")) {
                                /* Pending after our update: released
                                 * meanwhile. Leased (by nobody) unless the
                                 * next try takes it. */
                                info->outcome = PAR_CLAIM_LEASED;
                                again = true;
                        } else {
                                info->outcome = PAR_CLAIM_TERMINAL;
                        }
                        bson_destroy(doc);
                        if (again) {
                                todo[left] = todo[k];
                                at[left++] = at[k];
                        }
                }
                ntodo = left;
        }
        return rc;
}

par_err_t par_claim_renew_batch(par_claim_t *c, const char *const *ids,
                                size_t n, const char *owner, int64_t now_ms,
                                int64_t lease_ms, bool *lost, par_error_t *err)
{
        bson_t q = BSON_INITIALIZER, reply;
        const char *states[PAR_CLAIM_BATCH_MAX], *owners[PAR_CLAIM_BATCH_MAX];
        bool ours[PAR_CLAIM_BATCH_MAX];
        bson_error_t be;
        bson_iter_t it;
        const char *who = owner ? owner : c->owner;
        int64_t until = now_ms + lease_ms, matched = -1;
        par_err_t rc = PAR_OK;

        if (n > PAR_CLAIM_BATCH_MAX)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "renew batch of %zu ids (at most %d)", n,
                                     PAR_CLAIM_BATCH_MAX);
        if (n == 0)
                return PAR_OK;
        append_in(&q, "_id", ids, n);
        BSON_APPEND_UTF8(&q, "status", "claimed");
        BSON_APPEND_UTF8(&q, "claimed_by", who);
        bson_t *upd =
            BCON_NEW("$set", "{", "lease_until", BCON_DATE_TIME(until), "}");
        if (!mongoc_collection_update_many(c->coll, &q, upd, NULL, &reply, &be))
                rc = par_error_set(err, PAR_ERR_MONGO, "renew: %s", be.message);
        else if (bson_iter_init_find(&it, &reply, "matchedCount"))
                matched = bson_iter_as_int64(&it);
        bson_destroy(&reply);
        bson_destroy(upd);
        bson_destroy(&q);
        if (rc)
                return rc;
        for (size_t i = 0; i < n; i++) {
                lost[i] = false;
                states[i] = "claimed";
                owners[i] = who;
        }
        /* Ours now carry our lease_until. */
        if ((rc = which_ours(c, ids, states, owners, n, matched, "lease_until",
                             until, ours, err)))
                return rc;
        for (size_t i = 0; i < n; i++)
                lost[i] = !ours[i];
        return PAR_OK;
}

par_err_t par_claim_finish_batch(par_claim_t *c, const par_claim_finish_t *outs,
                                 size_t n, int64_t now_ms, par_err_t *rcs,
                                 par_error_t *err)
{
        const char *ids[PAR_CLAIM_BATCH_MAX], *states[PAR_CLAIM_BATCH_MAX],
            *owners[PAR_CLAIM_BATCH_MAX];
        bool ours[PAR_CLAIM_BATCH_MAX];
        bson_t reply;
        bson_error_t be;
        bson_iter_t it;
        par_err_t rc = PAR_OK;

        if (n > PAR_CLAIM_BATCH_MAX)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "finish batch of %zu ids (at most %d)", n,
                                     PAR_CLAIM_BATCH_MAX);
        if (n == 0)
                return PAR_OK;
        bson_t *bopts = BCON_NEW("ordered", BCON_BOOL(false));
        mongoc_bulk_operation_t *bulk =
            mongoc_collection_create_bulk_operation_with_opts(c->coll, bopts);
        bson_destroy(bopts);
        for (size_t i = 0; i < n; i++) {
                const par_claim_finish_t *o = &outs[i];
                bson_t q = BSON_INITIALIZER, upd = BSON_INITIALIZER, set, unset;

                ids[i] = o->id;
                states[i] = o->status;
                owners[i] = o->owner ? o->owner : c->owner;
                append_id(&q, o->id);
                BSON_APPEND_UTF8(&q, "status", "claimed");
                BSON_APPEND_UTF8(&q, "claimed_by", owners[i]);
                BSON_APPEND_DOCUMENT_BEGIN(&upd, "$set", &set);
                BSON_APPEND_UTF8(&set, "status", o->status);
                if (o->result)
                        BSON_APPEND_DOCUMENT(&set, "result", o->result);
                if (o->error)
                        BSON_APPEND_UTF8(&set, "error", o->error);
                else
                        BSON_APPEND_NULL(&set, "error");
                BSON_APPEND_DATE_TIME(&set, "finished_at", now_ms);
                bson_append_document_end(&upd, &set);
                BSON_APPEND_DOCUMENT_BEGIN(&upd, "$unset", &unset);
                BSON_APPEND_UTF8(&unset, "lease_until", "");
                bson_append_document_end(&upd, &unset);
                bool ok = mongoc_bulk_operation_update_one_with_opts(
                    bulk, &q, &upd, NULL, &be);
                bson_destroy(&q);
                bson_destroy(&upd);
                if (!ok) {
                        mongoc_bulk_operation_destroy(bulk);
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "signal %s: finish: %s", o->id,
                                             be.message);
                }
        }
        bool ok = mongoc_bulk_operation_execute(bulk, &reply, &be) != 0;
        int64_t matched = bson_iter_init_find(&it, &reply, "nMatched")
                              ? bson_iter_as_int64(&it)
                              : -1;
        bson_destroy(&reply);
        mongoc_bulk_operation_destroy(bulk);
        if (!ok)
                return par_error_set(err, PAR_ERR_MONGO, "finish: %s",
                                     be.message);
        for (size_t i = 0; i < n; i++)
                rcs[i] = PAR_OK;
        /* Ours carry our outcome and time. */
        if ((rc = which_ours(c, ids, states, owners, n, matched, "finished_at",
                             now_ms, ours, err)))
                return rc;
        for (size_t i = 0; i < n; i++)
                rcs[i] = ours[i] ? PAR_OK : PAR_ERR_NOTFOUND;
        return PAR_OK;
}

/* findAndModify on {_id, status: claimed, claimed_by: owner}. */
static par_err_t owned_update(par_claim_t *c, const char *id, const char *owner,
                              const bson_t *update, const char *what,
                              par_error_t *err)
{
        bson_t q = BSON_INITIALIZER;
        bool found = false;
        par_err_t rc;

        append_id(&q, id);
        BSON_APPEND_UTF8(&q, "status", "claimed");
        BSON_APPEND_UTF8(&q, "claimed_by", owner ? owner : c->owner);
        rc = fam(c, &q, update, &found, NULL, err);
        bson_destroy(&q);
        if (!rc && !found)
                rc = par_error_set(err, PAR_ERR_NOTFOUND,
                                   "signal %s: %s: not held by %s", id, what,
                                   owner ? owner : c->owner);
        return rc;
}

par_err_t par_claim_renew(par_claim_t *c, const char *id, const char *owner,
                          int64_t now_ms, int64_t lease_ms, par_error_t *err)
{
        bson_t *upd = BCON_NEW("$set", "{", "lease_until",
                               BCON_DATE_TIME(now_ms + lease_ms), "}");
        par_err_t rc = owned_update(c, id, owner, upd, "renew", err);
        bson_destroy(upd);
        return rc;
}

par_err_t par_claim_finish(par_claim_t *c, const char *id, const char *status,
                           const bson_t *result, const char *error,
                           int64_t now_ms, par_error_t *err)
{
        bson_t upd = BSON_INITIALIZER, set, unset;
        par_err_t rc;

        BSON_APPEND_DOCUMENT_BEGIN(&upd, "$set", &set);
        BSON_APPEND_UTF8(&set, "status", status);
        if (result)
                BSON_APPEND_DOCUMENT(&set, "result", result);
        if (error)
                BSON_APPEND_UTF8(&set, "error", error);
        else
                BSON_APPEND_NULL(&set, "error");
        BSON_APPEND_DATE_TIME(&set, "finished_at", now_ms);
        bson_append_document_end(&upd, &set);
        BSON_APPEND_DOCUMENT_BEGIN(&upd, "$unset", &unset);
        BSON_APPEND_UTF8(&unset, "lease_until", "");
        bson_append_document_end(&upd, &unset);
        rc = owned_update(c, id, NULL, &upd, "finish", err);
        bson_destroy(&upd);
        return rc;
}

par_err_t par_claim_release(par_claim_t *c, const char *id, const char *error,
                            bool uncount, par_error_t *err)
{
        bson_t upd = BSON_INITIALIZER, set, unset;
        par_err_t rc;

        BSON_APPEND_DOCUMENT_BEGIN(&upd, "$set", &set);
        BSON_APPEND_UTF8(&set, "status", "pending");
        if (error)
                BSON_APPEND_UTF8(&set, "error", error);
        bson_append_document_end(&upd, &set);
        BSON_APPEND_DOCUMENT_BEGIN(&upd, "$unset", &unset);
        BSON_APPEND_UTF8(&unset, "lease_until", "");
        BSON_APPEND_UTF8(&unset, "claimed_by", "");
        bson_append_document_end(&upd, &unset);
        if (uncount) {
                bson_t inc;
                BSON_APPEND_DOCUMENT_BEGIN(&upd, "$inc", &inc);
                BSON_APPEND_INT32(&inc, "attempt", -1);
                bson_append_document_end(&upd, &inc);
        }
        rc = owned_update(c, id, NULL, &upd, "release", err);
        bson_destroy(&upd);
        return rc;
}

par_err_t par_claim_transfer(par_claim_t *c, const char *id,
                             const char *prev_owner, int64_t now_ms,
                             int64_t lease_ms, par_error_t *err)
{
        bson_t *upd =
            BCON_NEW("$set", "{", "claimed_by", BCON_UTF8(c->owner),
                     "claimed_at", BCON_DATE_TIME(now_ms), "lease_until",
                     BCON_DATE_TIME(now_ms + lease_ms), "}");
        par_err_t rc = owned_update(c, id, prev_owner, upd, "transfer", err);
        bson_destroy(upd);
        return rc;
}

par_err_t par_claim_lock(par_claim_t *c, const char *resource, const char *id,
                         const char *prev_owner, int64_t now_ms,
                         int64_t lease_ms, par_claim_info_t *info,
                         par_error_t *err)
{
        par_err_t rc = PAR_OK;
        bson_t *doc = NULL;

        memset(info, 0, sizeof(*info));
        for (int tries = 0; tries < 3; tries++) {
                bson_t q = BSON_INITIALIZER, orr, a, lt;
                bool found = false, dup = false;

                BSON_APPEND_UTF8(&q, "_id", resource);
                BSON_APPEND_ARRAY_BEGIN(&q, "$or", &orr);
                BSON_APPEND_DOCUMENT_BEGIN(&orr, "0", &a);
                BSON_APPEND_UTF8(&a, "holder", c->owner);
                bson_append_document_end(&orr, &a);
                BSON_APPEND_DOCUMENT_BEGIN(&orr, "1", &a);
                BSON_APPEND_DOCUMENT_BEGIN(&a, "lease_until", &lt);
                BSON_APPEND_DATE_TIME(&lt, "$lt", now_ms);
                bson_append_document_end(&a, &lt);
                bson_append_document_end(&orr, &a);
                if (prev_owner) {
                        BSON_APPEND_DOCUMENT_BEGIN(&orr, "2", &a);
                        BSON_APPEND_UTF8(&a, "holder", prev_owner);
                        bson_append_document_end(&orr, &a);
                }
                bson_append_array_end(&q, &orr);
                bson_t *upd =
                    BCON_NEW("$set", "{", "holder", BCON_UTF8(c->owner),
                             "signal", BCON_UTF8(id), "lease_until",
                             BCON_DATE_TIME(now_ms + lease_ms), "}");
                rc = fam_in(c->locks, &q, upd, true, &found, NULL, &dup, err);
                bson_destroy(upd);
                bson_destroy(&q);
                if (rc)
                        goto out;
                if (found && !dup) {
                        info->outcome = PAR_CLAIM_OK;
                        info->claimed_at = now_ms;
                        info->lease_until = now_ms + lease_ms;
                        goto out;
                }
                /* Held (or a racing upsert won): who holds it, until when? */
                bson_t r = BSON_INITIALIZER;
                BSON_APPEND_UTF8(&r, "_id", resource);
                rc = find_one_in(c->locks, &r, &doc, err);
                bson_destroy(&r);
                if (rc)
                        goto out;
                info->outcome = PAR_CLAIM_LEASED;
                if (!doc)
                        continue; /* released meanwhile: try again */
                info->lease_until = doc_date(doc, "lease_until");
                doc_str(doc, "holder", info->holder, sizeof(info->holder));
                bson_destroy(doc);
                doc = NULL;
                if (info->lease_until >= now_ms &&
                    strcmp(info->holder, c->owner) != 0 &&
                    (!prev_owner || strcmp(info->holder, prev_owner) != 0))
                        goto out;
        }
        /* Still racing after retries: someone else keeps winning it. */
        info->outcome = PAR_CLAIM_LEASED;
out:
        bson_destroy(doc);
        return rc;
}

par_err_t par_claim_lock_renew(par_claim_t *c, const char *resource,
                               const char *id, const char *owner,
                               int64_t now_ms, int64_t lease_ms,
                               par_error_t *err)
{
        bson_t *q = BCON_NEW("_id", BCON_UTF8(resource), "holder",
                             BCON_UTF8(owner ? owner : c->owner), "signal",
                             BCON_UTF8(id));
        bson_t *upd = BCON_NEW("$set", "{", "lease_until",
                               BCON_DATE_TIME(now_ms + lease_ms), "}");
        bool found = false;
        par_err_t rc = fam_in(c->locks, q, upd, false, &found, NULL, NULL, err);
        if (!rc && !found)
                rc = par_error_set(err, PAR_ERR_NOTFOUND,
                                   "resource %s: renew: not held by %s",
                                   resource, owner ? owner : c->owner);
        bson_destroy(upd);
        bson_destroy(q);
        return rc;
}

par_err_t par_claim_unlock(par_claim_t *c, const char *resource, const char *id,
                           const char *owner, par_error_t *err)
{
        bson_t *q = BCON_NEW("_id", BCON_UTF8(resource), "holder",
                             BCON_UTF8(owner ? owner : c->owner), "signal",
                             BCON_UTF8(id));
        bson_t reply;
        bson_error_t be;
        bson_iter_t it;
        par_err_t rc = PAR_OK;

        if (!mongoc_collection_delete_one(c->locks, q, NULL, &reply, &be))
                rc =
                    par_error_set(err, PAR_ERR_MONGO, "delete: %s", be.message);
        else if (!bson_iter_init_find(&it, &reply, "deletedCount") ||
                 bson_iter_as_int64(&it) != 1)
                rc = par_error_set(err, PAR_ERR_NOTFOUND,
                                   "resource %s: unlock: not held by %s",
                                   resource, owner ? owner : c->owner);
        bson_destroy(&reply);
        bson_destroy(q);
        return rc;
}
