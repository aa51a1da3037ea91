/*
 * holds.h — the claims a node holds, and the renewer thread that keeps
 * their leases alive (internal to consumer/).
 *
 * Owns: the list of held claims (with the resource lock taken for each),
 * lease renewal, giving claims back (a dropped job's, and every one at
 * shutdown), and the lifetime of the finisher (finisher.h), which writes
 * outcomes of claims held until then: it starts and stops with the
 * renewer. Stays out: taking claims and what an outcome says (pipeline.c).
 *
 * Threads: holds_add/remove/release_later from any thread (one mutex);
 * the renewer and the finisher are threads of their own; holds_give_back
 * after holds_stop.
 */
#ifndef PAR_CONSUMER_HOLDS_H
#define PAR_CONSUMER_HOLDS_H

#include <stdbool.h>
#include <stdint.h>

#include <mongoc/mongoc.h>

#include "base/err.h"
#include "finisher.h"

typedef struct holds holds_t;

/* Borrows mpool and the strings (copied). lease_ms: the lease a renewal
 * grants; renewed every lease_ms / 3. */
par_err_t holds_new(holds_t **out, mongoc_client_pool_t *mpool,
                    const char *database, const char *collection,
                    const char *node_id, int64_t lease_ms, par_error_t *err);
/* Accepts NULL. The renewer must be stopped. */
void holds_destroy(holds_t *h);

/* Adds a claim to the renewer's list; resource (may be NULL) is a resource
 * lock held by the same owner, renewed and released with it. waiting: the
 * claim is only kept while waiting for the resource lock (given back, its
 * attempt is uncounted). */
void holds_add(holds_t *h, const char *id, const char *owner,
               const char *resource, bool waiting);
void holds_remove(holds_t *h, const char *id, const char *owner);
/* Marks a held claim (and its resource lock) for release by the renewer
 * (job dropped). */
void holds_release_later(holds_t *h, const char *id, const char *owner);
/* True when the renewer found this held claim taken by someone else (its
 * lease lapsed): a claim made ahead must not be run on its strength. */
bool holds_lost(holds_t *h, const char *id, const char *owner);
/* True when the lease of this held claim has ended by our clock: no
 * renewal reached the store since (cut off from it, say), so another node
 * may have taken the signal over; a claim made ahead must not be run on its
 * strength either. */
bool holds_lapsed(holds_t *h, const char *id, const char *owner,
                  int64_t now_ms);

/* Starts / stops (joins) the renewer and the finisher; stopping writes the
 * outcomes the finisher has queued first, so their claims are not given
 * back. */
par_err_t holds_start(holds_t *h, par_error_t *err);
void holds_stop(holds_t *h);
/* The finisher (running between holds_start and holds_stop). */
fin_t *holds_finisher(holds_t *h);
/* After holds_stop: one last pass that gives back the claims marked for
 * release, or every claim held when all. */
void holds_give_back(holds_t *h, bool all);

#endif
