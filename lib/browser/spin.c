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

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/text.h"

/*
 * The page-side helper, called as HELPER_JS(args). args:
 *   op     point | change | changed | count | scroll | scrollpage
 *   sels   [[part, …], …] selector groups (already substituted)
 *   fr     child-frame indexes from this window to the step's frame
 *   t      ms to keep trying (0: check once); poll: ms between checks
 *   vis    require visible; en: require enabled
 *   off/ox/oy  click offset from the element's top-left (else its centre)
 *   cmp/count/want/attrs/props  waitForElement; value: change; x/y: scroll
 *   gen    which aria/ registration (see aria_register) is current
 * Resolves {ok:1,…} or {why:"…"} when t ran out. Click points are in this
 * window's viewport (frame offsets added).
 *
 * Selector semantics follow the reference replayer (puppeteer's query
 * handlers): a group's parts are searched inside every element the
 * previous part found (its shadow root if it has one); text/ matches the
 * innermost elements whose text (script and style left out, input values
 * in, shadow trees in) contains the text; aria/ elements come from
 * Chrome's accessibility tree, registered by aria_register() before the
 * call.
 */
static const char HELPER_JS[] =
    "(async a=>{"
    "const T=Date.now()+a.t,SY=Symbol.for('parallel.aria');"
    "let W,D;"
    "const all=(r,f)=>{const o=[],v=r=>{for(const e of "
    "r.querySelectorAll('*')){"
    "if(f(e))o.push(e);if(e.shadowRoot)v(e.shadowRoot)}};v(r);return o},"
    "ok=n=>!/^(SCRIPT|STYLE)$/.test(n.nodeName)&&!(D.head&&D.head.contains(n)),"
    "tc=n=>{if(!ok(n))return'';if(/^(SELECT|TEXTAREA)$/.test(n.nodeName)||"
    "n.nodeName==='INPUT'&&!/^(checkbox|image|radio)$/.test(n.type))"
    "return n.value;let s='';for(const c of n.childNodes)s+=c.nodeType===3?"
    "c.nodeValue:c.nodeType===1?tc(c):'';if(n.shadowRoot)s+=tc(n.shadowRoot);"
    "return s},"
    "text=(r,s)=>{const o=[],v=r=>{let y=false;for(const n of r.childNodes)"
    "if(n.nodeType===1&&ok(n)&&v(n.shadowRoot||n))y=true;if(y)return true;"
    "if(r.nodeType===1&&ok(r)&&tc(r).includes(s)){o.push(r);return true}"
    "return false};v(r);return o},"
    "aria=(r,s)=>{const m=W[SY],f=m&&m.g===a.gen&&m.s[s]||[];"
    "return r.nodeType===9?f:f.filter(e=>{for(let n=e;n;n=n.parentNode||n.host)"
    "if(n===r)return true;return false})},"
    "xp=(r,s)=>{const x=D.evaluate(s,r,null,7,null),o=[];"
    "for(let i=0;i<x.snapshotLength;i++){const n=x.snapshotItem(i);"
    "if(n.nodeType===1)o.push(n)}return o},"
    "q=(r,s)=>s.startsWith('xpath/')?xp(r,s.slice(6)):"
    "s.startsWith('text/')?text(r,s.slice(5)):"
    "s.startsWith('pierce/')?all(r,e=>e.matches(s.slice(7))):"
    "s.startsWith('aria/')?aria(r,s.slice(5)):[...r.querySelectorAll(s)],"
    "find=g=>{let rs=[D],f=[];for(let i=0;i<g.length;i++){f=[];"
    "for(const r of rs)for(const e of q(r,g[i]))if(!f.includes(e))f.push(e);"
    "if(!f.length)break;rs=f.map(e=>e.shadowRoot||e)}return f},"
    "pick=()=>{for(const g of a.sels){const f=find(g);if(f.length)return f}"
    "return[]},"
    "vis=e=>{const b=e.getBoundingClientRect();return b.width>0&&"
    "b.height>0&&e.checkVisibility({visibilityProperty:true})},"
    "ev=(e,n)=>e.dispatchEvent(new Event(n,{bubbles:true})),"
    "deep=(x,y)=>x===y||x!==null&&typeof x==='object'&&y!=null&&"
    "(typeof y==='object'||typeof y==='function')&&"
    "Object.entries(x).every(([k,v])=>deep(v,y[k])),"
    "frame=()=>{W=window;for(const i of a.fr||[]){W=W.frames[i];"
    "if(!W)return false}try{D=W.document;return!!D}catch(x){return false}},"
    "fo=()=>{let x=0,y=0;for(let w=W;w!==window;w=w.parent){"
    "const f=w.frameElement,b=f.getBoundingClientRect(),c=getComputedStyle(f);"
    "x+=b.left+f.clientLeft+parseFloat(c.paddingLeft);"
    "y+=b.top+f.clientTop+parseFloat(c.paddingTop)}return{x,y}},"
    "step=()=>{"
    "if(!frame())return{why:'frame '+JSON.stringify(a.fr)+' not found'};"
    "if(a.op==='scrollpage'){W.scrollTo(a.x,a.y);return{ok:1}}"
    "if(a.op==='count'){const f=pick(),n=f.length;"
    "let r=a.cmp==='>='?n>=a.count:a.cmp==='<='?n<=a.count:n===a.count;"
    "if(r&&a.attrs)r=f.every(e=>Object.entries(a.attrs).every(([k,v])=>"
    "e.getAttribute(k)===v));"
    "if(r&&a.props)r=f.every(e=>deep(a.props,e));"
    "return r===a.want?{ok:1,n}:{why:'found '+n+' matching element(s), want '"
    "+(a.want?'':'not ')+a.cmp+' '+a.count+(a.attrs||a.props?"
    "' with those attributes/properties':'')}}"
    "const e=pick()[0];if(!e)return{why:'no selector matched'};"
    "if(a.op==='scroll'){e.scrollTo(a.x,a.y);return{ok:1}}"
    "if(a.vis&&!vis(e))return{why:'element is not visible'};"
    "if(a.en&&(e.disabled||e.getAttribute('aria-disabled')==='true'))"
    "return{why:'element is disabled'};"
    "if(a.op==='changed'){e.blur();e.focus();return{ok:1}}"
    "let b=e.getBoundingClientRect();"
    "if(b.top<0||b.left<0||b.bottom>W.innerHeight||b.right>W.innerWidth){"
    "e.scrollIntoView({block:'center',inline:'center',behavior:'instant'});"
    "b=e.getBoundingClientRect()}"
    "if(a.op==='change'){e.focus();"
    "if(e.tagName==='SELECT'){if(![...e.options].some(o=>o.value===a.value))"
    "return{why:'no option has value '+JSON.stringify(a.value)};"
    "e.value=a.value;ev(e,'input');ev(e,'change');return{ok:1}}"
    "const ty=e.isContentEditable||e.tagName==='TEXTAREA'||"
    "e.tagName==='INPUT'&&/^(text|search|url|tel|password|email|number)$/"
    ".test(e.type);"
    "if(ty&&a.value!==''){if(e.isContentEditable){const g=W.getSelection(),"
    "r=D.createRange();r.selectNodeContents(e);g.removeAllRanges();"
    "g.addRange(r)}else e.select();return{ok:1,type:1}}"
    "if(e.isContentEditable)e.textContent=a.value;else e.value=a.value;"
    "ev(e,'input');ev(e,'change');return{ok:1}}"
    "const o=fo();"
    "return{ok:1,x:o.x+b.left+(a.off?a.ox:b.width/2),"
    "y:o.y+b.top+(a.off?a.oy:b.height/2)}};"
    "for(;;){const r=step();if(r.ok||Date.now()>=T)return r;"
    "await new Promise(res=>{let d=0;const f=()=>{if(!d){d=1;o.disconnect();"
    "clearTimeout(t);res()}},o=new MutationObserver(f);"
    "o.observe(D||document,{subtree:true,childList:true,attributes:true,"
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
        /* Page text ("%.200s") may have been cut inside a character; the
         * message goes to JSON, BSON and Avro. */
        par_utf8_scrub(res->err_msg);
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

/* A CDP call on session sess ("" or NULL = the tab's); params borrowed. */
static par_err_t tcall(spin_t *s, const char *sess, const char *method,
                       json_t *params, int timeout_ms, json_t **result,
                       par_error_t *e)
{
        if (sess && *sess)
                return par_cdp_call(par_tab_cdp(s->tab), sess, method, params,
                                    timeout_ms, result, e);
        return par_tab_call(s->tab, method, params, timeout_ms, result, e);
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
        rc = tcall(s, s->in_sess, method, params,
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
                rc = tcall(s, s->sess, "Runtime.evaluate", params,
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

static bool uses_aria(const par_step_t *st)
{
        size_t i, j;

        for (i = 0; i < st->nselectors; i++)
                for (j = 0; j < st->selectors[i].nparts; j++)
                        if (!strncmp(st->selectors[i].parts[j], "aria/", 5))
                                return true;
        return false;
}

/* Splits an aria/ selector body, "Name[role=\"button\"][name='x']", into
 * name and role (either may come back empty), as puppeteer reads it. */
static void aria_parse(const char *sel, char *name, size_t nn, char *role,
                       size_t rn)
{
        const char *p = sel;
        char bare[512];
        size_t n = 0;

        *name = *role = '\0';
        while (*p) {
                const char *q = p, *k, *v;
                size_t kl, vl;
                char quote;

                if (*q == '[') {
                        q++;
                        while (*q == ' ')
                                q++;
                        k = q;
                        while (isalnum((unsigned char)*q) || *q == '_')
                                q++;
                        kl = (size_t)(q - k);
                        while (*q == ' ')
                                q++;
                        if (*q == '=' && (q[1] == '"' || q[1] == '\'')) {
                                quote = q[1];
                                v = q + 2;
                                q = strchr(v, quote);
                                if (q) {
                                        vl = (size_t)(q - v);
                                        q++;
                                        while (*q == ' ')
                                                q++;
                                        if (*q == ']') {
                                                if (kl == 4 &&
                                                    !strncmp(k, "role", 4))
                                                        snprintf(role, rn,
                                                                 "%.*s",
                                                                 (int)vl, v);
                                                else if (kl == 4 &&
                                                         !strncmp(k, "name", 4))
                                                        snprintf(name, nn,
                                                                 "%.*s",
                                                                 (int)vl, v);
                                                p = q + 1;
                                                continue;
                                        }
                                }
                        }
                }
                if (n + 1 < sizeof(bare))
                        bare[n++] = *p;
                p++;
        }
        bare[n] = '\0';
        if (!*name) /* [name=…] wins over the bare text */
                snprintf(name, nn, "%s", bare);
}

static void release_aria_objects(spin_t *s, int timeout_ms)
{
        json_t *p = json_pack("{s:s}", "objectGroup", "parallel-aria");
        par_error_t e = {0};

        tcall(s, s->sess, "Runtime.releaseObjectGroup", p, timeout_ms, NULL,
              &e);
        json_decref(p);
}

/* Registers, in the step's frame, the elements Chrome's accessibility tree
 * gives for each aria/ part of groups, under the part's text, as a new
 * generation the helper then reads (the way puppeteer resolves aria/:
 * Accessibility.queryAXTree, dropping ignored and text nodes). Protocol
 * errors (a frame mid-navigation) leave a part with no elements: the next
 * poll tries again. */
static par_err_t aria_register(spin_t *s, json_t *groups, int64_t deadline)
{
        static const char REG_JS[] =
            "function(k){const m=this.ownerDocument.defaultView["
            "Symbol.for('parallel.aria')];if(m)(m.s[k]||(m.s[k]=[]))"
            ".push(this)}";
        json_t *res = NULL, *g, *part, *nodes, *n;
        char *frs = NULL, *expr = NULL;
        const char *doc;
        par_err_t rc = PAR_OK;
        par_error_t e = {0};
        size_t i, j, k;
        int tmo = (int)(deadline - par_clock_mono_ms()) + 2000;

        s->aria_gen++;
        frs = json_dumps(s->fr, JSON_COMPACT);
        if (!frs ||
            asprintf(&expr,
                     "(()=>{let w=window;for(const i of %s){w=w.frames[i];"
                     "if(!w)return null}const d=w.document;"
                     "w[Symbol.for('parallel.aria')]={g:%d,s:{}};return d})()",
                     frs, s->aria_gen) < 0) {
                expr = NULL;
                rc = fail(s, PAR_SPIN_TRANSIENT, PAR_ERR_NOMEM, false,
                          "out of memory");
                goto out;
        }
        {
                json_t *p = json_pack("{s:s,s:s}", "expression", expr,
                                      "objectGroup", "parallel-aria");

                rc = tcall(s, s->sess, "Runtime.evaluate", p, tmo, &res, &e);
                json_decref(p);
        }
        if (rc == PAR_ERR_CDP) {
                rc = PAR_OK;
                goto out;
        }
        if (rc) {
                rc = cdp_fail(s, rc, &e);
                goto out;
        }
        doc = json_string_value(
            json_object_get(json_object_get(res, "result"), "objectId"));
        if (!doc || json_object_get(res, "exceptionDetails"))
                goto out; /* no such frame (yet): the helper says so */
        json_array_foreach(groups, i, g) json_array_foreach(g, j, part)
        {
                const char *sel = json_string_value(part);
                char name[512], role[64];
                json_t *q, *ax = NULL;

                if (!sel || strncmp(sel, "aria/", 5))
                        continue;
                aria_parse(sel + 5, name, sizeof(name), role, sizeof(role));
                q = json_pack("{s:s}", "objectId", doc);
                if (*name)
                        json_object_set_new(q, "accessibleName",
                                            json_string(name));
                if (*role)
                        json_object_set_new(q, "role", json_string(role));
                rc = tcall(s, s->sess, "Accessibility.queryAXTree", q, tmo, &ax,
                           &e);
                json_decref(q);
                if (rc == PAR_ERR_CDP) {
                        rc = PAR_OK;
                        continue;
                }
                if (rc) {
                        rc = cdp_fail(s, rc, &e);
                        goto out;
                }
                nodes = json_object_get(ax, "nodes");
                json_array_foreach(nodes, k, n)
                {
                        const char *r = json_string_value(json_object_get(
                            json_object_get(n, "role"), "value"));
                        json_t *bid = json_object_get(n, "backendDOMNodeId");
                        json_t *obj = NULL, *cr = NULL;
                        const char *oid;

                        if (json_is_true(json_object_get(n, "ignored")) || !r ||
                            !strcmp(r, "StaticText") ||
                            !strcmp(r, "InlineTextBox") || !bid)
                                continue;
                        q = json_pack("{s:O,s:s}", "backendNodeId", bid,
                                      "objectGroup", "parallel-aria");
                        rc = tcall(s, s->sess, "DOM.resolveNode", q, tmo, &obj,
                                   &e);
                        json_decref(q);
                        oid = json_string_value(json_object_get(
                            json_object_get(obj, "object"), "objectId"));
                        if (!rc && oid) {
                                q = json_pack("{s:s,s:s,s:[{s:s}]}", "objectId",
                                              oid, "functionDeclaration",
                                              REG_JS, "arguments", "value",
                                              sel + 5);
                                rc = tcall(s, s->sess, "Runtime.callFunctionOn",
                                           q, tmo, &cr, &e);
                                json_decref(q);
                        }
                        json_decref(obj);
                        json_decref(cr);
                        if (rc == PAR_ERR_CDP)
                                rc = PAR_OK;
                        if (rc) {
                                json_decref(ax);
                                rc = cdp_fail(s, rc, &e);
                                goto out;
                        }
                }
                json_decref(ax);
        }
out:
        release_aria_objects(s, tmo);
        json_decref(res);
        free(frs);
        free(expr);
        return rc;
}

/* Runs HELPER_JS with args (taken; "sels", "fr" set from the step) until
 * the step deadline. On success *value is the helper's {ok:1,…} (new
 * reference). With aria/ selectors the wait loops here instead, one check
 * per poll, since each check needs the accessibility tree first. */
static par_err_t helper(spin_t *s, const par_step_t *st, json_t *args,
                        int64_t deadline, json_t **value)
{
        json_t *sels = NULL, *rv = NULL, *v;
        char *a = NULL, *expr = NULL;
        bool aria = uses_aria(st);
        par_err_t rc;

        if (st->nselectors) {
                if ((rc = selectors_json(s, st, &sels)))
                        goto out;
                json_object_set_new(args, "sels", sels);
        }
        json_object_set(args, "fr", s->fr);
        json_object_set_new(args, "poll", json_integer(s->opts.poll_ms));
        for (;;) {
                int64_t left = deadline - par_clock_mono_ms();

                if (aria && (rc = aria_register(s, sels, deadline)))
                        goto out;
                json_object_set_new(args, "gen", json_integer(s->aria_gen));
                json_object_set_new(args, "t",
                                    json_integer(aria || left < 0 ? 0 : left));
                a = json_dumps(args, JSON_COMPACT | JSON_ENSURE_ASCII |
                                         JSON_ESCAPE_SLASH);
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
                        rc = fail(s, PAR_SPIN_PERMANENT, PAR_ERR_PERMANENT,
                                  false,
                                  "page helper returned no result (was the "
                                  "page replaced mid-step?)");
                        goto out;
                }
                if (json_object_get(v, "ok"))
                        break;
                if (!aria || par_clock_mono_ms() + s->opts.poll_ms > deadline) {
                        const char *why =
                            json_string_value(json_object_get(v, "why"));
                        const char *first =
                            st->nselectors
                                ? st->selectors[0]
                                      .parts[st->selectors[0].nparts - 1]
                                : "";
                        char what[230];

                        snprintf(what, sizeof(what),
                                 "%s after %d ms (selector %s%s)",
                                 why ? why : "not ready", st->timeout_ms, first,
                                 st->nselectors > 1 ? " and alternatives" : "");
                        rc = timed_out(s, deadline, false, what);
                        goto out;
                }
                json_decref(rv);
                rv = NULL;
                free(a);
                free(expr);
                a = expr = NULL;
                par_clock_sleep_ms(s->opts.poll_ms);
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

/* Where the step's out-of-process iframe sits in the page's viewport (its
 * content box): clicks go to the page, which routes them into the frame. */
static par_err_t oopif_offset(spin_t *s, int64_t deadline, double *x, double *y)
{
        json_t *p, *owner = NULL, *box = NULL, *content;
        par_error_t e = {0};
        int tmo = (int)(deadline - par_clock_mono_ms()) + 2000;
        par_err_t rc;

        *x = *y = 0;
        if (!s->oopif[0])
                return PAR_OK;
        p = json_pack("{s:s}", "frameId", s->oopif);
        rc = par_tab_call(s->tab, "DOM.getFrameOwner", p, tmo, &owner, &e);
        json_decref(p);
        if (!rc) {
                p = json_pack("{s:O}", "backendNodeId",
                              json_object_get(owner, "backendNodeId"));
                rc = par_tab_call(s->tab, "DOM.getBoxModel", p, tmo, &box, &e);
                json_decref(p);
        }
        content = json_object_get(json_object_get(box, "model"), "content");
        if (!rc && json_array_size(content) >= 2) {
                *x = json_number_value(json_array_get(content, 0));
                *y = json_number_value(json_array_get(content, 1));
        }
        json_decref(owner);
        json_decref(box);
        return rc ? cdp_fail(s, rc, &e) : PAR_OK;
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
        if (s->oopif[0]) {
                double fx, fy;

                if ((rc = oopif_offset(s, deadline, &fx, &fy)))
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
        par_error_t e;
        par_err_t rc;

        if ((rc = subst(s, st->url, PAR_SUBST_TEXT, "url", &url)))
                return rc;
        if (par_recipe_check_url(s->r, st->url, url, &e)) {
                rc = fail(s, PAR_SPIN_PERMANENT, PAR_ERR_PERMANENT, false, "%s",
                          e.msg);
                goto out;
        }
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
        rc = helper(s, st, args, deadline, &v);
        json_decref(v);
        return rc;
}

/* The session of target id tid, attaching (flattened) on first use. */
static par_err_t attach(spin_t *s, const char *tid, bool page, char *sess,
                        int64_t deadline)
{
        json_t *res = NULL;
        par_error_t e = {0};
        const char *sid;
        par_err_t rc;
        size_t i;

        for (i = 0; i < s->natt; i++)
                if (!strcmp(s->att[i].target, tid)) {
                        snprintf(sess, 64, "%s", s->att[i].session);
                        return PAR_OK;
                }
        if (s->natt == sizeof(s->att) / sizeof(s->att[0]))
                return fail(s, PAR_SPIN_PERMANENT, PAR_ERR_PERMANENT, false,
                            "more than %zu other pages and frames in one spin",
                            s->natt);
        {
                json_t *p =
                    json_pack("{s:s,s:b}", "targetId", tid, "flatten", 1);

                rc = par_cdp_call(
                    par_tab_cdp(s->tab), NULL, "Target.attachToTarget", p,
                    (int)(deadline - par_clock_mono_ms()) + 2000, &res, &e);
                json_decref(p);
        }
        if (rc)
                return cdp_fail(s, rc, &e);
        sid = json_string_value(json_object_get(res, "sessionId"));
        if (sid) {
                snprintf(s->att[s->natt].target, 64, "%s", tid);
                snprintf(s->att[s->natt].session, 64, "%s", sid);
                s->att[s->natt++].page = page;
                snprintf(sess, 64, "%s", sid);
        }
        json_decref(res);
        return sid ? PAR_OK
                   : fail(s, PAR_SPIN_TRANSIENT, PAR_ERR_CDP, false,
                          "Target.attachToTarget: no session id");
}

/* Depth-first search of a Page.getFrameTree node for a frame with url;
 * appends the child indexes leading to it to path. */
static bool frame_path(json_t *node, const char *url, json_t *path)
{
        json_t *kids = json_object_get(node, "childFrames"), *k;
        size_t i;

        json_array_foreach(kids, i, k)
        {
                const char *u = json_string_value(
                    json_object_get(json_object_get(k, "frame"), "url"));

                json_array_append_new(path, json_integer((json_int_t)i));
                if ((u && !strcmp(u, url)) || frame_path(k, url, path))
                        return true;
                json_array_remove(path, json_array_size(path) - 1);
        }
        return false;
}

/* Finds a page (a popup) or frame of this tab's browser context whose URL is
 * url. found: 0 none, 1 page (sess set), 2 out-of-process iframe of this
 * page (sess, oopif set), 3 same-process frame of this page (path set). */
static par_err_t find_target(spin_t *s, const char *url, int64_t deadline,
                             int *found, char *sess, char *oopif, json_t *path)
{
        const char *ctx = par_tab_context_id(s->tab);
        json_t *res = NULL, *infos, *ti, *tree = NULL;
        par_error_t e = {0};
        int tmo = (int)(deadline - par_clock_mono_ms()) + 2000;
        par_err_t rc;
        size_t i;

        *found = 0;
        rc = par_cdp_call(par_tab_cdp(s->tab), NULL, "Target.getTargets", NULL,
                          tmo, &res, &e);
        if (rc)
                return cdp_fail(s, rc, &e);
        infos = json_object_get(res, "targetInfos");
        json_array_foreach(infos, i, ti)
        {
                const char *tid =
                    json_string_value(json_object_get(ti, "targetId"));
                const char *type =
                    json_string_value(json_object_get(ti, "type"));
                const char *u = json_string_value(json_object_get(ti, "url"));
                const char *bc =
                    json_string_value(json_object_get(ti, "browserContextId"));

                if (!tid || !type || !u || strcmp(u, url) ||
                    !strcmp(tid, par_tab_target_id(s->tab)) ||
                    (ctx && *ctx && (!bc || strcmp(bc, ctx))))
                        continue;
                if (!strcmp(type, "page")) {
                        rc = attach(s, tid, true, sess, deadline);
                        *found = rc ? 0 : 1;
                        goto out;
                }
                if (!strcmp(type, "iframe")) {
                        /* Ours only if this page owns the frame. */
                        json_t *p = json_pack("{s:s}", "frameId", tid);
                        par_err_t orc = par_tab_call(
                            s->tab, "DOM.getFrameOwner", p, tmo, NULL, &e);

                        json_decref(p);
                        if (orc)
                                continue;
                        rc = attach(s, tid, false, sess, deadline);
                        snprintf(oopif, 64, "%s", tid);
                        *found = rc ? 0 : 2;
                        goto out;
                }
        }
        rc = par_tab_call(s->tab, "Page.getFrameTree", NULL, tmo, &tree, &e);
        if (rc) {
                rc = cdp_fail(s, rc, &e);
                goto out;
        }
        if (frame_path(json_object_get(tree, "frameTree"), url, path))
                *found = 3;
out:
        json_decref(res);
        json_decref(tree);
        return rc;
}

/* Sets where step st runs: the main page, a popup, an out-of-process
 * iframe or a frame path, waiting (until the step deadline) for a target
 * URL to appear, as the reference waits for it. */
static par_err_t resolve_target(spin_t *s, const par_step_t *st,
                                int64_t deadline)
{
        char *url = NULL;
        par_err_t rc = PAR_OK;
        size_t i;

        s->sess[0] = s->in_sess[0] = s->oopif[0] = '\0';
        json_decref(s->fr);
        s->fr = json_array();
        if (!s->fr)
                return fail(s, PAR_SPIN_TRANSIENT, PAR_ERR_NOMEM, false,
                            "out of memory");
        if (st->target) {
                if ((rc = subst(s, st->target, PAR_SUBST_TEXT, "target", &url)))
                        return rc;
                for (;;) {
                        int found;

                        if ((rc = find_target(s, url, deadline, &found, s->sess,
                                              s->oopif, s->fr)))
                                goto out;
                        if (found == 1)
                                snprintf(s->in_sess, sizeof(s->in_sess), "%s",
                                         s->sess);
                        if (found)
                                break;
                        if (par_clock_mono_ms() + s->opts.poll_ms > deadline) {
                                char what[200];

                                snprintf(what, sizeof(what),
                                         "target: no page or frame at %.150s "
                                         "after %d ms",
                                         url, st->timeout_ms);
                                rc = timed_out(s, deadline, false, what);
                                goto out;
                        }
                        par_clock_sleep_ms(s->opts.poll_ms);
                }
        }
        for (i = 0; i < st->nframe; i++)
                json_array_append_new(s->fr, json_integer(st->frame[i]));
out:
        free(url);
        return rc;
}

/* An asserted navigation of a step in another page or a frame: wait until
 * some page or frame of this tab is at the asserted URL (no URL asserted:
 * nothing to wait for; main-frame steps use wait_navigation instead). */
static par_err_t wait_target_url(spin_t *s, const par_step_t *st,
                                 int64_t deadline)
{
        char *url = NULL, sess[64], oopif[64];
        par_err_t rc;

        if (!st->nav_url)
                return PAR_OK;
        if ((rc = subst(s, st->nav_url, PAR_SUBST_TEXT, "assertedEvents url",
                        &url)))
                return rc;
        for (;;) {
                json_t *path = json_array();
                int found;

                rc = find_target(s, url, deadline, &found, sess, oopif, path);
                json_decref(path);
                if (rc || found)
                        break;
                if (par_clock_mono_ms() + s->opts.poll_ms > deadline) {
                        char what[200];

                        snprintf(what, sizeof(what),
                                 "assertedEvents: no frame navigated to "
                                 "%.120s within %d ms",
                                 url, st->timeout_ms);
                        rc = timed_out(s, deadline, true, what);
                        break;
                }
                par_clock_sleep_ms(s->opts.poll_ms);
        }
        free(url);
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
        return call(s, "Target.closeTarget",
                    json_pack("{s:s}", "targetId", tid), deadline, NULL);
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
        if (st->type == PAR_STEP_CUSTOM_STEP) {
                /* The reference replayer skips these too (an extension
                 * would run them); say so, so nobody thinks it ran. */
                par_log(PAR_LOG_WARN, "spin", "custom_step_skipped",
                        "recipe=%s step=%d name=%s why=\"customStep is not "
                        "run\"",
                        s->r->name, s->step, st->custom_name);
                return PAR_OK;
        }
        if ((rc = resolve_target(s, st, deadline)))
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
                rc = wait_target_url(s, st, deadline);
        } else if (!rc && st->expect_navigation &&
                   st->type != PAR_STEP_NAVIGATE) {
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
