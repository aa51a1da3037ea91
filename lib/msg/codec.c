/*
 * codec.c — framed Avro for Parallel's topics (see codec.h for the contract).
 *
 * Design:
 * - The schemas come from the table cmake embeds (par_schema_sources), so a
 *   binary always speaks the contract it was built with. Each is parsed once
 *   by avro-c; the codec then is read-only and shared by all threads. Every
 *   encode/decode builds its own generic avro-c value, so no per-thread state
 *   is needed.
 * - The Parsing Canonical Form is computed here from the schema's JSON text
 *   with jansson, because avro-c 1.11 has no canonical-form or fingerprint
 *   function (and drops logicalType, so its own JSON output differs anyway).
 *   CRC-64-AVRO is the bit-at-a-time form of the spec's table algorithm: it
 *   runs only when a codec is built.
 * - Before avro-c reads a body we walk it once against the schema (walk())
 *   checking every length, count, index and varint against the bytes really
 *   there. avro-c 1.11.1 allocates a string of whatever length the input
 *   claims before checking it, does not range-check enum indexes and cannot
 *   tell how many bytes it consumed; the walk turns all of those into clear
 *   errors (truncated, out of range, trailing bytes) instead of huge
 *   allocations or silent acceptance.
 * - JSON ↔ Avro goes through avro-c's generic values, driven by the value's
 *   own schema (avro-c resolves named-type links for us).
 * - avro-c keeps its last error message in one global buffer (libavro is
 *   built without thread-local storage), so concurrent failures could mix
 *   messages. Our own checks (types, ranges, the body walk) run before any
 *   avro-c call that could fail on bad input, so avro_strerror() only
 *   appears in messages for failures such as running out of memory.
 */
#include "msg/codec.h"

#include <openssl/sha.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <avro.h>

#define SO_MAGIC0 0xC3
#define SO_MAGIC1 0x01
#define SO_HEADER 10 /* C3 01 + 8-byte fingerprint */
#define CF_HEADER 5  /* 00 + 4-byte schema id */
#define MAX_DEPTH 32 /* nesting bound for walks over data and schemas */

struct codec_schema {
        const char *name; /* the .avsc base name (static) */
        const char *text; /* the .avsc text (static) */
        char *fullname;
        char *canonical;
        uint64_t fingerprint;
        int32_t registry_id;
        bool has_registry_id;
        avro_schema_t schema;
        avro_value_iface_t *iface;
};

struct par_codec {
        size_t n;
        struct codec_schema *schemas;
        par_codec_framing_t framing;
};

/* ------------------------------------------------------------------ */
/* CRC-64-AVRO and the Parsing Canonical Form                          */

uint64_t par_codec_crc64_avro(const void *data, size_t len)
{
        const uint64_t empty = 0xc15d213aa4d7a795ULL;
        const unsigned char *p = data;
        uint64_t fp = empty;

        for (size_t i = 0; i < len; i++) {
                fp ^= p[i];
                for (int b = 0; b < 8; b++)
                        fp = (fp >> 1) ^ (empty & (0 - (fp & 1)));
        }
        return fp;
}

static bool is_primitive(const char *t)
{
        static const char *const prims[] = {"null",  "boolean", "int",
                                            "long",  "float",   "double",
                                            "bytes", "string",  NULL};
        for (int i = 0; prims[i]; i++)
                if (!strcmp(t, prims[i]))
                        return true;
        return false;
}

/* Names, namespaces and symbols may only hold [A-Za-z0-9_.], so they are
 * written into the canonical form without escaping. */
static bool is_name(const char *s)
{
        if (!*s)
                return false;
        for (; *s; s++)
                if (!(*s == '_' || *s == '.' || (*s >= 'a' && *s <= 'z') ||
                      (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
                        return false;
        return true;
}

/* The full name of `name` in namespace ns ("" = none), into out. */
static par_err_t full_name(const char *name, const char *ns, char *out,
                           size_t size, par_error_t *err)
{
        int n;

        if (!is_name(name))
                return par_error_set(err, PAR_ERR_INVALID,
                                     "invalid schema name '%s'", name);
        if (strchr(name, '.') || !*ns)
                n = snprintf(out, size, "%s", name);
        else
                n = snprintf(out, size, "%s.%s", ns, name);
        if (n < 0 || (size_t)n >= size)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "schema name '%s' too long", name);
        return PAR_OK;
}

static par_err_t canon(FILE *o, const json_t *s, const char *ns, int depth,
                       par_error_t *err);

static par_err_t canon_named(FILE *o, const json_t *s, const char *type,
                             const char *ns, int depth, par_error_t *err)
{
        const char *name = json_string_value(json_object_get(s, "name"));
        const char *sns = json_string_value(json_object_get(s, "namespace"));
        char full[512], inner[512];
        par_err_t rc;

        if (!name)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "%s schema without a name", type);
        if ((rc = full_name(name, sns ? sns : ns, full, sizeof(full), err)))
                return rc;
        /* Types nested in this one default to its namespace. */
        snprintf(inner, sizeof(inner), "%s", full);
        *(strrchr(inner, '.') ? strrchr(inner, '.') : inner) = '\0';

        fprintf(o, "{\"name\":\"%s\",\"type\":\"%s\"", full, type);
        if (!strcmp(type, "record")) {
                const json_t *fields = json_object_get(s, "fields");
                size_t i;
                const json_t *f;

                if (!json_is_array(fields))
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "record %s: no fields array",
                                             full);
                fputs(",\"fields\":[", o);
                json_array_foreach(fields, i, f)
                {
                        const char *fn =
                            json_string_value(json_object_get(f, "name"));
                        if (!fn || !is_name(fn) || strchr(fn, '.'))
                                return par_error_set(
                                    err, PAR_ERR_INVALID,
                                    "record %s: field %zu has a bad name", full,
                                    i);
                        fprintf(o, "%s{\"name\":\"%s\",\"type\":", i ? "," : "",
                                fn);
                        if ((rc = canon(o, json_object_get(f, "type"), inner,
                                        depth + 1, err)))
                                return par_error_prefix(err, "%s.%s", full, fn);
                        fputc('}', o);
                }
                fputc(']', o);
        } else if (!strcmp(type, "enum")) {
                const json_t *syms = json_object_get(s, "symbols");
                size_t i;
                const json_t *y;

                if (!json_is_array(syms))
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "enum %s: no symbols", full);
                fputs(",\"symbols\":[", o);
                json_array_foreach(syms, i, y)
                {
                        const char *v = json_string_value(y);
                        if (!v || !is_name(v) || strchr(v, '.'))
                                return par_error_set(err, PAR_ERR_INVALID,
                                                     "enum %s: bad symbol",
                                                     full);
                        fprintf(o, "%s\"%s\"", i ? "," : "", v);
                }
                fputc(']', o);
        } else { /* fixed */
                const json_t *size = json_object_get(s, "size");
                if (!json_is_integer(size) || json_integer_value(size) < 0)
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "fixed %s: bad size", full);
                fprintf(o, ",\"size\":%lld",
                        (long long)json_integer_value(size));
        }
        fputc('}', o);
        return PAR_OK;
}

/* Writes the canonical form of schema s, whose enclosing namespace is ns. */
static par_err_t canon(FILE *o, const json_t *s, const char *ns, int depth,
                       par_error_t *err)
{
        par_err_t rc;

        if (depth > MAX_DEPTH)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "schema nested too deeply");
        if (json_is_string(s)) {
                const char *t = json_string_value(s);
                char full[512];

                if (is_primitive(t)) {
                        fprintf(o, "\"%s\"", t);
                        return PAR_OK;
                }
                /* A reference to a named type: written as its full name. */
                if ((rc = full_name(t, ns, full, sizeof(full), err)))
                        return rc;
                fprintf(o, "\"%s\"", full);
                return PAR_OK;
        }
        if (json_is_array(s)) {
                size_t i;
                const json_t *b;

                fputc('[', o);
                json_array_foreach(s, i, b)
                {
                        if (i)
                                fputc(',', o);
                        if ((rc = canon(o, b, ns, depth + 1, err)))
                                return rc;
                }
                fputc(']', o);
                return PAR_OK;
        }
        if (json_is_object(s)) {
                const json_t *type = json_object_get(s, "type");
                const char *t = json_string_value(type);

                if (!type)
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "schema object without type");
                if (!t) /* {"type": <schema>} */
                        return canon(o, type, ns, depth + 1, err);
                if (is_primitive(t)) { /* drops logicalType and the rest */
                        fprintf(o, "\"%s\"", t);
                        return PAR_OK;
                }
                if (!strcmp(t, "record") || !strcmp(t, "enum") ||
                    !strcmp(t, "fixed"))
                        return canon_named(o, s, t, ns, depth, err);
                if (!strcmp(t, "array") || !strcmp(t, "map")) {
                        const char *attr =
                            !strcmp(t, "array") ? "items" : "values";
                        const json_t *sub = json_object_get(s, attr);
                        if (!sub)
                                return par_error_set(err, PAR_ERR_INVALID,
                                                     "%s without %s", t, attr);
                        fprintf(o, "{\"type\":\"%s\",\"%s\":", t, attr);
                        if ((rc = canon(o, sub, ns, depth + 1, err)))
                                return rc;
                        fputc('}', o);
                        return PAR_OK;
                }
                /* A named-type reference written as {"type": "Name"}. */
                return canon(o, type, ns, depth + 1, err);
        }
        return par_error_set(err, PAR_ERR_INVALID,
                             "schema is not a string, "
                             "array or object");
}

par_err_t par_codec_canonical_form(const char *schema_json, char **out,
                                   par_error_t *err)
{
        json_error_t jerr;
        json_t *s = json_loads(schema_json, JSON_DECODE_ANY, &jerr);
        char *buf = NULL;
        size_t size = 0;
        FILE *o = NULL;
        par_err_t rc;

        if (!s)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "schema JSON line %d: %s", jerr.line,
                                     jerr.text);
        if (!(o = open_memstream(&buf, &size))) {
                rc = par_error_set(err, PAR_ERR_NOMEM, "open_memstream");
                goto out;
        }
        rc = canon(o, s, "", 0, err);
        if (fclose(o) != 0 && !rc)
                rc = par_error_set(err, PAR_ERR_NOMEM, "canonical form");
        if (!rc) {
                *out = buf;
                buf = NULL;
        }
out:
        free(buf);
        json_decref(s);
        return rc;
}

/* ------------------------------------------------------------------ */
/* Bytes as Avro JSON strings                                          */

json_t *par_codec_json_bytes(const void *data, size_t len)
{
        const unsigned char *p = data;
        char *u = malloc(2 * len + 1);
        size_t n = 0;
        json_t *s;

        if (!u)
                return NULL;
        for (size_t i = 0; i < len; i++) {
                if (p[i] < 0x80) {
                        u[n++] = (char)p[i];
                } else { /* U+0080..U+00FF in UTF-8 */
                        u[n++] = (char)(0xC0 | (p[i] >> 6));
                        u[n++] = (char)(0x80 | (p[i] & 0x3F));
                }
        }
        s = json_stringn(u, n);
        free(u);
        return s;
}

par_err_t par_codec_json_to_bytes(const json_t *s, void **out, size_t *len,
                                  par_error_t *err)
{
        const unsigned char *p;
        size_t n, k = 0;
        unsigned char *b;

        if (!json_is_string(s))
                return par_error_set(err, PAR_ERR_INVALID,
                                     "bytes must be a JSON string");
        p = (const unsigned char *)json_string_value(s);
        n = json_string_length(s);
        if (!(b = malloc(n + 1)))
                return par_error_set(err, PAR_ERR_NOMEM, "bytes");
        for (size_t i = 0; i < n; i++) {
                if (p[i] < 0x80) {
                        b[k++] = p[i];
                } else if ((p[i] == 0xC2 || p[i] == 0xC3) && i + 1 < n) {
                        b[k++] = (unsigned char)(((p[i] & 0x03) << 6) |
                                                 (p[i + 1] & 0x3F));
                        i++;
                } else {
                        free(b);
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "bytes string has a code point "
                                             "above U+00FF at offset %zu",
                                             i);
                }
        }
        b[k] = '\0';
        *out = b;
        *len = k;
        return PAR_OK;
}

/* ------------------------------------------------------------------ */
/* The codec object                                                    */

static struct codec_schema *find(const par_codec_t *c, const char *name)
{
        for (size_t i = 0; name && i < c->n; i++)
                if (!strcmp(c->schemas[i].name, name) ||
                    !strcmp(c->schemas[i].fullname, name))
                        return &c->schemas[i];
        return NULL;
}

static par_err_t load_schema(struct codec_schema *cs, par_error_t *err)
{
        const char *ns;
        par_err_t rc;

        if (avro_schema_from_json_length(cs->text, strlen(cs->text),
                                         &cs->schema))
                return par_error_set(err, PAR_ERR_INVALID, "schema %s: %s",
                                     cs->name, avro_strerror());
        if (!is_avro_record(cs->schema))
                return par_error_set(err, PAR_ERR_INVALID,
                                     "schema %s: top level is not a record",
                                     cs->name);
        ns = avro_schema_namespace(cs->schema);
        if (asprintf(&cs->fullname, "%s%s%s", ns && *ns ? ns : "",
                     ns && *ns ? "." : "", avro_schema_name(cs->schema)) < 0) {
                cs->fullname = NULL;
                return par_error_set(err, PAR_ERR_NOMEM, "schema name");
        }
        if ((rc = par_codec_canonical_form(cs->text, &cs->canonical, err)))
                return par_error_prefix(err, "schema %s", cs->name);
        cs->fingerprint =
            par_codec_crc64_avro(cs->canonical, strlen(cs->canonical));
        if (!(cs->iface = avro_generic_class_from_schema(cs->schema)))
                return par_error_set(err, PAR_ERR_INVALID, "schema %s: %s",
                                     cs->name, avro_strerror());
        return PAR_OK;
}

par_err_t par_codec_new(par_codec_t **out, par_error_t *err)
{
        par_codec_t *c = calloc(1, sizeof(*c));
        size_t n = 0;
        par_err_t rc;

        if (!c)
                return par_error_set(err, PAR_ERR_NOMEM, "codec");
        while (par_schema_sources[n].name)
                n++;
        if (!(c->schemas = calloc(n ? n : 1, sizeof(*c->schemas)))) {
                rc = par_error_set(err, PAR_ERR_NOMEM, "codec");
                goto fail;
        }
        for (size_t i = 0; i < n; i++) {
                struct codec_schema *cs = &c->schemas[c->n++];

                cs->name = par_schema_sources[i].name;
                cs->text = par_schema_sources[i].text;
                if ((rc = load_schema(cs, err)))
                        goto fail;
                for (size_t j = 0; j < i; j++)
                        if (c->schemas[j].fingerprint == cs->fingerprint) {
                                rc = par_error_set(
                                    err, PAR_ERR_INVALID,
                                    "schemas %s and %s have the same "
                                    "fingerprint",
                                    c->schemas[j].name, cs->name);
                                goto fail;
                        }
        }
        *out = c;
        return PAR_OK;
fail:
        par_codec_destroy(c);
        return rc;
}

void par_codec_destroy(par_codec_t *c)
{
        if (!c)
                return;
        for (size_t i = 0; i < c->n; i++) {
                struct codec_schema *cs = &c->schemas[i];
                if (cs->iface)
                        avro_value_iface_decref(cs->iface);
                if (cs->schema)
                        avro_schema_decref(cs->schema);
                free(cs->canonical);
                free(cs->fullname);
        }
        free(c->schemas);
        free(c);
}

par_err_t par_codec_set_schema_id(par_codec_t *c, const char *schema,
                                  int32_t id, par_error_t *err)
{
        struct codec_schema *cs = find(c, schema);

        if (!cs)
                return par_error_set(err, PAR_ERR_NOTFOUND,
                                     "unknown schema '%s'",
                                     schema ? schema : "(null)");
        if (id < 0)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "schema %s: registry id %d < 0", cs->name,
                                     (int)id);
        cs->registry_id = id;
        cs->has_registry_id = true;
        return PAR_OK;
}

void par_codec_set_framing(par_codec_t *c, par_codec_framing_t framing)
{
        c->framing = framing;
}

par_codec_framing_t par_codec_get_framing(const par_codec_t *c)
{
        return c->framing;
}

const char *par_codec_schema_name(const par_codec_t *c, size_t i)
{
        return i < c->n ? c->schemas[i].name : NULL;
}

const char *par_codec_schema_fullname(const par_codec_t *c, const char *s)
{
        const struct codec_schema *cs = find(c, s);
        return cs ? cs->fullname : NULL;
}

const char *par_codec_schema_text(const par_codec_t *c, const char *s)
{
        const struct codec_schema *cs = find(c, s);
        return cs ? cs->text : NULL;
}

const char *par_codec_schema_canonical(const par_codec_t *c, const char *s)
{
        const struct codec_schema *cs = find(c, s);
        return cs ? cs->canonical : NULL;
}

int par_codec_schema_fingerprint(const par_codec_t *c, const char *s,
                                 uint64_t *fingerprint)
{
        const struct codec_schema *cs = find(c, s);

        if (!cs)
                return -1;
        *fingerprint = cs->fingerprint;
        return 0;
}

/* ------------------------------------------------------------------ */
/* JSON → Avro                                                         */

/* A field path for error messages ("SpinResult.error.class", "…steps[2]"):
 * the walk pushes names and array indexes as it descends, and the text is
 * formatted only when an error needs it (formatting it at every field cost
 * a few percent of a node's CPU per signal). */
struct path {
        struct {
                const char *name; /* NULL: an array index */
                size_t idx;
        } seg[MAX_DEPTH + 8];
        size_t len; /* segments pushed (those past seg[] are not kept) */
        char buf[200];
};

#define PATH_SEGS                                                              \
        (sizeof(((struct path *)0)->seg) / sizeof(((struct path *)0)->seg[0]))

static size_t path_push(struct path *p, const char *name)
{
        if (p->len < PATH_SEGS)
                p->seg[p->len].name = name ? name : "?";
        return p->len++;
}

static size_t path_push_idx(struct path *p, size_t i)
{
        if (p->len < PATH_SEGS) {
                p->seg[p->len].name = NULL;
                p->seg[p->len].idx = i;
        }
        return p->len++;
}

static void path_pop(struct path *p, size_t old)
{
        p->len = old;
}

/* The path as text, in p->buf (cut to fit). */
static const char *path_str(struct path *p)
{
        size_t at = 0, n = p->len < PATH_SEGS ? p->len : PATH_SEGS;
        p->buf[0] = '\0';
        for (size_t i = 0; i < n && at < sizeof(p->buf) - 1; i++) {
                int w = p->seg[i].name
                            ? snprintf(p->buf + at, sizeof(p->buf) - at, "%s%s",
                                       i ? "." : "", p->seg[i].name)
                            : snprintf(p->buf + at, sizeof(p->buf) - at,
                                       "[%zu]", p->seg[i].idx);
                if (w < 0)
                        break;
                at += (size_t)w < sizeof(p->buf) - at ? (size_t)w
                                                      : sizeof(p->buf) - at - 1;
        }
        return p->buf;
}

static avro_schema_t deref(avro_schema_t s)
{
        while (s && is_avro_link(s))
                s = avro_schema_link_target(s);
        return s;
}

/* Whether a non-null JSON value could be an instance of schema s: picks the
 * branch of a union. */
static bool json_fits(const json_t *j, avro_schema_t s)
{
        switch (avro_typeof(deref(s))) {
        case AVRO_STRING:
        case AVRO_BYTES:
        case AVRO_ENUM:
        case AVRO_FIXED:
                return json_is_string(j);
        case AVRO_INT32:
        case AVRO_INT64:
                return json_is_integer(j);
        case AVRO_FLOAT:
        case AVRO_DOUBLE:
                return json_is_number(j);
        case AVRO_BOOLEAN:
                return json_is_boolean(j);
        case AVRO_NULL:
                return json_is_null(j);
        case AVRO_ARRAY:
                return json_is_array(j);
        case AVRO_MAP:
        case AVRO_RECORD:
                return json_is_object(j);
        default:
                return false;
        }
}

static int union_null_branch(avro_schema_t u)
{
        for (size_t i = 0; i < avro_schema_union_size(u); i++)
                if (is_avro_null(deref(avro_schema_union_branch(u, (int)i))))
                        return (int)i;
        return -1;
}

static par_err_t avro_fail(par_error_t *err, struct path *p, const char *what)
{
        return par_error_set(err, PAR_ERR_INVALID, "%s: %s: %s", path_str(p),
                             what, avro_strerror());
}

static par_err_t to_avro(avro_value_t *v, const json_t *j, struct path *p,
                         int depth, par_error_t *err);

static par_err_t record_to_avro(avro_value_t *v, avro_schema_t s,
                                const json_t *j, struct path *p, int depth,
                                par_error_t *err)
{
        const char *key;
        const json_t *jv;
        size_t nf = avro_schema_record_size(s);
        par_err_t rc;

        json_object_foreach((json_t *)j, key, jv)
        {
                if (avro_schema_record_field_get_index(s, key) < 0)
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "%s: unknown field '%s'",
                                             path_str(p), key);
        }
        for (size_t i = 0; i < nf; i++) {
                const char *fn = avro_schema_record_field_name(s, (int)i);
                avro_schema_t fs =
                    deref(avro_schema_record_field_get_by_index(s, (int)i));
                avro_value_t child, branch;
                size_t mark = path_push(p, fn);

                if (avro_value_get_by_index(v, i, &child, NULL))
                        return avro_fail(err, p, "field");
                jv = json_object_get(j, fn);
                if (jv) {
                        rc = to_avro(&child, jv, p, depth + 1, err);
                } else if (is_avro_union(fs) && union_null_branch(fs) >= 0) {
                        rc = avro_value_set_branch(
                                 &child, union_null_branch(fs), &branch)
                                 ? avro_fail(err, p, "branch")
                                 : PAR_OK;
                        if (!rc && avro_value_set_null(&branch))
                                rc = avro_fail(err, p, "null");
                } else if (is_avro_map(fs) || is_avro_array(fs)) {
                        rc = PAR_OK; /* a fresh value is empty */
                } else {
                        rc = par_error_set(err, PAR_ERR_INVALID,
                                           "%s: missing field", path_str(p));
                }
                if (rc)
                        return rc;
                path_pop(p, mark);
        }
        return PAR_OK;
}

static par_err_t to_avro(avro_value_t *v, const json_t *j, struct path *p,
                         int depth, par_error_t *err)
{
        avro_schema_t s = deref(avro_value_get_schema(v));
        avro_value_t child;
        par_err_t rc;

        if (depth > MAX_DEPTH)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "%s: nested too deeply", path_str(p));
        if (!json_fits(j, s) && !is_avro_union(s))
                return par_error_set(err, PAR_ERR_INVALID,
                                     "%s: expected %s, got a JSON %s",
                                     path_str(p), avro_schema_type_name(s),
                                     json_is_object(j)    ? "object"
                                     : json_is_array(j)   ? "array"
                                     : json_is_string(j)  ? "string"
                                     : json_is_integer(j) ? "integer"
                                     : json_is_real(j)    ? "real"
                                     : json_is_null(j)    ? "null"
                                                          : "boolean");
        switch (avro_typeof(s)) {
        case AVRO_STRING:
                /* avro-c string sizes count the terminating NUL. */
                if (avro_value_set_string_len(v, json_string_value(j),
                                              json_string_length(j) + 1))
                        return avro_fail(err, p, "string");
                return PAR_OK;
        case AVRO_BYTES:
        case AVRO_FIXED: {
                void *b;
                size_t n;

                if ((rc = par_codec_json_to_bytes(j, &b, &n, err)))
                        return par_error_prefix(err, "%s", path_str(p));
                if (is_avro_fixed(s) &&
                    (int64_t)n != avro_schema_fixed_size(s)) {
                        free(b);
                        return par_error_set(
                            err, PAR_ERR_INVALID,
                            "%s: fixed needs %lld bytes, "
                            "got %zu",
                            path_str(p), (long long)avro_schema_fixed_size(s),
                            n);
                }
                rc = is_avro_fixed(s) ? avro_value_set_fixed(v, b, n)
                                      : avro_value_set_bytes(v, b, n);
                free(b);
                return rc ? avro_fail(err, p, "bytes") : PAR_OK;
        }
        case AVRO_INT32: {
                json_int_t i = json_integer_value(j);
                if (i < INT32_MIN || i > INT32_MAX)
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "%s: %lld does not fit an int",
                                             path_str(p), (long long)i);
                return avro_value_set_int(v, (int32_t)i)
                           ? avro_fail(err, p, "int")
                           : PAR_OK;
        }
        case AVRO_INT64:
                return avro_value_set_long(v, json_integer_value(j))
                           ? avro_fail(err, p, "long")
                           : PAR_OK;
        case AVRO_FLOAT:
                return avro_value_set_float(v, (float)json_number_value(j))
                           ? avro_fail(err, p, "float")
                           : PAR_OK;
        case AVRO_DOUBLE:
                return avro_value_set_double(v, json_number_value(j))
                           ? avro_fail(err, p, "double")
                           : PAR_OK;
        case AVRO_BOOLEAN:
                return avro_value_set_boolean(v, json_is_true(j))
                           ? avro_fail(err, p, "boolean")
                           : PAR_OK;
        case AVRO_NULL:
                return avro_value_set_null(v) ? avro_fail(err, p, "null")
                                              : PAR_OK;
        case AVRO_ENUM: {
                int idx = avro_schema_enum_get_by_name(s, json_string_value(j));
                if (idx < 0)
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "%s: '%s' is not a symbol of %s",
                                             path_str(p), json_string_value(j),
                                             avro_schema_name(s));
                return avro_value_set_enum(v, idx) ? avro_fail(err, p, "enum")
                                                   : PAR_OK;
        }
        case AVRO_ARRAY: {
                size_t i;
                const json_t *item;
                json_array_foreach(j, i, item)
                {
                        size_t mark = path_push_idx(p, i);

                        if (avro_value_append(v, &child, NULL))
                                return avro_fail(err, p, "array");
                        if ((rc = to_avro(&child, item, p, depth + 1, err)))
                                return rc;
                        path_pop(p, mark);
                }
                return PAR_OK;
        }
        case AVRO_MAP: {
                const char *key;
                const json_t *item;

                json_object_foreach((json_t *)j, key, item)
                {
                        size_t mark = path_push(p, key);

                        if (avro_value_add(v, key, &child, NULL, NULL))
                                return avro_fail(err, p, "map");
                        if ((rc = to_avro(&child, item, p, depth + 1, err)))
                                return rc;
                        path_pop(p, mark);
                }
                return PAR_OK;
        }
        case AVRO_RECORD:
                return record_to_avro(v, s, j, p, depth, err);
        case AVRO_UNION: {
                size_t nb = avro_schema_union_size(s);

                for (size_t i = 0; i < nb; i++) {
                        if (!json_fits(j, avro_schema_union_branch(s, (int)i)))
                                continue;
                        if (avro_value_set_branch(v, (int)i, &child))
                                return avro_fail(err, p, "union");
                        return to_avro(&child, j, p, depth + 1, err);
                }
                return par_error_set(err, PAR_ERR_INVALID,
                                     "%s: value matches no branch of the "
                                     "union",
                                     path_str(p));
        }
        default:
                return par_error_set(err, PAR_ERR_INVALID,
                                     "%s: unsupported Avro type %s",
                                     path_str(p), avro_schema_type_name(s));
        }
}

par_err_t par_codec_encode(const par_codec_t *c, const char *schema,
                           const json_t *value, void **out, size_t *out_len,
                           par_error_t *err)
{
        const struct codec_schema *cs = find(c, schema);
        avro_value_t v;
        avro_writer_t w = NULL;
        struct path p = {.len = 0};
        size_t body = 0, hdr;
        unsigned char *buf = NULL;
        bool have_v = false;
        par_err_t rc;

        if (!cs)
                return par_error_set(err, PAR_ERR_NOTFOUND,
                                     "unknown schema '%s'",
                                     schema ? schema : "(null)");
        if (c->framing == PAR_CODEC_CONFLUENT && !cs->has_registry_id)
                return par_error_set(err, PAR_ERR_NOTFOUND,
                                     "schema %s has no registry id (Confluent "
                                     "framing needs par_codec_set_schema_id)",
                                     cs->name);
        if (!json_is_object(value))
                return par_error_set(err, PAR_ERR_INVALID,
                                     "%s: value must be a JSON object",
                                     cs->name);
        if (avro_generic_value_new(cs->iface, &v))
                return par_error_set(err, PAR_ERR_NOMEM, "%s: value: %s",
                                     cs->name, avro_strerror());
        have_v = true;
        path_push(&p, cs->name);
        if ((rc = to_avro(&v, value, &p, 0, err)))
                goto out;
        if (avro_value_sizeof(&v, &body)) {
                rc = avro_fail(err, &p, "size");
                goto out;
        }
        hdr = c->framing == PAR_CODEC_CONFLUENT ? CF_HEADER : SO_HEADER;
        if (!(buf = malloc(hdr + body + 1))) {
                rc = par_error_set(err, PAR_ERR_NOMEM, "%s: %zu bytes",
                                   cs->name, hdr + body);
                goto out;
        }
        if (c->framing == PAR_CODEC_CONFLUENT) {
                uint32_t id = (uint32_t)cs->registry_id;
                buf[0] = 0x00;
                for (int i = 0; i < 4; i++)
                        buf[1 + i] = (unsigned char)(id >> (24 - 8 * i));
        } else {
                buf[0] = SO_MAGIC0;
                buf[1] = SO_MAGIC1;
                for (int i = 0; i < 8; i++)
                        buf[2 + i] =
                            (unsigned char)(cs->fingerprint >> (8 * i));
        }
        if (!(w = avro_writer_memory((const char *)buf + hdr, (int64_t)body))) {
                rc = par_error_set(err, PAR_ERR_NOMEM, "%s: writer", cs->name);
                goto out;
        }
        if (avro_value_write(w, &v)) {
                rc = avro_fail(err, &p, "write");
                goto out;
        }
        *out = buf;
        *out_len = hdr + body;
        buf = NULL;
        rc = PAR_OK;
out:
        if (w)
                avro_writer_free(w);
        if (have_v)
                avro_value_decref(&v);
        free(buf);
        return rc;
}

/* ------------------------------------------------------------------ */
/* Checking a body against a schema before avro-c reads it              */

struct cursor {
        const unsigned char *p, *start, *end;
};

static par_err_t truncated(struct cursor *c, par_error_t *err)
{
        return par_error_set(err, PAR_ERR_INVALID,
                             "truncated body: value ends past byte %td of %td",
                             c->p - c->start, c->end - c->start);
}

static par_err_t walk_varint(struct cursor *c, int64_t *out, par_error_t *err)
{
        uint64_t v = 0;

        for (int shift = 0; shift < 70; shift += 7) {
                unsigned char b;

                if (c->p >= c->end)
                        return truncated(c, err);
                b = *c->p++;
                v |= (uint64_t)(b & 0x7F) << shift;
                if (!(b & 0x80)) {
                        *out = (int64_t)((v >> 1) ^ (0 - (v & 1)));
                        return PAR_OK;
                }
        }
        return par_error_set(err, PAR_ERR_INVALID,
                             "varint longer than 10 bytes at byte %td",
                             c->p - c->start);
}

static par_err_t walk_skip(struct cursor *c, int64_t n, const char *what,
                           par_error_t *err)
{
        if (n < 0)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "negative %s length %lld at byte %td",
                                     what, (long long)n, c->p - c->start);
        if (n > c->end - c->p)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "truncated body: %s of %lld bytes at "
                                     "byte %td, only %td left",
                                     what, (long long)n, c->p - c->start,
                                     c->end - c->p);
        c->p += n;
        return PAR_OK;
}

static par_err_t walk(struct cursor *c, avro_schema_t s, int depth,
                      par_error_t *err);

/* Arrays and maps: blocks of items, each block a count (negative: followed
 * by the block's byte size), ending with a count of 0. */
static par_err_t walk_blocks(struct cursor *c, avro_schema_t s, int depth,
                             par_error_t *err)
{
        avro_schema_t item = is_avro_map(s) ? avro_schema_map_values(s)
                                            : avro_schema_array_items(s);
        int64_t n, size, keylen;
        par_err_t rc;

        for (;;) {
                const unsigned char *block;

                if ((rc = walk_varint(c, &n, err)))
                        return rc;
                if (n == 0)
                        return PAR_OK;
                size = -1;
                if (n < 0) {
                        if (n == INT64_MIN)
                                return par_error_set(err, PAR_ERR_INVALID,
                                                     "bad block count at "
                                                     "byte %td",
                                                     c->p - c->start);
                        n = -n;
                        if ((rc = walk_varint(c, &size, err)))
                                return rc;
                        if (size < 0 || size > c->end - c->p)
                                return truncated(c, err);
                }
                /* Every item of our schemas takes at least one byte, so a
                 * count above the bytes left is a lie (and would make
                 * avro-c loop that many times). */
                if (n > c->end - c->p)
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "block of %lld items at byte %td "
                                             "but only %td bytes left",
                                             (long long)n, c->p - c->start,
                                             c->end - c->p);
                block = c->p;
                for (int64_t i = 0; i < n; i++) {
                        if (is_avro_map(s) &&
                            ((rc = walk_varint(c, &keylen, err)) ||
                             (rc = walk_skip(c, keylen, "map key", err))))
                                return rc;
                        if ((rc = walk(c, item, depth + 1, err)))
                                return rc;
                }
                if (size >= 0 && c->p - block != size)
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "block at byte %td says %lld "
                                             "bytes but holds %td",
                                             block - c->start, (long long)size,
                                             c->p - block);
        }
}

static par_err_t walk(struct cursor *c, avro_schema_t s, int depth,
                      par_error_t *err)
{
        int64_t n;
        par_err_t rc;

        s = deref(s);
        if (depth > MAX_DEPTH)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "value nested too deeply");
        switch (avro_typeof(s)) {
        case AVRO_NULL:
                return PAR_OK;
        case AVRO_BOOLEAN:
                if (c->p >= c->end)
                        return truncated(c, err);
                if (*c->p > 1)
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "boolean byte 0x%02x at byte %td",
                                             *c->p, c->p - c->start);
                c->p++;
                return PAR_OK;
        case AVRO_INT32:
                if ((rc = walk_varint(c, &n, err)))
                        return rc;
                if (n < INT32_MIN || n > INT32_MAX)
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "int out of range before byte "
                                             "%td",
                                             c->p - c->start);
                return PAR_OK;
        case AVRO_INT64:
                return walk_varint(c, &n, err);
        case AVRO_FLOAT:
                return walk_skip(c, 4, "float", err);
        case AVRO_DOUBLE:
                return walk_skip(c, 8, "double", err);
        case AVRO_STRING:
        case AVRO_BYTES:
                if ((rc = walk_varint(c, &n, err)))
                        return rc;
                return walk_skip(c, n, is_avro_string(s) ? "string" : "bytes",
                                 err);
        case AVRO_FIXED:
                return walk_skip(c, avro_schema_fixed_size(s), "fixed", err);
        case AVRO_ENUM:
                if ((rc = walk_varint(c, &n, err)))
                        return rc;
                if (n < 0 || n >= avro_schema_enum_number_of_symbols(s))
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "enum %s index %lld out of range "
                                             "before byte %td",
                                             avro_schema_name(s), (long long)n,
                                             c->p - c->start);
                return PAR_OK;
        case AVRO_UNION:
                if ((rc = walk_varint(c, &n, err)))
                        return rc;
                if (n < 0 || (uint64_t)n >= avro_schema_union_size(s))
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "union index %lld out of range "
                                             "before byte %td",
                                             (long long)n, c->p - c->start);
                return walk(c, avro_schema_union_branch(s, (int)n), depth + 1,
                            err);
        case AVRO_RECORD:
                for (size_t i = 0; i < avro_schema_record_size(s); i++)
                        if ((rc = walk(c,
                                       avro_schema_record_field_get_by_index(
                                           s, (int)i),
                                       depth + 1, err)))
                                return rc;
                return PAR_OK;
        case AVRO_ARRAY:
        case AVRO_MAP:
                return walk_blocks(c, s, depth, err);
        default:
                return par_error_set(err, PAR_ERR_INVALID,
                                     "unsupported Avro type %s",
                                     avro_schema_type_name(s));
        }
}

/* ------------------------------------------------------------------ */
/* Avro → JSON                                                         */

static par_err_t to_json(avro_value_t *v, json_t **out, struct path *p,
                         int depth, par_error_t *err)
{
        avro_schema_t s = deref(avro_value_get_schema(v));
        avro_value_t child;
        json_t *j = NULL;
        par_err_t rc;

        if (depth > MAX_DEPTH)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "%s: nested too deeply", path_str(p));
        switch (avro_typeof(s)) {
        case AVRO_STRING: {
                const char *str;
                size_t size;

                if (avro_value_get_string(v, &str, &size))
                        return avro_fail(err, p, "string");
                if (!(j = json_stringn(str, size ? size - 1 : 0)))
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "%s: string is not valid UTF-8",
                                             path_str(p));
                break;
        }
        case AVRO_BYTES:
        case AVRO_FIXED: {
                const void *b;
                size_t size;

                if (is_avro_fixed(s) ? avro_value_get_fixed(v, &b, &size)
                                     : avro_value_get_bytes(v, &b, &size))
                        return avro_fail(err, p, "bytes");
                j = par_codec_json_bytes(b, size);
                break;
        }
        case AVRO_INT32: {
                int32_t i;
                if (avro_value_get_int(v, &i))
                        return avro_fail(err, p, "int");
                j = json_integer(i);
                break;
        }
        case AVRO_INT64: {
                int64_t l;
                if (avro_value_get_long(v, &l))
                        return avro_fail(err, p, "long");
                j = json_integer(l);
                break;
        }
        case AVRO_FLOAT:
        case AVRO_DOUBLE: {
                float f;
                double d;

                if (is_avro_float(s) ? avro_value_get_float(v, &f)
                                     : avro_value_get_double(v, &d))
                        return avro_fail(err, p, "double");
                if (is_avro_float(s))
                        d = f;
                if (!isfinite(d))
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "%s: not a finite number",
                                             path_str(p));
                j = json_real(d);
                break;
        }
        case AVRO_BOOLEAN: {
                int b;
                if (avro_value_get_boolean(v, &b))
                        return avro_fail(err, p, "boolean");
                j = json_boolean(b);
                break;
        }
        case AVRO_NULL:
                j = json_null();
                break;
        case AVRO_ENUM: {
                int idx;
                const char *sym;

                if (avro_value_get_enum(v, &idx))
                        return avro_fail(err, p, "enum");
                if (!(sym = avro_schema_enum_get(s, idx)))
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "%s: enum index %d out of range",
                                             path_str(p), idx);
                j = json_string(sym);
                break;
        }
        case AVRO_UNION:
                if (avro_value_get_current_branch(v, &child))
                        return avro_fail(err, p, "union");
                return to_json(&child, out, p, depth + 1, err);
        case AVRO_ARRAY:
        case AVRO_MAP:
        case AVRO_RECORD: {
                size_t n;

                if (avro_value_get_size(v, &n))
                        return avro_fail(err, p, "size");
                j = is_avro_array(s) ? json_array() : json_object();
                if (!j)
                        break;
                for (size_t i = 0; i < n; i++) {
                        const char *name = NULL;
                        json_t *cj;
                        size_t mark;

                        if (avro_value_get_by_index(v, i, &child, &name)) {
                                json_decref(j);
                                return avro_fail(err, p, "item");
                        }
                        mark = is_avro_array(s) ? path_push_idx(p, i)
                                                : path_push(p, name);
                        if ((rc = to_json(&child, &cj, p, depth + 1, err))) {
                                json_decref(j);
                                return rc;
                        }
                        path_pop(p, mark);
                        if (is_avro_array(s)
                                ? json_array_append_new(j, cj)
                                : json_object_set_new(j, name, cj)) {
                                json_decref(j);
                                return par_error_set(err, PAR_ERR_INVALID,
                                                     "%s: bad key",
                                                     path_str(p));
                        }
                }
                break;
        }
        default:
                return par_error_set(err, PAR_ERR_INVALID,
                                     "%s: unsupported Avro type %s",
                                     path_str(p), avro_schema_type_name(s));
        }
        if (!j)
                return par_error_set(err, PAR_ERR_NOMEM, "%s", path_str(p));
        *out = j;
        return PAR_OK;
}

static par_err_t unframe(const par_codec_t *c, const unsigned char *d,
                         size_t len, const struct codec_schema **cs,
                         size_t *hdr, par_error_t *err)
{
        if (len == 0)
                return par_error_set(err, PAR_ERR_INVALID, "empty value");
        if (d[0] == SO_MAGIC0) {
                uint64_t fp = 0;

                if (len < SO_HEADER)
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "truncated single-object header "
                                             "(%zu of %d bytes)",
                                             len, SO_HEADER);
                if (d[1] != SO_MAGIC1)
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "bad magic C3 %02X (expected C3 "
                                             "01)",
                                             d[1]);
                for (int i = 0; i < 8; i++)
                        fp |= (uint64_t)d[2 + i] << (8 * i);
                for (size_t i = 0; i < c->n; i++)
                        if (c->schemas[i].fingerprint == fp) {
                                *cs = &c->schemas[i];
                                *hdr = SO_HEADER;
                                return PAR_OK;
                        }
                return par_error_set(err, PAR_ERR_NOTFOUND,
                                     "unknown schema fingerprint %016llx",
                                     (unsigned long long)fp);
        }
        if (d[0] == 0x00) {
                int32_t id;

                if (len < CF_HEADER)
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "truncated Confluent header "
                                             "(%zu of %d bytes)",
                                             len, CF_HEADER);
                id = (int32_t)((uint32_t)d[1] << 24 | (uint32_t)d[2] << 16 |
                               (uint32_t)d[3] << 8 | d[4]);
                for (size_t i = 0; i < c->n; i++)
                        if (c->schemas[i].has_registry_id &&
                            c->schemas[i].registry_id == id) {
                                *cs = &c->schemas[i];
                                *hdr = CF_HEADER;
                                return PAR_OK;
                        }
                return par_error_set(err, PAR_ERR_NOTFOUND,
                                     "unknown registry schema id %d (ids are "
                                     "not looked up in the registry)",
                                     (int)id);
        }
        return par_error_set(err, PAR_ERR_INVALID,
                             "bad magic byte 0x%02X (expected C3 01 "
                             "single-object or 00 Confluent framing)",
                             d[0]);
}

par_err_t par_codec_decode(const par_codec_t *c, const void *data, size_t len,
                           const char *expect, json_t **out,
                           const char **schema_name, par_error_t *err)
{
        const unsigned char *d = data;
        const struct codec_schema *cs = NULL;
        struct cursor cur;
        struct path p = {.len = 0};
        avro_reader_t r = NULL;
        avro_value_t v;
        bool have_v = false;
        size_t hdr = 0;
        json_t *j = NULL;
        par_err_t rc;

        if (!d && len)
                return par_error_set(err, PAR_ERR_INVALID, "NULL data");
        if ((rc = unframe(c, d, len, &cs, &hdr, err)))
                return rc;
        if (expect && strcmp(expect, cs->name) && strcmp(expect, cs->fullname))
                return par_error_set(err, PAR_ERR_INVALID,
                                     "expected a %s, got a %s", expect,
                                     cs->name);
        cur.start = cur.p = d + hdr;
        cur.end = d + len;
        if ((rc = walk(&cur, cs->schema, 0, err)))
                return par_error_prefix(err, "%s", cs->name);
        if (cur.p != cur.end)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "%s: %td trailing bytes after the value",
                                     cs->name, cur.end - cur.p);
        if (!(r = avro_reader_memory((const char *)d + hdr,
                                     (int64_t)(len - hdr))))
                return par_error_set(err, PAR_ERR_NOMEM, "reader");
        if (avro_generic_value_new(cs->iface, &v)) {
                rc = par_error_set(err, PAR_ERR_NOMEM, "value");
                goto out;
        }
        have_v = true;
        path_push(&p, cs->name);
        if (avro_value_read(r, &v)) {
                rc = avro_fail(err, &p, "read");
                goto out;
        }
        if ((rc = to_json(&v, &j, &p, 0, err)))
                goto out;
        *out = j;
        if (schema_name)
                *schema_name = cs->name;
out:
        if (have_v)
                avro_value_decref(&v);
        avro_reader_free(r);
        return rc;
}

par_err_t par_codec_dead_letter_original(json_t *dl, const void *data,
                                         size_t len, size_t max)
{
        unsigned char md[SHA256_DIGEST_LENGTH];
        char hex[2 * SHA256_DIGEST_LENGTH + 1];
        bool cut = len > max;

        SHA256(data ? data : (const void *)"", len, md);
        for (size_t i = 0; i < sizeof(md); i++)
                snprintf(hex + 2 * i, 3, "%02x", md[i]);
        if (json_object_set_new(dl, "original",
                                par_codec_json_bytes(data, cut ? max : len)) ||
            json_object_set_new(dl, "original_length",
                                json_integer((json_int_t)len)) ||
            json_object_set_new(dl, "original_sha256", json_string(hex)))
                return PAR_ERR_NOMEM;
        if (cut && json_is_string(json_object_get(dl, "original_format")) &&
            !strcmp(json_string_value(json_object_get(dl, "original_format")),
                    "json") &&
            json_object_set_new(dl, "original_format", json_string("raw")))
                return PAR_ERR_NOMEM;
        return PAR_OK;
}

size_t par_codec_dead_letter_max(size_t value_max)
{
        size_t m = value_max / 4;
        return m > 65536 ? 65536 : m;
}
