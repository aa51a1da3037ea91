/*
 * mongo_claim_batch_test.c — claims and finishes in batches
 * (par_claim_acquire_batch, par_claim_finish_batch) against MongoDB (the
 * dev stack's stand-in at 127.0.0.1:27017, or PARALLEL_TEST_MONGO_URI).
 *
 * A mixed batch (pending, terminal, leased by another, lapsed, missing,
 * expired, a string _id, a repeated id) gets what the single claim would
 * say of each, and the documents agree; two threads batch-claiming the same
 * ids in different orders and batch sizes claim each exactly once with
 * attempt 1; a batch finish writes only where its owner still holds the
 * claim, says which were fenced off, and is safe to repeat (at the same
 * time; at another, the earlier write is not its own); a batch renewal
 * extends only the owner's leases and says which it lost; the round trips
 * of a call (counted by the driver's command monitoring) do not grow with
 * the batch.
 */
#include "base/clock.h"
#include "store/claim.h"

#include <pthread.h>
#include <stdatomic.h>

#include "mongo_util.h"

#define NRACE 240

static mu_world_t mw;

static mongoc_collection_t *get_coll(mongoc_client_t **cl)
{
        *cl = mongoc_client_pool_pop(mw.pool);
        return mongoc_client_get_collection(*cl, mw.db, mw.coll);
}

static void new_id(char id[25])
{
        bson_oid_t oid;
        bson_oid_init(&oid, NULL);
        bson_oid_to_string(&oid, id);
}

/* Inserts a document with _id id (an ObjectId when 24 hex characters),
 * status, and the given claim fields (holder NULL: none). */
static void insert(mongoc_collection_t *col, const char *id, const char *status,
                   const char *holder, int64_t lease_until, int32_t attempt,
                   int64_t expires_at)
{
        bson_error_t be;
        bson_t *doc = bson_new();
        if (strlen(id) == 24) {
                bson_oid_t oid;
                bson_oid_init_from_string(&oid, id);
                BSON_APPEND_OID(doc, "_id", &oid);
        } else {
                BSON_APPEND_UTF8(doc, "_id", id);
        }
        BSON_APPEND_UTF8(doc, "status", status);
        BSON_APPEND_UTF8(doc, "recipe", "noop");
        BSON_APPEND_INT32(doc, "priority", 2);
        BSON_APPEND_INT32(doc, "attempt", attempt);
        if (holder) {
                BSON_APPEND_UTF8(doc, "claimed_by", holder);
                BSON_APPEND_DATE_TIME(doc, "lease_until", lease_until);
        }
        if (expires_at)
                BSON_APPEND_DATE_TIME(doc, "expires_at", expires_at);
        bool ok = mongoc_collection_insert_one(col, doc, NULL, NULL, &be);
        CHECKF(ok, "insert: %s", be.message);
        bson_destroy(doc);
}

/* The document of id as it is now (NULL: none); caller destroys. */
static bson_t *read_doc(mongoc_collection_t *col, const char *id)
{
        bson_t *q = bson_new();
        if (strlen(id) == 24) {
                bson_oid_t oid;
                bson_oid_init_from_string(&oid, id);
                BSON_APPEND_OID(q, "_id", &oid);
        } else {
                BSON_APPEND_UTF8(q, "_id", id);
        }
        mongoc_cursor_t *cur =
            mongoc_collection_find_with_opts(col, q, NULL, NULL);
        const bson_t *d;
        bson_t *out = mongoc_cursor_next(cur, &d) ? bson_copy(d) : NULL;
        mongoc_cursor_destroy(cur);
        bson_destroy(q);
        return out;
}

static const char *field_str(const bson_t *d, const char *k)
{
        bson_iter_t it;
        return d && bson_iter_init_find(&it, d, k) && BSON_ITER_HOLDS_UTF8(&it)
                   ? bson_iter_utf8(&it, NULL)
                   : "";
}

static int field_int(const bson_t *d, const char *k)
{
        bson_iter_t it;
        return d && bson_iter_init_find(&it, d, k)
                   ? (int)bson_iter_as_int64(&it)
                   : -1;
}

static void test_mixed(void)
{
        mongoc_client_t *cl;
        mongoc_collection_t *col = get_coll(&cl);
        par_claim_t *x = NULL;
        par_error_t e;
        int64_t t = par_clock_wall_ms();
        char pend1[25], pend2[25], done[25], leased[25], lapsed[25],
            missing[25], expired[25], str[64];

        new_id(pend1);
        new_id(pend2);
        new_id(done);
        new_id(leased);
        new_id(lapsed);
        new_id(missing);
        new_id(expired);
        snprintf(str, sizeof(str), "sig-%lld", (long long)t);
        insert(col, pend1, "pending", NULL, 0, 0, 0);
        insert(col, pend2, "pending", NULL, 0, 0, t + 600000);
        insert(col, done, "done", NULL, 0, 1, 0);
        insert(col, leased, "claimed", "nodeY/w2", t + 60000, 1, 0);
        insert(col, lapsed, "claimed", "nodeY/w2", t - 1, 1, 0);
        insert(col, expired, "pending", NULL, 0, 0, t - 1);
        insert(col, str, "pending", NULL, 0, 0, 0);

        REQUIRE(par_claim_new(&x, mw.pool, mw.db, mw.coll, "nodeX/w1", &e) ==
                PAR_OK);
        const char *ids[] = {pend1,   done, leased, lapsed, missing,
                             expired, str,  pend2,  pend1};
        size_t n = sizeof(ids) / sizeof(*ids);
        par_claim_info_t in[9];
        CHECK(par_claim_acquire_batch(x, ids, n, t, 30000, in, &e) == PAR_OK);
        CHECK(in[0].outcome == PAR_CLAIM_OK && in[0].attempt == 1 &&
              in[0].lease_until == t + 30000 && in[0].claimed_at == t);
        CHECK(in[1].outcome == PAR_CLAIM_TERMINAL && in[1].attempt == 1);
        CHECK_STR(in[1].status, "done");
        CHECK(in[2].outcome == PAR_CLAIM_LEASED &&
              in[2].lease_until == t + 60000);
        CHECK_STR(in[2].holder, "nodeY/w2");
        CHECK(in[3].outcome == PAR_CLAIM_OK && in[3].attempt == 2);
        CHECK(in[4].outcome == PAR_CLAIM_NOTFOUND);
        CHECK(in[5].outcome == PAR_CLAIM_EXPIRED && in[5].attempt == 1 &&
              in[5].expires_at == t - 1);
        CHECK(in[6].outcome == PAR_CLAIM_OK && in[6].attempt == 1);
        CHECK(in[7].outcome == PAR_CLAIM_OK && in[7].expires_at == t + 600000);
        /* Repeated: claimed once (above), reported held at its later
         * place. */
        CHECK(in[8].outcome == PAR_CLAIM_LEASED);
        CHECK_STR(in[8].holder, "nodeX/w1");

        /* The documents agree: held by X where X claimed, untouched
         * elsewhere; attempt counted once. */
        const char *mine[] = {pend1, lapsed, expired, str, pend2};
        for (size_t i = 0; i < 5; i++) {
                bson_t *d = read_doc(col, mine[i]);
                CHECKF(!strcmp(field_str(d, "claimed_by"), "nodeX/w1") &&
                           !strcmp(field_str(d, "status"), "claimed"),
                       "%s: claimed_by=%s", mine[i],
                       field_str(d, "claimed_by"));
                CHECK(field_int(d, "attempt") == (mine[i] == lapsed ? 2 : 1));
                bson_destroy(d);
        }
        bson_t *d = read_doc(col, leased);
        CHECK_STR(field_str(d, "claimed_by"), "nodeY/w2");
        CHECK(field_int(d, "attempt") == 1);
        bson_destroy(d);
        d = read_doc(col, done);
        CHECK_STR(field_str(d, "status"), "done");
        bson_destroy(d);

        /* Again: every claim already held (by X now) is leased. */
        CHECK(par_claim_acquire_batch(x, ids, 4, t + 10, 30000, in, &e) ==
              PAR_OK);
        CHECK(in[0].outcome == PAR_CLAIM_LEASED && in[0].attempt == 1);
        CHECK_STR(in[0].holder, "nodeX/w1");
        CHECK(in[3].outcome == PAR_CLAIM_LEASED && in[3].attempt == 2);
        /* The single claim and the batch agree on the same document. */
        par_claim_info_t one;
        CHECK(par_claim_acquire(x, pend1, NULL, t + 10, 30000, &one, &e) ==
              PAR_OK);
        CHECK(one.outcome == in[0].outcome && one.attempt == in[0].attempt);
        /* Empty batch: nothing asked, nothing said. */
        CHECK(par_claim_acquire_batch(x, ids, 0, t, 30000, in, &e) == PAR_OK);

        par_claim_destroy(x);
        mongoc_collection_destroy(col);
        mongoc_client_pool_push(mw.pool, cl);
}

static char race_ids[NRACE][25];
static pthread_barrier_t start;

typedef struct {
        const char *owner;
        size_t batch;
        bool reverse;
        int ok, leased, other, errors;
        bool mine[NRACE];
} racer_t;

static void *race(void *arg)
{
        racer_t *r = arg;
        par_claim_t *c = NULL;
        par_error_t e;
        int err = par_claim_new(&c, mw.pool, mw.db, mw.coll, r->owner, &e);
        pthread_barrier_wait(&start);
        if (err) {
                r->errors++;
                return NULL;
        }
        for (size_t i = 0; i < NRACE; i += r->batch) {
                const char *ids[64];
                size_t idx[64], n = 0;
                par_claim_info_t in[64];
                for (size_t k = i; k < NRACE && k < i + r->batch; k++) {
                        idx[n] = r->reverse ? NRACE - 1 - k : k;
                        ids[n] = race_ids[idx[n]];
                        n++;
                }
                if (par_claim_acquire_batch(c, ids, n, par_clock_wall_ms(),
                                            60000, in, &e)) {
                        fprintf(stderr, "batch: %s\n", e.msg);
                        r->errors++;
                        continue;
                }
                for (size_t k = 0; k < n; k++) {
                        if (in[k].outcome == PAR_CLAIM_OK) {
                                r->ok++;
                                r->mine[idx[k]] = true;
                        } else if (in[k].outcome == PAR_CLAIM_LEASED) {
                                r->leased++;
                        } else {
                                r->other++;
                        }
                }
        }
        par_claim_destroy(c);
        return NULL;
}

static void test_race(void)
{
        mongoc_client_t *cl;
        mongoc_collection_t *col = get_coll(&cl);
        static racer_t a = {.owner = "nodeA/w1", .batch = 16},
                       b = {.owner = "nodeB/w1", .batch = 23, .reverse = true};
        pthread_t ta, tb;

        for (int i = 0; i < NRACE; i++) {
                new_id(race_ids[i]);
                /* A third lapsed: taken over once, attempt 1 → 2. */
                if (i % 3 == 0)
                        insert(col, race_ids[i], "claimed", "nodeDead/w0",
                               par_clock_wall_ms() - 1000, 1, 0);
                else
                        insert(col, race_ids[i], "pending", NULL, 0, 0, 0);
        }
        pthread_barrier_init(&start, NULL, 2);
        pthread_create(&ta, NULL, race, &a);
        pthread_create(&tb, NULL, race, &b);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        pthread_barrier_destroy(&start);
        fprintf(stderr, "   A ok=%d leased=%d; B ok=%d leased=%d\n", a.ok,
                a.leased, b.ok, b.leased);
        CHECK(a.errors == 0 && b.errors == 0);
        CHECK(a.other == 0 && b.other == 0);
        CHECKF(a.ok + b.ok == NRACE, "%d claims for %d signals", a.ok + b.ok,
               NRACE);
        int both = 0, none = 0, agree = 0;
        for (int i = 0; i < NRACE; i++) {
                both += a.mine[i] && b.mine[i];
                none += !a.mine[i] && !b.mine[i];
                bson_t *d = read_doc(col, race_ids[i]);
                const char *want = a.mine[i] ? "nodeA/w1" : "nodeB/w1";
                agree += !strcmp(field_str(d, "claimed_by"), want) &&
                         field_int(d, "attempt") == (i % 3 == 0 ? 2 : 1);
                bson_destroy(d);
        }
        CHECK(both == 0 && none == 0);
        CHECKF(agree == NRACE, "%d of %d documents agree", agree, NRACE);
        mongoc_collection_destroy(col);
        mongoc_client_pool_push(mw.pool, cl);
}

static void test_finish(void)
{
        mongoc_client_t *cl;
        mongoc_collection_t *col = get_coll(&cl);
        par_claim_t *x = NULL, *y = NULL;
        par_error_t e;
        par_claim_info_t in[5];
        char id[5][25];
        const char *ids[5];
        int64_t t = par_clock_wall_ms();

        REQUIRE(par_claim_new(&x, mw.pool, mw.db, mw.coll, "nodeX/w1", &e) ==
                PAR_OK);
        REQUIRE(par_claim_new(&y, mw.pool, mw.db, mw.coll, "nodeY/w2", &e) ==
                PAR_OK);
        for (int i = 0; i < 5; i++) {
                new_id(id[i]);
                ids[i] = id[i];
                insert(col, id[i], "pending", NULL, 0, 0, 0);
        }
        /* X claims all five with a short lease; Y takes id[1] over once it
         * lapsed; id[2] was given back; id[3] goes to Y's worker w3 — the
         * batch names that owner for it. */
        CHECK(par_claim_acquire_batch(x, ids, 3, t, 1000, in, &e) == PAR_OK);
        par_claim_t *z = NULL;
        REQUIRE(par_claim_new(&z, mw.pool, mw.db, mw.coll, "nodeY/w3", &e) ==
                PAR_OK);
        CHECK(par_claim_acquire_batch(z, ids + 3, 2, t, 60000, in + 3, &e) ==
              PAR_OK);
        for (int i = 0; i < 5; i++)
                CHECK(in[i].outcome == PAR_CLAIM_OK);
        par_claim_info_t one;
        CHECK(par_claim_acquire(y, id[1], NULL, t + 2000, 60000, &one, &e) ==
              PAR_OK);
        CHECK(one.outcome == PAR_CLAIM_OK && one.attempt == 2);
        CHECK(par_claim_release(x, id[2], NULL, false, &e) == PAR_OK);

        bson_t *res = BCON_NEW("status", BCON_UTF8("done"), "n", BCON_INT32(7));
        par_claim_finish_t outs[5] = {
            {.id = id[0], .status = "done", .result = res},
            {.id = id[1], .status = "done", .result = res},
            {.id = id[2], .status = "failed", .error = "boom"},
            {.id = id[3],
             .owner = "nodeY/w3",
             .status = "expired",
             .error = "expired"},
            {.id = id[4], .owner = "nodeY/w9", .status = "done"},
        };
        par_err_t rcs[5];
        int64_t fin = t + 2100;
        CHECK(par_claim_finish_batch(x, outs, 5, fin, rcs, &e) == PAR_OK);
        CHECK(rcs[0] == PAR_OK);
        CHECK(rcs[1] == PAR_ERR_NOTFOUND); /* Y holds it now */
        CHECK(rcs[2] == PAR_ERR_NOTFOUND); /* given back: pending */
        CHECK(rcs[3] == PAR_OK);           /* its named owner held it */
        CHECK(rcs[4] == PAR_ERR_NOTFOUND); /* w9 never held it */

        bson_t *d = read_doc(col, id[0]);
        CHECK_STR(field_str(d, "status"), "done");
        bson_iter_t it;
        CHECK(bson_iter_init(&it, d) &&
              bson_iter_find_descendant(&it, "result.n", &it) &&
              bson_iter_as_int64(&it) == 7);
        CHECK(!bson_iter_init_find(&it, d, "lease_until"));
        bson_destroy(d);
        d = read_doc(col, id[1]);
        CHECK_STR(field_str(d, "status"), "claimed");
        CHECK_STR(field_str(d, "claimed_by"), "nodeY/w2");
        bson_destroy(d);
        d = read_doc(col, id[2]);
        CHECK_STR(field_str(d, "status"), "pending");
        bson_destroy(d);
        d = read_doc(col, id[3]);
        CHECK_STR(field_str(d, "status"), "expired");
        CHECK_STR(field_str(d, "error"), "expired");
        bson_destroy(d);
        d = read_doc(col, id[4]);
        CHECK_STR(field_str(d, "status"), "claimed");
        bson_destroy(d);

        /* Repeated with the same time (a retry after an error): the same
         * answers, nothing else changes. */
        CHECK(par_claim_finish_batch(x, outs, 5, fin, rcs, &e) == PAR_OK);
        CHECK(rcs[0] == PAR_OK && rcs[1] == PAR_ERR_NOTFOUND &&
              rcs[2] == PAR_ERR_NOTFOUND && rcs[3] == PAR_OK &&
              rcs[4] == PAR_ERR_NOTFOUND);
        /* At another time it is not this call's write: the documents the
         * first call finished (same outcome, same owner) are no longer
         * held, so nothing is ours. */
        CHECK(par_claim_finish_batch(x, outs, 5, fin + 1, rcs, &e) == PAR_OK);
        for (int i = 0; i < 5; i++)
                CHECKF(rcs[i] == PAR_ERR_NOTFOUND,
                       "retry at another time: "
                       "[%d] %d",
                       i, (int)rcs[i]);
        d = read_doc(col, id[0]);
        CHECK(bson_iter_init_find(&it, d, "finished_at") &&
              BSON_ITER_HOLDS_DATE_TIME(&it) &&
              bson_iter_date_time(&it) == fin);
        bson_destroy(d);
        /* The single finish agrees: X no longer holds any of them. */
        CHECK(par_claim_finish(x, id[0], "done", NULL, NULL, fin, &e) ==
              PAR_ERR_NOTFOUND);
        CHECK(par_claim_finish_batch(x, outs, 0, fin, rcs, &e) == PAR_OK);

        bson_destroy(res);
        par_claim_destroy(x);
        par_claim_destroy(y);
        par_claim_destroy(z);
        mongoc_collection_destroy(col);
        mongoc_client_pool_push(mw.pool, cl);
}

static void test_renew(void)
{
        mongoc_client_t *cl;
        mongoc_collection_t *col = get_coll(&cl);
        par_claim_t *x = NULL, *y = NULL;
        par_error_t e;
        par_claim_info_t in[4];
        char id[4][25];
        const char *ids[5];
        bool lost[5];
        int64_t t = par_clock_wall_ms();

        REQUIRE(par_claim_new(&x, mw.pool, mw.db, mw.coll, "nodeX/w1", &e) ==
                PAR_OK);
        REQUIRE(par_claim_new(&y, mw.pool, mw.db, mw.coll, "nodeY/w2", &e) ==
                PAR_OK);
        for (int i = 0; i < 4; i++) {
                new_id(id[i]);
                ids[i] = id[i];
                insert(col, id[i], "pending", NULL, 0, 0, 0);
        }
        ids[4] = "nosuchsignal";
        CHECK(par_claim_acquire_batch(x, ids, 4, t, 1000, in, &e) == PAR_OK);
        /* id[1] lapses and goes to Y; id[2] is finished. */
        par_claim_info_t one;
        CHECK(par_claim_acquire(y, id[1], NULL, t + 1500, 60000, &one, &e) ==
              PAR_OK);
        CHECK(one.outcome == PAR_CLAIM_OK);
        CHECK(par_claim_finish(x, id[2], "done", NULL, NULL, t, &e) == PAR_OK);
        /* A renewer acting for X (its own owner is another). */
        CHECK(par_claim_renew_batch(y, ids, 5, "nodeX/w1", t + 1600, 5000, lost,
                                    &e) == PAR_OK);
        CHECK(!lost[0] && lost[1] && lost[2] && !lost[3] && lost[4]);
        /* Renewed: Y cannot take id[0] at t + 1600 + 4000. */
        CHECK(par_claim_acquire(y, id[0], NULL, t + 5600, 1000, &one, &e) ==
              PAR_OK);
        CHECK(one.outcome == PAR_CLAIM_LEASED && one.lease_until == t + 6600);
        /* All held: nothing lost. */
        CHECK(par_claim_renew_batch(x, ids, 1, NULL, t + 1700, 5000, lost,
                                    &e) == PAR_OK);
        CHECK(!lost[0]);
        par_claim_destroy(x);
        par_claim_destroy(y);
        mongoc_collection_destroy(col);
        mongoc_client_pool_push(mw.pool, cl);
}

/* Commands sent, counted by the driver's command monitoring. */
static atomic_int commands;

static void on_started(const mongoc_apm_command_started_t *ev)
{
        const char *name = mongoc_apm_command_started_get_command_name(ev);
        if (strcmp(name, "endSessions") != 0)
                atomic_fetch_add(&commands, 1);
}

static void test_round_trips(void)
{
        mongoc_client_pool_t *mp = mongoc_client_pool_new(mw.uri);
        mongoc_apm_callbacks_t *cbs = mongoc_apm_callbacks_new();
        mongoc_apm_set_command_started_cb(cbs, on_started);
        mongoc_client_pool_set_apm_callbacks(mp, cbs, NULL);
        mongoc_apm_callbacks_destroy(cbs);

        mongoc_client_t *cl;
        mongoc_collection_t *col = get_coll(&cl);
        par_claim_t *x = NULL;
        par_error_t e;
        static char id[100][25];
        const char *ids[100];
        par_claim_info_t in[100];
        par_claim_finish_t outs[100];
        par_err_t rcs[100];

        for (int i = 0; i < 100; i++) {
                new_id(id[i]);
                ids[i] = id[i];
                insert(col, id[i], "pending", NULL, 0, 0, 0);
                outs[i] = (par_claim_finish_t){.id = id[i], .status = "done"};
        }
        REQUIRE(par_claim_new(&x, mp, mw.db, mw.coll, "nodeX/w1", &e) ==
                PAR_OK);
        /* A batch of 1 (ids[0]), then of 10 (ids[1..10]). */
        for (size_t from = 0, n = 1; from < 11; from += n, n = 10) {
                int64_t t = par_clock_wall_ms();
                atomic_store(&commands, 0);
                CHECK(par_claim_acquire_batch(x, ids + from, n, t, 60000, in,
                                              &e) == PAR_OK);
                int claims = atomic_load(&commands);
                atomic_store(&commands, 0);
                CHECK(par_claim_finish_batch(x, outs + from, n, t, rcs, &e) ==
                      PAR_OK);
                int finishes = atomic_load(&commands);
                fprintf(stderr,
                        "   batch of %zu: %d commands to claim, %d to "
                        "finish\n",
                        n, claims, finishes);
                CHECKF(claims == 2, "%d commands to claim %zu", claims, n);
                CHECKF(finishes == 1, "%d commands to finish %zu", finishes, n);
        }
        /* 89 fresh ones and one fenced off (another owner's): still one
         * command to claim and read, and one read more to finish. */
        atomic_store(&commands, 0);
        CHECK(par_claim_acquire_batch(x, ids + 11, 89, par_clock_wall_ms(),
                                      60000, in, &e) == PAR_OK);
        CHECK(atomic_load(&commands) == 2);
        for (int i = 0; i < 89; i++)
                CHECK(in[i].outcome == PAR_CLAIM_OK);
        outs[50].owner = "nodeQ/w1";
        atomic_store(&commands, 0);
        CHECK(par_claim_finish_batch(x, outs + 11, 89, par_clock_wall_ms(), rcs,
                                     &e) == PAR_OK);
        CHECK(atomic_load(&commands) == 2);
        int ok = 0;
        for (int i = 0; i < 89; i++)
                ok += rcs[i] == PAR_OK;
        CHECK(ok == 88 && rcs[50 - 11] == PAR_ERR_NOTFOUND);

        par_claim_destroy(x);
        mongoc_collection_destroy(col);
        mongoc_client_pool_push(mw.pool, cl);
        mongoc_client_pool_destroy(mp);
}

MU_TEST_MAIN(mw, "claimb", test_mixed, test_race, test_finish, test_renew,
             test_round_trips)
