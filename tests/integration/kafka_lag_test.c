/*
 * kafka_lag_test.c — the lag figure (msg/lag.h) against Kafka's own tool.
 *
 * Two priority topics of three partitions get known message counts; a
 * consumer group commits known offsets (one partition left uncommitted).
 * Then, for the same group:
 *   - par_lag_compute over the group's committed offsets (read back from
 *     the coordinator with rd_kafka_committed, as a node does) must give
 *     high watermark − committed per partition, and high − low where
 *     nothing is committed;
 *   - `kafka-consumer-groups --describe` (Kafka's tool at the broker's
 *     version, through deploy/dev/stack tool) must print the same LAG for
 *     every partition it lists, and the same sum per topic over those;
 *   - `parallel-ctl status --json`, which reads the committed offsets
 *     from outside the group (Admin API), must report the same lag per
 *     priority.
 */
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "msg/admin.h"
#include "msg/lag.h"
#include "testutil.h"

#define NPART 3

static const char *kafka;
static char topics[2][96], group[96];
/* messages per partition, and the committed offset (-1: none) */
static const int counts[2][NPART] = {{10, 20, 30}, {5, 6, 7}};
static const int commits[2][NPART] = {{4, 20, -1}, {0, 3, 6}};

static rd_kafka_t *client(rd_kafka_type_t type, const char *grp)
{
        char es[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", kafka, es, sizeof(es));
        if (grp) {
                rd_kafka_conf_set(c, "group.id", grp, es, sizeof(es));
                rd_kafka_conf_set(c, "enable.auto.commit", "false", es,
                                  sizeof(es));
        }
        return rd_kafka_new(type, c, es, sizeof(es));
}

/* Creates or deletes the two test topics through msg/admin. */
static int admin_topics(rd_kafka_t *rk, int create)
{
        const char *names[2] = {topics[0], topics[1]};
        par_admin_topic_t t[2] = {
            {.name = topics[0], .partitions = NPART, .replication = 1},
            {.name = topics[1], .partitions = NPART, .replication = 1},
        };
        par_error_t err = {0};
        par_err_t rc = create
                           ? par_admin_create(rk, t, 2, 30000, NULL, &err)
                           : par_admin_delete(rk, names, 2, 30000, NULL, &err);

        if (rc)
                fprintf(stderr, "admin: %s\n", err.msg);
        return rc ? -1 : 0;
}

/* The tool's LAG per (topic, partition), -2 where it lists no row, -1 for
 * "-". Returns the number of rows read for our topics. */
static int tool_lag(long lag[2][NPART])
{
        char cmd[1024], line[512];
        int rows = 0;

        for (int t = 0; t < 2; t++)
                for (int p = 0; p < NPART; p++)
                        lag[t][p] = -2;
        snprintf(cmd, sizeof(cmd),
                 "%s/deploy/dev/stack tool kafka-consumer-groups "
                 "--bootstrap-server %s --describe --group %s 2>&1",
                 tu_env("PARALLEL_SOURCE_DIR", "."), kafka, group);
        FILE *f = popen(cmd, "r");
        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f)) {
                char g[128], topic[128], cur[32], end[32], lg[32];
                int part;
                fputs(line, stderr);
                /* GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG … */
                if (sscanf(line, "%127s %127s %d %31s %31s %31s", g, topic,
                           &part, cur, end, lg) != 6 ||
                    strcmp(g, group) || part < 0 || part >= NPART)
                        continue;
                for (int t = 0; t < 2; t++)
                        if (!strcmp(topic, topics[t])) {
                                lag[t][part] = strcmp(lg, "-") ? atol(lg) : -1;
                                rows++;
                        }
        }
        pclose(f);
        return rows;
}

static void test_lag_matches_tool(void)
{
        rd_kafka_t *prod = client(RD_KAFKA_PRODUCER, NULL), *cons = NULL;
        rd_kafka_topic_partition_list_t *l = NULL;
        int64_t lag[2 * NPART];
        long tool[2][NPART];
        par_error_t err;

        REQUIRE(prod);
        REQUIRE(admin_topics(prod, 1) == 0);
        for (int t = 0; t < 2; t++)
                for (int p = 0; p < NPART; p++)
                        for (int i = 0; i < counts[t][p]; i++)
                                CHECK(rd_kafka_producev(
                                          prod, RD_KAFKA_V_TOPIC(topics[t]),
                                          RD_KAFKA_V_PARTITION(p),
                                          RD_KAFKA_V_VALUE("x", 1),
                                          RD_KAFKA_V_MSGFLAGS(
                                              RD_KAFKA_MSG_F_COPY),
                                          RD_KAFKA_V_END) == 0);
        CHECK(rd_kafka_flush(prod, 30000) == 0);

        cons = client(RD_KAFKA_CONSUMER, group);
        REQUIRE(cons);
        l = rd_kafka_topic_partition_list_new(2 * NPART);
        for (int t = 0; t < 2; t++)
                for (int p = 0; p < NPART; p++)
                        if (commits[t][p] >= 0)
                                rd_kafka_topic_partition_list_add(l, topics[t],
                                                                  p)
                                    ->offset = commits[t][p];
        rd_kafka_resp_err_t ke = rd_kafka_commit(cons, l, 0);
        CHECKF(ke == 0, "commit: %s", rd_kafka_err2str(ke));
        rd_kafka_topic_partition_list_destroy(l);

        /* As a node does: the group's committed offsets, then the lag. */
        l = rd_kafka_topic_partition_list_new(2 * NPART);
        for (int t = 0; t < 2; t++)
                for (int p = 0; p < NPART; p++)
                        rd_kafka_topic_partition_list_add(l, topics[t], p);
        CHECK(rd_kafka_committed(cons, l, 10000) == 0);
        CHECK(par_lag_compute(cons, l, lag, 10000, &err) == PAR_OK);
        int64_t ours[2] = {0, 0};
        for (int i = 0; i < l->cnt; i++) {
                int t = !strcmp(l->elems[i].topic, topics[1]);
                int p = l->elems[i].partition;
                int64_t want =
                    counts[t][p] - (commits[t][p] >= 0 ? commits[t][p] : 0);
                CHECKF(lag[i] == want, "%s[%d]: lag %lld, want %lld",
                       l->elems[i].topic, p, (long long)lag[i],
                       (long long)want);
                ours[t] += lag[i];
        }

        int rows = tool_lag(tool);
        CHECKF(rows >= 5,
               "kafka-consumer-groups listed %d of our 5 "
               "committed partitions",
               rows);
        long sum_tool[2] = {0, 0}, sum_ours_listed[2] = {0, 0};
        for (int i = 0; i < l->cnt; i++) {
                int t = !strcmp(l->elems[i].topic, topics[1]);
                int p = l->elems[i].partition;
                if (tool[t][p] < 0) {
                        /* Not listed or "-": only where nothing is
                         * committed. */
                        CHECKF(commits[t][p] < 0,
                               "%s[%d]: committed but the tool shows no lag",
                               topics[t], p);
                        continue;
                }
                CHECKF(tool[t][p] == lag[i], "%s[%d]: tool %ld, ours %lld",
                       topics[t], p, tool[t][p], (long long)lag[i]);
                sum_tool[t] += tool[t][p];
                sum_ours_listed[t] += lag[i];
        }
        for (int t = 0; t < 2; t++) {
                CHECKF(sum_tool[t] == sum_ours_listed[t],
                       "%s: tool sum %ld, ours %ld", topics[t], sum_tool[t],
                       sum_ours_listed[t]);
                fprintf(stderr,
                        "   %s: lag %lld (tool, committed partitions: %ld)\n",
                        topics[t], (long long)ours[t], sum_tool[t]);
        }

        /* parallel-ctl status, from outside the group */
        char cmd[1600], *out = NULL;
        size_t outlen = 0;
        snprintf(cmd, sizeof(cmd),
                 "%s/parallel-ctl -X kafka.bootstrap.servers=%s "
                 "-X topic.prefix=pt_lag_%d -X consumer.group=%s "
                 "-X priority.levels=2 -X mongo.uri=%s "
                 "-X mongo.database=pt_lag_%d status --json",
                 tu_env("PARALLEL_BINARY_DIR", "."), kafka, (int)getpid(),
                 group,
                 tu_env("PARALLEL_TEST_MONGO_URI", "mongodb://127.0.0.1:27017"),
                 (int)getpid());
        FILE *pf = popen(cmd, "r");
        REQUIRE(pf);
        FILE *mem = open_memstream(&out, &outlen);
        char buf[4096];
        size_t got;
        while ((got = fread(buf, 1, sizeof(buf), pf)) > 0)
                fwrite(buf, 1, got, mem);
        fclose(mem);
        CHECK(pclose(pf) == 0);
        json_t *st = json_loads(out ? out : "", 0, NULL), *p;
        size_t i;
        int seen = 0;
        CHECKF(st, "status --json: %.300s", out ? out : "");
        json_array_foreach(json_object_get(st, "priorities"), i, p)
        {
                int prio =
                    (int)json_integer_value(json_object_get(p, "priority"));
                json_int_t lg = json_integer_value(json_object_get(p, "lag"));
                if (prio < 1 || prio > 2)
                        continue;
                seen++;
                CHECKF(lg == ours[prio - 1], "status: p%d lag %lld, want %lld",
                       prio, (long long)lg, (long long)ours[prio - 1]);
        }
        CHECK(seen == 2);
        fprintf(stderr, "   parallel-ctl status: %.400s\n", out ? out : "");
        json_decref(st);
        free(out);

        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_consumer_close(cons);
        rd_kafka_destroy(cons);
        admin_topics(prod, 0);
        rd_kafka_destroy(prod);
}

static int setup(void)
{
        kafka = tu_env("PARALLEL_TEST_KAFKA", "127.0.0.1:9092");
        for (int t = 0; t < 2; t++)
                snprintf(topics[t], sizeof(topics[t]), "pt_lag_%d.signals.p%d",
                         (int)getpid(), t + 1);
        snprintf(group, sizeof(group), "pt_lag_%d", (int)getpid());
        return 0;
}

TEST_MAIN_WITH(setup, NULL, test_lag_matches_tool)
