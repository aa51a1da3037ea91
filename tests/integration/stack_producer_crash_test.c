/*
 * stack_producer_crash_test.c — `kill -9` the producer three times while
 * 20,000 signals are being inserted, restarting it each time: once it has
 * caught up, every id inserted has been read from Kafka (zero missing).
 * Duplicates are allowed (events after the last checkpoint are published
 * again) and are counted in the output. A short lease (2 s) lets each
 * restarted producer take over quickly from its killed predecessor.
 */
#include "base/clock.h"
#include "stack_util.h"

#define N    20000
#define NRES 200

static su_ctx_t ctx;
static su_ledger_t ledger;

static size_t inserted(void)
{
        return su_ledger_tally(&ledger).inserted;
}

static void test_crash(void)
{
        su_reader_t r = {0};
        su_proc_t p;
        su_tally_t t;
        su_inserter_t ins;
        size_t done = 0;
        long bad_headers = 0;
        const size_t kill_at[3] = {N / 5, N / 2, N * 4 / 5};
        char tag[16];
        int kills = 0;
        double t0;

        REQUIRE(su_ledger_init(&ledger, N, NRES) == 0);
        REQUIRE(su_producer_start(&ctx, &p, "crash0", "producer.lease.ttl=2s",
                                  NULL) == 0);
        REQUIRE(su_wait_log(&p, "event=pipeline.started", 30) == 0);
        t0 = par_clock_mono_s();
        /* Small bulks with pauses so the kills land mid-stream. */
        REQUIRE(su_insert_start(&ins, &ctx, &ledger, N, NRES, 200, 5) == 0);
        for (int k = 0; k < 3; k++) {
                while (inserted() < kill_at[k] && par_clock_mono_s() - t0 < 120)
                        par_clock_sleep_ms(20);
                CHECK(su_producer_stop(&p, SIGKILL, 5) == 128 + SIGKILL);
                kills++;
                fprintf(stderr, "kill -9 #%d after %zu inserted (%.1f s)\n",
                        kills, inserted(), par_clock_mono_s() - t0);
                /* The stand-in commits each second: leave it a moment. */
                par_clock_sleep_ms(1200);
                snprintf(tag, sizeof(tag), "crash%d", k + 1);
                REQUIRE(su_producer_start(&ctx, &p, tag,
                                          "producer.lease.ttl=2s", NULL) == 0);
        }
        done = su_insert_join(&ins);
        CHECK(done == N);
        fprintf(stderr, "inserted %zu in %.1f s\n", done,
                par_clock_mono_s() - t0);

        REQUIRE(su_reader_new(&ctx, &r, 0) == 0);
        su_read(&ctx, &r, &ledger, 180, 2000, &bad_headers, NULL, NULL);
        t = su_ledger_tally(&ledger);
        fprintf(stderr,
                "after %d kills: inserted %zu, missing %zu, duplicates %zu, "
                "wrong topic %zu, wrong key %zu, out of order %ld, bad "
                "headers %ld (%.1f s)\n",
                kills, t.inserted, t.missing, t.duplicates, t.bad_topic,
                t.bad_key, ledger.out_of_order, bad_headers,
                par_clock_mono_s() - t0);
        CHECK(kills == 3);
        CHECK(t.missing == 0);
        CHECK(t.bad_topic == 0 && t.bad_key == 0 && bad_headers == 0);
        CHECK(ledger.out_of_order == 0);
        CHECK(ledger.unknown == 0);
        CHECK(su_producer_stop(&p, SIGTERM, 30) == 0);
        su_reader_destroy(&r);
        su_ledger_free(&ledger);
}

SU_TEST_MAIN(ctx, "crash", test_crash)
