/*
 * mongo_session_test.c — the session store against the MongoDB stand-in
 * (127.0.0.1:27017, or PARALLEL_TEST_MONGO_URI): save, load, replace,
 * list (metadata only), delete one, delete all. Keys with '.' and '$'
 * (legal in cookie names and storage keys, not in BSON field names)
 * survive the round trip.
 */
#include "base/clock.h"
#include "store/session.h"

#include "mongo_util.h"

static mu_world_t mw;

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

        REQUIRE(!par_session_store_new(&s, mw.pool, mw.db, mw.coll, &e));
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

MU_TEST_MAIN(mw, "sessions", test_roundtrip)
