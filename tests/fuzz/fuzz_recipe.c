/* fuzz_recipe.c — the recipe loader on any text. A recipe that loads must
 * substitute every string field with a hostile param without error other
 * than a permanent one, and no expression may keep a placeholder inside a
 * literal. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/text.h"
#include "browser/recipe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        par_recipe_t *r = NULL;
        par_error_t err;
        char *text = malloc(size + 1);

        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = '\0';
        if (par_recipe_parse(&r, "fuzz", "fuzz.json", text, 5000, &err)) {
                if (!par_utf8_valid(err.msg, strlen(err.msg)))
                        abort();
                free(text);
                return 0;
        }
        json_t *params = json_pack("{s:s,s:s,s:s}", "p", "' + (x=1) + '", "u",
                                   "data:text/html,x", "a", "\xe2\x80\xa8");
        for (size_t i = 0; i < r->nsteps; i++) {
                const par_step_t *st = &r->steps[i];
                char *out = NULL;
                size_t at;
                if (st->expression) {
                        if (par_recipe_placeholder_in_literal(st->expression,
                                                              &at))
                                abort();
                        par_recipe_subst(st->expression, params, PAR_SUBST_JS,
                                         &out, &err);
                        free(out);
                        out = NULL;
                }
                if (st->url && !par_recipe_subst(st->url, params,
                                                 PAR_SUBST_TEXT, &out, &err)) {
                        par_recipe_check_url(r, st->url, out, &err);
                        free(out);
                }
        }
        json_decref(params);
        par_recipe_destroy(r);
        free(text);
        return 0;
}
