/*
 * kafka_topics_test.c — `parallel-ctl topics` against the real broker
 * (PARALLEL_TEST_KAFKA, default 127.0.0.1:9092), under a unique prefix:
 * create twice (idempotent), check partition counts through metadata and
 * topic configs through DescribeConfigs (.workers compacted, retention set
 * elsewhere), carry a traceparent header through a real topic, then delete.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/config.h"
#include "msg/admin.h"
#include "msg/kafka.h"
#include "testutil.h"

static char prefix[64];
static const char *bootstrap;
static char ctl[1024];
static par_config_t *cfg;
static rd_kafka_t *admin;

/* Runs parallel-ctl with our prefix and broker; captures stdout in out. */
static int run_ctl(char *out, size_t n, const char *fmt, ...)
{
        char args[512], cmd[2048];
        va_list ap;
        FILE *p;
        size_t len = 0;
        int st;

        va_start(ap, fmt);
        vsnprintf(args, sizeof(args), fmt, ap);
        va_end(ap);
        snprintf(cmd, sizeof(cmd),
                 "%s -X log.level=warn -X topic.prefix=%s -X "
                 "kafka.bootstrap.servers=%s topics %s",
                 ctl, prefix, bootstrap, args);
        fprintf(stderr, "   $ %s\n", cmd);
        p = popen(cmd, "r");
        if (!p)
                return -1;
        out[0] = '\0';
        while (len + 1 < n && fgets(out + len, (int)(n - len), p))
                len += strlen(out + len);
        st = pclose(p);
        fputs(out, stderr);
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Partition count from fresh metadata; negative when missing. */
static int partitions(const char *topic)
{
        return par_admin_partitions(admin, topic, 10000);
}

/* One topic config value via DescribeConfigs, into buf ("" if absent). */
static int topic_config(const char *topic, const char *name, char *buf,
                        size_t n)
{
        rd_kafka_ConfigResource_t *cr =
            rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
        rd_kafka_queue_t *q = rd_kafka_queue_new(admin);
        rd_kafka_event_t *ev;
        const rd_kafka_ConfigResource_t **res;
        size_t nres = 0;
        int rc = -1;

        buf[0] = '\0';
        rd_kafka_DescribeConfigs(admin, &cr, 1, NULL, q);
        ev = rd_kafka_queue_poll(q, 30000);
        if (ev && !rd_kafka_event_error(ev)) {
                res = rd_kafka_DescribeConfigs_result_resources(
                    rd_kafka_event_DescribeConfigs_result(ev), &nres);
                if (nres == 1 && !rd_kafka_ConfigResource_error(res[0])) {
                        size_t ne = 0;
                        const rd_kafka_ConfigEntry_t **e =
                            rd_kafka_ConfigResource_configs(res[0], &ne);
                        for (size_t i = 0; i < ne; i++)
                                if (!strcmp(rd_kafka_ConfigEntry_name(e[i]),
                                            name)) {
                                        const char *v =
                                            rd_kafka_ConfigEntry_value(e[i]);
                                        snprintf(buf, n, "%s", v ? v : "");
                                        rc = 0;
                                }
                }
        }
        if (ev)
                rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
        rd_kafka_ConfigResource_destroy(cr);
        return rc;
}

static void test_create_twice(void)
{
        char out[8192], name[PAR_KAFKA_TOPIC_MAX], v[64];

        /* more in-sync replicas than replicas: refused before any call */
        CHECK(run_ctl(out, sizeof(out), "create --min-insync 2") == 2);
        CHECK(run_ctl(out, sizeof(out), "list") == 1);
        CHECK(run_ctl(out, sizeof(out),
                      "create --partitions 3 --min-insync 1 "
                      "--retention-ms 3600000") == 0);
        CHECK(strstr(out, "8 created, 0 already existed, 0 failed") != NULL);
        CHECK(run_ctl(out, sizeof(out), "create --partitions 3") == 0);
        CHECK(strstr(out, "0 created, 8 already existed, 0 failed") != NULL);
        CHECK(run_ctl(out, sizeof(out), "list") == 0);
        CHECK(strstr(out, "missing") == NULL);

        for (int p = 1; p <= 4; p++) {
                par_kafka_signal_topic(cfg, p, name, sizeof(name));
                CHECKF(partitions(name) == 3, "%s: %d partitions", name,
                       partitions(name));
        }
        static const char *const others[] = {"results", "metrics", "workers",
                                             "dlq"};
        for (int i = 0; i < 4; i++) {
                par_kafka_topic_name(cfg, others[i], name, sizeof(name));
                CHECKF(partitions(name) == 3, "%s: %d partitions", name,
                       partitions(name));
        }
        par_kafka_topic_name(cfg, "workers", name, sizeof(name));
        CHECK(topic_config(name, "cleanup.policy", v, sizeof(v)) == 0);
        CHECK_STR(v, "compact");
        par_kafka_topic_name(cfg, "results", name, sizeof(name));
        CHECK(topic_config(name, "cleanup.policy", v, sizeof(v)) == 0);
        CHECK_STR(v, "delete");
        CHECK(topic_config(name, "retention.ms", v, sizeof(v)) == 0);
        CHECK_STR(v, "3600000");
        CHECK(topic_config(name, "min.insync.replicas", v, sizeof(v)) == 0);
        CHECK_STR(v, "1");
        /* a signals topic with no prefix would be "signals.p5": no such */
        CHECK(par_kafka_signal_topic(cfg, 5, name, sizeof(name)) == NULL);
}

/* A traceparent header survives a real round trip through the broker. */
static void test_trace_header(void)
{
        char topic[PAR_KAFKA_TOPIC_MAX], errstr[512];
        rd_kafka_conf_t *conf = NULL;
        par_error_t err;
        par_trace_t sent, got;
        rd_kafka_t *prod, *cons;
        rd_kafka_headers_t *h = rd_kafka_headers_new(1);
        rd_kafka_topic_partition_list_t *tp;
        rd_kafka_message_t *msg = NULL;
        char key[32];
        double deadline;

        par_kafka_topic_name(cfg, "results", topic, sizeof(topic));
        par_kafka_trace_root(&sent);
        REQUIRE(par_kafka_trace_to_headers(h, &sent, &err) == PAR_OK);
        REQUIRE(par_kafka_conf_new(&conf, cfg, "it-producer", &err) == PAR_OK);
        prod = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        REQUIRE(prod);
        snprintf(key, sizeof(key), "k%d", (int)getpid());
        CHECK(rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(topic),
                                RD_KAFKA_V_PARTITION(0),
                                RD_KAFKA_V_KEY(key, strlen(key)),
                                RD_KAFKA_V_VALUE("v", 1), RD_KAFKA_V_HEADERS(h),
                                RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR_NO_ERROR);
        CHECK(rd_kafka_flush(prod, 20000) == RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_destroy(prod);

        REQUIRE(par_kafka_conf_new(&conf, cfg, "it-consumer", &err) == PAR_OK);
        rd_kafka_conf_set(conf, "group.id", prefix, errstr, sizeof(errstr));
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr,
                          sizeof(errstr));
        cons = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
        REQUIRE(cons);
        tp = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(tp, topic, 0)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
        CHECK(rd_kafka_assign(cons, tp) == RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_topic_partition_list_destroy(tp);
        deadline = par_clock_mono_s() + 30;
        while (!msg && par_clock_mono_s() < deadline) {
                msg = rd_kafka_consumer_poll(cons, 500);
                if (msg && msg->err) {
                        rd_kafka_message_destroy(msg);
                        msg = NULL;
                }
        }
        CHECK(msg != NULL);
        if (msg) {
                CHECK(par_kafka_trace_from_message(msg, &got, &err) == PAR_OK);
                CHECK(!memcmp(&got, &sent, sizeof(sent)));
                rd_kafka_message_destroy(msg);
        }
        rd_kafka_consumer_close(cons);
        rd_kafka_destroy(cons);
}

static void test_delete(void)
{
        char out[8192], name[PAR_KAFKA_TOPIC_MAX];
        int left = 1;

        par_kafka_topic_name(cfg, "dlq", name, sizeof(name));
        /* without --yes nothing happens */
        CHECK(run_ctl(out, sizeof(out), "delete") == 2);
        CHECK(partitions(name) == 3);
        CHECK(run_ctl(out, sizeof(out), "delete --yes") == 0);
        CHECK(strstr(out, "8 deleted, 0 absent, 0 failed") != NULL);
        /* deletion propagates to metadata asynchronously */
        for (double end = par_clock_mono_s() + 30;
             left && par_clock_mono_s() < end;) {
                left = partitions(name) >= 0;
                if (left)
                        usleep(200000);
        }
        CHECK(!left);
        CHECK(run_ctl(out, sizeof(out), "list") == 1);
        CHECK(strstr(out, "8 missing") != NULL);
}

static int setup(void)
{
        par_error_t err;
        rd_kafka_conf_t *conf = NULL;

        bootstrap = tu_env("PARALLEL_TEST_KAFKA", "127.0.0.1:9092");
        snprintf(ctl, sizeof(ctl), "%s/parallel-ctl",
                 tu_env("PARALLEL_BINARY_DIR", "."));
        snprintf(prefix, sizeof(prefix), "ittopics%d_%ld", (int)getpid(),
                 (long)time(NULL));
        if (par_config_new(&cfg, &err) ||
            par_config_set(cfg, "topic.prefix", prefix, &err) ||
            par_config_set(cfg, "kafka.bootstrap.servers", bootstrap, &err) ||
            par_kafka_conf_new(&conf, cfg, "it-admin", &err) ||
            /* probing a deleted topic must not re-create it */
            par_admin_client_new(&admin, conf, 10000, &err)) {
                fprintf(stderr, "setup: %s\n", err.msg);
                return 1;
        }
        return 0;
}

/* Leaves nothing behind even if a check failed midway. */
static void teardown(void)
{
        char out[4096];

        run_ctl(out, sizeof(out), "delete --yes");
        CHECK(strstr(out, "0 deleted, 8 absent") != NULL);
        rd_kafka_destroy(admin);
        par_config_destroy(cfg);
}

TEST_MAIN_WITH(setup, teardown, test_create_twice, test_trace_header,
               test_delete)
