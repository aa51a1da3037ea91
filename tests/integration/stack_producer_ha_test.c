/*
 * stack_producer_ha_test.c — two producers on one collection: exactly one
 * holds the lease and publishes, the other stands by (publishing nothing);
 * `kill -9` the active one mid-stream and the standby takes over within
 * producer.lease.ttl (plus its poll and its two MongoDB requests, which a
 * busy stand-in can make slow), resumes from the
 * checkpoint, and nothing inserted is missing from Kafka.
 */
#include "base/clock.h"
#include "stack_util.h"

#define N     4000
#define NRES  200
#define TTL_S 10 /* the default producer.lease.ttl */

static su_ctx_t ctx;
static su_ledger_t ledger;

static void test_ha(void)
{
        su_reader_t r = {0};
        su_proc_t a, b, *active, *standby;
        su_tally_t t;
        su_inserter_t ins;
        size_t done = 0;
        long bad_headers = 0;
        double t0, killed_at, took = -1, rtt = 0;
        int ra, rb;

        REQUIRE(su_ledger_init(&ledger, N, NRES) == 0);
        REQUIRE(su_producer_start(&ctx, &a, "ha-a", "node.id=producer-a",
                                  NULL) == 0);
        REQUIRE(su_wait_log(&a, "event=pipeline.started", 30) == 0);
        REQUIRE(su_producer_start(&ctx, &b, "ha-b", "node.id=producer-b",
                                  NULL) == 0);
        par_clock_sleep_ms(1500);
        ra = su_active(a.port);
        rb = su_active(b.port);
        CHECKF(ra == 1 && rb == 0, "roles before: a=%d b=%d", ra, rb);
        active = &a;
        standby = &b;

        t0 = par_clock_mono_s();
        REQUIRE(su_insert_start(&ins, &ctx, &ledger, N, NRES, 100, 20) == 0);
        while (su_ledger_tally(&ledger).inserted < N / 3 &&
               par_clock_mono_s() - t0 < 60)
                par_clock_sleep_ms(20);
        /* Let the active one publish and checkpoint, so the standby has a
         * checkpoint to resume from (the stand-in can lag on a busy box). */
        while (par_clock_mono_s() - t0 < 60 &&
               su_metric(active->port, "parallel_producer_checkpoints_total") <
                   1)
                par_clock_sleep_ms(50);
        /* Exactly one active, and only it has published anything. */
        ra = su_active(active->port);
        rb = su_active(standby->port);
        CHECKF(ra == 1 && rb == 0, "roles mid-stream: a=%d b=%d", ra, rb);
        CHECK(su_metric(active->port, "parallel_producer_delivered_total") > 0);
        CHECK(su_metric(standby->port, "parallel_producer_delivered_total") ==
              0);
        CHECK(su_metric(standby->port, "parallel_producer_events_total") == 0);

        /* One MongoDB round trip now: the takeover needs a read and an
         * update after the lease expires, and a busy stand-in can take
         * seconds per request. */
        {
                mongoc_collection_t *st = mongoc_client_get_collection(
                    ctx.client, ctx.name, "parallel_state");
                bson_t *f = bson_new();
                double q0 = par_clock_mono_s();
                mongoc_collection_count_documents(st, f, NULL, NULL, NULL,
                                                  NULL);
                rtt = par_clock_mono_s() - q0;
                bson_destroy(f);
                mongoc_collection_destroy(st);
        }
        CHECK(su_producer_stop(active, SIGKILL, 5) == 128 + SIGKILL);
        killed_at = par_clock_mono_s();
        while (par_clock_mono_s() - killed_at < 6 * TTL_S) {
                if (su_active(standby->port) == 1) {
                        took = par_clock_mono_s() - killed_at;
                        break;
                }
                par_clock_sleep_ms(50);
        }
        fprintf(stderr,
                "standby took over %.2f s after the kill (ttl %d s, MongoDB "
                "round trip %.2f s)\n",
                took, TTL_S, rtt);
        /* ttl, plus the standby's poll, plus its two requests. */
        CHECK(took >= 0 && took <= TTL_S + 1.0 + 3 * rtt);
        done = su_insert_join(&ins);
        CHECK(done == N);

        REQUIRE(su_reader_new(&ctx, &r, 0) == 0);
        su_read(&ctx, &r, &ledger, 120, 2000, &bad_headers, NULL, NULL);
        t = su_ledger_tally(&ledger);
        fprintf(stderr,
                "inserted %zu, missing %zu, duplicates %zu, out of order %ld "
                "(%.1f s)\n",
                t.inserted, t.missing, t.duplicates, ledger.out_of_order,
                par_clock_mono_s() - t0);
        CHECK(t.missing == 0);
        CHECK(t.bad_topic == 0 && t.bad_key == 0 && bad_headers == 0);
        CHECK(ledger.out_of_order == 0);
        CHECK(su_wait_log(standby, "event=stream.resume", 0) == 0);
        CHECK(su_producer_stop(standby, SIGTERM, 30) == 0);
        su_reader_destroy(&r);
        su_ledger_free(&ledger);
}

SU_TEST_MAIN(ctx, "ha", test_ha)
