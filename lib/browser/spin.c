/*
 * spin.c — the recipe engine: one recipe, one tab, over CDP (see spin.h).
 * This file holds the steps and the run; where a step acts (selectors,
 * frames, targets) is selector.c's, the CDP calls, events and the failure
 * record are page.c's, and spin_int.h holds the state all three share
 * (calls go spin.c → selector.c → page.c).
 *
 * Round trips are what a spin costs, so every wait happens *in the page*:
 * one Runtime.evaluate {awaitPromise} runs a small helper (selector.c) that
 * resolves the step's selector groups, checks the element is visible and
 * enabled, scrolls it into view and returns the click point, re-checking on
 * every DOM mutation (and every spin.poll ms, for shadow trees and style
 * changes a MutationObserver on the document does not see) until it is
 * ready or the step's deadline passes. A click is then that call plus three
 * Input.dispatchMouseEvent calls. When a navigation destroys the page's
 * context mid-wait, the evaluate fails with "context destroyed" and we
 * simply ask again in the new document.
 *
 * Navigation is tracked from events, not guessed: a per-spin CDP waiter on
 * the tab's session queues Page.frameNavigated / Page.lifecycleEvent /
 * Page.navigatedWithinDocument / Runtime.exceptionThrown from the first
 * moment, so an event that arrives before the command's reply is not lost.
 * A navigation is complete when the main frame committed a new document
 * (loaderId) and that document's "load" lifecycle event fired.
 *
 * Parameters reach the page only as JSON inside the helper's argument object
 * (selectors, values) or as JSON string literals in expressions
 * (PAR_SUBST_JS), never as code.
 */
#include "base/clock.h"
#include "browser/spin.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/text.h"
#include "browser/spin_int.h"

static const char *const WAIT_EVENTS[] = {
    "Page.frameNavigated", "Page.lifecycleEvent",
    "Page.navigatedWithinDocument", "Runtime.exceptionThrown", NULL};

const char *par_spin_class_name(par_spin_class_t c)
{
        return c == PAR_SPIN_TRANSIENT   ? "transient"
               : c == PAR_SPIN_PERMANENT ? "permanent"
                                         : "ok";
}

void par_spin_opts_from_config(par_spin_opts_t *o, const par_config_t *cfg)
{
        o->timeout_ms = 60000;
        o->poll_ms = 50;
        if (cfg) {
                o->timeout_ms = (int)par_config_int(cfg, "spin.timeout");
                o->poll_ms = (int)par_config_int(cfg, "spin.poll");
        }
}

static const char *const BUTTONS[] = {"left", "middle", "right", "back",
                                      "forward"};

static par_err_t mouse(spin_t *s, const char *type, double x, double y,
                       int button, int clicks, int64_t deadline)
{
        return spin_call(
            s, "Input.dispatchMouseEvent",
            json_pack("{s:s,s:f,s:f,s:s,s:i,s:i}", "type", type, "x", x, "y", y,
                      "button", button < 0 ? "none" : BUTTONS[button],
                      "clickCount", clicks, "modifiers", s->modifiers),
            deadline, NULL);
}

static par_err_t do_pointer(spin_t *s, const par_step_t *st, int64_t deadline)
{
        json_t *args =
            json_pack("{s:s,s:b,s:b,s:b,s:f,s:f}", "op", "point", "vis", 1,
                      "en", st->type != PAR_STEP_HOVER, "off", st->has_offset,
                      "ox", st->offset_x, "oy", st->offset_y);
        json_t *v = NULL;
        double x, y;
        par_err_t rc;
        int i, n;

        if ((rc = selector_helper(s, st, args, deadline, &v)))
                return rc;
        x = json_number_value(json_object_get(v, "x"));
        y = json_number_value(json_object_get(v, "y"));
        json_decref(v);
        if (s->oopif[0]) {
                double fx, fy;

                if ((rc = selector_oopif_offset(s, deadline, &fx, &fy)))
                        return rc;
                x += fx;
                y += fy;
        }
        if ((rc = mouse(s, "mouseMoved", x, y, -1, 0, deadline)))
                return rc;
        if (st->type == PAR_STEP_HOVER)
                return PAR_OK;
        n = st->type == PAR_STEP_DOUBLE_CLICK ? 2 : 1;
        for (i = 1; i <= n; i++) {
                if ((rc = mouse(s, "mousePressed", x, y, st->button, i,
                                deadline)))
                        return rc;
                if (st->duration_ms)
                        par_clock_sleep_ms(st->duration_ms);
                if ((rc = mouse(s, "mouseReleased", x, y, st->button, i,
                                deadline)))
                        return rc;
        }
        return PAR_OK;
}

static par_err_t do_change(spin_t *s, const par_step_t *st, int64_t deadline)
{
        char *value = NULL;
        json_t *v = NULL;
        par_err_t rc;

        if ((rc = spin_subst(s, st->value, PAR_SUBST_TEXT, "value", &value)))
                return rc;
        rc = selector_helper(s, st,
                             json_pack("{s:s,s:b,s:b,s:s}", "op", "change",
                                       "vis", 1, "en", 1, "value", value),
                             deadline, &v);
        if (rc)
                goto out;
        if (json_object_get(v, "type")) {
                /* Typed text: Input.insertText replaces the selection and
                 * fires beforeinput/input like a user; then blur + focus
                 * commits it, so the page sees one trusted "change" (as
                 * when a user tabs away) and focus stays for a following
                 * keyDown. */
                rc = spin_call(s, "Input.insertText",
                               json_pack("{s:s}", "text", value), deadline,
                               NULL);
                json_decref(v);
                v = NULL;
                if (!rc)
                        rc = selector_helper(s, st,
                                             json_pack("{s:s,s:b,s:b}", "op",
                                                       "changed", "vis", 0,
                                                       "en", 0),
                                             deadline, &v);
        }
out:
        json_decref(v);
        free(value);
        return rc;
}

static par_err_t do_key(spin_t *s, const par_step_t *st, int64_t deadline)
{
        par_key_info_t k;
        char *name = NULL;
        json_t *p;
        par_err_t rc;
        bool down = st->type == PAR_STEP_KEY_DOWN;

        if ((rc = spin_subst(s, st->key, PAR_SUBST_TEXT, "key", &name)))
                return rc;
        if (par_recipe_key_lookup(name, &k)) {
                rc = spin_fail(s, PAR_SPIN_PERMANENT, PAR_ERR_PERMANENT, false,
                               "key: unknown key '%s'", name);
                free(name);
                return rc;
        }
        free(name);
        if (down)
                s->modifiers |= k.modifier;
        p = json_pack("{s:s,s:i,s:s,s:s,s:i,s:i}", "type",
                      !down       ? "keyUp"
                      : k.text[0] ? "keyDown"
                                  : "rawKeyDown",
                      "modifiers", s->modifiers, "key", k.key, "code", k.code,
                      "windowsVirtualKeyCode", k.key_code,
                      "nativeVirtualKeyCode", k.key_code);
        if (p && down && k.text[0]) {
                json_object_set_new(p, "text", json_string(k.text));
                json_object_set_new(p, "unmodifiedText", json_string(k.text));
        }
        if (!down)
                s->modifiers &= ~k.modifier;
        return spin_call(s, "Input.dispatchKeyEvent", p, deadline, NULL);
}

static par_err_t do_viewport(spin_t *s, const par_step_t *st, int64_t deadline)
{
        par_err_t rc;

        rc = spin_call(
            s, "Emulation.setDeviceMetricsOverride",
            json_pack("{s:i,s:i,s:f,s:b,s:{s:s,s:i}}", "width", st->width,
                      "height", st->height, "deviceScaleFactor",
                      st->device_scale_factor, "mobile", st->is_mobile,
                      "screenOrientation", "type",
                      st->is_landscape ? "landscapePrimary" : "portraitPrimary",
                      "angle", st->is_landscape ? 90 : 0),
            deadline, NULL);
        if (rc)
                return rc;
        return spin_call(s, "Emulation.setTouchEmulationEnabled",
                         json_pack("{s:b}", "enabled", st->has_touch), deadline,
                         NULL);
}

/* Checks an asserted navigation's url and title against the new page. */
static par_err_t check_navigation(spin_t *s, const par_step_t *st,
                                  int64_t deadline)
{
        char *want = NULL;
        json_t *v = NULL;
        par_err_t rc = PAR_OK;

        if (st->nav_url) {
                if ((rc = spin_subst(s, st->nav_url, PAR_SUBST_TEXT,
                                     "assertedEvents url", &want)))
                        return rc;
                if (!s->url || strcmp(s->url, want))
                        rc = spin_fail(s, PAR_SPIN_PERMANENT, PAR_ERR_PERMANENT,
                                       false,
                                       "assertedEvents: navigated to %.90s, "
                                       "expected %.90s",
                                       s->url ? s->url : "(unknown)", want);
                free(want);
                want = NULL;
                if (rc)
                        return rc;
        }
        if (st->nav_title) {
                const char *got;

                if ((rc = spin_subst(s, st->nav_title, PAR_SUBST_TEXT,
                                     "assertedEvents title", &want)))
                        return rc;
                if ((rc = spin_evaluate(s, "document.title", deadline, &v)))
                        goto out;
                got = json_string_value(json_object_get(v, "value"));
                if (!got || strcmp(got, want))
                        rc = spin_fail(s, PAR_SPIN_PERMANENT, PAR_ERR_PERMANENT,
                                       false,
                                       "assertedEvents: page title is '%.90s', "
                                       "expected '%.90s'",
                                       got ? got : "", want);
        }
out:
        json_decref(v);
        free(want);
        return rc;
}

static par_err_t do_navigate(spin_t *s, const par_step_t *st, int64_t deadline)
{
        json_t *res = NULL;
        const char *loader, *errtext;
        char *url = NULL, lid[64];
        par_error_t e;
        par_err_t rc;

        if ((rc = spin_subst(s, st->url, PAR_SUBST_TEXT, "url", &url)))
                return rc;
        if (par_recipe_check_url(s->r, st->url, url, &e)) {
                rc = spin_fail(s, PAR_SPIN_PERMANENT, PAR_ERR_PERMANENT, false,
                               "%s", e.msg);
                goto out;
        }
        rc = spin_call(s, "Page.navigate", json_pack("{s:s}", "url", url),
                       deadline, &res);
        if (rc)
                goto out;
        errtext = json_string_value(json_object_get(res, "errorText"));
        if (errtext && *errtext) {
                /* net::ERR_…: the site or network failed us; may pass on a
                 * retry. The tab itself is fine. */
                rc = spin_fail(s, PAR_SPIN_TRANSIENT, PAR_ERR_IO, false,
                               "navigate %.120s: %s", url, errtext);
                goto out;
        }
        loader = json_string_value(json_object_get(res, "loaderId"));
        if (loader) {
                snprintf(lid, sizeof(lid), "%s", loader);
                rc = spin_wait_navigation(s, 0, 0, lid, deadline,
                                          st->timeout_ms);
        }
        if (!rc && st->expect_navigation)
                rc = check_navigation(s, st, deadline);
out:
        json_decref(res);
        free(url);
        return rc;
}

/* waitForExpression and extract: the recipe's expression with params as JS
 * string literals, run in an async function so it may await. */
static par_err_t do_expression(spin_t *s, const par_step_t *st,
                               int64_t deadline)
{
        char *e = NULL, *code = NULL;
        json_t *v = NULL;
        par_err_t rc;

        if ((rc =
                 spin_subst(s, st->expression, PAR_SUBST_JS, "expression", &e)))
                return rc;
        if (st->type == PAR_STEP_WAIT_FOR_EXPRESSION) {
                int64_t left = deadline - par_clock_mono_ms();

                /* The newlines keep a trailing // comment in the
                 * recipe's expression from eating our code. */
                if (asprintf(&code,
                             "(async()=>{const T=Date.now()+%lld;for(;;){"
                             "if(await(async()=>(\n%s\n))())return true;"
                             "if(Date.now()>=T)return false;"
                             "await new Promise(r=>setTimeout(r,%d))}})()",
                             (long long)(left > 0 ? left : 0), e,
                             s->opts.poll_ms) < 0)
                        code = NULL;
        } else if (asprintf(&code, "(async()=>(\n%s\n))()", e) < 0) {
                code = NULL;
        }
        if (!code) {
                rc = spin_fail(s, PAR_SPIN_TRANSIENT, PAR_ERR_NOMEM, false,
                               "out of memory");
                goto out;
        }
        if ((rc = spin_evaluate(s, code, deadline, &v)))
                goto out;
        if (st->type == PAR_STEP_WAIT_FOR_EXPRESSION) {
                if (!json_is_true(json_object_get(v, "value"))) {
                        char what[200];

                        snprintf(what, sizeof(what),
                                 "expression stayed falsy for %d ms",
                                 st->timeout_ms);
                        rc = spin_timed_out(s, deadline, false, what);
                }
        } else {
                json_t *val = json_object_get(v, "value");
                const char *type =
                    json_string_value(json_object_get(v, "type"));
                char *text = NULL;

                if (!val || (type && !strcmp(type, "undefined"))) {
                        rc = spin_fail(
                            s, PAR_SPIN_PERMANENT, PAR_ERR_PERMANENT, false,
                            "extract %s: expression returned "
                            "undefined (or a value that is not JSON)",
                            st->name);
                        goto out;
                }
                text = json_is_string(val)
                           ? strdup(json_string_value(val))
                           : json_dumps(val, JSON_COMPACT | JSON_ENCODE_ANY);
                if (!text) {
                        rc = spin_fail(s, PAR_SPIN_TRANSIENT, PAR_ERR_NOMEM,
                                       false, "out of memory");
                        goto out;
                }
                json_object_set_new(s->res->values, st->name,
                                    json_string(text));
                free(text);
        }
out:
        json_decref(v);
        free(code);
        free(e);
        return rc;
}

static par_err_t do_scroll(spin_t *s, const par_step_t *st, int64_t deadline)
{
        json_t *v = NULL;
        par_err_t rc;

        rc = selector_helper(s, st,
                             json_pack("{s:s,s:f,s:f,s:b,s:b}", "op",
                                       st->nselectors ? "scroll" : "scrollpage",
                                       "x", st->x, "y", st->y, "vis", 0, "en",
                                       0),
                             deadline, &v);
        json_decref(v);
        return rc;
}

static par_err_t do_wait_element(spin_t *s, const par_step_t *st,
                                 int64_t deadline)
{
        static const char *const ops[] = {"==", ">=", "<="};
        json_t *v = NULL;
        par_err_t rc;

        json_t *args = json_pack("{s:s,s:b,s:b,s:s,s:i,s:b}", "op", "count",
                                 "vis", 0, "en", 0, "cmp", ops[st->op], "count",
                                 st->count, "want", st->visible);

        /* Attribute and property values are recipe data, passed as JSON,
         * like selectors. */
        if (args && st->attributes)
                json_object_set_new(args, "attrs",
                                    json_loads(st->attributes, 0, NULL));
        if (args && st->properties)
                json_object_set_new(args, "props",
                                    json_loads(st->properties, 0, NULL));
        rc = selector_helper(s, st, args, deadline, &v);
        json_decref(v);
        return rc;
}

/* close: the step's page. Closing the main page ends the tab too. */
static par_err_t do_close(spin_t *s, const par_step_t *st, int64_t deadline)
{
        const char *tid = par_tab_target_id(s->tab);
        size_t i;

        (void)st;
        for (i = 0; i < s->natt; i++)
                if (s->in_sess[0] && !strcmp(s->att[i].session, s->in_sess))
                        tid = s->att[i].target;
        if (!strcmp(tid, par_tab_target_id(s->tab)))
                s->res->tab_broken = true;
        return spin_call(s, "Target.closeTarget",
                         json_pack("{s:s}", "targetId", tid), deadline, NULL);
}

static par_err_t run_step(spin_t *s, const par_step_t *st)
{
        int64_t deadline = spin_step_deadline(s, st);
        unsigned navs = s->navs, same_doc = s->same_doc;
        par_err_t rc;

        /* Events so far, so a navigation baseline is current. */
        if ((rc = spin_drain(s)))
                return rc;
        navs = s->navs;
        same_doc = s->same_doc;
        if (st->type == PAR_STEP_CUSTOM_STEP) {
                /* The reference replayer skips these too (an extension
                 * would run them); say so, so nobody thinks it ran. */
                par_log(PAR_LOG_WARN, "spin", "custom_step_skipped",
                        "recipe=%s step=%d name=%s why=\"customStep is not "
                        "run\"",
                        s->r->name, s->step, st->custom_name);
                return PAR_OK;
        }
        if ((rc = selector_resolve_target(s, st, deadline)))
                return rc;
        switch (st->type) {
        case PAR_STEP_CUSTOM_STEP:
                break;
        case PAR_STEP_CLOSE:
                rc = do_close(s, st, deadline);
                break;
        case PAR_STEP_SET_VIEWPORT:
                rc = do_viewport(s, st, deadline);
                break;
        case PAR_STEP_NAVIGATE:
                rc = do_navigate(s, st, deadline);
                break;
        case PAR_STEP_CLICK:
        case PAR_STEP_DOUBLE_CLICK:
        case PAR_STEP_HOVER:
                rc = do_pointer(s, st, deadline);
                break;
        case PAR_STEP_CHANGE:
                rc = do_change(s, st, deadline);
                break;
        case PAR_STEP_KEY_DOWN:
        case PAR_STEP_KEY_UP:
                rc = do_key(s, st, deadline);
                break;
        case PAR_STEP_SCROLL:
                rc = do_scroll(s, st, deadline);
                break;
        case PAR_STEP_WAIT_FOR_ELEMENT:
                rc = do_wait_element(s, st, deadline);
                break;
        case PAR_STEP_WAIT_FOR_EXPRESSION:
        case PAR_STEP_EXTRACT:
                rc = do_expression(s, st, deadline);
                break;
        }
        if (!rc && st->expect_navigation && (st->target || st->nframe)) {
                rc = selector_wait_target_url(s, st, deadline);
        } else if (!rc && st->expect_navigation &&
                   st->type != PAR_STEP_NAVIGATE) {
                rc = spin_wait_navigation(s, navs, same_doc, NULL, deadline,
                                          st->timeout_ms);
                if (!rc)
                        rc = check_navigation(s, st, deadline);
        }
        if (!rc)
                rc = spin_drain(s);
        if (!rc && s->page_error && s->r->fail_on_page_error)
                rc = spin_fail(s, PAR_SPIN_PERMANENT, PAR_ERR_PERMANENT, false,
                               "page error (failOnPageError): %.200s",
                               s->page_error);
        return rc;
}

par_err_t par_spin_run(par_tab_t *tab, const par_recipe_t *r,
                       const json_t *params, const par_spin_opts_t *opts,
                       par_spin_result_t *res, par_error_t *err)
{
        spin_t s = {0};
        par_error_t e = {0};
        int64_t t0 = par_clock_mono_ms();
        par_err_t rc = PAR_OK;
        size_t i;

        memset(res, 0, sizeof(*res));
        res->err_step = -1;
        res->values = json_object();
        res->step_ms = calloc(r->nsteps ? r->nsteps : 1, sizeof(int64_t));
        s.tab = tab;
        s.r = r;
        s.params = params;
        s.res = res;
        s.step = -1;
        par_spin_opts_from_config(&s.opts, NULL);
        if (opts)
                s.opts = *opts;
        if (s.opts.poll_ms <= 0)
                s.opts.poll_ms = 50;
        s.spin_deadline =
            s.opts.timeout_ms > 0 ? t0 + s.opts.timeout_ms : INT64_MAX;
        if (!res->values || !res->step_ms) {
                rc = spin_fail(&s, PAR_SPIN_TRANSIENT, PAR_ERR_NOMEM, false,
                               "out of memory");
                goto out;
        }
        if (!r->uses_browser || !r->nsteps)
                goto out;
        if (!tab) {
                rc = spin_fail(&s, PAR_SPIN_PERMANENT, PAR_ERR_INVALID, false,
                               "recipe %s needs a browser tab", r->name);
                goto out;
        }
        snprintf(s.frame, sizeof(s.frame), "%s", par_tab_target_id(tab));
        if ((rc = par_tab_waiter_new(tab, WAIT_EVENTS, &s.w, &e))) {
                rc = spin_cdp_fail(&s, rc, &e);
                goto out;
        }
        for (i = 0; i < r->nsteps; i++) {
                int64_t t = par_clock_mono_ms();

                s.step = (int)i;
                rc = run_step(&s, &r->steps[i]);
                res->step_ms[i] = par_clock_mono_ms() - t;
                res->nsteps = i + 1;
                if (rc)
                        break;
        }
out:
        res->total_ms = par_clock_mono_ms() - t0;
        if (res->status == PAR_SPIN_FAILED) {
                const par_step_t *st =
                    res->err_step >= 0 ? &r->steps[res->err_step] : NULL;

                if (st)
                        par_error_set(
                            err, rc, "step %d (%s): %s", res->err_step,
                            par_step_type_name(st->type), res->err_msg);
                else
                        par_error_set(err, rc, "%s", res->err_msg);
        }
        for (i = 0; i < s.natt; i++) {
                /* Popups this spin opened go with it; frames' sessions are
                 * just detached. Best effort: the tab's context is closed
                 * or reset after the spin anyway. */
                json_t *p =
                    s.att[i].page
                        ? json_pack("{s:s}", "targetId", s.att[i].target)
                        : json_pack("{s:s}", "sessionId", s.att[i].session);

                par_cdp_call(par_tab_cdp(tab), NULL,
                             s.att[i].page ? "Target.closeTarget"
                                           : "Target.detachFromTarget",
                             p, 2000, NULL, &e);
                json_decref(p);
                par_cdp_session_forget(par_tab_cdp(tab), s.att[i].session);
        }
        json_decref(s.fr);
        par_cdp_waiter_destroy(s.w);
        free(s.url);
        free(s.page_error);
        return res->status == PAR_SPIN_FAILED ? rc : PAR_OK;
}

void par_spin_result_clear(par_spin_result_t *res)
{
        if (!res)
                return;
        json_decref(res->values);
        free(res->step_ms);
        memset(res, 0, sizeof(*res));
}

json_t *par_spin_result_json(const par_spin_result_t *res,
                             const par_recipe_t *r)
{
        json_t *o = json_object(), *steps = json_array();
        size_t i;

        if (!o || !steps) {
                json_decref(o);
                json_decref(steps);
                return NULL;
        }
        json_object_set_new(o, "recipe", json_string(r ? r->name : ""));
        json_object_set_new(
            o, "status",
            json_string(res->status == PAR_SPIN_DONE ? "done" : "failed"));
        json_object_set_new(o, "values",
                            res->values ? json_incref(res->values)
                                        : json_object());
        for (i = 0; i < res->nsteps; i++)
                json_array_append_new(steps, json_integer(res->step_ms[i]));
        json_object_set_new(o, "steps_ms", steps);
        json_object_set_new(o, "total_ms", json_integer(res->total_ms));
        if (res->status == PAR_SPIN_FAILED) {
                const char *type =
                    r && res->err_step >= 0 && (size_t)res->err_step < r->nsteps
                        ? par_step_type_name(r->steps[res->err_step].type)
                        : "";

                json_object_set_new(
                    o, "error",
                    json_pack("{s:s,s:i,s:s,s:s,s:s}", "class",
                              par_spin_class_name(res->err_class), "step",
                              res->err_step, "type", type, "code",
                              par_err_name(res->err_code), "message",
                              res->err_msg));
        }
        return o;
}
