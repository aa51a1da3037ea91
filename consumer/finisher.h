/*
 * finisher.h — writing signals' outcomes to their documents off the
 * workers, many per round trip (internal to consumer/).
 *
 * Owns: a queue of outcomes whose results Kafka has acknowledged, one
 * thread with its own MongoDB client that writes them with
 * par_claim_finish_batch (each fenced by its claim's owner), and handing
 * each outcome's verdict back to whoever queued it. Stays out: what an
 * outcome says and what follows it (pipeline.c), renewing the claims until
 * then (holds.c, which starts and stops the finisher with the renewer).
 *
 * Threads: fin_push from any thread (the kpoll thread, from delivery
 * reports); the items' callbacks run on the finisher's thread; fin_start and
 * fin_stop from the main thread.
 */
#ifndef PAR_CONSUMER_FINISHER_H
#define PAR_CONSUMER_FINISHER_H

#include <stdbool.h>

#include <mongoc/mongoc.h>

#include "base/err.h"
#include "store/claim.h"

typedef struct fin fin_t;

/* One outcome to write, embedded in its owner's record. */
typedef struct fin_item fin_item_t;
struct fin_item {
        fin_item_t *next;       /* the queue's */
        par_claim_finish_t out; /* what to write; borrowed until done runs */
        /*
         * Runs once per item pushed, on the finisher's thread, after the
         * write: rc PAR_OK (written), PAR_ERR_NOTFOUND (the owner no longer
         * held the claim: nothing written, the new holder's outcome
         * stands) or PAR_ERR_MONGO (given up: MongoDB stayed away while
         * the finisher stopped). c is the finisher's claim handle, for
         * follow-up calls on the same thread (a resource unlock).
         */
        void (*done)(fin_item_t *it, par_claim_t *c, par_err_t rc);
};

/* Borrows mpool; copies the strings. */
par_err_t fin_new(fin_t **out, mongoc_client_pool_t *mpool,
                  const char *database, const char *collection,
                  const char *node_id, par_error_t *err);
/* Accepts NULL. Must be stopped. */
void fin_destroy(fin_t *f);

par_err_t fin_start(fin_t *f, par_error_t *err);
/* Writes what is queued (retrying a few times while MongoDB is away), then
 * joins the thread; later pushes are refused. */
void fin_stop(fin_t *f);

/*
 * Takes one of limit places for an outcome about to be produced (its result
 * handed to the producer, its document written by the finisher); false when
 * all are taken or the finisher is not running: the caller then finishes
 * that signal itself. A place is given back with fin_unreserve. Bounding
 * these bounds what a crash leaves acknowledged but unwritten (signals that
 * run again) to what the workers' own waits left before, and keeps the
 * queue within what one write takes. Any thread.
 */
bool fin_reserve(fin_t *f, int limit);
void fin_unreserve(fin_t *f);

/* Queues it (taken until its done runs). False when the finisher is not
 * running (not started, or stopped): it->done will not run and the caller
 * decides. */
bool fin_push(fin_t *f, fin_item_t *it);

#endif
