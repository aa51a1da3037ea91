/*
 * sessions.c — state scopes in the consumer (see sessions.h).
 */
#include "sessions.h"

#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "browser/state.h"

par_err_t par_sessions_acquire(par_chrome_t *chrome, par_session_store_t *st,
                               int worker, const par_recipe_t *r,
                               const char *id, const char *resource,
                               par_tab_t **out, par_error_t *err)
{
        par_state_scope_t scope = PAR_STATE_DEFAULT;
        par_tab_t *tab = NULL;
        json_t *snap = NULL;
        par_err_t rc;

        if (r->state_scope == PAR_RECIPE_SCOPE_SPIN)
                scope = PAR_STATE_SPIN;
        else if (r->state_scope == PAR_RECIPE_SCOPE_RESOURCE)
                scope = PAR_STATE_RESOURCE;
        if (!resource || !*resource || (id && !strcmp(resource, id)))
                resource = NULL; /* no resource of its own: spin scope */
        if ((rc = par_chrome_tab_acquire_scoped(chrome, worker, scope, resource,
                                                &tab, err)))
                return rc;
        if (par_tab_scope(tab) != PAR_STATE_RESOURCE || !par_tab_fresh(tab) ||
            !st) {
                *out = tab;
                return PAR_OK;
        }
        if ((rc = par_session_load(st, resource, &snap, err)) ||
            (snap && (rc = par_state_restore(tab, snap, 0, err)))) {
                par_chrome_tab_release(chrome, tab, true);
                json_decref(snap);
                return rc;
        }
        if (snap)
                par_log(PAR_LOG_INFO, "consumer", "session_restored",
                        "resource=\"%s\" worker=%d", resource, worker);
        json_decref(snap);
        *out = tab;
        return PAR_OK;
}

void par_sessions_release(par_chrome_t *chrome, par_session_store_t *st,
                          par_tab_t *tab, const par_spin_result_t *sr,
                          const char *owner)
{
        if (tab && st && par_tab_scope(tab) == PAR_STATE_RESOURCE &&
            sr->status == PAR_SPIN_DONE && !sr->tab_broken) {
                const char *resource = par_tab_resource(tab);
                par_error_t e = {0};
                json_t *snap = NULL;

                if (par_state_capture(tab, &snap, &e) ||
                    par_session_save(st, resource, snap, owner,
                                     par_clock_wall_ms(), &e))
                        par_log(PAR_LOG_WARN, "consumer", "session_save_failed",
                                "resource=\"%s\" error=\"%s\"", resource,
                                e.msg);
                json_decref(snap);
        }
        par_chrome_tab_release(chrome, tab, sr->tab_broken);
}
