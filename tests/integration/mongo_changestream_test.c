/*
 * mongo_changestream_test.c — libmongoc change streams against the MongoDB
 * the stack runs (deploy/dev/stack: the mongo-java-server stand-in), used the
 * way parallel-producer uses them: a collection-level stream with
 * fullDocument "updateLookup" and a $match on inserts, read by polling, its
 * resume token saved after each event and handed back as resumeAfter.
 *
 * What must hold, in order:
 *   1. an insert is seen (an update in between is filtered by the $match);
 *   2. a stream reopened with a saved token sees exactly the events after
 *      the token, including those written while no one watched;
 *   3. across a restart of the server (`stack restart mongo`, or
 *      PARALLEL_TEST_MONGO_RESTART): documents written before it are still
 *      there; a stream left open resumes by itself and sees an insert made
 *      after it; a stream opened anew from a token saved before it sees
 *      exactly the events after that token.
 *
 * The stand-in's getMore never waits (awaitData is ignored), so next() keeps
 * returning an empty batch: poll with a short back-off. Its event counter
 * restarts every second and H2 commits once a second, hence the >1 s pauses
 * around the restart. Each run uses its own collection and drops it.
 */
#include <mongoc/mongoc.h>

#include "base/clock.h"
#include "mongo_util.h"

#define WAIT_S 15.0

static mu_world_t mw;
static bson_t *token_after_1; /* resume token saved after seq 1 */
static bson_t *token_after_4;
static bool restarted;

static mongoc_collection_t *coll_get(mongoc_client_t *c)
{
        return mongoc_client_get_collection(c, mw.db, mw.coll);
}

static bool insert_seq(int seq)
{
        mongoc_client_t *c = mongoc_client_pool_pop(mw.pool);
        mongoc_collection_t *coll = coll_get(c);
        bson_t *doc = BCON_NEW("seq", BCON_INT32(seq), "kind", "test");
        bson_error_t error;
        bool ok = mongoc_collection_insert_one(coll, doc, NULL, NULL, &error);
        if (!ok)
                fprintf(stderr, "insert seq %d: %s\n", seq, error.message);
        bson_destroy(doc);
        mongoc_collection_destroy(coll);
        mongoc_client_pool_push(mw.pool, c);
        return ok;
}

static bool update_seq(int seq)
{
        mongoc_client_t *c = mongoc_client_pool_pop(mw.pool);
        mongoc_collection_t *coll = coll_get(c);
        bson_t *sel = BCON_NEW("seq", BCON_INT32(seq));
        bson_t *upd = BCON_NEW("$set", "{", "touched", BCON_BOOL(true), "}");
        bson_error_t error;
        bool ok =
            mongoc_collection_update_one(coll, sel, upd, NULL, NULL, &error);
        if (!ok)
                fprintf(stderr, "update seq %d: %s\n", seq, error.message);
        bson_destroy(upd);
        bson_destroy(sel);
        mongoc_collection_destroy(coll);
        mongoc_client_pool_push(mw.pool, c);
        return ok;
}

static int64_t count_docs(void)
{
        mongoc_client_t *c = mongoc_client_pool_pop(mw.pool);
        mongoc_collection_t *coll = coll_get(c);
        bson_t filter = BSON_INITIALIZER;
        bson_error_t error;
        int64_t n = mongoc_collection_count_documents(coll, &filter, NULL, NULL,
                                                      NULL, &error);
        if (n < 0)
                fprintf(stderr, "count: %s\n", error.message);
        mongoc_collection_destroy(coll);
        mongoc_client_pool_push(mw.pool, c);
        return n;
}

/*
 * A watcher: a client taken from the pool for the stream's whole life. Open
 * fails closed: on error nothing is left to release.
 */
typedef struct {
        mongoc_client_t *client;
        mongoc_collection_t *coll;
        mongoc_change_stream_t *cs;
        bson_t *token; /* after the last event read, owned */
} watcher_t;

static void watcher_close(watcher_t *w)
{
        mongoc_change_stream_destroy(w->cs);
        mongoc_collection_destroy(w->coll);
        if (w->client)
                mongoc_client_pool_push(mw.pool, w->client);
        if (w->token)
                bson_destroy(w->token);
        memset(w, 0, sizeof(*w));
}

static bool watcher_open(watcher_t *w, const bson_t *resume_after)
{
        bson_t *pipeline = BCON_NEW("pipeline", "[", "{", "$match", "{",
                                    "operationType", "insert", "}", "}", "]");
        bson_t opts = BSON_INITIALIZER;
        const bson_t *reply;
        bson_error_t error;
        bool ok;

        BSON_APPEND_UTF8(&opts, "fullDocument", "updateLookup");
        BSON_APPEND_INT32(&opts, "maxAwaitTimeMS", 200);
        if (resume_after)
                BSON_APPEND_DOCUMENT(&opts, "resumeAfter", resume_after);
        memset(w, 0, sizeof(*w));
        w->client = mongoc_client_pool_pop(mw.pool);
        w->coll = coll_get(w->client);
        w->cs = mongoc_collection_watch(w->coll, pipeline, &opts);
        ok = !mongoc_change_stream_error_document(w->cs, &error, &reply);
        if (!ok) {
                fprintf(stderr, "watch: %s\n", error.message);
                watcher_close(w);
        }
        bson_destroy(&opts);
        bson_destroy(pipeline);
        return ok;
}

/*
 * Reads events until `want` were seen or WAIT_S passed, storing each
 * fullDocument.seq in seqs[]. Returns how many were read, -1 on a stream
 * error. Checks each event's shape on the way.
 */
static int watcher_read(watcher_t *w, int *seqs, int want, double wait_s)
{
        double deadline = par_clock_mono_s() + wait_s, backoff = 0.01;
        int n = 0;

        while (n < want && par_clock_mono_s() < deadline) {
                const bson_t *ev, *reply;
                bson_error_t error;
                bson_iter_t it, seq;

                if (!mongoc_change_stream_next(w->cs, &ev)) {
                        if (mongoc_change_stream_error_document(w->cs, &error,
                                                                &reply)) {
                                fprintf(stderr, "stream error: %s\n",
                                        error.message);
                                return -1;
                        }
                        par_clock_sleep_ms((int64_t)(backoff * 1000));
                        backoff = backoff * 2 > 0.2 ? 0.2 : backoff * 2;
                        continue;
                }
                backoff = 0.01;
                CHECKF(bson_iter_init_find(&it, ev, "operationType") &&
                           BSON_ITER_HOLDS_UTF8(&it) &&
                           !strcmp(bson_iter_utf8(&it, NULL), "insert"),
                       "event is not an insert");
                seqs[n] = -1;
                if (bson_iter_init(&it, ev) &&
                    bson_iter_find_descendant(&it, "fullDocument.seq", &seq) &&
                    BSON_ITER_HOLDS_INT32(&seq))
                        seqs[n] = bson_iter_int32(&seq);
                CHECKF(seqs[n] >= 0, "event without fullDocument.seq");
                n++;
                if (w->token)
                        bson_destroy(w->token);
                w->token =
                    bson_copy(mongoc_change_stream_get_resume_token(w->cs));
        }
        return n;
}

/* Reads `n` events and checks they carry exactly the seqs first..first+n-1. */
static void expect_seqs(watcher_t *w, int first, int n, const char *what)
{
        int got[16], k, i;

        k = watcher_read(w, got, n, WAIT_S);
        CHECKF(k == n, "%s: read %d of %d events", what, k, n);
        for (i = 0; i < k && i < n; i++)
                CHECKF(got[i] == first + i, "%s: event %d has seq %d, want %d",
                       what, i, got[i], first + i);
}

/* Nothing more arrives within `s` seconds. */
static void expect_quiet(watcher_t *w, double s, const char *what)
{
        int got[4];
        int k = watcher_read(w, got, 1, s);
        CHECKF(k == 0, "%s: unexpected event (seq %d)", what,
               k > 0 ? got[0] : -1);
}

static void test_sees_insert(void)
{
        watcher_t w;

        REQUIRE(watcher_open(&w, NULL));
        REQUIRE(insert_seq(1));
        CHECK(update_seq(1)); /* filtered out by the $match */
        REQUIRE(insert_seq(2));
        {
                int got[2];
                int k = watcher_read(&w, got, 1, WAIT_S);
                CHECKF(k == 1 && got[0] == 1, "first event: k=%d seq=%d", k,
                       k > 0 ? got[0] : -1);
                REQUIRE(w.token);
                token_after_1 = bson_copy(w.token);
        }
        expect_seqs(&w, 2, 1, "after the update");
        expect_quiet(&w, 0.5, "sees_insert");
        watcher_close(&w);
}

static void test_resume_after_token(void)
{
        watcher_t w;

        REQUIRE(token_after_1);
        /* Written while nobody watches. */
        REQUIRE(insert_seq(3));
        REQUIRE(insert_seq(4));
        REQUIRE(watcher_open(&w, token_after_1));
        expect_seqs(&w, 2, 3, "resumed after seq 1");
        expect_quiet(&w, 0.5, "resume_after_token");
        if (w.token)
                token_after_4 = bson_copy(w.token);
        watcher_close(&w);
        CHECK(token_after_4 != NULL);
}

static bool restart_server(void)
{
        char cmd[1024];
        const char *custom = getenv("PARALLEL_TEST_MONGO_RESTART");
        int rc;

        if (custom && *custom)
                snprintf(cmd, sizeof(cmd), "%s", custom);
        else
                snprintf(cmd, sizeof(cmd),
                         "'%s/deploy/dev/stack' restart mongo",
                         tu_env("PARALLEL_SOURCE_DIR", "."));
        fprintf(stderr, "running: %s\n", cmd);
        rc = system(cmd);
        if (rc != 0)
                fprintf(stderr, "restart command exited with %d\n", rc);
        return rc == 0;
}

static void test_resume_across_restart(void)
{
        watcher_t live, fresh;
        bson_t *token_after_5;
        int64_t ndocs;

        REQUIRE(token_after_4);
        REQUIRE(insert_seq(5));
        REQUIRE(watcher_open(&live, token_after_4));
        expect_seqs(&live, 5, 1, "before restart");
        REQUIRE(live.token);
        token_after_5 = bson_copy(live.token);

        par_clock_sleep_ms(1200);
        restarted = restart_server();
        REQUIRE(restarted);
        par_clock_sleep_ms(1200);

        ndocs = count_docs();
        CHECKF(ndocs == 5, "documents after restart: %lld, want 5",
               (long long)ndocs);
        CHECK(insert_seq(6));

        /* The open stream hits a dead connection; libmongoc resumes it. */
        expect_seqs(&live, 6, 1, "stream left open across the restart");
        watcher_close(&live);

        /* A new stream from a token saved before the restart. */
        CHECK(watcher_open(&fresh, token_after_5));
        expect_seqs(&fresh, 6, 1, "reopened after restart");
        expect_quiet(&fresh, 0.5, "after restart");
        watcher_close(&fresh);
        bson_destroy(token_after_5);
}

static int setup(void)
{
        return mu_setup(&mw, "changestream");
}

static void teardown(void)
{
        if (token_after_1)
                bson_destroy(token_after_1);
        if (token_after_4)
                bson_destroy(token_after_4);
        mu_teardown(&mw);
}

TEST_MAIN_WITH(setup, teardown, test_sees_insert, test_resume_after_token,
               test_resume_across_restart)
