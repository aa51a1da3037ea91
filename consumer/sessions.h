/*
 * sessions.h — the consumer's glue between browser state scopes and the
 * session store: which scope a spin runs in, restoring a resource's saved
 * session into a context that is new on this node, and saving it after a
 * successful spin.
 *
 * The scope of a spin is the recipe's "stateScope", else
 * chrome.state_scope. Resource scope needs a resource of the signal's own:
 * a signal without one (its resource is its id) runs in spin scope, since
 * nothing could ever share its context.
 *
 * Snapshots are credentials: they go to MongoDB only (never to Kafka, never
 * to the log); failures are logged with the resource and the error only.
 *
 * Threads: a worker thread, with its own par_session_store_t (or NULL when
 * the node has no MongoDB: then resource contexts live in memory only).
 */
#ifndef PAR_CONSUMER_SESSIONS_H
#define PAR_CONSUMER_SESSIONS_H

#include "browser/chrome.h"
#include "browser/recipe.h"
#include "browser/spin.h"
#include "store/session.h"

/*
 * Acquires worker's tab for a spin of recipe r on the signal (id,
 * resource). In resource scope, a context new to this node gets the
 * resource's saved session first; a failed restore releases the tab as
 * broken and fails (transient: PAR_ERR_IO, _TIMEOUT, _CDP, _MONGO …).
 */
par_err_t par_sessions_acquire(par_chrome_t *chrome, par_session_store_t *st,
                               int worker, const par_recipe_t *r,
                               const char *id, const char *resource,
                               par_tab_t **out, par_error_t *err);

/*
 * Releases the tab after a spin whose result is sr. In resource scope,
 * after a successful spin, captures the context's session and saves it
 * (owner names the worker in the saved document); a failure to save is
 * logged and does not fail the spin.
 */
void par_sessions_release(par_chrome_t *chrome, par_session_store_t *st,
                          par_tab_t *tab, const par_spin_result_t *sr,
                          const char *owner);

#endif
