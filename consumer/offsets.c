/*
 * offsets.c — see offsets.h.
 *
 * Each partition keeps its unfinished window as a sorted array of tracked
 * offsets with done flags: tracking appends (offsets arrive in order),
 * done() binary-searches, and the finished prefix is popped from the front,
 * advancing the committable offset. The window is bounded by what the
 * scheduler holds plus what workers run, so arrays stay small. Partitions
 * are few (a list is enough).
 */
#include "offsets.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct part {
        struct part *next;
        char *topic;
        int32_t partition;
        int64_t *offs;
        bool *done;
        size_t head, len, cap;
        int undone;           /* tracked and not done */
        int64_t last_tracked; /* -1 before the first */
        int64_t committable;  /* -1 until something finished */
        int64_t reported;     /* last committable reported, -1 none */
} part_t;

struct par_offsets {
        pthread_mutex_t lock;
        part_t *parts;
};

par_err_t par_offsets_new(par_offsets_t **out, par_error_t *err)
{
        par_offsets_t *o = calloc(1, sizeof(*o));
        if (!o)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        pthread_mutex_init(&o->lock, NULL);
        *out = o;
        return PAR_OK;
}

static void part_free(part_t *p)
{
        free(p->topic);
        free(p->offs);
        free(p->done);
        free(p);
}

void par_offsets_destroy(par_offsets_t *o)
{
        if (!o)
                return;
        for (part_t *p = o->parts, *nx; p; p = nx) {
                nx = p->next;
                part_free(p);
        }
        pthread_mutex_destroy(&o->lock);
        free(o);
}

static part_t **find(par_offsets_t *o, const char *topic, int32_t partition)
{
        part_t **pp = &o->parts;
        for (; *pp; pp = &(*pp)->next)
                if ((*pp)->partition == partition &&
                    !strcmp((*pp)->topic, topic))
                        break;
        return pp;
}

/* Makes room for one more entry at the end of the window. */
static bool reserve(part_t *p)
{
        if (p->head + p->len < p->cap)
                return true;
        if (p->head > 0 && p->len < p->cap / 2) {
                memmove(p->offs, p->offs + p->head, p->len * sizeof(*p->offs));
                memmove(p->done, p->done + p->head, p->len * sizeof(*p->done));
                p->head = 0;
                return true;
        }
        size_t cap = p->cap ? p->cap * 2 : 64;
        int64_t *offs = realloc(p->offs, cap * sizeof(*offs));
        if (!offs)
                return false;
        p->offs = offs;
        bool *done = realloc(p->done, cap * sizeof(*done));
        if (!done)
                return false;
        p->done = done;
        p->cap = cap;
        return true;
}

par_err_t par_offsets_track(par_offsets_t *o, const char *topic,
                            int32_t partition, int64_t offset, par_error_t *err)
{
        par_err_t rc = PAR_OK;

        pthread_mutex_lock(&o->lock);
        part_t **pp = find(o, topic, partition), *p = *pp;
        if (!p) {
                if (!(p = calloc(1, sizeof(*p))) ||
                    !(p->topic = strdup(topic))) {
                        free(p);
                        rc = par_error_set(err, PAR_ERR_NOMEM, "out of memory");
                        goto out;
                }
                p->partition = partition;
                p->last_tracked = p->committable = p->reported = -1;
                *pp = p;
        }
        if (offset <= p->last_tracked) {
                rc = par_error_set(err, PAR_ERR_INVALID,
                                   "%s [%d]: offset %lld already tracked "
                                   "(last %lld)",
                                   topic, (int)partition, (long long)offset,
                                   (long long)p->last_tracked);
                goto out;
        }
        if (!reserve(p)) {
                rc = par_error_set(err, PAR_ERR_NOMEM, "out of memory");
                goto out;
        }
        p->offs[p->head + p->len] = offset;
        p->done[p->head + p->len] = false;
        p->len++;
        p->undone++;
        p->last_tracked = offset;
out:
        pthread_mutex_unlock(&o->lock);
        return rc;
}

par_err_t par_offsets_done(par_offsets_t *o, const char *topic,
                           int32_t partition, int64_t offset)
{
        par_err_t rc = PAR_ERR_NOTFOUND;

        pthread_mutex_lock(&o->lock);
        part_t *p = *find(o, topic, partition);
        if (!p)
                goto out;
        size_t lo = p->head, hi = p->head + p->len;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (p->offs[mid] < offset)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        if (lo == p->head + p->len || p->offs[lo] != offset)
                goto out;
        if (!p->done[lo])
                p->undone--;
        p->done[lo] = true;
        while (p->len && p->done[p->head]) {
                p->committable = p->offs[p->head] + 1;
                p->head++;
                p->len--;
        }
        if (!p->len)
                p->head = 0;
        rc = PAR_OK;
out:
        pthread_mutex_unlock(&o->lock);
        return rc;
}

int64_t par_offsets_committable(par_offsets_t *o, const char *topic,
                                int32_t partition, int *pending)
{
        int64_t c = -1;

        pthread_mutex_lock(&o->lock);
        part_t *p = *find(o, topic, partition);
        if (p)
                c = p->committable;
        if (pending)
                *pending = p ? p->undone : 0;
        pthread_mutex_unlock(&o->lock);
        return c;
}

int par_offsets_collect(par_offsets_t *o, bool all,
                        void (*cb)(const char *topic, int32_t partition,
                                   int64_t offset, void *opaque),
                        void *opaque)
{
        int n = 0;

        pthread_mutex_lock(&o->lock);
        for (part_t *p = o->parts; p; p = p->next) {
                if (p->committable > p->reported ||
                    (all && p->committable >= 0)) {
                        cb(p->topic, p->partition, p->committable, opaque);
                        p->reported = p->committable;
                        n++;
                }
        }
        pthread_mutex_unlock(&o->lock);
        return n;
}

int64_t par_offsets_revoke(par_offsets_t *o, const char *topic,
                           int32_t partition)
{
        int64_t c = -1;

        pthread_mutex_lock(&o->lock);
        part_t **pp = find(o, topic, partition), *p = *pp;
        if (p) {
                c = p->committable;
                *pp = p->next;
                part_free(p);
        }
        pthread_mutex_unlock(&o->lock);
        return c;
}

int par_offsets_pending(par_offsets_t *o)
{
        int n = 0;

        pthread_mutex_lock(&o->lock);
        for (part_t *p = o->parts; p; p = p->next)
                n += p->undone;
        pthread_mutex_unlock(&o->lock);
        return n;
}
