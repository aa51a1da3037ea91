/*
 * recipe.h — recipes: scripted browser flows in the Chrome DevTools
 * Recorder's JSON format, loaded and validated once at start.
 *
 * A recipe file is what the Recorder's "Export as JSON" writes
 * ({"title", "timeout", "steps": [...]}) plus one Parallel step, `extract`,
 * and one Parallel recipe option, `failOnPageError`. docs/RECIPES.md is the
 * user-facing reference; this header is the programmer's.
 *
 * Naming: a recipe's name is its file name without ".json" (recipes/login.json
 * is "login"): it is unique within a directory by construction and does not
 * change when someone edits the Recorder title. The title is kept for
 * display only.
 *
 * Placeholders: any string field that the spin uses (url, value, key,
 * selectors, expression, navigation assertions) may contain `{{name}}`
 * (name: letters, digits, '_', '-', '.'; spaces inside the braces are
 * allowed). Every "{{" must start a well-formed placeholder, or the recipe is
 * rejected at load. At spin time par_recipe_subst() fills them from the
 * signal's params (string values):
 *   - PAR_SUBST_TEXT (selectors, values, urls, keys, assertions): the value
 *     is inserted verbatim;
 *   - PAR_SUBST_JS (waitForExpression, extract): the placeholder is replaced
 *     by a JSON string literal (quotes included, non-ASCII as \uXXXX, '/' as
 *     "\/" so "</script>" cannot close a script element, U+2028/9
 *     escaped), so a param is always one string value in the expression and
 *     never code.
 * An unknown placeholder is a permanent error naming it.
 *
 * Threads and ownership: a par_recipe_t / par_recipe_set_t is built on one
 * thread and is immutable afterwards; any number of worker threads may read
 * it concurrently. The structs below are public so the spin engine can read
 * them; nobody may modify them after load.
 */
#ifndef PAR_RECIPE_H
#define PAR_RECIPE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "base/err.h"

typedef enum par_step_type {
        PAR_STEP_SET_VIEWPORT,
        PAR_STEP_NAVIGATE,
        PAR_STEP_CLICK,
        PAR_STEP_DOUBLE_CLICK,
        PAR_STEP_CHANGE,
        PAR_STEP_KEY_DOWN,
        PAR_STEP_KEY_UP,
        PAR_STEP_SCROLL,
        PAR_STEP_HOVER,
        PAR_STEP_WAIT_FOR_ELEMENT,
        PAR_STEP_WAIT_FOR_EXPRESSION,
        PAR_STEP_EXTRACT,
        PAR_STEP_CLOSE,       /* closes the step's target page */
        PAR_STEP_CUSTOM_STEP, /* customStep: skipped with a warning */
} par_step_type_t;

/* waitForElement's comparison of the match count with `count`. */
typedef enum par_count_op {
        PAR_OP_EQ, /* "==" */
        PAR_OP_GE, /* ">=" (the default, as in @puppeteer/replay) */
        PAR_OP_LE, /* "<=" */
} par_count_op_t;

/* One selector group: parts[0..nparts-1]. Each part after the first is
 * searched inside the element the previous part found (inside its shadow
 * root when it has one). Parts are raw strings with their prefix
 * ("xpath/…", "text/…", "pierce/…", "aria/…" or plain CSS) and may hold
 * placeholders. */
typedef struct par_selector {
        char **parts;
        size_t nparts;
} par_selector_t;

typedef struct par_step {
        par_step_type_t type;
        int timeout_ms; /* step timeout, or the recipe's, or the default */

        /* Where the step runs. target: NULL = the main page, else the URL
         * of another page (a popup) or of a frame (out-of-process iframes
         * included), as the Recorder writes it; may hold placeholders.
         * frame: child-frame indexes from the target's main frame
         * (nframe 0 = the main frame). */
        char *target;
        int *frame;
        size_t nframe;

        par_selector_t *selectors; /* click, doubleClick, change, hover,
                                      waitForElement, optional for scroll */
        size_t nselectors;

        char *url;        /* navigate */
        char *value;      /* change */
        char *key;        /* keyDown, keyUp */
        char *expression; /* waitForExpression, extract */
        char *name;       /* extract: the values map key */

        /* click, doubleClick: offsets in CSS px from the element's top-left
         * corner; has_offset false → the element's centre. */
        bool has_offset;
        double offset_x, offset_y;
        int button;      /* 0 left, 1 middle, 2 right, 3 back, 4 forward */
        int duration_ms; /* click: delay between press and release */

        /* waitForElement: the step passes when (count op `count`, and
         * every matched element has `attributes` and deep-matches
         * `properties`) == visible. visible false = wait until that stops
         * holding (the Recorder's "hidden"). Compact JSON objects or NULL. */
        par_count_op_t op;
        int count;
        bool visible;
        char *attributes;
        char *properties;

        char *custom_name; /* customStep */

        /* scroll: absolute position (page, or the element when selectors) */
        double x, y;

        /* setViewport */
        int width, height;
        double device_scale_factor;
        bool is_mobile, has_touch, is_landscape;

        /* assertedEvents: [{type: "navigation", url?, title?}] → the step
         * must cause a navigation that completes; url/title (when set) must
         * equal the new page's. */
        bool expect_navigation;
        char *nav_url;
        char *nav_title;
} par_step_t;

/* A recipe's "stateScope": what its spins inherit from earlier spins (see
 * chrome.state_scope). UNSET: the node's configuration decides. */
typedef enum par_recipe_scope {
        PAR_RECIPE_SCOPE_UNSET = 0,
        PAR_RECIPE_SCOPE_SPIN,
        PAR_RECIPE_SCOPE_RESOURCE,
} par_recipe_scope_t;

typedef struct par_recipe {
        char *name;     /* file name without .json, or "noop" */
        char *title;    /* Recorder title (display only; may equal name) */
        char *path;     /* file it came from; NULL for built-ins */
        int timeout_ms; /* default step timeout */
        bool fail_on_page_error; /* an uncaught page exception fails it */
        bool uses_browser;       /* false only for the built-in noop */
        par_recipe_scope_t state_scope; /* "stateScope" (UNSET: config) */
        /* ",file,data," from the extension "paramUrlSchemes": schemes a
         * param may give a navigate URL besides http and https; NULL for
         * none. */
        char *param_url_schemes;
        par_step_t *steps;
        size_t nsteps;
} par_recipe_t;

typedef struct par_recipe_set par_recipe_set_t;

/* Parses and validates one recipe from JSON text. `name` (copied) names it;
 * `origin` (copied; may be NULL) is what error messages call it, e.g.
 * "recipes/login.json: step 3 (click): selectors: expected a non-empty
 * array". default_timeout_ms applies when neither the step nor the recipe
 * sets one. On success *out is a new recipe the caller frees with
 * par_recipe_destroy. Any thread. */
par_err_t par_recipe_parse(par_recipe_t **out, const char *name,
                           const char *origin, const char *json_text,
                           int default_timeout_ms, par_error_t *err);

/* Same, reading a file; the name is the file's base name minus ".json". */
par_err_t par_recipe_load_file(par_recipe_t **out, const char *path,
                               int default_timeout_ms, par_error_t *err);

void par_recipe_destroy(par_recipe_t *r);

/* Loads every "*.json" in dir (sorted by name) plus the built-in "noop".
 * Any invalid file fails the whole load (an error names the file, step and
 * field): a consumer must not start with a recipe it cannot run. A missing
 * directory is an error too. */
par_err_t par_recipe_load_dir(par_recipe_set_t **out, const char *dir,
                              int default_timeout_ms, par_error_t *err);

/* A set holding only the built-in recipes (noop). */
par_err_t par_recipe_set_new(par_recipe_set_t **out, par_error_t *err);

/* Adds r to the set, which takes ownership (also on failure). A name already
 * present is an error. */
par_err_t par_recipe_set_add(par_recipe_set_t *set, par_recipe_t *r,
                             par_error_t *err);

/* The recipe called name, or NULL. Borrowed; valid until the set is
 * destroyed. Any thread once loading is done. */
const par_recipe_t *par_recipe_set_get(const par_recipe_set_t *set,
                                       const char *name);
/* Number of recipes, the built-in noop included. */
size_t par_recipe_set_count(const par_recipe_set_t *set);
/* The i-th recipe (borrowed): 0 is noop, then files in name order. */
const par_recipe_t *par_recipe_set_at(const par_recipe_set_t *set, size_t i);
void par_recipe_set_destroy(par_recipe_set_t *set);

/* The built-in noop recipe (static; never free it). */
const par_recipe_t *par_recipe_noop(void);

/* "click", "waitForElement", … */
const char *par_step_type_name(par_step_type_t t);

typedef enum par_subst_mode {
        PAR_SUBST_TEXT, /* the value verbatim */
        PAR_SUBST_JS,   /* the value as a JSON/JS string literal */
} par_subst_mode_t;

/* Fills the placeholders of tmpl from params (a JSON object of string
 * values; borrowed; may be NULL = no params). On success *out is a new
 * malloc'd string the caller frees. Errors are PAR_ERR_PERMANENT:
 * "unknown placeholder {{user}}" or "param user: expected a string".
 * Any thread. */
par_err_t par_recipe_subst(const char *tmpl, const json_t *params,
                           par_subst_mode_t mode, char **out, par_error_t *err);

/* True when a placeholder in the JavaScript expression js sits inside a
 * string, template or regular expression literal (where a param would
 * become code); *at is its offset. Recipes with one are rejected at load.
 * Any thread. */
bool par_recipe_placeholder_in_literal(const char *js, size_t *at);

/* A navigate URL whose scheme comes from a param (the template has a
 * placeholder before any ':') may only be http or https, or a scheme the
 * recipe lists in "paramUrlSchemes": a signal must not turn a navigation
 * into data: (scripts run) or file:///etc/passwd. tmpl is the step's URL
 * template, url the substituted one. PAR_ERR_PERMANENT naming the scheme
 * otherwise. Any thread. */
par_err_t par_recipe_check_url(const par_recipe_t *r, const char *tmpl,
                               const char *url, par_error_t *err);

/* Writes s as a JS-safe JSON string literal (see the header comment) into a
 * new malloc'd string; NULL on allocation failure or if s is not UTF-8. */
char *par_recipe_js_string(const char *s);

/* What Input.dispatchKeyEvent needs for a Recorder key name ("Enter",
 * "KeyA", "a", "Shift", …). */
typedef struct par_key_info {
        char key[16];     /* DOM key value, e.g. "a", "Enter" */
        const char *code; /* DOM code, e.g. "KeyA", "Enter" (static) */
        char text[4];     /* inserted text, "" for none */
        int key_code;     /* Windows virtual key code */
        int modifier;     /* CDP modifier bit it toggles (1 Alt, 2 Ctrl,
                             4 Meta, 8 Shift), 0 for none */
} par_key_info_t;

/* Looks a key name up; returns 0 and fills *out or -1 for an
 * unknown key. recipe validation uses it, so a loaded recipe's keys (without
 * placeholders) are always known. Any thread. */
int par_recipe_key_lookup(const char *name, par_key_info_t *out);

#endif
