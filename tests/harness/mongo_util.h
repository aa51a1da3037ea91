/*
 * mongo_util.h — the one setup of the MongoDB tests (label `mongo`): a
 * client pool on PARALLEL_TEST_MONGO_URI (default: the dev stack's
 * stand-in at 127.0.0.1:27017) and a collection name of the run's own in
 * database "parallel_test", so runs beside each other, and what an earlier
 * run left behind, never meet. At the end the run's collections are
 * dropped: the name itself and every collection named after it
 * ("<name>_…", e.g. the claim store's "<name>_resources").
 *
 * The pool is set up as the programs set up theirs (error API version 2);
 * server selection gives up after 10 s, and setup pings once so a test
 * without a stack fails at once with a hint instead of in every test.
 *
 * Compiled once into the test harness (par_harness). mu_setup and
 * mu_teardown run on the main thread; the pool serves any thread.
 */
#ifndef PAR_MONGO_UTIL_H
#define PAR_MONGO_UTIL_H

#include <mongoc/mongoc.h>

#include "testutil.h"

typedef struct mu_world {
        mongoc_uri_t *uri;
        mongoc_client_pool_t *pool;
        char db[64];   /* "parallel_test" */
        char coll[64]; /* "<what>_<pid>_<unix time>" */
} mu_world_t;

/* mongoc_init, the pool, the ping and the collection name for test `what`.
 * Returns 0, or 1 with the reason printed (a TEST_MAIN_WITH setup's
 * answer; what it built is freed then). */
int mu_setup(mu_world_t *w, const char *what);

/* Drops the run's collections (a failed drop fails the program), frees the
 * pool and the URI, and calls mongoc_cleanup. */
void mu_teardown(mu_world_t *w);

/* main() for a test that needs nothing else set up or torn down: one
 * world in `world` (a static mu_world_t) named after `what`. */
#define MU_TEST_MAIN(world, what, ...)                                         \
        TEST_MAIN_CTX(mu_setup, mu_teardown, world, what, __VA_ARGS__)

#endif
