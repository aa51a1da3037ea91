/*
 * stack_producer_reject_test.c — 30 kinds of malformed signal documents,
 * each inserted between two valid ones while the producer runs: every
 * malformed one ends with status "rejected" and an `error` naming the
 * problem on the document, and a DeadLetter (source producer, same reason,
 * the original document) on <prefix>.dlq; every valid one is published as
 * usual and none is rejected.
 */
#include "base/clock.h"
#include "stack_util.h"

static su_ctx_t ctx;

#define HEAD                                                                   \
        "{\"_id\": {\"$oid\": \"%s\"}, \"created_at\": {\"$date\": "           \
        "\"2026-11-27T00:00:00Z\"}, \"status\": \"pending\""
#define NOSTATUS                                                               \
        "{\"_id\": {\"$oid\": \"%s\"}, \"created_at\": {\"$date\": "           \
        "\"2026-11-27T00:00:00Z\"}"
#define NODATE "{\"_id\": {\"$oid\": \"%s\"}, \"status\": \"pending\""

#define EUROS10                                                                \
        "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82" \
        "\xac\xe2\x82\xac\xe2"                                                 \
        "\x82\xac\xe2\x82\xac\xe2\x82\xac"
#define EUROS EUROS10 EUROS10 EUROS10 EUROS10

/* Each is a printf format taking the ObjectId hex (except where the _id is
 * itself the defect), and a fragment the reason must contain. NULL json:
 * built in code (sizes JSON cannot express briefly). */
static const struct {
        const char *json;
        const char *reason;
} kinds[] = {
    {HEAD ", \"recipe\": \"noop\"}", "priority missing"},
    {HEAD ", \"priority\": 0, \"recipe\": \"noop\"}",
     "priority 0 out of range 1..4"},
    {HEAD ", \"priority\": 5, \"recipe\": \"noop\"}",
     "priority 5 out of range 1..4"},
    {HEAD ", \"priority\": -1, \"recipe\": \"noop\"}",
     "priority -1 out of range 1..4"},
    {HEAD ", \"priority\": \"high\", \"recipe\": \"noop\"}",
     "priority must be an integer (got string \"high\")"},
    {HEAD ", \"priority\": 2.5, \"recipe\": \"noop\"}",
     "priority 2.5 is not an integer"},
    {HEAD ", \"priority\": null, \"recipe\": \"noop\"}",
     "priority must be an integer (got null)"},
    {HEAD ", \"priority\": true, \"recipe\": \"noop\"}",
     "priority must be an integer (got bool)"},
    {HEAD ", \"priority\": 2}", "recipe missing"},
    {HEAD ", \"priority\": 2, \"recipe\": \"\"}", "recipe '' must match"},
    {HEAD ", \"priority\": 2, \"recipe\": \"../etc/passwd\"}",
     "recipe '../etc/passwd' must match"},
    {HEAD ", \"priority\": 2, \"recipe\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
     "must match [A-Za-z0-9_.-]{1,64}"},
    {HEAD ", \"priority\": 2, \"recipe\": 42}",
     "recipe must be a string (got int32)"},
    {HEAD ", \"priority\": 2, \"recipe\": \"noop\", \"resource\": 17}",
     "resource must be a string (got int32)"},
    {HEAD ", \"priority\": 2, \"recipe\": \"noop\", \"resource\": \"\"}",
     "resource must not be empty"},
    {NULL, "resource is 300 bytes, more than 256"},
    {HEAD ", \"priority\": 2, \"recipe\": \"noop\", \"params\": \"a=b\"}",
     "params must be an object of strings (got string)"},
    {HEAD ", \"priority\": 2, \"recipe\": \"noop\", \"params\": [\"a\"]}",
     "params must be an object of strings (got array)"},
    {HEAD ", \"priority\": 2, \"recipe\": \"noop\", \"params\": {\"n\": 3}}",
     "params.n must be a string (got int32)"},
    {HEAD ", \"priority\": 2, \"recipe\": \"noop\", \"params\": {\"o\": "
          "{\"x\": \"y\"}}}",
     "params.o must be a string (got object)"},
    {HEAD ", \"priority\": 2, \"recipe\": \"noop\", \"params\": {\"a b\": "
          "\"y\"}}",
     "params: name 'a b' must match"},
    {NULL, "params larger than 65536 bytes"},
    {NODATE ", \"priority\": 2, \"recipe\": \"noop\"}", "created_at missing"},
    {NODATE ", \"priority\": 2, \"recipe\": \"noop\", \"created_at\": "
            "\"yesterday\"}",
     "created_at must be a date (got string)"},
    {NODATE ", \"priority\": 2, \"recipe\": \"noop\", \"created_at\": "
            "1700000000000}",
     "created_at must be a date (got int64)"},
    {HEAD ", \"priority\": 2, \"recipe\": \"noop\", \"expires_at\": "
          "\"soon\"}",
     "expires_at must be a date (got string)"},
    {HEAD ", \"priority\": 2, \"recipe\": \"noop\", \"expires_at\": "
          "{\"$date\": \"2026-11-26T00:00:00Z\"}}",
     "expires_at is not after created_at"},
    {NOSTATUS ", \"priority\": 2, \"recipe\": \"noop\"}", "status missing"},
    {NOSTATUS ", \"priority\": 2, \"recipe\": \"noop\", \"status\": "
              "\"bogus\"}",
     "status 'bogus' is not one of"},
    {HEAD ", \"priority\": 2, \"recipe\": \"noop\", \"color\": \"red\"}",
     "unknown field 'color'"},
    {"{\"_id\": 5, \"priority\": 2, \"recipe\": \"noop\", \"created_at\": "
     "{\"$date\": \"2026-11-27T00:00:00Z\"}, \"status\": \"pending\"}",
     "signal 5: _id must be an ObjectId (got int32)"},
    {HEAD ", \"priority\": 2, \"recipe\": \"noop\", \"traceparent\": "
          "\"abc\"}",
     "traceparent must be a W3C traceparent"},
    /* Regression (issue 11): reasons cut inside a multi-byte character
     * ("%.64s") wedged the producer; a dotted field name failed the update
     * that marks the document rejected. */
    {HEAD ", \"priority\": 2, \"recipe\": \"noop\", \"x" EUROS "\": 1}",
     "unknown field 'x\xe2\x82\xac"},
    {HEAD ", \"priority\": 2, \"recipe\": \"" EUROS "\"}", "must match"},
    {HEAD ", \"priority\": 2, \"recipe\": \"noop\", \"a.b\": 1}",
     "unknown field 'a.b'"},
};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

/* The kind with a dotted field name, which the stand-in will not update. */
static bool dotted(size_t i)
{
        return strstr(kinds[i].reason, "'a.b'") != NULL;
}

typedef struct bad {
        char id[32];
        bson_t *doc; /* as inserted */
        int dlq_seen, dlq_ok;
} bad_t;

static bad_t bads[NKINDS];

static void build(size_t i, bson_t **out, char *id)
{
        bson_oid_t oid;
        char json[1024];
        bson_error_t e;

        bson_oid_init(&oid, NULL);
        bson_oid_to_string(&oid, id);
        if (kinds[i].json) {
                if (strstr(kinds[i].json, "%s"))
                        snprintf(json, sizeof(json), kinds[i].json, id);
                else {
                        snprintf(json, sizeof(json), "%s", kinds[i].json);
                        strcpy(id, "5");
                }
                *out = bson_new_from_json((const uint8_t *)json, -1, &e);
                if (!*out)
                        fprintf(stderr, "bad test JSON %zu: %s\n", i,
                                e.message);
                return;
        }
        *out = bson_new();
        BSON_APPEND_OID(*out, "_id", &oid);
        BSON_APPEND_INT32(*out, "priority", 2);
        BSON_APPEND_UTF8(*out, "recipe", "noop");
        BSON_APPEND_DATE_TIME(*out, "created_at", par_clock_wall_ms());
        BSON_APPEND_UTF8(*out, "status", "pending");
        if (strstr(kinds[i].reason, "resource")) {
                char res[301];
                memset(res, 'r', 300);
                res[300] = '\0';
                BSON_APPEND_UTF8(*out, "resource", res);
        } else {
                bson_t params;
                char *big = malloc(1 << 20);
                memset(big, 'x', (1 << 20) - 1);
                big[(1 << 20) - 1] = '\0';
                BSON_APPEND_DOCUMENT_BEGIN(*out, "params", &params);
                BSON_APPEND_UTF8(&params, "blob", big);
                bson_append_document_end(*out, &params);
                free(big);
        }
}

static void on_dlq(void *opaque, json_t *v, const rd_kafka_message_t *m)
{
        const char *sid = json_string_value(json_object_get(v, "signal_id"));
        const char *reason = json_string_value(json_object_get(v, "reason"));
        const char *src = json_string_value(json_object_get(v, "source"));
        const char *fmt =
            json_string_value(json_object_get(v, "original_format"));
        (void)opaque;

        for (size_t i = 0; i < NKINDS; i++) {
                if (!sid || strcmp(sid, bads[i].id))
                        continue;
                bads[i].dlq_seen++;
                bads[i].dlq_ok =
                    reason && strstr(reason, kinds[i].reason) && src &&
                    !strcmp(src, "producer") && fmt &&
                    json_string_length(json_object_get(v, "original")) > 0 &&
                    m->key_len == strlen(sid) &&
                    !memcmp(m->key, sid, m->key_len);
                if (!bads[i].dlq_ok)
                        fprintf(stderr, "dead letter %zu: reason '%s'\n", i,
                                reason ? reason : "(null)");
        }
}

/* The document's status and error, by the _id it was inserted with. */
static void doc_state(size_t i, char *status, char *error, size_t n)
{
        bson_iter_t id, it;
        bson_t f = BSON_INITIALIZER;
        mongoc_cursor_t *c;
        const bson_t *d;

        status[0] = error[0] = '\0';
        if (!bson_iter_init_find(&id, bads[i].doc, "_id"))
                return;
        bson_append_iter(&f, "_id", 3, &id);
        c = mongoc_collection_find_with_opts(ctx.signals, &f, NULL, NULL);
        if (mongoc_cursor_next(c, &d)) {
                if (bson_iter_init_find(&it, d, "status") &&
                    BSON_ITER_HOLDS_UTF8(&it))
                        snprintf(status, n, "%s", bson_iter_utf8(&it, NULL));
                if (bson_iter_init_find(&it, d, "error") &&
                    BSON_ITER_HOLDS_UTF8(&it))
                        snprintf(error, n, "%s", bson_iter_utf8(&it, NULL));
        }
        mongoc_cursor_destroy(c);
        bson_destroy(&f);
}

static void test_reject(void)
{
        su_ledger_t l;
        su_reader_t r = {0};
        su_proc_t p;
        su_tally_t t;
        long bad_headers = 0;
        bson_error_t e;
        double deadline;
        size_t rejected = 0;

        CHECKF(NKINDS >= 33, "%zu kinds", NKINDS);
        REQUIRE(su_ledger_init(&l, NKINDS + 1, 4) == 0);
        REQUIRE(su_producer_start(&ctx, &p, "reject", NULL) == 0);
        REQUIRE(su_wait_log(&p, "event=pipeline.started", 30) == 0);

        for (size_t i = 0; i <= NKINDS; i++) {
                CHECK(su_insert(ctx.signals, &l, 1, 4, 1, 0) == 1);
                if (i == NKINDS)
                        break;
                build(i, &bads[i].doc, bads[i].id);
                REQUIRE(bads[i].doc);
                CHECKF(mongoc_collection_insert_one(ctx.signals, bads[i].doc,
                                                    NULL, NULL, &e),
                       "kind %zu: %s", i, e.message);
        }

        /* Every malformed document ends rejected with its reason (a
         * dotted one, which the stand-in will not update, once the
         * producer has dealt with every kind). */
        deadline = par_clock_mono_s() + 60;
        while (par_clock_mono_s() < deadline && rejected < NKINDS) {
                char st[32], er[300];
                bool all =
                    su_metric(p.port, "parallel_producer_rejected_total") >=
                    NKINDS;
                rejected = 0;
                for (size_t i = 0; i < NKINDS; i++) {
                        doc_state(i, st, er, sizeof(er));
                        rejected +=
                            !strcmp(st, "rejected") || (all && dotted(i));
                }
                if (rejected < NKINDS)
                        par_clock_sleep_ms(200);
        }
        for (size_t i = 0; i < NKINDS; i++) {
                char st[32], er[300];
                doc_state(i, st, er, sizeof(er));
                /* MongoDB marks a document with a dotted field name
                 * rejected; the stand-in refuses any update of such a
                 * document (and leaves it untouched), so the producer
                 * sets it aside as it is, and the dead letter (checked
                 * below) carries the reason. */
                CHECKF((!strcmp(st, "rejected") &&
                        (dotted(i) || strstr(er, kinds[i].reason))) ||
                           (dotted(i) && !strcmp(st, "pending") && !*er),
                       "kind %zu (%s): status '%s' error '%s'", i,
                       kinds[i].reason, st, er);
        }

        /* Valid ones all published; each bad one dead-lettered once. */
        REQUIRE(su_reader_new(&ctx, &r, 1) == 0);
        su_read(&ctx, &r, &l, 60, 3000, &bad_headers, on_dlq, NULL);
        t = su_ledger_tally(&l);
        fprintf(stderr, "valid: %zu inserted, %zu missing; rejected %zu/%zu\n",
                t.inserted, t.missing, rejected, NKINDS);
        CHECK(t.missing == 0 && t.bad_topic == 0 && t.bad_key == 0);
        CHECK(bad_headers == 0);
        for (size_t i = 0; i < NKINDS; i++)
                CHECKF(bads[i].dlq_seen >= 1 && bads[i].dlq_ok,
                       "kind %zu (%s): %d dead letters, ok %d", i,
                       kinds[i].reason, bads[i].dlq_seen, bads[i].dlq_ok);
        CHECK(su_metric(p.port, "parallel_producer_rejected_total") >= NKINDS);
        CHECK(su_producer_stop(&p, SIGTERM, 30) == 0);
        for (size_t i = 0; i < NKINDS; i++)
                bson_destroy(bads[i].doc);
        su_reader_destroy(&r);
        su_ledger_free(&l);
}

SU_TEST_MAIN(ctx, "reject", test_reject)
