/*
 * stack_consumer_poison_test.c — the real-browser path and poison signals.
 *
 * One node with Chromium and two recipes written for this test: `page`
 * (the fixture late.html: click an element that appears late, extract the
 * text) must end done with its extracted value on the document; `poison`
 * (navigates to a closed port: net::ERR_CONNECTION_REFUSED, a transient
 * failure) must be retried locally and end dead after max.attempts, with
 * a DeadLetter and one result per attempt (retrying, retrying, dead),
 * while the noop signals queued behind it finish without waiting for it.
 * `slow` (a spin of ~6 s, lease 3 s) must keep a live lease on its document
 * the whole time it runs: the renewer extends it.
 */
#include <sys/stat.h>

#include "base/clock.h"
#include "fixture_server.h"
#include "stack_consumer_util.h"

#define NPOISON 2
#define NNOOP   20
#define NPAGE   3
#define NSLOW   1
#define NBAD    1
#define N       (NPOISON + NNOOP + NPAGE + NSLOW + NBAD)

static void test_poison(void)
{
        su_ctx_t c;
        su_ledger_t l;
        sc_reader_t r;
        su_proc_t node;
        fx_server_t fx;
        char dir[] = "/tmp/parallel-poison-XXXXXX", pages[600], page[1024],
             rdir[700];

        snprintf(pages, sizeof(pages), "%s/tests/fixtures/pages",
                 tu_env("PARALLEL_SOURCE_DIR", "."));
        REQUIRE(fx_server_start(&fx, pages) == 0);
        REQUIRE(mkdtemp(dir) != NULL);
        snprintf(page, sizeof(page),
                 "{\"title\": \"late\", \"steps\": ["
                 "{\"type\": \"navigate\", \"url\": "
                 "\"http://127.0.0.1:%d/late.html\"},"
                 "{\"type\": \"click\", \"selectors\": [[\"#late\"]], "
                 "\"offsetX\": 5, \"offsetY\": 5},"
                 "{\"type\": \"waitForExpression\", \"expression\": "
                 "\"document.getElementById('out').textContent === 'late "
                 "clicked'\", \"timeout\": 5000},"
                 "{\"type\": \"extract\", \"name\": \"out\", \"expression\": "
                 "\"document.getElementById('out').textContent\"}]}\n",
                 fx.port);
        REQUIRE(tu_write_file(dir, "page.json", page) == 0);
        REQUIRE(tu_write_file(dir, "poison.json",
                              "{\"title\": \"always refused\", \"steps\": ["
                              "{\"type\": \"navigate\", \"url\": "
                              "\"http://127.0.0.1:1/never\"}]}\n") == 0);
        char slow[1024];
        /* navigate first: a reused tab's clock would already be past 6 s */
        snprintf(slow, sizeof(slow),
                 "{\"title\": \"slow\", \"steps\": ["
                 "{\"type\": \"navigate\", \"url\": "
                 "\"http://127.0.0.1:%d/index.html\"},"
                 "{\"type\": \"waitForExpression\", "
                 "\"expression\": \"performance.now() > 6000\", "
                 "\"timeout\": 15000}]}\n",
                 fx.port);
        REQUIRE(tu_write_file(dir, "slow.json", slow) == 0);
        snprintf(rdir, sizeof(rdir), "recipes.dir=%s", dir);

        REQUIRE(sc_init(&c, "cpoison") == 0);
        REQUIRE(su_ledger_init(&l, N, 4) == 0);
        REQUIRE(sc_insert(&c, &l, NPOISON, 2, "poison", 0, 0) == NPOISON);
        REQUIRE(sc_insert(&c, &l, NNOOP, 2, "noop", 0, 0) == NNOOP);
        REQUIRE(sc_insert(&c, &l, NPAGE, 2, "page", 0, 0) == NPAGE);
        REQUIRE(sc_insert(&c, &l, NSLOW, 3, "slow", 0, 0) == NSLOW);
        REQUIRE(sc_insert(&c, &l, NBAD, 1, "nosuch", 0, 0) == NBAD);
        REQUIRE(sc_reader_new(&c, &r, N) == 0);
        REQUIRE(sc_node_start(&c, &node, "browser", rdir, "workers.min=2",
                              "workers.max=2", "max.attempts=3",
                              "retry.backoff=2s", "spin.timeout=20s",
                              "claim.lease=3s", NULL) == 0);

        /* Watch the slow signal's lease while it runs. */
        int seen_claimed = 0, lapsed = 0;
        bson_oid_t soid;
        bson_oid_init_from_string(&soid, l.e[N - NBAD - 1].id);
        double until = par_clock_mono_s() + 40;
        while (par_clock_mono_s() < until) {
                bson_t *q = BCON_NEW("_id", BCON_OID(&soid));
                mongoc_cursor_t *cur =
                    mongoc_collection_find_with_opts(c.signals, q, NULL, NULL);
                const bson_t *d;
                bool finished = false;
                if (mongoc_cursor_next(cur, &d)) {
                        bson_iter_t it;
                        const char *st = "";
                        if (bson_iter_init_find(&it, d, "status"))
                                st = bson_iter_utf8(&it, NULL);
                        if (!strcmp(st, "claimed")) {
                                seen_claimed++;
                                if (bson_iter_init_find(&it, d,
                                                        "lease_until") &&
                                    bson_iter_date_time(&it) <
                                        par_clock_wall_ms() - 500)
                                        lapsed++;
                        }
                        finished = sc_is_final(st);
                }
                mongoc_cursor_destroy(cur);
                bson_destroy(q);
                if (finished)
                        break;
                par_clock_sleep_ms(100);
        }
        fprintf(stderr, "   slow spin: lease seen live %d times, lapsed %d\n",
                seen_claimed, lapsed);
        CHECK(seen_claimed >= 10);
        CHECK(lapsed == 0);
        size_t missing = sc_read(&c, &r, &l, N, 150, 1500);
        CHECKF(missing == 0, "%zu signals without a final result", missing);

        /* Poison: retrying, retrying, dead; attempts 1..3; one DLQ entry. */
        int64_t dead_at = INT64_MAX, noop_last = 0, longest = 0;
        for (int i = 0; i < NPOISON; i++) {
                sc_rec_t *x = &r.recs[i];
                CHECKF(x->retrying == 2 && x->finals == 1 && x->nres == 3,
                       "poison %d: %d retrying, %d final, %d results", i,
                       x->retrying, x->finals, x->nres);
                CHECK(x->dlq == 1);
                for (int k = 0; k < x->nres; k++) {
                        fprintf(stderr,
                                "   poison %d attempt %d %s: started +%lld "
                                "ms, finished +%lld ms\n",
                                i, x->r[k].attempt, x->r[k].status,
                                (long long)(x->r[k].started_at -
                                            x->r[0].started_at),
                                (long long)(x->r[k].finished_at -
                                            x->r[0].started_at));
                        CHECK(x->r[k].attempt == k + 1);
                        if (!strcmp(x->r[k].status, "dead") &&
                            x->r[k].finished_at < dead_at)
                                dead_at = x->r[k].finished_at;
                        if (x->r[k].finished_at - x->r[0].started_at > longest)
                                longest =
                                    x->r[k].finished_at - x->r[0].started_at;
                }
        }
        CHECK(dead_at != INT64_MAX);
        /* The noop signals behind the poison did not wait for it. */
        for (int i = NPOISON; i < NPOISON + NNOOP; i++) {
                sc_rec_t *x = &r.recs[i];
                CHECK(x->dones == 1);
                if (x->nres && x->r[0].finished_at > noop_last)
                        noop_last = x->r[0].finished_at;
        }
        CHECKF(noop_last < dead_at, "last noop at %lld, first dead at %lld",
               (long long)noop_last, (long long)dead_at);
        /* The real recipe ran in Chromium: done, value on the document. */
        int page_ok = 0;
        for (int i = NPOISON + NNOOP; i < NPOISON + NNOOP + NPAGE; i++) {
                bson_oid_t oid;
                bson_oid_init_from_string(&oid, l.e[i].id);
                bson_t *q = BCON_NEW("_id", BCON_OID(&oid));
                mongoc_cursor_t *cur =
                    mongoc_collection_find_with_opts(c.signals, q, NULL, NULL);
                const bson_t *d;
                bson_iter_t it, st;
                if (mongoc_cursor_next(cur, &d) && bson_iter_init(&it, d) &&
                    bson_iter_find_descendant(&it, "result.values.out", &st) &&
                    BSON_ITER_HOLDS_UTF8(&st) &&
                    !strcmp(bson_iter_utf8(&st, NULL), "late clicked") &&
                    bson_iter_init_find(&it, d, "status") &&
                    !strcmp(bson_iter_utf8(&it, NULL), "done"))
                        page_ok++;
                mongoc_cursor_destroy(cur);
                bson_destroy(q);
                CHECK(r.recs[i].dones == 1);
        }
        CHECKF(page_ok == NPAGE, "%d of %d page signals done with value",
               page_ok, NPAGE);
        /* An unknown recipe is a permanent failure: failed at once + DLQ. */
        sc_rec_t *bad = &r.recs[N - 1];
        CHECKF(bad->finals == 1 && bad->retrying == 0 && bad->dlq == 1 &&
                   bad->nres == 1 && !strcmp(bad->r[0].status, "failed"),
               "unknown recipe: %d final, %d retrying, %d dlq", bad->finals,
               bad->retrying, bad->dlq);
        size_t nonfinal = 0;
        sc_docs_final(&c, &nonfinal);
        CHECK(nonfinal == 0);

        /* Nothing left uncommitted once the poison is dead. */
        char buf[8192];
        par_clock_sleep_ms(1500);
        CHECK(su_http_get(node.port, "/status", buf, sizeof(buf)) == 200);
        CHECKF(strstr(buf, "\"uncommitted\":0") != NULL, "%s", buf);
        /* Alone in its group, the node holds every partition of the four
         * levels. */
        int by[4];
        int held = sc_node_held(&node, by);
        CHECKF(held == 4 * SU_PARTITIONS && by[0] == SU_PARTITIONS &&
                   by[1] == SU_PARTITIONS && by[2] == SU_PARTITIONS &&
                   by[3] == SU_PARTITIONS,
               "lone node holds %d: %d,%d,%d,%d", held, by[0], by[1], by[2],
               by[3]);
        fprintf(stderr,
                "   poison dead after 3 attempts in %.1f s; %d noop "
                "done before it; %d real spins done\n",
                longest / 1000.0, NNOOP, page_ok);

        CHECK(su_producer_stop(&node, SIGTERM, 40) == 0);
        sc_reader_destroy(&r);
        su_ledger_free(&l);
        sc_cleanup(&c);
        fx_server_stop(&fx);
        char path[700];
        snprintf(path, sizeof(path), "%s/page.json", dir);
        unlink(path);
        snprintf(path, sizeof(path), "%s/poison.json", dir);
        unlink(path);
        snprintf(path, sizeof(path), "%s/slow.json", dir);
        unlink(path);
        rmdir(dir);
}

TEST_MAIN(test_poison)
