/*
 * stager.c — browser contexts and the tabs in them: preparing, handing out,
 * disposing of, and the resource contexts (see chrome.h on state scopes).
 *
 * What stays out: browsers themselves (launch, connect, health checks,
 * kill, relaunch, recycling) and the pool's lifecycle are chrome.c's; this
 * file calls nothing there (chrome_int.h). It holds the references tabs
 * keep on instances and the acquire's wait for a live browser of its slot
 * (the supervisor provides it).
 *
 * The stager thread keeps each live browser stocked with prepared contexts
 * and disposes of used ones, so creating and disposing of contexts — six
 * CDP calls to make one, one to dispose of it, tens of milliseconds of
 * browser work — stays off the spin's path; it also expires idle resource
 * contexts.
 */
#include "browser/chrome.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"
#include "browser/chrome_int.h"

#define CLOSE_TIMEOUT_MS 5000 /* disposing of a context */

/* chrome->mu held. Drops one reference; returns the instance to free (its
 * cdp must be destroyed outside the lock) or NULL. */
static struct inst *inst_unref_locked(struct inst *in)
{
        return --in->refs == 0 ? in : NULL;
}

void chrome_inst_free(struct inst *in)
{
        if (!in)
                return;
        par_cdp_destroy(in->cdp);
        free(in);
}

void chrome_inst_unref(par_chrome_t *c, struct inst *in)
{
        struct inst *f;
        pthread_mutex_lock(&c->mu);
        f = inst_unref_locked(in);
        pthread_mutex_unlock(&c->mu);
        chrome_inst_free(f);
}

/* chrome->mu held: is the instance fit to hand out tabs of? */
static bool inst_usable_locked(struct inst *in)
{
        return in && !in->dead && !in->recycle && par_cdp_connected(in->cdp);
}

/* Undoes the in_use count of an acquire (chrome->mu held). */
static void inst_done_locked(par_chrome_t *c, struct inst *in)
{
        if (--in->in_use == 0 && in->recycle)
                pthread_cond_signal(&c->sup_cond); /* recycle it now */
}

static void inst_done(par_chrome_t *c, struct inst *in)
{
        pthread_mutex_lock(&c->mu);
        inst_done_locked(c, in);
        pthread_mutex_unlock(&c->mu);
}

/*
 * Gives a reference to the slot's live instance and counts the caller as
 * in_use, asking the supervisor for a (re)launch when there is none.
 */
static par_err_t slot_get(par_chrome_t *c, struct slot *s, struct inst **out,
                          par_error_t *err)
{
        struct timespec dl;
        uint64_t gen = 0;
        bool asked = false;
        par_err_t rc = PAR_OK;
        int wait_ms = c->o.start_timeout_ms + c->o.backoff_max_ms +
                      2 * c->o.call_timeout_ms + 5000;

        par_clock_deadline(&dl, wait_ms);
        pthread_mutex_lock(&c->mu);
        s->wanted = true;
        for (;;) {
                struct inst *in = s->inst;
                if (in && !in->dead && !in->recycle &&
                    par_cdp_connected(in->cdp)) {
                        in->refs++;
                        in->in_use++;
                        *out = in;
                        break;
                }
                if (c->stop) {
                        rc = par_error_set(err, PAR_ERR_CANCELLED,
                                           "chrome: shutting down");
                        break;
                }
                if (asked && s->attempts != gen && !s->inst) {
                        rc = par_error_set(err, s->last_err.code, "%s",
                                           s->last_err.msg);
                        break;
                }
                if (!asked) {
                        gen = s->attempts;
                        asked = true;
                }
                s->requested = true;
                pthread_cond_signal(&c->sup_cond);
                if (pthread_cond_timedwait(&c->cond, &c->mu, &dl) ==
                    ETIMEDOUT) {
                        rc = par_error_set(err, PAR_ERR_TIMEOUT,
                                           "chrome: no browser for slot %d "
                                           "within %d ms",
                                           s->index, wait_ms);
                        break;
                }
        }
        pthread_mutex_unlock(&c->mu);
        return rc;
}

struct slot *chrome_slot_of(par_chrome_t *c, int worker)
{
        return &c->slots[worker % c->nslots];
}

/* Disposes of a tab's context (which closes its target) or, without one,
 * closes the target (best effort), and frees the tab. */
static void tab_drop(par_chrome_t *c, par_tab_t *t)
{
        par_cdp_t *cdp = t->inst->cdp;

        if (par_cdp_connected(cdp)) {
                par_error_t e;
                if (*t->context_id)
                        par_cdp_call_take(cdp, NULL,
                                          "Target.disposeBrowserContext",
                                          json_pack("{s:s}", "browserContextId",
                                                    t->context_id),
                                          CLOSE_TIMEOUT_MS, NULL, &e);
                else if (*t->target_id)
                        par_cdp_call_take(
                            cdp, NULL, "Target.closeTarget",
                            json_pack("{s:s}", "targetId", t->target_id),
                            CLOSE_TIMEOUT_MS, NULL, &e);
        }
        if (*t->session_id)
                par_cdp_session_forget(cdp, t->session_id);
        pthread_mutex_lock(&c->mu);
        if (*t->context_id)
                c->st.contexts_disposed++;
        c->st.tabs_open--;
        pthread_mutex_unlock(&c->mu);
        json_decref(t->saved);
        chrome_inst_unref(c, t->inst);
        free(t);
}

/* chrome->mu held: queue t for the stager to dispose of. */
static void trash_locked(par_chrome_t *c, par_tab_t *t)
{
        t->next = c->trash;
        c->trash = t;
        c->ntrash++;
        pthread_cond_signal(&c->stage_cond);
}

static void rctx_unlink(par_chrome_t *c, struct rctx *e)
{
        if (e->prev)
                e->prev->next = e->next;
        else
                c->lru = e->next;
        if (e->next)
                e->next->prev = e->prev;
        else
                c->mru = e->prev;
        e->prev = e->next = NULL;
        c->nres--;
}

static void rctx_push_mru(par_chrome_t *c, struct rctx *e)
{
        e->prev = c->mru;
        e->next = NULL;
        if (c->mru)
                c->mru->next = e;
        else
                c->lru = e;
        c->mru = e;
        c->nres++;
}

static struct rctx *rctx_find(par_chrome_t *c, const char *key)
{
        for (struct rctx *e = c->mru; e; e = e->prev)
                if (!strcmp(e->key, key))
                        return e;
        return NULL;
}

/* chrome->mu held: unlinks an idle entry, queues its tab for disposal. */
static void rctx_evict_locked(par_chrome_t *c, struct rctx *e)
{
        rctx_unlink(c, e);
        if (e->tab) {
                e->tab->res = NULL;
                trash_locked(c, e->tab);
        }
        free(e->key);
        free(e);
}

/* A new browser context with one about:blank target, attached, Page and
 * Runtime enabled. On success the tab owns the caller's reference to `in`;
 * on failure the caller still owns it. Any thread. */
static par_err_t tab_create(par_chrome_t *c, struct inst *in, par_tab_t **out,
                            par_error_t *err)
{
        par_tab_t *t = calloc(1, sizeof(*t));
        par_cdp_t *cdp = in->cdp;
        int to = c->o.call_timeout_ms;
        json_t *r = NULL;
        par_err_t rc;

        if (!t)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        t->chrome = c;
        t->inst = in;
        t->worker = -1;
        t->scope = PAR_STATE_SPIN;
        pthread_mutex_lock(&c->mu);
        c->st.tabs_open++; /* tab_drop counts it out, on any path */
        pthread_mutex_unlock(&c->mu);
        if ((rc = par_cdp_call(cdp, NULL, "Target.createBrowserContext", NULL,
                               to, &r, err)))
                goto fail;
        snprintf(t->context_id, sizeof(t->context_id), "%s",
                 json_string_value(json_object_get(r, "browserContextId")));
        json_decref(r);
        r = NULL;
        if ((rc =
                 par_cdp_call_take(cdp, NULL, "Target.createTarget",
                                   json_pack("{s:s,s:s}", "url", "about:blank",
                                             "browserContextId", t->context_id),
                                   to, &r, err)))
                goto fail;
        snprintf(t->target_id, sizeof(t->target_id), "%s",
                 json_string_value(json_object_get(r, "targetId")));
        json_decref(r);
        r = NULL;
        if ((rc = par_cdp_call_take(
                 cdp, NULL, "Target.attachToTarget",
                 json_pack("{s:s,s:b}", "targetId", t->target_id, "flatten", 1),
                 to, &r, err)))
                goto fail;
        snprintf(t->session_id, sizeof(t->session_id), "%s",
                 json_string_value(json_object_get(r, "sessionId")));
        json_decref(r);
        r = NULL;
        if ((rc = par_cdp_call(cdp, t->session_id, "Page.enable", NULL, to,
                               NULL, err)) ||
            (rc = par_cdp_call_take(
                 cdp, t->session_id, "Page.setLifecycleEventsEnabled",
                 json_pack("{s:b}", "enabled", 1), to, NULL, err)) ||
            (rc = par_cdp_call(cdp, t->session_id, "Runtime.enable", NULL, to,
                               NULL, err)))
                goto fail;
        pthread_mutex_lock(&c->mu);
        c->st.tabs_created++;
        pthread_mutex_unlock(&c->mu);
        *out = t;
        return PAR_OK;
fail:
        json_decref(r);
        par_error_prefix(err, "chrome: new context");
        pthread_mutex_lock(&c->mu);
        in->refs++; /* tab_drop drops one; the caller keeps its own */
        pthread_mutex_unlock(&c->mu);
        tab_drop(c, t);
        return rc;
}

/*
 * chrome->mu held: unlinks and returns the next tab to dispose of, or NULL
 * to leave them all for later. Disposing of a context is browser work (tens
 * of ms on its UI thread) that would slow a spin running on that browser,
 * and nobody waits for it: a tab waits while its browser has a tab
 * acquired, or its browser is gone (nothing to compete with), unless more
 * used contexts wait than there are workers: then the oldest goes, so
 * they cannot pile up under full load. The oldest of an idle browser goes
 * first (with several browsers one of them is often idle).
 */
static par_tab_t *trash_take_locked(par_chrome_t *c)
{
        par_tab_t **pp, **pick = NULL, **oldest = NULL;

        for (pp = &c->trash; *pp; pp = &(*pp)->next) {
                struct inst *in = (*pp)->inst;
                oldest = pp; /* the list is newest first */
                if (in->in_use == 0 || in->dead || !par_cdp_connected(in->cdp))
                        pick = pp;
        }
        if (!pick && c->ntrash > c->nworkers)
                pick = oldest;
        if (pick) {
                par_tab_t *t = *pick;
                *pick = t->next;
                t->next = NULL;
                c->ntrash--;
                return t;
        }
        return NULL;
}

/* chrome->mu held: prepared or being prepared in s for its live browser. */
static int slot_have_locked(struct slot *s)
{
        return inst_usable_locked(s->inst) ? s->nstock + s->preparing : 0;
}

/*
 * chrome->mu held: should the stager prepare a context for s now? While a
 * tab of its browser is acquired, only as many as an acquire may be about
 * to need: one per worker of the slot, or with shared browsers one per
 * worker in the whole pool (another browser's stock serves the next spin
 * as well); beyond that (chrome.ready_contexts > 1) only while the browser
 * is idle, so preparing does not take its UI thread and the CPU from a
 * running spin.
 */
static bool slot_wants_stock_locked(par_chrome_t *c, struct slot *s, double now)
{
        int have = slot_have_locked(s), pool = 0;

        if (!s->wanted || !inst_usable_locked(s->inst) ||
            have >= s->stock_target || now < s->stock_pause)
                return false;
        if (s->inst->in_use == 0)
                return true;
        if (!c->floating)
                return have < s->workers;
        for (int i = 0; i < c->nslots; i++)
                pool += slot_have_locked(&c->slots[i]);
        return pool < c->nworkers;
}

/* ---- the stager thread -------------------------------------------------
 *
 * One pass: queue stale stock (its browser died, was replaced or is due
 * for recycling) and idle resource contexts for disposal; then prepare one
 * context and dispose of one tab, each outside the lock, when they are due
 * (slot_wants_stock_locked, trash_take_locked: work nobody waits for yet
 * waits for its browser to be idle). Alternating keeps both queues moving
 * under load; preparing first keeps a disposal (tens of ms of browser
 * work, nobody waits for it) from delaying the context the next spin may
 * be waiting for. A preparation failure (a browser going away) pauses that
 * slot's preparation briefly instead of spinning.
 */
static void *stager_main(void *arg)
{
        par_chrome_t *c = arg;
        int rr = 0; /* round robin over slots */

        pthread_mutex_lock(&c->mu);
        while (!c->stage_stop) {
                double now = par_clock_mono_s();
                par_tab_t *drop = NULL, *made = NULL;
                struct slot *fill = NULL;
                struct inst *in = NULL;
                par_error_t e;

                for (int i = 0; i < c->nslots; i++) {
                        struct slot *s = &c->slots[i];
                        par_tab_t **pp = &s->stock;
                        while (*pp) {
                                par_tab_t *t = *pp;
                                if (t->inst == s->inst &&
                                    inst_usable_locked(t->inst) &&
                                    !par_cdp_session_dead(t->inst->cdp,
                                                          t->session_id)) {
                                        pp = &t->next;
                                        continue;
                                }
                                *pp = t->next;
                                s->nstock--;
                                trash_locked(c, t);
                        }
                }
                for (struct rctx *r = c->lru, *nx; r; r = nx) {
                        nx = r->next;
                        if (r->busy)
                                continue;
                        if (now - r->last_used >
                                c->o.resource_idle_ms / 1000.0 ||
                            !inst_usable_locked(r->tab->inst)) {
                                c->st.resource_evicted++;
                                rctx_evict_locked(c, r);
                        }
                }
                if ((drop = trash_take_locked(c)))
                        c->disposing++;
                /* Round robin, an idle browser first: its UI thread has
                 * no spin to slow down. */
                for (int k = 0; k < c->nslots; k++) {
                        struct slot *s = &c->slots[(rr + k) % c->nslots];
                        if (slot_wants_stock_locked(c, s, now) &&
                            (!fill ||
                             (fill->inst->in_use > 0 && s->inst->in_use == 0)))
                                fill = s;
                }
                if (fill) {
                        in = fill->inst;
                        in->refs++;
                        fill->preparing++;
                        c->st.contexts_preparing++;
                        rr = (fill->index + 1) % c->nslots;
                }
                if (!drop && !fill) {
                        struct timespec dl;
                        clock_gettime(CLOCK_MONOTONIC, &dl);
                        dl.tv_sec += 1;
                        pthread_cond_timedwait(&c->stage_cond, &c->mu, &dl);
                        continue;
                }
                pthread_mutex_unlock(&c->mu);
                if (fill) {
                        double t1 = par_clock_mono_s();
                        if (tab_create(c, in, &made, &e)) {
                                par_log(
                                    PAR_LOG_DEBUG, "chrome", "prepare_failed",
                                    "slot=%d error=\"%s\"", fill->index, e.msg);
                                chrome_inst_unref(c, in);
                                made = NULL;
                        }
                        par_log(PAR_LOG_DEBUG, "chrome", "prepared", "ms=%.0f",
                                (par_clock_mono_s() - t1) * 1000);
                        pthread_mutex_lock(&c->mu);
                        fill->preparing--;
                        c->st.contexts_preparing--;
                        if (!made)
                                fill->stock_pause = par_clock_mono_s() + 0.2;
                        else if (made->inst != fill->inst) {
                                trash_locked(c, made);
                        } else {
                                made->next = fill->stock;
                                fill->stock = made;
                                fill->nstock++;
                        }
                        /* an acquire may be waiting for this one */
                        pthread_cond_broadcast(&c->cond);
                        pthread_mutex_unlock(&c->mu);
                }
                if (drop) {
                        double t0 = par_clock_mono_s();
                        tab_drop(c, drop);
                        par_log(PAR_LOG_DEBUG, "chrome", "disposed", "ms=%.0f",
                                (par_clock_mono_s() - t0) * 1000);
                }
                pthread_mutex_lock(&c->mu);
                if (drop)
                        c->disposing--;
        }
        pthread_mutex_unlock(&c->mu);
        return NULL;
}

/* chrome->mu held: contexts of in waiting for disposal. */
static int trash_of_locked(par_chrome_t *c, struct inst *in)
{
        int n = 0;

        for (par_tab_t *t = c->trash; t; t = t->next)
                n += t->inst == in;
        return n;
}

/* chrome->mu held: is slot a a better pick than b (see pick_slot_locked)? */
static bool slot_better_locked(par_chrome_t *c, struct slot *a, struct slot *b)
{
        struct inst *x = a->inst, *y = b->inst;
        int xw, yw;

        if ((a->nstock > 0) != (b->nstock > 0))
                return a->nstock > 0;
        if ((a->preparing > 0) != (b->preparing > 0))
                return a->preparing > 0;
        if (x->in_use != y->in_use)
                return x->in_use < y->in_use;
        xw = a->preparing + trash_of_locked(c, x);
        yw = b->preparing + trash_of_locked(c, y);
        if (xw != yw)
                return xw < yw;
        return a->picked < b->picked;
}

/*
 * chrome->mu held, shared browsers: the slot a clean context should come
 * from, or NULL when no browser is live. First one with a prepared context
 * in stock (then one preparing, whose context is further along than one
 * made from scratch), then the fewest tabs in use, the least context work
 * queued on it, and the one picked longest ago. A browser does its context
 * work mostly on its single UI thread, so at low concurrency consecutive
 * spins alternate between browsers and each prepares and disposes of
 * contexts while another runs the spin.
 */
static struct slot *pick_slot_locked(par_chrome_t *c)
{
        struct slot *best = NULL;

        for (int i = 0; i < c->nslots; i++) {
                struct slot *s = &c->slots[i];
                if (inst_usable_locked(s->inst) &&
                    (!best || slot_better_locked(c, s, best)))
                        best = s;
        }
        return best;
}

/*
 * The slot and a reference to the live browser a clean context for worker
 * comes from, counted in_use: the worker's own slot, or with shared
 * browsers the best pick (every shared browser is wanted, so the
 * supervisor starts them all; before any is live the worker waits for its
 * own slot's).
 */
static par_err_t browser_get(par_chrome_t *c, int worker, struct slot **sp,
                             struct inst **out, par_error_t *err)
{
        struct slot *s = NULL;
        par_err_t rc;

        if (c->floating) {
                bool start = false;
                pthread_mutex_lock(&c->mu);
                for (int i = 0; i < c->nslots; i++) {
                        start |= !c->slots[i].inst && !c->slots[i].wanted;
                        c->slots[i].wanted = true;
                }
                if (start)
                        pthread_cond_signal(&c->sup_cond);
                if ((s = pick_slot_locked(c))) {
                        s->picked = ++c->picks;
                        s->inst->refs++;
                        s->inst->in_use++;
                        *out = s->inst;
                }
                pthread_mutex_unlock(&c->mu);
        }
        if (!s) {
                s = chrome_slot_of(c, worker);
                if ((rc = slot_get(c, s, out, err)))
                        return rc;
        }
        *sp = s;
        return PAR_OK;
}

/*
 * A clean context for worker: from the stock of the slot browser_get
 * picks (waiting for the one the stager is preparing when the stock is
 * empty), or made now. The returned tab's instance counts it in_use.
 */
static par_err_t clean_tab(par_chrome_t *c, int worker, par_tab_t **out,
                           par_error_t *err)
{
        struct slot *s = NULL;
        struct inst *in = NULL;
        par_tab_t *t = NULL, **pp;
        struct timespec dl;
        bool waited = false;
        par_err_t rc;

        if ((rc = browser_get(c, worker, &s, &in, err)))
                return rc;
        par_clock_deadline(&dl, c->o.call_timeout_ms);
        pthread_mutex_lock(&c->mu);
        for (;;) {
                for (pp = &s->stock; *pp; pp = &(*pp)->next) {
                        if ((*pp)->inst == in &&
                            !par_cdp_session_dead(in->cdp, (*pp)->session_id)) {
                                t = *pp;
                                *pp = t->next;
                                t->next = NULL;
                                s->nstock--;
                                break;
                        }
                }
                /* The stock is empty but the stager is making one: it is
                 * further along than a context made from scratch here
                 * would be, and a second one in parallel would only split
                 * the browser's time between the two. */
                if (t || !s->preparing || s->inst != in ||
                    !inst_usable_locked(in) || c->stop || c->stage_stop)
                        break;
                waited = true;
                if (pthread_cond_timedwait(&c->cond, &c->mu, &dl) == ETIMEDOUT)
                        break;
        }
        if (t) {
                c->st.contexts_ready++;
                if (waited)
                        c->st.contexts_waited++;
                in->refs--; /* the stocked tab holds its own reference */
        } else {
                c->st.contexts_missed++;
        }
        pthread_cond_signal(&c->stage_cond); /* restock */
        pthread_mutex_unlock(&c->mu);
        if (!t && (rc = tab_create(c, in, &t, err))) {
                /* A broken browser is noticed by the next health check. */
                inst_done(c, in);
                chrome_inst_unref(c, in);
                return rc;
        }
        *out = t;
        return PAR_OK;
}

/* Resource scope: the resource's tab, or a clean one made its own. */
static par_err_t resource_tab(par_chrome_t *c, int worker, const char *key,
                              par_tab_t **out, par_error_t *err)
{
        struct timespec dl;
        struct rctx *e;
        par_tab_t *t = NULL;
        par_err_t rc;

        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_sec += c->o.call_timeout_ms / 1000 + 1;
        pthread_mutex_lock(&c->mu);
        for (;;) {
                e = rctx_find(c, key);
                if (!e || !e->busy)
                        break;
                if (c->stop || c->stage_stop) {
                        pthread_mutex_unlock(&c->mu);
                        return par_error_set(err, PAR_ERR_CANCELLED,
                                             "chrome: shutting down");
                }
                if (pthread_cond_timedwait(&c->cond, &c->mu, &dl) ==
                    ETIMEDOUT) {
                        pthread_mutex_unlock(&c->mu);
                        return par_error_set(err, PAR_ERR_TIMEOUT,
                                             "chrome: resource context held "
                                             "by another worker for %d ms",
                                             c->o.call_timeout_ms);
                }
        }
        if (e && inst_usable_locked(e->tab->inst) &&
            !par_cdp_session_dead(e->tab->inst->cdp, e->tab->session_id)) {
                struct inst *in = e->tab->inst;
                par_error_t he;
                int to = c->o.call_timeout_ms < HEALTH_TIMEOUT_MS
                             ? c->o.call_timeout_ms
                             : HEALTH_TIMEOUT_MS;

                e->busy = true;
                in->in_use++;
                rctx_unlink(c, e);
                rctx_push_mru(c, e);
                pthread_mutex_unlock(&c->mu);
                if (!par_cdp_call_take(
                        in->cdp, e->tab->session_id, "Runtime.evaluate",
                        json_pack("{s:s}", "expression", "1"), to, NULL, &he)) {
                        pthread_mutex_lock(&c->mu);
                        c->st.resource_hits++;
                        pthread_mutex_unlock(&c->mu);
                        e->tab->fresh = false;
                        *out = e->tab;
                        return PAR_OK;
                }
                par_log(PAR_LOG_WARN, "chrome", "tab_unhealthy",
                        "worker=%d error=\"%s\"", worker, he.msg);
                pthread_mutex_lock(&c->mu);
                inst_done_locked(c, in);
                c->st.tabs_replaced++;
                e->busy = false;
                rctx_evict_locked(c, e);
                e = NULL;
        } else if (e) {
                rctx_evict_locked(c, e);
                e = NULL;
        }
        /* A placeholder entry, busy, so a second acquire of the same
         * resource waits for this one instead of making a twin. */
        e = calloc(1, sizeof(*e));
        if (!e || !(e->key = strdup(key))) {
                free(e);
                pthread_mutex_unlock(&c->mu);
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        }
        e->busy = true;
        rctx_push_mru(c, e);
        c->st.resource_misses++;
        pthread_mutex_unlock(&c->mu);

        rc = clean_tab(c, worker, &t, err);

        pthread_mutex_lock(&c->mu);
        if (rc) {
                rctx_unlink(c, e);
                free(e->key);
                free(e);
        } else {
                e->tab = t;
                t->res = e;
                t->scope = PAR_STATE_RESOURCE;
                t->fresh = true;
                /* Over the bound: drop the least recently used idle ones. */
                for (struct rctx *r = c->lru, *nx;
                     r && c->nres > c->o.resource_contexts; r = nx) {
                        nx = r->next;
                        if (!r->busy) {
                                c->st.resource_evicted++;
                                rctx_evict_locked(c, r);
                        }
                }
                *out = t;
        }
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->mu);
        return rc;
}

par_err_t par_chrome_tab_acquire_scoped(par_chrome_t *c, int worker,
                                        par_state_scope_t scope,
                                        const char *resource, par_tab_t **out,
                                        par_error_t *err)
{
        par_tab_t *t = NULL;
        struct inst *in;
        bool held;
        par_err_t rc;

        if (!c || worker < 0 || worker >= c->nworkers)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "chrome: worker %d out of range 0..%d",
                                     worker, c ? c->nworkers - 1 : -1);
        pthread_mutex_lock(&c->mu);
        held = c->tabs[worker] != NULL;
        pthread_mutex_unlock(&c->mu);
        if (held)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "chrome: worker %d already holds a tab",
                                     worker);
        if (scope == PAR_STATE_DEFAULT)
                scope = c->o.scope;
        if (scope == PAR_STATE_RESOURCE && resource && *resource)
                rc = resource_tab(c, worker, resource, &t, err);
        else
                rc = clean_tab(c, worker, &t, err);
        if (rc)
                return rc;
        in = t->inst;
        pthread_mutex_lock(&c->mu);
        c->tabs[worker] = t;
        c->st.spins++;
        if (++in->spins >= c->o.recycle_after && c->o.recycle_after > 0 &&
            !in->recycle) {
                in->recycle = true;
                in->recycle_at = par_clock_mono_s();
        }
        pthread_mutex_unlock(&c->mu);
        t->worker = worker;
        t->acquired = true;
        *out = t;
        return PAR_OK;
}

par_err_t par_chrome_tab_acquire(par_chrome_t *c, int worker, par_tab_t **out,
                                 par_error_t *err)
{
        return par_chrome_tab_acquire_scoped(c, worker, PAR_STATE_DEFAULT, NULL,
                                             out, err);
}

void par_chrome_tab_release(par_chrome_t *c, par_tab_t *t, bool broken)
{
        struct inst *in;
        bool dead;

        if (!c || !t)
                return;
        in = t->inst;
        dead = broken || par_cdp_session_dead(in->cdp, t->session_id);
        pthread_mutex_lock(&c->mu);
        if (t->worker >= 0 && t->worker < c->nworkers &&
            c->tabs[t->worker] == t)
                c->tabs[t->worker] = NULL;
        t->acquired = false;
        if (dead)
                c->st.tabs_replaced++;
        if (t->res && !dead && !t->res->doomed) {
                t->res->busy = false;
                t->res->last_used = par_clock_mono_s();
        } else if (t->res) {
                t->res->busy = false;
                rctx_evict_locked(c, t->res); /* queues t */
        } else {
                trash_locked(c, t);
        }
        inst_done_locked(c, in);
        pthread_cond_broadcast(&c->cond);
        /* an idle browser: deferred preparing and disposing can go on */
        pthread_cond_signal(&c->stage_cond);
        pthread_mutex_unlock(&c->mu);
}

bool par_chrome_resource_drop(par_chrome_t *c, const char *resource)
{
        struct rctx *e;

        if (!c || !resource)
                return false;
        pthread_mutex_lock(&c->mu);
        e = rctx_find(c, resource);
        if (e && e->busy)
                e->doomed = true; /* its release disposes of it */
        else if (e)
                rctx_evict_locked(c, e);
        pthread_mutex_unlock(&c->mu);
        return e != NULL;
}

bool par_chrome_stocked(par_chrome_t *c)
{
        bool ok;

        pthread_mutex_lock(&c->mu);
        ok = !c->trash && !c->disposing;
        for (int i = 0; ok && i < c->nslots; i++) {
                struct slot *s = &c->slots[i];
                if (s->wanted && s->nstock < s->stock_target)
                        ok = false;
        }
        pthread_mutex_unlock(&c->mu);
        return ok;
}

par_state_scope_t par_tab_scope(par_tab_t *t)
{
        return t->scope;
}

bool par_tab_fresh(par_tab_t *t)
{
        return t->fresh;
}

const char *par_tab_resource(par_tab_t *t)
{
        return t->res ? t->res->key : "";
}

json_t *par_tab_saved_state(par_tab_t *t)
{
        return t->saved;
}

void par_tab_set_saved_state(par_tab_t *t, json_t *state)
{
        json_t *old = t->saved;

        t->saved = state ? json_incref(state) : NULL;
        json_decref(old);
}

par_cdp_t *par_tab_cdp(par_tab_t *t)
{
        return t->inst->cdp;
}

const char *par_tab_session_id(par_tab_t *t)
{
        return t->session_id;
}

const char *par_tab_target_id(par_tab_t *t)
{
        return t->target_id;
}

const char *par_tab_context_id(par_tab_t *t)
{
        return t->context_id;
}

int par_tab_worker(par_tab_t *t)
{
        return t->worker;
}

pid_t par_tab_browser_pid(par_tab_t *t)
{
        return t->inst->pid;
}

par_err_t par_tab_call(par_tab_t *t, const char *method, json_t *params,
                       int timeout_ms, json_t **result, par_error_t *err)
{
        return par_cdp_call(t->inst->cdp, t->session_id, method, params,
                            timeout_ms > 0 ? timeout_ms
                                           : t->chrome->o.call_timeout_ms,
                            result, err);
}

par_err_t par_tab_waiter_new(par_tab_t *t, const char *const *methods,
                             par_cdp_waiter_t **out, par_error_t *err)
{
        return par_cdp_waiter_new(out, t->inst->cdp, t->session_id, methods,
                                  err);
}

par_err_t chrome_stager_start(par_chrome_t *c, par_error_t *err)
{
        if (pthread_create(&c->stager, NULL, stager_main, c))
                return par_error_set(err, PAR_ERR_IO,
                                     "chrome: cannot start stager thread");
        c->stager_started = true;
        return PAR_OK;
}

void chrome_stager_stop(par_chrome_t *c)
{
        if (!c->stager_started)
                return;
        pthread_mutex_lock(&c->mu);
        c->stage_stop = true;
        pthread_cond_signal(&c->stage_cond);
        pthread_cond_broadcast(&c->cond); /* acquires waiting for stock */
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->stager, NULL);
        c->stager_started = false;
}

void chrome_stager_drain(par_chrome_t *c)
{
        for (int i = 0; c->tabs && i < c->nworkers; i++) {
                if (c->tabs[i]) {
                        par_log(PAR_LOG_ERROR, "chrome", "tab_leaked",
                                "worker=%d", i);
                        if (c->tabs[i]->res)
                                c->tabs[i]->res->tab = NULL;
                        tab_drop(c, c->tabs[i]);
                }
        }
        while (c->lru) {
                struct rctx *e = c->lru;
                rctx_unlink(c, e);
                if (e->tab)
                        tab_drop(c, e->tab);
                free(e->key);
                free(e);
        }
        for (int i = 0; c->slots && i < c->nslots; i++) {
                while (c->slots[i].stock) {
                        par_tab_t *t = c->slots[i].stock;
                        c->slots[i].stock = t->next;
                        tab_drop(c, t);
                }
        }
        while (c->trash) {
                par_tab_t *t = c->trash;
                c->trash = t->next;
                c->ntrash--;
                tab_drop(c, t);
        }
}
