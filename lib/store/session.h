/*
 * session.h — resource sessions (browser state snapshots) in MongoDB.
 *
 * In state scope `resource` the consumer saves, after each successful spin,
 * the resource's browser session (cookies, localStorage, sessionStorage:
 * see browser/state.h) so that a node that runs the resource next without
 * its context in memory — after a rebalance or a crash elsewhere — can
 * restore it. One document per resource in the sessions collection
 * (sessions.collection, default `sessions`):
 *
 *   {_id: resource, snapshot: "<JSON text>", updated_at: Date,
 *    node: "<node>/<worker>", bytes, cookies, origins}
 *
 * The snapshot is kept as JSON text, not as a sub-document: cookie names and
 * storage keys may hold '.' or start with '$', which BSON field names may
 * not. Snapshots are credentials: nothing here logs them; list returns only
 * the metadata.
 *
 * Threads: like par_claim_t, one par_session_store_t per thread (it holds a
 * client popped from the pool).
 */
#ifndef PAR_SESSION_H
#define PAR_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <mongoc/mongoc.h>

#include "base/err.h"

typedef struct par_session_store par_session_store_t;

typedef struct par_session_info {
        char resource[256];
        char node[128];
        int64_t updated_at; /* ms since the epoch */
        int64_t bytes;      /* snapshot size */
        int64_t cookies;
        int64_t origins;
} par_session_info_t;

/* Pops a client from pool (borrowed; must outlive the store). */
par_err_t par_session_store_new(par_session_store_t **out,
                                mongoc_client_pool_t *pool, const char *db,
                                const char *coll, par_error_t *err);
/* Returns the client to its pool. Accepts NULL. */
void par_session_store_destroy(par_session_store_t *s);

/* Replaces (or inserts) the resource's session. snap borrowed; node (may be
 * NULL) records who saved it. */
par_err_t par_session_save(par_session_store_t *s, const char *resource,
                           const json_t *snap, const char *node, int64_t now_ms,
                           par_error_t *err);

/* *out: a new reference to the saved snapshot, or NULL when the resource
 * has none (PAR_OK either way). */
par_err_t par_session_load(par_session_store_t *s, const char *resource,
                           json_t **out, par_error_t *err);

/* Deletes one resource's session (resource != NULL) or every session
 * (resource == NULL); *count (may be NULL) = documents deleted. */
par_err_t par_session_delete(par_session_store_t *s, const char *resource,
                             int64_t *count, par_error_t *err);

/* Metadata of every saved session, oldest update first (at most max).
 * *out is malloc'ed (caller frees), *n its length. */
par_err_t par_session_list(par_session_store_t *s, size_t max,
                           par_session_info_t **out, size_t *n,
                           par_error_t *err);

#endif
