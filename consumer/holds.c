/*
 * holds.c — held claims and lease renewal.
 *
 * A claim's lease is short (claim.lease) so that a dead node's signals are
 * taken over quickly; a live node therefore renews every claim it holds,
 * running or waiting for a retry or a resource lock, every lease / 3. The
 * renewer works on a copy of the list so MongoDB calls never run under the
 * lock that workers take on every job.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "holds.h"
#include "store/claim.h"

typedef struct held {
        struct held *next;
        char id[32];
        char owner[160];
        char resource[260];
        bool waiting; /* kept while waiting for a lock: never ran */
        bool release; /* give it back instead of renewing */
} held_t;

struct holds {
        mongoc_client_pool_t *mpool;
        char database[128], collection[128], node_id[128];
        int64_t lease_ms;
        pthread_mutex_t lock;
        held_t *list;
        pthread_t thread;
        bool started;
        atomic_bool quit;
        fin_t *fin;
};

par_err_t holds_new(holds_t **out, mongoc_client_pool_t *mpool,
                    const char *database, const char *collection,
                    const char *node_id, int64_t lease_ms, par_error_t *err)
{
        holds_t *h = calloc(1, sizeof(*h));
        if (!h)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        h->mpool = mpool;
        snprintf(h->database, sizeof(h->database), "%s", database);
        snprintf(h->collection, sizeof(h->collection), "%s", collection);
        snprintf(h->node_id, sizeof(h->node_id), "%s", node_id);
        h->lease_ms = lease_ms;
        par_err_t rc =
            fin_new(&h->fin, mpool, database, collection, node_id, err);
        if (rc) {
                free(h);
                return rc;
        }
        pthread_mutex_init(&h->lock, NULL);
        *out = h;
        return PAR_OK;
}

void holds_destroy(holds_t *h)
{
        if (!h)
                return;
        for (held_t *x = h->list, *nx; x; x = nx) {
                nx = x->next;
                free(x);
        }
        fin_destroy(h->fin);
        pthread_mutex_destroy(&h->lock);
        free(h);
}

void holds_add(holds_t *h, const char *id, const char *owner,
               const char *resource, bool waiting)
{
        held_t *x = calloc(1, sizeof(*x));
        if (!x)
                return; /* not renewed: the lease may lapse, never wrong */
        snprintf(x->id, sizeof(x->id), "%s", id);
        snprintf(x->owner, sizeof(x->owner), "%s", owner);
        snprintf(x->resource, sizeof(x->resource), "%s",
                 resource ? resource : "");
        x->waiting = waiting;
        pthread_mutex_lock(&h->lock);
        x->next = h->list;
        h->list = x;
        pthread_mutex_unlock(&h->lock);
}

static void unhold(holds_t *h, const char *id, const char *owner,
                   bool to_release)
{
        pthread_mutex_lock(&h->lock);
        for (held_t **pp = &h->list; *pp; pp = &(*pp)->next) {
                held_t *x = *pp;
                if (!strcmp(x->id, id) && !strcmp(x->owner, owner)) {
                        if (to_release) {
                                x->release = true;
                        } else {
                                *pp = x->next;
                                free(x);
                        }
                        break;
                }
        }
        pthread_mutex_unlock(&h->lock);
}

void holds_remove(holds_t *h, const char *id, const char *owner)
{
        unhold(h, id, owner, false);
}

void holds_release_later(holds_t *h, const char *id, const char *owner)
{
        unhold(h, id, owner, true);
}

/* Renews a held claim and its resource lock; true when either is lost. A
 * lock whose claim is gone is dropped rather than renewed: whoever holds the
 * signal now needs the resource (if our worker just finished, it drops the
 * lock itself a moment later anyway). */
static bool renew(holds_t *h, par_claim_t *c, const held_t *x)
{
        par_error_t e;
        bool lost = par_claim_renew(c, x->id, x->owner, par_clock_wall_ms(),
                                    h->lease_ms, &e) == PAR_ERR_NOTFOUND;
        if (!x->resource[0])
                return lost;
        if (lost)
                par_claim_unlock(c, x->resource, x->id, x->owner, &e);
        else if (par_claim_lock_renew(c, x->resource, x->id, x->owner,
                                      par_clock_wall_ms(), h->lease_ms,
                                      &e) == PAR_ERR_NOTFOUND)
                lost = true;
        return lost;
}

static void give_back(holds_t *h, const held_t *x)
{
        par_claim_t *rc = NULL;
        par_error_t e;

        if (!par_claim_new(&rc, h->mpool, h->database, h->collection, x->owner,
                           &e)) {
                par_claim_release(rc, x->id, NULL, x->waiting, &e);
                if (x->resource[0])
                        par_claim_unlock(rc, x->resource, x->id, NULL, &e);
        }
        par_claim_destroy(rc);
        holds_remove(h, x->id, x->owner);
}

/* Renews every held lease and gives back the ones marked for release. */
static void pass(holds_t *h, par_claim_t *c, bool release_all)
{
        held_t *copy = NULL;

        pthread_mutex_lock(&h->lock);
        for (held_t *x = h->list; x; x = x->next) {
                held_t *y = malloc(sizeof(*y));
                if (!y)
                        break;
                *y = *x;
                y->next = copy;
                copy = y;
        }
        pthread_mutex_unlock(&h->lock);
        for (held_t *x = copy, *nx; x; x = nx) {
                nx = x->next;
                if (x->release || release_all) {
                        give_back(h, x);
                } else if (renew(h, c, x)) {
                        /* Usually the worker just finished it (and unheld
                         * it after our copy): only a claim still held is a
                         * lost lease. */
                        bool still = false;
                        pthread_mutex_lock(&h->lock);
                        for (held_t *y = h->list; y && !still; y = y->next)
                                still = !strcmp(y->id, x->id) &&
                                        !strcmp(y->owner, x->owner) &&
                                        !y->release;
                        pthread_mutex_unlock(&h->lock);
                        if (still)
                                par_log(PAR_LOG_WARN, "consumer", "lease_lost",
                                        "signal=%s owner=%s resource=%s", x->id,
                                        x->owner, x->resource);
                }
                free(x);
        }
}

static void *renew_main(void *arg)
{
        holds_t *h = arg;
        par_claim_t *c = NULL;
        par_error_t e;
        char owner[160];

        snprintf(owner, sizeof(owner), "%s/renewer", h->node_id);
        if (par_claim_new(&c, h->mpool, h->database, h->collection, owner,
                          &e)) {
                par_log(PAR_LOG_ERROR, "consumer", "renewer_failed",
                        "error=\"%s\"", e.msg);
                return NULL;
        }
        int64_t next = 0;
        while (!atomic_load(&h->quit)) {
                if (par_clock_mono_ms() >= next) {
                        pass(h, c, false);
                        next = par_clock_mono_ms() + h->lease_ms / 3;
                }
                par_clock_sleep_ms(100);
        }
        par_claim_destroy(c);
        return NULL;
}

par_err_t holds_start(holds_t *h, par_error_t *err)
{
        if (pthread_create(&h->thread, NULL, renew_main, h))
                return par_error_set(err, PAR_ERR_IO,
                                     "cannot start the lease renewer");
        h->started = true;
        return fin_start(h->fin, err);
}

/* The finisher first: the leases of the claims it still writes are renewed
 * until it is done. */
void holds_stop(holds_t *h)
{
        fin_stop(h->fin);
        atomic_store(&h->quit, true);
        if (h->started)
                pthread_join(h->thread, NULL);
        h->started = false;
}

fin_t *holds_finisher(holds_t *h)
{
        return h->fin;
}

void holds_give_back(holds_t *h, bool all)
{
        par_claim_t *c = NULL;
        par_error_t e;

        if (!par_claim_new(&c, h->mpool, h->database, h->collection, h->node_id,
                           &e))
                pass(h, c, all);
        par_claim_destroy(c);
}
