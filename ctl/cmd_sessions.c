/*
 * cmd_sessions.c — `parallel-ctl sessions`: the saved browser sessions of
 * state scope `resource` (store/session.h).
 *
 *   parallel-ctl sessions list
 *   parallel-ctl sessions delete RESOURCE... | --all
 *
 * list prints one line per resource with its metadata (who saved it, when,
 * size, cookie and origin counts), never the snapshot: it holds
 * credentials. delete removes sessions, e.g. to log an account out
 * everywhere or to honour a deletion request; a node that still holds the
 * resource's context in memory keeps it until it expires
 * (chrome.resource_idle) or the node restarts.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <mongoc/mongoc.h>

#include "ctl.h"
#include "store/session.h"

static void usage(FILE *out)
{
        fputs("usage: parallel-ctl sessions list\n"
              "       parallel-ctl sessions delete RESOURCE... | --all\n\n"
              "Saved browser sessions (state scope resource) in "
              "mongo.database's\nsessions.collection. list shows metadata "
              "only, never the cookies or\nstorage; delete removes "
              "sessions.\n",
              out);
}

int par_ctl_sessions(par_config_t *cfg, int argc, char **argv)
{
        mongoc_client_pool_t *pool = NULL;
        par_session_store_t *st = NULL;
        mongoc_uri_t *uri = NULL;
        par_error_t err = {0};
        bson_error_t be;
        int rc = 2;

        if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
                usage(argc < 2 ? stderr : stdout);
                return argc < 2 ? 2 : 0;
        }
        if (strcmp(argv[1], "list") && strcmp(argv[1], "delete")) {
                fprintf(stderr,
                        "parallel-ctl sessions: unknown action '%s' (want "
                        "list|delete)\n",
                        argv[1]);
                return 2;
        }
        if (!strcmp(argv[1], "delete") && argc < 3) {
                fprintf(stderr, "parallel-ctl sessions delete: name the "
                                "resources, or --all\n");
                return 2;
        }
        mongoc_init();
        uri = mongoc_uri_new_with_error(par_config_str(cfg, "mongo.uri"), &be);
        if (!uri) {
                fprintf(stderr, "parallel-ctl sessions: mongo.uri: %s\n",
                        be.message);
                goto out;
        }
        pool = mongoc_client_pool_new(uri);
        if (!pool || par_session_store_new(
                         &st, pool, par_config_str(cfg, "mongo.database"),
                         par_config_str(cfg, "sessions.collection"), &err)) {
                fprintf(stderr, "parallel-ctl sessions: %s\n",
                        pool ? err.msg : "cannot create a client pool");
                goto out;
        }
        rc = 1;
        if (!strcmp(argv[1], "list")) {
                par_session_info_t *v = NULL;
                size_t n = 0;

                if (par_session_list(st, (size_t)-1, &v, &n, &err)) {
                        fprintf(stderr, "parallel-ctl sessions: %s\n", err.msg);
                        goto out;
                }
                printf("%-32s %-24s %-20s %8s %7s %7s\n", "resource",
                       "updated_at", "node", "bytes", "cookies", "origins");
                for (size_t i = 0; i < n; i++) {
                        char when[32];
                        time_t t = (time_t)(v[i].updated_at / 1000);
                        struct tm tm;

                        gmtime_r(&t, &tm);
                        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
                        printf("%-32s %-24s %-20s %8lld %7lld %7lld\n",
                               v[i].resource, when, v[i].node,
                               (long long)v[i].bytes, (long long)v[i].cookies,
                               (long long)v[i].origins);
                }
                free(v);
                rc = 0;
        } else {
                int64_t total = 0;

                rc = 0;
                for (int i = 2; i < argc; i++) {
                        int64_t k = 0;
                        bool all = !strcmp(argv[i], "--all");

                        if (par_session_delete(st, all ? NULL : argv[i], &k,
                                               &err)) {
                                fprintf(stderr, "parallel-ctl sessions: %s\n",
                                        err.msg);
                                rc = 1;
                                break;
                        }
                        total += k;
                }
                printf("deleted %lld session(s)\n", (long long)total);
        }
out:
        par_session_store_destroy(st);
        if (pool)
                mongoc_client_pool_destroy(pool);
        mongoc_uri_destroy(uri);
        mongoc_cleanup();
        return rc;
}
