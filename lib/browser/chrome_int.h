/*
 * chrome_int.h — the pool's internals, shared by chrome.c (browsers: launch,
 * connect, supervision, the pool's lifecycle) and stager.c (contexts and
 * the tabs in them). Private to lib/browser; part of the chrome module.
 *
 * Calls go one way: chrome.c calls the stager (the functions declared at
 * the end); stager.c calls nothing in chrome.c. Instance references live
 * in stager.c because every tab holds one; the supervisor only creates
 * instances and drops the slot's reference.
 *
 * Locking: chrome->mu guards what the comments mark "chrome->mu"; it is
 * never held across a CDP call, a sleep or a launch.
 */
#ifndef PAR_BROWSER_CHROME_INT_H
#define PAR_BROWSER_CHROME_INT_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "browser/cdp.h"
#include "browser/chrome.h"

/* The most a health round trip (ping, resource-context check) may take. */
#define HEALTH_TIMEOUT_MS 5000

struct inst {
        int refs;          /* chrome->mu */
        int in_use;        /* tabs acquired now; chrome->mu */
        int spins;         /* chrome->mu */
        bool dead;         /* chrome->mu */
        bool recycle;      /* chrome->mu */
        double recycle_at; /* chrome->mu: when recycle was set */
        par_cdp_t *cdp;
        pid_t pid; /* -1 in connect mode */
        /* below: supervisor thread only */
        bool reaped;
        bool stopping;          /* we are stopping it: exit is expected */
        char base[PATH_MAX];    /* temp dir: profile (unless persistent) +
                                   home; removed on retire; "" in connect */
        char profile[PATH_MAX]; /* --user-data-dir */
        char tmp[PATH_MAX];     /* Chromium's TMPDIR: <base>/tmp, or its own
                                   dir in /tmp when base is too long */
        bool tmp_inside;        /* tmp is inside base */
        char endpoint[280];     /* host:port */
        double started;
        double last_ping;  /* last browser-level round trip */
        int ping_failures; /* consecutive */
};

struct slot {
        int index;
        char endpoint[280]; /* connect mode */
        /* chrome->mu; inst is replaced only by the supervisor */
        struct inst *inst;    /* reference held */
        bool wanted;          /* has been used: keep a browser running */
        bool requested;       /* an acquirer waits for a (new) browser */
        uint64_t attempts;    /* launch attempts finished */
        par_error_t last_err; /* of the last failed attempt */
        par_tab_t *stock;     /* prepared contexts (chrome->mu) */
        int nstock;           /* chrome->mu */
        int stock_target;     /* ready_contexts x workers using this slot
                                 (floating: the pool's share, rounded up) */
        int workers;          /* workers using this slot (floating: the
                                 share of the pool's workers, rounded up) */
        uint64_t picked;      /* floating: pick number of its last acquire
                                 (chrome->mu) */
        int preparing;        /* stager: being made now (chrome->mu) */
        double stock_pause;   /* stager: no preparing before (chrome->mu) */
        /* supervisor thread only */
        int failures;    /* consecutive launch failures / early deaths */
        bool died;       /* the last instance died: next start = restart */
        double next_try; /* monotonic seconds */
};

struct rctx;

struct par_tab {
        par_chrome_t *chrome;
        struct inst *inst; /* reference held */
        int worker;        /* holder while acquired */
        bool acquired;
        par_state_scope_t scope;
        bool fresh;       /* resource scope: made for this acquire */
        struct rctx *res; /* resource scope: its entry (chrome->mu) */
        json_t *saved;    /* resource scope: last snapshot (owned) */
        par_tab_t *next;  /* in a stock or the disposal queue */
        char target_id[64];
        char session_id[64];
        char context_id[64];
};

/* A resource's context, in the LRU list (chrome->mu). */
struct rctx {
        char *key;
        par_tab_t *tab;
        bool busy;        /* acquired by a worker */
        bool doomed;      /* dropped while busy: dispose of at release */
        double last_used; /* monotonic seconds, at release */
        struct rctx *prev, *next;
};

struct par_chrome {
        par_chrome_opts_t o;
        int nworkers;
        par_tab_t **tabs; /* per worker: the tab it holds (chrome->mu) */
        int nslots;
        struct slot *slots;
        /* Context isolation: the slots are shared browsers and a worker's
         * clean context comes from any of them (the least busy with one
         * prepared); otherwise worker w always uses slot w % nslots. */
        bool floating;
        uint64_t picks;            /* floating acquires so far (chrome->mu) */
        par_tab_t *trash;          /* to dispose of (chrome->mu) */
        int ntrash;                /* chrome->mu */
        int disposing;             /* stager: being disposed of now */
        struct rctx *lru, *mru;    /* resource contexts (chrome->mu) */
        int nres;                  /* chrome->mu */
        pthread_cond_t stage_cond; /* stager: work to do */
        bool stage_stop;
        pthread_t stager;
        bool stager_started;

        pthread_mutex_t mu;
        pthread_cond_t cond;     /* acquirers: slot or in_use changed */
        pthread_cond_t sup_cond; /* supervisor: work to do */
        par_chrome_stats_t st;
        bool stop;

        pthread_t supervisor;
        bool supervisor_started;
};

/* ---- stager.c: instance references ------------------------------------ */

/* Destroys the instance's connection and frees it. Accepts NULL. */
void chrome_inst_free(struct inst *in);
/* Drops one reference (takes chrome->mu); frees on the last. */
void chrome_inst_unref(par_chrome_t *c, struct inst *in);
/* The slot worker uses (floating: the one it waits for when no browser
 * is live yet). */
struct slot *chrome_slot_of(par_chrome_t *c, int worker);

/* ---- stager.c: the stager thread -------------------------------------- */

/* Starts the thread that keeps prepared contexts in stock, disposes of
 * used ones and expires idle resource contexts. */
par_err_t chrome_stager_start(par_chrome_t *c, par_error_t *err);
/* Stops and joins it (a no-op when it never started). */
void chrome_stager_stop(par_chrome_t *c);
/* After chrome_stager_stop: disposes of every tab left (leaked by a worker,
 * resource contexts, stock, queued for disposal), while the browsers still
 * answer. */
void chrome_stager_drain(par_chrome_t *c);

#endif
