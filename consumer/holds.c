/*
 * holds.c — held claims and lease renewal.
 *
 * A claim's lease is short (claim.lease) so that a dead node's signals are
 * taken over quickly; a live node therefore renews every claim it holds,
 * running, waiting for its document to be written, claimed ahead, or
 * waiting for a retry or a resource lock, every lease / 3, in one round
 * trip per owner (par_claim_renew_batch). The renewer works on a copy of
 * the list so MongoDB calls never run under the lock that workers take on
 * every job.
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
        char owner[PAR_CLAIM_OWNER_MAX];
        char resource[260];
        bool waiting; /* kept while waiting for a lock: never ran */
        bool release; /* give it back instead of renewing */
        bool lost;    /* a renewal found it held by someone else */
        /* Wall ms: the end of the last lease the store is known to have
         * granted (at holds_add, from the add: a few ms late at most). */
        int64_t lease_until;
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
        x->lease_until = par_clock_wall_ms() + h->lease_ms;
        pthread_mutex_lock(&h->lock);
        x->next = h->list;
        h->list = x;
        pthread_mutex_unlock(&h->lock);
}

/* h->lock held: the held claim (id, owner), or NULL. */
static held_t *find_locked(holds_t *h, const char *id, const char *owner)
{
        for (held_t *x = h->list; x; x = x->next)
                if (!strcmp(x->id, id) && !strcmp(x->owner, owner))
                        return x;
        return NULL;
}

/* Records a renewed lease on the held claim that x copies. */
static void set_lease(holds_t *h, const held_t *x, int64_t until)
{
        pthread_mutex_lock(&h->lock);
        held_t *y = find_locked(h, x->id, x->owner);
        if (y && y->lease_until < until)
                y->lease_until = until;
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

/* Renews the resource lock held with x's claim; true when it is lost. A
 * lock whose claim is gone (claim_lost) is dropped rather than renewed:
 * whoever holds the signal now needs the resource (if our worker just
 * finished, it drops the lock itself a moment later anyway). */
static bool renew_lock(holds_t *h, par_claim_t *c, const held_t *x,
                       bool claim_lost)
{
        par_error_t e;
        if (claim_lost) {
                par_claim_unlock(c, x->resource, x->id, x->owner, &e);
                return true;
        }
        return par_claim_lock_renew(c, x->resource, x->id, x->owner,
                                    par_clock_wall_ms(), h->lease_ms,
                                    &e) == PAR_ERR_NOTFOUND;
}

/* Renews the claims of v[0..n-1] (those not given back), one round trip per
 * owner and PAR_CLAIM_BATCH_MAX claims: a node holds many (running,
 * results awaiting their document, claimed ahead, retries), and renewing
 * them one by one could outlast the lease. lost[i]: v[i]'s claim is no
 * longer held (a database error loses nothing: the next pass tries
 * again). A renewed claim's new lease end is recorded. */
static void renew_claims(holds_t *h, par_claim_t *c, held_t **v, size_t n,
                         const bool *skip, bool *lost)
{
        bool *grouped = calloc(n ? n : 1, sizeof(*grouped));
        const char *ids[PAR_CLAIM_BATCH_MAX];
        size_t at[PAR_CLAIM_BATCH_MAX];
        bool l[PAR_CLAIM_BATCH_MAX];
        par_error_t e;

        if (!grouped)
                return; /* not renewed this pass: may lapse, never wrong */
        for (size_t i = 0; i < n; i++) {
                size_t m = 0;
                if (skip[i] || grouped[i])
                        continue;
                for (size_t k = i; k < n && m < PAR_CLAIM_BATCH_MAX; k++)
                        if (!skip[k] && !grouped[k] &&
                            !strcmp(v[k]->owner, v[i]->owner)) {
                                grouped[k] = true;
                                ids[m] = v[k]->id;
                                at[m++] = k;
                        }
                int64_t now = par_clock_wall_ms();
                if (par_claim_renew_batch(c, ids, m, v[i]->owner, now,
                                          h->lease_ms, l, &e))
                        continue;
                for (size_t k = 0; k < m; k++) {
                        lost[at[k]] = l[k];
                        if (!l[k])
                                set_lease(h, v[at[k]], now + h->lease_ms);
                }
        }
        free(grouped);
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
        held_t **v = NULL;
        bool *skip = NULL, *lost = NULL;
        size_t n = 0, cap = 0;

        pthread_mutex_lock(&h->lock);
        for (held_t *x = h->list; x; x = x->next)
                cap++;
        v = calloc(cap ? cap : 1, sizeof(*v));
        for (held_t *x = h->list; v && x && n < cap; x = x->next) {
                if (!(v[n] = malloc(sizeof(*v[n]))))
                        break;
                *v[n++] = *x;
        }
        pthread_mutex_unlock(&h->lock);
        skip = calloc(n ? n : 1, sizeof(*skip));
        lost = calloc(n ? n : 1, sizeof(*lost));
        if (!v || !skip || !lost)
                goto out; /* not renewed this pass: may lapse, never wrong */
        for (size_t i = 0; i < n; i++)
                if (v[i]->release || release_all) {
                        give_back(h, v[i]);
                        skip[i] = true;
                }
        renew_claims(h, c, v, n, skip, lost);
        for (size_t i = 0; i < n; i++) {
                held_t *x = v[i];
                if (skip[i])
                        continue;
                if (x->resource[0] && renew_lock(h, c, x, lost[i]))
                        lost[i] = true;
                if (!lost[i])
                        continue;
                /* Usually the worker just finished it (and unheld it after
                 * our copy): only a claim still held is a lost lease. */
                bool still = false;
                pthread_mutex_lock(&h->lock);
                for (held_t *y = h->list; y && !still; y = y->next)
                        if (!strcmp(y->id, x->id) &&
                            !strcmp(y->owner, x->owner) && !y->release) {
                                still = true;
                                y->lost = true;
                        }
                pthread_mutex_unlock(&h->lock);
                if (still)
                        par_log(PAR_LOG_WARN, "consumer", "lease_lost",
                                "signal=%s owner=%s resource=%s", x->id,
                                x->owner, x->resource);
        }
out:
        for (size_t i = 0; i < n; i++)
                free(v[i]);
        free(v);
        free(skip);
        free(lost);
}

bool holds_lost(holds_t *h, const char *id, const char *owner)
{
        pthread_mutex_lock(&h->lock);
        held_t *x = find_locked(h, id, owner);
        bool lost = x && x->lost;
        pthread_mutex_unlock(&h->lock);
        return lost;
}

bool holds_lapsed(holds_t *h, const char *id, const char *owner, int64_t now_ms)
{
        pthread_mutex_lock(&h->lock);
        held_t *x = find_locked(h, id, owner);
        bool lapsed = x && now_ms >= x->lease_until;
        pthread_mutex_unlock(&h->lock);
        return lapsed;
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
