/*
 * kafka_test.c — rd_kafka_conf building from config (defaults, passthrough,
 * errors that name the key), topic names, and traceparent format/parse.
 * No broker needed.
 */
#include <ctype.h>
#include <string.h>

#include "base/config.h"
#include "msg/kafka.h"
#include "testutil.h"

static const char *conf_get(rd_kafka_conf_t *conf, const char *key, char *buf,
                            size_t n)
{
        size_t sz = n;
        if (rd_kafka_conf_get(conf, key, buf, &sz) != RD_KAFKA_CONF_OK)
                return "(unknown)";
        return buf;
}

static void test_conf(void)
{
        par_config_t *cfg = NULL;
        rd_kafka_conf_t *conf = NULL;
        par_error_t err;
        char buf[256];

        REQUIRE(par_config_new(&cfg, &err) == PAR_OK);
        REQUIRE(par_kafka_conf_new(&conf, cfg, "tester", &err) == PAR_OK);
        CHECK_STR(conf_get(conf, "bootstrap.servers", buf, sizeof(buf)),
                  PAR_KAFKA_DEFAULT_BOOTSTRAP);
        CHECK_STR(conf_get(conf, "client.id", buf, sizeof(buf)), "tester");
        rd_kafka_conf_destroy(conf);
        conf = NULL;

        /* passthrough, in order; kafka.client.id beats the argument */
        REQUIRE(par_config_set(cfg, "kafka.bootstrap.servers",
                               "10.0.0.1:9092,10.0.0.2:9092", &err) == PAR_OK);
        REQUIRE(par_config_set(cfg, "kafka.linger.ms", "7", &err) == PAR_OK);
        REQUIRE(par_config_set(cfg, "kafka.client.id", "from-config", &err) ==
                PAR_OK);
        REQUIRE(par_kafka_conf_new(&conf, cfg, "tester", &err) == PAR_OK);
        CHECK_STR(conf_get(conf, "bootstrap.servers", buf, sizeof(buf)),
                  "10.0.0.1:9092,10.0.0.2:9092");
        CHECK_STR(conf_get(conf, "linger.ms", buf, sizeof(buf)), "7");
        CHECK_STR(conf_get(conf, "client.id", buf, sizeof(buf)), "from-config");
        rd_kafka_conf_destroy(conf);
        conf = NULL;
        par_config_destroy(cfg);

        /* an unknown librdkafka property: the error names our key */
        REQUIRE(par_config_new(&cfg, &err) == PAR_OK);
        REQUIRE(par_config_set(cfg, "kafka.no.such.property", "1", &err) ==
                PAR_OK);
        CHECK(par_kafka_conf_new(&conf, cfg, NULL, &err) == PAR_ERR_INVALID);
        CHECK(conf == NULL);
        CHECKF(!strncmp(err.msg, "kafka.no.such.property: ", 24), "%s",
               err.msg);
        par_config_destroy(cfg);

        /* a bad value for a real property */
        REQUIRE(par_config_new(&cfg, &err) == PAR_OK);
        REQUIRE(par_config_set(cfg, "kafka.acks", "banana", &err) == PAR_OK);
        CHECK(par_kafka_conf_new(&conf, cfg, NULL, &err) == PAR_ERR_INVALID);
        CHECK(conf == NULL);
        CHECKF(!strncmp(err.msg, "kafka.acks: ", 12) &&
                   strstr(err.msg, "banana"),
               "%s", err.msg);
        par_config_destroy(cfg);

        /* a client really builds from the conf (no broker contacted) */
        REQUIRE(par_config_new(&cfg, &err) == PAR_OK);
        REQUIRE(par_kafka_conf_new(&conf, cfg, "builder", &err) == PAR_OK);
        rd_kafka_t *rk =
            rd_kafka_new(RD_KAFKA_PRODUCER, conf, buf, sizeof(buf));
        CHECKF(rk != NULL, "%s", buf);
        if (rk)
                rd_kafka_destroy(rk);
        else
                rd_kafka_conf_destroy(conf);
        par_config_destroy(cfg);
}

static void test_topic_names(void)
{
        par_config_t *cfg = NULL;
        par_error_t err;
        char buf[PAR_KAFKA_TOPIC_MAX], small[12];

        REQUIRE(par_config_new(&cfg, &err) == PAR_OK);
        CHECK_STR(par_kafka_topic_name(cfg, "results", buf, sizeof(buf)),
                  "parallel.results");
        CHECK_STR(par_kafka_signal_topic(cfg, 4, buf, sizeof(buf)),
                  "parallel.signals.p4");
        CHECK_STR(par_kafka_signal_topic(cfg, 1, buf, sizeof(buf)),
                  "parallel.signals.p1");
        CHECK(par_kafka_signal_topic(cfg, 0, buf, sizeof(buf)) == NULL);
        CHECK(par_kafka_signal_topic(cfg, 5, buf, sizeof(buf)) == NULL);
        CHECK(par_kafka_topic_name(cfg, "", buf, sizeof(buf)) == NULL);
        CHECK(par_kafka_topic_name(cfg, "results", small, sizeof(small)) ==
              NULL);
        REQUIRE(par_config_set(cfg, "topic.prefix", "t-123", &err) == PAR_OK);
        REQUIRE(par_config_set(cfg, "priority.levels", "6", &err) == PAR_OK);
        CHECK_STR(par_kafka_signal_topic(cfg, 6, buf, sizeof(buf)),
                  "t-123.signals.p6");
        CHECK_STR(par_kafka_topic_name(cfg, "dlq", buf, sizeof(buf)),
                  "t-123.dlq");
        par_config_destroy(cfg);
}

static int is_lower_hex(const char *s, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (!isxdigit((unsigned char)s[i]) ||
                    isupper((unsigned char)s[i]))
                        return 0;
        return 1;
}

static par_err_t parse(const char *s, par_trace_t *t)
{
        par_error_t err;
        par_err_t rc = par_kafka_trace_parse(s, strlen(s), t, &err);
        if (rc)
                fprintf(stderr, "   (expected?) %s: %s\n", s, err.msg);
        return rc;
}

static void test_traceparent(void)
{
        par_trace_t root, child, back, t;
        char s[PAR_TRACEPARENT_LEN + 1], c[PAR_TRACEPARENT_LEN + 1];

        par_kafka_trace_root(&root);
        par_kafka_trace_format(&root, s);
        CHECK(strlen(s) == PAR_TRACEPARENT_LEN);
        CHECK(!strncmp(s, "00-", 3) && s[35] == '-' && s[52] == '-');
        CHECK(is_lower_hex(s + 3, 32) && is_lower_hex(s + 36, 16));
        CHECK(!strcmp(s + 53, "01"));
        REQUIRE(parse(s, &back) == PAR_OK);
        CHECK(!memcmp(&back, &root, sizeof(root)));

        par_kafka_trace_child(&root, &child);
        par_kafka_trace_format(&child, c);
        CHECK(!memcmp(child.trace_id, root.trace_id, 16));
        CHECK(memcmp(child.span_id, root.span_id, 8) != 0);
        CHECK(child.flags == root.flags);
        CHECK(!strncmp(s, c, 36) && strcmp(s, c) != 0);

        /* two roots differ */
        par_kafka_trace_root(&t);
        CHECK(memcmp(t.trace_id, root.trace_id, 16) != 0);

        /* the spec's example */
        REQUIRE(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                      &t) == PAR_OK);
        CHECK(t.trace_id[0] == 0x4b && t.trace_id[15] == 0x36);
        CHECK(t.span_id[0] == 0x00 && t.span_id[7] == 0xb7);
        CHECK(t.flags == 1);
        /* a later version may carry more fields after a '-' */
        CHECK(parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-"
                    "what-the-future-will-be-like",
                    &t) == PAR_OK);

        static const char *bad[] = {
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                memset(&t, 0x5a, sizeof(t));
                CHECKF(parse(bad[i], &t) == PAR_ERR_INVALID, "'%s'", bad[i]);
                CHECK(t.flags == 0x5a); /* untouched on failure */
        }

        /* into message headers and back out */
        rd_kafka_headers_t *h = rd_kafka_headers_new(1);
        const void *val;
        size_t size;
        par_error_t err;
        REQUIRE(par_kafka_trace_to_headers(h, &child, &err) == PAR_OK);
        REQUIRE(rd_kafka_header_get_last(h, PAR_TRACEPARENT_HEADER, &val,
                                         &size) == RD_KAFKA_RESP_ERR_NO_ERROR);
        CHECK(size == PAR_TRACEPARENT_LEN && !memcmp(val, c, size));
        REQUIRE(par_kafka_trace_parse(val, size, &back, &err) == PAR_OK);
        CHECK(!memcmp(&back, &child, sizeof(child)));
        rd_kafka_headers_destroy(h);
}

/* Regression (issue 11): signal.max_params_bytes accepted 16 MiB, more than
 * a topic takes, and the producer looped on a valid signal. */
static void test_sizes(void)
{
        par_config_t *cfg = NULL;
        par_error_t err;
        REQUIRE(!par_config_new(&cfg, &err));
        CHECK(par_kafka_message_max(cfg) == 1000000);
        CHECK(par_kafka_value_max(cfg) < par_kafka_message_max(cfg));
        CHECK(!par_kafka_check_sizes(cfg, &err));
        CHECK(
            !par_config_set(cfg, "signal.max_params_bytes", "16000000", &err));
        CHECK(par_kafka_check_sizes(cfg, &err) == PAR_ERR_INVALID);
        CHECK(strstr(err.msg, "signal.max_params_bytes"));
        CHECK(
            !par_config_set(cfg, "topics.message.max.bytes", "20000000", &err));
        CHECK(!par_kafka_check_sizes(cfg, &err));
        CHECK(!par_config_set(cfg, "kafka.message.max.bytes", "500000", &err));
        CHECK(par_kafka_message_max(cfg) == 500000);
        CHECK(par_kafka_check_sizes(cfg, &err));
        par_config_destroy(cfg);
}

TEST_MAIN(test_conf, test_topic_names, test_traceparent, test_sizes)
