/*
 * topics.c — `parallel-ctl topics create|list|delete`: the Kafka topics of
 * one Parallel installation, through librdkafka's Admin API.
 *
 * The set of topics is fixed by the design: <prefix>.signals.p1 … pN (N =
 * priority.levels), .results, .metrics, .workers (compacted: the latest
 * status per node/worker key) and .dlq. `create` is idempotent: a topic that
 * already exists is reported as such, not as an error, so it can run on
 * every deploy. Existing topics are never altered (changing partition counts
 * would re-key resources); `list` shows what is there so an operator can see
 * a mismatch.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "msg/admin.h"
#include "msg/kafka.h"

#define ADMIN_TIMEOUT_MS 30000
#define MAX_TOPICS       24 /* 16 priority levels + 4 others, with room */

typedef struct topic_set {
        char names[MAX_TOPICS][PAR_KAFKA_TOPIC_MAX];
        bool compacted[MAX_TOPICS];
        int n;
} topic_set_t;

static int usage(FILE *out)
{
        fputs("usage: parallel-ctl topics create [--partitions N] "
              "[--replication N] [--min-insync N]\n"
              "                            [--retention-ms MS]\n"
              "       parallel-ctl topics list\n"
              "       parallel-ctl topics delete --yes\n\n"
              "Creates, lists or deletes <topic.prefix>.signals.p1..pN "
              "(N = priority.levels),\n"
              ".results, .metrics, .workers (compacted) and .dlq. `create` "
              "leaves existing\ntopics as they are. Defaults come from "
              "topics.partitions, topics.replication.factor,\n"
              "topics.min.insync.replicas (0: the broker's default) and "
              "topics.retention.ms;\nthe broker from "
              "kafka.bootstrap.servers.\n",
              out);
        return out == stdout ? 0 : 2;
}

static int build_set(par_config_t *cfg, topic_set_t *s)
{
        static const char *const others[] = {"results", "metrics", "workers",
                                             "dlq"};
        int levels = (int)par_config_int(cfg, "priority.levels");

        memset(s, 0, sizeof(*s));
        for (int p = 1; p <= levels; p++, s->n++)
                if (!par_kafka_signal_topic(cfg, p, s->names[s->n],
                                            PAR_KAFKA_TOPIC_MAX))
                        return -1;
        for (size_t i = 0; i < sizeof(others) / sizeof(others[0]);
             i++, s->n++) {
                if (!par_kafka_topic_name(cfg, others[i], s->names[s->n],
                                          PAR_KAFKA_TOPIC_MAX))
                        return -1;
                s->compacted[s->n] = !strcmp(others[i], "workers");
        }
        return 0;
}

static bool is_compacted(const topic_set_t *s, const char *name)
{
        for (int i = 0; i < s->n; i++)
                if (!strcmp(s->names[i], name))
                        return s->compacted[i];
        return false;
}

static rd_kafka_t *admin_client(par_config_t *cfg)
{
        rd_kafka_conf_t *conf = NULL;
        par_error_t err = {0};
        rd_kafka_t *rk = NULL;

        /* Fail in seconds, not after the admin timeout, when no broker
         * answers at all. */
        if (par_kafka_conf_new(&conf, cfg, "parallel-ctl", &err) ||
            par_admin_client_new(&rk, conf, 10000, &err)) {
                fprintf(stderr, "parallel-ctl topics: %s\n", err.msg);
                return NULL;
        }
        return rk;
}

/* --partitions N / --partitions=N → sets config key `key` (validated by
 * the config table, so errors name the key and its bounds). */
static int take_opt(par_config_t *cfg, int argc, char **argv, int *i,
                    const char *opt, const char *key, int *rc)
{
        size_t n = strlen(opt);
        const char *val = NULL;
        par_error_t err = {0};

        if (!strcmp(argv[*i], opt)) {
                if (*i + 1 >= argc) {
                        fprintf(stderr,
                                "parallel-ctl topics: %s needs a "
                                "value\n",
                                opt);
                        *rc = 2;
                        return 1;
                }
                val = argv[++*i];
        } else if (!strncmp(argv[*i], opt, n) && argv[*i][n] == '=') {
                val = argv[*i] + n + 1;
        } else {
                return 0;
        }
        if (par_config_set(cfg, key, val, &err)) {
                fprintf(stderr, "parallel-ctl topics: %s: %s\n", opt, err.msg);
                *rc = 2;
        }
        return 1;
}

static int cmd_create(par_config_t *cfg, rd_kafka_t *rk, topic_set_t *s)
{
        int partitions = (int)par_config_int(cfg, "topics.partitions");
        int replication = (int)par_config_int(cfg, "topics.replication.factor");
        int min_isr = (int)par_config_int(cfg, "topics.min.insync.replicas");
        char retention[32], maxmsg[32], isr[16];
        par_admin_topic_t topics[MAX_TOPICS];
        par_admin_result_t res[MAX_TOPICS];
        par_error_t err = {0};
        int created = 0, existed = 0, failed = 0;

        snprintf(retention, sizeof(retention), "%" PRId64,
                 par_config_int(cfg, "topics.retention.ms"));
        snprintf(maxmsg, sizeof(maxmsg), "%" PRId64,
                 par_config_int(cfg, "topics.message.max.bytes"));
        snprintf(isr, sizeof(isr), "%d", min_isr);
        if (min_isr > replication) {
                fprintf(stderr,
                        "parallel-ctl topics create: topics.min.insync."
                        "replicas %d is more than the replication factor %d "
                        "(no write could ever succeed)\n",
                        min_isr, replication);
                return 2;
        }
        for (int i = 0; i < s->n; i++) {
                topics[i] = (par_admin_topic_t){
                    .name = s->names[i],
                    .partitions = partitions,
                    .replication = replication,
                    /* max.message.bytes: the size every program sizes its
                     * messages against. */
                    .config = {"max.message.bytes", maxmsg,
                               s->compacted[i] ? "cleanup.policy"
                                               : "retention.ms",
                               s->compacted[i] ? "compact" : retention,
                               min_isr ? "min.insync.replicas" : NULL,
                               min_isr ? isr : NULL, NULL},
                };
        }
        if (par_admin_create(rk, topics, (size_t)s->n, ADMIN_TIMEOUT_MS, res,
                             &err)) {
                fprintf(stderr, "parallel-ctl topics create: %s\n", err.msg);
                return 1;
        }
        for (int i = 0; i < s->n; i++) {
                const char *name = res[i].name;
                switch (res[i].outcome) {
                case PAR_ADMIN_DONE:
                        printf("created  %-40s partitions=%d replication=%d"
                               "%s%s%s\n",
                               name, partitions, replication,
                               min_isr ? " min.insync.replicas=" : "",
                               min_isr ? isr : "",
                               is_compacted(s, name) ? " compacted" : "");
                        created++;
                        break;
                case PAR_ADMIN_EXISTED:
                        printf("exists   %-40s partitions=%d\n", name,
                               par_admin_partitions(rk, name, 10000));
                        existed++;
                        break;
                default:
                        fprintf(stderr, "failed   %-40s %s\n", name,
                                res[i].msg);
                        failed++;
                }
        }
        printf("%d created, %d already existed, %d failed\n", created, existed,
               failed);
        return failed ? 1 : 0;
}

static int cmd_list(par_config_t *cfg, rd_kafka_t *rk, topic_set_t *s)
{
        const struct rd_kafka_metadata *md = NULL;
        const char *prefix = par_config_str(cfg, "topic.prefix");
        size_t plen = strlen(prefix);
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, 15000);
        int missing = 0;

        if (e) {
                fprintf(stderr,
                        "parallel-ctl topics list: %s (is Kafka reachable at "
                        "kafka.bootstrap.servers?)\n",
                        rd_kafka_err2str(e));
                return 1;
        }
        printf("%-40s %10s %11s\n", "topic", "partitions", "replication");
        for (int i = 0; i < s->n; i++) {
                const struct rd_kafka_metadata_topic *t = NULL;
                for (int j = 0; j < md->topic_cnt; j++)
                        if (!strcmp(md->topics[j].topic, s->names[i]))
                                t = &md->topics[j];
                if (!t || t->err) {
                        printf("%-40s %10s\n", s->names[i], "missing");
                        missing++;
                } else {
                        printf("%-40s %10d %11d\n", t->topic, t->partition_cnt,
                               t->partition_cnt ? t->partitions[0].replica_cnt
                                                : 0);
                }
        }
        /* Other topics under the prefix (e.g. left from more levels). */
        for (int j = 0; j < md->topic_cnt; j++) {
                const struct rd_kafka_metadata_topic *t = &md->topics[j];
                bool known = false;
                if (strncmp(t->topic, prefix, plen) || t->topic[plen] != '.')
                        continue;
                for (int i = 0; i < s->n && !known; i++)
                        known = !strcmp(t->topic, s->names[i]);
                if (!known)
                        printf("%-40s %10d %11s (not a %s topic)\n", t->topic,
                               t->partition_cnt, "", "Parallel");
        }
        rd_kafka_metadata_destroy(md);
        if (missing)
                printf("%d missing: run `parallel-ctl topics create`\n",
                       missing);
        return missing ? 1 : 0;
}

static int cmd_delete(rd_kafka_t *rk, topic_set_t *s)
{
        const char *names[MAX_TOPICS];
        par_admin_result_t res[MAX_TOPICS];
        par_error_t err = {0};
        int deleted = 0, absent = 0, failed = 0;

        for (int i = 0; i < s->n; i++)
                names[i] = s->names[i];
        if (par_admin_delete(rk, names, (size_t)s->n, ADMIN_TIMEOUT_MS, res,
                             &err)) {
                fprintf(stderr, "parallel-ctl topics delete: %s\n", err.msg);
                return 1;
        }
        for (int i = 0; i < s->n; i++) {
                switch (res[i].outcome) {
                case PAR_ADMIN_DONE:
                        printf("deleted  %s\n", res[i].name);
                        deleted++;
                        break;
                case PAR_ADMIN_ABSENT:
                        printf("absent   %s\n", res[i].name);
                        absent++;
                        break;
                default:
                        fprintf(stderr, "failed   %-40s %s\n", res[i].name,
                                res[i].msg);
                        failed++;
                }
        }
        printf("%d deleted, %d absent, %d failed\n", deleted, absent, failed);
        return failed ? 1 : 0;
}

int par_ctl_topics(par_config_t *cfg, int argc, char **argv)
{
        topic_set_t set;
        const char *action;
        bool yes = false;
        rd_kafka_t *rk = NULL;
        int rc = 0;

        if (argc < 2) {
                fprintf(stderr, "parallel-ctl topics: action missing "
                                "(create|list|delete; try --help)\n");
                return 2;
        }
        action = argv[1];
        if (!strcmp(action, "--help") || !strcmp(action, "-h"))
                return usage(stdout);
        if (strcmp(action, "create") && strcmp(action, "list") &&
            strcmp(action, "delete")) {
                fprintf(stderr,
                        "parallel-ctl topics: unknown action '%s' "
                        "(create|list|delete)\n",
                        action);
                return 2;
        }
        for (int i = 2; i < argc && !rc; i++) {
                if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
                        return usage(stdout);
                if (!strcmp(action, "create") &&
                    (take_opt(cfg, argc, argv, &i, "--partitions",
                              "topics.partitions", &rc) ||
                     take_opt(cfg, argc, argv, &i, "--replication",
                              "topics.replication.factor", &rc) ||
                     take_opt(cfg, argc, argv, &i, "--min-insync",
                              "topics.min.insync.replicas", &rc) ||
                     take_opt(cfg, argc, argv, &i, "--retention-ms",
                              "topics.retention.ms", &rc)))
                        continue;
                if (!strcmp(action, "delete") && !strcmp(argv[i], "--yes")) {
                        yes = true;
                        continue;
                }
                fprintf(stderr,
                        "parallel-ctl topics %s: unknown argument "
                        "'%s'\n",
                        action, argv[i]);
                return 2;
        }
        if (rc)
                return rc;
        if (build_set(cfg, &set)) {
                fprintf(stderr,
                        "parallel-ctl topics: topic.prefix '%s' makes "
                        "topic names longer than Kafka allows\n",
                        par_config_str(cfg, "topic.prefix"));
                return 2;
        }
        if (!strcmp(action, "delete") && !yes) {
                fprintf(stderr, "parallel-ctl topics delete: this deletes "
                                "every message in:\n");
                for (int i = 0; i < set.n; i++)
                        fprintf(stderr, "  %s\n", set.names[i]);
                fprintf(stderr, "add --yes to confirm\n");
                return 2;
        }
        if (!(rk = admin_client(cfg)))
                return 1;
        if (!strcmp(action, "create"))
                rc = cmd_create(cfg, rk, &set);
        else if (!strcmp(action, "list"))
                rc = cmd_list(cfg, rk, &set);
        else
                rc = cmd_delete(rk, &set);
        rd_kafka_destroy(rk);
        return rc;
}
