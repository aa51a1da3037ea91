/*
 * publish.c — producing, and waiting for delivery reports.
 *
 * librdkafka calls the delivery-report callback only from rd_kafka_poll on
 * the producer, so one thread (kpoll) does nothing else; a sender that must
 * know its message is acknowledged (a result before its document is final)
 * waits on a condition variable the callback signals, or hands a callback
 * that the report runs (pub_send_async: the worker moves on at once). A
 * full local queue is waited out rather than reported: the kpoll thread
 * drains it.
 *
 * The two kinds of opaque are told apart by a tag in front of each.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "msg/admin.h"
#include "msg/kafka.h"
#include "obs.h"
#include "publish.h"

struct pub {
        rd_kafka_t *producer;
        int max_inflight;
        int inflight; /* pub_send_async messages unsettled (under dlock) */
        pthread_mutex_t dlock; /* delivery waits: one lock for all */
        pthread_cond_t dcond;
        pthread_t kpoll;
        bool started;
        atomic_bool quit;
        struct node_obs *obs; /* delivery errors and latency; may be NULL */
};

enum { OP_WAIT = 1, OP_CB };

typedef struct dwait {
        int op; /* OP_WAIT */
        bool done;
        rd_kafka_resp_err_t err;
} dwait_t;

typedef struct dcb {
        int op; /* OP_CB */
        pub_cb_t *cb;
        int64_t t0; /* monotonic, when produced */
} dcb_t;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        pub_t *p = opaque;
        int *op = m->_private;
        if (m->err) {
                obs_kafka_error(p->obs, "delivery");
                par_log(PAR_LOG_WARN, "consumer", "delivery_failed",
                        "topic=%s error=\"%s\"", rd_kafka_topic_name(m->rkt),
                        rd_kafka_err2str(m->err));
        }
        if (!op)
                return;
        if (*op == OP_CB) {
                dcb_t *d = m->_private;
                pub_cb_t *cb = d->cb;
                if (!m->err)
                        obs_publish(p->obs,
                                    (par_clock_mono_ms() - d->t0) / 1e3);
                free(d);
                /* Settled after the callback, so that nothing counts as
                 * out of flight before its offset is done (shutdown
                 * commits once pub_inflight is 0). */
                if (cb->fn(cb, m->err))
                        pub_settle(p);
                return;
        }
        dwait_t *w = m->_private;
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

par_err_t pub_new(pub_t **out, rd_kafka_conf_t *conf, int max_inflight,
                  par_error_t *err)
{
        char es[512];
        pub_t *p = calloc(1, sizeof(*p));
        if (!p) {
                rd_kafka_conf_destroy(conf);
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        }
        p->max_inflight = max_inflight > 0 ? max_inflight : 1;
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

void pub_learn_topics(pub_t *p, const char *const *names, size_t n,
                      int timeout_ms)
{
        par_admin_learn_leaders(p->producer, names, n, timeout_ms);
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

/* Produces with opaque as the message's; waits out a full queue. */
static par_err_t produce(pub_t *p, const char *topic, const char *key,
                         void *value, size_t len, const char *traceparent,
                         void *opaque, par_error_t *err)
{
        rd_kafka_resp_err_t e;

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
                    RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(opaque),
                    RD_KAFKA_V_END);
                if (!e)
                        return PAR_OK;
                /* No traceparent, no headers: destroying NULL crashed the
                 * node on an oversized dead letter (issue 11). */
                if (h)
                        rd_kafka_headers_destroy(h);
                if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                        free(value);
                        /* Too large stays too large: retrying it would
                         * wedge the worker. */
                        return par_error_set(
                            err,
                            e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE
                                ? PAR_ERR_PERMANENT
                                : PAR_ERR_KAFKA,
                            "produce to %s: %s", topic, rd_kafka_err2str(e));
                }
                par_clock_sleep_ms(10); /* the kpoll thread drains the queue */
        }
}

par_err_t pub_send(pub_t *p, const char *topic, const char *key, void *value,
                   size_t len, const char *traceparent, bool wait,
                   par_error_t *err)
{
        dwait_t w = {.op = OP_WAIT};
        int64_t t0 = par_clock_mono_ms();
        par_err_t rc = produce(p, topic, key, value, len, traceparent,
                               wait ? &w : NULL, err);
        if (rc || !wait)
                return rc;
        pthread_mutex_lock(&p->dlock);
        while (!w.done)
                pthread_cond_wait(&p->dcond, &p->dlock);
        pthread_mutex_unlock(&p->dlock);
        if (!w.err)
                obs_publish(p->obs, (par_clock_mono_ms() - t0) / 1e3);
        if (w.err)
                return par_error_set(
                    err,
                    w.err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
                            w.err == RD_KAFKA_RESP_ERR_INVALID_MSG
                        ? PAR_ERR_PERMANENT
                        : PAR_ERR_KAFKA,
                    "deliver to %s: %s", topic, rd_kafka_err2str(w.err));
        return PAR_OK;
}

par_err_t pub_send_async(pub_t *p, const char *topic, const char *key,
                         void *value, size_t len, const char *traceparent,
                         pub_cb_t *cb, par_error_t *err)
{
        dcb_t *d = malloc(sizeof(*d));
        if (!d) {
                free(value);
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        }
        d->op = OP_CB;
        d->cb = cb;
        d->t0 = par_clock_mono_ms();
        /* The kpoll thread never waits here: a re-send from its callback
         * would wait for itself. */
        bool kpoll = p->started && pthread_equal(pthread_self(), p->kpoll);
        pthread_mutex_lock(&p->dlock);
        while (!kpoll && p->inflight >= p->max_inflight)
                pthread_cond_wait(&p->dcond, &p->dlock);
        p->inflight++;
        pthread_mutex_unlock(&p->dlock);
        par_err_t rc = produce(p, topic, key, value, len, traceparent, d, err);
        if (rc) {
                free(d);
                pthread_mutex_lock(&p->dlock);
                p->inflight--;
                pthread_cond_broadcast(&p->dcond);
                pthread_mutex_unlock(&p->dlock);
        }
        return rc;
}

void pub_settle(pub_t *p)
{
        pthread_mutex_lock(&p->dlock);
        p->inflight--;
        pthread_cond_broadcast(&p->dcond);
        pthread_mutex_unlock(&p->dlock);
}

int pub_inflight(pub_t *p)
{
        pthread_mutex_lock(&p->dlock);
        int n = p->inflight;
        pthread_mutex_unlock(&p->dlock);
        return n;
}
