/*
 * stack_producer_sweeper_test.c — the lease sweeper: a signal claimed by a
 * worker whose lease expired goes back to "pending" with its attempt count
 * kept, and the change stream publishes it again (with that attempt); a
 * signal whose lease is still live, or that is done, is left alone.
 */
#include "base/clock.h"
#include "stack_util.h"

static su_ctx_t ctx;

static void insert_claimed(bson_oid_t *oid, const char *status,
                           int64_t lease_until)
{
        bson_t d = BSON_INITIALIZER;

        bson_oid_init(oid, NULL);
        BSON_APPEND_OID(&d, "_id", oid);
        BSON_APPEND_INT32(&d, "priority", 3);
        BSON_APPEND_UTF8(&d, "recipe", "noop");
        BSON_APPEND_UTF8(&d, "resource", "sweep");
        BSON_APPEND_DATE_TIME(&d, "created_at", par_clock_wall_ms() - 60000);
        BSON_APPEND_UTF8(&d, "status", status);
        BSON_APPEND_UTF8(&d, "claimed_by", "dead-node/w1");
        BSON_APPEND_DATE_TIME(&d, "lease_until", lease_until);
        BSON_APPEND_INT32(&d, "attempt", 2);
        CHECK(mongoc_collection_insert_one(ctx.signals, &d, NULL, NULL, NULL));
        bson_destroy(&d);
}

static void get(const bson_oid_t *oid, char *status, int *attempt,
                int *has_lease)
{
        bson_t *f = BCON_NEW("_id", BCON_OID(oid));
        mongoc_cursor_t *c =
            mongoc_collection_find_with_opts(ctx.signals, f, NULL, NULL);
        const bson_t *d;
        bson_iter_t it;

        status[0] = '\0';
        *attempt = -1;
        *has_lease = 0;
        if (mongoc_cursor_next(c, &d)) {
                if (bson_iter_init_find(&it, d, "status"))
                        snprintf(status, 16, "%s", bson_iter_utf8(&it, NULL));
                if (bson_iter_init_find(&it, d, "attempt"))
                        *attempt = (int)bson_iter_as_int64(&it);
                *has_lease = bson_iter_init_find(&it, d, "lease_until");
        }
        mongoc_cursor_destroy(c);
        bson_destroy(f);
}

static int republished_attempt = -1;
static char expired_id[25];

static void scan(su_reader_t *r, double timeout_s)
{
        double deadline = par_clock_mono_s() + timeout_s;

        while (par_clock_mono_s() < deadline && republished_attempt < 0) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, 200);
                json_t *v = NULL;
                if (!m)
                        continue;
                if (!m->err &&
                    !par_codec_decode(ctx.codec, m->payload, m->len,
                                      PAR_SCHEMA_SIGNAL, &v, NULL, NULL)) {
                        const char *id =
                            json_string_value(json_object_get(v, "id"));
                        if (id && !strcmp(id, expired_id))
                                republished_attempt = (int)json_integer_value(
                                    json_object_get(v, "attempt"));
                        json_decref(v);
                }
                rd_kafka_message_destroy(m);
        }
}

static void test_sweeper(void)
{
        bson_oid_t expired, live, done;
        su_reader_t r = {0};
        su_proc_t p;
        char st[16];
        int attempt, has_lease;
        double deadline;

        insert_claimed(&expired, "claimed", par_clock_wall_ms() - 5000);
        insert_claimed(&live, "claimed", par_clock_wall_ms() + 600000);
        insert_claimed(&done, "done", par_clock_wall_ms() - 5000);
        bson_oid_to_string(&expired, expired_id);

        REQUIRE(su_producer_start(&ctx, &p, "sweeper",
                                  "producer.sweeper.interval=300ms",
                                  NULL) == 0);
        deadline = par_clock_mono_s() + 20;
        do {
                par_clock_sleep_ms(100);
                get(&expired, st, &attempt, &has_lease);
        } while (strcmp(st, "pending") && par_clock_mono_s() < deadline);
        CHECK_STR(st, "pending");
        CHECK(attempt == 2);
        CHECK(!has_lease);

        REQUIRE(su_reader_new(&ctx, &r, 0) == 0);
        scan(&r, 30);
        CHECKF(republished_attempt == 2, "republished with attempt %d",
               republished_attempt);

        get(&live, st, &attempt, &has_lease);
        CHECK_STR(st, "claimed");
        CHECK(has_lease);
        get(&done, st, &attempt, &has_lease);
        CHECK_STR(st, "done");
        CHECK(su_metric(p.port, "parallel_producer_requeued_total") == 1);
        CHECK(su_producer_stop(&p, SIGTERM, 30) == 0);
        su_reader_destroy(&r);
}

SU_TEST_MAIN(ctx, "sweeper", test_sweeper)
