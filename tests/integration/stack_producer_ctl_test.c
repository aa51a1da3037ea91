/*
 * stack_producer_ctl_test.c — `parallel-ctl signal insert|load|status`
 * against the stand-in, and the producer publishing what they inserted:
 *   - insert --count validates first (priority 7 → exit 2, nothing
 *     inserted) and bulk-inserts valid signals;
 *   - load refuses a file with a bad line (naming the line, nothing
 *     inserted), loads it with --skip-invalid, accepts extended JSON;
 *   - status counts by status and prints one signal as JSON;
 *   - every inserted signal reaches its priority topic.
 */
#include "base/clock.h"
#include "stack_util.h"

static su_ctx_t ctx;

/* Runs parallel-ctl with the world's -X options; output into out. */
static int ctl(char *out, size_t n, const char *args)
{
        char cmd[2048];
        FILE *f;
        size_t got = 0;
        int st;

        snprintf(cmd, sizeof(cmd),
                 "%s/parallel-ctl -X mongo.uri=%s -X mongo.database=%s "
                 "-X topic.prefix=%s %s 2>&1",
                 tu_env("PARALLEL_BINARY_DIR", "."), ctx.mongo_uri, ctx.name,
                 ctx.name, args);
        f = popen(cmd, "r");
        if (!f)
                return -1;
        if (out) {
                got = fread(out, 1, n - 1, f);
                out[got] = '\0';
        } else {
                char sink[4096];
                while (fread(sink, 1, sizeof(sink), f) > 0)
                        ;
        }
        st = pclose(f);
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int64_t count(const char *status)
{
        bson_t *f = status ? BCON_NEW("status", BCON_UTF8(status)) : bson_new();
        int64_t n = mongoc_collection_count_documents(ctx.signals, f, NULL,
                                                      NULL, NULL, NULL);
        bson_destroy(f);
        return n;
}

static void test_ctl(void)
{
        char out[8192], path[512], args[1024], id[25] = "";
        su_proc_t p;
        su_reader_t r = {0};
        FILE *f;
        double deadline;
        int per_topic[5] = {0}, total = 0;
        const char *s;

        /* insert: invalid → exit 2, nothing inserted. */
        CHECK(ctl(out, sizeof(out),
                  "signal insert --priority 7 --recipe noop") == 2);
        CHECK(strstr(out, "priority 7 out of range 1..4") != NULL);
        CHECK(count(NULL) == 0);
        CHECK(ctl(out, sizeof(out),
                  "signal insert --priority 4 --recipe 'bad name'") == 2);
        CHECK(ctl(out, sizeof(out),
                  "signal insert --priority 4 --recipe noop --param x") == 2);

        /* insert: 1500 valid, bulk. */
        CHECK(ctl(out, sizeof(out),
                  "signal insert --priority 4 --recipe noop --resource r1 "
                  "--param q=hello --count 1500 --expires-in-ms 600000") == 0);
        CHECKF(strstr(out, "inserted 1500 signals") != NULL, "%s", out);
        CHECK(count("pending") == 1500);

        /* load: a bad line aborts the whole file, naming the line. */
        snprintf(path, sizeof(path), "%s/%s.jsonl", ctx.logdir, ctx.name);
        f = fopen(path, "w");
        REQUIRE(f);
        fprintf(f, "{\"priority\": 1, \"recipe\": \"noop\"}\n"
                   "\n"
                   "{\"priority\": 2, \"recipe\": \"noop\", \"created_at\": "
                   "{\"$date\": \"2026-11-27T00:00:00Z\"}, \"params\": "
                   "{\"a\": \"b\"}}\n"
                   "{\"priority\": 9, \"recipe\": \"noop\"}\n"
                   "{\"priority\": 3, \"recipe\": \"noop\", \"resource\": "
                   "\"acct-1\"}\n");
        fclose(f);
        snprintf(args, sizeof(args), "signal load %s", path);
        CHECK(ctl(out, sizeof(out), args) == 1);
        CHECKF(strstr(out, ".jsonl:4: signal") &&
                   strstr(out, "priority 9 out of range 1..4") &&
                   strstr(out, "nothing inserted"),
               "%s", out);
        CHECK(count(NULL) == 1500);
        snprintf(args, sizeof(args), "signal load %s --skip-invalid", path);
        CHECK(ctl(out, sizeof(out), args) == 0);
        CHECKF(strstr(out, "inserted 3 signals") &&
                   strstr(out, "skipped 1 invalid"),
               "%s", out);
        CHECK(count(NULL) == 1503);
        unlink(path);

        /* status: counts, and one signal as JSON. */
        CHECK(ctl(out, sizeof(out), "signal status") == 0);
        CHECKF(strstr(out, "pending") && strstr(out, "1503"), "%s", out);
        {
                bson_t *flt = BCON_NEW("resource", BCON_UTF8("acct-1"));
                mongoc_cursor_t *c = mongoc_collection_find_with_opts(
                    ctx.signals, flt, NULL, NULL);
                const bson_t *d;
                bson_iter_t it;
                if (mongoc_cursor_next(c, &d) &&
                    bson_iter_init_find(&it, d, "_id"))
                        bson_oid_to_string(bson_iter_oid(&it), id);
                mongoc_cursor_destroy(c);
                bson_destroy(flt);
        }
        snprintf(args, sizeof(args), "signal status --id %s", id);
        CHECK(ctl(out, sizeof(out), args) == 0);
        CHECKF(strstr(out, "\"acct-1\"") && strstr(out, id), "%s", out);
        CHECK(ctl(out, sizeof(out), "signal status --id nope") == 2);

        /* The producer publishes all of them (backfill: no checkpoint). */
        REQUIRE(su_producer_start(&ctx, &p, "ctl", NULL) == 0);
        REQUIRE(su_reader_new(&ctx, &r, 0) == 0);
        deadline = par_clock_mono_s() + 60;
        while (total < 1503 && par_clock_mono_s() < deadline) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(r.rk, 200);
                if (!m)
                        continue;
                if (!m->err &&
                    (s = strstr(rd_kafka_topic_name(m->rkt), ".signals.p")))
                        per_topic[atoi(s + 10) % 5]++, total++;
                rd_kafka_message_destroy(m);
        }
        fprintf(stderr, "read p1 %d, p2 %d, p3 %d, p4 %d\n", per_topic[1],
                per_topic[2], per_topic[3], per_topic[4]);
        CHECK(per_topic[4] == 1500 && per_topic[1] == 1 && per_topic[2] == 1 &&
              per_topic[3] == 1);
        CHECK(su_producer_stop(&p, SIGTERM, 30) == 0);
        su_reader_destroy(&r);
}

SU_TEST_MAIN(ctx, "ctl", test_ctl)
