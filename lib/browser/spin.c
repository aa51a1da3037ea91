/*
 * spin.c — the recipe engine: one recipe, one tab, over CDP (see spin.h).
 *
 * Round trips are what a spin costs, so every wait happens *in the page*:
 * one Runtime.evaluate {awaitPromise} runs a small helper (HELPER_JS) that
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

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"

/*
 * The page-side helper, called as HELPER_JS(args). args:
 *   op     point | change | changed | count | scroll | scrollpage
 *   sels   [[part, …], …] selector groups (already substituted)
 *   t      ms to keep trying; poll: ms between checks without mutations
 *   vis    require visible; en: require enabled
 *   off/ox/oy  click offset from the element's top-left (else its centre)
 *   cmp/count  waitForElement comparison; value: change; x/y: scroll
 * Resolves {ok:1,…} or {why:"…"} when t ran out.
 */
static const char HELPER_JS[] =
    "(async a=>{"
    "const T=Date.now()+a.t,W=s=>(s||'').replace(/\\s+/g,' ').trim(),"
    "all=(r,f)=>{const o=[],v=r=>{for(const e of r.querySelectorAll('*')){"
    "if(f(e))o.push(e);if(e.shadowRoot)v(e.shadowRoot)}};v(r);return o},"
    "role=e=>{const r=e.getAttribute('role');if(r)return r.split(' ')[0];"
    "const t=e.tagName.toLowerCase(),y=(e.getAttribute('type')||'')"
    ".toLowerCase();"
    "if(t==='button'||t==='input'&&/^(button|submit|reset|image)$/.test(y))"
    "return'button';if(t==='a'&&e.hasAttribute('href'))return'link';"
    "if(t==='input')return y==='checkbox'?'checkbox':y==='radio'?'radio':"
    "y==='range'?'slider':y==='search'?'searchbox':'textbox';"
    "if(t==='textarea')return'textbox';"
    "if(t==='select')return e.multiple||e.size>1?'listbox':'combobox';"
    "if(/^h[1-6]$/.test(t))return'heading';"
    "return{img:'img',option:'option',li:'listitem',nav:'navigation',"
    "main:'main',dialog:'dialog',table:'table'}[t]||''},"
    "name=e=>{let v=W(e.getAttribute('aria-label'));if(v)return v;"
    "v=e.getAttribute('aria-labelledby');if(v)return W(v.split(/\\s+/)"
    ".map(i=>{const l=document.getElementById(i);return l?l.textContent:''})"
    ".join(' '));"
    "if(e.labels&&e.labels.length)return W([...e.labels].map(l=>"
    "l.textContent).join(' '));"
    "if(e.tagName==='IMG')return W(e.getAttribute('alt'));"
    "if(e.tagName==='INPUT'&&/^(button|submit|reset)$/.test(e.type))"
    "return W(e.value||{submit:'Submit',reset:'Reset'}[e.type]||'');"
    "if(/^(button|link|heading|option|menuitem|tab|listitem|checkbox|radio|"
    "cell|columnheader|switch|treeitem)$/.test(role(e)))"
    "return W(e.textContent);"
    "return W(e.getAttribute('title')||e.getAttribute('placeholder'))},"
    "aria=(r,s)=>{const m=/^(.*?)((?:\\[[a-z]+=\"[^\"]*\"\\])*)$/.exec(s),"
    "at={};for(const x of m[2].matchAll(/\\[([a-z]+)=\"([^\"]*)\"\\]/g))"
    "at[x[1]]=x[2];const n=W(m[1]||at.name);"
    "return all(r,e=>(!at.role||role(e)===at.role)&&(!n||name(e)===n))},"
    "text=(r,s)=>{const m=all(r,e=>!/^(SCRIPT|STYLE|NOSCRIPT|TEMPLATE|"
    "HEAD|TITLE)$/.test(e.tagName)&&e.textContent.includes(s));"
    "return m.filter(e=>!m.some(d=>d!==e&&e.contains(d)))},"
    "xp=(r,s)=>{const x=document.evaluate(s,r,null,7,null),o=[];"
    "for(let i=0;i<x.snapshotLength;i++){const n=x.snapshotItem(i);"
    "if(n.nodeType===1)o.push(n)}return o},"
    "q=(r,s)=>s.startsWith('xpath/')?xp(r,s.slice(6)):"
    "s.startsWith('text/')?text(r,s.slice(5)):"
    "s.startsWith('pierce/')?all(r,e=>e.matches(s.slice(7))):"
    "s.startsWith('aria/')?aria(r,s.slice(5)):[...r.querySelectorAll(s)],"
    "find=g=>{let r=document;for(let i=0;i<g.length;i++){const f=q(r,g[i]);"
    "if(!f.length||i===g.length-1)return f;r=f[0].shadowRoot||f[0]}},"
    "pick=()=>{for(const g of a.sels){const f=find(g);if(f.length)return f}"
    "return[]},"
    "vis=e=>{const b=e.getBoundingClientRect();return b.width>0&&"
    "b.height>0&&e.checkVisibility({visibilityProperty:true})},"
    "ev=(e,n)=>e.dispatchEvent(new Event(n,{bubbles:true})),"
    "step=()=>{"
    "if(a.op==='scrollpage'){scrollTo(a.x,a.y);return{ok:1}}"
    "if(a.op==='count'){let f=pick();if(a.vis)f=f.filter(vis);"
    "const n=f.length;return(a.cmp==='>='?n>=a.count:a.cmp==='<='?"
    "n<=a.count:n===a.count)?{ok:1,n}:{why:'found '+n+' matching element(s),"
    " want '+a.cmp+' '+a.count}}"
    "const e=pick()[0];if(!e)return{why:'no selector matched'};"
    "if(a.op==='scroll'){e.scrollTo(a.x,a.y);return{ok:1}}"
    "if(a.vis&&!vis(e))return{why:'element is not visible'};"
    "if(a.en&&(e.disabled||e.getAttribute('aria-disabled')==='true'))"
    "return{why:'element is disabled'};"
    "if(a.op==='changed'){e.blur();e.focus();return{ok:1}}"
    "let b=e.getBoundingClientRect();"
    "if(b.top<0||b.left<0||b.bottom>innerHeight||b.right>innerWidth){"
    "e.scrollIntoView({block:'center',inline:'center',behavior:'instant'});"
    "b=e.getBoundingClientRect()}"
    "if(a.op==='change'){e.focus();"
    "if(e.tagName==='SELECT'){if(![...e.options].some(o=>o.value===a.value))"
    "return{why:'no option has value '+JSON.stringify(a.value)};"
    "e.value=a.value;ev(e,'input');ev(e,'change');return{ok:1}}"
    "const ty=e.isContentEditable||e.tagName==='TEXTAREA'||"
    "e.tagName==='INPUT'&&/^(text|search|url|tel|password|email|number)$/"
    ".test(e.type);"
    "if(ty&&a.value!==''){if(e.isContentEditable){const g=getSelection(),"
    "r=document.createRange();r.selectNodeContents(e);g.removeAllRanges();"
    "g.addRange(r)}else e.select();return{ok:1,type:1}}"
    "if(e.isContentEditable)e.textContent=a.value;else e.value=a.value;"
    "ev(e,'input');ev(e,'change');return{ok:1}}"
    "return{ok:1,x:b.left+(a.off?a.ox:b.width/2),"
    "y:b.top+(a.off?a.oy:b.height/2)}};"
    "for(;;){const r=step();if(r.ok||Date.now()>=T)return r;"
    "await new Promise(res=>{let d=0;const f=()=>{if(!d){d=1;o.disconnect();"
    "clearTimeout(t);res()}},o=new MutationObserver(f);"
    "o.observe(document,{subtree:true,childList:true,attributes:true,"
    "characterData:true});const t=setTimeout(f,a.poll)})}})";

static const char *const WAIT_EVENTS[] = {
    "Page.frameNavigated", "Page.lifecycleEvent",
    "Page.navigatedWithinDocument", "Runtime.exceptionThrown", NULL};

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
} spin_t;

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

/* Records the failure (first one wins) and returns its par_err_t. */
static par_err_t __attribute__((format(printf, 5, 6)))
fail(spin_t *s, par_spin_class_t cls, par_err_t code, bool broken,
     const char *fmt, ...)
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
        return cls == PAR_SPIN_TRANSIENT ? PAR_ERR_TRANSIENT
                                         : PAR_ERR_PERMANENT;
}

/* Classifies a failed CDP call: the browser's own protocol errors are
 * permanent (the recipe asked for something impossible); timeouts,
 * disconnects and crashes are transient and leave the tab suspect. */
static par_err_t cdp_fail(spin_t *s, par_err_t rc, const par_error_t *e)
{
        if (rc == PAR_ERR_CDP)
                return fail(s, PAR_SPIN_PERMANENT, rc, false, "%s", e->msg);
        if (rc == PAR_ERR_PERMANENT)
                return fail(s, PAR_SPIN_PERMANENT, rc, false, "%s", e->msg);
        return fail(s, PAR_SPIN_TRANSIENT, rc, true, "%s", e->msg);
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
static par_err_t pump(spin_t *s, int64_t deadline, par_error_t *e)
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

static par_err_t drain(spin_t *s)
{
        par_error_t e = {0};
        par_err_t rc = pump(s, 0, &e);

        if (rc == PAR_ERR_TIMEOUT)
                return PAR_OK;
        if (rc)
                return cdp_fail(s, rc, &e);
        return PAR_OK;
}

static int64_t step_deadline(spin_t *s, const par_step_t *st)
{
        int64_t d = par_clock_mono_ms() + st->timeout_ms;

        return d < s->spin_deadline ? d : s->spin_deadline;
}

/* A wait ran out: transient if the whole spin's deadline caused it. */
static par_err_t timed_out(spin_t *s, int64_t deadline, bool transient,
                           const char *what)
{
        if (deadline >= s->spin_deadline)
                return fail(s, PAR_SPIN_TRANSIENT, PAR_ERR_TIMEOUT, true,
                            "spin.timeout (%d ms) exceeded: %s",
                            s->opts.timeout_ms, what);
        return fail(s, transient ? PAR_SPIN_TRANSIENT : PAR_SPIN_PERMANENT,
                    PAR_ERR_TIMEOUT, transient, "%s", what);
}

/* Waits until the main frame committed a document after `navs` (or the
 * given loader) and fired its load event, or navigated within the page. */
static par_err_t wait_navigation(spin_t *s, unsigned navs, unsigned same_doc,
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
                rc = pump(s, deadline, &e);
                if (rc == PAR_ERR_TIMEOUT) {
                        char what[200];

                        snprintf(what, sizeof(what),
                                 "navigation did not complete within %d ms",
                                 timeout_ms);
                        return timed_out(s, deadline, true, what);
                }
                if (rc)
                        return cdp_fail(s, rc, &e);
        }
}

static par_err_t call(spin_t *s, const char *method, json_t *params,
                      int64_t deadline, json_t **result)
{
        par_error_t e = {0};
        int64_t left = deadline - par_clock_mono_ms();
        par_err_t rc;

        if (!params)
                return fail(s, PAR_SPIN_TRANSIENT, PAR_ERR_NOMEM, false,
                            "out of memory");
        rc = par_tab_call(s->tab, method, params,
                          (int)(left > 0 ? left : 0) + 1000, result, &e);
        json_decref(params);
        return rc ? cdp_fail(s, rc, &e) : PAR_OK;
}

static par_err_t subst(spin_t *s, const char *tmpl, par_subst_mode_t mode,
                       const char *field, char **out)
{
        par_error_t e = {0};
        par_err_t rc = par_recipe_subst(tmpl, s->params, mode, out, &e);

        if (rc)
                return fail(s,
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
static par_err_t evaluate(spin_t *s, const char *expr, int64_t deadline,
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
                        return fail(s, PAR_SPIN_TRANSIENT, PAR_ERR_NOMEM, false,
                                    "out of memory");
                rc = par_tab_call(s->tab, "Runtime.evaluate", params,
                                  (int)(left > 0 ? left : 0) + 2000, &res, &e);
                json_decref(params);
                if (rc == PAR_ERR_CDP && context_gone(e.msg) &&
                    par_clock_mono_ms() < deadline) {
                        par_clock_sleep_ms(10);
                        continue;
                }
                if (rc)
                        return cdp_fail(s, rc, &e);
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
                        return fail(s, PAR_SPIN_PERMANENT, PAR_ERR_PERMANENT,
                                    false, "page script threw: %s", msg);
                }
                *value = json_incref(json_object_get(res, "result"));
                json_decref(res);
                return PAR_OK;
        }
}

/* The step's selector groups, placeholders filled, as a JSON array. */
static par_err_t selectors_json(spin_t *s, const par_step_t *st, json_t **out)
{
        json_t *groups = json_array();
        size_t i, j;

        for (i = 0; groups && i < st->nselectors; i++) {
                json_t *g = json_array();

                json_array_append_new(groups, g);
                for (j = 0; g && j < st->selectors[i].nparts; j++) {
                        char *v;

                        if (subst(s, st->selectors[i].parts[j], PAR_SUBST_TEXT,
                                  "selectors", &v)) {
                                json_decref(groups);
                                return PAR_ERR_PERMANENT;
                        }
                        json_array_append_new(g, json_string(v));
                        free(v);
                }
        }
        if (!groups)
                return fail(s, PAR_SPIN_TRANSIENT, PAR_ERR_NOMEM, false,
                            "out of memory");
        *out = groups;
        return PAR_OK;
}

/* Runs HELPER_JS with args (taken; "sels" set from the step) until the step
 * deadline. On success *value is the helper's {ok:1,…} (new reference). */
static par_err_t helper(spin_t *s, const par_step_t *st, json_t *args,
                        int64_t deadline, json_t **value)
{
        json_t *sels = NULL, *rv = NULL, *v;
        char *a = NULL, *expr = NULL;
        par_err_t rc;

        if (st->nselectors) {
                if ((rc = selectors_json(s, st, &sels)))
                        goto out;
                json_object_set_new(args, "sels", sels);
        }
        json_object_set_new(args, "poll", json_integer(s->opts.poll_ms));
        json_object_set_new(args, "t",
                            json_integer(deadline - par_clock_mono_ms() > 0
                                             ? deadline - par_clock_mono_ms()
                                             : 0));
        a = json_dumps(args,
                       JSON_COMPACT | JSON_ENSURE_ASCII | JSON_ESCAPE_SLASH);
        if (!a || asprintf(&expr, "%s(%s)", HELPER_JS, a) < 0) {
                expr = NULL;
                rc = fail(s, PAR_SPIN_TRANSIENT, PAR_ERR_NOMEM, false,
                          "out of memory");
                goto out;
        }
        if ((rc = evaluate(s, expr, deadline, &rv)))
                goto out;
        v = json_object_get(rv, "value");
        if (!json_is_object(v)) {
                rc = fail(s, PAR_SPIN_PERMANENT, PAR_ERR_PERMANENT, false,
                          "page helper returned no result (was the page "
                          "replaced mid-step?)");
                goto out;
        }
        if (!json_object_get(v, "ok")) {
                const char *why = json_string_value(json_object_get(v, "why"));
                const char *first =
                    st->nselectors
                        ? st->selectors[0].parts[st->selectors[0].nparts - 1]
                        : "";
                char what[230];

                snprintf(what, sizeof(what), "%s after %d ms (selector %s%s)",
                         why ? why : "not ready", st->timeout_ms, first,
                         st->nselectors > 1 ? " and alternatives" : "");
                rc = timed_out(s, deadline, false, what);
                goto out;
        }
        *value = json_incref(v);
        rc = PAR_OK;
out:
        json_decref(rv);
        json_decref(args);
        free(a);
        free(expr);
        return rc;
}

static const char *const BUTTONS[] = {"left", "middle", "right", "back",
                                      "forward"};

static par_err_t mouse(spin_t *s, const char *type, double x, double y,
                       int button, int clicks, int64_t deadline)
{
        return call(s, "Input.dispatchMouseEvent",
                    json_pack("{s:s,s:f,s:f,s:s,s:i,s:i}", "type", type, "x", x,
                              "y", y, "button",
                              button < 0 ? "none" : BUTTONS[button],
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

        if ((rc = helper(s, st, args, deadline, &v)))
                return rc;
        x = json_number_value(json_object_get(v, "x"));
        y = json_number_value(json_object_get(v, "y"));
        json_decref(v);
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

        if ((rc = subst(s, st->value, PAR_SUBST_TEXT, "value", &value)))
                return rc;
        rc = helper(s, st,
                    json_pack("{s:s,s:b,s:b,s:s}", "op", "change", "vis", 1,
                              "en", 1, "value", value),
                    deadline, &v);
        if (rc)
                goto out;
        if (json_object_get(v, "type")) {
                /* Typed text: Input.insertText replaces the selection and
                 * fires beforeinput/input like a user; then blur + focus
                 * commits it, so the page sees one trusted "change" (as
                 * when a user tabs away) and focus stays for a following
                 * keyDown. */
                rc = call(s, "Input.insertText",
                          json_pack("{s:s}", "text", value), deadline, NULL);
                json_decref(v);
                v = NULL;
                if (!rc)
                        rc = helper(s, st,
                                    json_pack("{s:s,s:b,s:b}", "op", "changed",
                                              "vis", 0, "en", 0),
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

        if ((rc = subst(s, st->key, PAR_SUBST_TEXT, "key", &name)))
                return rc;
        if (par_recipe_key_lookup(name, &k)) {
                rc = fail(s, PAR_SPIN_PERMANENT, PAR_ERR_PERMANENT, false,
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
        return call(s, "Input.dispatchKeyEvent", p, deadline, NULL);
}

static par_err_t do_viewport(spin_t *s, const par_step_t *st, int64_t deadline)
{
        par_err_t rc;

        rc = call(
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
        return call(s, "Emulation.setTouchEmulationEnabled",
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
                if ((rc = subst(s, st->nav_url, PAR_SUBST_TEXT,
                                "assertedEvents url", &want)))
                        return rc;
                if (!s->url || strcmp(s->url, want))
                        rc = fail(s, PAR_SPIN_PERMANENT, PAR_ERR_PERMANENT,
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

                if ((rc = subst(s, st->nav_title, PAR_SUBST_TEXT,
                                "assertedEvents title", &want)))
                        return rc;
                if ((rc = evaluate(s, "document.title", deadline, &v)))
                        goto out;
                got = json_string_value(json_object_get(v, "value"));
                if (!got || strcmp(got, want))
                        rc = fail(s, PAR_SPIN_PERMANENT, PAR_ERR_PERMANENT,
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
        par_err_t rc;

        if ((rc = subst(s, st->url, PAR_SUBST_TEXT, "url", &url)))
                return rc;
        rc = call(s, "Page.navigate", json_pack("{s:s}", "url", url), deadline,
                  &res);
        if (rc)
                goto out;
        errtext = json_string_value(json_object_get(res, "errorText"));
        if (errtext && *errtext) {
                /* net::ERR_…: the site or network failed us; may pass on a
                 * retry. The tab itself is fine. */
                rc = fail(s, PAR_SPIN_TRANSIENT, PAR_ERR_IO, false,
                          "navigate %.120s: %s", url, errtext);
                goto out;
        }
        loader = json_string_value(json_object_get(res, "loaderId"));
        if (loader) {
                snprintf(lid, sizeof(lid), "%s", loader);
                rc = wait_navigation(s, 0, 0, lid, deadline, st->timeout_ms);
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

        if ((rc = subst(s, st->expression, PAR_SUBST_JS, "expression", &e)))
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
                rc = fail(s, PAR_SPIN_TRANSIENT, PAR_ERR_NOMEM, false,
                          "out of memory");
                goto out;
        }
        if ((rc = evaluate(s, code, deadline, &v)))
                goto out;
        if (st->type == PAR_STEP_WAIT_FOR_EXPRESSION) {
                if (!json_is_true(json_object_get(v, "value"))) {
                        char what[200];

                        snprintf(what, sizeof(what),
                                 "expression stayed falsy for %d ms",
                                 st->timeout_ms);
                        rc = timed_out(s, deadline, false, what);
                }
        } else {
                json_t *val = json_object_get(v, "value");
                const char *type =
                    json_string_value(json_object_get(v, "type"));
                char *text = NULL;

                if (!val || (type && !strcmp(type, "undefined"))) {
                        rc = fail(s, PAR_SPIN_PERMANENT, PAR_ERR_PERMANENT,
                                  false,
                                  "extract %s: expression returned "
                                  "undefined (or a value that is not JSON)",
                                  st->name);
                        goto out;
                }
                text = json_is_string(val)
                           ? strdup(json_string_value(val))
                           : json_dumps(val, JSON_COMPACT | JSON_ENCODE_ANY);
                if (!text) {
                        rc = fail(s, PAR_SPIN_TRANSIENT, PAR_ERR_NOMEM, false,
                                  "out of memory");
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

        rc = helper(s, st,
                    json_pack("{s:s,s:f,s:f,s:b,s:b}", "op",
                              st->nselectors ? "scroll" : "scrollpage", "x",
                              st->x, "y", st->y, "vis", 0, "en", 0),
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

        rc = helper(s, st,
                    json_pack("{s:s,s:b,s:b,s:s,s:i}", "op", "count", "vis",
                              st->visible, "en", 0, "cmp", ops[st->op], "count",
                              st->count),
                    deadline, &v);
        json_decref(v);
        return rc;
}

static par_err_t run_step(spin_t *s, const par_step_t *st)
{
        int64_t deadline = step_deadline(s, st);
        unsigned navs = s->navs, same_doc = s->same_doc;
        par_err_t rc;

        /* Events so far, so a navigation baseline is current. */
        if ((rc = drain(s)))
                return rc;
        navs = s->navs;
        same_doc = s->same_doc;
        switch (st->type) {
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
        if (!rc && st->expect_navigation && st->type != PAR_STEP_NAVIGATE) {
                rc = wait_navigation(s, navs, same_doc, NULL, deadline,
                                     st->timeout_ms);
                if (!rc)
                        rc = check_navigation(s, st, deadline);
        }
        if (!rc)
                rc = drain(s);
        if (!rc && s->page_error && s->r->fail_on_page_error)
                rc =
                    fail(s, PAR_SPIN_PERMANENT, PAR_ERR_PERMANENT, false,
                         "page error (failOnPageError): %.200s", s->page_error);
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
                rc = fail(&s, PAR_SPIN_TRANSIENT, PAR_ERR_NOMEM, false,
                          "out of memory");
                goto out;
        }
        if (!r->uses_browser || !r->nsteps)
                goto out;
        if (!tab) {
                rc = fail(&s, PAR_SPIN_PERMANENT, PAR_ERR_INVALID, false,
                          "recipe %s needs a browser tab", r->name);
                goto out;
        }
        snprintf(s.frame, sizeof(s.frame), "%s", par_tab_target_id(tab));
        if ((rc = par_tab_waiter_new(tab, WAIT_EVENTS, &s.w, &e))) {
                rc = cdp_fail(&s, rc, &e);
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
