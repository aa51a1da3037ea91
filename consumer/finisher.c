/*
 * finisher.c — see finisher.h.
 *
 * Why a thread of its own: with claims on, a signal's document may only be
 * written once its result is acknowledged, and acknowledgements arrive on
 * the kpoll thread, which must never wait (every report waits for it). The
 * finisher takes what accumulated since its last write, up to FIN_BATCH
 * outcomes, and writes them in one round trip; under load the queue fills
 * while a write is out, so batches grow with the rate and an idle node
 * writes each outcome alone, at once.
 *
 * A write that MongoDB refuses outright (PAR_ERR_INVALID: a document it
 * would not take) is retried one outcome at a time so that one bad outcome
 * does not hold the others; a write that could not reach MongoDB is
 * retried with the same time every 0.5 s (the batch finish is safe to
 * repeat then), and given up after three tries once the finisher stops.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "finisher.h"

#define FIN_BATCH 128

struct fin {
        mongoc_client_pool_t *mpool;
        char database[128], collection[128], owner[160];
        pthread_mutex_t lock;
        pthread_cond_t cond;
        fin_item_t *head, *tail; /* FIFO */
        int reserved;            /* places taken (fin_reserve) */
        bool running, stopping;
        pthread_t thread;
};

par_err_t fin_new(fin_t **out, mongoc_client_pool_t *mpool,
                  const char *database, const char *collection,
                  const char *node_id, par_error_t *err)
{
        fin_t *f = calloc(1, sizeof(*f));
        if (!f)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        f->mpool = mpool;
        snprintf(f->database, sizeof(f->database), "%s", database);
        snprintf(f->collection, sizeof(f->collection), "%s", collection);
        snprintf(f->owner, sizeof(f->owner), "%s/finisher", node_id);
        pthread_mutex_init(&f->lock, NULL);
        pthread_cond_init(&f->cond, NULL);
        *out = f;
        return PAR_OK;
}

void fin_destroy(fin_t *f)
{
        if (!f)
                return;
        pthread_cond_destroy(&f->cond);
        pthread_mutex_destroy(&f->lock);
        free(f);
}

bool fin_push(fin_t *f, fin_item_t *it)
{
        bool ok;
        pthread_mutex_lock(&f->lock);
        ok = f->running && !f->stopping;
        if (ok) {
                it->next = NULL;
                if (f->tail)
                        f->tail->next = it;
                else
                        f->head = it;
                f->tail = it;
                pthread_cond_signal(&f->cond);
        }
        pthread_mutex_unlock(&f->lock);
        return ok;
}

bool fin_reserve(fin_t *f, int limit)
{
        bool ok;
        pthread_mutex_lock(&f->lock);
        ok = f->running && !f->stopping && f->reserved < limit;
        if (ok)
                f->reserved++;
        pthread_mutex_unlock(&f->lock);
        return ok;
}

void fin_unreserve(fin_t *f)
{
        pthread_mutex_lock(&f->lock);
        f->reserved--;
        pthread_mutex_unlock(&f->lock);
}

static bool stopping(fin_t *f)
{
        pthread_mutex_lock(&f->lock);
        bool s = f->stopping;
        pthread_mutex_unlock(&f->lock);
        return s;
}

/* Writes items[0..n-1]; fills rcs. */
static void write_batch(fin_t *f, par_claim_t *c, fin_item_t **items, size_t n,
                        par_err_t *rcs)
{
        par_claim_finish_t outs[FIN_BATCH];
        int64_t now = par_clock_wall_ms();
        par_error_t e;

        for (size_t i = 0; i < n; i++)
                outs[i] = items[i]->out;
        for (int tries = 0;; tries++) {
                par_err_t rc = par_claim_finish_batch(c, outs, n, now, rcs, &e);
                if (!rc)
                        return;
                if (rc != PAR_ERR_MONGO && n > 1) {
                        /* One outcome spoils the batch: alone, each
                         * fails or not on its own. */
                        for (size_t i = 0; i < n; i++)
                                write_batch(f, c, items + i, 1, rcs + i);
                        return;
                }
                if (rc != PAR_ERR_MONGO || (stopping(f) && tries >= 2)) {
                        par_log(PAR_LOG_ERROR, "consumer", "finish_failed",
                                "signals=%zu first=%s error=\"%s\"", n,
                                outs[0].id, e.msg);
                        for (size_t i = 0; i < n; i++)
                                rcs[i] = rc;
                        return;
                }
                par_log(PAR_LOG_WARN, "consumer", "finish_retry",
                        "signals=%zu error=\"%s\"", n, e.msg);
                par_clock_sleep_ms(500);
        }
}

static void *fin_main(void *arg)
{
        fin_t *f = arg;
        par_claim_t *c = NULL;
        par_error_t e;

        /* par_claim_new only fails without memory; the items then go
         * back with an error rather than waiting forever. */
        if (par_claim_new(&c, f->mpool, f->database, f->collection, f->owner,
                          &e))
                par_log(PAR_LOG_ERROR, "consumer", "finisher_failed",
                        "error=\"%s\"", e.msg);
        for (;;) {
                fin_item_t *items[FIN_BATCH];
                par_err_t rcs[FIN_BATCH];
                size_t n = 0;

                pthread_mutex_lock(&f->lock);
                while (!f->head && !f->stopping)
                        pthread_cond_wait(&f->cond, &f->lock);
                while (f->head && n < FIN_BATCH) {
                        items[n++] = f->head;
                        f->head = f->head->next;
                }
                if (!f->head)
                        f->tail = NULL;
                pthread_mutex_unlock(&f->lock);
                if (!n)
                        break; /* stopping, and nothing left */
                if (c)
                        write_batch(f, c, items, n, rcs);
                else
                        for (size_t i = 0; i < n; i++)
                                rcs[i] = PAR_ERR_NOMEM;
                for (size_t i = 0; i < n; i++)
                        items[i]->done(items[i], c, rcs[i]);
        }
        par_claim_destroy(c);
        return NULL;
}

par_err_t fin_start(fin_t *f, par_error_t *err)
{
        pthread_mutex_lock(&f->lock);
        f->running = true;
        pthread_mutex_unlock(&f->lock);
        if (pthread_create(&f->thread, NULL, fin_main, f)) {
                pthread_mutex_lock(&f->lock);
                f->running = false;
                pthread_mutex_unlock(&f->lock);
                return par_error_set(err, PAR_ERR_IO,
                                     "cannot start the finisher");
        }
        return PAR_OK;
}

void fin_stop(fin_t *f)
{
        pthread_mutex_lock(&f->lock);
        bool was = f->running && !f->stopping;
        f->stopping = true;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->lock);
        if (was)
                pthread_join(f->thread, NULL);
}
