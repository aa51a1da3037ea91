/* config_test.c — the property table: layering, validation messages,
 * redaction, kafka passthrough, and that docs/CONFIGURATION.md is current. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/config.h"
#include "testutil.h"

static par_config_t *fresh(void)
{
        par_config_t *cfg = NULL;
        par_error_t err;
        if (par_config_new(&cfg, &err))
                fprintf(stderr, "config_new: %s\n", err.msg);
        return cfg;
}

static void test_defaults(void)
{
        par_config_t *cfg = fresh();
        REQUIRE(cfg);
        CHECK_STR(par_config_str(cfg, "topic.prefix"), "parallel");
        CHECK(par_config_int(cfg, "priority.levels") == 4);
        CHECK(par_config_int(cfg, "topics.retention.ms") == 7 * 86400000LL);
        par_config_destroy(cfg);
}

static void test_errors_name_key(void)
{
        par_config_t *cfg = fresh();
        par_error_t err = {0};
        REQUIRE(cfg);

        CHECK(par_config_set(cfg, "priority.levels", "0", &err) ==
              PAR_ERR_INVALID);
        CHECK(strstr(err.msg, "priority.levels") && strstr(err.msg, "1..16"));
        CHECK(par_config_set(cfg, "priority.levels", "4x", &err));
        CHECK(strstr(err.msg, "not an integer"));
        CHECK(par_config_set(cfg, "log.level", "loud", &err));
        CHECK(strstr(err.msg, "debug|info|warn|error|off"));
        CHECK(par_config_set(cfg, "topics.retention.ms", "10 parsecs", &err));
        CHECK(strstr(err.msg, "duration"));
        CHECK(par_config_set(cfg, "topic.prefx", "x", &err));
        CHECKF(strstr(err.msg, "did you mean topic.prefix"), "%s", err.msg);
        CHECK(par_config_set(cfg, "no.such.thing.at.all", "x", &err));
        CHECK(strstr(err.msg, "unknown key"));
        CHECK(par_config_set(cfg, "kafka.", "x", &err));
        /* A failed set leaves the old value. */
        CHECK(par_config_int(cfg, "priority.levels") == 4);
        CHECK(par_config_set(cfg, "topics.retention.ms", "2h", &err) == 0);
        CHECK(par_config_int(cfg, "topics.retention.ms") == 7200000);
        par_config_destroy(cfg);
}

static void test_layers(void)
{
        char path[] = "/tmp/par_config_testXXXXXX";
        int fd = mkstemp(path);
        FILE *f = fdopen(fd, "w");
        par_config_t *cfg = fresh();
        par_error_t err = {0};
        char *argv[] = {"prog",
                        "-c",
                        path,
                        "-X",
                        "topic.prefix=fromx",
                        "pos1",
                        "-Xkafka.acks=all",
                        "pos2",
                        NULL};
        int argc = 8;
        bool dump = false;
        REQUIRE(cfg && f);

        fputs("# comment\n\n topic.prefix = fromfile \nmongo.database=db1\n"
              "priority.levels=3\n",
              f);
        fclose(f);
        setenv("PARALLEL_MONGO_DATABASE", "fromenv", 1);
        CHECKF(par_config_parse_args(cfg, &argc, argv, &dump, &err) == 0, "%s",
               err.msg);
        unsetenv("PARALLEL_MONGO_DATABASE");
        CHECK_STR(par_config_str(cfg, "topic.prefix"), "fromx");
        CHECK_STR(par_config_str(cfg, "mongo.database"), "fromenv");
        CHECK(par_config_int(cfg, "priority.levels") == 3);
        CHECK(argc == 3);
        CHECK_STR(argv[1], "pos1");
        CHECK_STR(argv[2], "pos2");
        CHECK(!dump);
        par_config_destroy(cfg);

        /* A bad line names the file and the line. */
        f = fopen(path, "w");
        fputs("topic.prefix=a\nthis line has no equals\n", f);
        fclose(f);
        cfg = fresh();
        CHECK(par_config_load_file(cfg, path, &err) == PAR_ERR_INVALID);
        CHECKF(strstr(err.msg, path) && strstr(err.msg, ":2:"), "%s", err.msg);
        par_config_destroy(cfg);
        unlink(path);
}

static int collect(const char *k, const char *v, void *opaque)
{
        char *buf = opaque;
        strcat(buf, k);
        strcat(buf, "=");
        strcat(buf, v);
        strcat(buf, ";");
        return 0;
}

static void test_kafka_and_redaction(void)
{
        par_config_t *cfg = fresh();
        par_error_t err;
        char buf[512] = "", *dump = NULL;
        size_t len = 0;
        FILE *m;
        REQUIRE(cfg);

        CHECK(!par_config_set(cfg, "kafka.sasl.password", "hunter2", &err));
        CHECK(!par_config_set(cfg, "kafka.bootstrap.servers", "h:1", &err));
        CHECK(!par_config_set(cfg, "mongo.uri",
                              "mongodb://alice:s3cr3t@db:27017/?tls=true",
                              &err));
        par_config_foreach_kafka(cfg, collect, buf);
        CHECK_STR(buf, "bootstrap.servers=h:1;sasl.password=hunter2;");
        m = open_memstream(&dump, &len);
        par_config_dump(cfg, m);
        fclose(m);
        CHECK(!strstr(dump, "hunter2"));
        CHECK(!strstr(dump, "s3cr3t"));
        CHECK(strstr(dump, "mongodb://alice:***@db:27017/?tls=true"));
        CHECK(strstr(dump, "kafka.sasl.password=***"));
        free(dump);
        par_config_destroy(cfg);
}

/* Regression (issue 11): -X dump printed kafka.ssl.key.pem verbatim and cut
 * a password holding '@' at its first '@'. */
static void test_redaction_patterns(void)
{
        par_config_t *cfg = fresh();
        par_error_t err;
        char *dump = NULL;
        size_t len = 0;
        FILE *m;
        REQUIRE(cfg);

        CHECK(!par_config_set(cfg, "kafka.ssl.key.pem", "PEMBODY", &err));
        CHECK(!par_config_set(cfg, "kafka.sasl.oauthbearer.client.secret",
                              "CLIENTSECRET", &err));
        CHECK(!par_config_set(cfg, "kafka.ssl.keystore.password", "KSPASS",
                              &err));
        CHECK(!par_config_set(cfg, "mongo.uri",
                              "mongodb://bob:p@ss@word@db:27017/x?a=b@c",
                              &err));
        m = open_memstream(&dump, &len);
        par_config_dump(cfg, m);
        fclose(m);
        CHECK(!strstr(dump, "PEMBODY"));
        CHECK(!strstr(dump, "CLIENTSECRET"));
        CHECK(!strstr(dump, "KSPASS"));
        CHECKF(!strstr(dump, "ss@word") && !strstr(dump, "word@"), "%s", dump);
        CHECK(strstr(dump, "mongodb://bob:***@db:27017/x?a=b@c"));
        CHECK(par_config_key_secret("kafka.ssl.key.pem"));
        CHECK(par_config_key_secret("sasl.oauthbearer.config"));
        CHECK(!par_config_key_secret("topic.prefix"));
        free(dump);
        par_config_destroy(cfg);
}

/* Regression (issue 11): empty names were accepted, -c DIRECTORY was
 * ignored and a FIFO would block start-up. */
static void test_rejects_empty_and_non_files(void)
{
        par_config_t *cfg = fresh();
        par_error_t err;
        char fifo[] = "/tmp/par-config-fifo-XXXXXX";
        REQUIRE(cfg);

        CHECK(par_config_set(cfg, "topic.prefix", "", &err) == PAR_ERR_INVALID);
        CHECK(strstr(err.msg, "topic.prefix") && strstr(err.msg, "empty"));
        CHECK(par_config_set(cfg, "mongo.database", "", &err));
        CHECK(par_config_set(cfg, "mongo.collection", "", &err));
        CHECK(!par_config_set(cfg, "node.id", "", &err));
        CHECK(par_config_load_file(cfg, "/tmp", &err) == PAR_ERR_INVALID);
        CHECK(strstr(err.msg, "not a regular file"));
        REQUIRE(mkdtemp(fifo));
        char path[64];
        snprintf(path, sizeof(path), "%s/p", fifo);
        REQUIRE(!mkfifo(path, 0600));
        CHECK(par_config_load_file(cfg, path, &err) == PAR_ERR_INVALID);
        unlink(path);
        rmdir(fifo);
        par_config_destroy(cfg);
}

/* docs/CONFIGURATION.md is generated; it must match the table. */
static void test_docs_current(void)
{
        const char *src = getenv("PARALLEL_SOURCE_DIR");
        char path[1024], *want = NULL, *have = NULL;
        size_t wlen = 0, hlen = 0;
        FILE *f, *m;
        REQUIRE(src);

        snprintf(path, sizeof(path), "%s/docs/CONFIGURATION.md", src);
        m = open_memstream(&want, &wlen);
        par_config_markdown(m);
        fclose(m);
        f = fopen(path, "r");
        CHECKF(f, "%s missing: run `make docs`", path);
        if (f) {
                m = open_memstream(&have, &hlen);
                char chunk[4096];
                size_t n;
                while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
                        fwrite(chunk, 1, n, m);
                fclose(m);
                fclose(f);
                CHECKF(hlen == wlen && !memcmp(want, have, wlen),
                       "%s is stale: run `make docs`", path);
        }
        free(want);
        free(have);
}

TEST_MAIN(test_defaults, test_errors_name_key, test_layers,
          test_kafka_and_redaction, test_redaction_patterns,
          test_rejects_empty_and_non_files, test_docs_current)
