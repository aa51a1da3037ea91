/*
 * codec.h — Avro encoding of every Kafka value Parallel writes.
 *
 * The contract is the schemas/ directory (compiled into the library). A codec
 * holds each schema parsed by avro-c together with its Parsing Canonical Form
 * and CRC-64-AVRO fingerprint, and converts between jansson values and framed
 * Avro binary:
 *
 *   single-object encoding (default, no registry):
 *       C3 01 | 8-byte little-endian CRC-64-AVRO fingerprint | Avro body
 *   Confluent wire format (when a schema registry is configured):
 *       00 | 4-byte big-endian registry schema id | Avro body
 *
 * Values are exchanged as jansson json_t using this mapping (which is Avro's
 * JSON encoding except that unions are written unwrapped, since every union
 * in our schemas is ["null", T]):
 *
 *   null → null; boolean → true/false; int, long → integer;
 *   float, double → real (integers accepted on encode); string → string;
 *   bytes, fixed → string whose code points U+0000..U+00FF are the bytes
 *       (Avro's JSON rule; build one with par_codec_json_bytes());
 *   enum → symbol string; array → array; map → object; record → object;
 *   union ["null", T] → null or the T value itself.
 *
 * On encode a record field missing from the object is taken as null when
 * its type is a union with null, as empty when it is a map or an array;
 * any other missing field, an unknown field, a wrong JSON type, an int out
 * of range or an unknown enum symbol is an error naming the field path
 * ("SpinResult.error.class: 'fatal' is not a symbol of ErrorClass").
 *
 * Decoding rejects, with a message saying which: input shorter than the
 * header, bad magic, an unknown fingerprint or schema id, a body that ends
 * early, a length or index out of range, invalid UTF-8 in a string, and
 * bytes left after the value. It never trusts a length from the input
 * before checking it against the bytes actually there.
 *
 * Typical use (any thread, codec shared):
 *
 *   json_t *v = json_pack("{s:s, s:s, s:s, s:i, s:I}", "node_id", node,
 *                         "worker_id", w, "state", "idle", "spins", 0, …);
 *   void *buf; size_t len;
 *   if (par_codec_encode(codec, PAR_SCHEMA_WORKER, v, &buf, &len, &err))
 *           …err.msg names the field…
 *   rd_kafka_producev(rk, …, RD_KAFKA_V_VALUE(buf, len),
 *                     RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), …);
 *   json_decref(v);
 *
 *   json_t *sig;
 *   if (par_codec_decode(codec, m->payload, m->len, PAR_SCHEMA_SIGNAL,
 *                        &sig, NULL, &err) == PAR_OK)
 *           … json_string_value(json_object_get(sig, "recipe")) …
 *
 * Threads: a codec is configured on one thread (par_codec_new, then any
 * par_codec_set_* calls) and afterwards only read: encode and decode may then
 * be called from any number of threads at once on the same codec (each call
 * builds its own avro-c value; avro-c's reference counts are atomic).
 */
#ifndef PAR_CODEC_H
#define PAR_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/err.h"

/* The schema sources embedded by cmake from the schemas/ .avsc files (file base
 * name, file text), terminated by {NULL, NULL}. */
extern const struct par_schema_src {
        const char *name;
        const char *text;
} par_schema_sources[];

/* Schema names as used by the API (the .avsc base names, which are also the
 * record names in namespace "io.parallel"). */
#define PAR_SCHEMA_SIGNAL  "Signal"
#define PAR_SCHEMA_RESULT  "SpinResult"
#define PAR_SCHEMA_METRICS "NodeMetrics"
#define PAR_SCHEMA_WORKER  "WorkerStatus"
#define PAR_SCHEMA_DLQ     "DeadLetter"

typedef struct par_codec par_codec_t;

typedef enum par_codec_framing {
        PAR_CODEC_SINGLE_OBJECT = 0, /* C3 01 + fingerprint (default) */
        PAR_CODEC_CONFLUENT = 1,     /* 00 + registry schema id */
} par_codec_framing_t;

/* Parses every embedded schema. Errors name the schema file. */
par_err_t par_codec_new(par_codec_t **out, par_error_t *err);
/* Accepts NULL. No encode/decode may be running. */
void par_codec_destroy(par_codec_t *codec);

/*
 * Registry seam (configuration thread only, before sharing the codec).
 *
 * par_codec_set_schema_id records the registry id of one of our schemas
 * (short or full name). Whoever talks to the registry registers
 * par_codec_schema_text() under its subject and passes the id it got back
 * here; this module does no HTTP. par_codec_set_framing selects what
 * par_codec_encode writes; PAR_CODEC_CONFLUENT requires an id for each
 * schema later encoded (encode fails with PAR_ERR_NOTFOUND otherwise).
 * Decoding accepts both framings regardless of this setting; a Confluent
 * id not set here fails with PAR_ERR_NOTFOUND (ids are not looked up).
 */
par_err_t par_codec_set_schema_id(par_codec_t *codec, const char *schema,
                                  int32_t id, par_error_t *err);
void par_codec_set_framing(par_codec_t *codec, par_codec_framing_t framing);
par_codec_framing_t par_codec_get_framing(const par_codec_t *codec);

/*
 * Encodes value (borrowed) as schema `schema` ("Signal", or full name
 * "io.parallel.Signal") with the codec's framing. On success *out is a
 * malloc'd buffer of *out_len bytes owned by the caller (free() it, or hand
 * it to rd_kafka_producev with RD_KAFKA_MSG_F_FREE). Any thread.
 */
par_err_t par_codec_encode(const par_codec_t *codec, const char *schema,
                           const json_t *value, void **out, size_t *out_len,
                           par_error_t *err);

/*
 * Decodes one framed value (either framing). When expect is non-NULL the
 * writer's schema must be that one (PAR_ERR_INVALID otherwise). On success
 * *out is a new reference the caller must json_decref, and *schema_name (if
 * non-NULL) is the writer schema's short name (static, owned by the codec).
 * Any thread.
 */
par_err_t par_codec_decode(const par_codec_t *codec, const void *data,
                           size_t len, const char *expect, json_t **out,
                           const char **schema_name, par_error_t *err);

/* Schema introspection, any thread; returned strings are owned by the codec.
 * par_codec_schema_name(codec, i) walks the schemas (NULL past the end);
 * the others return NULL / non-zero for an unknown name. */
const char *par_codec_schema_name(const par_codec_t *codec, size_t i);
const char *par_codec_schema_fullname(const par_codec_t *codec,
                                      const char *schema);
const char *par_codec_schema_text(const par_codec_t *codec, const char *schema);
const char *par_codec_schema_canonical(const par_codec_t *codec,
                                       const char *schema);
int par_codec_schema_fingerprint(const par_codec_t *codec, const char *schema,
                                 uint64_t *fingerprint);

/* The building blocks, exposed for tests and tools. Pure functions. */

/* CRC-64-AVRO (Rabin) of data, as the Avro specification defines it. */
uint64_t par_codec_crc64_avro(const void *data, size_t len);

/* The Parsing Canonical Form of a JSON schema text; *out is malloc'd. */
par_err_t par_codec_canonical_form(const char *schema_json, char **out,
                                   par_error_t *err);

/* bytes → the JSON string Avro uses for them (each byte one code point
 * U+0000..U+00FF). New reference, NULL only on allocation failure. */
json_t *par_codec_json_bytes(const void *data, size_t len);

/*
 * Sets the original-input fields of a DeadLetter object dl (borrowed):
 * "original" = the first max bytes of data (all of it when len <= max),
 * "original_length" = len, "original_sha256" = the hex SHA-256 of all len
 * bytes. When the input was cut and original_format is "json", it becomes
 * "raw" (a cut document is no longer JSON). A dead letter therefore stays
 * within a message however large the input was. PAR_ERR_NOMEM on
 * allocation failure. Any thread.
 */
par_err_t par_codec_dead_letter_original(json_t *dl, const void *data,
                                         size_t len, size_t max);

/* What a dead letter may carry of its original: a quarter of the value
 * limit, at most 64 KiB (room for the reason and the other fields). */
size_t par_codec_dead_letter_max(size_t value_max);
/* The inverse; *out is malloc'd (and NUL-terminated past *len). Fails on a
 * non-string or a code point above U+00FF. */
par_err_t par_codec_json_to_bytes(const json_t *s, void **out, size_t *len,
                                  par_error_t *err);

#endif
