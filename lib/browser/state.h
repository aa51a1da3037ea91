/*
 * state.h — a resource's browser session as data: capture and restore.
 *
 * In state scope `resource` a resource's context keeps its session (a
 * login) between spins on one node. To let the session follow the resource
 * to another node (rebalance, crash), the consumer captures a snapshot
 * after each successful spin and stores it (store/session.h); a node that
 * gets a fresh context for the resource restores the snapshot first.
 *
 * A snapshot is a JSON object:
 *   {"v": 1,
 *    "cookies": [CDP Network.CookieParam, …],   every cookie of the context
 *    "origins": {"https://site": {"local": {k: v}, "session": {k: v}}, …}}
 * Cookies come from Storage.getCookies for the tab's browser context (all
 * origins, HttpOnly and session cookies included). localStorage and
 * sessionStorage can only be read from a page of their origin, so a capture
 * reads them from the tab's main frame as it is after the spin and keeps
 * the other origins' entries from the previous snapshot (the tab's saved
 * state). Not captured: IndexedDB, Cache Storage, service workers,
 * permissions, and storage of child frames of other origins.
 *
 * Restore sets the cookies (Storage.setCookies), then for each origin with
 * storage loads an empty document of that origin in the tab — served by
 * the browser itself through the Fetch domain, so the site sees no request —
 * writes the items from page JS, and goes back to about:blank.
 *
 * Snapshots hold credentials: callers never log them and never put them on
 * Kafka. Functions here log nothing about their content.
 *
 * Threads: the thread that holds the tab (between acquire and release).
 */
#ifndef PAR_STATE_H
#define PAR_STATE_H

#include <jansson.h>

#include "base/err.h"
#include "browser/chrome.h"

/* Captures the tab's context: *out is a new reference to the snapshot
 * (also kept as the tab's saved state). */
par_err_t par_state_capture(par_tab_t *t, json_t **out, par_error_t *err);

/* Restores snap (borrowed) into the tab's context, normally a fresh one
 * (par_tab_fresh). The tab's saved state becomes snap. timeout_ms bounds
 * each page load (<= 0: 10 s). */
par_err_t par_state_restore(par_tab_t *t, const json_t *snap, int timeout_ms,
                            par_error_t *err);

#endif
