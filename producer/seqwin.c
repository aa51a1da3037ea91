/*
 * seqwin.c — see seqwin.h.
 *
 * A ring buffer of items indexed by sequence number: seq s lives at slot
 * (s - 1) & (cap - 1) while head <= s < tail, so push, done and advance are
 * O(1) (advance is O(popped)). Capacity doubles when full; the ring is
 * unrolled into the new array in order.
 */
#include "seqwin.h"

#include <stdlib.h>
#include <string.h>

typedef struct item {
        unsigned left; /* parts outstanding */
        void *pos;     /* malloc'd copy, or NULL */
        size_t len;
} item_t;

struct par_seqwin {
        item_t *ring;
        size_t cap;    /* power of two */
        uint64_t head; /* oldest seq in the window */
        uint64_t tail; /* next seq to assign */
        void *last;    /* position handed out by advance() */
        size_t last_len;
};

static item_t *slot(const par_seqwin_t *w, uint64_t seq)
{
        return &w->ring[(seq - 1) & (w->cap - 1)];
}

par_err_t par_seqwin_new(par_seqwin_t **out, par_error_t *err)
{
        par_seqwin_t *w = calloc(1, sizeof(*w));

        if (!w || !(w->ring = calloc(1024, sizeof(item_t)))) {
                free(w);
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        }
        w->cap = 1024;
        w->head = w->tail = 1;
        *out = w;
        return PAR_OK;
}

void par_seqwin_destroy(par_seqwin_t *w)
{
        if (!w)
                return;
        for (uint64_t s = w->head; s < w->tail; s++)
                free(slot(w, s)->pos);
        free(w->ring);
        free(w->last);
        free(w);
}

static par_err_t grow(par_seqwin_t *w, par_error_t *err)
{
        size_t n = w->tail - w->head, cap = w->cap * 2;
        item_t *r = calloc(cap, sizeof(*r));

        if (!r)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        /* Re-home each live item at its slot in the bigger ring. */
        for (uint64_t s = w->head; s < w->head + n; s++)
                r[(s - 1) & (cap - 1)] = *slot(w, s);
        free(w->ring);
        w->ring = r;
        w->cap = cap;
        return PAR_OK;
}

par_err_t par_seqwin_push(par_seqwin_t *w, const void *pos, size_t len,
                          unsigned parts, uint64_t *seq, par_error_t *err)
{
        item_t *it;
        void *copy = NULL;

        if (w->tail - w->head == w->cap && grow(w, err))
                return PAR_ERR_NOMEM;
        if (pos && len) {
                copy = malloc(len);
                if (!copy)
                        return par_error_set(err, PAR_ERR_NOMEM,
                                             "out of memory");
                memcpy(copy, pos, len);
        }
        it = slot(w, w->tail);
        it->left = parts;
        it->pos = copy;
        it->len = copy ? len : 0;
        *seq = w->tail++;
        return PAR_OK;
}

par_err_t par_seqwin_add_part(par_seqwin_t *w, uint64_t seq)
{
        if (seq < w->head || seq >= w->tail)
                return PAR_ERR_NOTFOUND;
        slot(w, seq)->left++;
        return PAR_OK;
}

par_err_t par_seqwin_done(par_seqwin_t *w, uint64_t seq)
{
        item_t *it;

        if (seq < w->head || seq >= w->tail)
                return PAR_ERR_NOTFOUND;
        it = slot(w, seq);
        if (!it->left)
                return PAR_ERR_NOTFOUND;
        it->left--;
        return PAR_OK;
}

size_t par_seqwin_advance(par_seqwin_t *w, const void **pos, size_t *len)
{
        size_t popped = 0;
        void *found = NULL;
        size_t found_len = 0;

        while (w->head < w->tail && slot(w, w->head)->left == 0) {
                item_t *it = slot(w, w->head);
                if (it->pos) {
                        free(found);
                        found = it->pos;
                        found_len = it->len;
                }
                it->pos = NULL;
                w->head++;
                popped++;
        }
        if (found) {
                free(w->last);
                w->last = found;
                w->last_len = found_len;
                *pos = w->last;
                *len = w->last_len;
        }
        return popped;
}

size_t par_seqwin_size(const par_seqwin_t *w)
{
        return (size_t)(w->tail - w->head);
}

uint64_t par_seqwin_oldest(const par_seqwin_t *w)
{
        return w->head < w->tail ? w->head : 0;
}
