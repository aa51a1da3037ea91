/*
 * spin_int.h — a spin's internals, shared by spin.c (the steps and the run),
 * selector.c (where a step acts: selectors, frames, targets) and page.c (the
 * conversation with the page: calls, events, failures). Private to
 * lib/browser; part of the spin module.
 *
 * Calls go one way: spin.c → selector.c → page.c (and spin.c → page.c);
 * neither selector.c nor page.c calls back up. Everything here runs on the
 * spin's calling thread.
 */
#ifndef PAR_BROWSER_SPIN_INT_H
#define PAR_BROWSER_SPIN_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "browser/cdp.h"
#include "browser/chrome.h"
#include "browser/recipe.h"
#include "browser/spin.h"

typedef struct spin {
        par_tab_t *tab;
        const par_recipe_t *r;
        const json_t *params;
        par_spin_opts_t opts;
        par_spin_result_t *res;
        par_cdp_waiter_t *w;
        int64_t spin_deadline; /* INT64_MAX when none */
        int step;
        /* navigation state of the main frame, from events */
        char frame[64];    /* main frame id (= target id for pages) */
        char loader[64];   /* loaderId of the current document */
        bool loaded;       /* its "load" lifecycle event fired */
        unsigned navs;     /* documents committed */
        unsigned same_doc; /* same-document navigations */
        char *url;         /* current main-frame url */
        char *page_error;  /* first uncaught exception, if any */
        int modifiers;     /* held keys, CDP modifier bits */
        /* Where the current step runs (resolve_target): */
        char sess[64];    /* session of its page or OOPIF; "" = the tab's */
        char in_sess[64]; /* session Input.* goes to; "" = the tab's */
        char oopif[64];   /* target id of its out-of-process iframe, or "" */
        json_t *fr;       /* child-frame path for the page helper */
        int aria_gen;     /* current aria/ registration (aria_register) */
        /* targets attached during the spin: detached (popups closed) at
         * its end */
        struct {
                char target[64], session[64];
                bool page;
        } att[8];
        size_t natt;
} spin_t;

/* ---- page.c ------------------------------------------------------------ */

/* Records the failure (the first one wins) and returns its par_err_t:
 * PAR_ERR_TRANSIENT or PAR_ERR_PERMANENT. */
par_err_t __attribute__((format(printf, 5, 6)))
spin_fail(spin_t *s, par_spin_class_t cls, par_err_t code, bool broken,
          const char *fmt, ...);
/* Records a failed CDP call: protocol errors permanent; timeouts,
 * disconnects and crashes transient, the tab suspect. */
par_err_t spin_cdp_fail(spin_t *s, par_err_t rc, const par_error_t *e);
/* Handles queued events; with deadline > now, waits for at least one
 * (PAR_ERR_TIMEOUT: nothing arrived in time). */
par_err_t spin_pump(spin_t *s, int64_t deadline, par_error_t *e);
/* Handles the events queued so far. */
par_err_t spin_drain(spin_t *s);
/* The step's deadline (monotonic ms), never past the spin's. */
int64_t spin_step_deadline(spin_t *s, const par_step_t *st);
/* A wait ran out: transient if the whole spin's deadline caused it. */
par_err_t spin_timed_out(spin_t *s, int64_t deadline, bool transient,
                         const char *what);
/* Waits until the main frame committed a document after `navs` (or the
 * given loader) and fired its load event, or navigated within the page. */
par_err_t spin_wait_navigation(spin_t *s, unsigned navs, unsigned same_doc,
                               const char *loader, int64_t deadline,
                               int timeout_ms);
/* A CDP call on session sess ("" or NULL: the tab's); params borrowed. */
par_err_t spin_tcall(spin_t *s, const char *sess, const char *method,
                     json_t *params, int timeout_ms, json_t **result,
                     par_error_t *e);
/* A CDP call on the step's input session; takes params; failures
 * recorded. */
par_err_t spin_call(spin_t *s, const char *method, json_t *params,
                    int64_t deadline, json_t **result);
/* par_recipe_subst with the spin's params; failures recorded. */
par_err_t spin_subst(spin_t *s, const char *tmpl, par_subst_mode_t mode,
                     const char *field, char **out);
/* Runtime.evaluate in the step's session, retried while navigations
 * destroy the context; *value: new reference to the RemoteObject. */
par_err_t spin_evaluate(spin_t *s, const char *expr, int64_t deadline,
                        json_t **value);

/* ---- selector.c -------------------------------------------------------- */

/* Runs the page-side helper for step st with args (taken): resolves the
 * step's selectors (registering aria/ ones first) and waits in the page
 * until the element is ready or the deadline passes. */
par_err_t selector_helper(spin_t *s, const par_step_t *st, json_t *args,
                          int64_t deadline, json_t **value);
/* Where the step's out-of-process iframe sits in the page's viewport
 * (0, 0 when the step runs in no OOPIF). */
par_err_t selector_oopif_offset(spin_t *s, int64_t deadline, double *x,
                                double *y);
/* Sets where step st runs (main page, popup, OOPIF, frame path), waiting
 * until the deadline for a target URL to appear. */
par_err_t selector_resolve_target(spin_t *s, const par_step_t *st,
                                  int64_t deadline);
/* An asserted navigation of a step in another page or a frame: waits
 * until some page or frame of the tab is at the asserted URL. */
par_err_t selector_wait_target_url(spin_t *s, const par_step_t *st,
                                   int64_t deadline);

#endif
