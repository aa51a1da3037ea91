/*
 * recipe.c — parse and validate Recorder-format recipes (see recipe.h).
 *
 * Validation is strict and happens once, at load: a consumer that starts is a
 * consumer whose recipes can all run. Every error names the origin, the step
 * (0-based index into "steps", as in `jq .steps[3]`), its type and the field,
 * so an operator can fix the file without reading our code. Fields that
 * Parallel would silently ignore (frames, other targets, attribute checks)
 * are rejected rather than ignored: a recipe that "passes" while skipping
 * part of what it says would be worse than one that is refused.
 *
 * Steps are copied out of jansson into plain structs so spins never touch
 * JSON parsing and the recipe is trivially shareable read-only across
 * worker threads.
 */
#include "browser/recipe.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"

struct par_recipe_set {
        par_recipe_t **v; /* sorted by name after load_dir */
        size_t n, cap;
};

static const char *const step_names[] = {
    [PAR_STEP_SET_VIEWPORT] = "setViewport",
    [PAR_STEP_NAVIGATE] = "navigate",
    [PAR_STEP_CLICK] = "click",
    [PAR_STEP_DOUBLE_CLICK] = "doubleClick",
    [PAR_STEP_CHANGE] = "change",
    [PAR_STEP_KEY_DOWN] = "keyDown",
    [PAR_STEP_KEY_UP] = "keyUp",
    [PAR_STEP_SCROLL] = "scroll",
    [PAR_STEP_HOVER] = "hover",
    [PAR_STEP_WAIT_FOR_ELEMENT] = "waitForElement",
    [PAR_STEP_WAIT_FOR_EXPRESSION] = "waitForExpression",
    [PAR_STEP_EXTRACT] = "extract",
    [PAR_STEP_CLOSE] = "close",
    [PAR_STEP_CUSTOM_STEP] = "customStep",
};
#define NSTEP_TYPES (sizeof(step_names) / sizeof(step_names[0]))

const char *par_step_type_name(par_step_type_t t)
{
        return (unsigned)t < NSTEP_TYPES ? step_names[t] : "?";
}

static par_recipe_t noop_recipe = {
    .name = "noop",
    .title = "noop (built-in: touches no browser)",
    .timeout_ms = 0,
    .uses_browser = false,
};

const par_recipe_t *par_recipe_noop(void)
{
        return &noop_recipe;
}

/* ---- placeholders ---------------------------------------------------- */

static int name_char(int c)
{
        return isalnum(c) || c == '_' || c == '-' || c == '.';
}

/* Parses a placeholder starting at s ("{{"). On success returns its total
 * length and sets name/len; returns 0 if malformed. */
static size_t placeholder_at(const char *s, const char **name, size_t *len)
{
        const char *p = s + 2, *n;

        while (*p == ' ')
                p++;
        n = p;
        while (name_char((unsigned char)*p))
                p++;
        if (p == n)
                return 0;
        *name = n;
        *len = (size_t)(p - n);
        while (*p == ' ')
                p++;
        if (p[0] != '}' || p[1] != '}')
                return 0;
        return (size_t)(p + 2 - s);
}

/* Checks every "{{" in s starts a well-formed placeholder. */
static int placeholders_ok(const char *s, size_t *bad_at)
{
        const char *p = s, *n;
        size_t len, l;

        while ((p = strstr(p, "{{")) != NULL) {
                l = placeholder_at(p, &n, &len);
                if (!l) {
                        *bad_at = (size_t)(p - s);
                        return 0;
                }
                p += l;
        }
        return 1;
}

/*
 * Finds a placeholder inside a string literal, template literal or regular
 * expression literal of the JavaScript expression js. A bare {{p}} becomes
 * a JSON string literal, which is data wherever it lands; inside quotes the
 * same literal's own quotes would end the author's string and the param
 * would run as code ('{{p}}' with p = "' + (window.pwned=1) + '").
 *
 * Why a hand-written scanner: this is not a parser, only the tokenizer
 * states that matter (strings, templates with ${…} nesting, comments,
 * regular expression literals); no library we link parses JavaScript. A
 * '/' is taken as a regular expression after an operator, an opening
 * bracket or at the start, as division otherwise (the same rule engines use
 * for the common cases). Returns true and *at = offset when one is found.
 */
bool par_recipe_placeholder_in_literal(const char *js, size_t *at)
{
        enum { CODE, SQ, DQ, TPL, LINE, BLOCK, RE, RECLASS } st = CODE;
        int tpl_depth[32], ntpl = 0, braces = 0;
        char prev = 0; /* last significant code character */

        for (size_t i = 0; js[i]; i++) {
                char c = js[i];
                if (c == '{' && js[i + 1] == '{' && st != CODE && st != LINE &&
                    st != BLOCK) {
                        *at = i;
                        return true;
                }
                switch (st) {
                case CODE:
                        if (c == '\'' || c == '"') {
                                st = c == '\'' ? SQ : DQ;
                        } else if (c == '`') {
                                st = TPL;
                        } else if (c == '/' && js[i + 1] == '/') {
                                st = LINE;
                                i++;
                        } else if (c == '/' && js[i + 1] == '*') {
                                st = BLOCK;
                                i++;
                        } else if (c == '/' &&
                                   (!prev ||
                                    strchr("(,=:[!&|?{};+-*%<>~^", prev))) {
                                st = RE;
                        } else if (c == '{') {
                                braces++;
                        } else if (c == '}') {
                                if (ntpl && tpl_depth[ntpl - 1] == braces) {
                                        ntpl--;
                                        st = TPL;
                                        continue;
                                }
                                braces--;
                        }
                        if (st == CODE && !isspace((unsigned char)c))
                                prev = c;
                        else if (st != CODE)
                                prev = 'x';
                        break;
                case SQ:
                case DQ:
                        if (c == '\\' && js[i + 1])
                                i++;
                        else if (c == (st == SQ ? '\'' : '"'))
                                st = CODE;
                        break;
                case TPL:
                        if (c == '\\' && js[i + 1]) {
                                i++;
                        } else if (c == '`') {
                                st = CODE;
                                prev = 'x';
                        } else if (c == '$' && js[i + 1] == '{') {
                                if (ntpl == (int)(sizeof(tpl_depth) /
                                                  sizeof(tpl_depth[0]))) {
                                        *at = i; /* too deep to follow */
                                        return true;
                                }
                                tpl_depth[ntpl++] = braces;
                                st = CODE;
                                prev = '{';
                                i++;
                        }
                        break;
                case LINE:
                        if (c == '\n')
                                st = CODE;
                        break;
                case BLOCK:
                        if (c == '*' && js[i + 1] == '/') {
                                st = CODE;
                                i++;
                        }
                        break;
                case RE:
                        if (c == '\\' && js[i + 1])
                                i++;
                        else if (c == '[')
                                st = RECLASS;
                        else if (c == '/' || c == '\n')
                                st = CODE;
                        break;
                case RECLASS:
                        if (c == '\\' && js[i + 1])
                                i++;
                        else if (c == ']')
                                st = RE;
                        break;
                }
        }
        return false;
}

char *par_recipe_js_string(const char *s)
{
        /* JSON_ENSURE_ASCII turns every non-ASCII code point (U+2028/9
         * included) into \uXXXX; JSON_ESCAPE_SLASH makes "</script>"
         * "<\/script>". The result is a valid JS string literal. */
        json_t *j = json_string(s);
        char *out;

        if (!j) /* not UTF-8 (params from JSON or BSON always are) */
                return NULL;
        out = json_dumps(j, JSON_ENCODE_ANY | JSON_ENSURE_ASCII |
                                JSON_ESCAPE_SLASH);
        json_decref(j);
        return out;
}

par_err_t par_recipe_subst(const char *tmpl, const json_t *params,
                           par_subst_mode_t mode, char **out, par_error_t *err)
{
        size_t cap = strlen(tmpl) + 64, n = 0;
        char *buf = malloc(cap), *lit = NULL;
        const char *p = tmpl, *q, *name;
        par_err_t rc = PAR_OK;

        if (!buf)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        for (;;) {
                size_t plen = 0, nlen = 0, take;
                const char *ins = NULL;
                size_t inslen = 0;

                q = strstr(p, "{{");
                if (q)
                        plen = placeholder_at(q, &name, &nlen);
                if (q && !plen) {
                        rc = par_error_set(err, PAR_ERR_PERMANENT,
                                           "malformed placeholder near '%.20s'",
                                           q);
                        goto fail;
                }
                take = q ? (size_t)(q - p) : strlen(p);
                if (q) {
                        char key[128];
                        json_t *v;

                        if (nlen >= sizeof(key)) {
                                rc = par_error_set(err, PAR_ERR_PERMANENT,
                                                   "placeholder name too long");
                                goto fail;
                        }
                        memcpy(key, name, nlen);
                        key[nlen] = '\0';
                        v = params ? json_object_get(params, key) : NULL;
                        if (!v) {
                                rc = par_error_set(err, PAR_ERR_PERMANENT,
                                                   "unknown placeholder {{%s}}",
                                                   key);
                                goto fail;
                        }
                        if (!json_is_string(v)) {
                                rc = par_error_set(
                                    err, PAR_ERR_PERMANENT,
                                    "param %s: expected a string", key);
                                goto fail;
                        }
                        ins = json_string_value(v);
                        if (mode == PAR_SUBST_JS) {
                                free(lit);
                                lit = par_recipe_js_string(ins);
                                if (!lit) {
                                        rc = par_error_set(
                                            err, PAR_ERR_PERMANENT,
                                            "param %s: not valid UTF-8", key);
                                        goto fail;
                                }
                                ins = lit;
                        }
                        inslen = strlen(ins);
                }
                if (n + take + inslen + 1 > cap) {
                        char *nb;

                        cap = (n + take + inslen + 1) * 2;
                        nb = realloc(buf, cap);
                        if (!nb)
                                goto nomem;
                        buf = nb;
                }
                memcpy(buf + n, p, take);
                n += take;
                if (!q)
                        break;
                memcpy(buf + n, ins, inslen);
                n += inslen;
                p = q + plen;
        }
        buf[n] = '\0';
        free(lit);
        *out = buf;
        return PAR_OK;
nomem:
        rc = par_error_set(err, PAR_ERR_NOMEM, "out of memory");
fail:
        free(lit);
        free(buf);
        return rc;
}

/* ---- validation ------------------------------------------------------ */

/* Context for error messages: "origin: step 3 (click): field: …". */
typedef struct vctx {
        const char *origin;
        long step; /* -1: recipe level */
        const char *type;
        par_error_t *err;
} vctx_t;

static par_err_t __attribute__((format(printf, 3, 4)))
bad(const vctx_t *c, const char *field, const char *fmt, ...)
{
        char what[160];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        if (c->step < 0)
                return par_error_set(c->err, PAR_ERR_INVALID, "%s: %s: %s",
                                     c->origin, field, what);
        return par_error_set(c->err, PAR_ERR_INVALID,
                             "%s: step %ld (%s): %s: %s", c->origin, c->step,
                             c->type ? c->type : "?", field, what);
}

/* Copies an optional/required string field; checks placeholders. */
static par_err_t get_str(const vctx_t *c, json_t *o, const char *field,
                         bool required, bool nonempty, char **out)
{
        json_t *v = json_object_get(o, field);
        size_t at;

        *out = NULL;
        if (!v) {
                if (required)
                        return bad(c, field, "required string is missing");
                return PAR_OK;
        }
        if (!json_is_string(v))
                return bad(c, field, "expected a string");
        if (nonempty && !json_string_length(v))
                return bad(c, field, "expected a non-empty string");
        if (!placeholders_ok(json_string_value(v), &at))
                return bad(c, field,
                           "malformed placeholder at offset %zu (use "
                           "{{name}}, name of letters, digits, _ - .)",
                           at);
        *out = strdup(json_string_value(v));
        if (!*out)
                return par_error_set(c->err, PAR_ERR_NOMEM, "out of memory");
        return PAR_OK;
}

/* "paramUrlSchemes": ["file", "data"] → ",file,data," (lower case). */
static par_err_t get_schemes(const vctx_t *c, json_t *v, char **out)
{
        size_t i, cap = 2, n = 0;
        json_t *e;
        char *buf;

        if (!json_is_array(v))
                return bad(c, "paramUrlSchemes",
                           "expected an array of "
                           "scheme names");
        json_array_foreach(v, i, e)
        {
                const char *sch = json_string_value(e);
                if (!sch || !*sch ||
                    strspn(sch, "abcdefghijklmnopqrstuvwxyz"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                "0123456789+-.") != strlen(sch))
                        return bad(c, "paramUrlSchemes",
                                   "[%zu]: expected a scheme name such as "
                                   "\"file\"",
                                   i);
                cap += strlen(sch) + 1;
        }
        if (!(buf = malloc(cap)))
                return par_error_set(c->err, PAR_ERR_NOMEM, "out of memory");
        buf[n++] = ',';
        json_array_foreach(v, i, e)
        {
                for (const char *p = json_string_value(e); *p; p++)
                        buf[n++] = (char)tolower((unsigned char)*p);
                buf[n++] = ',';
        }
        buf[n] = '\0';
        *out = buf;
        return PAR_OK;
}

par_err_t par_recipe_check_url(const par_recipe_t *r, const char *tmpl,
                               const char *url, par_error_t *err)
{
        const char *ph = strstr(tmpl, "{{"), *colon;
        char scheme[40], pat[44];
        size_t n;

        /* The author wrote the scheme: nothing a param can change. */
        if (!ph || memchr(tmpl, ':', (size_t)(ph - tmpl)))
                return PAR_OK;
        colon = strchr(url, ':');
        n = colon ? strspn(url, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ"
                                "RSTUVWXYZ0123456789+-.")
                  : 0;
        if (!colon || n != (size_t)(colon - url) || n == 0 ||
            n >= sizeof(scheme))
                return par_error_set(err, PAR_ERR_PERMANENT,
                                     "url: a param must give an http or "
                                     "https URL (got no scheme)");
        for (size_t i = 0; i < n; i++)
                scheme[i] = (char)tolower((unsigned char)url[i]);
        scheme[n] = '\0';
        if (!strcmp(scheme, "http") || !strcmp(scheme, "https"))
                return PAR_OK;
        snprintf(pat, sizeof(pat), ",%s,", scheme);
        if (r && r->param_url_schemes && strstr(r->param_url_schemes, pat))
                return PAR_OK;
        return par_error_set(err, PAR_ERR_PERMANENT,
                             "url: a param gave the scheme '%s'; only http "
                             "and https unless the recipe lists it in "
                             "\"paramUrlSchemes\"",
                             scheme);
}

/* An expression: a string whose placeholders are all bare (see
 * par_recipe_placeholder_in_literal). */
static par_err_t get_expr(const vctx_t *c, json_t *o, char **out)
{
        size_t at;
        par_err_t rc = get_str(c, o, "expression", true, true, out);

        if (rc)
                return rc;
        if (par_recipe_placeholder_in_literal(*out, &at))
                return bad(c, "expression",
                           "placeholder at offset %zu is inside quotes: "
                           "write it bare, 'Hi ' + {{p}} (it becomes a "
                           "JSON string literal)",
                           at);
        return PAR_OK;
}

static par_err_t get_num(const vctx_t *c, json_t *o, const char *field,
                         double lo, double hi, bool *present, double *out)
{
        json_t *v = json_object_get(o, field);

        if (present)
                *present = v != NULL;
        if (!v)
                return PAR_OK;
        if (!json_is_number(v))
                return bad(c, field, "expected a number");
        *out = json_number_value(v);
        if (*out < lo || *out > hi)
                return bad(c, field, "%g out of range %g..%g", *out, lo, hi);
        return PAR_OK;
}

static par_err_t get_bool(const vctx_t *c, json_t *o, const char *field,
                          bool *out)
{
        json_t *v = json_object_get(o, field);

        if (!v)
                return PAR_OK;
        if (!json_is_boolean(v))
                return bad(c, field, "expected true or false");
        *out = json_is_true(v);
        return PAR_OK;
}

/* An optional JSON object field, kept as compact JSON text for the page.
 * strings_only: every value must be a string (attributes). */
static par_err_t get_object(const vctx_t *c, json_t *o, const char *field,
                            bool strings_only, char **out)
{
        json_t *v = json_object_get(o, field), *x;
        const char *k;

        *out = NULL;
        if (!v)
                return PAR_OK;
        if (!json_is_object(v))
                return bad(c, field, "expected an object");
        if (strings_only)
                json_object_foreach(v, k, x) if (!json_is_string(x)) return bad(
                    c, field, "%.60s: expected a string", k);
        *out = json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII |
                                 JSON_ESCAPE_SLASH | JSON_SORT_KEYS);
        if (!*out)
                return par_error_set(c->err, PAR_ERR_NOMEM, "out of memory");
        return PAR_OK;
}

static const char *selector_part_problem(const char *s)
{
        static const char *const prefixes[] = {"aria/", "text/", "xpath/",
                                               "pierce/"};
        size_t i;

        if (!*s)
                return "empty selector";
        for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
                if (!strncmp(s, prefixes[i], strlen(prefixes[i])) &&
                    !s[strlen(prefixes[i])])
                        return "selector has a prefix but nothing after it";
        return NULL;
}

static par_err_t get_selectors(const vctx_t *c, json_t *o, bool required,
                               par_step_t *st)
{
        json_t *arr = json_object_get(o, "selectors"), *g;
        size_t i, j, at;

        if (!arr) {
                if (required)
                        return bad(c, "selectors",
                                   "expected a non-empty array");
                return PAR_OK;
        }
        if (!json_is_array(arr) || !json_array_size(arr))
                return bad(c, "selectors", "expected a non-empty array");
        st->selectors = calloc(json_array_size(arr), sizeof(*st->selectors));
        if (!st->selectors)
                return par_error_set(c->err, PAR_ERR_NOMEM, "out of memory");
        json_array_foreach(arr, i, g)
        {
                par_selector_t *sel = &st->selectors[i];
                size_t np = json_is_array(g) ? json_array_size(g) : 1;

                if (!json_is_string(g) && !(json_is_array(g) && np))
                        return bad(c, "selectors",
                                   "[%zu]: expected a string or a non-empty "
                                   "array of strings",
                                   i);
                sel->parts = calloc(np, sizeof(char *));
                if (!sel->parts)
                        return par_error_set(c->err, PAR_ERR_NOMEM,
                                             "out of memory");
                st->nselectors = i + 1;
                for (j = 0; j < np; j++) {
                        json_t *p = json_is_array(g) ? json_array_get(g, j) : g;
                        const char *why;

                        if (!json_is_string(p))
                                return bad(c, "selectors",
                                           "[%zu][%zu]: expected a string", i,
                                           j);
                        why = selector_part_problem(json_string_value(p));
                        if (why)
                                return bad(c, "selectors", "[%zu]: %s", i, why);
                        if (!placeholders_ok(json_string_value(p), &at))
                                return bad(c, "selectors",
                                           "[%zu]: malformed placeholder at "
                                           "offset %zu",
                                           i, at);
                        sel->parts[j] = strdup(json_string_value(p));
                        if (!sel->parts[j])
                                return par_error_set(c->err, PAR_ERR_NOMEM,
                                                     "out of memory");
                        sel->nparts = j + 1;
                }
        }
        return PAR_OK;
}

static par_err_t get_asserted(const vctx_t *c, json_t *o, par_step_t *st)
{
        json_t *arr = json_object_get(o, "assertedEvents"), *e;
        size_t i;
        par_err_t rc;

        if (!arr)
                return PAR_OK;
        if (!json_is_array(arr))
                return bad(c, "assertedEvents", "expected an array");
        json_array_foreach(arr, i, e)
        {
                const char *t = json_string_value(json_object_get(e, "type"));

                if (!json_is_object(e) || !t || strcmp(t, "navigation"))
                        return bad(c, "assertedEvents",
                                   "[%zu]: only {\"type\": \"navigation\"} "
                                   "is supported",
                                   i);
                if (st->expect_navigation)
                        return bad(c, "assertedEvents",
                                   "[%zu]: at most one navigation per step", i);
                st->expect_navigation = true;
                rc = get_str(c, e, "url", false, false, &st->nav_url);
                if (!rc)
                        rc = get_str(c, e, "title", false, false,
                                     &st->nav_title);
                if (rc)
                        return rc;
                /* The Recorder writes "url": "" when it has none. */
                if (st->nav_url && !*st->nav_url) {
                        free(st->nav_url);
                        st->nav_url = NULL;
                }
                if (st->nav_title && !*st->nav_title) {
                        free(st->nav_title);
                        st->nav_title = NULL;
                }
        }
        return PAR_OK;
}

static par_err_t parse_button(const vctx_t *c, json_t *o, par_step_t *st)
{
        static const char *const names[] = {"primary", "auxiliary", "secondary",
                                            "back", "forward"};
        json_t *v = json_object_get(o, "button");
        const char *dt = json_string_value(json_object_get(o, "deviceType"));
        size_t i;

        if (json_object_get(o, "deviceType") && (!dt || strcmp(dt, "mouse")))
                return bad(c, "deviceType", "only \"mouse\" is supported");
        st->button = 0;
        if (!v)
                return PAR_OK;
        for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (json_is_string(v) &&
                    !strcmp(json_string_value(v), names[i])) {
                        st->button = (int)i;
                        return PAR_OK;
                }
        return bad(c, "button",
                   "expected primary|auxiliary|secondary|back|forward");
}

static par_err_t parse_step(const vctx_t *c, json_t *o, par_step_t *st,
                            int recipe_timeout_ms)
{
        json_t *v;
        double d;
        bool has;
        par_err_t rc;

        st->timeout_ms = recipe_timeout_ms;
        if ((rc = get_num(c, o, "timeout", 1, 86400000, &has, &d)))
                return rc;
        if (has)
                st->timeout_ms = (int)d;
        if ((rc = get_str(c, o, "target", false, true, &st->target)))
                return rc;
        if (st->target && !strcmp(st->target, "main")) {
                free(st->target);
                st->target = NULL;
        }
        v = json_object_get(o, "frame");
        if (v) {
                json_t *x;
                size_t i;

                if (!json_is_array(v))
                        return bad(c, "frame",
                                   "expected an array of child-frame indexes");
                st->frame = calloc(json_array_size(v) + 1, sizeof(int));
                if (!st->frame)
                        return par_error_set(c->err, PAR_ERR_NOMEM,
                                             "out of memory");
                json_array_foreach(v, i, x)
                {
                        if (!json_is_integer(x) || json_integer_value(x) < 0 ||
                            json_integer_value(x) > 10000)
                                return bad(c, "frame",
                                           "[%zu]: expected an index >= 0", i);
                        st->frame[i] = (int)json_integer_value(x);
                        st->nframe = i + 1;
                }
        }
        if ((rc = get_asserted(c, o, st)))
                return rc;

        switch (st->type) {
        case PAR_STEP_SET_VIEWPORT:
                st->device_scale_factor = 1;
                if ((rc = get_num(c, o, "width", 1, 10000, &has, &d)))
                        return rc;
                if (!has)
                        return bad(c, "width", "required number is missing");
                st->width = (int)d;
                if ((rc = get_num(c, o, "height", 1, 10000, &has, &d)))
                        return rc;
                if (!has)
                        return bad(c, "height", "required number is missing");
                st->height = (int)d;
                if ((rc = get_num(c, o, "deviceScaleFactor", 0.1, 10, NULL,
                                  &st->device_scale_factor)) ||
                    (rc = get_bool(c, o, "isMobile", &st->is_mobile)) ||
                    (rc = get_bool(c, o, "hasTouch", &st->has_touch)) ||
                    (rc = get_bool(c, o, "isLandscape", &st->is_landscape)))
                        return rc;
                return PAR_OK;
        case PAR_STEP_NAVIGATE:
                return get_str(c, o, "url", true, true, &st->url);
        case PAR_STEP_CLICK:
        case PAR_STEP_DOUBLE_CLICK: {
                bool hx, hy;

                if ((rc = get_selectors(c, o, true, st)) ||
                    (rc = parse_button(c, o, st)) ||
                    (rc = get_num(c, o, "offsetX", -1e6, 1e6, &hx,
                                  &st->offset_x)) ||
                    (rc = get_num(c, o, "offsetY", -1e6, 1e6, &hy,
                                  &st->offset_y)))
                        return rc;
                if (hx != hy)
                        return bad(c, hx ? "offsetY" : "offsetX",
                                   "offsetX and offsetY go together");
                st->has_offset = hx;
                if ((rc = get_num(c, o, "duration", 0, 60000, &has, &d)))
                        return rc;
                st->duration_ms = has ? (int)d : 0;
                return PAR_OK;
        }
        case PAR_STEP_HOVER:
                return get_selectors(c, o, true, st);
        case PAR_STEP_CHANGE:
                if ((rc = get_selectors(c, o, true, st)))
                        return rc;
                return get_str(c, o, "value", true, false, &st->value);
        case PAR_STEP_KEY_DOWN:
        case PAR_STEP_KEY_UP: {
                par_key_info_t ki;

                if ((rc = get_str(c, o, "key", true, true, &st->key)))
                        return rc;
                if (!strstr(st->key, "{{") &&
                    par_recipe_key_lookup(st->key, &ki))
                        return bad(c, "key",
                                   "unknown key '%s' (use a character or a "
                                   "name such as Enter, Tab, ArrowDown, "
                                   "Shift, KeyA, Digit1)",
                                   st->key);
                return PAR_OK;
        }
        case PAR_STEP_SCROLL:
                if ((rc = get_selectors(c, o, false, st)) ||
                    (rc = get_num(c, o, "x", -1e7, 1e7, NULL, &st->x)) ||
                    (rc = get_num(c, o, "y", -1e7, 1e7, NULL, &st->y)))
                        return rc;
                return PAR_OK;
        case PAR_STEP_WAIT_FOR_ELEMENT: {
                const char *op;

                if ((rc = get_selectors(c, o, true, st)))
                        return rc;
                st->count = 1;
                st->op = PAR_OP_GE;
                st->visible = true;
                if ((rc = get_num(c, o, "count", 0, 1e6, &has, &d)))
                        return rc;
                if (has)
                        st->count = (int)d;
                v = json_object_get(o, "operator");
                op = json_string_value(v);
                if (v && !op)
                        return bad(c, "operator",
                                   "expected \">=\", \"==\" "
                                   "or \"<=\"");
                if (op && !strcmp(op, ">="))
                        st->op = PAR_OP_GE;
                else if (op && !strcmp(op, "<="))
                        st->op = PAR_OP_LE;
                else if (op && strcmp(op, "=="))
                        return bad(c, "operator",
                                   "expected \">=\", \"==\" "
                                   "or \"<=\"");
                if ((rc = get_object(c, o, "attributes", true,
                                     &st->attributes)) ||
                    (rc = get_object(c, o, "properties", false,
                                     &st->properties)))
                        return rc;
                return get_bool(c, o, "visible", &st->visible);
        }
        case PAR_STEP_WAIT_FOR_EXPRESSION:
                return get_expr(c, o, &st->expression);
        case PAR_STEP_CLOSE:
                return PAR_OK;
        case PAR_STEP_CUSTOM_STEP:
                /* Parameters are whatever the recording's extension wanted;
                 * nothing here runs them (see spin.c). */
                return get_str(c, o, "name", true, true, &st->custom_name);
        case PAR_STEP_EXTRACT:
                if ((rc = get_str(c, o, "name", true, true, &st->name)))
                        return rc;
                if (strstr(st->name, "{{"))
                        return bad(c, "name",
                                   "placeholders are not allowed "
                                   "in a value name");
                return get_expr(c, o, &st->expression);
        }
        return bad(c, "type", "unhandled step type");
}

static void step_free(par_step_t *st)
{
        size_t i, j;

        for (i = 0; i < st->nselectors; i++) {
                for (j = 0; j < st->selectors[i].nparts; j++)
                        free(st->selectors[i].parts[j]);
                free(st->selectors[i].parts);
        }
        free(st->selectors);
        free(st->url);
        free(st->value);
        free(st->key);
        free(st->expression);
        free(st->name);
        free(st->nav_url);
        free(st->nav_title);
        free(st->target);
        free(st->frame);
        free(st->attributes);
        free(st->properties);
        free(st->custom_name);
}

void par_recipe_destroy(par_recipe_t *r)
{
        size_t i;

        if (!r || r == &noop_recipe)
                return;
        for (i = 0; i < r->nsteps; i++)
                step_free(&r->steps[i]);
        free(r->steps);
        free(r->name);
        free(r->title);
        free(r->param_url_schemes);
        free(r->path);
        free(r);
}

par_err_t par_recipe_parse(par_recipe_t **out, const char *name,
                           const char *origin, const char *json_text,
                           int default_timeout_ms, par_error_t *err)
{
        vctx_t c = {origin ? origin : name, -1, NULL, err};
        json_error_t jerr;
        json_t *root = NULL, *steps, *s, *v;
        par_recipe_t *r = NULL;
        par_err_t rc;
        double d;
        bool has;
        size_t i, t;

        root = json_loads(json_text, JSON_REJECT_DUPLICATES, &jerr);
        if (!root) {
                rc = par_error_set(err, PAR_ERR_INVALID,
                                   "%s: line %d column %d: %s", c.origin,
                                   jerr.line, jerr.column, jerr.text);
                goto out;
        }
        if (!json_is_object(root)) {
                rc = par_error_set(err, PAR_ERR_INVALID,
                                   "%s: expected a JSON object", c.origin);
                goto out;
        }
        r = calloc(1, sizeof(*r));
        if (!r || !(r->name = strdup(name)))
                goto nomem;
        r->uses_browser = true;
        if ((rc = get_str(&c, root, "title", false, false, &r->title)))
                goto out;
        if (!r->title && !(r->title = strdup(name)))
                goto nomem;
        if (origin && !(r->path = strdup(origin)))
                goto nomem;
        r->timeout_ms = default_timeout_ms;
        if ((rc = get_num(&c, root, "timeout", 1, 86400000, &has, &d)))
                goto out;
        if (has)
                r->timeout_ms = (int)d;
        if ((rc =
                 get_bool(&c, root, "failOnPageError", &r->fail_on_page_error)))
                goto out;
        v = json_object_get(root, "stateScope");
        if (v && (!json_is_string(v) ||
                  (strcmp(json_string_value(v), "spin") &&
                   strcmp(json_string_value(v), "resource")))) {
                rc = bad(&c, "stateScope",
                         "expected \"spin\" or "
                         "\"resource\"");
                goto out;
        }
        if (v)
                r->state_scope = strcmp(json_string_value(v), "spin")
                                     ? PAR_RECIPE_SCOPE_RESOURCE
                                     : PAR_RECIPE_SCOPE_SPIN;
        v = json_object_get(root, "selectorAttribute");
        if (v && !json_is_string(v)) {
                rc = bad(&c, "selectorAttribute", "expected a string");
                goto out;
        }
        v = json_object_get(root, "paramUrlSchemes");
        if (v && (rc = get_schemes(&c, v, &r->param_url_schemes)))
                goto out;
        steps = json_object_get(root, "steps");
        /* An empty array is a recording that does nothing, and passes
         * (as in the reference replayer). */
        if (!json_is_array(steps)) {
                rc = bad(&c, "steps", "expected an array");
                goto out;
        }
        r->steps = calloc(json_array_size(steps) + 1, sizeof(*r->steps));
        if (!r->steps)
                goto nomem;
        json_array_foreach(steps, i, s)
        {
                const char *type;

                c.step = (long)i;
                c.type = NULL;
                if (!json_is_object(s)) {
                        rc = bad(&c, "step", "expected an object");
                        goto out;
                }
                type = json_string_value(json_object_get(s, "type"));
                if (!type) {
                        rc = bad(&c, "type", "required string is missing");
                        goto out;
                }
                c.type = type;
                for (t = 0; t < NSTEP_TYPES; t++)
                        if (!strcmp(type, step_names[t]))
                                break;
                if (t == NSTEP_TYPES) {
                        rc = bad(&c, "type",
                                 "unsupported step type (supported: "
                                 "setViewport navigate click doubleClick "
                                 "change keyDown keyUp scroll hover "
                                 "waitForElement waitForExpression extract "
                                 "close customStep; not "
                                 "emulateNetworkConditions)");
                        goto out;
                }
                r->nsteps = i + 1;
                r->steps[i].type = (par_step_type_t)t;
                if ((rc = parse_step(&c, s, &r->steps[i], r->timeout_ms)))
                        goto out;
        }
        *out = r;
        r = NULL;
        rc = PAR_OK;
        goto out;
nomem:
        rc = par_error_set(err, PAR_ERR_NOMEM, "out of memory");
out:
        par_recipe_destroy(r);
        json_decref(root);
        return rc;
}

par_err_t par_recipe_load_file(par_recipe_t **out, const char *path,
                               int default_timeout_ms, par_error_t *err)
{
        FILE *f = par_file_open_regular(path, err);
        char *text = NULL, *name = NULL, *dot;
        const char *base;
        long len;
        par_err_t rc;

        if (!f)
                return err ? err->code : PAR_ERR_IO;
        if (fseek(f, 0, SEEK_END) || (len = ftell(f)) < 0 ||
            fseek(f, 0, SEEK_SET)) {
                rc = par_error_set(err, PAR_ERR_IO, "%s: %s", path,
                                   strerror(errno));
                goto out;
        }
        if (len > 4 * 1024 * 1024) {
                rc = par_error_set(err, PAR_ERR_INVALID,
                                   "%s: larger than 4 MiB", path);
                goto out;
        }
        text = malloc((size_t)len + 1);
        if (!text) {
                rc = par_error_set(err, PAR_ERR_NOMEM, "out of memory");
                goto out;
        }
        if (fread(text, 1, (size_t)len, f) != (size_t)len) {
                rc = par_error_set(err, PAR_ERR_IO, "%s: short read", path);
                goto out;
        }
        text[len] = '\0';
        base = strrchr(path, '/');
        base = base ? base + 1 : path;
        name = strdup(base);
        if (!name) {
                rc = par_error_set(err, PAR_ERR_NOMEM, "out of memory");
                goto out;
        }
        dot = strrchr(name, '.');
        if (dot && !strcmp(dot, ".json"))
                *dot = '\0';
        rc = par_recipe_parse(out, name, path, text, default_timeout_ms, err);
out:
        free(name);
        free(text);
        fclose(f);
        return rc;
}

/* ---- sets ------------------------------------------------------------ */

par_err_t par_recipe_set_new(par_recipe_set_t **out, par_error_t *err)
{
        par_recipe_set_t *s = calloc(1, sizeof(*s));

        if (!s)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        *out = s;
        return PAR_OK;
}

par_err_t par_recipe_set_add(par_recipe_set_t *set, par_recipe_t *r,
                             par_error_t *err)
{
        if (par_recipe_set_get(set, r->name)) {
                par_error_set(err, PAR_ERR_INVALID,
                              "%s: a recipe named '%s' already exists",
                              r->path ? r->path : r->name, r->name);
                par_recipe_destroy(r);
                return PAR_ERR_INVALID;
        }
        if (set->n == set->cap) {
                size_t nc = set->cap ? set->cap * 2 : 8;
                par_recipe_t **nv = realloc(set->v, nc * sizeof(*nv));

                if (!nv) {
                        par_recipe_destroy(r);
                        return par_error_set(err, PAR_ERR_NOMEM,
                                             "out of memory");
                }
                set->v = nv;
                set->cap = nc;
        }
        set->v[set->n++] = r;
        return PAR_OK;
}

const par_recipe_t *par_recipe_set_get(const par_recipe_set_t *set,
                                       const char *name)
{
        size_t i;

        if (!strcmp(name, noop_recipe.name))
                return &noop_recipe;
        for (i = 0; set && i < set->n; i++)
                if (!strcmp(set->v[i]->name, name))
                        return set->v[i];
        return NULL;
}

size_t par_recipe_set_count(const par_recipe_set_t *set)
{
        return (set ? set->n : 0) + 1;
}

const par_recipe_t *par_recipe_set_at(const par_recipe_set_t *set, size_t i)
{
        if (i == 0)
                return &noop_recipe;
        return set && i - 1 < set->n ? set->v[i - 1] : NULL;
}

void par_recipe_set_destroy(par_recipe_set_t *set)
{
        size_t i;

        if (!set)
                return;
        for (i = 0; i < set->n; i++)
                par_recipe_destroy(set->v[i]);
        free(set->v);
        free(set);
}

static int by_name(const void *a, const void *b)
{
        return strcmp((*(par_recipe_t *const *)a)->name,
                      (*(par_recipe_t *const *)b)->name);
}

par_err_t par_recipe_load_dir(par_recipe_set_t **out, const char *dir,
                              int default_timeout_ms, par_error_t *err)
{
        par_recipe_set_t *set = NULL;
        DIR *d = opendir(dir);
        struct dirent *e;
        par_err_t rc;

        if (!d)
                return par_error_set(err, PAR_ERR_IO, "recipes.dir %s: %s", dir,
                                     strerror(errno));
        if ((rc = par_recipe_set_new(&set, err)))
                goto out;
        while ((e = readdir(d)) != NULL) {
                size_t l = strlen(e->d_name);
                char path[4096];
                par_recipe_t *r;

                if (l <= 5 || strcmp(e->d_name + l - 5, ".json") ||
                    e->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
                if ((rc = par_recipe_load_file(&r, path, default_timeout_ms,
                                               err)) ||
                    (rc = par_recipe_set_add(set, r, err)))
                        goto out;
        }
        if (set->n)
                qsort(set->v, set->n, sizeof(*set->v), by_name);
        *out = set;
        set = NULL;
        rc = PAR_OK;
out:
        par_recipe_set_destroy(set);
        closedir(d);
        return rc;
}

/* ---- keys ------------------------------------------------------------ */

static const par_key_info_t named_keys[] = {
    {"Enter", "Enter", "\r", 13, 0},
    {"\r", "Enter", "\r", 13, 0},
    {"\n", "Enter", "\r", 13, 0},
    {"NumpadEnter", "NumpadEnter", "\r", 13, 0},
    {"Tab", "Tab", "", 9, 0},
    {"Backspace", "Backspace", "", 8, 0},
    {"Escape", "Escape", "", 27, 0},
    {"Delete", "Delete", "", 46, 0},
    {"Insert", "Insert", "", 45, 0},
    {"Home", "Home", "", 36, 0},
    {"End", "End", "", 35, 0},
    {"PageUp", "PageUp", "", 33, 0},
    {"PageDown", "PageDown", "", 34, 0},
    {"ArrowLeft", "ArrowLeft", "", 37, 0},
    {"ArrowUp", "ArrowUp", "", 38, 0},
    {"ArrowRight", "ArrowRight", "", 39, 0},
    {"ArrowDown", "ArrowDown", "", 40, 0},
    {"Space", "Space", " ", 32, 0},
    {" ", "Space", " ", 32, 0},
    {"Shift", "ShiftLeft", "", 16, 8},
    {"ShiftLeft", "ShiftLeft", "", 16, 8},
    {"ShiftRight", "ShiftRight", "", 16, 8},
    {"Control", "ControlLeft", "", 17, 2},
    {"ControlLeft", "ControlLeft", "", 17, 2},
    {"ControlRight", "ControlRight", "", 17, 2},
    {"Alt", "AltLeft", "", 18, 1},
    {"AltLeft", "AltLeft", "", 18, 1},
    {"AltRight", "AltRight", "", 18, 1},
    {"Meta", "MetaLeft", "", 91, 4},
    {"MetaLeft", "MetaLeft", "", 91, 4},
    {"MetaRight", "MetaRight", "", 92, 4},
    {"CapsLock", "CapsLock", "", 20, 0},
    {"F1", "F1", "", 112, 0},
    {"F2", "F2", "", 113, 0},
    {"F3", "F3", "", 114, 0},
    {"F4", "F4", "", 115, 0},
    {"F5", "F5", "", 116, 0},
    {"F6", "F6", "", 117, 0},
    {"F7", "F7", "", 118, 0},
    {"F8", "F8", "", 119, 0},
    {"F9", "F9", "", 120, 0},
    {"F10", "F10", "", 121, 0},
    {"F11", "F11", "", 122, 0},
    {"F12", "F12", "", 123, 0},
};

int par_recipe_key_lookup(const char *name, par_key_info_t *out)
{
        /* Per-character tables for the printable ASCII keys: key and text
         * are the character itself. */
        static const char chars[] = " !\"#$%&'()*+,-./0123456789:;<=>?@"
                                    "ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`"
                                    "abcdefghijklmnopqrstuvwxyz{|}~";
        static const char *const letter_codes[26] = {
            "KeyA", "KeyB", "KeyC", "KeyD", "KeyE", "KeyF", "KeyG",
            "KeyH", "KeyI", "KeyJ", "KeyK", "KeyL", "KeyM", "KeyN",
            "KeyO", "KeyP", "KeyQ", "KeyR", "KeyS", "KeyT", "KeyU",
            "KeyV", "KeyW", "KeyX", "KeyY", "KeyZ"};
        static const char *const digit_codes[10] = {
            "Digit0", "Digit1", "Digit2", "Digit3", "Digit4",
            "Digit5", "Digit6", "Digit7", "Digit8", "Digit9"};
        size_t i;
        int c;

        for (i = 0; i < sizeof(named_keys) / sizeof(named_keys[0]); i++)
                if (!strcmp(name, named_keys[i].key)) {
                        *out = named_keys[i];
                        if (name[0] == '\r' || name[0] == '\n')
                                strcpy(out->key, "Enter");
                        return 0;
                }
        /* "KeyA" / "Digit5" name the physical key: lower-case letter. */
        if (!strncmp(name, "Key", 3) && name[3] >= 'A' && name[3] <= 'Z' &&
            !name[4])
                c = name[3] - 'A' + 'a';
        else if (!strncmp(name, "Digit", 5) &&
                 isdigit((unsigned char)name[5]) && !name[6])
                c = name[5];
        else if (name[0] && !name[1])
                c = (unsigned char)name[0];
        else
                return -1;
        if (!c || !strchr(chars, c))
                return -1;
        out->key[0] = out->text[0] = (char)c;
        out->key[1] = out->text[1] = '\0';
        out->modifier = 0;
        if (isalpha(c)) {
                out->code = letter_codes[toupper(c) - 'A'];
                out->key_code = toupper(c);
        } else if (isdigit(c)) {
                out->code = digit_codes[c - '0'];
                out->key_code = c;
        } else {
                out->code = c == ' ' ? "Space" : "";
                out->key_code = c == ' ' ? 32 : 0;
        }
        return 0;
}
