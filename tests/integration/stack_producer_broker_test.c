/*
 * stack_producer_broker_test.c — restart the Kafka broker in the middle of
 * a stream (`deploy/dev/stack restart kafka`): the producer keeps reading,
 * holds what it cannot deliver (librdkafka's retries, then its own), and
 * once the broker is back every signal inserted is in Kafka: zero missing.
 * With kafka.message.timeout.ms=3000 deliveries fail while the broker is
 * away; the producer restarts from its checkpoint and publishes them again,
 * in order, never skipping one.
 *
 * This restarts the shared local broker: other tests running at the same
 * moment see it go away for a few seconds, as they would in production.
 */
#include "base/clock.h"
#include "stack_util.h"

#define N    5000
#define NRES 200

static su_ctx_t ctx;
static su_ledger_t ledger;

static void test_broker_restart(void)
{
        su_reader_t r = {0};
        su_proc_t p;
        su_tally_t t;
        su_inserter_t ins;
        size_t done = 0;
        long bad_headers = 0;
        char cmd[1024];
        double t0, t1;
        int rc;

        REQUIRE(su_ledger_init(&ledger, N, NRES) == 0);
        /* A short message timeout makes deliveries fail during the outage,
         * so the producer's own retry path (not only librdkafka's) runs. */
        REQUIRE(su_producer_start(&ctx, &p, "broker",
                                  "kafka.message.timeout.ms=3000", NULL) == 0);
        REQUIRE(su_wait_log(&p, "event=pipeline.started", 30) == 0);
        t0 = par_clock_mono_s();
        REQUIRE(su_insert_start(&ins, &ctx, &ledger, N, NRES, 100, 100) == 0);
        while (su_ledger_tally(&ledger).inserted < N / 4 &&
               par_clock_mono_s() - t0 < 60)
                par_clock_sleep_ms(20);
        snprintf(cmd, sizeof(cmd), "%s/deploy/dev/stack restart kafka >&2",
                 tu_env("PARALLEL_SOURCE_DIR", "."));
        t1 = par_clock_mono_s();
        rc = system(cmd);
        fprintf(stderr,
                "broker restarted (rc %d) in %.1f s, after %zu "
                "inserted\n",
                rc, par_clock_mono_s() - t1, su_ledger_tally(&ledger).inserted);
        CHECK(rc == 0);
        done = su_insert_join(&ins);
        CHECK(done == N);

        REQUIRE(su_reader_new(&ctx, &r, 0) == 0);
        su_read(&ctx, &r, &ledger, 180, 2000, &bad_headers, NULL, NULL);
        t = su_ledger_tally(&ledger);
        fprintf(stderr,
                "inserted %zu, missing %zu, duplicates %zu, out of order %ld, "
                "delivery errors %.0f (%.1f s)\n",
                t.inserted, t.missing, t.duplicates, ledger.out_of_order,
                su_metric(p.port, "parallel_producer_delivery_errors_total"),
                par_clock_mono_s() - t0);
        CHECK(t.missing == 0);
        CHECK(t.bad_topic == 0 && t.bad_key == 0 && bad_headers == 0);
        /* Failed deliveries are re-sent by replaying from the checkpoint,
         * in order, so first sightings keep per-resource order. */
        CHECK(ledger.out_of_order == 0);
        CHECK(su_producer_stop(&p, SIGTERM, 30) == 0);
        su_reader_destroy(&r);
        su_ledger_free(&ledger);
}

SU_TEST_MAIN(ctx, "broker", test_broker_restart)
