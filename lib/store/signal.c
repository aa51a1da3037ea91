/*
 * signal.c — validation of signal documents (see signal.h).
 *
 * One pass over the top-level fields, each checked by type and shape as it
 * is met, then the required ones checked for presence. Every message starts
 * with "signal <id>: " so that a reason stored on the document or in the
 * DLQ is self-contained. Limits are explicit and small (recipe names 64
 * bytes, resources 256, params 64 KiB by default) because a signal travels
 * through Kafka, MongoDB and a browser page: an oversized one is a mistake
 * to reject early, not a load to carry.
 */
#include "store/signal.h"
#include "base/text.h"

#include <stdlib.h>
#include <string.h>

static const char *const statuses[] = {"pending", "claimed",  "done", "failed",
                                       "expired", "rejected", "dead", NULL};

/* Written by Parallel (consumer, sweeper) after insertion; not type-checked
 * except attempt, which the producer republishes. */
static const char *const parallel_fields[] = {
    "claimed_by",  "claimed_at",  "lease_until", "attempt",
    "result",      "error",       "started_at",  "finished_at",
    "rejected_at", "requeued_at", "updated_at",  "expired_at",
    "node_id",     "worker_id",   "claim_token", NULL};

enum {
        F_ID = 1 << 0,
        F_PRIORITY = 1 << 1,
        F_RECIPE = 1 << 2,
        F_RESOURCE = 1 << 3,
        F_PARAMS = 1 << 4,
        F_CREATED = 1 << 5,
        F_EXPIRES = 1 << 6,
        F_STATUS = 1 << 7,
        F_TRACE = 1 << 8,
        F_ATTEMPT = 1 << 9,
};

static const char *type_name(bson_type_t t)
{
        switch (t) {
        case BSON_TYPE_DOUBLE:
                return "double";
        case BSON_TYPE_UTF8:
                return "string";
        case BSON_TYPE_DOCUMENT:
                return "object";
        case BSON_TYPE_ARRAY:
                return "array";
        case BSON_TYPE_BINARY:
                return "binary";
        case BSON_TYPE_OID:
                return "ObjectId";
        case BSON_TYPE_BOOL:
                return "bool";
        case BSON_TYPE_DATE_TIME:
                return "date";
        case BSON_TYPE_NULL:
                return "null";
        case BSON_TYPE_REGEX:
                return "regex";
        case BSON_TYPE_INT32:
                return "int32";
        case BSON_TYPE_TIMESTAMP:
                return "timestamp";
        case BSON_TYPE_INT64:
                return "int64";
        case BSON_TYPE_DECIMAL128:
                return "decimal128";
        default:
                return "unsupported type";
        }
}

void par_signal_limits_default(par_signal_limits_t *lim)
{
        lim->priority_levels = 4;
        lim->max_params_bytes = PAR_SIGNAL_DEFAULT_MAX_PARAMS_BYTES;
}

void par_signal_limits_from_config(par_signal_limits_t *lim,
                                   const par_config_t *cfg)
{
        lim->priority_levels = (int)par_config_int(cfg, "priority.levels");
        lim->max_params_bytes =
            (size_t)par_config_int(cfg, "signal.max_params_bytes");
}

void par_signal_init(par_signal_t *s)
{
        memset(s, 0, sizeof(*s));
}

void par_signal_clear(par_signal_t *s)
{
        if (!s)
                return;
        for (size_t i = 0; i < s->n_params; i++) {
                free(s->params[i].key);
                free(s->params[i].value);
        }
        free(s->params);
        memset(s, 0, sizeof(*s));
}

bool par_signal_status_known(const char *status)
{
        for (size_t i = 0; statuses[i]; i++)
                if (!strcmp(status, statuses[i]))
                        return true;
        return false;
}

static bool name_valid_n(const char *s, size_t len, size_t max)
{
        if (len < 1 || len > max)
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c >= '0' && c <= '9') || c == '_' || c == '.' ||
                      c == '-'))
                        return false;
        }
        return true;
}

bool par_signal_name_valid(const char *name)
{
        return name && name_valid_n(name, strlen(name), PAR_SIGNAL_RECIPE_MAX);
}

static bool hex_run(const char *s, size_t n)
{
        bool nonzero = false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                        return false;
                if (c != '0')
                        nonzero = true;
        }
        return nonzero;
}

bool par_signal_traceparent_valid(const char *tp)
{
        /* 00-<trace-id 32>-<parent-id 16>-<flags 2> */
        if (!tp || strlen(tp) != PAR_SIGNAL_TRACEPARENT_LEN)
                return false;
        if (tp[0] != '0' || tp[1] != '0' || tp[2] != '-' || tp[35] != '-' ||
            tp[52] != '-')
                return false;
        return hex_run(tp + 3, 32) && hex_run(tp + 36, 16) &&
               (hex_run(tp + 53, 2) || (tp[53] == '0' && tp[54] == '0'));
}

const char *par_signal_doc_id(const bson_t *doc, char *buf, size_t n)
{
        bson_iter_t it;

        if (n == 0)
                return buf;
        snprintf(buf, n, "?");
        if (!doc || !bson_iter_init_find(&it, doc, "_id"))
                return buf;
        if (BSON_ITER_HOLDS_OID(&it) && n >= 25)
                bson_oid_to_string(bson_iter_oid(&it), buf);
        else if (BSON_ITER_HOLDS_UTF8(&it)) {
                uint32_t len;
                const char *v = bson_iter_utf8(&it, &len);
                par_text_clip(buf, n, v, len, n - 1, NULL);
        } else if (BSON_ITER_HOLDS_INT32(&it))
                snprintf(buf, n, "%d", bson_iter_int32(&it));
        else if (BSON_ITER_HOLDS_INT64(&it))
                snprintf(buf, n, "%lld", (long long)bson_iter_int64(&it));
        return buf;
}

/* A UTF-8 string value without embedded NULs, or false. */
static bool utf8_of(const bson_iter_t *it, const char **str, uint32_t *len)
{
        if (!BSON_ITER_HOLDS_UTF8(it))
                return false;
        *str = bson_iter_utf8(it, len);
        return bson_utf8_validate(*str, *len, false);
}

static char *dup_n(const char *s, size_t n)
{
        char *d = malloc(n + 1);
        if (d) {
                memcpy(d, s, n);
                d[n] = '\0';
        }
        return d;
}

static par_err_t push_param(par_signal_t *s, const char *k, size_t klen,
                            const char *v, size_t vlen, par_error_t *err)
{
        par_signal_param_t *p;
        char *kd, *vd;

        /* Grow by doubling: capacity is the next power of two >= n. */
        if ((s->n_params & (s->n_params - 1)) == 0) {
                size_t cap = s->n_params ? s->n_params * 2 : 4;
                p = realloc(s->params, cap * sizeof(*p));
                if (!p)
                        return par_error_set(err, PAR_ERR_NOMEM,
                                             "out of memory");
                s->params = p;
        }
        kd = dup_n(k, klen);
        vd = dup_n(v, vlen);
        if (!kd || !vd) {
                free(kd);
                free(vd);
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        }
        s->params[s->n_params].key = kd;
        s->params[s->n_params].value = vd;
        s->n_params++;
        return PAR_OK;
}

/* src for a reason: cut at a character boundary, with the cut marker
 * ("%.64s" cut inside a character, and the scrub in FAIL then left '?'s). */
static const char *clip(char *buf, size_t n, const char *src)
{
        par_text_clip(buf, n, src, strlen(src), n - 1, NULL);
        return buf;
}

par_err_t par_signal_add_param(par_signal_t *s, const char *key,
                               const char *value, par_error_t *err)
{
        size_t vlen = strlen(value);

        char qb[88];

        if (!par_signal_name_valid(key))
                return par_error_set(
                    err, PAR_ERR_INVALID,
                    "param name '%s' must match [A-Za-z0-9_.-]{1,64}",
                    clip(qb, sizeof(qb), key));
        if (!bson_utf8_validate(value, vlen, false))
                return par_error_set(err, PAR_ERR_INVALID,
                                     "param %s: value is not valid UTF-8", key);
        return push_param(s, key, strlen(key), value, vlen, err);
}

#define FAIL(...)                                                              \
        do {                                                                   \
                rc = par_error_set(err, PAR_ERR_INVALID, "signal %s: ", id);   \
                size_t used_ = strlen(err ? err->msg : "");                    \
                if (err)                                                       \
                        snprintf(err->msg + used_, sizeof(err->msg) - used_,   \
                                 __VA_ARGS__);                                 \
                if (err) /* "%.64s" may have split a character */              \
                        par_utf8_scrub(err->msg);                              \
                goto done;                                                     \
        } while (0)

static par_err_t parse_params(par_signal_t *s, const bson_iter_t *field,
                              const par_signal_limits_t *lim, const char *id,
                              par_error_t *err)
{
        bson_iter_t it;
        size_t total = 0;
        char qb[88];
        par_err_t rc = PAR_OK;

        if (!BSON_ITER_HOLDS_DOCUMENT(field) || !bson_iter_recurse(field, &it))
                FAIL("params must be an object of strings (got %s)",
                     type_name(bson_iter_type(field)));
        while (bson_iter_next(&it)) {
                const char *k = bson_iter_key(&it);
                size_t klen = strlen(k);
                const char *v;
                uint32_t vlen;

                if (!name_valid_n(k, klen, PAR_SIGNAL_PARAM_KEY_MAX))
                        FAIL("params: name '%s' must match "
                             "[A-Za-z0-9_.-]{1,64}",
                             clip(qb, sizeof(qb), k));
                if (!BSON_ITER_HOLDS_UTF8(&it))
                        FAIL("params.%s must be a string (got %s)", k,
                             type_name(bson_iter_type(&it)));
                if (!utf8_of(&it, &v, &vlen))
                        FAIL("params.%s is not valid UTF-8", k);
                total += klen + vlen;
                if (total > lim->max_params_bytes)
                        FAIL("params larger than %zu bytes",
                             lim->max_params_bytes);
                rc = push_param(s, k, klen, v, vlen, err);
                if (rc)
                        goto done;
        }
done:
        return rc;
}

static bool is_parallel_field(const char *k)
{
        for (size_t i = 0; parallel_fields[i]; i++)
                if (!strcmp(k, parallel_fields[i]))
                        return true;
        return false;
}

par_err_t par_signal_parse(par_signal_t *s, const bson_t *doc,
                           const par_signal_limits_t *lim, par_error_t *err)
{
        char id[64], qb[88];
        bson_iter_t it;
        unsigned seen = 0;
        par_err_t rc = PAR_OK;

        par_signal_clear(s);
        par_signal_doc_id(doc, id, sizeof(id));
        if (!bson_iter_init(&it, doc))
                FAIL("not a valid BSON document");
        while (bson_iter_next(&it)) {
                const char *k = bson_iter_key(&it);
                bson_type_t t = bson_iter_type(&it);
                unsigned bit = 0;
                const char *str;
                uint32_t len;

                if (!strcmp(k, "_id"))
                        bit = F_ID;
                else if (!strcmp(k, "priority"))
                        bit = F_PRIORITY;
                else if (!strcmp(k, "recipe"))
                        bit = F_RECIPE;
                else if (!strcmp(k, "resource"))
                        bit = F_RESOURCE;
                else if (!strcmp(k, "params"))
                        bit = F_PARAMS;
                else if (!strcmp(k, "created_at"))
                        bit = F_CREATED;
                else if (!strcmp(k, "expires_at"))
                        bit = F_EXPIRES;
                else if (!strcmp(k, "status"))
                        bit = F_STATUS;
                else if (!strcmp(k, "traceparent"))
                        bit = F_TRACE;
                else if (!strcmp(k, "attempt"))
                        bit = F_ATTEMPT;
                else if (is_parallel_field(k))
                        continue;
                else
                        FAIL("unknown field '%s'", clip(qb, 72, k));
                if (seen & bit)
                        FAIL("field '%s' appears twice", k);
                seen |= bit;

                switch (bit) {
                case F_ID:
                        if (t != BSON_TYPE_OID)
                                FAIL("_id must be an ObjectId (got %s)",
                                     type_name(t));
                        bson_oid_copy(bson_iter_oid(&it), &s->oid);
                        bson_oid_to_string(&s->oid, s->id);
                        break;
                case F_PRIORITY: {
                        int64_t p;
                        if (t == BSON_TYPE_INT32 || t == BSON_TYPE_INT64) {
                                p = bson_iter_as_int64(&it);
                        } else if (t == BSON_TYPE_DOUBLE) {
                                double d = bson_iter_double(&it);
                                if (!(d >= -1e9 && d <= 1e9) ||
                                    d != (double)(int64_t)d)
                                        FAIL("priority %g is not an integer",
                                             d);
                                p = (int64_t)d;
                        } else if (t == BSON_TYPE_UTF8) {
                                FAIL("priority must be an integer (got "
                                     "string \"%s\")",
                                     clip(qb, 40, bson_iter_utf8(&it, NULL)));
                        } else {
                                FAIL("priority must be an integer (got %s)",
                                     type_name(t));
                        }
                        if (p < 1 || p > lim->priority_levels)
                                FAIL("priority %lld out of range 1..%d",
                                     (long long)p, lim->priority_levels);
                        s->priority = (int)p;
                        break;
                }
                case F_RECIPE:
                        if (t != BSON_TYPE_UTF8)
                                FAIL("recipe must be a string (got %s)",
                                     type_name(t));
                        str = bson_iter_utf8(&it, &len);
                        if (!name_valid_n(str, len, PAR_SIGNAL_RECIPE_MAX) ||
                            strlen(str) != len)
                                FAIL("recipe '%s' must match "
                                     "[A-Za-z0-9_.-]{1,64}",
                                     clip(qb, sizeof(qb), str));
                        memcpy(s->recipe, str, len + 1);
                        break;
                case F_RESOURCE:
                        if (t == BSON_TYPE_NULL)
                                break; /* same as absent */
                        if (t != BSON_TYPE_UTF8)
                                FAIL("resource must be a string (got %s)",
                                     type_name(t));
                        if (!utf8_of(&it, &str, &len))
                                FAIL("resource is not valid UTF-8");
                        if (len == 0)
                                FAIL("resource must not be empty (omit it "
                                     "to default to the id)");
                        if (len > PAR_SIGNAL_RESOURCE_MAX)
                                FAIL("resource is %u bytes, more than %d", len,
                                     PAR_SIGNAL_RESOURCE_MAX);
                        memcpy(s->resource, str, len + 1);
                        s->has_resource = true;
                        break;
                case F_PARAMS:
                        if (t == BSON_TYPE_NULL)
                                break;
                        rc = parse_params(s, &it, lim, id, err);
                        if (rc)
                                goto done;
                        break;
                case F_CREATED:
                        if (t != BSON_TYPE_DATE_TIME)
                                FAIL("created_at must be a date (got %s)",
                                     type_name(t));
                        s->created_at = bson_iter_date_time(&it);
                        break;
                case F_EXPIRES:
                        if (t == BSON_TYPE_NULL)
                                break;
                        if (t != BSON_TYPE_DATE_TIME)
                                FAIL("expires_at must be a date (got %s)",
                                     type_name(t));
                        s->expires_at = bson_iter_date_time(&it);
                        break;
                case F_STATUS:
                        if (t != BSON_TYPE_UTF8)
                                FAIL("status must be a string (got %s)",
                                     type_name(t));
                        str = bson_iter_utf8(&it, &len);
                        if (len > PAR_SIGNAL_STATUS_MAX ||
                            !par_signal_status_known(str))
                                FAIL("status '%s' is not one of "
                                     "pending|claimed|done|failed|expired|"
                                     "rejected|dead",
                                     clip(qb, 40, str));
                        memcpy(s->status, str, len + 1);
                        break;
                case F_TRACE:
                        if (t == BSON_TYPE_NULL)
                                break;
                        str = t == BSON_TYPE_UTF8 ? bson_iter_utf8(&it, &len)
                                                  : NULL;
                        if (!par_signal_traceparent_valid(str))
                                FAIL("traceparent must be a W3C traceparent "
                                     "string (00-<32 hex>-<16 hex>-<2 hex>)");
                        memcpy(s->traceparent, str, len + 1);
                        break;
                case F_ATTEMPT: {
                        int64_t a;
                        if (t == BSON_TYPE_INT32 || t == BSON_TYPE_INT64)
                                a = bson_iter_as_int64(&it);
                        else if (t == BSON_TYPE_DOUBLE &&
                                 bson_iter_double(&it) ==
                                     (double)(int32_t)bson_iter_double(&it))
                                a = (int64_t)bson_iter_double(&it);
                        else
                                FAIL("attempt must be an integer (got %s)",
                                     type_name(t));
                        if (a < 0 || a > INT32_MAX)
                                FAIL("attempt %lld out of range", (long long)a);
                        s->attempt = (int32_t)a;
                        break;
                }
                }
        }

        if (!(seen & F_ID))
                FAIL("_id missing");
        if (!(seen & F_PRIORITY))
                FAIL("priority missing");
        if (!(seen & F_RECIPE))
                FAIL("recipe missing");
        if (!(seen & F_CREATED))
                FAIL("created_at missing");
        if (!(seen & F_STATUS))
                FAIL("status missing");
        if (s->expires_at && s->expires_at <= s->created_at)
                FAIL("expires_at is not after created_at");
        if (!s->has_resource)
                memcpy(s->resource, s->id, sizeof(s->id));
done:
        if (rc)
                par_signal_clear(s);
        return rc;
}

void par_signal_append_bson(const par_signal_t *s, bson_t *out)
{
        bson_t params;

        BSON_APPEND_OID(out, "_id", &s->oid);
        BSON_APPEND_INT32(out, "priority", s->priority);
        BSON_APPEND_UTF8(out, "recipe", s->recipe);
        if (s->has_resource)
                BSON_APPEND_UTF8(out, "resource", s->resource);
        BSON_APPEND_DOCUMENT_BEGIN(out, "params", &params);
        for (size_t i = 0; i < s->n_params; i++)
                BSON_APPEND_UTF8(&params, s->params[i].key, s->params[i].value);
        bson_append_document_end(out, &params);
        BSON_APPEND_DATE_TIME(out, "created_at", s->created_at);
        if (s->expires_at)
                BSON_APPEND_DATE_TIME(out, "expires_at", s->expires_at);
        BSON_APPEND_UTF8(out, "status",
                         s->status[0] ? s->status : PAR_SIGNAL_PENDING);
        if (s->traceparent[0])
                BSON_APPEND_UTF8(out, "traceparent", s->traceparent);
}

json_t *par_signal_to_json(const par_signal_t *s, const char *traceparent)
{
        json_t *o = json_object(), *params = json_object();
        int bad = !o || !params;

        for (size_t i = 0; !bad && i < s->n_params; i++)
                bad |= json_object_set_new(params, s->params[i].key,
                                           json_string(s->params[i].value));
        if (!bad)
                bad |= json_object_set_new(o, "params", params);
        else
                json_decref(params);
        if (!bad)
                bad |=
                    json_object_set_new(o, "id", json_string(s->id)) ||
                    json_object_set_new(o, "priority",
                                        json_integer(s->priority)) ||
                    json_object_set_new(o, "recipe", json_string(s->recipe)) ||
                    json_object_set_new(o, "resource",
                                        json_string(s->resource)) ||
                    json_object_set_new(o, "created_at",
                                        json_integer(s->created_at)) ||
                    json_object_set_new(o, "expires_at",
                                        s->expires_at
                                            ? json_integer(s->expires_at)
                                            : json_null()) ||
                    json_object_set_new(o, "attempt",
                                        json_integer(s->attempt)) ||
                    json_object_set_new(o, "traceparent",
                                        json_string(traceparent));
        if (bad) {
                json_decref(o);
                return NULL;
        }
        return o;
}
