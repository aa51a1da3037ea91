/*
 * mongo_claim_test.c — claim/lease/finish against MongoDB (the dev stack's
 * stand-in at 127.0.0.1:27017, or PARALLEL_TEST_MONGO_URI).
 *
 * Two threads race to claim the same signals: each is claimed exactly once.
 * A lapsed lease is claimable again with attempt + 1; terminal documents are
 * skipped; renew/finish only work for the holder; expired signals are
 * reported as such; release and reclaim-from-previous-owner work.
 *
 * Resource locks: two threads race to lock the same 100 fresh resources
 * (racing upserts): each is locked exactly once; a held lock is reported
 * with its holder, taken over once lapsed or from prev_owner; renew/unlock
 * only by the holder and for its signal. A claim moves to another owner
 * without counting an attempt (par_claim_transfer).
 */
#include "base/clock.h"
#include "store/claim.h"

#include <pthread.h>

#include "mongo_util.h"

#define N 200

static mu_world_t mw;
static char ids[N][25];
static pthread_barrier_t start;

typedef struct {
        const char *owner;
        int ok, leased, other, errors;
        bool mine[N];
} racer_t;

static void *race(void *arg)
{
        racer_t *r = arg;
        par_claim_t *c = NULL;
        par_error_t e;
        if (par_claim_new(&c, mw.pool, mw.db, mw.coll, r->owner, &e)) {
                r->errors++;
                pthread_barrier_wait(&start);
                return NULL;
        }
        pthread_barrier_wait(&start); /* both claim the same ids at once */
        for (int i = 0; i < N; i++) {
                par_claim_info_t info;
                if (par_claim_acquire(c, ids[i], NULL, par_clock_wall_ms(),
                                      60000, &info, &e)) {
                        fprintf(stderr, "acquire: %s\n", e.msg);
                        r->errors++;
                        continue;
                }
                if (info.outcome == PAR_CLAIM_OK) {
                        r->ok++;
                        r->mine[i] = true;
                } else if (info.outcome == PAR_CLAIM_LEASED) {
                        r->leased++;
                } else {
                        r->other++;
                }
        }
        par_claim_destroy(c);
        return NULL;
}

static mongoc_collection_t *get_coll(mongoc_client_t **cl)
{
        *cl = mongoc_client_pool_pop(mw.pool);
        return mongoc_client_get_collection(*cl, mw.db, mw.coll);
}

static void insert_pending(mongoc_collection_t *cl, const char *id_out_hex,
                           int64_t expires_at)
{
        bson_oid_t oid;
        bson_error_t be;
        bson_oid_init_from_string(&oid, id_out_hex);
        bson_t *doc =
            BCON_NEW("_id", BCON_OID(&oid), "priority", BCON_INT32(2), "recipe",
                     BCON_UTF8("noop"), "status", BCON_UTF8("pending"),
                     "created_at", BCON_DATE_TIME(par_clock_wall_ms()));
        if (expires_at)
                BSON_APPEND_DATE_TIME(doc, "expires_at", expires_at);
        bool ok = mongoc_collection_insert_one(cl, doc, NULL, NULL, &be);
        CHECKF(ok, "insert: %s", be.message);
        bson_destroy(doc);
}

#define NLOCK 100

typedef struct {
        const char *owner;
        int ok, leased, errors;
        bool mine[NLOCK];
} locker_t;

static pthread_barrier_t lstart;

static void *lock_race(void *arg)
{
        locker_t *r = arg;
        par_claim_t *c = NULL;
        par_error_t e;
        if (par_claim_new(&c, mw.pool, mw.db, mw.coll, r->owner, &e)) {
                r->errors++;
                pthread_barrier_wait(&lstart);
                return NULL;
        }
        pthread_barrier_wait(&lstart);
        for (int i = 0; i < NLOCK; i++) {
                char res[32];
                par_claim_info_t info;
                snprintf(res, sizeof(res), "res-%d", i);
                if (par_claim_lock(c, res, r->owner, NULL, par_clock_wall_ms(),
                                   60000, &info, &e)) {
                        fprintf(stderr, "lock: %s\n", e.msg);
                        r->errors++;
                } else if (info.outcome == PAR_CLAIM_OK) {
                        r->ok++;
                        r->mine[i] = true;
                } else if (info.outcome == PAR_CLAIM_LEASED) {
                        r->leased++;
                }
        }
        par_claim_destroy(c);
        return NULL;
}

static void test_lock(void)
{
        static locker_t a = {.owner = "nodeA/w1"}, b = {.owner = "nodeB/w1"};
        pthread_t ta, tb;
        par_claim_t *x = NULL, *y = NULL;
        par_claim_info_t info;
        par_error_t e;

        pthread_barrier_init(&lstart, NULL, 2);
        pthread_create(&ta, NULL, lock_race, &a);
        pthread_create(&tb, NULL, lock_race, &b);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        pthread_barrier_destroy(&lstart);
        fprintf(stderr, "   locks: A ok=%d held=%d; B ok=%d held=%d\n", a.ok,
                a.leased, b.ok, b.leased);
        CHECK(a.errors == 0 && b.errors == 0);
        CHECKF(a.ok + b.ok == NLOCK, "%d locks for %d resources", a.ok + b.ok,
               NLOCK);
        int both = 0;
        for (int i = 0; i < NLOCK; i++)
                both += a.mine[i] && b.mine[i];
        CHECK(both == 0);

        REQUIRE(par_claim_new(&x, mw.pool, mw.db, mw.coll, "nodeX/w1", &e) ==
                PAR_OK);
        REQUIRE(par_claim_new(&y, mw.pool, mw.db, mw.coll, "nodeY/w2", &e) ==
                PAR_OK);
        int64_t t = par_clock_wall_ms();
        CHECK(par_claim_lock(x, "r", "s1", NULL, t, 1000, &info, &e) == PAR_OK);
        CHECK(info.outcome == PAR_CLAIM_OK && info.lease_until == t + 1000);
        /* Held: y waits, and learns by whom and until when. */
        CHECK(par_claim_lock(y, "r", "s2", NULL, t + 10, 1000, &info, &e) ==
              PAR_OK);
        CHECK(info.outcome == PAR_CLAIM_LEASED);
        CHECK_STR(info.holder, "nodeX/w1");
        CHECK(info.lease_until == t + 1000);
        /* The holder may lock again (same worker, next signal). */
        CHECK(par_claim_lock(x, "r", "s1", NULL, t + 20, 1000, &info, &e) ==
              PAR_OK);
        CHECK(info.outcome == PAR_CLAIM_OK);
        /* Renew/unlock: only the holder, only for its signal. */
        CHECK(par_claim_lock_renew(y, "r", "s1", NULL, t + 30, 1000, &e) ==
              PAR_ERR_NOTFOUND);
        CHECK(par_claim_lock_renew(x, "r", "s2", NULL, t + 30, 1000, &e) ==
              PAR_ERR_NOTFOUND);
        CHECK(par_claim_lock_renew(x, "r", "s1", NULL, t + 30, 1000, &e) ==
              PAR_OK);
        CHECK(par_claim_unlock(y, "r", "s1", NULL, &e) == PAR_ERR_NOTFOUND);
        /* Lapsed: y takes it over. */
        CHECK(par_claim_lock(y, "r", "s2", NULL, t + 1020, 1000, &info, &e) ==
              PAR_OK);
        CHECK(info.outcome == PAR_CLAIM_LEASED);
        CHECK(par_claim_lock(y, "r", "s2", NULL, t + 1031, 1000, &info, &e) ==
              PAR_OK);
        CHECK(info.outcome == PAR_CLAIM_OK);
        CHECK(par_claim_lock_renew(x, "r", "s1", NULL, t + 1040, 1000, &e) ==
              PAR_ERR_NOTFOUND);
        CHECK(par_claim_unlock(x, "r", "s1", NULL, &e) == PAR_ERR_NOTFOUND);
        /* A retry on another worker takes the lock from prev_owner. */
        CHECK(par_claim_lock(x, "r", "s2", "nodeY/w2", t + 1050, 1000, &info,
                             &e) == PAR_OK);
        CHECK(info.outcome == PAR_CLAIM_OK);
        /* Unlock by the holder (renewer style: owner named) frees it. */
        CHECK(par_claim_unlock(y, "r", "s2", "nodeX/w1", &e) == PAR_OK);
        CHECK(par_claim_unlock(x, "r", "s2", NULL, &e) == PAR_ERR_NOTFOUND);
        CHECK(par_claim_lock(y, "r", "s3", NULL, t + 1060, 1000, &info, &e) ==
              PAR_OK);
        CHECK(info.outcome == PAR_CLAIM_OK);
        CHECK(par_claim_unlock(y, "r", "s3", NULL, &e) == PAR_OK);

        /* Transfer: the claim moves, attempt unchanged. */
        mongoc_client_t *cl;
        mongoc_collection_t *col = get_coll(&cl);
        bson_oid_t oid;
        char id[25];
        bson_oid_init(&oid, NULL);
        bson_oid_to_string(&oid, id);
        insert_pending(col, id, 0);
        t = par_clock_wall_ms();
        CHECK(par_claim_acquire(x, id, NULL, t, 60000, &info, &e) == PAR_OK);
        CHECK(info.outcome == PAR_CLAIM_OK && info.attempt == 1);
        CHECK(par_claim_transfer(y, id, "nodeZ/w9", t, 60000, &e) ==
              PAR_ERR_NOTFOUND);
        CHECK(par_claim_transfer(y, id, "nodeX/w1", t, 60000, &e) == PAR_OK);
        CHECK(par_claim_finish(x, id, "done", NULL, NULL, t, &e) ==
              PAR_ERR_NOTFOUND);
        CHECK(par_claim_finish(y, id, "done", NULL, NULL, t, &e) == PAR_OK);
        CHECK(par_claim_acquire(x, id, NULL, t, 60000, &info, &e) == PAR_OK);
        CHECK(info.outcome == PAR_CLAIM_TERMINAL && info.attempt == 1);
        /* Given back unrun (it only waited for a lock): attempt uncounted. */
        bson_oid_init(&oid, NULL);
        bson_oid_to_string(&oid, id);
        insert_pending(col, id, 0);
        CHECK(par_claim_acquire(x, id, NULL, t, 60000, &info, &e) == PAR_OK);
        CHECK(info.outcome == PAR_CLAIM_OK && info.attempt == 1);
        CHECK(par_claim_release(x, id, NULL, true, &e) == PAR_OK);
        CHECK(par_claim_acquire(y, id, NULL, t, 60000, &info, &e) == PAR_OK);
        CHECK(info.outcome == PAR_CLAIM_OK && info.attempt == 1);

        mongoc_collection_destroy(col);
        mongoc_client_pool_push(mw.pool, cl);
        par_claim_destroy(x);
        par_claim_destroy(y);
}

static void test_race(void)
{
        mongoc_client_t *cl;
        mongoc_collection_t *col = get_coll(&cl);
        for (int i = 0; i < N; i++) {
                bson_oid_t oid;
                bson_oid_init(&oid, NULL);
                bson_oid_to_string(&oid, ids[i]);
                insert_pending(col, ids[i], 0);
        }
        static racer_t a = {.owner = "nodeA/w1"}, b = {.owner = "nodeB/w1"};
        pthread_t ta, tb;
        pthread_barrier_init(&start, NULL, 2);
        pthread_create(&ta, NULL, race, &a);
        pthread_create(&tb, NULL, race, &b);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        fprintf(stderr, "   A ok=%d leased=%d; B ok=%d leased=%d\n", a.ok,
                a.leased, b.ok, b.leased);
        CHECK(a.errors == 0 && b.errors == 0);
        CHECK(a.other == 0 && b.other == 0);
        CHECKF(a.ok + b.ok == N, "%d claims for %d signals", a.ok + b.ok, N);
        int both = 0, none = 0;
        for (int i = 0; i < N; i++) {
                both += a.mine[i] && b.mine[i];
                none += !a.mine[i] && !b.mine[i];
        }
        CHECK(both == 0 && none == 0);
        /* Every document says who holds it, with attempt 1. */
        int agree = 0;
        for (int i = 0; i < N; i++) {
                bson_oid_t oid;
                bson_oid_init_from_string(&oid, ids[i]);
                bson_t *q = BCON_NEW("_id", BCON_OID(&oid));
                mongoc_cursor_t *cur =
                    mongoc_collection_find_with_opts(col, q, NULL, NULL);
                const bson_t *d;
                if (mongoc_cursor_next(cur, &d)) {
                        bson_iter_t it;
                        const char *by = NULL;
                        int att = 0;
                        if (bson_iter_init_find(&it, d, "claimed_by"))
                                by = bson_iter_utf8(&it, NULL);
                        if (bson_iter_init_find(&it, d, "attempt"))
                                att = (int)bson_iter_as_int64(&it);
                        const char *want = a.mine[i] ? "nodeA/w1" : "nodeB/w1";
                        agree += by && !strcmp(by, want) && att == 1;
                }
                mongoc_cursor_destroy(cur);
                bson_destroy(q);
        }
        CHECK(agree == N);
        mongoc_collection_destroy(col);
        mongoc_client_pool_push(mw.pool, cl);
}

static void test_lease_terminal_expired(void)
{
        par_claim_t *x = NULL, *y = NULL;
        par_claim_info_t info;
        par_error_t e;
        mongoc_client_t *cl;
        mongoc_collection_t *col = get_coll(&cl);
        char id[25], id2[25];
        bson_oid_t oid;

        REQUIRE(par_claim_new(&x, mw.pool, mw.db, mw.coll, "nodeX/w1", &e) ==
                PAR_OK);
        REQUIRE(par_claim_new(&y, mw.pool, mw.db, mw.coll, "nodeY/w2", &e) ==
                PAR_OK);
        bson_oid_init(&oid, NULL);
        bson_oid_to_string(&oid, id);
        insert_pending(col, id, 0);

        int64_t t = par_clock_wall_ms();
        CHECK(par_claim_acquire(x, id, NULL, t, 1000, &info, &e) == PAR_OK);
        CHECK(info.outcome == PAR_CLAIM_OK && info.attempt == 1);
        /* Y sees a live lease held by X. */
        CHECK(par_claim_acquire(y, id, NULL, t + 10, 1000, &info, &e) ==
              PAR_OK);
        CHECK(info.outcome == PAR_CLAIM_LEASED);
        CHECK_STR(info.holder, "nodeX/w1");
        CHECK(info.lease_until == t + 1000);
        /* Renew: only the holder. */
        CHECK(par_claim_renew(y, id, NULL, t + 20, 1000, &e) ==
              PAR_ERR_NOTFOUND);
        CHECK(par_claim_renew(x, id, NULL, t + 500, 1000, &e) == PAR_OK);
        CHECK(par_claim_renew(y, id, "nodeX/w1", t + 500, 1000, &e) ==
              PAR_OK); /* a renewer acting for X */
        CHECK(par_claim_acquire(y, id, NULL, t + 1400, 1000, &info, &e) ==
              PAR_OK);
        CHECK(info.outcome == PAR_CLAIM_LEASED); /* renewed to t+1500 */
        /* After the lease lapses, Y takes it over with attempt 2. */
        CHECK(par_claim_acquire(y, id, NULL, t + 1600, 1000, &info, &e) ==
              PAR_OK);
        CHECK(info.outcome == PAR_CLAIM_OK && info.attempt == 2);
        /* X lost it: its finish is refused; Y's finish wins. */
        CHECK(par_claim_finish(x, id, "done", NULL, NULL, t + 1700, &e) ==
              PAR_ERR_NOTFOUND);
        bson_t *res = BCON_NEW("status", BCON_UTF8("done"));
        CHECK(par_claim_finish(y, id, "done", res, NULL, t + 1700, &e) ==
              PAR_OK);
        bson_destroy(res);
        /* Terminal: skipped, whoever asks, however late. */
        CHECK(par_claim_acquire(x, id, NULL, t + 999999, 1000, &info, &e) ==
              PAR_OK);
        CHECK(info.outcome == PAR_CLAIM_TERMINAL);
        CHECK_STR(info.status, "done");
        CHECK(info.attempt == 2);

        /* Not found. */
        CHECK(par_claim_acquire(x, "65a1b2c3d4e5f60718293a4b", NULL, t, 1000,
                                &info, &e) == PAR_OK);
        CHECK(info.outcome == PAR_CLAIM_NOTFOUND);

        /* Expired: claimed (so nobody runs it) and reported as expired. */
        bson_oid_init(&oid, NULL);
        bson_oid_to_string(&oid, id2);
        insert_pending(col, id2, t - 1);
        CHECK(par_claim_acquire(x, id2, NULL, t, 1000, &info, &e) == PAR_OK);
        CHECK(info.outcome == PAR_CLAIM_EXPIRED);
        CHECK(par_claim_finish(x, id2, "expired", NULL, "expired", t, &e) ==
              PAR_OK);
        CHECK(par_claim_acquire(y, id2, NULL, t, 1000, &info, &e) == PAR_OK);
        CHECK(info.outcome == PAR_CLAIM_TERMINAL);
        CHECK_STR(info.status, "expired");

        /* Release and reclaim-from-previous-owner (local retries). */
        bson_oid_init(&oid, NULL);
        bson_oid_to_string(&oid, id2);
        insert_pending(col, id2, 0);
        CHECK(par_claim_acquire(x, id2, NULL, t, 60000, &info, &e) == PAR_OK);
        CHECK(info.outcome == PAR_CLAIM_OK && info.attempt == 1);
        CHECK(par_claim_acquire(y, id2, "nodeZ/w9", t, 60000, &info, &e) ==
              PAR_OK);
        CHECK(info.outcome == PAR_CLAIM_LEASED);
        CHECK(par_claim_acquire(y, id2, "nodeX/w1", t, 60000, &info, &e) ==
              PAR_OK);
        CHECK(info.outcome == PAR_CLAIM_OK && info.attempt == 2);
        CHECK(par_claim_release(x, id2, "boom", false, &e) == PAR_ERR_NOTFOUND);
        CHECK(par_claim_release(y, id2, "boom", false, &e) == PAR_OK);
        CHECK(par_claim_acquire(x, id2, NULL, t, 60000, &info, &e) == PAR_OK);
        CHECK(info.outcome == PAR_CLAIM_OK && info.attempt == 3);

        par_claim_destroy(x);
        par_claim_destroy(y);
        par_claim_destroy(NULL);
        mongoc_collection_destroy(col);
        mongoc_client_pool_push(mw.pool, cl);
}

MU_TEST_MAIN(mw, "claim", test_race, test_lease_terminal_expired, test_lock)
