/*
 * chrome_conformance_test.c — Recorder recordings end in Parallel as they
 * end in the reference replayer, @puppeteer/replay (label chrome).
 *
 * Every recording in tests/fixtures/replay/recordings (puppeteer/replay's
 * own runner tests and spec recording, plus extra-*.json probes; see the
 * README there) runs once on a fresh tab against the pages in
 * tests/fixtures/replay/pages, served on 127.0.0.1. Its outcome — done, or
 * failed at step N — must equal the reference outcome in
 * tests/conformance/expected.json, which tests/conformance/reference.mjs
 * produced by running @puppeteer/replay 3.1.3 on the same files. A
 * recording rejected at load counts as a mismatch: these are all recordings
 * the reference runs.
 *
 * The browser gets the upstream tests' flags: a host name "oopifdomain"
 * that resolves to 127.0.0.1, so an iframe on it is out-of-process.
 * CONFORMANCE_ONLY=name runs one recording (for debugging).
 */
#include <dirent.h>

#include "base/clock.h"
#include "base/log.h"
#include "browser/chrome.h"
#include "browser/recipe.h"
#include "browser/spin.h"
#include "fixture_server.h"
#include "testutil.h"

static int by_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "pass" or "fail@N" for a spin result; "rejected" when it did not load. */
static void outcome_of(const par_spin_result_t *res, char *out, size_t n)
{
        if (res->status == PAR_SPIN_DONE)
                snprintf(out, n, "pass");
        else
                snprintf(out, n, "fail@%d", res->err_step);
}

static void expected_of(json_t *exp, const char *name, char *out, size_t n)
{
        json_t *e = json_object_get(exp, name);
        const char *o = json_string_value(json_object_get(e, "outcome"));

        if (!o)
                snprintf(out, n, "(none)");
        else if (!strcmp(o, "pass"))
                snprintf(out, n, "pass");
        else
                snprintf(out, n, "fail@%d",
                         (int)json_integer_value(json_object_get(e, "step")));
}

static void test_conformance(void)
{
        const char *src = tu_env("PARALLEL_SOURCE_DIR", ".");
        const char *only = getenv("CONFORMANCE_ONLY");
        char pages[1024], dir[1024], path[1200],
            tmpdir[] = "/tmp/par_conf_XXXXXX";
        char *names[256];
        size_t nnames = 0, i, same = 0, ran = 0;
        json_t *exp, *params;
        json_error_t jerr;
        fx_server_t fx;
        par_chrome_opts_t o;
        par_chrome_t *chrome = NULL;
        par_spin_opts_t sopts = {60000, 50};
        par_error_t e = {0};
        struct dirent *de;
        DIR *d;

        par_log_set_level(PAR_LOG_ERROR);
        snprintf(path, sizeof(path), "%s/tests/conformance/expected.json", src);
        exp = json_load_file(path, 0, &jerr);
        REQUIRE(exp);
        snprintf(pages, sizeof(pages), "%s/tests/fixtures/replay/pages", src);
        snprintf(dir, sizeof(dir), "%s/tests/fixtures/replay/recordings", src);
        d = opendir(dir);
        REQUIRE(d);
        while ((de = readdir(d)) && nnames < 256) {
                size_t l = strlen(de->d_name);

                if (l > 5 && !strcmp(de->d_name + l - 5, ".json"))
                        names[nnames++] = strndup(de->d_name, l - 5);
        }
        closedir(d);
        qsort(names, nnames, sizeof(*names), by_str);
        /* Every reference outcome has its recording and vice versa. */
        CHECK(nnames == json_object_size(exp));
        REQUIRE(fx_server_start(&fx, pages) == 0);
        REQUIRE(mkdtemp(tmpdir));
        params = json_object();
        {
                char b[64];

                snprintf(b, sizeof(b), "http://localhost:%d", fx.port);
                json_object_set_new(params, "base", json_string(b));
                snprintf(b, sizeof(b), "http://oopifdomain:%d", fx.port);
                json_object_set_new(params, "oopif", json_string(b));
        }
        par_chrome_opts_default(&o);
        snprintf(o.tmp_dir, sizeof(o.tmp_dir), "%s", tmpdir);
        snprintf(o.extra_args, sizeof(o.extra_args),
                 "--site-per-process \"--host-rules=MAP oopifdomain "
                 "127.0.0.1, MAP localhost 127.0.0.1\"");
        REQUIRE(par_chrome_new(&chrome, &o, 1, &e) == PAR_OK);

        printf("%-45s %-10s %-10s\n", "recording", "reference", "parallel");
        for (i = 0; i < nnames; i++) {
                char want[32], got[32];
                par_recipe_t *r = NULL;
                par_spin_result_t res = {0};
                par_tab_t *tab = NULL;
                int64_t t0 = par_clock_mono_ms();

                if (only && strcmp(only, names[i]))
                        continue;
                ran++;
                expected_of(exp, names[i], want, sizeof(want));
                snprintf(path, sizeof(path), "%s/%s.json", dir, names[i]);
                if (par_recipe_load_file(&r, path, 5000, &e)) {
                        snprintf(got, sizeof(got), "rejected");
                        printf("%-45s %-10s %-10s MISMATCH %s\n", names[i],
                               want, got, e.msg);
                        CHECKF(0, "%s rejected: %s", names[i], e.msg);
                        continue;
                }
                if (par_chrome_tab_acquire(chrome, 0, &tab, &e)) {
                        CHECKF(0, "acquire: %s", e.msg);
                        par_recipe_destroy(r);
                        continue;
                }
                par_spin_run(tab, r, params, &sopts, &res, &e);
                par_chrome_tab_release(chrome, tab, res.tab_broken);
                outcome_of(&res, got, sizeof(got));
                if (!strcmp(want, got))
                        same++;
                printf("%-45s %-10s %-10s %s%s (%lld ms)\n", names[i], want,
                       got, strcmp(want, got) ? "MISMATCH " : "",
                       res.status == PAR_SPIN_FAILED ? res.err_msg : "",
                       (long long)(par_clock_mono_ms() - t0));
                CHECKF(!strcmp(want, got), "%s: reference %s, parallel %s",
                       names[i], want, got);
                par_spin_result_clear(&res);
                par_recipe_destroy(r);
        }
        printf("conformance: %zu of %zu recordings end as the reference "
               "ends them\n",
               same, ran);
        par_chrome_destroy(chrome);
        rmdir(tmpdir);
        fx_server_stop(&fx);
        json_decref(params);
        json_decref(exp);
        for (i = 0; i < nnames; i++)
                free(names[i]);
}

TEST_MAIN(test_conformance)
