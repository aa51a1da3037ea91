/*
 * selector.c — where a step acts: its selector groups resolved in the page
 * (CSS, xpath/, text/, aria/ from Chrome's accessibility tree, pierce/,
 * through open shadow roots) by one page-side helper that waits for the
 * element to be ready, frame paths, and the target a step names (a popup
 * or an out-of-process iframe), attached on first use.
 *
 * What stays out: the steps themselves (spin.c), which call in here, and
 * the CDP plumbing and failure record (page.c), which this calls.
 */
#include "browser/spin_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"

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

                        if (spin_subst(s, st->selectors[i].parts[j],
                                       PAR_SUBST_TEXT, "selectors", &v)) {
                                json_decref(groups);
                                return PAR_ERR_PERMANENT;
                        }
                        json_array_append_new(g, json_string(v));
                        free(v);
                }
        }
        if (!groups)
                return spin_fail(s, PAR_SPIN_TRANSIENT, PAR_ERR_NOMEM, false,
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

        spin_tcall(s, s->sess, "Runtime.releaseObjectGroup", p, timeout_ms,
                   NULL, &e);
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
                rc = spin_fail(s, PAR_SPIN_TRANSIENT, PAR_ERR_NOMEM, false,
                               "out of memory");
                goto out;
        }
        {
                json_t *p = json_pack("{s:s,s:s}", "expression", expr,
                                      "objectGroup", "parallel-aria");

                rc = spin_tcall(s, s->sess, "Runtime.evaluate", p, tmo, &res,
                                &e);
                json_decref(p);
        }
        if (rc == PAR_ERR_CDP) {
                rc = PAR_OK;
                goto out;
        }
        if (rc) {
                rc = spin_cdp_fail(s, rc, &e);
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
                rc = spin_tcall(s, s->sess, "Accessibility.queryAXTree", q, tmo,
                                &ax, &e);
                json_decref(q);
                if (rc == PAR_ERR_CDP) {
                        rc = PAR_OK;
                        continue;
                }
                if (rc) {
                        rc = spin_cdp_fail(s, rc, &e);
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
                        rc = spin_tcall(s, s->sess, "DOM.resolveNode", q, tmo,
                                        &obj, &e);
                        json_decref(q);
                        oid = json_string_value(json_object_get(
                            json_object_get(obj, "object"), "objectId"));
                        if (!rc && oid) {
                                q = json_pack("{s:s,s:s,s:[{s:s}]}", "objectId",
                                              oid, "functionDeclaration",
                                              REG_JS, "arguments", "value",
                                              sel + 5);
                                rc = spin_tcall(s, s->sess,
                                                "Runtime.callFunctionOn", q,
                                                tmo, &cr, &e);
                                json_decref(q);
                        }
                        json_decref(obj);
                        json_decref(cr);
                        if (rc == PAR_ERR_CDP)
                                rc = PAR_OK;
                        if (rc) {
                                json_decref(ax);
                                rc = spin_cdp_fail(s, rc, &e);
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
par_err_t selector_helper(spin_t *s, const par_step_t *st, json_t *args,
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
                        rc = spin_fail(s, PAR_SPIN_TRANSIENT, PAR_ERR_NOMEM,
                                       false, "out of memory");
                        goto out;
                }
                if ((rc = spin_evaluate(s, expr, deadline, &rv)))
                        goto out;
                v = json_object_get(rv, "value");
                if (!json_is_object(v)) {
                        rc = spin_fail(
                            s, PAR_SPIN_PERMANENT, PAR_ERR_PERMANENT, false,
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
                        rc = spin_timed_out(s, deadline, false, what);
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
par_err_t selector_oopif_offset(spin_t *s, int64_t deadline, double *x,
                                double *y)
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
        return rc ? spin_cdp_fail(s, rc, &e) : PAR_OK;
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
                return spin_fail(
                    s, PAR_SPIN_PERMANENT, PAR_ERR_PERMANENT, false,
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
                return spin_cdp_fail(s, rc, &e);
        sid = json_string_value(json_object_get(res, "sessionId"));
        if (sid) {
                snprintf(s->att[s->natt].target, 64, "%s", tid);
                snprintf(s->att[s->natt].session, 64, "%s", sid);
                s->att[s->natt++].page = page;
                snprintf(sess, 64, "%s", sid);
        }
        json_decref(res);
        return sid ? PAR_OK
                   : spin_fail(s, PAR_SPIN_TRANSIENT, PAR_ERR_CDP, false,
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
                return spin_cdp_fail(s, rc, &e);
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
                rc = spin_cdp_fail(s, rc, &e);
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
par_err_t selector_resolve_target(spin_t *s, const par_step_t *st,
                                  int64_t deadline)
{
        char *url = NULL;
        par_err_t rc = PAR_OK;
        size_t i;

        s->sess[0] = s->in_sess[0] = s->oopif[0] = '\0';
        json_decref(s->fr);
        s->fr = json_array();
        if (!s->fr)
                return spin_fail(s, PAR_SPIN_TRANSIENT, PAR_ERR_NOMEM, false,
                                 "out of memory");
        if (st->target) {
                if ((rc = spin_subst(s, st->target, PAR_SUBST_TEXT, "target",
                                     &url)))
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
                                rc = spin_timed_out(s, deadline, false, what);
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
par_err_t selector_wait_target_url(spin_t *s, const par_step_t *st,
                                   int64_t deadline)
{
        char *url = NULL, sess[64], oopif[64];
        par_err_t rc;

        if (!st->nav_url)
                return PAR_OK;
        if ((rc = spin_subst(s, st->nav_url, PAR_SUBST_TEXT,
                             "assertedEvents url", &url)))
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
                        rc = spin_timed_out(s, deadline, true, what);
                        break;
                }
                par_clock_sleep_ms(s->opts.poll_ms);
        }
        free(url);
        return rc;
}
