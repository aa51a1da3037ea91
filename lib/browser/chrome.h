/*
 * chrome.h — Chrome supervision and the tabs workers drive.
 *
 * A par_chrome_t is a node's pool of browsers:
 *   - mode launch: it starts /usr/bin/chromium (each in its own process
 *     group, with a fresh temp profile and a temp HOME), waits for its
 *     /json/version, connects a par_cdp_t; it detects death (waitpid, socket
 *     drop, a periodic Browser.getVersion ping for hangs), kills by process
 *     group (TERM, then KILL after a grace), reaps, removes temp dirs, and
 *     relaunches with backoff. It recycles a browser after `recycle_after`
 *     spins. Browsers get PR_SET_PDEATHSIG: if the node process dies
 *     without cleaning up, its browsers die too (no orphans).
 *   - mode connect: it uses remote endpoints ("http://host:port") as they
 *     are, with the same health checks; "restart" means reconnect.
 *   - isolation context: chrome.browsers shared browsers (connect mode:
 *     one per endpoint) and a browser context per spin
 *     (Target.createBrowserContext). A worker is not tied to one of them:
 *     a clean context comes from the least busy browser that has one
 *     prepared, so while one browser runs a spin the others prepare and
 *     dispose of contexts on their own UI threads (a browser's context
 *     work runs mostly on its single UI thread, where it would delay the
 *     spin's calls).
 *     isolation browser: one Chrome process and profile per worker (in
 *     connect mode: worker i uses endpoint i % n, with a browser context).
 *
 * A par_tab_t is one page target + its flattened CDP session on its
 * browser's connection, always in a browser context of its own
 * (Target.createBrowserContext; in browser isolation too), bound to the
 * worker that acquired it. What a tab carries from one spin to the next is
 * the *state scope* (chrome.state_scope, or the recipe's "stateScope"):
 *   - spin (default): every acquire returns a context no earlier spin used
 *     (no cookies, local/session storage, IndexedDB, cache, service
 *     workers, permissions or pages from before); the release disposes of
 *     it. A background thread (the stager) keeps chrome.ready_contexts
 *     prepared contexts per worker (spread over the shared browsers, or
 *     in each worker's own browser) (context + an
 *     about:blank target, attached, Page/Runtime enabled) and disposes of
 *     used ones, so on a warm node an acquire waits for no set-up. Work
 *     nobody waits for yet (stock beyond one per worker, disposals) waits
 *     until no tab of that browser is acquired, so it does not compete
 *     with a running spin. When the stock is empty an acquire waits for
 *     the context being prepared, or prepares one itself (a miss).
 *   - resource: acquires for the same resource key get the same context
 *     and tab back (health-checked with a Runtime.evaluate round trip), so
 *     a login survives between that resource's spins. A bounded LRU
 *     (chrome.resource_contexts) with idle expiry (chrome.resource_idle)
 *     holds them; a new entry starts from a prepared clean context and is
 *     marked fresh (par_tab_fresh) so the caller can restore a saved
 *     session into it first (see browser/state.h). A resource context lives
 *     in the browser where it was made, whichever worker asks for it.
 * A broken release (crash, disconnect, timeout) disposes of the tab and its
 * context in either scope. A browser that dies or is recycled takes its
 * prepared and resource contexts with it.
 *
 * Threads: par_chrome_tab_acquire/release and par_tab_* may be called from
 * any worker thread; one worker index must be used by one thread at a time
 * and holds at most one tab. A tab must be released before par_chrome_destroy.
 * The par_cdp_t behind a tab stays valid until the tab is released, even if
 * the browser dies meanwhile (calls then fail with PAR_ERR_DISCONNECTED).
 */
#ifndef PAR_CHROME_H
#define PAR_CHROME_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "browser/cdp.h"
#include "base/config.h"
#include "base/err.h"

typedef struct par_chrome par_chrome_t;
typedef struct par_tab par_tab_t;

typedef enum par_chrome_mode {
        PAR_CHROME_LAUNCH = 0,
        PAR_CHROME_CONNECT,
} par_chrome_mode_t;

typedef enum par_chrome_isolation {
        PAR_CHROME_ISO_CONTEXT = 0,
        PAR_CHROME_ISO_BROWSER,
} par_chrome_isolation_t;

/* What a tab carries between spins (see above). */
typedef enum par_state_scope {
        PAR_STATE_DEFAULT = 0, /* acquire: chrome.state_scope */
        PAR_STATE_SPIN,
        PAR_STATE_RESOURCE,
} par_state_scope_t;

/* "spin", "resource" ("default" for PAR_STATE_DEFAULT). */
const char *par_state_scope_name(par_state_scope_t s);

/* Plain settings; strings are copied in (fixed buffers, no ownership). */
typedef struct par_chrome_opts {
        par_chrome_mode_t mode;           /* chrome.mode (launch) */
        char path[512];                   /* chrome.path (/usr/bin/chromium) */
        char endpoints[1024];             /* chrome.endpoints: comma list */
        par_chrome_isolation_t isolation; /* chrome.isolation (context) */
        int recycle_after;     /* chrome.recycle_after: spins; 0 = never */
        char profile_dir[512]; /* chrome.profile_dir: "" = fresh temp dir */
        bool headless;         /* chrome.headless (true) */
        char extra_args[1024]; /* chrome.extra_args: space separated */
        int start_timeout_ms;  /* chrome.start_timeout (20 s) */
        int call_timeout_ms;   /* chrome.call_timeout (30 s) */
        int kill_grace_ms;     /* SIGTERM → SIGKILL grace (2 s) */
        int backoff_min_ms;    /* first relaunch delay after a failure (250) */
        int backoff_max_ms;    /* cap of the doubling delay (10 s) */
        char tmp_dir[512];     /* parent of temp dirs ("" = $TMPDIR or /tmp) */
        int ping_interval_ms;  /* browser round trip by the supervisor (5 s;
                                  2 misses in a row = hung; 0 = off) */
        par_state_scope_t scope; /* chrome.state_scope (spin) */
        int browsers;          /* chrome.browsers: shared browsers, launch mode
                                  with context isolation (2) */
        int ready_contexts;    /* chrome.ready_contexts: per worker (2) */
        int resource_contexts; /* chrome.resource_contexts: LRU bound (32) */
        int resource_idle_ms;  /* chrome.resource_idle (10 min) */
} par_chrome_opts_t;

/* Fills o with the defaults listed above. */
void par_chrome_opts_default(par_chrome_opts_t *o);

/* Defaults, then the chrome.* keys of cfg. Errors name the key. */
par_err_t par_chrome_opts_from_config(par_chrome_opts_t *o,
                                      const par_config_t *cfg,
                                      par_error_t *err);

/*
 * Builds a pool for `workers` worker indexes (0..workers-1). Nothing is
 * launched or connected yet except in connect mode, where each endpoint's
 * /json/version is checked (so a wrong address fails here). opts is copied.
 */
par_err_t par_chrome_new(par_chrome_t **out, const par_chrome_opts_t *opts,
                         int workers, par_error_t *err);

/*
 * Closes every tab and context, disconnects, and in launch mode kills every
 * browser's process group, reaps it and removes its temp dirs. Accepts NULL.
 * All tabs must have been released.
 */
void par_chrome_destroy(par_chrome_t *c);

/*
 * Gives worker `worker` a tab, ready for a spin, in state scope `scope`
 * (PAR_STATE_DEFAULT: chrome.state_scope). `resource` names the resource
 * in resource scope (borrowed; NULL or "" = spin scope). Takes a prepared
 * context when one is in stock, else makes one; when the worker's browser
 * is missing, dead or due for recycling it asks the supervisor thread for a
 * new one and waits (a launch takes ~0.5-2 s; after failures the backoff
 * applies). In resource scope a resource whose tab another worker holds is
 * waited for (chrome.call_timeout at most). Counts one spin on the tab's
 * browser. *out is written only on success.
 * Errors: failures worth retrying later come back as PAR_ERR_IO,
 * PAR_ERR_TIMEOUT, PAR_ERR_DISCONNECTED or PAR_ERR_CDP (the last launch
 * attempt's error when a launch failed); PAR_ERR_INVALID for a bad index or
 * a worker that already holds a tab; PAR_ERR_CANCELLED during destroy.
 */
par_err_t par_chrome_tab_acquire_scoped(par_chrome_t *c, int worker,
                                        par_state_scope_t scope,
                                        const char *resource, par_tab_t **out,
                                        par_error_t *err);

/* par_chrome_tab_acquire_scoped(c, worker, PAR_STATE_DEFAULT, NULL, …). */
par_err_t par_chrome_tab_acquire(par_chrome_t *c, int worker, par_tab_t **out,
                                 par_error_t *err);

/*
 * Hands the tab back. Spin scope: its context is disposed of (in the
 * background). Resource scope: it stays with its resource. broken = the
 * spin saw a crash, disconnect, timeout or anything that leaves the page
 * in an unknown state: the context is disposed of in either scope. If the
 * browser reached recycle_after spins it is recycled once no tab of it is
 * in use. Accepts NULL tab.
 */
void par_chrome_tab_release(par_chrome_t *c, par_tab_t *tab, bool broken);

/* Forgets the in-memory context of `resource` on this pool (disposed of in
 * the background; a holder keeps its tab until it releases it). Any
 * thread. Returns true if there was one. */
bool par_chrome_resource_drop(par_chrome_t *c, const char *resource);

/* True when every browser in use has its full stock of prepared contexts
 * and nothing waits for disposal: a warm pool. Any thread. */
bool par_chrome_stocked(par_chrome_t *c);

/* Accessors, valid while the tab is acquired. */
par_cdp_t *par_tab_cdp(par_tab_t *t);
const char *par_tab_session_id(par_tab_t *t);
const char *par_tab_target_id(par_tab_t *t);
const char *par_tab_context_id(par_tab_t *t);
par_state_scope_t par_tab_scope(par_tab_t *t); /* SPIN or RESOURCE */
/* Resource scope: the context was made for this acquire (the resource had
 * none in memory here): restore its saved session before the spin. */
bool par_tab_fresh(par_tab_t *t);
/* Resource scope: the resource's key ("" in spin scope). */
const char *par_tab_resource(par_tab_t *t);
/* The session snapshot last saved from or restored into this tab's
 * resource context (borrowed; NULL if none); browser/state.c merges new
 * captures into it. set takes a reference (NULL clears). */
json_t *par_tab_saved_state(par_tab_t *t);
void par_tab_set_saved_state(par_tab_t *t, json_t *state);
int par_tab_worker(par_tab_t *t);
pid_t par_tab_browser_pid(par_tab_t *t); /* -1 in connect mode */

/* par_cdp_call on the tab's session; timeout_ms <= 0 = chrome.call_timeout.
 * params borrowed; *result a new reference (may be NULL). */
par_err_t par_tab_call(par_tab_t *t, const char *method, json_t *params,
                       int timeout_ms, json_t **result, par_error_t *err);

/* A waiter on the tab's session (see par_cdp_waiter_new). */
par_err_t par_tab_waiter_new(par_tab_t *t, const char *const *methods,
                             par_cdp_waiter_t **out, par_error_t *err);

/* Counters for metrics. Any thread. */
typedef struct par_chrome_stats {
        uint64_t launches;        /* browser processes started / connects */
        uint64_t restarts;        /* relaunches after a death or failure */
        uint64_t crashes;         /* browsers that died or stopped answering */
        uint64_t recycles;        /* relaunches because recycle_after hit */
        uint64_t tabs_created;    /* targets created */
        uint64_t tabs_replaced;   /* tabs dropped as broken or unhealthy */
        uint64_t spins;           /* acquires that returned a tab */
        uint64_t contexts_ready;  /* acquires served from the stock */
        uint64_t contexts_missed; /* acquires that made their context */
        uint64_t contexts_waited; /* of contexts_ready: acquires that found
                                     the stock empty and waited for the
                                     context being prepared */
        uint64_t contexts_disposed; /* contexts disposed of */
        uint64_t resource_hits;     /* resource acquires that found theirs */
        uint64_t resource_misses;   /* resource acquires that made one */
        uint64_t resource_evicted;  /* dropped for the bound or idleness */
        int browsers_alive;         /* browsers currently connected */
        int contexts_preparing;     /* being prepared by the stager now */
        int tabs_open; /* targets open now: held, prepared, kept for a
                          resource, or waiting to be disposed of */
} par_chrome_stats_t;

void par_chrome_stats(par_chrome_t *c, par_chrome_stats_t *out);

/* The process group of the browser that serves worker (launch mode; -1 if
 * none is running): with shared browsers, the one whose tab it holds, or
 * between spins the one it would wait for. For tests and for /status. */
pid_t par_chrome_browser_pgid(par_chrome_t *c, int worker);

/* Writes the process groups of the pool's running browsers (launch mode)
 * to out[0..max) and returns how many: to account for or kill them all.
 * Any thread. */
int par_chrome_browser_pgids(par_chrome_t *c, pid_t *out, int max);

#endif
