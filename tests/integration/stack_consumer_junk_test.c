/*
 * stack_consumer_junk_test.c — poison messages on a signals topic, each
 * followed by valid signals (issue 11): about 1 MB of random bytes (the
 * node used to build a dead letter embedding all of it, fail to produce
 * it and crash on rd_kafka_headers_destroy(NULL), on every restart), and a
 * well-formed Signal whose params exceed signal.max_params_bytes (written
 * straight to the topic, not through the producer). Each is set aside (a
 * DeadLetter, the offset passes), the node does not die, and every valid
 * signal finishes.
 */
#include "base/clock.h"
#include "stack_consumer_util.h"

#define NVALID 20

static rd_kafka_t *junk_prod;

/* Writes one value straight to topic (no producer program in between). */
static void produce_raw(su_ctx_t *c, const char *topic, const void *v,
                        size_t len)
{
        char es[256];

        if (!junk_prod) {
                rd_kafka_conf_t *conf = rd_kafka_conf_new();
                rd_kafka_conf_set(conf, "bootstrap.servers", c->kafka, es,
                                  sizeof(es));
                junk_prod =
                    rd_kafka_new(RD_KAFKA_PRODUCER, conf, es, sizeof(es));
        }
        REQUIRE(junk_prod);
        void *copy = malloc(len);
        memcpy(copy, v, len);
        CHECK(rd_kafka_producev(junk_prod, RD_KAFKA_V_TOPIC(topic),
                                RD_KAFKA_V_KEY("junk", 4),
                                RD_KAFKA_V_VALUE(copy, len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                                RD_KAFKA_V_END) == 0);
        CHECK(rd_kafka_flush(junk_prod, 30000) == 0);
}

static void test_junk(void)
{
        su_ctx_t c;
        su_ledger_t l;
        sc_reader_t r;
        su_proc_t node;
        char topic[160];
        par_error_t err;

        REQUIRE(sc_init(&c, "cjunk") == 0);
        REQUIRE(su_ledger_init(&l, 2 * NVALID, 4) == 0);
        REQUIRE(sc_insert(&c, &l, NVALID, 2, "noop", 0, 0) == NVALID);
        snprintf(topic, sizeof(topic), "%s.signals.p2", c.name);

        /* ~1 MB that is no Signal: just under the message limit, so a dead
         * letter embedding it whole would be over it. */
        size_t big = 999000;
        unsigned char *junk = malloc(big);
        REQUIRE(junk);
        for (size_t i = 0; i < big; i++)
                junk[i] = (unsigned char)(i * 2654435761u >> 13);
        produce_raw(&c, topic, junk, big);
        free(junk);

        /* A decodable Signal the producer would have rejected. */
        char *pv = malloc(4001);
        memset(pv, 'p', 4000);
        pv[4000] = '\0';
        json_t *v = json_pack(
            "{s:s,s:i,s:s,s:s,s:{s:s},s:I,s:n,s:i,s:s}", "id",
            "65a1b2c3d4e5f60718293a4b", "priority", 2, "recipe", "noop",
            "resource", "r", "params", "big", pv, "created_at",
            (json_int_t)par_clock_wall_ms(), "expires_at", "attempt", 0,
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        free(pv);
        void *buf = NULL;
        size_t len = 0;
        REQUIRE(v && !par_codec_encode(c.codec, PAR_SCHEMA_SIGNAL, v, &buf,
                                       &len, &err));
        json_decref(v);
        produce_raw(&c, topic, buf, len);
        free(buf);

        REQUIRE(sc_insert(&c, &l, NVALID, 2, "noop", 0, 0) == NVALID);
        REQUIRE(sc_reader_new(&c, &r, 2 * NVALID) == 0);
        REQUIRE(sc_node_start(&c, &node, "junk", "signal.max_params_bytes=1024",
                              NULL) == 0);
        size_t missing = sc_read(&c, &r, &l, 2 * NVALID, 90, 1500);
        CHECKF(missing == 0, "%zu valid signals never finished", missing);
        CHECK(su_metric(node.port, "parallel_messages_undecodable_total") >= 2);
        /* Alive, and it drains and exits cleanly. */
        CHECK(su_producer_stop(&node, SIGTERM, 40) == 0);
        sc_reader_destroy(&r);
        su_ledger_free(&l);
        sc_cleanup(&c);
}

TEST_MAIN(test_junk)
