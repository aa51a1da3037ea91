/*
 * seqwin.h — an ordered completion window: the bookkeeping behind "commit a
 * position only after everything before it has completed".
 *
 * Items (change-stream events, in the producer) enter in order with push(),
 * each with an optional position (a resume token, as opaque bytes) and a
 * number of outstanding parts (Kafka messages still awaiting a successful
 * delivery report; 0 for an event that produced nothing). Parts complete in
 * any order (done()). advance() pops the longest prefix of fully completed
 * items and hands back the position of the last one that carried a
 * position: that is the position safe to checkpoint, because every earlier
 * item has completed. A failed part is simply not done() yet: the caller
 * retries it, and the window holds everything after it meanwhile.
 *
 * Sequence numbers start at 1 and are never reused by one window.
 *
 * Not thread-safe: one thread owns a window (the producer's main loop, where
 * librdkafka's delivery callbacks also run, from rd_kafka_poll).
 */
#ifndef PAR_SEQWIN_H
#define PAR_SEQWIN_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef struct par_seqwin par_seqwin_t;

par_err_t par_seqwin_new(par_seqwin_t **out, par_error_t *err);
/* Frees the window and the positions it holds. Accepts NULL. */
void par_seqwin_destroy(par_seqwin_t *w);

/*
 * Appends an item with `parts` outstanding parts and a copy of the position
 * (pos may be NULL/len 0 for an item without one). Writes its sequence
 * number to *seq. PAR_ERR_NOMEM on allocation failure.
 */
par_err_t par_seqwin_push(par_seqwin_t *w, const void *pos, size_t len,
                          unsigned parts, uint64_t *seq, par_error_t *err);

/* Adds one more outstanding part to an item still in the window. Returns
 * PAR_ERR_NOTFOUND if seq is not in the window. */
par_err_t par_seqwin_add_part(par_seqwin_t *w, uint64_t seq);

/* Marks one part of seq completed. PAR_ERR_NOTFOUND if seq is not in the
 * window or has no outstanding part (a duplicate report). */
par_err_t par_seqwin_done(par_seqwin_t *w, uint64_t seq);

/*
 * Pops the completed prefix. Returns the number of items popped. When any
 * popped item carried a position, *pos and *len are set to the last such one
 * (a buffer owned by the window, valid until the next call on it);
 * otherwise they are left untouched.
 */
size_t par_seqwin_advance(par_seqwin_t *w, const void **pos, size_t *len);

/* Items still in the window (pushed, not yet popped). */
size_t par_seqwin_size(const par_seqwin_t *w);
/* Sequence number of the oldest item in the window (0 when empty). */
uint64_t par_seqwin_oldest(const par_seqwin_t *w);

#endif
