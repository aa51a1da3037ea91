/* mongo_util.c — see mongo_util.h. */
#include "mongo_util.h"

#include <unistd.h>

/* libmongoc's default handler prints its DEBUG chatter; keep warnings. */
static void quiet_log(mongoc_log_level_t level, const char *domain,
                      const char *message, void *data)
{
        if (level <= MONGOC_LOG_LEVEL_WARNING)
                mongoc_log_default_handler(level, domain, message, data);
}

int mu_setup(mu_world_t *w, const char *what)
{
        const char *uri_s =
            tu_env("PARALLEL_TEST_MONGO_URI", "mongodb://127.0.0.1:27017");
        bson_error_t be;
        bson_t *ping = BCON_NEW("ping", BCON_INT32(1));
        mongoc_client_t *c;
        bool up;

        memset(w, 0, sizeof(*w));
        mongoc_init();
        mongoc_log_set_handler(quiet_log, NULL);
        snprintf(w->db, sizeof(w->db), "parallel_test");
        snprintf(w->coll, sizeof(w->coll), "%s_%d_%ld", what, (int)getpid(),
                 (long)time(NULL));
        if (!(w->uri = mongoc_uri_new_with_error(uri_s, &be))) {
                fprintf(stderr, "bad PARALLEL_TEST_MONGO_URI %s: %s\n", uri_s,
                        be.message);
                goto fail;
        }
        mongoc_uri_set_option_as_int32(
            w->uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 10000);
        w->pool = mongoc_client_pool_new(w->uri);
        mongoc_client_pool_set_error_api(w->pool, MONGOC_ERROR_API_VERSION_2);
        c = mongoc_client_pool_pop(w->pool);
        up = mongoc_client_command_simple(c, "admin", ping, NULL, NULL, &be);
        mongoc_client_pool_push(w->pool, c);
        if (!up) {
                fprintf(stderr,
                        "no MongoDB at %s (%s); start it with deploy/dev/stack "
                        "up\n",
                        uri_s, be.message);
                goto fail;
        }
        bson_destroy(ping);
        fprintf(stderr, "collection %s.%s\n", w->db, w->coll);
        return 0;
fail:
        bson_destroy(ping);
        if (w->pool)
                mongoc_client_pool_destroy(w->pool);
        mongoc_uri_destroy(w->uri);
        mongoc_cleanup();
        memset(w, 0, sizeof(*w));
        return 1;
}

/* Whether name is the run's collection or one named after it. */
static bool ours(const mu_world_t *w, const char *name)
{
        size_t n = strlen(w->coll);
        return !strncmp(name, w->coll, n) &&
               (name[n] == '\0' || name[n] == '_');
}

void mu_teardown(mu_world_t *w)
{
        if (w->pool) {
                mongoc_client_t *c = mongoc_client_pool_pop(w->pool);
                mongoc_database_t *db = mongoc_client_get_database(c, w->db);
                bson_error_t be;
                char **names = mongoc_database_get_collection_names_with_opts(
                    db, NULL, &be);
                CHECKF(names, "listing %s: %s", w->db, be.message);
                for (size_t i = 0; names && names[i]; i++) {
                        if (!ours(w, names[i]))
                                continue;
                        mongoc_collection_t *coll =
                            mongoc_database_get_collection(db, names[i]);
                        CHECKF(mongoc_collection_drop(coll, &be), "drop %s: %s",
                               names[i], be.message);
                        mongoc_collection_destroy(coll);
                }
                bson_strfreev(names);
                mongoc_database_destroy(db);
                mongoc_client_pool_push(w->pool, c);
                mongoc_client_pool_destroy(w->pool);
        }
        mongoc_uri_destroy(w->uri);
        mongoc_cleanup();
        memset(w, 0, sizeof(*w));
}
