/*
 * scheduler.c — see scheduler.h for the rules.
 *
 * Design: each level is a doubly linked list in arrival order (a sequence
 * number), and each resource key has its own doubly linked FIFO of queued
 * jobs plus a busy flag, found through a small chained hash table (there is
 * no map in our dependencies). next() walks levels from most to least
 * urgent; in each level the first job whose resource is free nominates its
 * resource's oldest job, with the nominating job's urgency (inheritance).
 * Because a level list is in arrival order, that first job is also the most
 * aged of its level, so one candidate per level suffices and the best of
 * those wins. Queues are bounded by the watermarks (the poll thread stops
 * taking a level's messages), so the linear walk past blocked jobs stays
 * short.
 */
#include "base/clock.h"
#include "scheduler.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct res res_t;

typedef struct node {
        par_sched_job_t job; /* job.resource points at res->key */
        uint64_t seq;
        int64_t not_before;
        struct node *prev, *next;   /* level list */
        struct node *rprev, *rnext; /* resource FIFO */
        res_t *res;
        bool queued;
        struct node *oprev, *onext; /* handed out (running) */
} node_t;

struct res {
        char *key;
        res_t *hnext;
        bool busy;
        node_t *head, *tail;
};

typedef struct level {
        node_t *head, *tail;
        int depth;
} level_t;

struct par_sched {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        par_sched_opts_t o;
        level_t lv[32];
        uint32_t want_paused, told_paused;
        res_t **buckets;
        size_t nbuckets, nres;
        uint64_t seq;
        int running;
        node_t *out; /* handed-out jobs, for par_sched_running_in */
        bool closed;
};

static void out_link(par_sched_t *s, node_t *n)
{
        n->oprev = NULL;
        n->onext = s->out;
        if (s->out)
                s->out->oprev = n;
        s->out = n;
}

static void out_unlink(par_sched_t *s, node_t *n)
{
        if (n->oprev)
                n->oprev->onext = n->onext;
        else
                s->out = n->onext;
        if (n->onext)
                n->onext->oprev = n->oprev;
        n->oprev = n->onext = NULL;
}

static size_t hash(const char *s)
{
        size_t h = 1469598103934665603ull;
        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ull;
        return h;
}

static void rehash(par_sched_t *s)
{
        size_t n = s->nbuckets * 4;
        res_t **b = calloc(n, sizeof(*b));
        if (!b)
                return; /* keep the old table: slower, still correct */
        for (size_t i = 0; i < s->nbuckets; i++) {
                res_t *r = s->buckets[i], *nx;
                for (; r; r = nx) {
                        nx = r->hnext;
                        size_t h = hash(r->key) % n;
                        r->hnext = b[h];
                        b[h] = r;
                }
        }
        free(s->buckets);
        s->buckets = b;
        s->nbuckets = n;
}

static res_t *res_get(par_sched_t *s, const char *key)
{
        size_t h = hash(key) % s->nbuckets;
        for (res_t *r = s->buckets[h]; r; r = r->hnext)
                if (!strcmp(r->key, key))
                        return r;
        res_t *r = calloc(1, sizeof(*r));
        if (!r || !(r->key = strdup(key))) {
                free(r);
                return NULL;
        }
        r->hnext = s->buckets[h];
        s->buckets[h] = r;
        if (++s->nres > s->nbuckets * 2)
                rehash(s);
        return r;
}

/* Frees r when nothing refers to it any more. */
static void res_maybe_free(par_sched_t *s, res_t *r)
{
        if (!r || r->busy || r->head)
                return;
        res_t **pp = &s->buckets[hash(r->key) % s->nbuckets];
        while (*pp != r)
                pp = &(*pp)->hnext;
        *pp = r->hnext;
        s->nres--;
        free(r->key);
        free(r);
}

static void level_note_depth(par_sched_t *s, int level)
{
        level_t *l = &s->lv[level - 1];
        uint32_t bit = 1u << (level - 1);
        if (s->o.high_watermark > 0 && l->depth >= s->o.high_watermark)
                s->want_paused |= bit;
        else if (l->depth <= s->o.low_watermark && (s->want_paused & bit)) {
                s->want_paused &= ~bit;
                if (s->o.on_resume)
                        s->o.on_resume(s->o.wake_arg);
        }
}

/* Inserts n into its level list and resource FIFO in sequence order. */
static void link_node(par_sched_t *s, node_t *n)
{
        level_t *l = &s->lv[n->job.level - 1];
        node_t *at = l->tail;
        while (at && at->seq > n->seq)
                at = at->prev;
        n->prev = at;
        n->next = at ? at->next : l->head;
        if (n->next)
                n->next->prev = n;
        else
                l->tail = n;
        if (at)
                at->next = n;
        else
                l->head = n;
        l->depth++;

        if (n->res) {
                res_t *r = n->res;
                node_t *ra = r->tail;
                while (ra && ra->seq > n->seq)
                        ra = ra->rprev;
                n->rprev = ra;
                n->rnext = ra ? ra->rnext : r->head;
                if (n->rnext)
                        n->rnext->rprev = n;
                else
                        r->tail = n;
                if (ra)
                        ra->rnext = n;
                else
                        r->head = n;
        }
        n->queued = true;
        level_note_depth(s, n->job.level);
}

static void unlink_node(par_sched_t *s, node_t *n)
{
        level_t *l = &s->lv[n->job.level - 1];
        if (n->prev)
                n->prev->next = n->next;
        else
                l->head = n->next;
        if (n->next)
                n->next->prev = n->prev;
        else
                l->tail = n->prev;
        l->depth--;
        if (n->res) {
                res_t *r = n->res;
                if (n->rprev)
                        n->rprev->rnext = n->rnext;
                else
                        r->head = n->rnext;
                if (n->rnext)
                        n->rnext->rprev = n->rprev;
                else
                        r->tail = n->rprev;
        }
        n->prev = n->next = n->rprev = n->rnext = NULL;
        n->queued = false;
        level_note_depth(s, n->job.level);
}

static void drop_node(par_sched_t *s, node_t *n)
{
        res_t *r = n->res;
        unlink_node(s, n);
        if (s->o.free_payload && n->job.payload)
                s->o.free_payload(n->job.payload);
        free(n);
        res_maybe_free(s, r);
}

par_err_t par_sched_new(par_sched_t **out, const par_sched_opts_t *opts,
                        par_error_t *err)
{
        par_sched_t *s;

        if (!opts || opts->levels < 1 || opts->levels > 32)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "scheduler: levels must be 1..32");
        if (opts->high_watermark > 0 &&
            opts->low_watermark >= opts->high_watermark)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "scheduler: low watermark %d must be "
                                     "below high watermark %d",
                                     opts->low_watermark, opts->high_watermark);
        if (!(s = calloc(1, sizeof(*s))))
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        s->o = *opts;
        s->nbuckets = 64;
        if (!(s->buckets = calloc(s->nbuckets, sizeof(*s->buckets)))) {
                free(s);
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        }
        pthread_mutex_init(&s->lock, NULL);
        par_clock_cond_init(&s->cond);
        *out = s;
        return PAR_OK;
}

void par_sched_destroy(par_sched_t *s)
{
        if (!s)
                return;
        par_sched_clear(s);
        /* Resources still marked busy belong to jobs never finished. */
        for (size_t i = 0; i < s->nbuckets; i++) {
                res_t *r = s->buckets[i], *nx;
                for (; r; r = nx) {
                        nx = r->hnext;
                        free(r->key);
                        free(r);
                }
        }
        free(s->buckets);
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
        free(s);
}

par_err_t par_sched_push(par_sched_t *s, const par_sched_job_t *job,
                         par_error_t *err)
{
        node_t *n;

        if (job->level < 1 || job->level > s->o.levels)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "scheduler: level %d out of range 1..%d",
                                     job->level, s->o.levels);
        if (!(n = calloc(1, sizeof(*n))))
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        n->job = *job;
        n->job.resource = NULL;
        if (!n->job.enqueued_ms)
                n->job.enqueued_ms = par_clock_mono_ms();
        pthread_mutex_lock(&s->lock);
        if (job->resource && *job->resource) {
                if (!(n->res = res_get(s, job->resource))) {
                        pthread_mutex_unlock(&s->lock);
                        free(n);
                        return par_error_set(err, PAR_ERR_NOMEM,
                                             "out of memory");
                }
                n->job.resource = n->res->key;
        }
        n->seq = ++s->seq;
        link_node(s, n);
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        return PAR_OK;
}

static int64_t urgency(const par_sched_t *s, const node_t *n, int64_t now)
{
        int64_t u = n->job.level;
        if (s->o.aging_ms > 0 && now > n->job.enqueued_ms)
                u += (now - n->job.enqueued_ms) / s->o.aging_ms;
        return u;
}

/* Under the lock. *wake gets the earliest not_before in the future that
 * could make something runnable (INT64_MAX if none). */
static node_t *pick(par_sched_t *s, int64_t now, int64_t *wake)
{
        node_t *best = NULL;
        int64_t best_u = 0;

        *wake = INT64_MAX;
        for (int L = s->o.levels; L >= 1; L--) {
                for (node_t *n = s->lv[L - 1].head; n; n = n->next) {
                        node_t *c = n;
                        if (n->res) {
                                if (n->res->busy)
                                        continue;
                                c = n->res->head;
                        }
                        if (c->not_before > now) {
                                if (c->not_before < *wake)
                                        *wake = c->not_before;
                                continue;
                        }
                        int64_t u = urgency(s, n, now);
                        int64_t uc = urgency(s, c, now);
                        if (uc > u)
                                u = uc;
                        if (!best || u > best_u ||
                            (u == best_u &&
                             c->job.enqueued_ms < best->job.enqueued_ms)) {
                                best = c;
                                best_u = u;
                        }
                        break;
                }
        }
        return best;
}

static par_sched_job_t *take(par_sched_t *s, node_t *n)
{
        unlink_node(s, n);
        if (n->res)
                n->res->busy = true;
        s->running++;
        out_link(s, n);
        return &n->job;
}

par_sched_job_t *par_sched_try_next(par_sched_t *s, int64_t now_ms)
{
        int64_t wake;
        par_sched_job_t *j = NULL;

        pthread_mutex_lock(&s->lock);
        node_t *n = s->closed ? NULL : pick(s, now_ms, &wake);
        if (n)
                j = take(s, n);
        pthread_mutex_unlock(&s->lock);
        return j;
}

par_sched_job_t *par_sched_next(par_sched_t *s, int timeout_ms)
{
        int64_t deadline = par_clock_mono_ms() + timeout_ms, wake;
        par_sched_job_t *j = NULL;

        pthread_mutex_lock(&s->lock);
        while (!s->closed) {
                int64_t now = par_clock_mono_ms();
                node_t *n = pick(s, now, &wake);
                if (n) {
                        j = take(s, n);
                        break;
                }
                if (now >= deadline)
                        break;
                int64_t until = wake < deadline ? wake : deadline;
                struct timespec ts = {.tv_sec = until / 1000,
                                      .tv_nsec = (until % 1000) * 1000000};
                pthread_cond_timedwait(&s->cond, &s->lock, &ts);
        }
        pthread_mutex_unlock(&s->lock);
        return j;
}

void par_sched_done(par_sched_t *s, par_sched_job_t *job)
{
        node_t *n = (node_t *)job; /* job is the first member */

        if (!job)
                return;
        pthread_mutex_lock(&s->lock);
        s->running--;
        out_unlink(s, n);
        if (n->res) {
                n->res->busy = false;
                res_maybe_free(s, n->res);
        }
        free(n);
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
}

/* A handed-out job back into its place; attempt counts a local retry. */
static void requeue(par_sched_t *s, par_sched_job_t *job, int64_t not_before_ms,
                    int attempt)
{
        node_t *n = (node_t *)job;

        pthread_mutex_lock(&s->lock);
        s->running--;
        out_unlink(s, n);
        if (n->res)
                n->res->busy = false;
        n->not_before = not_before_ms;
        n->job.attempt += attempt;
        link_node(s, n);
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
}

void par_sched_defer(par_sched_t *s, par_sched_job_t *job,
                     int64_t not_before_ms)
{
        requeue(s, job, not_before_ms, 1);
}

void par_sched_put_back(par_sched_t *s, par_sched_job_t *job)
{
        requeue(s, job, 0, 0);
}

int par_sched_revoke(par_sched_t *s, int level, int32_t partition)
{
        int dropped = 0;

        if (level < 1 || level > s->o.levels)
                return 0;
        pthread_mutex_lock(&s->lock);
        node_t *n = s->lv[level - 1].head, *nx;
        for (; n; n = nx) {
                nx = n->next;
                if (n->job.partition == partition) {
                        drop_node(s, n);
                        dropped++;
                }
        }
        /* Dropping a resource's head can make a younger job runnable. */
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        return dropped;
}

int par_sched_clear(par_sched_t *s)
{
        int dropped = 0;

        pthread_mutex_lock(&s->lock);
        for (int L = 1; L <= s->o.levels; L++)
                while (s->lv[L - 1].head) {
                        drop_node(s, s->lv[L - 1].head);
                        dropped++;
                }
        pthread_mutex_unlock(&s->lock);
        return dropped;
}

bool par_sched_take_flow(par_sched_t *s, uint32_t *pause, uint32_t *resume)
{
        pthread_mutex_lock(&s->lock);
        *pause = s->want_paused & ~s->told_paused;
        *resume = s->told_paused & ~s->want_paused;
        s->told_paused = s->want_paused;
        pthread_mutex_unlock(&s->lock);
        return *pause || *resume;
}

int par_sched_depth(par_sched_t *s, int level)
{
        int d = 0;

        pthread_mutex_lock(&s->lock);
        for (int L = 1; L <= s->o.levels; L++)
                if (!level || L == level)
                        d += s->lv[L - 1].depth;
        pthread_mutex_unlock(&s->lock);
        return d;
}

int par_sched_running_in(par_sched_t *s, int level, int32_t partition)
{
        int r = 0;
        pthread_mutex_lock(&s->lock);
        for (node_t *n = s->out; n; n = n->onext)
                r += n->job.level == level && n->job.partition == partition;
        pthread_mutex_unlock(&s->lock);
        return r;
}

int par_sched_running(par_sched_t *s)
{
        pthread_mutex_lock(&s->lock);
        int r = s->running;
        pthread_mutex_unlock(&s->lock);
        return r;
}

void par_sched_close(par_sched_t *s)
{
        pthread_mutex_lock(&s->lock);
        s->closed = true;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
}
