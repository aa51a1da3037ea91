/*
 * publish.c — the Kafka side: an idempotent producer (acks=all) whose
 * delivery reports complete items of the completion window.
 *
 * Each message carries its window sequence number as the librdkafka
 * per-message opaque; a successful report marks that part done.
 *
 * A failed report is never skipped: its part stays outstanding, so the
 * checkpoint cannot pass it, and the main loop restarts the pipeline from
 * the checkpoint, which re-reads and re-publishes the failed event and
 * everything after it, in order. Re-publishing only the failed message
 * would put it behind later messages of its partition and break
 * per-resource order; the restart costs duplicates instead, which
 * consumers absorb. A fatal error of the idempotent producer is handled
 * the same way (with a fresh producer).
 *
 * message.timeout.ms is not left to librdkafka. librdkafka times out each
 * queued message on its own: the older ones of a partition fail while
 * younger ones, not yet due, are still sent once the broker is back, a
 * moment before the main thread sees the failures and tears the producer
 * down. The topic then holds a signal ahead of an older one of its
 * resource (stack_producer_broker_test saw it). So librdkafka never times
 * a message out (message.timeout.ms=0: what it delivers of a partition is
 * always a prefix), and the configured timeout is a deadline on the
 * window's oldest outstanding item instead (pipeline_advance): once it
 * passes, the whole pipeline restarts, as a failed report does.
 *
 * Delivery reports run inside rd_kafka_poll/flush on the main thread.
 */
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "msg/admin.h"
#include "msg/kafka.h"
#include "producer.h"

/* A signal acknowledged: per priority (from its topic's ".p<N>" suffix),
 * and produce-to-acknowledgement time from the CreateTime librdkafka
 * stamped when it was produced. Dead letters go to the dlq topic and
 * are not counted here. */
static void count_published(prod_t *p, const rd_kafka_message_t *m)
{
        const char *t = rd_kafka_topic_name(m->rkt);
        const char *dot = strrchr(t, '.');
        rd_kafka_timestamp_type_t tt;
        int64_t ts = rd_kafka_message_timestamp(m, &tt);
        char *end;

        if (!dot || dot[1] != 'p' || !strstr(t, ".signals."))
                return;
        long L = strtol(dot + 2, &end, 10);
        if (*end || L < 1 || L > PROD_MAX_LEVELS)
                return;
        par_counter_inc(p->m_published[L]);
        if (tt == RD_KAFKA_TIMESTAMP_CREATE_TIME && ts > 0)
                par_buckets_observe(p->m_publish_s[L],
                                    (par_clock_wall_ms() - ts) / 1e3);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        prod_t *p = opaque;
        uint64_t seq = (uint64_t)(uintptr_t)m->_private;

        if (!m->err) {
                if (par_seqwin_done(p->win, seq))
                        par_log(PAR_LOG_WARN, COMP, "delivery.unknown",
                                "seq=%llu", (unsigned long long)seq);
                par_counter_inc(p->m_produced);
                count_published(p, m);
                return;
        }
        if (p->purging)
                return; /* our own purge while tearing the pipeline down */
        par_counter_inc(p->m_delivery_errors);
        par_counter_inc(p->m_kafka_delivery);
        if (!p->restart)
                par_log(PAR_LOG_WARN, COMP, "delivery.failed",
                        "topic=%s seq=%llu err=\"%s\" (restarting from the "
                        "checkpoint)",
                        rd_kafka_topic_name(m->rkt), (unsigned long long)seq,
                        rd_kafka_err2str(m->err));
        p->restart = true;
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
        prod_t *p = opaque;

        if (err == RD_KAFKA_RESP_ERR__FATAL) {
                char why[512];
                rd_kafka_fatal_error(rk, why, sizeof(why));
                par_log(PAR_LOG_ERROR, COMP, "kafka.fatal", "err=\"%s\"", why);
                p->kafka_fatal = true;
                p->restart = true;
                return;
        }
        par_kafka_client_error_seen();
        par_log(PAR_LOG_WARN, COMP, "kafka.error", "err=%s reason=\"%s\"",
                rd_kafka_err2name(err), reason);
}

par_err_t publish_new_producer(prod_t *p, par_error_t *err)
{
        rd_kafka_conf_t *conf = NULL;
        char es[512];
        par_err_t rc;

        rc = par_kafka_conf_new(&conf, p->cfg, "parallel-producer", err);
        if (rc)
                return rc;
        char tmo[32];
        size_t tmo_len = sizeof(tmo);
        if (rd_kafka_conf_get(conf, "message.timeout.ms", tmo, &tmo_len) !=
            RD_KAFKA_CONF_OK)
                snprintf(tmo, sizeof(tmo), "300000");
        p->delivery_timeout_ms = atoll(tmo);
        if (rd_kafka_conf_set(conf, "message.timeout.ms", "0", es,
                              sizeof(es)) != RD_KAFKA_CONF_OK) {
                rd_kafka_conf_destroy(conf);
                return par_error_set(err, PAR_ERR_KAFKA, "kafka: %s", es);
        }
        if (p->message_max < par_kafka_message_max(p->cfg)) {
                /* The topics take less than configured: batches too. */
                char lim[32];
                snprintf(lim, sizeof(lim), "%zu", p->message_max);
                rd_kafka_conf_set(conf, "message.max.bytes", lim, es,
                                  sizeof(es));
        }
        if (rd_kafka_conf_set(conf, "enable.idempotence", "true", es,
                              sizeof(es)) != RD_KAFKA_CONF_OK ||
            rd_kafka_conf_set(conf, "acks", "all", es, sizeof(es)) !=
                RD_KAFKA_CONF_OK) {
                rd_kafka_conf_destroy(conf);
                return par_error_set(err, PAR_ERR_KAFKA, "kafka: %s", es);
        }
        rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
        rd_kafka_conf_set_error_cb(conf, error_cb);
        rd_kafka_conf_set_opaque(conf, p);
        p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, es, sizeof(es));
        if (!p->rk) {
                rd_kafka_conf_destroy(conf);
                return par_error_set(err, PAR_ERR_KAFKA, "kafka: %s", es);
        }
        p->kafka_fatal = false;
        return PAR_OK;
}

/*
 * Sizing against topics.message.max.bytes alone let a Signal through that
 * the topic itself refused (its max.message.bytes set lower, or lowered
 * later): the failed delivery restarted the pipeline, which read the same
 * Signal again, forever. So the limit is read from the topics at every
 * pipeline start: a too-large Signal is then rejected with its reason
 * before it is produced, and a limit lowered on a running cluster takes
 * effect after the one restart its first refusal causes. When the topics
 * cannot be asked (no answer within 2 s, no permission), the last known
 * limit stands.
 */
/* The topics the producer writes: the signal topics, then the DLQ. */
static size_t topic_names(prod_t *p, char names[][PAR_KAFKA_TOPIC_MAX],
                          const char **pn)
{
        int levels = (int)par_config_int(p->cfg, "priority.levels");
        size_t n = 0;

        for (int L = 1; L <= levels && L <= PROD_MAX_LEVELS; L++)
                if (par_kafka_signal_topic(p->cfg, L, names[n],
                                           sizeof(names[n])))
                        pn[n] = names[n], n++;
        pn[n++] = p->dlq_topic;
        return n;
}

bool publish_size_to_topics(prod_t *p)
{
        char names[PROD_MAX_LEVELS + 1][PAR_KAFKA_TOPIC_MAX];
        const char *pn[PROD_MAX_LEVELS + 1];
        size_t n = topic_names(p, names, pn);
        size_t conf_max = par_kafka_message_max(p->cfg), want;
        int64_t lim = 0;
        par_error_t e;

        if (par_admin_message_max(p->rk, pn, n, 2000, &lim, &e)) {
                PAR_DEBUG(COMP, "topics.limit_unknown", "error=\"%s\"", e.msg);
                return false;
        }
        want = (size_t)lim < conf_max ? (size_t)lim : conf_max;
        if (want == p->message_max)
                return false;
        par_log(want < conf_max ? PAR_LOG_WARN : PAR_LOG_INFO, COMP,
                "topics.limit",
                "topic_max_message_bytes=%lld configured=%zu sizing_to=%zu",
                (long long)lim, conf_max, want);
        p->message_max = want;
        p->value_max = par_kafka_value_max_of(want);
        return true;
}

void publish_learn_topics(prod_t *p)
{
        char names[PROD_MAX_LEVELS + 1][PAR_KAFKA_TOPIC_MAX];
        const char *pn[PROD_MAX_LEVELS + 1];
        size_t n = topic_names(p, names, pn);

        par_admin_learn_leaders(p->rk, pn, n, 3000);
}

void publish_destroy_producer(prod_t *p)
{
        if (!p->rk)
                return;
        /* Reports for purged messages arrive in this poll and are ignored:
         * the window they belong to is dropped with the pipeline. */
        p->purging = true;
        rd_kafka_purge(p->rk,
                       RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(p->rk, 0);
        rd_kafka_destroy(p->rk);
        p->rk = NULL;
        p->purging = false;
}

par_err_t publish(prod_t *p, const char *topic, const char *key, void *payload,
                  size_t len, rd_kafka_headers_t *hdrs, uint64_t seq,
                  par_error_t *err)
{
        rd_kafka_resp_err_t e;

        for (;;) {
                e = rd_kafka_producev(
                    p->rk, RD_KAFKA_V_TOPIC(topic),
                    RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                    RD_KAFKA_V_VALUE(payload, len),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                    RD_KAFKA_V_HEADERS(hdrs),
                    RD_KAFKA_V_OPAQUE((void *)(uintptr_t)seq), RD_KAFKA_V_END);
                if (!e)
                        return PAR_OK;
                if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || p->kafka_fatal)
                        break;
                /* librdkafka's queue is full: serve delivery reports. */
                rd_kafka_poll(p->rk, 20);
        }
        /* Not taken by librdkafka: ours to free. The event stays
         * undelivered in the window; the restart publishes it again. */
        free(payload);
        rd_kafka_headers_destroy(hdrs);
        p->restart = true;
        return par_error_set(err, PAR_ERR_KAFKA, "producing to %s: %s", topic,
                             rd_kafka_err2str(e));
}
