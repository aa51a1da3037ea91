/*
 * spin.h — run one recipe on one tab: a "spin".
 *
 * par_spin_run() drives the tab over CDP step by step and returns a result
 * the caller publishes: status, the values `extract` steps produced, how long
 * each step took, and, on failure, which step failed, why, and whether a
 * retry may help:
 *
 *   transient   the browser or the network misbehaved: the CDP socket
 *               closed, the renderer crashed, a CDP call or a navigation
 *               timed out, a page failed to load (net::ERR_…). Retrying on a
 *               fresh tab may succeed. The tab must be released as broken.
 *   permanent   the recipe cannot succeed as given: no selector matched
 *               within the step timeout, a waitForExpression stayed false
 *               or threw, an extract threw, an asserted url/title differed,
 *               a param was missing (unknown placeholder), or the page threw
 *               an uncaught exception and the recipe sets failOnPageError.
 *               The tab itself is fine.
 *
 * Threads: one call runs entirely on the calling (worker) thread and blocks
 * it; many workers may run spins concurrently, each on its own tab. The
 * recipe and params are borrowed and only read.
 */
#ifndef PAR_SPIN_H
#define PAR_SPIN_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "browser/chrome.h"
#include "base/err.h"
#include "browser/recipe.h"

typedef enum par_spin_status {
        PAR_SPIN_DONE = 0,
        PAR_SPIN_FAILED,
} par_spin_status_t;

typedef enum par_spin_class {
        PAR_SPIN_OK = 0,
        PAR_SPIN_TRANSIENT,
        PAR_SPIN_PERMANENT,
} par_spin_class_t;

typedef struct par_spin_opts {
        int timeout_ms; /* whole-spin deadline (spin.timeout); <= 0: none */
        int poll_ms;    /* re-check interval of waits in the page (50) */
} par_spin_opts_t;

/* Defaults, then spin.* keys from cfg (cfg may be NULL). */
void par_spin_opts_from_config(par_spin_opts_t *o, const par_config_t *cfg);

typedef struct par_spin_result {
        par_spin_status_t status;
        json_t *values;   /* {name: "string"} from extract steps (owned) */
        int64_t *step_ms; /* duration of each executed step (owned) */
        size_t nsteps;    /* steps executed (the failed one included) */
        int64_t total_ms; /* the whole spin */
        /* failure (status FAILED) */
        par_spin_class_t err_class;
        int err_step; /* index into recipe->steps; -1 = before any */
        par_err_t err_code;
        char err_msg[256];
        bool tab_broken; /* release the tab with broken = true */
} par_spin_result_t;

/*
 * Runs recipe r on tab with params (a JSON object of string values,
 * borrowed, may be NULL). tab may be NULL only for recipes that do not use a
 * browser (the built-in noop). Always fills *res (the caller calls
 * par_spin_result_clear on it afterwards). Returns PAR_OK when the spin
 * succeeded; otherwise PAR_ERR_TRANSIENT or PAR_ERR_PERMANENT with err
 * holding the same message as res->err_msg, prefixed with the step
 * ("step 2 (click): …").
 */
par_err_t par_spin_run(par_tab_t *tab, const par_recipe_t *r,
                       const json_t *params, const par_spin_opts_t *opts,
                       par_spin_result_t *res, par_error_t *err);

/* Frees what a result owns and zeroes it. Accepts a zeroed result. */
void par_spin_result_clear(par_spin_result_t *res);

/* The result as JSON (new reference):
 * {"status":"done"|"failed","values":{…},"steps_ms":[…],"total_ms":n,
 *  "error":{"class":"transient"|"permanent","step":i,"type":"click",
 *           "code":"timeout","message":"…"}}   (error only when failed) */
json_t *par_spin_result_json(const par_spin_result_t *res,
                             const par_recipe_t *r);

const char *par_spin_class_name(par_spin_class_t c);

#endif
