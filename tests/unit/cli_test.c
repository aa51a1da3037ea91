/*
 * cli_test.c — the command-line contract of the three programs.
 *
 * Runs the built parallel-producer, parallel-consumer and parallel-ctl from
 * $PARALLEL_BINARY_DIR as an operator (or systemd) would, and checks what
 * they promise at their edge:
 *   - --help and --version exit 0 and print to stdout;
 *   - a bad argument or configuration exits non-zero with exactly one line
 *     on stderr that names what was wrong (the key, the allowed values or
 *     range, the file), quickly;
 *   - bad configuration is rejected before any connection: every run points
 *     Kafka and MongoDB at a closed port, so a program that tried to connect
 *     would print librdkafka/mongoc errors (more lines) or hang (it is
 *     killed after RUN_TIMEOUT_S and the check fails);
 *   - -X dump never prints a secret.
 * No stack is needed. Each child runs in its own process group with the
 * PARALLEL_* environment cleared, so the caller's settings cannot leak in,
 * and with MONGOC_DISABLE_SHM=1 (see run()), as the systemd units set it.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "testutil.h"

#define RUN_TIMEOUT_S 10
#define MAX_ARGS      32

/* Nothing listens on port 1: a program that connects fails loudly. */
#define DEAD_KAFKA "-Xkafka.bootstrap.servers=127.0.0.1:1"
#define DEAD_MONGO                                                             \
        "-Xmongo.uri=mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=1000"

typedef struct result {
        int status; /* exit code, or -1 when killed or signalled */
        int timed_out;
        double secs;
        char *out;
        char *err;
} result_t;

static const char *bindir;
static char tmpdir[64];

static const char *const progs[] = {"parallel-producer", "parallel-consumer",
                                    "parallel-ctl"};

static char *slurp(int fd)
{
        struct stat st;
        char *buf;
        ssize_t n;
        size_t got = 0;

        if (fstat(fd, &st) || lseek(fd, 0, SEEK_SET) < 0)
                return strdup("");
        buf = malloc((size_t)st.st_size + 1);
        if (!buf)
                return NULL;
        while (got < (size_t)st.st_size &&
               (n = read(fd, buf + got, (size_t)st.st_size - got)) > 0)
                got += (size_t)n;
        buf[got] = '\0';
        return buf;
}

static void clear_parallel_env(void)
{
        extern char **environ;
        char name[256];

        /* unsetenv shifts environ; restart the scan after each removal. */
        for (int again = 1; again;) {
                again = 0;
                for (char **e = environ; e && *e; e++) {
                        const char *eq = strchr(*e, '=');
                        size_t len = eq ? (size_t)(eq - *e) : strlen(*e);
                        if (strncmp(*e, "PARALLEL_", 9) || len >= sizeof(name))
                                continue;
                        memcpy(name, *e, len);
                        name[len] = '\0';
                        unsetenv(name);
                        again = 1;
                        break;
                }
        }
}

/*
 * Runs bindir/prog with the NULL-terminated argument list, after setting the
 * NULL-terminated "NAME=value" list env (may be NULL) in the child. Captures
 * stdout and stderr in temp files (no pipe can fill up and stall the child).
 */
static void run(result_t *r, const char *prog, const char *const *env,
                const char *const *args)
{
        char path[512], outp[128], errp[128];
        char *argv[MAX_ARGS + 2];
        int ofd, efd, n = 0, st = 0;
        double t0 = par_clock_mono_s();
        pid_t pid;

        memset(r, 0, sizeof(*r));
        r->status = -1;
        snprintf(path, sizeof(path), "%s/%s", bindir, prog);
        snprintf(outp, sizeof(outp), "%s/out.XXXXXX", tmpdir);
        snprintf(errp, sizeof(errp), "%s/err.XXXXXX", tmpdir);
        ofd = mkstemp(outp);
        efd = mkstemp(errp);
        if (ofd < 0 || efd < 0) {
                fprintf(stderr, "mkstemp: %s\n", strerror(errno));
                exit(1);
        }
        unlink(outp);
        unlink(errp);
        argv[n++] = path;
        for (; args && *args && n < MAX_ARGS + 1; args++)
                argv[n++] = (char *)*args;
        argv[n] = NULL;

        pid = fork();
        if (pid == 0) {
                int null = open("/dev/null", O_RDONLY);
                setpgid(0, 0);
                clear_parallel_env();
                /* libmongoc's load-time init warns on stderr when a stale
                 * /dev/shm/mongoc-<pid> (left by a killed process with the
                 * same pid) exists; that line is not the program's. */
                setenv("MONGOC_DISABLE_SHM", "1", 1);
                for (; env && *env; env++)
                        putenv((char *)*env);
                dup2(null, 0);
                dup2(ofd, 1);
                dup2(efd, 2);
                execv(path, argv);
                _exit(127);
        }
        if (pid < 0) {
                fprintf(stderr, "fork: %s\n", strerror(errno));
                exit(1);
        }
        for (;;) {
                pid_t w = waitpid(pid, &st, WNOHANG);
                if (w == pid)
                        break;
                if (par_clock_mono_s() - t0 > RUN_TIMEOUT_S) {
                        kill(-pid, SIGKILL);
                        kill(pid, SIGKILL);
                        waitpid(pid, &st, 0);
                        r->timed_out = 1;
                        break;
                }
                par_clock_sleep_ms(10);
        }
        r->secs = par_clock_mono_s() - t0;
        if (!r->timed_out && WIFEXITED(st))
                r->status = WEXITSTATUS(st);
        r->out = slurp(ofd);
        r->err = slurp(efd);
        close(ofd);
        close(efd);
}

static void result_free(result_t *r)
{
        free(r->out);
        free(r->err);
}

static int count_lines(const char *s)
{
        int n = 0;

        for (const char *p = s; *p; p++)
                if (*p == '\n' || !p[1])
                        n++;
        return n;
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/*
 * The failure contract: non-zero exit, within the timeout, nothing on
 * stdout, exactly one non-empty line on stderr containing every `want`.
 */
static void expect_rejected(const char *prog, const char *const *env,
                            const char *const *args, const char *want1,
                            const char *want2)
{
        char what[512] = "";
        result_t r;

        /* Name the run in failures without the dead-address noise. */
        for (const char *const *a = args; *a; a++)
                if (strcmp(*a, DEAD_KAFKA) && strcmp(*a, DEAD_MONGO))
                        snprintf(what + strlen(what),
                                 sizeof(what) - strlen(what), " %s", *a);
        run(&r, prog, env, args);
        CHECKF(!r.timed_out, "%s%s: still running after %d s (stderr: %.300s)",
               prog, what, RUN_TIMEOUT_S, r.err);
        CHECKF(r.status > 0, "%s%s: exit status %d, want non-zero", prog, what,
               r.status);
        CHECKF(count_lines(r.err) == 1,
               "%s%s: %d lines on stderr, want exactly 1:\n%.600s", prog, what,
               count_lines(r.err), r.err);
        CHECKF(!*r.out, "%s%s: unexpected stdout: %.200s", prog, what, r.out);
        if (want1)
                CHECKF(strstr(r.err, want1),
                       "%s%s: stderr does not name '%s': %.300s", prog, what,
                       want1, r.err);
        if (want2)
                CHECKF(strstr(r.err, want2),
                       "%s%s: stderr does not name '%s': %.300s", prog, what,
                       want2, r.err);
        result_free(&r);
}

static void test_help(void)
{
        static const char *const own_key[] = {
            "producer.lease.ttl", "workers.max", "topics.partitions"};

        for (size_t i = 0; i < 3; i++) {
                const char *flags[] = {"--help", "-h"};
                for (size_t f = 0; f < 2; f++) {
                        result_t r;
                        run(&r, progs[i], NULL, ARGS(flags[f]));
                        CHECKF(r.status == 0, "%s %s: exit %d", progs[i],
                               flags[f], r.status);
                        CHECKF(strstr(r.out, "usage: ") &&
                                   strstr(r.out, progs[i]),
                               "%s %s: no usage line on stdout", progs[i],
                               flags[f]);
                        CHECKF(strstr(r.out, "mongo.uri") &&
                                   strstr(r.out, "kafka.*") &&
                                   strstr(r.out, own_key[i]),
                               "%s %s: config keys missing from help", progs[i],
                               flags[f]);
                        CHECKF(!*r.err, "%s %s: stderr: %.200s", progs[i],
                               flags[f], r.err);
                        result_free(&r);
                }
        }
}

static void test_version(void)
{
        for (size_t i = 0; i < 3; i++) {
                char want[128];
                result_t r;

                snprintf(want, sizeof(want), "%s %s\n", progs[i],
                         PARALLEL_VERSION);
                run(&r, progs[i], NULL, ARGS("--version"));
                CHECKF(r.status == 0, "%s --version: exit %d", progs[i],
                       r.status);
                CHECKF(tu_streq(r.out, want), "%s --version printed '%s'",
                       progs[i], r.out);
                CHECKF(!*r.err, "%s --version: stderr: %.200s", progs[i],
                       r.err);
                result_free(&r);
        }
}

/* Rejections every program shares (the config layer and the argv rules). */
static void test_bad_config(void)
{
        char file[128], bad[160];
        char envfile[160];
        FILE *f;

        snprintf(file, sizeof(file), "%s/bad.properties", tmpdir);
        f = fopen(file, "w");
        REQUIRE(f);
        fputs("# a comment\n\nlog.level=info\npriority.levels=99\n", f);
        fclose(f);
        snprintf(bad, sizeof(bad), "%s:4", file);
        snprintf(envfile, sizeof(envfile), "PARALLEL_CONFIG=%s/nope.properties",
                 tmpdir);

        /* -X values every program refuses: argument, then what the one
         * error line must name. */
        static const struct {
                const char *arg, *want1, *want2;
        } bad_x[] = {
            {"no.such.key=1", "no.such.key", "unknown key"},
            {"priority.levels=0", "priority.levels", "1..16"},
            {"chrome.mode=x", "chrome.mode", "launch|connect"},
            {"workers.max=lots", "workers.max", NULL},
            {"log.level=loud", "log.level", "debug|info"},
            {"claim.lease=soon", "claim.lease", NULL},
            {"novalue", "novalue", "key=value"},
        };

        for (size_t i = 0; i < 3; i++) {
                const char *p = progs[i];
                for (size_t k = 0; k < sizeof(bad_x) / sizeof(bad_x[0]); k++)
                        expect_rejected(
                            p, NULL,
                            ARGS(DEAD_KAFKA, DEAD_MONGO, "-X", bad_x[k].arg),
                            bad_x[k].want1, bad_x[k].want2);
                expect_rejected(p, NULL, ARGS(DEAD_KAFKA, DEAD_MONGO, "-X"),
                                "-X", NULL);
                expect_rejected(
                    p, NULL, ARGS("-c", "/nonexistent", DEAD_KAFKA, DEAD_MONGO),
                    "/nonexistent", NULL);
                expect_rejected(p, NULL, ARGS(DEAD_KAFKA, DEAD_MONGO, "-c"),
                                "-c", NULL);
                expect_rejected(p, NULL,
                                ARGS("-c", file, DEAD_KAFKA, DEAD_MONGO), bad,
                                "priority.levels");
                expect_rejected(p, ARGS(envfile), ARGS(DEAD_KAFKA, DEAD_MONGO),
                                "nope.properties", NULL);
                expect_rejected(p, ARGS("PARALLEL_WORKERS_MAX=0"),
                                ARGS(DEAD_KAFKA, DEAD_MONGO),
                                "PARALLEL_WORKERS_MAX", "workers.max");
                expect_rejected(p, NULL,
                                ARGS(DEAD_KAFKA, DEAD_MONGO, "--bogus"),
                                "--bogus", NULL);
        }
}

/*
 * Program-specific checks that need more than the property table (kafka.*
 * passthrough, cross-key rules, addresses): still no connection allowed.
 */
static void test_bad_config_semantic(void)
{
        char recipes[512], rdir[600];

        snprintf(recipes, sizeof(recipes), "%s/tests/fixtures/recipes",
                 tu_env("PARALLEL_SOURCE_DIR", ".."));
        snprintf(rdir, sizeof(rdir), "-Xrecipes.dir=%s", recipes);

#define CONSUMER_BASE                                                          \
        DEAD_KAFKA, DEAD_MONGO, rdir, "-Xhttp.listen=127.0.0.1:0",             \
            "-Xchrome.mode=connect", "-Xchrome.endpoints=http://127.0.0.1:1"

        expect_rejected("parallel-consumer", NULL,
                        ARGS(CONSUMER_BASE, "-Xkafka.no.such.prop=1"),
                        "no.such.prop", NULL);
        expect_rejected(
            "parallel-consumer", NULL,
            ARGS(CONSUMER_BASE, "-Xworkers.min=5", "-Xworkers.max=2"),
            "workers.m", NULL);
        /* The reason is printed whatever log.level says. */
        expect_rejected("parallel-consumer", NULL,
                        ARGS(CONSUMER_BASE, "-Xlog.level=off",
                             "-Xworkers.min=5", "-Xworkers.max=2"),
                        "workers.m", NULL);
        expect_rejected("parallel-producer", NULL,
                        ARGS(DEAD_KAFKA, DEAD_MONGO, "-Xlog.level=off",
                             "-Xproducer.http.listen=garbage"),
                        "garbage", NULL);
        expect_rejected("parallel-consumer", NULL,
                        ARGS(CONSUMER_BASE, "-Xsched.queue.low=300"), "300",
                        "256");
        expect_rejected("parallel-consumer", NULL,
                        ARGS(CONSUMER_BASE, "-Xchrome.endpoints="),
                        "chrome.endpoints", NULL);
        expect_rejected("parallel-consumer", NULL,
                        ARGS(CONSUMER_BASE, "-Xrecipes.dir=/nonexistent"),
                        "/nonexistent", NULL);
        expect_rejected("parallel-consumer", NULL,
                        ARGS(CONSUMER_BASE, "-Xhttp.listen=garbage"), "garbage",
                        NULL);
        expect_rejected("parallel-consumer", NULL,
                        ARGS(CONSUMER_BASE, "-Xmongo.uri=notauri"), "mongo.uri",
                        NULL);
#undef CONSUMER_BASE

        expect_rejected("parallel-producer", NULL,
                        ARGS(DEAD_KAFKA, DEAD_MONGO,
                             "-Xproducer.http.listen=127.0.0.1:0",
                             "-Xkafka.no.such.prop=1"),
                        "no.such.prop", NULL);
        expect_rejected(
            "parallel-producer", NULL,
            ARGS(DEAD_KAFKA, DEAD_MONGO, "-Xproducer.http.listen=garbage"),
            "garbage", NULL);
        expect_rejected("parallel-producer", NULL,
                        ARGS(DEAD_KAFKA, "-Xmongo.uri=notauri",
                             "-Xproducer.http.listen=127.0.0.1:0"),
                        "mongo.uri", NULL);

        expect_rejected("parallel-ctl", NULL,
                        ARGS(DEAD_KAFKA, DEAD_MONGO, "-Xkafka.no.such.prop=1",
                             "topics", "list"),
                        "no.such.prop", NULL);
        expect_rejected("parallel-ctl", NULL,
                        ARGS(DEAD_KAFKA, DEAD_MONGO, "-Xkafka.no.such.prop=1",
                             "decode", "--topic", "parallel.results"),
                        "no.such.prop", NULL);
}

static void test_ctl_arguments(void)
{
        static const char *const subs[] = {"topics", "signal", "decode", "spin",
                                           "report"};

        expect_rejected("parallel-ctl", NULL,
                        ARGS(DEAD_KAFKA, DEAD_MONGO, "frobnicate"),
                        "frobnicate", NULL);
        expect_rejected("parallel-ctl", NULL, ARGS(DEAD_KAFKA, DEAD_MONGO),
                        "command", NULL);
        expect_rejected("parallel-ctl", NULL,
                        ARGS(DEAD_KAFKA, DEAD_MONGO, "topics", "frobnicate"),
                        "frobnicate", NULL);
        expect_rejected("parallel-ctl", NULL,
                        ARGS(DEAD_KAFKA, DEAD_MONGO, "signal", "frobnicate"),
                        "frobnicate", NULL);
        expect_rejected("parallel-ctl", NULL,
                        ARGS(DEAD_KAFKA, DEAD_MONGO, "config", "frobnicate"),
                        "frobnicate", NULL);
        /* Subcommand arguments are checked before anything connects. */
        expect_rejected("parallel-ctl", NULL,
                        ARGS(DEAD_KAFKA, DEAD_MONGO, "signal", "insert",
                             "--priority", "9", "--recipe", "noop"),
                        "priority 9", "1..4");
        expect_rejected(
            "parallel-ctl", NULL,
            ARGS(DEAD_KAFKA, DEAD_MONGO, "signal", "insert", "--priority", "2"),
            "--recipe", NULL);
        expect_rejected("parallel-ctl", NULL,
                        ARGS(DEAD_KAFKA, DEAD_MONGO, "signal", "load",
                             "/nonexistent.jsonl"),
                        "/nonexistent.jsonl", NULL);
        expect_rejected("parallel-ctl", NULL,
                        ARGS(DEAD_KAFKA, DEAD_MONGO, "topics", "create",
                             "--partitions", "0"),
                        "partitions", "1..10000");
        expect_rejected("parallel-ctl", NULL,
                        ARGS(DEAD_KAFKA, DEAD_MONGO, "decode", "--topic",
                             "results", "--count", "-1"),
                        "--count", NULL);
        expect_rejected("parallel-ctl", NULL,
                        ARGS(DEAD_KAFKA, DEAD_MONGO, "decode", "--topic",
                             "results", "stray"),
                        "stray", NULL);
        expect_rejected("parallel-ctl", NULL,
                        ARGS(DEAD_KAFKA, DEAD_MONGO, "report", "stray"),
                        "stray", NULL);
        expect_rejected("parallel-ctl", NULL,
                        ARGS(DEAD_KAFKA, DEAD_MONGO, "spin", "--recipe",
                             "/nonexistent.json"),
                        "/nonexistent.json", NULL);
        /* Regression (issue 11): an invalid recipe exited 1, a non-UTF-8
         * --param was dropped without a word. */
        {
                char bad[160];
                snprintf(bad, sizeof(bad), "%s/bad-recipe.json", tmpdir);
                FILE *f = fopen(bad, "w");
                REQUIRE(f);
                fputs("{\"steps\": [{\"type\": \"extract\", \"name\": "
                      "\"n\", \"expression\": \"'{{p}}'\"}]}",
                      f);
                fclose(f);
                expect_rejected(
                    "parallel-ctl", NULL,
                    ARGS(DEAD_KAFKA, DEAD_MONGO, "spin", "--recipe", bad),
                    "bad-recipe.json", "expression");
                result_t r;
                run(&r, "parallel-ctl", NULL,
                    ARGS(DEAD_KAFKA, DEAD_MONGO, "spin", "--recipe", bad));
                CHECKF(r.status == 2, "spin with an invalid recipe: exit %d",
                       r.status);
                result_free(&r);
                expect_rejected("parallel-ctl", NULL,
                                ARGS(DEAD_KAFKA, DEAD_MONGO, "spin", "--recipe",
                                     "noop", "--param", "k=\xff\xfe"),
                                "--param", "UTF-8");
        }
        for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
                result_t r;

                expect_rejected(
                    "parallel-ctl", NULL,
                    ARGS(DEAD_KAFKA, DEAD_MONGO, subs[i], "--frobnicate"),
                    "--frobnicate", NULL);
                run(&r, "parallel-ctl", NULL, ARGS(subs[i], "--help"));
                CHECKF(r.status == 0, "parallel-ctl %s --help: exit %d",
                       subs[i], r.status);
                CHECKF(strstr(r.out, "usage: parallel-ctl"),
                       "parallel-ctl %s --help: no usage on stdout", subs[i]);
                result_free(&r);
        }
}

/* Regression (issue 11): -c DIRECTORY was ignored, empty names accepted,
 * and a params limit larger than a message was accepted. */
static void test_bad_config_issue11(void)
{
        for (size_t i = 0; i < 3; i++) {
                expect_rejected(progs[i], NULL, ARGS("-c", tmpdir), tmpdir,
                                "not a regular file");
                expect_rejected(progs[i], NULL, ARGS("-X", "topic.prefix="),
                                "topic.prefix", "empty");
                expect_rejected(progs[i], NULL, ARGS("-X", "mongo.database="),
                                "mongo.database", "empty");
                expect_rejected(progs[i], NULL,
                                ARGS("-X", "signal.max_params_bytes=16000000"),
                                "signal.max_params_bytes",
                                "topics.message.max.bytes");
        }
}

/* -X dump: the effective config, layered, with every secret redacted. */
static void test_dump(void)
{
        char file[128];
        FILE *f;

        snprintf(file, sizeof(file), "%s/secret.properties", tmpdir);
        f = fopen(file, "w");
        REQUIRE(f);
        fputs("kafka.ssl.key.password=filepw\n"
              "topic.prefix=fromfile\nnode.id=fromfile\nlog.level=warn\n",
              f);
        fclose(f);

        for (size_t i = 0; i < 3; i++) {
                result_t r;

                run(&r, progs[i],
                    ARGS("PARALLEL_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET=envpw",
                         "PARALLEL_NODE_ID=fromenv",
                         "PARALLEL_LOG_LEVEL=error"),
                    ARGS("-c", file, DEAD_KAFKA, "-X",
                         "kafka.sasl.password=hunter2", "-X",
                         "mongo.uri=mongodb://u:s3cret@h/", "-X",
                         "log.level=debug", "-X", "dump"));
                CHECKF(r.status == 0, "%s -X dump: exit %d (%.200s)", progs[i],
                       r.status, r.err);
                CHECKF(!strstr(r.out, "hunter2") && !strstr(r.out, "s3cret") &&
                           !strstr(r.out, "filepw") && !strstr(r.out, "envpw"),
                       "%s -X dump leaks a secret:\n%s", progs[i], r.out);
                CHECKF(!strstr(r.err, "hunter2") && !strstr(r.err, "s3cret"),
                       "%s -X dump leaks a secret on stderr", progs[i]);
                CHECKF(strstr(r.out, "\nkafka.sasl.password=***\n") &&
                           strstr(r.out, "\nkafka.ssl.key.password=***\n") &&
                           strstr(r.out, "\nmongo.uri=mongodb://u:***@h/\n"),
                       "%s -X dump: secrets not shown as ***:\n%s", progs[i],
                       r.out);
                /* Layers: file < env < -X. */
                CHECKF(strstr(r.out, "\ntopic.prefix=fromfile\n") &&
                           strstr(r.out, "\nnode.id=fromenv\n") &&
                           strstr(r.out, "log.level=debug\n") &&
                           strstr(r.out,
                                  "\nkafka.bootstrap.servers=127.0.0.1:1\n"),
                       "%s -X dump: layers not applied in order:\n%s", progs[i],
                       r.out);
                CHECKF(r.secs < RUN_TIMEOUT_S, "%s -X dump took %.1f s",
                       progs[i], r.secs);
                result_free(&r);
        }
}

/* The shipped example configurations stay loadable as keys change. */
static void test_example_configs(void)
{
        static const char *const pairs[][2] = {
            {"parallel-producer", "producer.properties"},
            {"parallel-consumer", "consumer.properties"}};
        const char *src = getenv("PARALLEL_SOURCE_DIR");

        REQUIRE(src && *src);
        for (size_t i = 0; i < 2; i++) {
                char path[512];
                result_t r;

                snprintf(path, sizeof(path), "%s/deploy/config/%s", src,
                         pairs[i][1]);
                run(&r, pairs[i][0], NULL, ARGS("-c", path, "-X", "dump"));
                CHECKF(r.status == 0 && !*r.err, "%s -c %s: exit %d: %.300s",
                       pairs[i][0], path, r.status, r.err);
                CHECKF(strstr(r.out, "\nkafka.bootstrap.servers="),
                       "%s -c %s: no kafka.bootstrap.servers in dump",
                       pairs[i][0], path);
                result_free(&r);
        }
}

static int setup(void)
{
        bindir = getenv("PARALLEL_BINARY_DIR");
        if (!bindir || !*bindir) {
                fprintf(stderr, "FAIL: PARALLEL_BINARY_DIR is not set\n");
                return 1;
        }
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/par-cli-XXXXXX");
        if (!mkdtemp(tmpdir)) {
                fprintf(stderr, "FAIL: mkdtemp: %s\n", strerror(errno));
                return 1;
        }
        return 0;
}

static void teardown(void)
{
        static const char *const files[] = {"bad.properties",
                                            "secret.properties"};
        char path[160];
        for (size_t i = 0; i < 2; i++) {
                snprintf(path, sizeof(path), "%s/%s", tmpdir, files[i]);
                unlink(path);
        }
        rmdir(tmpdir);
}

TEST_MAIN_WITH(setup, teardown, test_help, test_version, test_bad_config,
               test_bad_config_semantic, test_ctl_arguments,
               test_bad_config_issue11, test_dump, test_example_configs)
