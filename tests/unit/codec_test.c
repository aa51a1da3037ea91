/*
 * codec_test.c — the Avro contracts and their framing.
 *
 * Round trips every schema with realistic values (nulls, empty and big maps,
 * unicode, NUL bytes), checks fingerprints and a canonical form against
 * values computed independently by another Avro implementation, and feeds
 * the decoder truncated, garbage and bit-flipped input, which it must reject
 * (or decode) without crashing: run it in the sanitizer build too.
 *
 * CODEC_TEST_DUMP=<dir> writes each encoded round-trip sample to
 * <dir>/<Schema>-<n>.bin so another implementation can decode them
 * (docs/SCHEMAS.md shows how).
 */
#include <pthread.h>
#include <stdint.h>

#include "base/clock.h"
#include "msg/codec.h"
#include "testutil.h"

static par_codec_t *codec;

/*
 * Expected fingerprints: the 8 header bytes (little-endian CRC-64-AVRO of
 * the Parsing Canonical Form) as hex, computed with Python fastavro 1.13.1:
 *   from fastavro.schema import parse_schema, to_parsing_canonical_form, \
 *       fingerprint
 *   fingerprint(to_parsing_canonical_form(parse_schema(json.load(f))),
 *               "CRC-64-AVRO")
 * (the reference `avro` 1.12.2 package agrees except that it writes
 * logical-type longs as {"type":"long"}, against the spec's [PRIMITIVES]
 * rule, so its fingerprints of schemas with timestamps differ.)
 * A change here means the wire contract changed: update docs/SCHEMAS.md.
 */
static const struct {
        const char *name, *fp_hex;
} expected_fp[] = {
    {"DeadLetter", "2d8f9ceca554d0e3"},   {"NodeMetrics", "b12f050a9e4bc3b8"},
    {"Signal", "e13feb9c4d122169"},       {"SpinResult", "e643fec4c8d99f9b"},
    {"WorkerStatus", "06ec9adc8e9e8f80"},
};

/* fastavro's canonical form of schemas/Signal.avsc. */
static const char signal_canonical[] =
    "{\"name\":\"io.parallel.Signal\",\"type\":\"record\",\"fields\":["
    "{\"name\":\"id\",\"type\":\"string\"},"
    "{\"name\":\"priority\",\"type\":\"int\"},"
    "{\"name\":\"recipe\",\"type\":\"string\"},"
    "{\"name\":\"resource\",\"type\":\"string\"},"
    "{\"name\":\"params\",\"type\":{\"type\":\"map\",\"values\":\"string\"}},"
    "{\"name\":\"created_at\",\"type\":\"long\"},"
    "{\"name\":\"expires_at\",\"type\":[\"null\",\"long\"]},"
    "{\"name\":\"attempt\",\"type\":\"int\"},"
    "{\"name\":\"traceparent\",\"type\":\"string\"}]}";

static void hex(const unsigned char *b, size_t n, char *out)
{
        for (size_t i = 0; i < n; i++)
                sprintf(out + 2 * i, "%02x", b[i]);
}

static json_t *load(const char *text)
{
        json_error_t je;
        json_t *j = json_loads(text, JSON_ALLOW_NUL, &je);
        if (!j)
                fprintf(stderr, "bad test JSON: %s\n", je.text);
        return j;
}

static int dump_n;

/* Encodes v as schema, decodes it back and compares with expect (v when
 * NULL). Returns the encoding (caller frees) via out when non-NULL. */
static void roundtrip(const char *schema, json_t *v, json_t *expect, void **out,
                      size_t *out_len)
{
        par_error_t err = {0};
        void *buf = NULL;
        size_t len = 0;
        json_t *back = NULL;
        const char *name = NULL;
        const char *dir = getenv("CODEC_TEST_DUMP");

        CHECKF(par_codec_encode(codec, schema, v, &buf, &len, &err) == PAR_OK,
               "%s: %s", schema, err.msg);
        if (!buf)
                return;
        if (dir) {
                char path[512];
                FILE *f;
                snprintf(path, sizeof(path), "%s/%s-%d.bin", dir, schema,
                         dump_n++);
                if ((f = fopen(path, "wb"))) {
                        fwrite(buf, 1, len, f);
                        fclose(f);
                }
        }
        CHECKF(par_codec_decode(codec, buf, len, schema, &back, &name, &err) ==
                   PAR_OK,
               "%s: %s", schema, err.msg);
        CHECK_STR(name,
                  strrchr(schema, '.') ? strrchr(schema, '.') + 1 : schema);
        if (back) {
                char *a = json_dumps(expect ? expect : v, JSON_SORT_KEYS);
                char *b = json_dumps(back, JSON_SORT_KEYS);
                CHECKF(json_equal(expect ? expect : v, back),
                       "%s round trip:\n  in:  %.300s\n  out: %.300s", schema,
                       a, b);
                free(a);
                free(b);
        }
        json_decref(back);
        if (out) {
                *out = buf;
                *out_len = len;
        } else {
                free(buf);
        }
}

static void test_crc64_and_canonical(void)
{
        par_error_t err = {0};
        char *c = NULL;

        /* Values from the Avro specification's fingerprint section and the
         * Java implementation's test vectors. */
        CHECK(par_codec_crc64_avro("", 0) == 0xc15d213aa4d7a795ULL);
        CHECK(par_codec_crc64_avro("\"null\"", 6) == 0x63dd24e7cc258f8aULL);

        /* Namespaces, references, logical types, doc/default/aliases
         * stripped, attribute order fixed. */
        CHECK(par_codec_canonical_form(
                  "{\"doc\":\"d\",\"fields\":[{\"type\":{\"logicalType\":"
                  "\"timestamp-millis\",\"type\":\"long\"},\"name\":\"t\","
                  "\"default\":0,\"aliases\":[\"x\"]},{\"name\":\"e\","
                  "\"type\":{\"symbols\":[\"A\",\"B\"],\"name\":\"E\","
                  "\"type\":\"enum\"}},{\"name\":\"e2\",\"type\":[\"null\","
                  "\"E\"]},{\"name\":\"f\",\"type\":{\"type\":\"fixed\","
                  "\"size\":16,\"name\":\"other.F\"}},{\"name\":\"m\","
                  "\"type\":{\"type\":\"map\",\"values\":{\"type\":"
                  "\"array\",\"items\":\"F2\"}}}],\"namespace\":\"a.b\","
                  "\"type\":\"record\",\"name\":\"R\"}",
                  &c, &err) == PAR_OK);
        CHECK_STR(c, "{\"name\":\"a.b.R\",\"type\":\"record\",\"fields\":["
                     "{\"name\":\"t\",\"type\":\"long\"},"
                     "{\"name\":\"e\",\"type\":{\"name\":\"a.b.E\",\"type\":"
                     "\"enum\",\"symbols\":[\"A\",\"B\"]}},"
                     "{\"name\":\"e2\",\"type\":[\"null\",\"a.b.E\"]},"
                     "{\"name\":\"f\",\"type\":{\"name\":\"other.F\","
                     "\"type\":\"fixed\",\"size\":16}},"
                     "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":"
                     "{\"type\":\"array\",\"items\":\"a.b.F2\"}}}]}");
        free(c);
        c = NULL;
        CHECK(par_codec_canonical_form("{\"type\":\"int\"}", &c, &err) ==
              PAR_OK);
        CHECK_STR(c, "\"int\"");
        free(c);
        c = NULL;
        CHECK(par_codec_canonical_form("{\"type\":", &c, &err) ==
              PAR_ERR_INVALID);
        CHECK(par_codec_canonical_form("{\"type\":\"record\",\"name\":"
                                       "\"bad name\",\"fields\":[]}",
                                       &c, &err) == PAR_ERR_INVALID);
        CHECK(c == NULL);
}

static void test_fingerprints(void)
{
        size_t n = 0;

        while (par_codec_schema_name(codec, n))
                n++;
        CHECKF(n == sizeof(expected_fp) / sizeof(expected_fp[0]), "%zu schemas",
               n);
        CHECK_STR(par_codec_schema_canonical(codec, "Signal"),
                  signal_canonical);
        CHECK_STR(par_codec_schema_fullname(codec, "Signal"),
                  "io.parallel.Signal");
        CHECK(par_codec_schema_text(codec, "io.parallel.SpinResult") != NULL);
        CHECK(par_codec_schema_text(codec, "Nope") == NULL);
        for (size_t i = 0; i < sizeof(expected_fp) / sizeof(expected_fp[0]);
             i++) {
                uint64_t fp = 0;
                unsigned char le[8];
                char h[17];

                CHECK(par_codec_schema_fingerprint(codec, expected_fp[i].name,
                                                   &fp) == 0);
                for (int b = 0; b < 8; b++)
                        le[b] = (unsigned char)(fp >> (8 * b));
                hex(le, 8, h);
                CHECKF(!strcmp(h, expected_fp[i].fp_hex), "%s: %s != %s",
                       expected_fp[i].name, h, expected_fp[i].fp_hex);
        }
}

static const char *signal_json =
    "{\"id\":\"65a1f0c2e4b0a1b2c3d4e5f6\",\"priority\":4,"
    "\"recipe\":\"search-and-extract\",\"resource\":\"shop:42\","
    "\"params\":{\"query\":\"ключ \\\"значение\\\" 🚀\",\"page\":\"2\","
    "\"nul\":\"a\\u0000b\",\"\":\"empty key\"},"
    "\"created_at\":1795741200123,\"expires_at\":1795744800000,"
    "\"attempt\":0,"
    "\"traceparent\":\"00-4bf92f3577b34da6a3ce929d0e0e4736-"
    "00f067aa0ba902b7-01\"}";

static void test_signal(void)
{
        json_t *v = load(signal_json);
        json_t *big;
        void *buf = NULL;
        size_t len = 0;
        char h[21];

        REQUIRE(v);
        roundtrip("Signal", v, NULL, &buf, &len);
        REQUIRE(buf);
        /* C3 01 + the fingerprint's bytes. */
        hex(buf, 10, h);
        CHECK_STR(h, "c301e13feb9c4d122169");
        free(buf);

        /* expires_at null, empty params, and fields omitted: nullable →
         * null, map → empty. */
        json_object_set_new(v, "expires_at", json_null());
        json_object_set_new(v, "params", json_object());
        roundtrip("Signal", v, NULL, NULL, NULL);
        json_object_del(v, "expires_at");
        json_object_del(v, "params");
        {
                json_t *want = json_deep_copy(v);
                json_object_set_new(want, "expires_at", json_null());
                json_object_set_new(want, "params", json_object());
                roundtrip("Signal", v, want, NULL, NULL);
                json_decref(want);
        }

        /* Big params: 200 entries, one of 256 KiB. */
        big = json_object();
        for (int i = 0; i < 200; i++) {
                char k[16], val[64];
                snprintf(k, sizeof(k), "k%03d", i);
                snprintf(val, sizeof(val), "value %d ü", i);
                json_object_set_new(big, k, json_string(val));
        }
        {
                char *s = malloc(256 * 1024 + 1);
                memset(s, 'x', 256 * 1024);
                s[256 * 1024] = '\0';
                json_object_set_new(big, "blob", json_string(s));
                free(s);
        }
        json_object_set_new(v, "params", big);
        json_object_set_new(v, "expires_at", json_null());
        roundtrip("Signal", v, NULL, &buf, &len);
        CHECK(len > 256 * 1024);
        free(buf);
        json_decref(v);
}

static void test_result(void)
{
        json_t *done = load(
            "{\"signal_id\":\"65a1f0c2e4b0a1b2c3d4e5f6\",\"recipe\":\"r\","
            "\"resource\":\"shop:42\",\"priority\":2,\"status\":\"done\","
            "\"attempt\":1,\"node_id\":\"node-a\",\"worker_id\":\"w3\","
            "\"values\":{\"title\":\"Ünïcødé — 日本語\",\"price\":\"9.99\"},"
            "\"error\":null,"
            "\"steps\":[{\"type\":\"navigate\",\"duration_us\":153000},"
            "{\"type\":\"extract\",\"duration_us\":812}],"
            "\"created_at\":1795741200123,\"queued_at\":1795741200200,"
            "\"claimed_at\":1795741200250,\"started_at\":1795741200251,"
            "\"finished_at\":1795741200420,"
            "\"traceparent\":\"00-4bf92f3577b34da6a3ce929d0e0e4736-"
            "b7ad6b7169203331-01\"}");
        json_t *failed =
            load("{\"signal_id\":\"65a1f0c2e4b0a1b2c3d4e5f7\",\"recipe\":\"r\","
                 "\"resource\":\"65a1f0c2e4b0a1b2c3d4e5f7\",\"priority\":1,"
                 "\"status\":\"retrying\",\"attempt\":2,\"node_id\":\"n\","
                 "\"worker_id\":\"w0\",\"values\":{},"
                 "\"error\":{\"class\":\"transient\",\"code\":\"timeout\","
                 "\"message\":\"waitForElement #buy: 5000 ms\",\"step\":3},"
                 "\"steps\":[],\"created_at\":1,\"queued_at\":2,"
                 "\"claimed_at\":null,\"started_at\":null,\"finished_at\":-5,"
                 "\"traceparent\":\"\"}");

        REQUIRE(done && failed);
        roundtrip("SpinResult", done, NULL, NULL, NULL);
        roundtrip("SpinResult", failed, NULL, NULL, NULL);
        json_object_set_new(json_object_get(failed, "error"), "step",
                            json_null());
        roundtrip("io.parallel.SpinResult", failed, NULL, NULL, NULL);
        json_decref(done);
        json_decref(failed);
}

static void test_metrics(void)
{
        json_t *m = load(
            "{\"node_id\":\"node-a\",\"ts\":1795741200000,\"interval_ms\":5000,"
            "\"uptime_ms\":3600000,\"spins_done\":123456,\"spins_failed\":7,"
            "\"spins_retried\":3,\"spins_dead\":1,\"spins_expired\":0,"
            "\"spins_skipped\":2,\"throughput\":812.5,\"success_rate\":0.995,"
            "\"queues\":[{\"priority\":4,\"depth\":0,\"paused\":false},"
            "{\"priority\":1,\"depth\":5000,\"paused\":true}],"
            "\"wait\":{\"count\":4000,\"p50_ms\":1.25,\"p90_ms\":3.5,"
            "\"p99_ms\":12.75,\"max_ms\":40.0},"
            "\"spin\":{\"count\":4000,\"p50_ms\":150.0,\"p90_ms\":300.0,"
            "\"p99_ms\":900.0,\"max_ms\":2000.0},"
            "\"e2e\":{\"count\":0,\"p50_ms\":0.0,\"p90_ms\":0.0,"
            "\"p99_ms\":0.0,\"max_ms\":0.0},"
            "\"workers_busy\":7,\"workers_idle\":1,\"workers_total\":8,"
            "\"chrome_restarts\":2,\"rss_bytes\":104857600,"
            "\"chrome_rss_bytes\":null,\"consumer_lag\":9223372036854775807}");
        json_t *want;

        REQUIRE(m);
        roundtrip("NodeMetrics", m, NULL, NULL, NULL);
        /* Integers are accepted for doubles and come back as reals. */
        json_object_set_new(m, "throughput", json_integer(3));
        want = json_deep_copy(m);
        json_object_set_new(want, "throughput", json_real(3.0));
        roundtrip("NodeMetrics", m, want, NULL, NULL);
        json_decref(want);
        json_decref(m);
}

static void test_worker_and_dlq(void)
{
        json_t *w = load("{\"node_id\":\"node-a\",\"worker_id\":\"w1\","
                         "\"state\":\"busy\",\"signal_id\":\"65a1\","
                         "\"recipe\":\"r\",\"spins\":10,\"failures\":1,"
                         "\"since\":1795741200000,\"ts\":1795741200001,"
                         "\"chrome_pid\":4242}");
        json_t *d = load("{\"signal_id\":null,\"source\":\"consumer\","
                         "\"reason\":\"undecodable: bad magic byte 0x7B\","
                         "\"error_class\":\"permanent\",\"attempt\":0,"
                         "\"node_id\":\"node-a\",\"topic\":"
                         "\"parallel.signals.p3\",\"partition\":2,"
                         "\"offset\":123456789012,\"original_format\":"
                         "\"raw\",\"ts\":1795741200000,"
                         "\"traceparent\":null,\"original_length\":null,"
                         "\"original_sha256\":null}");
        unsigned char all[256];
        void *b = NULL;
        size_t n = 0;
        par_error_t err = {0};

        REQUIRE(w && d);
        roundtrip("WorkerStatus", w, NULL, NULL, NULL);
        json_object_set_new(w, "state", json_string("idle"));
        json_object_set_new(w, "signal_id", json_null());
        json_object_set_new(w, "recipe", json_null());
        json_object_set_new(w, "chrome_pid", json_null());
        roundtrip("WorkerStatus", w, NULL, NULL, NULL);

        /* Every byte value survives bytes ↔ JSON ↔ Avro. */
        for (int i = 0; i < 256; i++)
                all[i] = (unsigned char)(255 - i);
        json_object_set_new(d, "original", par_codec_json_bytes(all, 256));
        roundtrip("DeadLetter", d, NULL, NULL, NULL);
        CHECK(par_codec_json_to_bytes(json_object_get(d, "original"), &b, &n,
                                      &err) == PAR_OK);
        CHECK(n == 256 && b && !memcmp(b, all, 256));
        free(b);
        json_object_set_new(d, "original", par_codec_json_bytes("", 0));
        json_object_set_new(d, "signal_id", json_string("65a1"));
        json_object_set_new(d, "original_format", json_string("json"));
        roundtrip("DeadLetter", d, NULL, NULL, NULL);
        {
                json_t *s = json_string("→");
                b = NULL;
                CHECK(par_codec_json_to_bytes(s, &b, &n, &err) ==
                      PAR_ERR_INVALID);
                CHECK(b == NULL);
                json_decref(s);
        }
        json_decref(w);
        json_decref(d);
}

/* Encoding refuses values that do not fit the schema, naming the field. */
static void test_encode_errors(void)
{
        static const struct {
                const char *patch; /* merged into the valid signal */
                const char *msg;   /* expected in the error */
        } cases[] = {
            {"{\"priority\":\"4\"}", "Signal.priority: expected int"},
            {"{\"priority\":4294967296}", "does not fit an int"},
            {"{\"bogus\":1}", "unknown field 'bogus'"},
            {"{\"params\":{\"a\":1}}", "Signal.params.a: expected string"},
            {"{\"expires_at\":\"soon\"}", "matches no branch"},
            {"{\"recipe\":null}", "Signal.recipe: expected string"},
        };
        json_t *base = load(signal_json);
        par_error_t err = {0};
        void *buf = NULL;
        size_t len = 0;

        REQUIRE(base);
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                json_t *v = json_deep_copy(base);
                json_t *p = load(cases[i].patch);

                json_object_update(v, p);
                err.msg[0] = '\0';
                CHECKF(par_codec_encode(codec, "Signal", v, &buf, &len, &err) ==
                           PAR_ERR_INVALID,
                       "case %zu", i);
                CHECKF(strstr(err.msg, cases[i].msg), "case %zu: '%s'", i,
                       err.msg);
                json_decref(p);
                json_decref(v);
        }
        json_object_del(base, "recipe");
        CHECK(par_codec_encode(codec, "Signal", base, &buf, &len, &err) ==
              PAR_ERR_INVALID);
        CHECKF(strstr(err.msg, "Signal.recipe: missing field"), "%s", err.msg);
        json_decref(base);

        {
                json_t *r = load("{\"signal_id\":\"x\",\"recipe\":\"r\","
                                 "\"resource\":\"x\",\"priority\":1,"
                                 "\"status\":\"done\",\"attempt\":1,"
                                 "\"node_id\":\"n\",\"worker_id\":\"w\","
                                 "\"error\":{\"class\":\"fatal\","
                                 "\"code\":\"c\",\"message\":\"m\"},"
                                 "\"created_at\":1,\"queued_at\":1,"
                                 "\"finished_at\":1,\"traceparent\":\"t\"}");
                CHECK(par_codec_encode(codec, "SpinResult", r, &buf, &len,
                                       &err) == PAR_ERR_INVALID);
                CHECKF(strstr(err.msg, "SpinResult.error.class: 'fatal' is "
                                       "not a symbol of ErrorClass"),
                       "%s", err.msg);
                json_decref(r);
        }
        CHECK(par_codec_encode(codec, "Nope", NULL, &buf, &len, &err) ==
              PAR_ERR_NOTFOUND);
        CHECK(buf == NULL);
}

static void test_framing(void)
{
        json_t *v = load(signal_json);
        par_error_t err = {0};
        void *so = NULL, *cf = NULL;
        size_t so_len = 0, cf_len = 0;
        json_t *back = NULL;
        const char *name = NULL;
        par_codec_t *c2 = NULL;

        REQUIRE(v);
        REQUIRE(par_codec_new(&c2, &err) == PAR_OK);
        REQUIRE(par_codec_encode(c2, "Signal", v, &so, &so_len, &err) ==
                PAR_OK);

        /* Confluent needs an id; then 00 + big-endian id + the same body. */
        par_codec_set_framing(c2, PAR_CODEC_CONFLUENT);
        CHECK(par_codec_get_framing(c2) == PAR_CODEC_CONFLUENT);
        CHECK(par_codec_encode(c2, "Signal", v, &cf, &cf_len, &err) ==
              PAR_ERR_NOTFOUND);
        CHECK(par_codec_set_schema_id(c2, "Nope", 1, &err) == PAR_ERR_NOTFOUND);
        CHECK(par_codec_set_schema_id(c2, "io.parallel.Signal", 0x01020304,
                                      &err) == PAR_OK);
        REQUIRE(par_codec_encode(c2, "Signal", v, &cf, &cf_len, &err) ==
                PAR_OK);
        CHECK(cf_len == so_len - 5);
        CHECK(!memcmp(cf, "\x00\x01\x02\x03\x04", 5));
        CHECK(!memcmp((char *)cf + 5, (char *)so + 10, cf_len - 5));
        CHECK(par_codec_decode(c2, cf, cf_len, "Signal", &back, &name, &err) ==
              PAR_OK);
        CHECK(back && json_equal(back, v));
        json_decref(back);
        back = NULL;
        /* Both framings decode whatever the encode setting. */
        CHECK(par_codec_decode(c2, so, so_len, NULL, &back, NULL, &err) ==
              PAR_OK);
        json_decref(back);
        back = NULL;
        /* A codec that does not know the id refuses it by name. */
        CHECK(par_codec_decode(codec, cf, cf_len, NULL, &back, NULL, &err) ==
              PAR_ERR_NOTFOUND);
        CHECKF(strstr(err.msg, "registry schema id 16909060"), "%s", err.msg);
        /* A reader expecting another schema refuses. */
        CHECK(par_codec_decode(codec, so, so_len, "SpinResult", &back, NULL,
                               &err) == PAR_ERR_INVALID);
        CHECKF(strstr(err.msg, "expected a SpinResult, got a Signal"), "%s",
               err.msg);
        CHECK(back == NULL);

        free(so);
        free(cf);
        json_decref(v);
        par_codec_destroy(c2);
        par_codec_destroy(NULL);
}

/* Decoding b must fail with a message containing msg (when non-NULL). */
static void expect_reject(const void *b, size_t n, const char *what,
                          const char *msg)
{
        par_error_t err = {0};
        json_t *out = NULL;

        CHECKF(par_codec_decode(codec, b, n, NULL, &out, NULL, &err) != PAR_OK,
               "%s accepted", what);
        CHECKF(err.msg[0], "%s: no message", what);
        CHECKF(!msg || strstr(err.msg, msg), "%s: '%s' lacks '%s'", what,
               err.msg, msg);
        CHECK(out == NULL);
        json_decref(out);
}

static void test_reject(void)
{
        json_t *v = load(signal_json);
        void *good = NULL;
        size_t len = 0;
        par_error_t err = {0};
        unsigned char *b;
        json_t *out;
        int flips_ok = 0, flips_bad = 0;

        REQUIRE(v);
        REQUIRE(par_codec_encode(codec, "Signal", v, &good, &len, &err) ==
                PAR_OK);
        b = malloc(len + 16);

        /* Every proper prefix is rejected. */
        for (size_t n = 0; n < len; n++) {
                char what[64];
                /* A fresh buffer of exactly n bytes so ASan sees overreads. */
                unsigned char *p = malloc(n ? n : 1);
                memcpy(p, good, n);
                snprintf(what, sizeof(what), "prefix %zu/%zu", n, len);
                expect_reject(p, n, what, NULL);
                free(p);
        }
        expect_reject(NULL, 0, "empty", "empty value");
        expect_reject(good, 9, "short header", "truncated single-object");
        expect_reject(good, 20, "short body", "truncated body");

        /* Trailing bytes. */
        memcpy(b, good, len);
        b[len] = 0;
        expect_reject(b, len + 1, "trailing byte", "1 trailing bytes");

        /* Bad magic, unknown fingerprint. */
        memcpy(b, good, len);
        b[1] = 0x02;
        expect_reject(b, len, "magic C3 02", "bad magic C3 02");
        memcpy(b, good, len);
        b[0] = '{';
        expect_reject(b, len, "JSON", "bad magic byte 0x7B");
        memcpy(b, good, len);
        b[5] ^= 0x40;
        expect_reject(b, len, "fingerprint", "unknown schema fingerprint");

        /* A string claiming 2^62 bytes, a negative length, an enum and a
         * union index out of range, a 11-byte varint. */
        {
                unsigned char h[10];
                memcpy(h, good, 10);
                unsigned char huge[10 + 10] = {0};
                memcpy(huge, h, 10);
                memcpy(huge + 10, "\xfe\xff\xff\xff\xff\xff\xff\xff\x7f", 9);
                expect_reject(huge, 19, "huge string length",
                              "truncated body: string of");
                memcpy(huge + 10, "\x03", 1);
                expect_reject(huge, 11, "negative string length",
                              "negative string length -2");
                memset(huge + 10, 0xff, 10);
                expect_reject(huge, 20, "long varint", "varint longer");
        }

        /* Flip every bit: never crash; header flips must be rejected. */
        for (size_t i = 0; i < len * 8; i++) {
                memcpy(b, good, len);
                b[i / 8] ^= (unsigned char)(1u << (i % 8));
                out = NULL;
                if (par_codec_decode(codec, b, len, NULL, &out, NULL, &err) ==
                    PAR_OK) {
                        flips_ok++;
                        CHECKF(i >= 80, "header bit %zu flip accepted", i);
                        json_decref(out);
                } else {
                        flips_bad++;
                }
        }
        fprintf(stderr, "   bit flips: %d decoded, %d rejected\n", flips_ok,
                flips_bad);
        CHECK(flips_bad >= 80);

        /* Random garbage after a valid header of each schema. */
        srand(42);
        for (int round = 0; round < 2000; round++) {
                size_t n = 10 + (size_t)(rand() % 64);
                uint64_t fp = 0;
                par_codec_schema_fingerprint(codec, expected_fp[round % 5].name,
                                             &fp);
                b[0] = 0xC3;
                b[1] = 0x01;
                for (int k = 0; k < 8; k++)
                        b[2 + k] = (unsigned char)(fp >> (8 * k));
                for (size_t k = 10; k < n; k++)
                        b[k] = (unsigned char)rand();
                out = NULL;
                if (par_codec_decode(codec, b, n, NULL, &out, NULL, &err) ==
                    PAR_OK)
                        json_decref(out);
        }
        free(b);
        free(good);
        json_decref(v);
}

/* A map written as a block with a byte size (negative count), as other
 * Avro writers may do: accepted when the size is right, refused when not. */
static void test_sized_blocks(void)
{
        static const unsigned char body[] = {
            0x02, 'a',                   /* id "a" */
            0x08,                        /* priority 4 */
            0x02, 'r',  0x02, 'k',       /* recipe, resource */
            0x01, 0x08,                  /* params: 1 entry, 4 bytes */
            0x02, 'x',  0x02, 'y', 0x00, /* "x": "y", end of map */
            0x02,                        /* created_at 1 */
            0x00,                        /* expires_at null */
            0x00,                        /* attempt 0 */
            0x02, 't',                   /* traceparent "t" */
        };
        unsigned char b[10 + sizeof(body)];
        uint64_t fp = 0;
        json_t *out = NULL;
        par_error_t err = {0};

        par_codec_schema_fingerprint(codec, "Signal", &fp);
        b[0] = 0xC3;
        b[1] = 0x01;
        for (int k = 0; k < 8; k++)
                b[2 + k] = (unsigned char)(fp >> (8 * k));
        memcpy(b + 10, body, sizeof(body));
        CHECKF(par_codec_decode(codec, b, sizeof(b), "Signal", &out, NULL,
                                &err) == PAR_OK,
               "%s", err.msg);
        CHECK_STR(json_string_value(
                      json_object_get(json_object_get(out, "params"), "x")),
                  "y");
        json_decref(out);
        b[10 + 8] = 0x06; /* claims 3 bytes */
        expect_reject(b, sizeof(b), "bad block size", "says 3 bytes");
}

/* Many threads share one codec (as the consumer's workers do). */
static void *hammer(void *arg)
{
        json_t *v = load(signal_json);
        long bad = 0;

        for (int i = 0; i < 2000 && v; i++) {
                par_error_t err = {0};
                void *buf = NULL;
                size_t len = 0;
                json_t *back = NULL;

                json_object_set_new(v, "attempt", json_integer(i));
                if (par_codec_encode(codec, "Signal", v, &buf, &len, &err) ||
                    par_codec_decode(codec, buf, len, "Signal", &back, NULL,
                                     &err) ||
                    !json_equal(back, v))
                        bad++;
                json_decref(back);
                free(buf);
        }
        json_decref(v);
        *(long *)arg = v ? bad : -1;
        return NULL;
}

static void test_threads(void)
{
        pthread_t t[4];
        long bad[4];
        double t0 = par_clock_mono_s();

        for (int i = 0; i < 4; i++)
                pthread_create(&t[i], NULL, hammer, &bad[i]);
        for (int i = 0; i < 4; i++) {
                pthread_join(t[i], NULL);
                CHECKF(bad[i] == 0, "thread %d: %ld bad", i, bad[i]);
        }
        fprintf(stderr, "   8000 Signal encode+decode in %.3f s\n",
                par_clock_mono_s() - t0);
}

/* Dead letters carry a bounded prefix, the whole length and a hash. */
static void test_dead_letter_original(void)
{
        static char big[100000];
        json_t *d = json_pack("{s:s}", "original_format", "json");
        void *b = NULL;
        size_t n = 0;

        memset(big, 'x', sizeof(big));
        REQUIRE(!par_codec_dead_letter_original(d, big, sizeof(big), 1000));
        CHECK(json_integer_value(json_object_get(d, "original_length")) ==
              (json_int_t)sizeof(big));
        CHECK_STR(json_string_value(json_object_get(d, "original_format")),
                  "raw");
        CHECK(strlen(json_string_value(
                  json_object_get(d, "original_sha256"))) == 64);
        CHECK(!par_codec_json_to_bytes(json_object_get(d, "original"), &b, &n,
                                       NULL));
        CHECK(n == 1000);
        free(b);
        json_decref(d);
        d = json_pack("{s:s}", "original_format", "json");
        REQUIRE(!par_codec_dead_letter_original(d, "abc", 3, 1000));
        CHECK_STR(json_string_value(json_object_get(d, "original_format")),
                  "json");
        /* sha256("abc") */
        CHECK_STR(
            json_string_value(json_object_get(d, "original_sha256")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015"
            "ad");
        json_decref(d);
        CHECK(par_codec_dead_letter_max(995904) == 65536);
        CHECK(par_codec_dead_letter_max(100000) == 25000);
}

static int setup(void)
{
        par_error_t err = {0};

        if (par_codec_new(&codec, &err)) {
                fprintf(stderr, "codec: %s\n", err.msg);
                return 1;
        }
        return 0;
}

static void teardown(void)
{
        par_codec_destroy(codec);
}

TEST_MAIN_WITH(setup, teardown, test_crc64_and_canonical, test_fingerprints,
               test_signal, test_result, test_metrics, test_worker_and_dlq,
               test_dead_letter_original, test_encode_errors, test_framing,
               test_reject, test_sized_blocks, test_threads)
