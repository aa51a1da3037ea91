/*
 * signal.h — the signal document model (MongoDB collection `signals`) and
 * its validation.
 *
 * A signal document, as upstream systems insert it:
 *
 *   { _id: ObjectId, priority: 1..priority.levels, recipe: "name",
 *     resource: "key" (optional), params: { k: "v", … } (optional),
 *     created_at: Date, expires_at: Date (optional), status: "pending",
 *     traceparent: "00-…" (optional W3C trace context) }
 *
 * plus the fields Parallel itself writes later (claimed_by, claimed_at,
 * lease_until, attempt, result, error, and the *_at timestamps listed in
 * signal.c). Any other top-level field is rejected, naming the field: a
 * document with a field we do not understand is more likely a mistake
 * (a typo such as "priorty", or a schema from another system) than
 * something safe to ignore.
 *
 * par_signal_parse() is the one validator: the producer runs it on every
 * change event, parallel-ctl on every signal before inserting it. Its error
 * messages name the signal and the field so they can be stored on the
 * document and in the dead-letter topic as they are:
 *   "signal 65a1…: priority 7 out of range 1..4".
 *
 * A par_signal_t is a plain value: init it, parse or fill it, clear it.
 * Its params are owned by the struct and freed by par_signal_clear().
 * Nothing here keeps global state; every function may be called from any
 * thread on distinct structs.
 */
#ifndef PAR_SIGNAL_H
#define PAR_SIGNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <bson/bson.h>
#include <jansson.h>

#include "base/config.h"
#include "base/err.h"

#define PAR_SIGNAL_RECIPE_MAX               64 /* [A-Za-z0-9_.-]{1,64} */
#define PAR_SIGNAL_PARAM_KEY_MAX            64 /* same shape as a recipe name */
#define PAR_SIGNAL_RESOURCE_MAX             256 /* bytes of UTF-8 */
#define PAR_SIGNAL_STATUS_MAX               15
#define PAR_SIGNAL_TRACEPARENT_LEN          55 /* 00-<32 hex>-<16 hex>-<2 hex> */
#define PAR_SIGNAL_DEFAULT_MAX_PARAMS_BYTES 65536

/* Statuses a document may carry. */
#define PAR_SIGNAL_PENDING  "pending"
#define PAR_SIGNAL_CLAIMED  "claimed"
#define PAR_SIGNAL_REJECTED "rejected"

typedef struct par_signal_limits {
        int priority_levels;     /* priorities are 1..priority_levels */
        size_t max_params_bytes; /* sum of key and value lengths */
} par_signal_limits_t;

typedef struct par_signal_param {
        char *key;
        char *value;
} par_signal_param_t;

typedef struct par_signal {
        bson_oid_t oid;
        char id[25]; /* oid as 24 lowercase hex characters */
        int priority;
        char recipe[PAR_SIGNAL_RECIPE_MAX + 1];
        /* The document's resource, or the id when it has none. */
        char resource[PAR_SIGNAL_RESOURCE_MAX + 1];
        bool has_resource;
        par_signal_param_t *params; /* owned; n_params entries */
        size_t n_params;
        int64_t created_at; /* ms since the Unix epoch */
        int64_t expires_at; /* ms since the Unix epoch; 0: never */
        char status[PAR_SIGNAL_STATUS_MAX + 1];
        int32_t attempt;
        /* The document's traceparent, or "" when it carries none. */
        char traceparent[PAR_SIGNAL_TRACEPARENT_LEN + 1];
} par_signal_t;

/* Defaults: 4 levels, PAR_SIGNAL_DEFAULT_MAX_PARAMS_BYTES. */
void par_signal_limits_default(par_signal_limits_t *lim);
/* From priority.levels and signal.max_params_bytes (cfg borrowed). */
void par_signal_limits_from_config(par_signal_limits_t *lim,
                                   const par_config_t *cfg);

/* Zeroes s (no allocation). */
void par_signal_init(par_signal_t *s);
/* Frees s's params and zeroes it again. Accepts NULL. */
void par_signal_clear(par_signal_t *s);

/*
 * Validates doc (borrowed) and fills s (which must be initialised and is
 * cleared first). On failure s is left cleared, err says
 * "signal <id>: <field>: <what is wrong>" and PAR_ERR_INVALID is returned
 * (PAR_ERR_NOMEM on allocation failure). Status is checked to be a known
 * status but not to be "pending": what to do with a non-pending signal is
 * the caller's decision. Expiry is not checked against the clock here
 * (only expires_at > created_at).
 */
par_err_t par_signal_parse(par_signal_t *s, const bson_t *doc,
                           const par_signal_limits_t *lim, par_error_t *err);

/* Writes the id of doc (borrowed) into buf: the ObjectId in hex, a string
 * _id as is (truncated to fit), or "?" when there is none. Returns buf. */
const char *par_signal_doc_id(const bson_t *doc, char *buf, size_t n);

/*
 * Adds one param (both strings copied). Checks the key's shape and that the
 * value is UTF-8, not the total size (par_signal_parse does that).
 */
par_err_t par_signal_add_param(par_signal_t *s, const char *key,
                               const char *value, par_error_t *err);

/*
 * Appends s's fields to out (an initialised bson_t the caller owns), as an
 * upstream inserter writes them: _id, priority, recipe, resource (only when
 * has_resource), params, created_at, expires_at (when set), status
 * (default "pending" when s->status is empty), traceparent (when set).
 * s->oid must be set. Does not validate: parse the result to check it.
 */
void par_signal_append_bson(const par_signal_t *s, bson_t *out);

/*
 * The Avro Signal record (schemas/Signal.avsc) for s as a jansson object,
 * with the given traceparent (borrowed, not NULL). New reference, NULL only
 * on allocation failure.
 */
json_t *par_signal_to_json(const par_signal_t *s, const char *traceparent);

/* True for the statuses a signal document may have (pending, claimed, done,
 * failed, expired, rejected, dead). */
bool par_signal_status_known(const char *status);

/* True when name matches [A-Za-z0-9_.-]{1,64} (recipe names, param keys). */
bool par_signal_name_valid(const char *name);

/* True for a W3C traceparent of version 00 with non-zero ids. */
bool par_signal_traceparent_valid(const char *tp);

#endif
