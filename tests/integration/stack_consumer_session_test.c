/*
 * stack_consumer_session_test.c — a resource's login follows it across
 * nodes (state scope resource, real stack, real Chromium).
 *
 * Two consumer nodes and the real producer. A `login` signal for resource
 * acct-1 (tests/fixtures/recipes/login.json: a cookie + localStorage login
 * on the fixture site, "stateScope": "resource") runs on one node, which
 * saves the session to MongoDB; that node is SIGKILLed; the next signal of
 * acct-1 (`whoami`) runs on the other node, which has no context for it,
 * restores the saved session and must see the user logged in. A signal of
 * another resource must not. The session never reaches a node's log.
 */
#include <signal.h>

#include "base/clock.h"
#include "fixture_server.h"
#include "stack_consumer_util.h"

static const char *tags[2] = {"n1", "n2"};

/* Inserts one pending signal of recipe for resource, params base/user. */
static int insert(su_ctx_t *c, const char *recipe, const char *resource,
                  int port, const char *user, char id[25])
{
        bson_t d = BSON_INITIALIZER, params;
        bson_oid_t oid;
        bson_error_t e;
        char base[64];
        bool ok;

        snprintf(base, sizeof(base), "http://127.0.0.1:%d", port);
        bson_oid_init(&oid, NULL);
        bson_oid_to_string(&oid, id);
        BSON_APPEND_OID(&d, "_id", &oid);
        BSON_APPEND_INT32(&d, "priority", 2);
        BSON_APPEND_UTF8(&d, "recipe", recipe);
        BSON_APPEND_UTF8(&d, "resource", resource);
        BSON_APPEND_DOCUMENT_BEGIN(&d, "params", &params);
        BSON_APPEND_UTF8(&params, "base", base);
        BSON_APPEND_UTF8(&params, "user", user);
        bson_append_document_end(&d, &params);
        BSON_APPEND_DATE_TIME(&d, "created_at", par_clock_wall_ms());
        BSON_APPEND_UTF8(&d, "status", "pending");
        ok = mongoc_collection_insert_one(c->signals, &d, NULL, NULL, &e);
        if (!ok)
                fprintf(stderr, "insert: %s\n", e.message);
        bson_destroy(&d);
        return ok ? 0 : -1;
}

/* Waits for signal id to be final; copies its status, claimed_by and
 * result.values.status. */
static int wait_final(su_ctx_t *c, const char *id, double secs, char *status,
                      char *node, char *value)
{
        double end = par_clock_mono_s() + secs;
        bson_oid_t oid;

        bson_oid_init_from_string(&oid, id);
        status[0] = node[0] = value[0] = 0;
        while (par_clock_mono_s() < end) {
                bson_t *q = BCON_NEW("_id", BCON_OID(&oid));
                mongoc_cursor_t *cur =
                    mongoc_collection_find_with_opts(c->signals, q, NULL, NULL);
                const bson_t *doc;
                bson_iter_t it;

                if (mongoc_cursor_next(cur, &doc)) {
                        if (bson_iter_init_find(&it, doc, "status"))
                                snprintf(status, 16, "%s",
                                         bson_iter_utf8(&it, NULL));
                        if (bson_iter_init_find(&it, doc, "claimed_by") &&
                            BSON_ITER_HOLDS_UTF8(&it))
                                snprintf(node, 64, "%s",
                                         bson_iter_utf8(&it, NULL));
                        if (bson_iter_init(&it, doc) &&
                            bson_iter_find_descendant(
                                &it, "result.values.status", &it) &&
                            BSON_ITER_HOLDS_UTF8(&it))
                                snprintf(value, 64, "%s",
                                         bson_iter_utf8(&it, NULL));
                }
                mongoc_cursor_destroy(cur);
                bson_destroy(q);
                if (sc_is_final(status))
                        return 0;
                par_clock_sleep_ms(200);
        }
        return -1;
}

static int64_t count_sessions(su_ctx_t *c, const char *resource)
{
        mongoc_collection_t *s =
            mongoc_client_get_collection(c->client, c->name, "sessions");
        bson_t *q = BCON_NEW("_id", BCON_UTF8(resource));
        int64_t n =
            mongoc_collection_count_documents(s, q, NULL, NULL, NULL, NULL);
        bson_destroy(q);
        mongoc_collection_destroy(s);
        return n;
}

static int log_mentions(const char *path, const char *needle)
{
        FILE *f = fopen(path, "r");
        char line[4096];
        int n = 0;

        while (f && fgets(line, sizeof(line), f))
                n += strstr(line, needle) != NULL;
        if (f)
                fclose(f);
        return n;
}

static void test_session_follows_resource(void)
{
        su_ctx_t c;
        su_proc_t prod, nodes[2];
        fx_server_t fx;
        char pages[600], rdir[700], id[25], status[16], node[64], value[64];
        int killed = -1, st;

        memset(nodes, 0, sizeof(nodes));
        memset(&prod, 0, sizeof(prod));
        snprintf(pages, sizeof(pages), "%s/tests/fixtures/pages",
                 tu_env("PARALLEL_SOURCE_DIR", "."));
        snprintf(rdir, sizeof(rdir), "recipes.dir=%s/tests/fixtures/recipes",
                 tu_env("PARALLEL_SOURCE_DIR", "."));
        REQUIRE(fx_server_start(&fx, pages) == 0);
        if (sc_init(&c, "csession")) {
                CHECK(0);
                fx_server_stop(&fx);
                return;
        }
        for (int i = 0; i < 2; i++)
                if (sc_node_start(&c, &nodes[i], tags[i], rdir, "workers.max=1",
                                  "spin.timeout=30s", "claim.lease=5s", NULL))
                        goto out;
        if (su_producer_start(&c, &prod, "producer", NULL) ||
            su_wait_log(&prod, "event=pipeline.started", 30))
                goto out;

        /* log in as alice on whichever node gets acct-1 */
        REQUIRE(!insert(&c, "login", "acct-1", fx.port, "alice", id));
        CHECK(!wait_final(&c, id, 60, status, node, value));
        CHECK_STR(status, "done");
        CHECK_STR(value, "user:alice");
        CHECK(count_sessions(&c, "acct-1") == 1);
        for (int i = 0; i < 2; i++)
                if (!strncmp(node, tags[i], 2) && node[2] == '/')
                        killed = i;
        CHECKF(killed >= 0, "claimed_by '%s'", node);
        if (killed < 0)
                goto out;
        /* the node that holds the session in memory dies */
        kill(nodes[killed].pid, SIGKILL);
        waitpid(nodes[killed].pid, &st, 0);
        nodes[killed].pid = 0;

        /* the other node runs acct-1 next: logged in */
        REQUIRE(!insert(&c, "whoami", "acct-1", fx.port, "", id));
        CHECK(!wait_final(&c, id, 90, status, node, value));
        CHECK_STR(status, "done");
        CHECKF(!strncmp(node, tags[1 - killed], 2), "ran on '%s'", node);
        CHECK_STR(value, "user:alice");
        /* another resource: not logged in */
        REQUIRE(!insert(&c, "whoami", "acct-2", fx.port, "", id));
        CHECK(!wait_final(&c, id, 60, status, node, value));
        CHECK_STR(status, "done");
        CHECK_STR(value, "anonymous");
        /* the session's secret never reached a log */
        for (int i = 0; i < 2; i++)
                CHECKF(log_mentions(nodes[i].log, "tok-alice") == 0,
                       "%s logs the session", nodes[i].log);
out:
        for (int i = 0; i < 2; i++)
                if (nodes[i].pid > 0)
                        su_producer_stop(&nodes[i], SIGTERM, 30);
        if (prod.pid > 0)
                su_producer_stop(&prod, SIGTERM, 30);
        sc_cleanup(&c);
        fx_server_stop(&fx);
}

TEST_MAIN(test_session_follows_resource)
