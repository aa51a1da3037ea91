/*
 * session.c — resource sessions in MongoDB (see session.h).
 */
#include "store/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct par_session_store {
        mongoc_client_pool_t *pool;
        mongoc_client_t *client;
        mongoc_collection_t *coll;
};

par_err_t par_session_store_new(par_session_store_t **out,
                                mongoc_client_pool_t *pool, const char *db,
                                const char *coll, par_error_t *err)
{
        par_session_store_t *s = calloc(1, sizeof(*s));

        if (!s)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        s->pool = pool;
        s->client = mongoc_client_pool_pop(pool);
        s->coll = mongoc_client_get_collection(s->client, db, coll);
        *out = s;
        return PAR_OK;
}

void par_session_store_destroy(par_session_store_t *s)
{
        if (!s)
                return;
        mongoc_collection_destroy(s->coll);
        if (s->client)
                mongoc_client_pool_push(s->pool, s->client);
        free(s);
}

par_err_t par_session_save(par_session_store_t *s, const char *resource,
                           const json_t *snap, const char *node, int64_t now_ms,
                           par_error_t *err)
{
        char *text = json_dumps(snap, JSON_COMPACT);
        bson_t sel = BSON_INITIALIZER, doc = BSON_INITIALIZER,
               opts = BSON_INITIALIZER;
        bson_error_t be;
        par_err_t rc = PAR_OK;

        if (!text)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        BSON_APPEND_UTF8(&sel, "_id", resource);
        BSON_APPEND_UTF8(&doc, "_id", resource);
        BSON_APPEND_UTF8(&doc, "snapshot", text);
        BSON_APPEND_DATE_TIME(&doc, "updated_at", now_ms);
        BSON_APPEND_UTF8(&doc, "node", node ? node : "");
        BSON_APPEND_INT64(&doc, "bytes", (int64_t)strlen(text));
        BSON_APPEND_INT64(&doc, "cookies",
                          (int64_t)json_array_size(
                              json_object_get((json_t *)snap, "cookies")));
        BSON_APPEND_INT64(&doc, "origins",
                          (int64_t)json_object_size(
                              json_object_get((json_t *)snap, "origins")));
        BSON_APPEND_BOOL(&opts, "upsert", true);
        if (!mongoc_collection_replace_one(s->coll, &sel, &doc, &opts, NULL,
                                           &be))
                rc = par_error_set(err, PAR_ERR_MONGO,
                                   "sessions: saving resource %.100s: %s",
                                   resource, be.message);
        bson_destroy(&sel);
        bson_destroy(&doc);
        bson_destroy(&opts);
        free(text);
        return rc;
}

par_err_t par_session_load(par_session_store_t *s, const char *resource,
                           json_t **out, par_error_t *err)
{
        bson_t filter = BSON_INITIALIZER;
        const bson_t *doc;
        mongoc_cursor_t *cur;
        bson_error_t be;
        bson_iter_t it;
        json_t *snap = NULL;
        par_err_t rc = PAR_OK;

        BSON_APPEND_UTF8(&filter, "_id", resource);
        cur = mongoc_collection_find_with_opts(s->coll, &filter, NULL, NULL);
        if (mongoc_cursor_next(cur, &doc) &&
            bson_iter_init_find(&it, doc, "snapshot") &&
            BSON_ITER_HOLDS_UTF8(&it)) {
                json_error_t je;
                snap = json_loads(bson_iter_utf8(&it, NULL), 0, &je);
                if (!snap)
                        rc = par_error_set(err, PAR_ERR_INVALID,
                                           "sessions: resource %.100s: "
                                           "unreadable snapshot (line %d)",
                                           resource, je.line);
        }
        if (!rc && mongoc_cursor_error(cur, &be))
                rc = par_error_set(err, PAR_ERR_MONGO,
                                   "sessions: loading resource %.100s: %s",
                                   resource, be.message);
        mongoc_cursor_destroy(cur);
        bson_destroy(&filter);
        if (rc) {
                json_decref(snap);
                return rc;
        }
        *out = snap;
        return PAR_OK;
}

par_err_t par_session_delete(par_session_store_t *s, const char *resource,
                             int64_t *count, par_error_t *err)
{
        bson_t filter = BSON_INITIALIZER, reply;
        bson_error_t be;
        bson_iter_t it;
        par_err_t rc = PAR_OK;

        if (resource)
                BSON_APPEND_UTF8(&filter, "_id", resource);
        if (!mongoc_collection_delete_many(s->coll, &filter, NULL, &reply, &be))
                rc = par_error_set(err, PAR_ERR_MONGO, "sessions: deleting: %s",
                                   be.message);
        else if (count)
                *count = bson_iter_init_find(&it, &reply, "deletedCount")
                             ? bson_iter_as_int64(&it)
                             : 0;
        bson_destroy(&reply);
        bson_destroy(&filter);
        return rc;
}

static int64_t get_i64(const bson_t *doc, const char *k)
{
        bson_iter_t it;

        if (!bson_iter_init_find(&it, doc, k))
                return 0;
        if (BSON_ITER_HOLDS_DATE_TIME(&it))
                return bson_iter_date_time(&it);
        return bson_iter_as_int64(&it);
}

par_err_t par_session_list(par_session_store_t *s, size_t max,
                           par_session_info_t **out, size_t *n,
                           par_error_t *err)
{
        bson_t filter = BSON_INITIALIZER, *opts;
        const bson_t *doc;
        mongoc_cursor_t *cur;
        bson_error_t be;
        par_session_info_t *v = NULL;
        size_t len = 0, cap = 0;
        par_err_t rc = PAR_OK;

        /* Metadata only: the snapshot itself never leaves the database
         * here. */
        opts = BCON_NEW("projection", "{", "snapshot", BCON_INT32(0), "}",
                        "sort", "{", "updated_at", BCON_INT32(1), "}");
        cur = mongoc_collection_find_with_opts(s->coll, &filter, opts, NULL);
        while (len < max && mongoc_cursor_next(cur, &doc)) {
                bson_iter_t it;
                par_session_info_t *e;

                if (len == cap) {
                        size_t nc = cap ? cap * 2 : 16;
                        void *p = realloc(v, nc * sizeof(*v));
                        if (!p) {
                                rc = par_error_set(err, PAR_ERR_NOMEM,
                                                   "out of memory");
                                break;
                        }
                        v = p;
                        cap = nc;
                }
                e = &v[len++];
                memset(e, 0, sizeof(*e));
                if (bson_iter_init_find(&it, doc, "_id") &&
                    BSON_ITER_HOLDS_UTF8(&it))
                        snprintf(e->resource, sizeof(e->resource), "%s",
                                 bson_iter_utf8(&it, NULL));
                if (bson_iter_init_find(&it, doc, "node") &&
                    BSON_ITER_HOLDS_UTF8(&it))
                        snprintf(e->node, sizeof(e->node), "%s",
                                 bson_iter_utf8(&it, NULL));
                e->updated_at = get_i64(doc, "updated_at");
                e->bytes = get_i64(doc, "bytes");
                e->cookies = get_i64(doc, "cookies");
                e->origins = get_i64(doc, "origins");
        }
        if (!rc && mongoc_cursor_error(cur, &be))
                rc = par_error_set(err, PAR_ERR_MONGO, "sessions: listing: %s",
                                   be.message);
        mongoc_cursor_destroy(cur);
        bson_destroy(opts);
        bson_destroy(&filter);
        if (rc) {
                free(v);
                return rc;
        }
        *out = v;
        *n = len;
        return PAR_OK;
}
