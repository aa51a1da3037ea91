/* admin.c — see admin.h. */
#include "msg/admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"

const char *par_admin_outcome_name(par_admin_outcome_t o)
{
        switch (o) {
        case PAR_ADMIN_DONE:
                return "done";
        case PAR_ADMIN_EXISTED:
                return "existed";
        case PAR_ADMIN_ABSENT:
                return "absent";
        case PAR_ADMIN_FAILED:
                return "failed";
        }
        return "?";
}

par_err_t par_admin_client_new(rd_kafka_t **out, rd_kafka_conf_t *conf,
                               int timeout_ms, par_error_t *err)
{
        char errstr[512], servers[512];
        size_t sz = sizeof(servers);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t e;
        rd_kafka_t *rk;

        /* Metadata requests for one topic must never create it. */
        if (rd_kafka_conf_set(conf, "allow.auto.create.topics", "false", errstr,
                              sizeof(errstr))) {
                rd_kafka_conf_destroy(conf);
                return par_error_set(err, PAR_ERR_INVALID, "kafka: %s", errstr);
        }
        if (rd_kafka_conf_get(conf, "bootstrap.servers", servers, &sz))
                strcpy(servers, "?");
        if (!(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr,
                                sizeof(errstr)))) {
                rd_kafka_conf_destroy(conf);
                return par_error_set(err, PAR_ERR_INVALID, "kafka: %s", errstr);
        }
        if ((e = rd_kafka_metadata(rk, 0, NULL, &md, timeout_ms))) {
                rd_kafka_destroy(rk);
                return par_error_set(err, PAR_ERR_IO,
                                     "cannot reach Kafka at %s "
                                     "(kafka.bootstrap.servers): %s",
                                     servers, rd_kafka_err2str(e));
        }
        rd_kafka_metadata_destroy(md);
        *out = rk;
        return PAR_OK;
}

static rd_kafka_AdminOptions_t *options(rd_kafka_t *rk, rd_kafka_admin_op_t op,
                                        int timeout_ms)
{
        rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(rk, op);
        char errstr[256];

        /* Wait for the controller to finish, not just to accept. */
        rd_kafka_AdminOptions_set_request_timeout(o, timeout_ms, errstr,
                                                  sizeof(errstr));
        rd_kafka_AdminOptions_set_operation_timeout(o, timeout_ms, errstr,
                                                    sizeof(errstr));
        return o;
}

/* Waits for the result event of one request; NULL (err set) on a
 * request-level failure. */
static rd_kafka_event_t *wait_result(rd_kafka_queue_t *q, int timeout_ms,
                                     par_err_t *rc, par_error_t *err)
{
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 5000);

        if (!ev) {
                *rc = par_error_set(err, PAR_ERR_TIMEOUT,
                                    "no answer from the cluster");
                return NULL;
        }
        if (rd_kafka_event_error(ev)) {
                *rc = par_error_set(err, PAR_ERR_IO,
                                    "%s (is Kafka reachable at "
                                    "kafka.bootstrap.servers?)",
                                    rd_kafka_event_error_string(ev));
                rd_kafka_event_destroy(ev);
                return NULL;
        }
        return ev;
}

/*
 * Files the per-topic results of a Create/DeleteTopics answer: `benign` is
 * the error that is not a failure (already exists / unknown topic).
 */
static par_err_t file_results(const rd_kafka_topic_result_t **res, size_t nres,
                              size_t n, const char *what,
                              rd_kafka_resp_err_t benign,
                              par_admin_outcome_t benign_outcome,
                              par_admin_result_t *results, par_error_t *err)
{
        par_err_t rc = PAR_OK;

        if (nres != n)
                return par_error_set(err, PAR_ERR_IO,
                                     "%s topics: %zu answers for %zu topics",
                                     what, nres, n);
        for (size_t i = 0; i < n; i++) {
                par_admin_result_t r = {.outcome = PAR_ADMIN_DONE};
                rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
                const char *m = rd_kafka_topic_result_error_string(res[i]);

                snprintf(r.name, sizeof(r.name), "%s",
                         rd_kafka_topic_result_name(res[i]));
                if (e == benign) {
                        r.outcome = benign_outcome;
                } else if (e) {
                        r.outcome = PAR_ADMIN_FAILED;
                        snprintf(r.msg, sizeof(r.msg), "%s",
                                 m ? m : rd_kafka_err2str(e));
                        if (!results && !rc)
                                rc = par_error_set(err, PAR_ERR_IO,
                                                   "%s topic %s: %s", what,
                                                   r.name, r.msg);
                }
                if (results)
                        results[i] = r;
        }
        return rc;
}

par_err_t par_admin_create(rd_kafka_t *rk, const par_admin_topic_t *topics,
                           size_t n, int timeout_ms,
                           par_admin_result_t *results, par_error_t *err)
{
        rd_kafka_NewTopic_t **nt = calloc(n ? n : 1, sizeof(*nt));
        rd_kafka_queue_t *q = NULL;
        rd_kafka_AdminOptions_t *opts = NULL;
        rd_kafka_event_t *ev = NULL;
        const rd_kafka_topic_result_t **res;
        size_t nres = 0;
        par_err_t rc = PAR_OK;
        char errstr[256];

        if (!nt)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                nt[i] = rd_kafka_NewTopic_new(
                    topics[i].name, topics[i].partitions, topics[i].replication,
                    errstr, sizeof(errstr));
                if (!nt[i]) {
                        rc = par_error_set(err, PAR_ERR_INVALID,
                                           "create topic %s: %s",
                                           topics[i].name, errstr);
                        goto out;
                }
                for (const char *const *c = topics[i].config; c[0] && c[1];
                     c += 2)
                        rd_kafka_NewTopic_set_config(nt[i], c[0], c[1]);
        }
        q = rd_kafka_queue_new(rk);
        opts = options(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS, timeout_ms);
        rd_kafka_CreateTopics(rk, nt, n, opts, q);
        if (!(ev = wait_result(q, timeout_ms, &rc, err)))
                goto out;
        res = rd_kafka_CreateTopics_result_topics(
            rd_kafka_event_CreateTopics_result(ev), &nres);
        rc = file_results(res, nres, n, "create",
                          RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS,
                          PAR_ADMIN_EXISTED, results, err);
out:
        if (ev)
                rd_kafka_event_destroy(ev);
        rd_kafka_AdminOptions_destroy(opts);
        if (q)
                rd_kafka_queue_destroy(q);
        for (size_t i = 0; i < n; i++)
                if (nt[i])
                        rd_kafka_NewTopic_destroy(nt[i]);
        free(nt);
        return rc;
}

par_err_t par_admin_delete(rd_kafka_t *rk, const char *const *names, size_t n,
                           int timeout_ms, par_admin_result_t *results,
                           par_error_t *err)
{
        rd_kafka_DeleteTopic_t **dt = calloc(n ? n : 1, sizeof(*dt));
        rd_kafka_queue_t *q;
        rd_kafka_AdminOptions_t *opts;
        rd_kafka_event_t *ev;
        const rd_kafka_topic_result_t **res;
        size_t nres = 0;
        par_err_t rc = PAR_OK;

        if (!dt)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < n; i++)
                dt[i] = rd_kafka_DeleteTopic_new(names[i]);
        q = rd_kafka_queue_new(rk);
        opts = options(rk, RD_KAFKA_ADMIN_OP_DELETETOPICS, timeout_ms);
        rd_kafka_DeleteTopics(rk, dt, n, opts, q);
        if ((ev = wait_result(q, timeout_ms, &rc, err))) {
                res = rd_kafka_DeleteTopics_result_topics(
                    rd_kafka_event_DeleteTopics_result(ev), &nres);
                rc = file_results(res, nres, n, "delete",
                                  RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
                                  PAR_ADMIN_ABSENT, results, err);
                rd_kafka_event_destroy(ev);
        }
        rd_kafka_AdminOptions_destroy(opts);
        rd_kafka_queue_destroy(q);
        for (size_t i = 0; i < n; i++)
                rd_kafka_DeleteTopic_destroy(dt[i]);
        free(dt);
        return rc;
}

int par_admin_partitions(rd_kafka_t *rk, const char *name, int timeout_ms)
{
        rd_kafka_topic_t *t = rd_kafka_topic_new(rk, name, NULL);
        const struct rd_kafka_metadata *md = NULL;
        int n = -2;

        if (!t)
                return -2;
        if (rd_kafka_metadata(rk, 0, t, &md, timeout_ms) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            md->topic_cnt == 1)
                n = md->topics[0].err ? -1 : md->topics[0].partition_cnt;
        if (md)
                rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(t);
        return n;
}

void par_admin_learn_leaders(rd_kafka_t *rk, const char *const *names, size_t n,
                             int timeout_ms)
{
        int64_t until = par_clock_mono_ms() + timeout_ms;

        for (size_t i = 0; i < n; i++) {
                rd_kafka_topic_t *t = rd_kafka_topic_new(rk, names[i], NULL);
                int64_t left = until - par_clock_mono_ms();
                if (!t)
                        continue;
                /* Every partition led: a topic created a moment ago may
                 * answer once without leaders. */
                for (bool led = false; !led && left > 0;
                     left = until - par_clock_mono_ms()) {
                        const struct rd_kafka_metadata *md = NULL;
                        led = rd_kafka_metadata(rk, 0, t, &md, (int)left) ==
                                  RD_KAFKA_RESP_ERR_NO_ERROR &&
                              md->topic_cnt == 1 && !md->topics[0].err;
                        for (int k = 0; led && k < md->topics[0].partition_cnt;
                             k++)
                                led = md->topics[0].partitions[k].leader >= 0 &&
                                      !md->topics[0].partitions[k].err;
                        if (md)
                                rd_kafka_metadata_destroy(md);
                        if (!led)
                                usleep(50 * 1000);
                }
                rd_kafka_topic_destroy(t);
        }
}

par_err_t par_admin_message_max(rd_kafka_t *rk, const char *const *names,
                                size_t n, int timeout_ms, int64_t *out,
                                par_error_t *err)
{
        rd_kafka_ConfigResource_t **cr = calloc(n ? n : 1, sizeof(*cr));
        rd_kafka_queue_t *q;
        rd_kafka_AdminOptions_t *opts;
        rd_kafka_event_t *ev;
        int64_t min = 0;
        par_err_t rc = PAR_OK;

        if (!cr)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < n; i++)
                cr[i] = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC,
                                                    names[i]);
        q = rd_kafka_queue_new(rk);
        opts = options(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, timeout_ms);
        rd_kafka_DescribeConfigs(rk, cr, n, opts, q);
        if ((ev = wait_result(q, timeout_ms, &rc, err))) {
                size_t nr = 0;
                const rd_kafka_ConfigResource_t **rr =
                    rd_kafka_DescribeConfigs_result_resources(
                        rd_kafka_event_DescribeConfigs_result(ev), &nr);
                for (size_t i = 0; i < nr; i++) {
                        size_t ne = 0;
                        const rd_kafka_ConfigEntry_t **ce;
                        if (rd_kafka_ConfigResource_error(rr[i]))
                                continue; /* e.g. not created yet */
                        ce = rd_kafka_ConfigResource_configs(rr[i], &ne);
                        for (size_t k = 0; k < ne; k++) {
                                const char *v =
                                    rd_kafka_ConfigEntry_value(ce[k]);
                                long long b = v ? atoll(v) : 0;
                                if (!strcmp(rd_kafka_ConfigEntry_name(ce[k]),
                                            "max.message.bytes") &&
                                    b > 0 && (!min || b < min))
                                        min = b;
                        }
                }
                rd_kafka_event_destroy(ev);
                if (!min)
                        rc = par_error_set(err, PAR_ERR_NOTFOUND,
                                           "no topic reported "
                                           "max.message.bytes");
        }
        rd_kafka_AdminOptions_destroy(opts);
        rd_kafka_queue_destroy(q);
        for (size_t i = 0; i < n; i++)
                rd_kafka_ConfigResource_destroy(cr[i]);
        free(cr);
        if (!rc)
                *out = min;
        return rc;
}
