/*
 * claim.h — claiming, leasing and finishing signals in MongoDB.
 *
 * Kafka may deliver a signal more than once (producer duplicates, a
 * redelivery after a crash or rebalance). The signal document is what makes
 * that harmless: before a spin a worker claims the document with one atomic
 * findAndModify
 *
 *   match  {_id, $or: [{status: "pending"},
 *                      {status: "claimed", lease_until < now}]}
 *   update {$set: {status: "claimed", claimed_by, claimed_at, lease_until},
 *           $inc: {attempt: 1}}
 *
 * so exactly one worker at a time holds a signal, and a signal whose worker
 * died is claimable again once its lease ends (with attempt + 1). Renewal
 * and finishing are conditional on `claimed_by` still being the caller, so a
 * worker that lost its lease can never overwrite someone else's outcome.
 * Claiming and finishing also come in batches (par_claim_acquire_batch,
 * par_claim_finish_batch): the same per-document conditions, many documents
 * per round trip.
 *
 * Resource locks. The scheduler keeps a resource exclusive within one node
 * and Kafka keys keep one priority's signals of a resource in one partition,
 * but signals of one resource at different priorities travel in different
 * topics and may run on different nodes. A resource lock makes the
 * exclusivity cluster-wide: a document per busy resource in
 * `<coll>_resources`,
 *
 *   {_id: resource, holder: worker id, signal: signal id, lease_until}
 *
 * taken with one findAndModify with upsert
 *
 *   match  {_id: resource, $or: [{holder: me}, {holder: prev_owner},
 *                                {lease_until < now}]}
 *   update {$set: {holder: me, signal, lease_until}}
 *
 * When another holder has a live lease the match fails and the upsert's
 * insert collides with the existing _id (duplicate key): the lock is held.
 * Two racing upserts on a free resource end the same way for the loser.
 * The lock is renewed with the signal's lease and deleted by its holder
 * once the outcome is recorded; a crashed holder's lock lapses with its
 * lease. Signals whose resource is their own id need no lock.
 *
 * Times are wall-clock milliseconds since the epoch, taken on the node:
 * lease expiry across nodes assumes clocks agree to well within a lease
 * (NTP), as any lease does.
 *
 * Threads: a par_claim_t holds one mongoc_client_t popped from a
 * mongoc_client_pool_t (clients are not thread-safe; pools are), so each
 * worker thread creates its own par_claim_t and uses it only on that thread.
 */
#ifndef PAR_CLAIM_H
#define PAR_CLAIM_H

#include <stdint.h>

#include <bson/bson.h>
#include <mongoc/mongoc.h>

#include "base/err.h"

typedef struct par_claim par_claim_t;

/* The longest owner (claimed_by) a claim takes, with its NUL. */
#define PAR_CLAIM_OWNER_MAX 256

typedef enum par_claim_outcome {
        PAR_CLAIM_OK = 0,   /* claimed by the caller: run it */
        PAR_CLAIM_EXPIRED,  /* claimed by the caller, but expires_at has
                               passed: finish it as "expired", don't run it */
        PAR_CLAIM_TERMINAL, /* already finished (status says how): skip */
        PAR_CLAIM_LEASED,   /* held by another worker with a live lease */
        PAR_CLAIM_NOTFOUND, /* no such document */
} par_claim_outcome_t;

typedef struct par_claim_info {
        par_claim_outcome_t outcome;
        int32_t attempt;     /* attempt count on the document after the call */
        int64_t claimed_at;  /* OK/EXPIRED: when we claimed it */
        int64_t lease_until; /* OK/EXPIRED: ours; LEASED: the holder's */
        int64_t expires_at;  /* the document's, 0 when none */
        char status[16];     /* the document's status after the call */
        char holder[PAR_CLAIM_OWNER_MAX]; /* LEASED: the holder's claimed_by */
} par_claim_info_t;

/* "ok", "expired", "terminal", "leased", "notfound". */
const char *par_claim_outcome_name(par_claim_outcome_t o);

/*
 * Pops a client from pool (borrowed; must outlive the claim) for the
 * calling thread. db and coll name the signals collection (resource locks
 * live in `<coll>_resources` of the same database); owner (copied, shorter
 * than PAR_CLAIM_OWNER_MAX) is the worker's id written to claimed_by, e.g.
 * "node-1/w3".
 */
par_err_t par_claim_new(par_claim_t **out, mongoc_client_pool_t *pool,
                        const char *db, const char *coll, const char *owner,
                        par_error_t *err);
/* Returns the client to its pool. Accepts NULL. */
void par_claim_destroy(par_claim_t *c);

/* Makes owner (copied) the claim's owner for the calls that follow: a
 * signal claimed in a batch by one worker runs on whichever worker takes it
 * next, under the owner that claimed it. PAR_ERR_INVALID (owner too long)
 * leaves the owner as it was. */
par_err_t par_claim_set_owner(par_claim_t *c, const char *owner,
                              par_error_t *err);

/*
 * Tries to claim signal id (24 hex characters of an ObjectId, or a string
 * _id) for lease_ms from now_ms. prev_owner (may be NULL) also allows taking
 * over a live claim held by that owner: a local retry reclaims from the
 * worker that ran the failed attempt without the document passing through
 * "pending" (which a change stream would publish again). Fills *info on
 * success (PAR_OK) for every outcome; returns PAR_ERR_MONGO when the
 * database could not be asked.
 */
par_err_t par_claim_acquire(par_claim_t *c, const char *id,
                            const char *prev_owner, int64_t now_ms,
                            int64_t lease_ms, par_claim_info_t *info,
                            par_error_t *err);

/* The most ids one batch call takes (a filter of this many ids stays far
 * below MongoDB's 16 MB command limit). */
#define PAR_CLAIM_BATCH_MAX 256

/*
 * Claims the n signals ids[0..n-1] (borrowed, distinct; n <=
 * PAR_CLAIM_BATCH_MAX) at once: infos[i] gets what par_claim_acquire(c,
 * ids[i], NULL, …) would have said of id i (OK or EXPIRED: claimed by this
 * claim's owner with attempt + 1; TERMINAL, LEASED, NOTFOUND).
 *
 * A fixed number of round trips whatever n: one unordered multi-document
 * update whose filter is the single claim's ({_id: {$in: ids}} and the same
 * $or), which also sets `claim_token`, unique to this call; then one read of
 * every id. A document carrying the token was claimed by this call (each
 * document's update is atomic, so of two callers racing for an id exactly
 * one matches it, and a lapsed lease is taken over, attempt + 1, once); the
 * others say why not. Ids found claimable by the read (released or lapsed
 * between the two) get the two round trips again, twice at most, then count
 * as leased, as in par_claim_acquire. An id repeated in ids is claimed once
 * and reported leased (by this owner) at its later places.
 *
 * PAR_ERR_MONGO when the database could not be asked; some ids may then be
 * claimed by this owner without the caller knowing (their leases lapse).
 */
par_err_t par_claim_acquire_batch(par_claim_t *c, const char *const *ids,
                                  size_t n, int64_t now_ms, int64_t lease_ms,
                                  par_claim_info_t *infos, par_error_t *err);

/*
 * Extends a lease held by owner (NULL = this claim's owner) to now_ms +
 * lease_ms. PAR_ERR_NOTFOUND when owner no longer holds it.
 */
par_err_t par_claim_renew(par_claim_t *c, const char *id, const char *owner,
                          int64_t now_ms, int64_t lease_ms, par_error_t *err);

/*
 * Extends the leases of the n signals ids[0..n-1] (borrowed, distinct; n <=
 * PAR_CLAIM_BATCH_MAX) held by owner (NULL = this claim's owner) to now_ms +
 * lease_ms, as n par_claim_renew calls would, in one multi-document update
 * (and one read only when some were not held). lost[i] is set when owner
 * no longer holds ids[i] (nothing changed for it), cleared otherwise.
 * PAR_ERR_MONGO when the database could not be asked (lost undefined).
 */
par_err_t par_claim_renew_batch(par_claim_t *c, const char *const *ids,
                                size_t n, const char *owner, int64_t now_ms,
                                int64_t lease_ms, bool *lost, par_error_t *err);

/*
 * Records the outcome of a held claim: status ("done", "failed", "dead",
 * "expired"), result (borrowed, may be NULL) stored as `result`, error
 * (may be NULL) stored as `error` (null when NULL), finished_at = now_ms;
 * the lease is removed. PAR_ERR_NOTFOUND when this claim's owner no longer
 * holds the signal (its lease expired and someone else took it).
 */
par_err_t par_claim_finish(par_claim_t *c, const char *id, const char *status,
                           const bson_t *result, const char *error,
                           int64_t now_ms, par_error_t *err);

/* One outcome for par_claim_finish_batch: as par_claim_finish's arguments,
 * plus the owner whose claim it ends (NULL: this claim's owner). All
 * borrowed. */
typedef struct par_claim_finish {
        const char *id;
        const char *owner;
        const char *status;
        const bson_t *result;
        const char *error;
} par_claim_finish_t;

/*
 * Records n outcomes (n <= PAR_CLAIM_BATCH_MAX) at once, each exactly as
 * par_claim_finish and fenced like it: conditional on its document still
 * being claimed by its owner. rcs[i] gets PAR_OK or PAR_ERR_NOTFOUND (the
 * owner no longer held it: nothing written) for outs[i].
 *
 * One unordered bulk of n conditional updates; only when fewer than n
 * matched, one read of the ids tells which: a document the call finished
 * has its status, its owner and finished_at = now_ms. PAR_ERR_MONGO when
 * the database could not be asked (rcs undefined, some outcomes may be
 * written): calling again with the same now_ms is safe, the outcomes
 * already written are then reported PAR_OK.
 */
par_err_t par_claim_finish_batch(par_claim_t *c, const par_claim_finish_t *outs,
                                 size_t n, int64_t now_ms, par_err_t *rcs,
                                 par_error_t *err);

/*
 * Gives a held claim back (status "pending", lease removed, attempt kept)
 * so the signal can be claimed again, e.g. for a retry after a transient
 * failure; error (may be NULL) is stored as `error`. uncount takes back the
 * attempt the claim counted (attempt - 1), for a claim whose holder never
 * ran the signal (it only waited for a resource lock). PAR_ERR_NOTFOUND
 * when not held by this claim's owner.
 */
par_err_t par_claim_release(par_claim_t *c, const char *id, const char *error,
                            bool uncount, par_error_t *err);

/*
 * Moves a live claim held by prev_owner to this claim's owner and renews its
 * lease, without counting an attempt: for a delivery that kept its claim
 * while it waited (for a resource lock), which is not a failed attempt.
 * PAR_ERR_NOTFOUND when prev_owner no longer holds it.
 */
par_err_t par_claim_transfer(par_claim_t *c, const char *id,
                             const char *prev_owner, int64_t now_ms,
                             int64_t lease_ms, par_error_t *err);

/*
 * Tries to lock resource for signal id (both borrowed) for lease_ms from
 * now_ms, in `<coll>_resources`. Succeeds when the resource is free, its
 * lease lapsed, or it is held by this claim's owner or by prev_owner (may be
 * NULL: a local retry takes the lock over from the worker that ran the
 * failed attempt). Fills *info on PAR_OK: outcome PAR_CLAIM_OK (locked:
 * lease_until is ours) or PAR_CLAIM_LEASED (holder and lease_until are the
 * holder's; lease_until 0 when it could not be read). PAR_ERR_MONGO when
 * the database could not be asked.
 */
par_err_t par_claim_lock(par_claim_t *c, const char *resource, const char *id,
                         const char *prev_owner, int64_t now_ms,
                         int64_t lease_ms, par_claim_info_t *info,
                         par_error_t *err);

/* Extends the lock of resource held by owner (NULL = this claim's owner)
 * for signal id. PAR_ERR_NOTFOUND when they no longer hold it. */
par_err_t par_claim_lock_renew(par_claim_t *c, const char *resource,
                               const char *id, const char *owner,
                               int64_t now_ms, int64_t lease_ms,
                               par_error_t *err);

/* Deletes the lock of resource if owner (NULL = this claim's owner) holds it
 * for signal id. PAR_ERR_NOTFOUND when they don't (nothing changed). */
par_err_t par_claim_unlock(par_claim_t *c, const char *resource, const char *id,
                           const char *owner, par_error_t *err);

#endif
