/*
 * signal_test.c — the signal validator accepts good documents and rejects
 * each kind of malformed one with a reason naming the signal and the field.
 */
#include <stdlib.h>
#include <string.h>

#include "base/text.h"
#include "store/signal.h"
#include "testutil.h"

#define OID "65a1b2c3d4e5f60718293a4b"
#define GOOD_HEAD                                                              \
        "{\"_id\": {\"$oid\": \"" OID "\"}, \"created_at\": {\"$date\": "      \
        "\"2026-11-27T00:00:00Z\"}, \"status\": \"pending\""

static par_signal_limits_t lim;

static bson_t *doc_of(const char *json)
{
        bson_error_t e;
        bson_t *b = bson_new_from_json((const uint8_t *)json, -1, &e);
        if (!b)
                fprintf(stderr, "bad test JSON (%s): %s\n", e.message, json);
        return b;
}

/* Parses json; returns the error message ("" when valid). */
static const char *verdict(const char *json, par_signal_t *s)
{
        static par_error_t err;
        bson_t *b = doc_of(json);

        memset(&err, 0, sizeof(err));
        if (!b)
                return "bad test JSON";
        if (!par_signal_parse(s, b, &lim, &err))
                err.msg[0] = '\0';
        bson_destroy(b);
        return err.msg;
}

static void test_valid(void)
{
        par_signal_t s;
        const char *why;

        par_signal_init(&s);
        why = verdict(GOOD_HEAD ", \"priority\": 4, \"recipe\": \"login.v2\","
                                " \"resource\": \"acct-7\", \"params\": "
                                "{\"user\": \"ann\", \"q\": \"x y\"}, "
                                "\"expires_at\": {\"$date\": "
                                "\"2026-11-28T00:00:00Z\"}}",
                      &s);
        CHECK_STR(why, "");
        CHECK_STR(s.id, OID);
        CHECK(s.priority == 4);
        CHECK_STR(s.recipe, "login.v2");
        CHECK_STR(s.resource, "acct-7");
        CHECK(s.has_resource);
        REQUIRE(s.n_params == 2);
        CHECK_STR(s.params[0].key, "user");
        CHECK_STR(s.params[1].value, "x y");
        CHECK(s.created_at == 1795737600000LL);
        CHECK(s.expires_at == 1795737600000LL + 86400000LL);
        CHECK_STR(s.status, "pending");
        par_signal_clear(&s);

        /* Minimal: resource defaults to the id; doubles that are integers
         * (what the mongo shell writes) are accepted; Parallel's fields are
         * allowed. */
        why = verdict(GOOD_HEAD ", \"priority\": 1.0, \"recipe\": \"noop\", "
                                "\"attempt\": 2, \"claimed_by\": \"n1/w3\", "
                                "\"lease_until\": {\"$date\": "
                                "\"2026-11-27T00:01:00Z\"}, \"error\": null}",
                      &s);
        CHECK_STR(why, "");
        CHECK(s.priority == 1);
        CHECK_STR(s.resource, OID);
        CHECK(!s.has_resource);
        CHECK(s.attempt == 2);
        CHECK(s.n_params == 0);
        par_signal_clear(&s);
}

static void test_roundtrip(void)
{
        par_signal_t a, b;
        par_error_t err;
        bson_t doc = BSON_INITIALIZER;
        json_t *j;

        par_signal_init(&a);
        par_signal_init(&b);
        bson_oid_init(&a.oid, NULL);
        a.priority = 3;
        strcpy(a.recipe, "search");
        strcpy(a.resource, "r1");
        a.has_resource = true;
        a.created_at = 1000;
        a.expires_at = 5000;
        CHECK(par_signal_add_param(&a, "q", "café", &err) == PAR_OK);
        CHECK(par_signal_add_param(&a, "bad key", "x", &err) ==
              PAR_ERR_INVALID);
        par_signal_append_bson(&a, &doc);
        CHECKF(par_signal_parse(&b, &doc, &lim, &err) == PAR_OK, "%s", err.msg);
        CHECK(b.priority == 3 && b.expires_at == 5000 && b.n_params == 1);
        CHECK_STR(b.status, "pending");
        CHECK_STR(b.resource, "r1");
        j = par_signal_to_json(&b, "00-0af7651916cd43dd8448eb211c80319c-"
                                   "b7ad6b7169203331-01");
        REQUIRE(j);
        CHECK(json_integer_value(json_object_get(j, "priority")) == 3);
        CHECK_STR(json_string_value(
                      json_object_get(json_object_get(j, "params"), "q")),
                  "café");
        CHECK(json_integer_value(json_object_get(j, "expires_at")) == 5000);
        json_decref(j);
        bson_destroy(&doc);
        par_signal_clear(&a);
        par_signal_clear(&b);
}

static void test_traceparent(void)
{
        CHECK(par_signal_traceparent_valid(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        CHECK(!par_signal_traceparent_valid(
            "00-00000000000000000000000000000000-b7ad6b7169203331-01"));
        CHECK(!par_signal_traceparent_valid(
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"));
        CHECK(!par_signal_traceparent_valid("00-abc"));
        CHECK(!par_signal_traceparent_valid(NULL));
}

/* One malformed document and a fragment its reason must contain. */
static const struct {
        const char *body; /* a whole document ("{…") or GOOD_HEAD's tail */
        const char *reason;
} bad[] = {
    {", \"recipe\": \"noop\"}", "priority missing"},
    {", \"priority\": 0, \"recipe\": \"noop\"}",
     "priority 0 out of range 1..4"},
    {", \"priority\": 5, \"recipe\": \"noop\"}",
     "priority 5 out of range 1..4"},
    {", \"priority\": -1, \"recipe\": \"noop\"}",
     "priority -1 out of range 1..4"},
    {", \"priority\": \"high\", \"recipe\": \"noop\"}",
     "priority must be an integer (got string \"high\")"},
    {", \"priority\": 2.5, \"recipe\": \"noop\"}",
     "priority 2.5 is not an integer"},
    {", \"priority\": null, \"recipe\": \"noop\"}",
     "priority must be an integer (got null)"},
    {", \"priority\": true, \"recipe\": \"noop\"}",
     "priority must be an integer (got bool)"},
    {", \"priority\": 2}", "recipe missing"},
    {", \"priority\": 2, \"recipe\": \"\"}", "recipe '' must match"},
    {", \"priority\": 2, \"recipe\": \"../etc/passwd\"}",
     "recipe '../etc/passwd' must match"},
    {", \"priority\": 2, \"recipe\": "
     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
     "must match [A-Za-z0-9_.-]{1,64}"},
    {", \"priority\": 2, \"recipe\": 42}", "recipe must be a string (got "
                                           "int32)"},
    {", \"priority\": 2, \"recipe\": \"noop\", \"resource\": 17}",
     "resource must be a string (got int32)"},
    {", \"priority\": 2, \"recipe\": \"noop\", \"resource\": \"\"}",
     "resource must not be empty"},
    {", \"priority\": 2, \"recipe\": \"noop\", \"params\": \"a=b\"}",
     "params must be an object of strings (got string)"},
    {", \"priority\": 2, \"recipe\": \"noop\", \"params\": [\"a\"]}",
     "params must be an object of strings (got array)"},
    {", \"priority\": 2, \"recipe\": \"noop\", \"params\": {\"n\": 3}}",
     "params.n must be a string (got int32)"},
    {", \"priority\": 2, \"recipe\": \"noop\", \"params\": {\"o\": {\"x\": "
     "\"y\"}}}",
     "params.o must be a string (got object)"},
    {", \"priority\": 2, \"recipe\": \"noop\", \"params\": {\"a b\": \"y\"}}",
     "params: name 'a b' must match"},
    {", \"priority\": 2, \"recipe\": \"noop\", \"params\": {\"$where\": "
     "\"y\"}}",
     "params: name '$where' must match"},
    {"{\"_id\": {\"$oid\": \"" OID "\"}, \"priority\": 2, \"recipe\": "
     "\"noop\", \"status\": \"pending\"}",
     "created_at missing"},
    {"{\"_id\": {\"$oid\": \"" OID "\"}, \"priority\": 2, \"recipe\": "
     "\"noop\", \"status\": \"pending\", \"created_at\": \"yesterday\"}",
     "created_at must be a date (got string)"},
    {"{\"_id\": {\"$oid\": \"" OID "\"}, \"priority\": 2, \"recipe\": "
     "\"noop\", \"status\": \"pending\", \"created_at\": 1700000000000}",
     "created_at must be a date (got int64)"},
    {", \"priority\": 2, \"recipe\": \"noop\", \"expires_at\": \"soon\"}",
     "expires_at must be a date (got string)"},
    {", \"priority\": 2, \"recipe\": \"noop\", \"expires_at\": {\"$date\": "
     "\"2026-11-26T00:00:00Z\"}}",
     "expires_at is not after created_at"},
    {"{\"_id\": {\"$oid\": \"" OID "\"}, \"priority\": 2, \"recipe\": "
     "\"noop\", \"created_at\": {\"$date\": \"2026-11-27T00:00:00Z\"}}",
     "status missing"},
    {"{\"_id\": {\"$oid\": \"" OID "\"}, \"priority\": 2, \"recipe\": "
     "\"noop\", \"created_at\": {\"$date\": \"2026-11-27T00:00:00Z\"}, "
     "\"status\": \"bogus\"}",
     "status 'bogus' is not one of"},
    {"{\"_id\": {\"$oid\": \"" OID "\"}, \"priority\": 2, \"recipe\": "
     "\"noop\", \"created_at\": {\"$date\": \"2026-11-27T00:00:00Z\"}, "
     "\"status\": 1}",
     "status must be a string (got int32)"},
    {", \"priority\": 2, \"recipe\": \"noop\", \"color\": \"red\"}",
     "unknown field 'color'"},
    {", \"priorty\": 2, \"recipe\": \"noop\"}", "unknown field 'priorty'"},
    {"{\"_id\": 5, \"priority\": 2, \"recipe\": \"noop\", \"created_at\": "
     "{\"$date\": \"2026-11-27T00:00:00Z\"}, \"status\": \"pending\"}",
     "signal 5: _id must be an ObjectId (got int32)"},
    {"{\"priority\": 2, \"recipe\": \"noop\", \"created_at\": {\"$date\": "
     "\"2026-11-27T00:00:00Z\"}, \"status\": \"pending\"}",
     "signal ?: _id missing"},
    {", \"priority\": 2, \"priority\": 3, \"recipe\": \"noop\"}",
     "field 'priority' appears twice"},
    {", \"priority\": 2, \"recipe\": \"noop\", \"traceparent\": \"abc\"}",
     "traceparent must be a W3C traceparent"},
    {", \"priority\": 2, \"recipe\": \"noop\", \"attempt\": \"two\"}",
     "attempt must be an integer (got string)"},
};

static void test_malformed(void)
{
        par_signal_t s;
        char json[1024];
        size_t n = sizeof(bad) / sizeof(bad[0]);

        CHECKF(n >= 30, "only %zu kinds", n);
        par_signal_init(&s);
        for (size_t i = 0; i < n; i++) {
                const char *why;

                if (bad[i].body[0] == '{')
                        snprintf(json, sizeof(json), "%s", bad[i].body);
                else
                        snprintf(json, sizeof(json), "%s%s", GOOD_HEAD,
                                 bad[i].body);
                why = verdict(json, &s);
                CHECKF(strstr(why, bad[i].reason) != NULL,
                       "case %zu: got '%s', want '%s'", i, why, bad[i].reason);
                /* Every reason names the signal. */
                CHECKF(!strncmp(why, "signal ", 7), "case %zu: '%s'", i, why);
                CHECK(s.n_params == 0 && s.params == NULL);
        }
}

/* Regression (issue 11): reasons cut at a byte count ("%.64s") split a
 * multi-byte character; jansson then refused the reason and the producer
 * replayed the document forever. Every reason must be valid UTF-8. */
static void test_reasons_utf8(void)
{
        static const char *tails[] = {
            ", \"priority\": 2, \"recipe\": \"noop\", \"%s\": 1}",
            ", \"priority\": 2, \"recipe\": \"%s\"}",
            ", \"priority\": 2, \"recipe\": \"noop\", \"params\": "
            "{\"%s\": \"v\"}}",
        };
        char euros[400] = "", body[600], json[1200];
        par_signal_t s;

        for (int i = 0; i < 100; i++)
                strcat(euros, "\xe2\x82\xac");
        par_signal_init(&s);
        for (size_t t = 0; t < sizeof(tails) / sizeof(tails[0]); t++) {
                for (size_t cut = 0; cut < 3; cut++) {
                        char name[400];
                        snprintf(name, sizeof(name), "%.*s%s", (int)cut, "ab",
                                 euros);
                        snprintf(body, sizeof(body), tails[t], name);
                        snprintf(json, sizeof(json), "%s%s", GOOD_HEAD, body);
                        const char *why = verdict(json, &s);
                        /* cut at a character boundary, not scrubbed */
                        CHECKF(why[0] && par_utf8_valid(why, strlen(why)) &&
                                   !strchr(why, '?') &&
                                   strstr(why, PAR_TEXT_CUT_MARK),
                               "case %zu/%zu: '%s'", t, cut, why);
                }
        }
}

/* A pending signal whose one parameter "blob" holds `blob`. */
static bson_t *blob_doc(const bson_oid_t *oid, const char *blob)
{
        bson_t *d = bson_new(), params;

        BSON_APPEND_OID(d, "_id", oid);
        BSON_APPEND_INT32(d, "priority", 2);
        BSON_APPEND_UTF8(d, "recipe", "noop");
        BSON_APPEND_DATE_TIME(d, "created_at", 1000);
        BSON_APPEND_UTF8(d, "status", "pending");
        BSON_APPEND_DOCUMENT_BEGIN(d, "params", &params);
        BSON_APPEND_UTF8(&params, "blob", blob);
        bson_append_document_end(d, &params);
        return d;
}

/* Cases that JSON cannot express: sizes and bytes. */
static void test_built(void)
{
        par_signal_t s;
        par_error_t err;
        bson_oid_t oid;
        bson_t *d;
        char *big = malloc(1 << 20);
        char res[300];
        bson_t params;

        REQUIRE(big);
        par_signal_init(&s);
        bson_oid_init_from_string(&oid, OID);

        /* 1 MB of params. */
        memset(big, 'x', (1 << 20) - 1);
        big[(1 << 20) - 1] = '\0';
        d = blob_doc(&oid, big);
        CHECK(par_signal_parse(&s, d, &lim, &err) == PAR_ERR_INVALID);
        CHECK_STR(err.msg, "signal " OID ": params larger than 65536 bytes");
        bson_destroy(d);

        /* Within a raised limit it passes. */
        {
                par_signal_limits_t big_lim = lim;
                big_lim.max_params_bytes = 2 << 20;
                d = blob_doc(&oid, big);
                CHECKF(par_signal_parse(&s, d, &big_lim, &err) == PAR_OK, "%s",
                       err.msg);
                CHECK(s.n_params == 1 &&
                      strlen(s.params[0].value) == (1 << 20) - 1);
                par_signal_clear(&s);
                bson_destroy(d);
        }

        /* Resource of 300 bytes. */
        memset(res, 'r', 299);
        res[299] = '\0';
        d = bson_new();
        BSON_APPEND_OID(d, "_id", &oid);
        BSON_APPEND_INT32(d, "priority", 2);
        BSON_APPEND_UTF8(d, "recipe", "noop");
        BSON_APPEND_UTF8(d, "resource", res);
        BSON_APPEND_DATE_TIME(d, "created_at", 1000);
        BSON_APPEND_UTF8(d, "status", "pending");
        CHECK(par_signal_parse(&s, d, &lim, &err) == PAR_ERR_INVALID);
        CHECK(strstr(err.msg, "resource is 299 bytes, more than 256") != NULL);
        bson_destroy(d);

        /* Invalid UTF-8 in a param value. */
        d = bson_new();
        BSON_APPEND_OID(d, "_id", &oid);
        BSON_APPEND_INT32(d, "priority", 2);
        BSON_APPEND_UTF8(d, "recipe", "noop");
        BSON_APPEND_DATE_TIME(d, "created_at", 1000);
        BSON_APPEND_UTF8(d, "status", "pending");
        BSON_APPEND_DOCUMENT_BEGIN(d, "params", &params);
        bson_append_utf8(&params, "k", 1, "\xff\xfe", 2);
        bson_append_document_end(d, &params);
        CHECK(par_signal_parse(&s, d, &lim, &err) == PAR_ERR_INVALID);
        CHECK(strstr(err.msg, "params.k is not valid UTF-8") != NULL);
        bson_destroy(d);

        /* A priority level count from config. */
        {
                par_signal_limits_t two = lim;
                two.priority_levels = 2;
                d = bson_new();
                BSON_APPEND_OID(d, "_id", &oid);
                BSON_APPEND_INT32(d, "priority", 3);
                BSON_APPEND_UTF8(d, "recipe", "noop");
                BSON_APPEND_DATE_TIME(d, "created_at", 1000);
                BSON_APPEND_UTF8(d, "status", "pending");
                CHECK(par_signal_parse(&s, d, &two, &err) == PAR_ERR_INVALID);
                CHECK_STR(err.msg,
                          "signal " OID ": priority 3 out of range 1..2");
                bson_destroy(d);
        }
        free(big);
}

static void test_doc_id(void)
{
        char buf[64];
        bson_t *d = doc_of("{\"_id\": \"abc\"}");

        CHECK_STR(par_signal_doc_id(d, buf, sizeof(buf)), "abc");
        bson_destroy(d);
        CHECK_STR(par_signal_doc_id(NULL, buf, sizeof(buf)), "?");
}

static int setup(void)
{
        par_signal_limits_default(&lim);
        return 0;
}

TEST_MAIN_WITH(setup, NULL, test_valid, test_roundtrip, test_traceparent,
               test_malformed, test_built, test_reasons_utf8, test_doc_id)
