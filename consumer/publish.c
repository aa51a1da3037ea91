/*
 * publish.c — producing, and waiting for delivery reports.
 *
 * librdkafka calls the delivery-report callback only from rd_kafka_poll on
 * the producer, so one thread (kpoll) does nothing else; a sender that must
 * know its message is acknowledged (a result before its document is final)
 * waits on a condition variable the callback signals. A full local queue is
 * waited out rather than reported: the kpoll thread drains it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "msg/kafka.h"
#include "obs.h"
#include "publish.h"

struct pub {
        rd_kafka_t *producer;
        pthread_mutex_t dlock; /* delivery waits: one lock for all */
        pthread_cond_t dcond;
        pthread_t kpoll;
        bool started;
        atomic_bool quit;
        struct node_obs *obs; /* delivery errors and latency; may be NULL */
};

typedef struct dwait {
        bool done;
        rd_kafka_resp_err_t err;
} dwait_t;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        pub_t *p = opaque;
        dwait_t *w = m->_private;
        if (m->err) {
                obs_kafka_error(p->obs, "delivery");
                par_log(PAR_LOG_WARN, "consumer", "delivery_failed",
                        "topic=%s error=\"%s\"", rd_kafka_topic_name(m->rkt),
                        rd_kafka_err2str(m->err));
        }
        if (!w)
                return;
        pthread_mutex_lock(&p->dlock);
        w->err = m->err;
        w->done = true;
        pthread_cond_broadcast(&p->dcond);
        pthread_mutex_unlock(&p->dlock);
}

void pub_set_obs(pub_t *p, struct node_obs *obs)
{
        p->obs = obs;
}

par_err_t pub_new(pub_t **out, rd_kafka_conf_t *conf, par_error_t *err)
{
        char es[512];
        pub_t *p = calloc(1, sizeof(*p));
        if (!p) {
                rd_kafka_conf_destroy(conf);
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        }
        pthread_mutex_init(&p->dlock, NULL);
        pthread_cond_init(&p->dcond, NULL);
        rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
        rd_kafka_conf_set_opaque(conf, p);
        if (!(p->producer =
                  rd_kafka_new(RD_KAFKA_PRODUCER, conf, es, sizeof(es)))) {
                rd_kafka_conf_destroy(conf);
                pub_destroy(p);
                return par_error_set(err, PAR_ERR_KAFKA, "producer: %s", es);
        }
        *out = p;
        return PAR_OK;
}

void pub_destroy(pub_t *p)
{
        if (!p)
                return;
        if (p->producer)
                rd_kafka_destroy(p->producer);
        pthread_mutex_destroy(&p->dlock);
        pthread_cond_destroy(&p->dcond);
        free(p);
}

static void *kpoll_main(void *arg)
{
        pub_t *p = arg;
        while (!atomic_load(&p->quit))
                rd_kafka_poll(p->producer, 100);
        return NULL;
}

par_err_t pub_start(pub_t *p, par_error_t *err)
{
        if (pthread_create(&p->kpoll, NULL, kpoll_main, p))
                return par_error_set(err, PAR_ERR_IO,
                                     "cannot start the delivery thread");
        p->started = true;
        return PAR_OK;
}

void pub_stop(pub_t *p, int flush_ms)
{
        rd_kafka_flush(p->producer, flush_ms);
        atomic_store(&p->quit, true);
        if (p->started)
                pthread_join(p->kpoll, NULL);
        p->started = false;
}

bool pub_stopping(pub_t *p)
{
        return atomic_load(&p->quit);
}

par_err_t pub_send(pub_t *p, const char *topic, const char *key, void *value,
                   size_t len, const char *traceparent, bool wait,
                   par_error_t *err)
{
        dwait_t w = {0};
        rd_kafka_resp_err_t e;
        int64_t t0 = par_clock_mono_ms();

        for (;;) {
                rd_kafka_headers_t *h = NULL;
                if (traceparent && *traceparent) {
                        h = rd_kafka_headers_new(1);
                        rd_kafka_header_add(h, PAR_TRACEPARENT_HEADER, -1,
                                            traceparent, -1);
                }
                e = rd_kafka_producev(
                    p->producer, RD_KAFKA_V_TOPIC(topic),
                    RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                    RD_KAFKA_V_VALUE(value, len),
                    RD_KAFKA_V_MSGFLAGS(value ? RD_KAFKA_MSG_F_FREE : 0),
                    RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(wait ? &w : NULL),
                    RD_KAFKA_V_END);
                if (!e)
                        break;
                rd_kafka_headers_destroy(h);
                if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                        free(value);
                        return par_error_set(err, PAR_ERR_KAFKA,
                                             "produce to %s: %s", topic,
                                             rd_kafka_err2str(e));
                }
                par_clock_sleep_ms(10); /* the kpoll thread drains the queue */
        }
        if (!wait)
                return PAR_OK;
        pthread_mutex_lock(&p->dlock);
        while (!w.done)
                pthread_cond_wait(&p->dcond, &p->dlock);
        pthread_mutex_unlock(&p->dlock);
        if (!w.err)
                obs_publish(p->obs, (par_clock_mono_ms() - t0) / 1e3);
        if (w.err)
                return par_error_set(err, PAR_ERR_KAFKA, "deliver to %s: %s",
                                     topic, rd_kafka_err2str(w.err));
        return PAR_OK;
}
