/*
 * stack_producer_resume_test.c — signals inserted while no producer runs
 * are delivered when it starts:
 *   1. before any producer ever ran (no checkpoint): the start-up backfill
 *      publishes them, in created_at order;
 *   2. after a producer stopped with SIGTERM (exit 0, checkpoint written):
 *      the next one resumes the change stream after the checkpoint, and
 *      publishes nothing twice; an already expired signal is marked
 *      "expired" instead of being published.
 */
#include "base/clock.h"
#include "stack_util.h"

static su_ctx_t ctx;

static int status_of(const bson_oid_t *oid, char *buf, size_t n)
{
        bson_t *f = BCON_NEW("_id", BCON_OID(oid));
        mongoc_cursor_t *c =
            mongoc_collection_find_with_opts(ctx.signals, f, NULL, NULL);
        const bson_t *d;
        bson_iter_t it;
        int found = 0;

        buf[0] = '\0';
        if (mongoc_cursor_next(c, &d) && bson_iter_init_find(&it, d, "status"))
                found = snprintf(buf, n, "%s", bson_iter_utf8(&it, NULL)) > 0;
        mongoc_cursor_destroy(c);
        bson_destroy(f);
        return found;
}

static int restarted(const su_proc_t *p)
{
        return !su_wait_log(p, "event=pipeline.restart", 0) ||
               !su_wait_log(p, "event=pipeline.standby", 0);
}

static void test_resume(void)
{
        su_ledger_t l;
        su_reader_t r = {0};
        su_proc_t p1, p2;
        su_tally_t t;
        long bad_headers = 0;
        bson_oid_t expired;
        char st[32];

        REQUIRE(su_ledger_init(&l, 1000, 50) == 0);
        REQUIRE(su_reader_new(&ctx, &r, 0) == 0);

        /* 1. Before any producer: backfill. */
        CHECK(su_insert(ctx.signals, &l, 300, 50, 100, 0) == 300);
        REQUIRE(su_producer_start(&ctx, &p1, "resume1", NULL) == 0);
        CHECK(su_wait_log(&p1, "event=backfill.done signals=300", 30) == 0);
        CHECK(su_wait_log(&p1, "event=pipeline.started", 30) == 0);
        /* Some while it runs, so a checkpoint exists. */
        CHECK(su_insert(ctx.signals, &l, 200, 50, 100, 0) == 200);
        su_read(&ctx, &r, &l, 60, 500, &bad_headers, NULL, NULL);
        t = su_ledger_tally(&l);
        fprintf(stderr, "phase 1: inserted %zu, missing %zu, dup %zu\n",
                t.inserted, t.missing, t.duplicates);
        CHECK(t.missing == 0);
        CHECK(l.out_of_order == 0);
        CHECK(su_metric(p1.port, "parallel_producer_backfilled_total") == 300);
        CHECK(su_producer_stop(&p1, SIGTERM, 30) == 0);

        /* 2. While no producer runs; then resume after the checkpoint. */
        CHECK(su_insert(ctx.signals, &l, 500, 50, 100, 0) == 500);
        {
                bson_t d = BSON_INITIALIZER;
                int64_t now = par_clock_wall_ms();
                bson_oid_init(&expired, NULL);
                BSON_APPEND_OID(&d, "_id", &expired);
                BSON_APPEND_INT32(&d, "priority", 2);
                BSON_APPEND_UTF8(&d, "recipe", "noop");
                BSON_APPEND_DATE_TIME(&d, "created_at", now - 10000);
                BSON_APPEND_DATE_TIME(&d, "expires_at", now - 5000);
                BSON_APPEND_UTF8(&d, "status", "pending");
                CHECK(mongoc_collection_insert_one(ctx.signals, &d, NULL, NULL,
                                                   NULL));
                bson_destroy(&d);
        }
        REQUIRE(su_producer_start(&ctx, &p2, "resume2", NULL) == 0);
        CHECK(su_wait_log(&p2, "event=stream.resume", 30) == 0);
        su_read(&ctx, &r, &l, 60, 1500, &bad_headers, NULL, NULL);
        t = su_ledger_tally(&l);
        fprintf(stderr,
                "phase 2: inserted %zu, missing %zu, duplicates %zu, out of "
                "order %ld, bad headers %ld, unknown %ld\n",
                t.inserted, t.missing, t.duplicates, l.out_of_order,
                bad_headers, l.unknown);
        CHECK(t.missing == 0);
        CHECK(t.bad_topic == 0 && t.bad_key == 0 && bad_headers == 0);
        CHECK(l.out_of_order == 0);
        CHECK(l.unknown == 0); /* the expired signal was not published */
        if (!restarted(&p1) && !restarted(&p2))
                CHECK(t.duplicates == 0);
        CHECK(su_wait_log(&p2, "event=backfill.done", 0) != 0);
        CHECK(status_of(&expired, st, sizeof(st)) && !strcmp(st, "expired"));
        CHECK(su_producer_stop(&p2, SIGTERM, 30) == 0);
        su_reader_destroy(&r);
        su_ledger_free(&l);
}

SU_TEST_MAIN(ctx, "resume", test_resume)
