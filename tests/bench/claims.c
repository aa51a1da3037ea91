/*
 * claims.c — the store's own claim rate: how fast the MongoDB server that
 * the nodes use answers the claim operations, from a C client with the same
 * pool a node uses (one par_claim_t per worker thread). The ceiling the
 * pipeline benchmark's claims-on figure is compared with.
 *
 *   bench-claims MONGO_URI DATABASE N THREADS [BATCH]
 *
 * Inserts N pending signal documents into a fresh collection, then THREADS
 * threads take ids from a shared counter and do what a node's worker does
 * per signal with claims on: par_claim_acquire, then par_claim_finish
 * ("done"). With BATCH > 1 each thread takes BATCH ids at a time and claims
 * and finishes them with par_claim_acquire_batch and
 * par_claim_finish_batch, what a node does with claims in batches. Prints
 * the rate of whole claim cycles (signals claimed and finished per second)
 * and of their round trips, p50/p99 per cycle (per batch with BATCH), and
 * drops the collection. Asserts nothing beyond every claim succeeding.
 */
#include <bson/bson.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "store/claim.h"

static mongoc_client_pool_t *pool;
static char db[128], coll[64];
static char (*ids)[25];
static size_t n;
static atomic_size_t next_id;
static atomic_size_t failures;
static double *cycle_ms; /* per signal, or per batch */
static size_t batch = 1;
static atomic_size_t cycles;

static void *worker(void *arg)
{
        char owner[64];
        par_claim_t *c = NULL;
        par_error_t e;

        snprintf(owner, sizeof(owner), "bench/w%d", (int)(intptr_t)arg);
        if (par_claim_new(&c, pool, db, coll, owner, &e)) {
                fprintf(stderr, "claim: %s\n", e.msg);
                atomic_fetch_add(&failures, 1);
                return NULL;
        }
        while (batch == 1) {
                size_t i = atomic_fetch_add(&next_id, 1);
                if (i >= n)
                        break;
                par_claim_info_t info;
                double t0 = par_clock_mono_s();
                int64_t now = par_clock_wall_ms();
                if (par_claim_acquire(c, ids[i], NULL, now, 30000, &info, &e) ||
                    info.outcome != PAR_CLAIM_OK ||
                    par_claim_finish(c, ids[i], "done", NULL, NULL,
                                     par_clock_wall_ms(), &e)) {
                        atomic_fetch_add(&failures, 1);
                        continue;
                }
                cycle_ms[atomic_fetch_add(&cycles, 1)] =
                    (par_clock_mono_s() - t0) * 1e3;
        }
        while (batch > 1) {
                size_t i = atomic_fetch_add(&next_id, batch), k = batch;
                if (i >= n)
                        break;
                if (k > n - i)
                        k = n - i;
                const char *b[PAR_CLAIM_BATCH_MAX];
                par_claim_info_t info[PAR_CLAIM_BATCH_MAX];
                par_claim_finish_t outs[PAR_CLAIM_BATCH_MAX];
                par_err_t rcs[PAR_CLAIM_BATCH_MAX];
                size_t m = 0;
                double t0 = par_clock_mono_s();
                for (size_t j = 0; j < k; j++)
                        b[j] = ids[i + j];
                if (par_claim_acquire_batch(c, b, k, par_clock_wall_ms(), 30000,
                                            info, &e)) {
                        atomic_fetch_add(&failures, k);
                        continue;
                }
                for (size_t j = 0; j < k; j++)
                        if (info[j].outcome == PAR_CLAIM_OK)
                                outs[m++] = (par_claim_finish_t){
                                    .id = b[j], .status = "done"};
                atomic_fetch_add(&failures, k - m);
                if (par_claim_finish_batch(c, outs, m, par_clock_wall_ms(), rcs,
                                           &e)) {
                        atomic_fetch_add(&failures, m);
                        continue;
                }
                for (size_t j = 0; j < m; j++)
                        if (rcs[j])
                                atomic_fetch_add(&failures, 1);
                cycle_ms[atomic_fetch_add(&cycles, 1)] =
                    (par_clock_mono_s() - t0) * 1e3;
        }
        par_claim_destroy(c);
        return NULL;
}

static int cmp(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
        if (argc != 5 && argc != 6) {
                fprintf(stderr, "usage: bench-claims MONGO_URI DATABASE N "
                                "THREADS [BATCH]\n");
                return 2;
        }
        n = (size_t)atol(argv[3]);
        int threads = atoi(argv[4]);
        if (argc == 6)
                batch = (size_t)atol(argv[5]);
        if (n < 1 || threads < 1 || threads > 256 || batch < 1 ||
            batch > PAR_CLAIM_BATCH_MAX) {
                fprintf(stderr,
                        "bench-claims: N >= 1, 1 <= THREADS <= 256, "
                        "1 <= BATCH <= %d\n",
                        PAR_CLAIM_BATCH_MAX);
                return 2;
        }
        snprintf(db, sizeof(db), "%s", argv[2]);
        snprintf(coll, sizeof(coll), "bench_claims_%d", (int)getpid());
        mongoc_init();
        bson_error_t be;
        mongoc_uri_t *uri = mongoc_uri_new_with_error(argv[1], &be);
        if (!uri) {
                fprintf(stderr, "bench-claims: %s\n", be.message);
                return 2;
        }
        pool = mongoc_client_pool_new(uri);
        mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
        ids = calloc(n, sizeof(*ids));
        cycle_ms = calloc(n, sizeof(*cycle_ms));
        if (!ids || !cycle_ms)
                return 1;

        /* N pending documents, as the producer finds them. */
        mongoc_client_t *cl = mongoc_client_pool_pop(pool);
        mongoc_collection_t *col = mongoc_client_get_collection(cl, db, coll);
        mongoc_bulk_operation_t *bulk =
            mongoc_collection_create_bulk_operation_with_opts(col, NULL);
        for (size_t i = 0; i < n; i++) {
                bson_oid_t oid;
                bson_oid_init(&oid, NULL);
                bson_oid_to_string(&oid, ids[i]);
                bson_t *d = BCON_NEW("_id", BCON_OID(&oid), "status",
                                     BCON_UTF8("pending"), "priority",
                                     BCON_INT32(2), "recipe", BCON_UTF8("noop"),
                                     "attempt", BCON_INT32(0));
                mongoc_bulk_operation_insert(bulk, d);
                bson_destroy(d);
        }
        bson_t reply;
        if (!mongoc_bulk_operation_execute(bulk, &reply, &be)) {
                fprintf(stderr, "bench-claims: insert: %s\n", be.message);
                return 1;
        }
        bson_destroy(&reply);
        mongoc_bulk_operation_destroy(bulk);

        pthread_t *t = calloc((size_t)threads, sizeof(*t));
        double t0 = par_clock_mono_s();
        for (int i = 0; i < threads; i++)
                pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
        for (int i = 0; i < threads; i++)
                pthread_join(t[i], NULL);
        double secs = par_clock_mono_s() - t0;

        size_t bad = atomic_load(&failures), nc = atomic_load(&cycles);
        qsort(cycle_ms, nc, sizeof(double), cmp);
        /* Round trips per cycle: two (claim, finish) singly; three per
         * batch (update, read, bulk finish). */
        double trips = batch == 1 ? 2.0 * (double)nc : 3.0 * (double)nc;
        /* "threads: R claim cycles" is what pipeline.sh reads. */
        printf("claims: %zu signals, %d threads: %.0f claim cycles/s (%s), "
               "%.0f round trips/s, %s p50 %.2f ms p99 %.2f ms, %zu failed\n",
               n, threads, (double)(n - bad) / secs,
               batch == 1 ? "acquire + finish" : "acquire_batch + finish_batch",
               trips / secs, batch == 1 ? "cycle" : "batch",
               nc ? cycle_ms[nc / 2] : 0.0,
               nc ? cycle_ms[(size_t)((double)nc * 0.99)] : 0.0, bad);
        if (batch > 1)
                printf("claims: batches of %zu\n", batch);
        mongoc_collection_drop(col, NULL);
        mongoc_collection_destroy(col);
        mongoc_client_pool_push(pool, cl);
        mongoc_client_pool_destroy(pool);
        mongoc_uri_destroy(uri);
        mongoc_cleanup();
        free(t);
        free(ids);
        free(cycle_ms);
        return bad ? 1 : 0;
}
