/*
 * kafka_avro_roundtrip_test.c — Avro values through a real broker.
 *
 * Needs the dev stack's Kafka (PARALLEL_TEST_KAFKA, default 127.0.0.1:9092).
 * Creates a unique topic "<prefix>.dlq" (prefix unique per run), produces a
 * DeadLetter and a SpinResult encoded by the codec with key and headers,
 * plus one undecodable value, consumes them back and decodes them, runs
 * `parallel-ctl decode --topic dlq` with that prefix (so the short-name
 * resolution is exercised too) and checks its JSON lines, then deletes the
 * topic.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "base/clock.h"
#include "msg/admin.h"
#include "msg/codec.h"
#include "testutil.h"

#define TRACEPARENT "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static const char *brokers;
static char prefix[96], topic[128];
static par_codec_t *codec;
static json_t *dead, *result;

static rd_kafka_t *client(rd_kafka_type_t type)
{
        char errstr[256];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_t *rk;

        rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr,
                          sizeof(errstr));
        if (type == RD_KAFKA_CONSUMER) {
                rd_kafka_conf_set(conf, "group.id", prefix, errstr,
                                  sizeof(errstr));
                rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr,
                                  sizeof(errstr));
        }
        if (!(rk = rd_kafka_new(type, conf, errstr, sizeof(errstr)))) {
                fprintf(stderr, "rd_kafka_new: %s\n", errstr);
                rd_kafka_conf_destroy(conf);
        }
        return rk;
}

/* Creates or deletes the test's topic (2 partitions) through msg/admin;
 * a topic-level failure is an error. */
static par_err_t admin_topic(rd_kafka_t *rk, bool create, par_error_t *err)
{
        par_admin_topic_t t = {
            .name = topic, .partitions = 2, .replication = 1};
        const char *name = topic;

        return create ? par_admin_create(rk, &t, 1, 30000, NULL, err)
                      : par_admin_delete(rk, &name, 1, 30000, NULL, err);
}

static void produce(rd_kafka_t *p, int partition, const char *key,
                    const void *val, size_t len)
{
        rd_kafka_resp_err_t e = rd_kafka_producev(
            p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE((void *)val, len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADER("traceparent", TRACEPARENT, -1),
            RD_KAFKA_V_HEADER("x-binary", "\xff\x00\x01", 3), RD_KAFKA_V_END);
        CHECKF(e == RD_KAFKA_RESP_ERR_NO_ERROR, "produce: %s",
               rd_kafka_err2str(e));
}

static int delivered_ok, delivered_bad;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque)
{
        if (m->err) {
                delivered_bad++;
                fprintf(stderr, "delivery: %s\n", rd_kafka_err2str(m->err));
        } else {
                delivered_ok++;
        }
}

static void test_produce(void)
{
        char errstr[256];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_t *p;
        par_error_t err = {0};
        void *buf = NULL;
        size_t len = 0;

        rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr,
                          sizeof(errstr));
        rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr,
                          sizeof(errstr));
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        REQUIRE(p);

        REQUIRE(par_codec_encode(codec, PAR_SCHEMA_DLQ, dead, &buf, &len,
                                 &err) == PAR_OK);
        produce(p, 0, "65a1f0c2e4b0a1b2c3d4e5f6", buf, len);
        free(buf);
        REQUIRE(par_codec_encode(codec, PAR_SCHEMA_RESULT, result, &buf, &len,
                                 &err) == PAR_OK);
        produce(p, 1, "65a1f0c2e4b0a1b2c3d4e5f7", buf, len);
        free(buf);
        produce(p, 1, "junk", "{\"not\":\"avro\"}", 14);
        CHECK(rd_kafka_flush(p, 30000) == RD_KAFKA_RESP_ERR_NO_ERROR);
        CHECKF(delivered_ok == 3 && delivered_bad == 0, "%d ok, %d failed",
               delivered_ok, delivered_bad);
        rd_kafka_destroy(p);
}

/* Checks one consumed message against what was produced. */
static void check_message(const rd_kafka_message_t *m)
{
        const void *hv = NULL;
        size_t hs = 0;
        rd_kafka_headers_t *h = NULL;
        par_error_t err = {0};
        json_t *v = NULL;
        const char *schema = NULL;
        par_err_t rc;

        CHECK(rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR);
        CHECK(h && !rd_kafka_header_get_last(h, "traceparent", &hv, &hs) &&
              hs == strlen(TRACEPARENT) && !memcmp(hv, TRACEPARENT, hs));
        rc = par_codec_decode(codec, m->payload, m->len, NULL, &v, &schema,
                              &err);
        if (m->key_len == 4 && !memcmp(m->key, "junk", 4)) {
                CHECK(rc == PAR_ERR_INVALID);
                CHECKF(strstr(err.msg, "bad magic byte 0x7B"), "%s", err.msg);
        } else if (m->partition == 0) {
                CHECKF(rc == PAR_OK, "%s", err.msg);
                CHECK_STR(schema, "DeadLetter");
                CHECK(v && json_equal(v, dead));
        } else {
                CHECKF(rc == PAR_OK, "%s", err.msg);
                CHECK_STR(schema, "SpinResult");
                CHECK(v && json_equal(v, result));
        }
        json_decref(v);
}

static void test_consume(void)
{
        rd_kafka_t *c = client(RD_KAFKA_CONSUMER);
        rd_kafka_topic_partition_list_t *parts;
        int got = 0;
        double t0 = par_clock_mono_s();

        REQUIRE(c);
        rd_kafka_poll_set_consumer(c);
        parts = rd_kafka_topic_partition_list_new(2);
        rd_kafka_topic_partition_list_add(parts, topic, 0)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_topic_partition_list_add(parts, topic, 1)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
        CHECK(rd_kafka_assign(c, parts) == RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_topic_partition_list_destroy(parts);
        while (got < 3 && par_clock_mono_s() - t0 < 30) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
                if (!m)
                        continue;
                if (!m->err) {
                        check_message(m);
                        got++;
                }
                rd_kafka_message_destroy(m);
        }
        CHECKF(got == 3, "consumed %d of 3", got);
        rd_kafka_consumer_close(c);
        rd_kafka_destroy(c);
}

static void test_ctl_decode(void)
{
        char cmd[1024], line[65536];
        FILE *f;
        int lines = 0, decoded = 0, errors = 0, status;

        snprintf(cmd, sizeof(cmd),
                 "%s/parallel-ctl -X kafka.bootstrap.servers=%s "
                 "-X topic.prefix=%s decode --topic dlq --from-beginning "
                 "--to-end --timeout-ms 20000",
                 tu_env("PARALLEL_BINARY_DIR", "."), brokers, prefix);
        double t0 = par_clock_mono_s();
        REQUIRE((f = popen(cmd, "r")));
        while (fgets(line, sizeof(line), f)) {
                json_error_t je;
                json_t *j = json_loads(line, JSON_ALLOW_NUL, &je);
                json_t *hdrs;

                lines++;
                CHECKF(j, "not JSON: %s", line);
                if (!j)
                        continue;
                hdrs = json_object_get(j, "headers");
                CHECK_STR(json_string_value(json_object_get(j, "topic")),
                          topic);
                CHECK(json_is_integer(json_object_get(j, "offset")));
                CHECK(json_integer_value(json_object_get(j, "timestamp")) >
                      1700000000000LL);
                CHECK_STR(
                    json_string_value(json_object_get(hdrs, "traceparent")),
                    TRACEPARENT);
                /* Not UTF-8: base64 of FF 00 01. */
                CHECK_STR(json_string_value(json_object_get(
                              json_object_get(hdrs, "x-binary"), "base64")),
                          "/wAB");
                if (json_object_get(j, "error")) {
                        errors++;
                        CHECK_STR(json_string_value(json_object_get(j, "key")),
                                  "junk");
                        CHECK_STR(json_string_value(
                                      json_object_get(j, "value_base64")),
                                  "eyJub3QiOiJhdnJvIn0=");
                } else {
                        const char *schema =
                            json_string_value(json_object_get(j, "schema"));
                        json_t *want = schema && !strcmp(schema, "DeadLetter")
                                           ? dead
                                           : result;
                        decoded++;
                        CHECKF(json_equal(json_object_get(j, "value"), want),
                               "%s", line);
                        CHECK_STR(json_string_value(json_object_get(j, "key")),
                                  json_string_value(
                                      json_object_get(want, "signal_id")));
                }
                json_decref(j);
        }
        status = pclose(f);
        CHECKF(status == 0, "parallel-ctl exit status %d", status);
        /* --to-end stopped it at the end of every partition, not the idle
         * timeout */
        CHECKF(par_clock_mono_s() - t0 < 15, "decode --to-end took %.1f s",
               par_clock_mono_s() - t0);
        CHECKF(lines == 3 && decoded == 2 && errors == 1,
               "%d lines, %d decoded, %d errors", lines, decoded, errors);

        /* Nothing new after the end: exits 0 with no line after the idle
         * timeout. */
        snprintf(cmd, sizeof(cmd),
                 "%s/parallel-ctl -X kafka.bootstrap.servers=%s "
                 "-X topic.prefix=%s decode --topic %s --timeout-ms 1500",
                 tu_env("PARALLEL_BINARY_DIR", "."), brokers, prefix, topic);
        REQUIRE((f = popen(cmd, "r")));
        lines = 0;
        while (fgets(line, sizeof(line), f))
                lines++;
        status = pclose(f);
        CHECKF(status == 0 && lines == 0, "status %d, %d lines", status, lines);
}

static rd_kafka_t *admin;

static int setup(void)
{
        par_error_t err = {0};
        unsigned char orig[64];

        brokers = tu_env("PARALLEL_TEST_KAFKA", "127.0.0.1:9092");
        snprintf(prefix, sizeof(prefix), "parallel-it-codec-%ld-%ld",
                 (long)getpid(), (long)time(NULL));
        snprintf(topic, sizeof(topic), "%s.dlq", prefix);
        if (par_codec_new(&codec, &err)) {
                fprintf(stderr, "codec: %s\n", err.msg);
                return 1;
        }
        for (size_t i = 0; i < sizeof(orig); i++)
                orig[i] = (unsigned char)(i * 37);
        dead = json_pack(
            "{s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:i, s:I, s:s, s:o, s:I, "
            "s:s, s:I, s:s}",
            "signal_id", "65a1f0c2e4b0a1b2c3d4e5f6", "source", "consumer",
            "reason", "transient errors exhausted max.attempts (3): timeout",
            "error_class", "transient", "attempt", 3, "node_id", "node-ü",
            "topic", "parallel.signals.p2", "partition", 1, "offset",
            (json_int_t)42, "original_format", "avro", "original",
            par_codec_json_bytes(orig, sizeof(orig)), "ts",
            (json_int_t)1795741200000LL, "traceparent", TRACEPARENT,
            "original_length", (json_int_t)sizeof(orig), "original_sha256",
            "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0");
        result = json_pack(
            "{s:s, s:s, s:s, s:i, s:s, s:i, s:s, s:s, s:{s:s}, s:n, "
            "s:[{s:s, s:I}], s:I, s:I, s:I, s:I, s:I, s:s}",
            "signal_id", "65a1f0c2e4b0a1b2c3d4e5f7", "recipe", "title",
            "resource", "site:1", "priority", 3, "status", "done", "attempt", 1,
            "node_id", "node-a", "worker_id", "w0", "values", "title",
            "Ünïcødé 日本語", "error", "steps", "type", "navigate",
            "duration_us", (json_int_t)1234, "created_at",
            (json_int_t)1795741200000LL, "queued_at",
            (json_int_t)1795741200001LL, "claimed_at",
            (json_int_t)1795741200002LL, "started_at",
            (json_int_t)1795741200003LL, "finished_at",
            (json_int_t)1795741200004LL, "traceparent", TRACEPARENT);
        if (!dead || !result) {
                fprintf(stderr, "json_pack failed\n");
                return 1;
        }

        admin = client(RD_KAFKA_PRODUCER);
        if (!admin)
                return 1;
        if (admin_topic(admin, true, &err)) {
                fprintf(stderr, "create topic %s on %s: %s\n", topic, brokers,
                        err.msg);
                rd_kafka_destroy(admin);
                return 1;
        }
        return 0;
}

static void teardown(void)
{
        par_error_t err = {0};

        CHECKF(admin_topic(admin, false, &err) == PAR_OK, "delete topic: %s",
               err.msg);
        rd_kafka_destroy(admin);
        json_decref(dead);
        json_decref(result);
        par_codec_destroy(codec);
}

TEST_MAIN_WITH(setup, teardown, test_produce, test_consume, test_ctl_decode)
