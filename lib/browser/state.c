/*
 * state.c — capture and restore of a context's session (see state.h).
 *
 * Why a detour through the Fetch domain for storage: DOMStorage and page JS
 * both need a frame of the origin, and loading the site's real page would
 * run the site's scripts (and send it a request) before its storage is in
 * place. Fulfilling the navigation from the browser gives an empty
 * document of the right origin at no cost to the site.
 */
#include "browser/state.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOAD_TIMEOUT_MS 10000

/* par_tab_call taking params (session == false: the browser connection,
 * where Storage.* calls with a browserContextId belong). */
static par_err_t call(par_tab_t *t, bool session, const char *method,
                      json_t *params, int timeout_ms, json_t **res,
                      par_error_t *err)
{
        par_err_t rc;

        if (session)
                rc = par_tab_call(t, method, params, timeout_ms, res, err);
        else
                rc = par_cdp_call(par_tab_cdp(t), NULL, method, params,
                                  timeout_ms > 0 ? timeout_ms : LOAD_TIMEOUT_MS,
                                  res, err);
        json_decref(params);
        return rc;
}

/* The page-side reader: the main frame's origin and its two storages. */
static const char READ_JS[] =
    "(()=>{try{if(!/^https?:$/.test(location.protocol))return null;"
    "const d=s=>{const r={};for(let i=0;i<s.length;i++){const k=s.key(i);"
    "r[k]=s.getItem(k)}return r};"
    "return{origin:location.origin,local:d(localStorage),"
    "session:d(sessionStorage)}}catch(e){return null}})()";

/* The fields Storage.setCookies accepts, out of a Network.Cookie. */
static json_t *cookie_param(json_t *ck)
{
        static const char *const keep[] = {
            "name",         "value",      "domain",       "path",
            "httpOnly",     "secure",     "sameSite",     "priority",
            "sourceScheme", "sourcePort", "partitionKey", NULL};
        json_t *p = json_object();

        if (!p)
                return NULL;
        for (int i = 0; keep[i]; i++) {
                json_t *v = json_object_get(ck, keep[i]);
                if (v)
                        json_object_set(p, keep[i], v);
        }
        if (!json_is_true(json_object_get(ck, "session")) &&
            json_object_get(ck, "expires"))
                json_object_set(p, "expires", json_object_get(ck, "expires"));
        return p;
}

par_err_t par_state_capture(par_tab_t *t, json_t **out, par_error_t *err)
{
        json_t *r = NULL, *snap = NULL, *cookies, *origins, *prev, *val;
        json_t *ck;
        size_t i;
        par_err_t rc;

        if ((rc = call(
                 t, false, "Storage.getCookies",
                 json_pack("{s:s}", "browserContextId", par_tab_context_id(t)),
                 0, &r, err)))
                goto fail;
        cookies = json_array();
        json_array_foreach(json_object_get(r, "cookies"), i, ck)
            json_array_append_new(cookies, cookie_param(ck));
        json_decref(r);
        r = NULL;
        prev = par_tab_saved_state(t);
        origins = json_deep_copy(json_object_get(prev, "origins"));
        if (!json_is_object(origins)) {
                json_decref(origins);
                origins = json_object();
        }
        snap = json_pack("{s:i,s:o,s:o}", "v", 1, "cookies", cookies, "origins",
                         origins);
        if (!snap) {
                rc = par_error_set(err, PAR_ERR_NOMEM, "out of memory");
                goto fail;
        }
        if ((rc = call(t, true, "Runtime.evaluate",
                       json_pack("{s:s,s:b}", "expression", READ_JS,
                                 "returnByValue", 1),
                       0, &r, err)))
                goto fail;
        val = json_object_get(json_object_get(r, "result"), "value");
        if (json_is_object(val) &&
            json_is_string(json_object_get(val, "origin"))) {
                const char *o =
                    json_string_value(json_object_get(val, "origin"));
                json_t *ent = json_pack(
                    "{s:O,s:O}", "local", json_object_get(val, "local"),
                    "session", json_object_get(val, "session"));
                if (ent)
                        json_object_set_new(origins, o, ent);
        }
        json_decref(r);
        par_tab_set_saved_state(t, snap);
        *out = snap;
        return PAR_OK;
fail:
        json_decref(r);
        json_decref(snap);
        par_error_prefix(err, "session capture");
        return rc;
}

/* Waits for the tab's load event, answering any request the Fetch domain
 * pauses meanwhile with an empty HTML document. */
static par_err_t load_blank(par_tab_t *t, par_cdp_waiter_t *w, const char *url,
                            int timeout_ms, par_error_t *err)
{
        static const char EMPTY_B64[] =
            "PCFkb2N0eXBlIGh0bWw+"; /* <!doctype html> */
        par_err_t rc;

        char *js = NULL;
        json_t *u = json_string(url);
        char *lit = u ? json_dumps(u, JSON_ENCODE_ANY) : NULL;

        /* Page.navigate would not answer before the response, which only
         * comes once we fulfil the paused request below: start the
         * navigation from the page instead. */
        json_decref(u);
        if (!lit || asprintf(&js, "location.href=%s", lit) < 0)
                js = NULL;
        free(lit);
        if (!js)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        rc = call(t, true, "Runtime.evaluate",
                  json_pack("{s:s}", "expression", js), timeout_ms, NULL, err);
        free(js);
        if (rc)
                return rc;
        for (;;) {
                json_t *ev = NULL;
                const char *m;

                if ((rc = par_cdp_waiter_wait(w, timeout_ms, &ev, err)))
                        return rc;
                m = json_string_value(json_object_get(ev, "method"));
                if (m && !strcmp(m, "Page.loadEventFired")) {
                        json_decref(ev);
                        return PAR_OK;
                }
                if (m && !strcmp(m, "Fetch.requestPaused")) {
                        const char *id = json_string_value(json_object_get(
                            json_object_get(ev, "params"), "requestId"));
                        par_error_t fe;

                        /* A late request (after Fetch.disable, or one the
                         * page dropped) may be gone: not our failure. */
                        call(t, true, "Fetch.fulfillRequest",
                             json_pack("{s:s,s:i,s:[{s:s,s:s}],s:s}",
                                       "requestId", id ? id : "",
                                       "responseCode", 200, "responseHeaders",
                                       "name", "Content-Type", "value",
                                       "text/html", "body", EMPTY_B64),
                             timeout_ms, NULL, &fe);
                }
                json_decref(ev);
        }
}

par_err_t par_state_restore(par_tab_t *t, const json_t *snap, int timeout_ms,
                            par_error_t *err)
{
        static const char *const events[] = {"Page.loadEventFired",
                                             "Fetch.requestPaused", NULL};
        json_t *cookies = json_object_get(snap, "cookies");
        json_t *origins = json_object_get(snap, "origins"), *ent;
        par_cdp_waiter_t *w = NULL;
        const char *origin;
        bool fetching = false, navigated = false;
        par_err_t rc = PAR_OK;

        if (timeout_ms <= 0)
                timeout_ms = LOAD_TIMEOUT_MS;
        if (!json_is_object(snap) ||
            json_integer_value(json_object_get(snap, "v")) != 1)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "session restore: not a version 1 "
                                     "snapshot");
        if (json_array_size(cookies) &&
            (rc = call(t, false, "Storage.setCookies",
                       json_pack("{s:O,s:s}", "cookies", cookies,
                                 "browserContextId", par_tab_context_id(t)),
                       timeout_ms, NULL, err)))
                goto out;
        json_object_foreach(origins, origin, ent)
        {
                char url[2048], *js = NULL, *data;
                json_t *r = NULL;

                if (!json_object_size(json_object_get(ent, "local")) &&
                    !json_object_size(json_object_get(ent, "session")))
                        continue;
                if (strncmp(origin, "http://", 7) &&
                    strncmp(origin, "https://", 8))
                        continue;
                if (!w && (rc = par_tab_waiter_new(t, events, &w, err)))
                        goto out;
                if (!fetching) {
                        if ((rc = call(t, true, "Fetch.enable",
                                       json_pack("{s:[{s:s}]}", "patterns",
                                                 "urlPattern", "*"),
                                       timeout_ms, NULL, err)))
                                goto out;
                        fetching = true;
                }
                snprintf(url, sizeof(url), "%s/", origin);
                navigated = true;
                if ((rc = load_blank(t, w, url, timeout_ms, err)))
                        goto out;
                data = json_dumps(ent, JSON_COMPACT | JSON_ENSURE_ASCII);
                if (!data ||
                    asprintf(&js,
                             "((d)=>{for(const[k,v]of Object.entries("
                             "d.local||{}))localStorage.setItem(k,v);"
                             "for(const[k,v]of Object.entries(d.session||{}))"
                             "sessionStorage.setItem(k,v);return 1})(%s)",
                             data) < 0)
                        js = NULL;
                free(data);
                if (!js) {
                        rc = par_error_set(err, PAR_ERR_NOMEM, "out of memory");
                        goto out;
                }
                rc = call(t, true, "Runtime.evaluate",
                          json_pack("{s:s,s:b}", "expression", js,
                                    "returnByValue", 1),
                          timeout_ms, &r, err);
                free(js);
                if (!rc && json_object_get(r, "exceptionDetails"))
                        rc = par_error_set(err, PAR_ERR_CDP,
                                           "writing the storage of %.100s "
                                           "threw",
                                           origin);
                json_decref(r);
                if (rc)
                        goto out;
        }
        if (fetching) {
                par_tab_call(t, "Fetch.disable", NULL, timeout_ms, NULL, err);
                fetching = false;
        }
        if (navigated &&
            (rc = load_blank(t, w, "about:blank", timeout_ms, err)))
                goto out;
        par_tab_set_saved_state(t, (json_t *)snap);
out:
        if (fetching) {
                par_error_t e;
                par_tab_call(t, "Fetch.disable", NULL, timeout_ms, NULL, &e);
        }
        par_cdp_waiter_destroy(w);
        if (rc)
                par_error_prefix(err, "session restore");
        return rc;
}
