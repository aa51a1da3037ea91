/*
 * mongo_session_test.c — the session store against the MongoDB stand-in
 * (127.0.0.1:27017, or PARALLEL_TEST_MONGO_URI): save, load, replace,
 * list (metadata only), delete one, delete all. Keys with '.' and '$'
 * (legal in cookie names and storage keys, not in BSON field names)
 * survive the round trip.
 */
#include "base/clock.h"
#include "store/session.h"

#include <unistd.h>

#include "testutil.h"

static mongoc_client_pool_t *pool;
static char db[64] = "parallel_test", coll[64];

static json_t *snap(const char *user)
{
        return json_pack("{s:i,s:[{s:s,s:s,s:s,s:s}],s:{s:{s:{s:s},s:{}}}}",
                         "v", 1, "cookies", "name", "sid", "value", user,
                         "domain", "127.0.0.1", "path", "/", "origins",
                         "http://127.0.0.1:1", "local", "$odd.key", user,
                         "session");
}

static void test_roundtrip(void)
{
        par_session_store_t *s = NULL;
        par_session_info_t *v = NULL;
        par_error_t e = {0};
        json_t *a = snap("alice"), *b = snap("alice-2"), *got = NULL;
        size_t n = 0;
        int64_t k = 0;

        REQUIRE(!par_session_store_new(&s, pool, db, coll, &e));
        CHECK(!par_session_load(s, "acct/1", &got, &e) && !got);
        CHECKF(!par_session_save(s, "acct/1", a, "node-a/w0",
                                 par_clock_wall_ms(), &e),
               "%s", e.msg);
        CHECK(!par_session_load(s, "acct/1", &got, &e));
        CHECK(got && json_equal(got, a));
        json_decref(got);
        got = NULL;
        /* a later save replaces it */
        CHECK(!par_session_save(s, "acct/1", b, "node-b/w1",
                                par_clock_wall_ms(), &e));
        CHECK(!par_session_save(s, "acct/2", a, "node-a/w0",
                                par_clock_wall_ms(), &e));
        CHECK(!par_session_load(s, "acct/1", &got, &e));
        CHECK(got && json_equal(got, b));
        json_decref(got);
        got = NULL;
        CHECK(!par_session_list(s, 100, &v, &n, &e));
        CHECK(n == 2);
        for (size_t i = 0; i < n; i++) {
                CHECK(v[i].cookies == 1 && v[i].origins == 1);
                CHECK(v[i].bytes > 20 && v[i].updated_at > 0);
                if (!strcmp(v[i].resource, "acct/1"))
                        CHECK_STR(v[i].node, "node-b/w1");
        }
        free(v);
        CHECK(!par_session_delete(s, "acct/1", &k, &e) && k == 1);
        CHECK(!par_session_load(s, "acct/1", &got, &e) && !got);
        CHECK(!par_session_delete(s, "acct/1", &k, &e) && k == 0);
        CHECK(!par_session_delete(s, NULL, &k, &e) && k == 1);
        CHECK(!par_session_load(s, "acct/2", &got, &e) && !got);
        json_decref(a);
        json_decref(b);
        par_session_store_destroy(s);
}

static mongoc_uri_t *uri;

static int setup(void)
{
        const char *uri_s =
            tu_env("PARALLEL_TEST_MONGO_URI", "mongodb://127.0.0.1:27017");
        bson_error_t be;

        mongoc_init();
        if (!(uri = mongoc_uri_new_with_error(uri_s, &be))) {
                fprintf(stderr, "bad uri %s: %s\n", uri_s, be.message);
                return 1;
        }
        pool = mongoc_client_pool_new(uri);
        snprintf(coll, sizeof(coll), "sessions_%d_%ld", (int)getpid(),
                 (long)time(NULL));
        return 0;
}

static void teardown(void)
{
        mongoc_client_t *cl = mongoc_client_pool_pop(pool);
        mongoc_collection_t *c = mongoc_client_get_collection(cl, db, coll);
        mongoc_collection_drop(c, NULL);
        mongoc_collection_destroy(c);
        mongoc_client_pool_push(pool, cl);
        mongoc_client_pool_destroy(pool);
        mongoc_uri_destroy(uri);
        mongoc_cleanup();
}

TEST_MAIN_WITH(setup, teardown, test_roundtrip)
