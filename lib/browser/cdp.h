/*
 * cdp.h — a Chrome DevTools Protocol client over one WebSocket.
 *
 * One par_cdp_t is one WebSocket to one browser endpoint
 * (ws://host:port/devtools/browser/<id>), with its own libwebsockets context
 * and its own I/O thread. Many targets share the socket as *flattened
 * sessions* (Target.attachToTarget {flatten: true}): a message for a page
 * carries that page's "sessionId"; a message without one is for the browser.
 *
 * Threads:
 *   - par_cdp_call() blocks the calling thread; any number of threads may
 *     call concurrently on one par_cdp_t. Replies are matched by id.
 *   - Event callbacks (par_cdp_subscribe) run on the I/O thread. They must
 *     not block and must not call par_cdp_call(), par_cdp_subscribe() or
 *     par_cdp_unsubscribe() (they would deadlock or stall every session).
 *     Worker threads that want to wait for an event use a par_cdp_waiter_t.
 *   - par_cdp_destroy() must not race with calls on the same object: the
 *     owner stops its users first (or holds a reference count, see chrome.c).
 *
 * Failure model (what a caller sees):
 *   PAR_ERR_TIMEOUT       no reply within timeout_ms. The pending slot is
 *                         removed (no leak); a late reply is dropped.
 *   PAR_ERR_DISCONNECTED  the socket closed (every pending call and waiter
 *                         fails at once), or the call's session was
 *                         detached or its target crashed (every pending call
 *                         and waiter of that session fails at once, and new
 *                         calls on it fail immediately).
 *   PAR_ERR_CDP           the browser answered with a protocol error;
 *                         err->msg holds "<method>: <message> (code <n>)".
 *   PAR_ERR_INVALID       bad arguments, or params that are not an object.
 *
 * Session death is learnt from Target.detachedFromTarget (sessionId),
 * Target.targetCrashed (targetId, mapped to sessions seen in
 * Target.attachedToTarget or attachToTarget replies), Inspector.detached and
 * Inspector.targetCrashed (which arrive on the session itself).
 */
#ifndef PAR_CDP_H
#define PAR_CDP_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "base/err.h"

typedef struct par_cdp par_cdp_t;
typedef struct par_cdp_waiter par_cdp_waiter_t;

/*
 * GET http://<host_port>/json/version and copy its webSocketDebuggerUrl into
 * ws_url (size n). host_port is "127.0.0.1:9222" or "http://127.0.0.1:9222"
 * (a trailing "/" is allowed). Also the cheapest health check of an
 * endpoint. Any thread; no shared state.
 */
par_err_t par_cdp_fetch_version(const char *host_port, char *ws_url, size_t n,
                                int timeout_ms, par_error_t *err);

/*
 * Opens a WebSocket to ws_url ("ws://host:port/path") and starts its I/O
 * thread. Returns once the handshake completed (or failed, or timeout_ms
 * passed). *out is written only on success. Any thread.
 */
par_err_t par_cdp_connect(par_cdp_t **out, const char *ws_url, int timeout_ms,
                          par_error_t *err);

/*
 * Closes the socket, fails every pending call and waiter with
 * PAR_ERR_DISCONNECTED ("connection closed by client"), joins the I/O thread
 * and frees everything. Waiters still alive must be destroyed *before*
 * (they hold a pointer to c). Accepts NULL. Not concurrent with other calls
 * on c (see the thread notes above).
 */
void par_cdp_destroy(par_cdp_t *c);

/* false once the socket is closed (by either side). Any thread. */
bool par_cdp_connected(par_cdp_t *c);

/*
 * Sends {id, method, params, sessionId} and waits for the reply.
 *   session_id  NULL or "" = the browser target; else a flattened session.
 *   params      borrowed; may be NULL (sent as {}).
 *   timeout_ms  <= 0 means 30 s.
 *   result      on success *result is a new reference to the reply's
 *               "result" object (caller json_decref's it); may be NULL.
 * Any thread, concurrently. Errors: see the failure model above.
 */
par_err_t par_cdp_call(par_cdp_t *c, const char *session_id, const char *method,
                       json_t *params, int timeout_ms, json_t **result,
                       par_error_t *err);

/* Like par_cdp_call but takes the reference of params (may be NULL), so
 * `par_cdp_call_take(c, s, "Page.navigate", json_pack(…), …)`
 * does not leak. */
par_err_t par_cdp_call_take(par_cdp_t *c, const char *session_id,
                            const char *method, json_t *params, int timeout_ms,
                            json_t **result, par_error_t *err);

/* Calls waiting for a reply right now (for tests and metrics). */
size_t par_cdp_pending_count(par_cdp_t *c);

/* true if the session was detached or its target crashed (see above). */
bool par_cdp_session_dead(par_cdp_t *c, const char *session_id);

/* Forgets what c remembers about a session (its dead flag, its target id).
 * Call after closing a target for good. Any thread. */
void par_cdp_session_forget(par_cdp_t *c, const char *session_id);

/*
 * Event callback, run on the I/O thread (see the rules above).
 *   session_id  NULL for browser-level events.
 *   params      borrowed, read-only, for the duration of the call
 *               (json_incref to keep; never modify: waiters share it).
 */
typedef void (*par_cdp_event_cb)(const char *session_id, const char *method,
                                 json_t *params, void *opaque);

/*
 * Calls cb for every event whose method equals `method` (NULL = any method)
 * and whose session equals `session_id` (NULL = any session, "" = browser
 * level only). Returns an id for par_cdp_unsubscribe (> 0). Any thread
 * except the I/O thread.
 */
par_err_t par_cdp_subscribe(par_cdp_t *c, const char *session_id,
                            const char *method, par_cdp_event_cb cb,
                            void *opaque, int *id_out, par_error_t *err);

/* After it returns, cb is not running and will not be called again. Any
 * thread except the I/O thread. Unknown ids are ignored. */
void par_cdp_unsubscribe(par_cdp_t *c, int id);

/*
 * A waiter queues, from the moment it is created, every event of the given
 * methods for one session, so a worker can create it *before* issuing the
 * command that causes the event (no race). It also learns when that session
 * dies or the socket closes.
 *   session_id  NULL/"" = browser level; otherwise copied.
 *   methods     NULL-terminated array, copied; NULL = every method.
 * Owned by the creating thread (one consumer thread at a time).
 * Destroy it before destroying c.
 */
par_err_t par_cdp_waiter_new(par_cdp_waiter_t **out, par_cdp_t *c,
                             const char *session_id, const char *const *methods,
                             par_error_t *err);

/*
 * Waits for the next queued event (FIFO).
 *   event  on success a new reference to {"method": "…", "params": {…}}
 *          (caller json_decref's it); may be NULL to just consume.
 * Events queued before the session died are still returned; after them it
 * returns PAR_ERR_DISCONNECTED. PAR_ERR_TIMEOUT if nothing arrived in
 * timeout_ms (<= 0: do not wait, just poll).
 */
par_err_t par_cdp_waiter_wait(par_cdp_waiter_t *w, int timeout_ms,
                              json_t **event, par_error_t *err);

/* Waits until an event named `method` arrives, discarding other queued
 * events; *params (may be NULL) gets a new reference to its params. */
par_err_t par_cdp_waiter_wait_for(par_cdp_waiter_t *w, const char *method,
                                  int timeout_ms, json_t **params,
                                  par_error_t *err);

/* Number of events currently queued. */
size_t par_cdp_waiter_pending(par_cdp_waiter_t *w);

/* Unregisters and frees (queued events are dropped). Accepts NULL. */
void par_cdp_waiter_destroy(par_cdp_waiter_t *w);

/* Parses one CDP message (len bytes of JSON text). A message jansson
 * refuses only because of lone UTF-16 surrogate escapes or invalid UTF-8
 * (JavaScript strings may hold them) is parsed again with those replaced
 * by U+FFFD and '?'. New reference, or NULL with jerr set. Any thread;
 * used by the I/O thread on every message, and by the fuzz harness. */
json_t *par_cdp_parse_message(const char *buf, size_t len, json_error_t *jerr);

#endif
