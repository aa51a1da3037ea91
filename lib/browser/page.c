/*
 * page.c — a spin's conversation with its page: CDP calls on the step's
 * session, Runtime.evaluate retried while navigations destroy the context,
 * navigation tracked from the waiter's events, and the failure record (the
 * first failure wins; transient or permanent). See spin.c for the design.
 *
 * What stays out: where a step acts (selector.c) and the steps (spin.c);
 * this file calls neither.
 */
#include "browser/spin_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/text.h"

/* Records the failure (first one wins) and returns its par_err_t. */
par_err_t spin_fail(spin_t *s, par_spin_class_t cls, par_err_t code,
                    bool broken, const char *fmt, ...)
{
        par_spin_result_t *res = s->res;
        va_list ap;

        if (res->status == PAR_SPIN_FAILED)
                return res->err_class == PAR_SPIN_TRANSIENT ? PAR_ERR_TRANSIENT
                                                            : PAR_ERR_PERMANENT;
        res->status = PAR_SPIN_FAILED;
        res->err_class = cls;
        res->err_code = code;
        res->err_step = s->step;
        res->tab_broken = broken;
        va_start(ap, fmt);
        vsnprintf(res->err_msg, sizeof(res->err_msg), fmt, ap);
        va_end(ap);
        /* Page text ("%.200s") may have been cut inside a character; the
         * message goes to JSON, BSON and Avro. */
        par_utf8_scrub(res->err_msg);
        return cls == PAR_SPIN_TRANSIENT ? PAR_ERR_TRANSIENT
                                         : PAR_ERR_PERMANENT;
}

/* Classifies a failed CDP call: the browser's own protocol errors are
 * permanent (the recipe asked for something impossible); timeouts,
 * disconnects and crashes are transient and leave the tab suspect. */
par_err_t spin_cdp_fail(spin_t *s, par_err_t rc, const par_error_t *e)
{
        if (rc == PAR_ERR_CDP)
                return spin_fail(s, PAR_SPIN_PERMANENT, rc, false, "%s",
                                 e->msg);
        if (rc == PAR_ERR_PERMANENT)
                return spin_fail(s, PAR_SPIN_PERMANENT, rc, false, "%s",
                                 e->msg);
        return spin_fail(s, PAR_SPIN_TRANSIENT, rc, true, "%s", e->msg);
}

static void on_event(spin_t *s, json_t *ev)
{
        const char *m = json_string_value(json_object_get(ev, "method"));
        json_t *p = json_object_get(ev, "params");

        if (!m || !p)
                return;
        if (!strcmp(m, "Page.frameNavigated")) {
                json_t *f = json_object_get(p, "frame");
                const char *id = json_string_value(json_object_get(f, "id"));
                const char *l =
                    json_string_value(json_object_get(f, "loaderId"));
                const char *u = json_string_value(json_object_get(f, "url"));

                if (json_object_get(f, "parentId") || !id)
                        return;
                snprintf(s->frame, sizeof(s->frame), "%s", id);
                snprintf(s->loader, sizeof(s->loader), "%s", l ? l : "");
                free(s->url);
                s->url = u ? strdup(u) : NULL;
                s->loaded = false;
                s->navs++;
        } else if (!strcmp(m, "Page.lifecycleEvent")) {
                const char *f =
                    json_string_value(json_object_get(p, "frameId"));
                const char *l =
                    json_string_value(json_object_get(p, "loaderId"));
                const char *n = json_string_value(json_object_get(p, "name"));

                if (f && l && n && !strcmp(f, s->frame) && !strcmp(n, "load") &&
                    !strcmp(l, s->loader))
                        s->loaded = true;
        } else if (!strcmp(m, "Page.navigatedWithinDocument")) {
                const char *f =
                    json_string_value(json_object_get(p, "frameId"));
                const char *u = json_string_value(json_object_get(p, "url"));

                if (f && !strcmp(f, s->frame)) {
                        s->same_doc++;
                        free(s->url);
                        s->url = u ? strdup(u) : NULL;
                }
        } else if (!strcmp(m, "Runtime.exceptionThrown") && !s->page_error) {
                json_t *d = json_object_get(p, "exceptionDetails");
                const char *t = json_string_value(json_object_get(
                    json_object_get(d, "exception"), "description"));

                if (!t)
                        t = json_string_value(json_object_get(d, "text"));
                s->page_error = strdup(t ? t : "uncaught exception");
                /* first line only: stacks do not fit a result */
                if (s->page_error)
                        s->page_error[strcspn(s->page_error, "\n")] = '\0';
        }
}

/* Handles queued events; with deadline > now, waits for at least one.
 * PAR_ERR_TIMEOUT means nothing arrived in time. */
par_err_t spin_pump(spin_t *s, int64_t deadline, par_error_t *e)
{
        json_t *ev = NULL;
        int64_t left = deadline - par_clock_mono_ms();
        par_err_t rc;

        rc = par_cdp_waiter_wait(s->w, left > 0 ? (int)left : 0, &ev, e);
        if (rc == PAR_OK) {
                on_event(s, ev);
                json_decref(ev);
                while ((rc = par_cdp_waiter_wait(s->w, 0, &ev, e)) == PAR_OK) {
                        on_event(s, ev);
                        json_decref(ev);
                }
                if (rc == PAR_ERR_TIMEOUT)
                        rc = PAR_OK;
        }
        return rc;
}

par_err_t spin_drain(spin_t *s)
{
        par_error_t e = {0};
        par_err_t rc = spin_pump(s, 0, &e);

        if (rc == PAR_ERR_TIMEOUT)
                return PAR_OK;
        if (rc)
                return spin_cdp_fail(s, rc, &e);
        return PAR_OK;
}

int64_t spin_step_deadline(spin_t *s, const par_step_t *st)
{
        int64_t d = par_clock_mono_ms() + st->timeout_ms;

        return d < s->spin_deadline ? d : s->spin_deadline;
}

/* A wait ran out: transient if the whole spin's deadline caused it. */
par_err_t spin_timed_out(spin_t *s, int64_t deadline, bool transient,
                         const char *what)
{
        if (deadline >= s->spin_deadline)
                return spin_fail(s, PAR_SPIN_TRANSIENT, PAR_ERR_TIMEOUT, true,
                                 "spin.timeout (%d ms) exceeded: %s",
                                 s->opts.timeout_ms, what);
        return spin_fail(s, transient ? PAR_SPIN_TRANSIENT : PAR_SPIN_PERMANENT,
                         PAR_ERR_TIMEOUT, transient, "%s", what);
}

/* Waits until the main frame committed a document after `navs` (or the
 * given loader) and fired its load event, or navigated within the page. */
par_err_t spin_wait_navigation(spin_t *s, unsigned navs, unsigned same_doc,
                               const char *loader, int64_t deadline,
                               int timeout_ms)
{
        par_error_t e = {0};
        par_err_t rc;

        for (;;) {
                if (loader ? !strcmp(s->loader, loader) && s->loaded
                           : (s->navs > navs && s->loaded) ||
                                 s->same_doc > same_doc)
                        return PAR_OK;
                rc = spin_pump(s, deadline, &e);
                if (rc == PAR_ERR_TIMEOUT) {
                        char what[200];

                        snprintf(what, sizeof(what),
                                 "navigation did not complete within %d ms",
                                 timeout_ms);
                        return spin_timed_out(s, deadline, true, what);
                }
                if (rc)
                        return spin_cdp_fail(s, rc, &e);
        }
}

/* A CDP call on session sess ("" or NULL = the tab's); params borrowed. */
par_err_t spin_tcall(spin_t *s, const char *sess, const char *method,
                     json_t *params, int timeout_ms, json_t **result,
                     par_error_t *e)
{
        if (sess && *sess)
                return par_cdp_call(par_tab_cdp(s->tab), sess, method, params,
                                    timeout_ms, result, e);
        return par_tab_call(s->tab, method, params, timeout_ms, result, e);
}

par_err_t spin_call(spin_t *s, const char *method, json_t *params,
                    int64_t deadline, json_t **result)
{
        par_error_t e = {0};
        int64_t left = deadline - par_clock_mono_ms();
        par_err_t rc;

        if (!params)
                return spin_fail(s, PAR_SPIN_TRANSIENT, PAR_ERR_NOMEM, false,
                                 "out of memory");
        rc = spin_tcall(s, s->in_sess, method, params,
                        (int)(left > 0 ? left : 0) + 1000, result, &e);
        json_decref(params);
        return rc ? spin_cdp_fail(s, rc, &e) : PAR_OK;
}

par_err_t spin_subst(spin_t *s, const char *tmpl, par_subst_mode_t mode,
                     const char *field, char **out)
{
        par_error_t e = {0};
        par_err_t rc = par_recipe_subst(tmpl, s->params, mode, out, &e);

        if (rc)
                return spin_fail(s,
                                 rc == PAR_ERR_NOMEM ? PAR_SPIN_TRANSIENT
                                                     : PAR_SPIN_PERMANENT,
                                 rc, false, "%s: %s", field, e.msg);
        return PAR_OK;
}

/* The messages a context that went away mid-call produces: the page
 * navigated; ask again in the new document. */
static bool context_gone(const char *msg)
{
        return strstr(msg, "context was destroyed") ||
               strstr(msg, "Cannot find context") ||
               strstr(msg, "navigated or closed") ||
               strstr(msg, "Promise was collected");
}

/* Runtime.evaluate of expr (awaiting promises, value returned by value),
 * retried while navigations destroy the context. *value: new reference to
 * result.result (the RemoteObject). An exception in the page is permanent
 * and quoted. */
par_err_t spin_evaluate(spin_t *s, const char *expr, int64_t deadline,
                        json_t **value)
{
        for (;;) {
                par_error_t e = {0};
                json_t *res = NULL, *exc;
                int64_t left = deadline - par_clock_mono_ms();
                par_err_t rc;

                json_t *params =
                    json_pack("{s:s,s:b,s:b}", "expression", expr,
                              "awaitPromise", 1, "returnByValue", 1);

                if (!params)
                        return spin_fail(s, PAR_SPIN_TRANSIENT, PAR_ERR_NOMEM,
                                         false, "out of memory");
                rc = spin_tcall(s, s->sess, "Runtime.evaluate", params,
                                (int)(left > 0 ? left : 0) + 2000, &res, &e);
                json_decref(params);
                if (rc == PAR_ERR_CDP && context_gone(e.msg) &&
                    par_clock_mono_ms() < deadline) {
                        par_clock_sleep_ms(10);
                        continue;
                }
                if (rc)
                        return spin_cdp_fail(s, rc, &e);
                exc = json_object_get(res, "exceptionDetails");
                if (exc) {
                        const char *d = json_string_value(json_object_get(
                            json_object_get(exc, "exception"), "description"));
                        char msg[200];

                        if (!d)
                                d = json_string_value(
                                    json_object_get(exc, "text"));
                        snprintf(msg, sizeof(msg), "%s", d ? d : "exception");
                        /* first line only: stacks do not fit a result */
                        msg[strcspn(msg, "\n")] = '\0';
                        json_decref(res);
                        return spin_fail(s, PAR_SPIN_PERMANENT,
                                         PAR_ERR_PERMANENT, false,
                                         "page script threw: %s", msg);
                }
                *value = json_incref(json_object_get(res, "result"));
                json_decref(res);
                return PAR_OK;
        }
}
