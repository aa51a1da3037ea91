/* testutil.c — see testutil.h. */
#include "testutil.h"

#include "browser/recipe.h"

int tu_failures;
int tu_checks;

int tu_streq(const char *a, const char *b)
{
        return a && b && !strcmp(a, b);
}

const char *tu_str(const char *s)
{
        return s ? s : "(null)";
}

const char *tu_env(const char *name, const char *def)
{
        const char *v = getenv(name);
        return v && *v ? v : def;
}

int tu_write_file(const char *dir, const char *name, const char *text)
{
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        FILE *f = fopen(path, "w");
        if (!f)
                return -1;
        fputs(text, f);
        return fclose(f);
}

par_recipe_t *tu_recipe_fixture(const char *name, int default_timeout_ms)
{
        char path[1024];
        par_recipe_t *r = NULL;
        par_error_t e = {0};

        snprintf(path, sizeof(path), "%s/tests/fixtures/recipes/%s.json",
                 tu_env("PARALLEL_SOURCE_DIR", "."), name);
        if (par_recipe_load_file(&r, path, default_timeout_ms, &e))
                fprintf(stderr, "load %s: %s\n", path, e.msg);
        return r;
}

int tu_main(int (*setup)(void), void (*teardown)(void), const tu_test_fn *tests,
            size_t n, const char *names)
{
        const char *p = names;

        if (setup && setup())
                return 1;
        for (size_t i = 0; i < n; i++) {
                int before = tu_failures;
                size_t len;

                /* names is "test_a, test_b": take the i-th. */
                while (*p == ' ' || *p == ',')
                        p++;
                len = strcspn(p, ", ");
                fprintf(stderr, "-- %.*s\n", (int)len, p);
                tests[i]();
                fprintf(stderr, "   %.*s %s\n", (int)len, p,
                        tu_failures == before ? "ok" : "FAILED");
                p += len;
        }
        if (teardown)
                teardown();
        fprintf(stderr, "%d checks, %d failed\n", tu_checks, tu_failures);
        return tu_failures ? 1 : 0;
}
