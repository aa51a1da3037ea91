/*
 * stack_consumer_e2e_test.c — end to end through the real stack: signals
 * inserted into MongoDB and published to their topics (as the producer
 * would; the producer has its own tests), three real consumer nodes
 * running `noop`, with membership changes during the run: n3 joins at
 * 20 %, n1 leaves (SIGTERM, graceful) at 50 %. Every signal must end in
 * exactly one final state on its document and have exactly one execution
 * (done result) — no signal runs twice without a crash; the nodes' HTTP
 * endpoints answer; every node exits 0 on SIGTERM.
 */
#include "base/clock.h"
#include "stack_consumer_util.h"

#define N 5000

/* Every node published NodeMetrics and WorkerStatus records (the last
 * ones saying "stopped"), all decodable with the schemas. */
static void check_side_topics(su_ctx_t *c)
{
        char es[256], name[160];
        int metrics[3] = {0}, status[3] = {0}, bad = 0, nkeys = 0;
        struct {
                char key[64];
                bool gone; /* last record: stopped or tombstone */
        } keys[64];
        long long done_last[3] = {0};
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_set(conf, "bootstrap.servers", c->kafka, es, sizeof(es));
        rd_kafka_conf_set(conf, "group.id", "sc-side", es, sizeof(es));
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, es, sizeof(es));
        REQUIRE(rk);
        rd_kafka_topic_partition_list_t *tp =
            rd_kafka_topic_partition_list_new(8);
        for (int p = 0; p < SU_PARTITIONS; p++) {
                snprintf(name, sizeof(name), "%s.metrics", c->name);
                rd_kafka_topic_partition_list_add(tp, name, p)->offset =
                    RD_KAFKA_OFFSET_BEGINNING;
                snprintf(name, sizeof(name), "%s.workers", c->name);
                rd_kafka_topic_partition_list_add(tp, name, p)->offset =
                    RD_KAFKA_OFFSET_BEGINNING;
        }
        rd_kafka_assign(rk, tp);
        rd_kafka_topic_partition_list_destroy(tp);
        double end = par_clock_mono_s() + 5;
        while (par_clock_mono_s() < end) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
                if (!m)
                        continue;
                json_t *v = NULL;
                const char *schema = NULL;
                par_error_t err;
                int ki = -1;
                if (!m->err && m->key_len && m->key_len < 64 &&
                    strstr(rd_kafka_topic_name(m->rkt), ".workers")) {
                        for (int k = 0; k < nkeys; k++)
                                if (strlen(keys[k].key) == m->key_len &&
                                    !memcmp(keys[k].key, m->key, m->key_len))
                                        ki = k;
                        if (ki < 0 && nkeys < 64) {
                                ki = nkeys++;
                                memcpy(keys[ki].key, m->key, m->key_len);
                                keys[ki].key[m->key_len] = '\0';
                        }
                        if (ki >= 0)
                                keys[ki].gone = m->len == 0;
                }
                if (!m->err && m->len &&
                    par_codec_decode(c->codec, m->payload, m->len, NULL, &v,
                                     &schema, &err) == PAR_OK) {
                        const char *node =
                            json_string_value(json_object_get(v, "node_id"));
                        int i = node && node[0] == 'n' ? node[1] - '1' : -1;
                        if (i >= 0 && i < 3 &&
                            !strcmp(schema, PAR_SCHEMA_METRICS)) {
                                metrics[i]++;
                                done_last[i] = json_integer_value(
                                    json_object_get(v, "spins_done"));
                        } else if (i >= 0 && i < 3 &&
                                   !strcmp(schema, PAR_SCHEMA_WORKER)) {
                                status[i]++;
                                if (ki >= 0)
                                        keys[ki].gone = !strcmp(
                                            json_string_value(
                                                json_object_get(v, "state")),
                                            "stopped");
                        }
                        json_decref(v);
                } else if (!m->err && m->len) {
                        bad++;
                }
                rd_kafka_message_destroy(m);
        }
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        for (int i = 0; i < 3; i++) {
                CHECKF(metrics[i] >= 1 && status[i] >= 1,
                       "n%d: %d metrics, %d worker statuses", i + 1, metrics[i],
                       status[i]);
        }
        int alive = 0;
        for (int k = 0; k < nkeys; k++)
                if (!keys[k].gone) {
                        alive++;
                        fprintf(stderr, "   worker %s not stopped\n",
                                keys[k].key);
                }
        CHECK(nkeys >= 3 && alive == 0);
        CHECK(bad == 0);
        fprintf(stderr,
                "   side topics: metrics %d/%d/%d (last spins_done "
                "%lld/%lld/%lld), worker statuses %d/%d/%d\n",
                metrics[0], metrics[1], metrics[2], done_last[0], done_last[1],
                done_last[2], status[0], status[1], status[2]);
}

static void test_e2e(void)
{
        su_ctx_t c;
        su_ledger_t l;
        sc_reader_t r;
        su_proc_t nodes[3];
        char buf[65536];

        REQUIRE(sc_init(&c, "ce2e") == 0);
        REQUIRE(su_ledger_init(&l, N, 20) == 0);
        /* Mixed priorities; half of them on 20 resources. */
        size_t ins = 0;
        ins += sc_insert(&c, &l, N * 4 / 10, 1, "noop", 20, 0);
        ins += sc_insert(&c, &l, N * 3 / 10, 2, "noop", 0, 0);
        ins += sc_insert(&c, &l, N * 2 / 10, 3, "noop", 10, 100);
        ins += sc_insert(&c, &l, N - ins, 4, "noop", 0, 0);
        CHECK(ins == N);

        REQUIRE(sc_reader_new(&c, &r, N) == 0);
        double t0 = par_clock_mono_s();
        REQUIRE(sc_node_start(&c, &nodes[0], "n1", "workers.max=4", NULL) == 0);
        REQUIRE(sc_node_start(&c, &nodes[1], "n2", "workers.max=4", NULL) == 0);
        sc_read_until(&c, &r, &l, N / 5, 120);
        REQUIRE(sc_node_start(&c, &nodes[2], "n3", "workers.max=4", NULL) == 0);
        sc_read_until(&c, &r, &l, N / 2, 120);
        CHECK(su_http_get(nodes[0].port, "/health", buf, sizeof(buf)) == 200);
        CHECK(strstr(buf, "ok") != NULL);
        int rc1 = su_producer_stop(&nodes[0], SIGTERM, 40);
        CHECKF(rc1 == 0, "n1 left with exit %d", rc1);
        fprintf(stderr, "   n3 joined at %d, n1 left at %zu final\n", N / 5,
                sc_finals(&r));

        size_t missing = sc_read(&c, &r, &l, N, 240, 2000);
        double secs = par_clock_mono_s() - t0;
        CHECKF(missing == 0, "%zu signals without a final result", missing);

        size_t extra = 0, skipped = 0, zero = 0;
        for (size_t i = 0; i < N; i++) {
                sc_rec_t *x = &r.recs[i];
                if (x->finals > 1)
                        extra += (size_t)x->finals - 1;
                if (x->dones != 1)
                        zero++;
                skipped += (size_t)x->skipped;
        }
        CHECKF(extra == 0, "%zu extra final results", extra);
        CHECKF(zero == 0, "%zu signals without exactly one done", zero);
        CHECK(r.unknown == 0);
        size_t nonfinal = 0, fin = sc_docs_final(&c, &nonfinal);
        CHECKF(fin == N && nonfinal == 0, "documents: %zu final, %zu not", fin,
               nonfinal);
        if (nonfinal)
                sc_dump_nonfinal(&c, 5);
        fprintf(stderr,
                "   %d signals, 3 nodes: all final in %.1f s (%.0f/s incl. "
                "startup), skipped deliveries %zu\n",
                N, secs, N / secs, skipped);

        /* The endpoints of a node. */
        CHECK(su_http_get(nodes[1].port, "/status", buf, sizeof(buf)) == 200);
        json_t *st = json_loads(buf, 0, NULL);
        CHECK(st &&
              !strcmp(json_string_value(json_object_get(st, "node_id")), "n2"));
        CHECK(json_array_size(json_object_get(st, "workers")) >= 1);
        json_decref(st);
        /* n2 and n3 hold every partition between them, each level's
         * whole: n1's went to them when it left (a rebalance a moment
         * late is waited for). */
        int h2[4] = {0}, h3[4] = {0}, t2 = -1, t3 = -1;
        bool whole = false;
        for (int i = 0; i < 100 && !whole; i++) {
                if (i)
                        par_clock_sleep_ms(100);
                t2 = sc_node_held(&nodes[1], h2);
                t3 = sc_node_held(&nodes[2], h3);
                whole = t2 >= 0 && t3 >= 0;
                for (int L = 0; L < 4; L++)
                        whole = whole && h2[L] + h3[L] == SU_PARTITIONS;
        }
        CHECKF(whole,
               "held after n1 left: n2 %d,%d,%d,%d, n3 %d,%d,%d,%d (of %d "
               "each)",
               h2[0], h2[1], h2[2], h2[3], h3[0], h3[1], h3[2], h3[3],
               SU_PARTITIONS);
        CHECK(t2 == h2[0] + h2[1] + h2[2] + h2[3]);
        CHECK(t3 == h3[0] + h3[1] + h3[2] + h3[3]);
        CHECK(su_metric_sum(nodes[2].port,
                            "parallel_spins_total{status=\"done\"") > 0);
        /* The one dashboard: the page the node ships, which reads /status. */
        CHECK(su_http_get(nodes[1].port, "/", buf, sizeof(buf)) == 200);
        CHECK(strstr(buf, "<title>parallel-consumer</title>") != NULL);
        CHECK(strstr(buf, "fetch('/status')") != NULL);
        /* Graceful stops: exit 0. */
        for (int i = 1; i < 3; i++) {
                int rc = su_producer_stop(&nodes[i], SIGTERM, 40);
                CHECKF(rc == 0, "node %d exit %d", i + 1, rc);
        }
        check_side_topics(&c);
        sc_reader_destroy(&r);
        su_ledger_free(&l);
        sc_cleanup(&c);
}

TEST_MAIN(test_e2e)
