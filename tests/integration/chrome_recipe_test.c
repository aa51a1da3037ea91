/*
 * chrome_recipe_test.c — recipes against real Chromium (label chrome).
 *
 * Every fixture page and every step type runs for real, each check looks at
 * what the page saw (so a step that silently does nothing fails), errors
 * are checked for their class and step, and the failure modes a worker
 * lives with are provoked: a renderer crash and a SIGKILLed browser
 * mid-spin (transient, the next spin works), a page that never loads, and
 * 60 spins with recycling that must leave no process or temp dir behind.
 */
#include <dirent.h>
#include <glob.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "base/clock.h"
#include "browser/chrome.h"
#include "fixture_server.h"
#include "base/log.h"
#include "browser/recipe.h"
#include "browser/spin.h"
#include "testutil.h"

static fx_server_t fx;
static char base[64];
static char tmpdir[] = "/tmp/par_recipe_it_XXXXXX";
static par_chrome_t *chrome;
static par_spin_opts_t sopts = {30000, 50};

static par_recipe_t *fixture(const char *name)
{
        return tu_recipe_fixture(name, 5000);
}

static par_recipe_t *inline_recipe(const char *json)
{
        par_recipe_t *r = NULL;
        par_error_t e = {0};

        if (par_recipe_parse(&r, "inline", NULL, json, 3000, &e))
                fprintf(stderr, "parse: %s\n", e.msg);
        return r;
}

/* params: base plus NULL-terminated key, value pairs. */
static json_t *params(const char *k, ...)
{
        json_t *p = json_pack("{s:s}", "base", base);
        va_list ap;

        va_start(ap, k);
        for (; k; k = va_arg(ap, const char *))
                json_object_set_new(p, k, json_string(va_arg(ap, char *)));
        va_end(ap);
        return p;
}

/* Runs r on worker w's tab; fills res; releases the tab as the spin says. */
static par_err_t spin_on(par_chrome_t *c, int w, const par_recipe_t *r,
                         json_t *p, par_spin_result_t *res)
{
        par_error_t e = {0};
        par_tab_t *tab = NULL;
        par_err_t rc;

        memset(res, 0, sizeof(*res));
        rc = par_chrome_tab_acquire(c, w, &tab, &e);
        if (rc) {
                fprintf(stderr, "acquire: %s\n", e.msg);
                return rc;
        }
        rc = par_spin_run(tab, r, p, &sopts, res, &e);
        if (rc)
                fprintf(stderr, "   spin %s: %s [%s]\n", r->name, e.msg,
                        par_spin_class_name(res->err_class));
        par_chrome_tab_release(c, tab, res->tab_broken);
        return rc;
}

static const char *value(const par_spin_result_t *res, const char *k)
{
        return json_string_value(json_object_get(res->values, k));
}

/* Runs a fixture recipe and expects success. */
static void expect_done(const char *name, json_t *p, const char *key,
                        const char *want)
{
        par_recipe_t *r = fixture(name);
        par_spin_result_t res;

        REQUIRE(r);
        CHECKF(spin_on(chrome, 0, r, p, &res) == PAR_OK, "%s", name);
        CHECK(res.status == PAR_SPIN_DONE);
        CHECK(res.nsteps == r->nsteps);
        if (key)
                CHECK_STR(value(&res, key), want);
        par_spin_result_clear(&res);
        par_recipe_destroy(r);
        json_decref(p);
}

/* Runs a recipe and expects a failure of the given class at step. */
static void expect_fail(par_recipe_t *r, json_t *p, par_spin_class_t cls,
                        int step, const char *msg_part)
{
        par_spin_result_t res;
        par_err_t rc;

        REQUIRE(r);
        rc = spin_on(chrome, 0, r, p, &res);
        CHECK(rc == (cls == PAR_SPIN_TRANSIENT ? PAR_ERR_TRANSIENT
                                               : PAR_ERR_PERMANENT));
        CHECK(res.status == PAR_SPIN_FAILED);
        CHECKF(res.err_class == cls, "class %s",
               par_spin_class_name(res.err_class));
        CHECKF(res.err_step == step, "step %d, want %d", res.err_step, step);
        CHECKF(strstr(res.err_msg, msg_part) != NULL, "'%s' lacks '%s'",
               res.err_msg, msg_part);
        par_spin_result_clear(&res);
        par_recipe_destroy(r);
        json_decref(p);
}

/* noop needs no tab; a browser recipe without one is refused. */
static void test_noop(void)
{
        par_recipe_t *r = fixture("late");
        par_spin_result_t res;
        par_error_t e = {0};

        CHECK(par_spin_run(NULL, par_recipe_noop(), NULL, &sopts, &res, &e) ==
              PAR_OK);
        CHECK(res.status == PAR_SPIN_DONE && res.nsteps == 0);
        par_spin_result_clear(&res);
        REQUIRE(r);
        CHECK(par_spin_run(NULL, r, NULL, &sopts, &res, &e) ==
              PAR_ERR_PERMANENT);
        CHECK(strstr(e.msg, "needs a browser tab") != NULL);
        par_spin_result_clear(&res);
        par_recipe_destroy(r);
}

static void test_fixture_pages(void)
{
        expect_done("late", params(NULL), "out", "late clicked");
        expect_done("shadow", params(NULL), "out", "shadow clicked");
        expect_done("nav", params(NULL), "query", "?from=nav");
        expect_done("disabled", params(NULL), "out", "clicked when enabled");
        expect_done("bench", params("q", "42", NULL), "answer", "answer:42");
        /* change: typed text gets trusted input + one change; select gets
         * the value and both events; params with quotes, backslashes, a
         * closing script tag and non-ASCII arrive verbatim. */
        {
                const char *tricky = "Ann \"O'Neil\" \\ </script> é 😀";
                char want[256];
                par_recipe_t *r = fixture("form");
                par_spin_result_t res;
                json_t *p = params("name", tricky, "note", "two\nlines", NULL);

                REQUIRE(r);
                CHECK(spin_on(chrome, 0, r, p, &res) == PAR_OK);
                snprintf(want, sizeof(want), "%s|green|two\nlines", tricky);
                CHECK_STR(value(&res, "result"), want);
                /* (a newline is inserted as its own input event) */
                CHECK_STR(value(&res, "events"),
                          "name:input name:change color:input(synthetic) "
                          "color:change(synthetic) note:input note:input "
                          "note:input note:change");
                par_spin_result_clear(&res);
                par_recipe_destroy(r);
                json_decref(p);
        }
        /* hover, doubleClick, aria/xpath/text clicks, keys with a held
         * modifier and a key from a param, element and page scroll,
         * waitForElement counts, setViewport */
        expect_done("interact", params("key", "Enter", NULL), "state",
                    "[\"yes\",\"yes\",\"aria\",\"xpath\",\"text\","
                    "\"Shift+S,a+S,Enter,\",250,1000,800]");
}

/* A port nothing listens on (bound, then closed). */
static int closed_port(void)
{
        struct sockaddr_in a = {0};
        socklen_t al = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;

        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof(a)) &&
            !getsockname(fd, (struct sockaddr *)&a, &al))
                port = ntohs(a.sin_port);
        if (fd >= 0)
                close(fd);
        return port;
}

static void test_failures_are_classified(void)
{
        char url[128];
        json_t *p;

        /* a selector that never appears: permanent, at the click */
        expect_fail(fixture("missing"), params(NULL), PAR_SPIN_PERMANENT, 1,
                    "no selector matched after 800 ms");
        /* a page exception with failOnPageError: permanent */
        expect_fail(fixture("throws"), params(NULL), PAR_SPIN_PERMANENT, 0,
                    "fixture boom");
        /* the same page without failOnPageError succeeds */
        {
                par_recipe_t *r = inline_recipe(
                    "{\"steps\": [{\"type\": \"navigate\", \"url\": "
                    "\"{{base}}/throws.html\"}, {\"type\": "
                    "\"waitForElement\", \"selectors\": [\"#ok\"]}]}");
                par_spin_result_t res;

                REQUIRE(r);
                p = params(NULL);
                CHECK(spin_on(chrome, 0, r, p, &res) == PAR_OK);
                par_spin_result_clear(&res);
                par_recipe_destroy(r);
                json_decref(p);
        }
        /* a page that never finishes loading: transient, tab broken; the
         * worker's next spin works */
        {
                par_recipe_t *r = fixture("slow");
                par_spin_result_t res;

                REQUIRE(r);
                p = params(NULL);
                CHECK(spin_on(chrome, 0, r, p, &res) == PAR_ERR_TRANSIENT);
                CHECK(res.err_code == PAR_ERR_TIMEOUT);
                CHECK(res.tab_broken);
                CHECK(res.err_step == 0);
                par_spin_result_clear(&res);
                par_recipe_destroy(r);
                json_decref(p);
                expect_done("late", params(NULL), "out", "late clicked");
        }
        /* a disabled button that never enables in time (it stays disabled
         * for 10 minutes: with the default 500 ms, a page whose load event
         * came late on a loaded machine had its button enabled already) */
        expect_fail(
            inline_recipe("{\"steps\": [{\"type\": \"navigate\", "
                          "\"url\": \"{{base}}/disabled.html?ms=600000\"}, "
                          "{\"type\": \"click\", \"selectors\": "
                          "[\"#later\"], \"timeout\": 200}]}"),
            params(NULL), PAR_SPIN_PERMANENT, 1, "element is disabled");
        /* connection refused: transient */
        snprintf(url, sizeof(url),
                 "{\"steps\": [{\"type\": \"navigate\", \"url\": "
                 "\"http://127.0.0.1:%d/\"}]}",
                 closed_port());
        expect_fail(inline_recipe(url), params(NULL), PAR_SPIN_TRANSIENT, 0,
                    "net::ERR_CONNECTION_REFUSED");
        /* unknown placeholder: permanent, names it */
        expect_fail(inline_recipe("{\"steps\": [{\"type\": \"navigate\", "
                                  "\"url\": \"{{base}}/late.html\"}, "
                                  "{\"type\": \"change\", \"selectors\": "
                                  "[\"#q\"], \"value\": \"{{who}}\"}]}"),
                    params(NULL), PAR_SPIN_PERMANENT, 1,
                    "unknown placeholder {{who}}");
        /* asserted navigation with the wrong title */
        expect_fail(inline_recipe(
                        "{\"steps\": [{\"type\": \"navigate\", \"url\": "
                        "\"{{base}}/nav.html\"}, {\"type\": \"click\", "
                        "\"selectors\": [\"#go\"], \"assertedEvents\": "
                        "[{\"type\": \"navigation\", \"title\": \"Nope\"}]}]}"),
                    params(NULL), PAR_SPIN_PERMANENT, 1,
                    "page title is 'Landed', expected 'Nope'");
        /* asserted navigation that never happens: a navigation timeout */
        expect_fail(inline_recipe(
                        "{\"steps\": [{\"type\": \"navigate\", \"url\": "
                        "\"{{base}}/late.html\"}, {\"type\": \"click\", "
                        "\"selectors\": [\"#late\"], \"timeout\": 1000, "
                        "\"assertedEvents\": [{\"type\": \"navigation\"}]}]}"),
                    params(NULL), PAR_SPIN_TRANSIENT, 1,
                    "navigation did not complete within 1000 ms");
}

/* Each step type with a check that fails when the step does nothing or
 * the wrong thing. */
static void test_step_failures(void)
{
        const char *nav = "{\"type\": \"navigate\", \"url\": "
                          "\"{{base}}/form.html\"}";
        char j[1024];

        snprintf(j, sizeof(j),
                 "{\"steps\": [%s, {\"type\": \"change\", \"selectors\": "
                 "[\"#color\"], \"value\": \"blue\", \"timeout\": 300}]}",
                 nav);
        expect_fail(inline_recipe(j), params(NULL), PAR_SPIN_PERMANENT, 1,
                    "no option has value \"blue\"");
        snprintf(j, sizeof(j),
                 "{\"steps\": [%s, {\"type\": \"keyDown\", \"key\": "
                 "\"{{k}}\"}]}",
                 nav);
        expect_fail(inline_recipe(j), params("k", "Hyper", NULL),
                    PAR_SPIN_PERMANENT, 1, "unknown key 'Hyper'");
        snprintf(j, sizeof(j),
                 "{\"steps\": [%s, {\"type\": \"waitForElement\", "
                 "\"selectors\": [\"input\"], \"count\": 5, \"timeout\": "
                 "300}]}",
                 nav);
        expect_fail(inline_recipe(j), params(NULL), PAR_SPIN_PERMANENT, 1,
                    "found 2 matching element(s), want >= 5");
        snprintf(j, sizeof(j),
                 "{\"steps\": [%s, {\"type\": \"waitForExpression\", "
                 "\"expression\": \"false\", \"timeout\": 300}]}",
                 nav);
        expect_fail(inline_recipe(j), params(NULL), PAR_SPIN_PERMANENT, 1,
                    "expression stayed falsy for 300 ms");
        snprintf(j, sizeof(j),
                 "{\"steps\": [%s, {\"type\": \"waitForExpression\", "
                 "\"expression\": \"nosuchvar.x\"}]}",
                 nav);
        expect_fail(inline_recipe(j), params(NULL), PAR_SPIN_PERMANENT, 1,
                    "page script threw: ReferenceError");
        snprintf(j, sizeof(j),
                 "{\"steps\": [%s, {\"type\": \"extract\", \"name\": \"v\", "
                 "\"expression\": \"undefined\"}]}",
                 nav);
        expect_fail(inline_recipe(j), params(NULL), PAR_SPIN_PERMANENT, 1,
                    "extract v: expression returned undefined");
        snprintf(j, sizeof(j),
                 "{\"steps\": [%s, {\"type\": \"hover\", \"selectors\": "
                 "[\"#nope\"], \"timeout\": 200}]}",
                 nav);
        expect_fail(inline_recipe(j), params(NULL), PAR_SPIN_PERMANENT, 1,
                    "no selector matched");
        snprintf(j, sizeof(j),
                 "{\"steps\": [%s, {\"type\": \"scroll\", \"selectors\": "
                 "[\"#nope\"], \"y\": 3, \"timeout\": 200}]}",
                 nav);
        expect_fail(inline_recipe(j), params(NULL), PAR_SPIN_PERMANENT, 1,
                    "no selector matched");
        snprintf(j, sizeof(j),
                 "{\"steps\": [%s, {\"type\": \"doubleClick\", \"selectors\": "
                 "[\"aria/Nobody\"], \"timeout\": 200}]}",
                 nav);
        expect_fail(inline_recipe(j), params(NULL), PAR_SPIN_PERMANENT, 1,
                    "no selector matched");

        /* setViewport and extract of a non-string; an injection attempt
         * through a param stays a string */
        {
                par_recipe_t *r = inline_recipe(
                    "{\"steps\": [{\"type\": \"setViewport\", \"width\": 640,"
                    " \"height\": 480, \"deviceScaleFactor\": 2, "
                    "\"isMobile\": false, \"hasTouch\": false, "
                    "\"isLandscape\": false}, {\"type\": \"navigate\", "
                    "\"url\": \"{{base}}/bench.html\"}, {\"type\": "
                    "\"extract\", \"name\": \"vp\", \"expression\": "
                    "\"[innerWidth, innerHeight, devicePixelRatio]\"}, "
                    "{\"type\": \"extract\", \"name\": \"echo\", "
                    "\"expression\": \"{{evil}}\"}, {\"type\": "
                    "\"waitForExpression\", \"expression\": "
                    "\"window.pwned === undefined && {{evil}}.length > 5\"}]}");
                par_spin_result_t res;
                json_t *p = params("evil", "'); window.pwned = 1; ('\"", NULL);

                REQUIRE(r);
                CHECK(spin_on(chrome, 0, r, p, &res) == PAR_OK);
                CHECK_STR(value(&res, "vp"), "[640,480,2]");
                CHECK_STR(value(&res, "echo"), "'); window.pwned = 1; ('\"");
                par_spin_result_clear(&res);
                par_recipe_destroy(r);
                json_decref(p);
        }
}

/* ---- crashes and kills mid-spin ------------------------------------- */

typedef struct bg {
        par_chrome_t *c;
        par_recipe_t *r;
        json_t *p;
        par_spin_result_t res;
        par_err_t rc;
        par_tab_t *tab;
        atomic_int started;
} bg_t;

static void *bg_spin(void *arg)
{
        bg_t *b = arg;
        par_error_t e = {0};

        if (par_chrome_tab_acquire(b->c, 1, &b->tab, &e)) {
                b->rc = PAR_ERR_IO;
                b->started = -1;
                return NULL;
        }
        b->started = 1;
        b->rc = par_spin_run(b->tab, b->r, b->p, &sopts, &b->res, &e);
        par_chrome_tab_release(b->c, b->tab, b->res.tab_broken);
        return NULL;
}

/* Starts the hang recipe on worker 1, lets it reach its wait, runs
 * `kill_it`, and expects a transient failure; then a normal spin on the
 * same worker must work. */
static void mid_spin(void (*kill_it)(bg_t *), const char *what)
{
        bg_t b = {0};
        pthread_t t;
        double t0;
        int i, reqs = atomic_load(&fx.requests);

        b.c = chrome;
        b.r = fixture("hang");
        b.p = params(NULL);
        REQUIRE(b.r);
        REQUIRE(!pthread_create(&t, NULL, bg_spin, &b));
        for (i = 0; i < 200 && !b.started; i++)
                par_clock_sleep_ms(50);
        /* until the page was fetched, then a little: usually the spin is
         * in its waitForExpression by then (step 1), on a loaded machine
         * maybe still in navigate (step 0); either is mid-spin */
        for (i = 0; i < 200 && atomic_load(&fx.requests) == reqs; i++)
                par_clock_sleep_ms(50);
        par_clock_sleep_ms(800);
        t0 = par_clock_mono_s();
        if (b.started == 1)
                kill_it(&b);
        pthread_join(t, NULL);
        fprintf(stderr, "   %s: spin ended %.0f ms after the kill: %s\n", what,
                (par_clock_mono_s() - t0) * 1000, b.res.err_msg);
        CHECK(b.started == 1);
        CHECKF(b.rc == PAR_ERR_TRANSIENT, "%s: rc %d", what, b.rc);
        CHECK(b.res.err_class == PAR_SPIN_TRANSIENT);
        CHECKF(b.res.err_step == 1 || b.res.err_step == 0, "step %d",
               b.res.err_step);
        CHECK(b.res.tab_broken);
        CHECK(par_clock_mono_s() - t0 < 10); /* not the 15 s step timeout */
        par_spin_result_clear(&b.res);
        par_recipe_destroy(b.r);
        json_decref(b.p);
        {
                /* next spin on the same worker */
                par_recipe_t *r = fixture("late");
                par_spin_result_t res;
                json_t *p = params(NULL);

                REQUIRE(r);
                CHECKF(spin_on(chrome, 1, r, p, &res) == PAR_OK,
                       "spin after %s", what);
                CHECK_STR(value(&res, "out"), "late clicked");
                par_spin_result_clear(&res);
                par_recipe_destroy(r);
                json_decref(p);
        }
}

static void crash_renderer(bg_t *b)
{
        par_error_t e = {0};

        /* Page.crash never answers (the renderer is gone): the call itself
         * fails, which is fine; the spin is what we check. */
        par_tab_call(b->tab, "Page.crash", NULL, 2000, NULL, &e);
}

static void kill_browser(bg_t *b)
{
        pid_t pg = par_chrome_browser_pgid(b->c, 1);

        CHECK(pg > 0);
        if (pg > 0)
                kill(-pg, SIGKILL);
}

static void test_renderer_crash(void)
{
        mid_spin(crash_renderer, "Page.crash");
}

static void test_browser_killed(void)
{
        mid_spin(kill_browser, "SIGKILL to the browser");
}

/* The 5 MB screenshot page loads, and a screenshot of it is that big. */
static void test_screenshot_page(void)
{
        par_recipe_t *r = inline_recipe(
            "{\"steps\": [{\"type\": \"setViewport\", \"width\": 1600, "
            "\"height\": 1200, \"deviceScaleFactor\": 1, \"isMobile\": false,"
            " \"hasTouch\": false, \"isLandscape\": false}, {\"type\": "
            "\"navigate\", \"url\": \"{{base}}/screenshot.html\", "
            "\"assertedEvents\": [{\"type\": \"navigation\", \"title\": "
            "\"Screenshot ready\"}]}]}");
        par_error_t e = {0};
        par_spin_result_t res;
        par_tab_t *tab = NULL;
        json_t *p = params(NULL), *shot = NULL;

        REQUIRE(r);
        REQUIRE(!par_chrome_tab_acquire(chrome, 0, &tab, &e));
        CHECK(par_spin_run(tab, r, p, &sopts, &res, &e) == PAR_OK);
        CHECK(!par_tab_call(tab, "Page.captureScreenshot", NULL, 30000, &shot,
                            &e));
        {
                size_t n = json_string_length(json_object_get(shot, "data"));

                fprintf(stderr, "   screenshot: %zu base64 bytes\n", n);
                CHECK(n * 3 / 4 > 5000000);
        }
        json_decref(shot);
        par_chrome_tab_release(chrome, tab, res.tab_broken);
        par_spin_result_clear(&res);
        par_recipe_destroy(r);
        json_decref(p);
}

/* ---- 60 spins with recycling leave nothing behind ------------------ */

typedef struct many {
        par_chrome_t *c;
        par_recipe_t *r;
        int worker, ok, n;
} many_t;

static void *many_spins(void *arg)
{
        many_t *m = arg;
        json_t *p = params("q", "x", NULL);
        int i;

        for (i = 0; i < m->n; i++) {
                par_spin_result_t res;

                if (spin_on(m->c, m->worker, m->r, p, &res) == PAR_OK &&
                    !strcmp(value(&res, "answer"), "answer:x"))
                        m->ok++;
                par_spin_result_clear(&res);
        }
        json_decref(p);
        return NULL;
}

/* Counts processes whose command line mentions s. */
static int procs_mentioning(const char *s)
{
        DIR *d = opendir("/proc");
        struct dirent *e;
        int n = 0;

        while (d && (e = readdir(d)) != NULL) {
                char path[300], buf[8192];
                FILE *f;
                size_t len, i;

                if (e->d_name[0] < '0' || e->d_name[0] > '9')
                        continue;
                snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
                if (!(f = fopen(path, "r")))
                        continue;
                len = fread(buf, 1, sizeof(buf) - 1, f);
                fclose(f);
                for (i = 0; i < len; i++)
                        if (!buf[i])
                                buf[i] = ' ';
                buf[len] = '\0';
                if (strstr(buf, s))
                        n++;
        }
        if (d)
                closedir(d);
        return n;
}

static int dir_entries(const char *path)
{
        DIR *d = opendir(path);
        struct dirent *e;
        int n = 0;

        while (d && (e = readdir(d)) != NULL)
                if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                        n++;
        if (d)
                closedir(d);
        return n;
}

/* Plants an instance dir as a process that died (or lives) left it. */
static void plant(const char *root, const char *name, long pid)
{
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", root, name);
        CHECK(mkdir(path, 0700) == 0);
        snprintf(path, sizeof(path), "%s/%s/owner", root, name);
        FILE *f = fopen(path, "w");
        REQUIRE(f);
        fprintf(f, "%ld\n", pid);
        fclose(f);
}

static void test_spins_recycled(void)
{
        char dir[] = "/tmp/par_recipe_many_XXXXXX";
        par_chrome_opts_t o;
        par_chrome_stats_t st;
        par_chrome_t *c = NULL;
        par_error_t e = {0};
        many_t m[2];
        pthread_t t[2];
        int started[2];
        double t0;
        int i;

        for (i = 0; i < 2; i++) {
                m[i] = (many_t){NULL, fixture("bench"), i, 0, 30};
                REQUIRE(m[i].r);
        }
        REQUIRE(mkdtemp(dir));
        /* A node killed earlier left its instance dir (owner gone); a live
         * process's one must stay. */
        pid_t dead = fork();
        if (dead == 0)
                _exit(0);
        REQUIRE(dead > 0 && waitpid(dead, NULL, 0) == dead);
        plant(dir, "parallel-chrome-dead01", (long)dead);
        plant(dir, "parallel-chrome-live01", (long)getpid());
        par_chrome_opts_default(&o);
        snprintf(o.tmp_dir, sizeof(o.tmp_dir), "%s", dir);
        o.recycle_after = 10;
        if (par_chrome_new(&c, &o, 2, &e)) {
                CHECKF(0, "chrome: %s", e.msg);
                rmdir(dir);
                return;
        }
        t0 = par_clock_mono_s();
        for (i = 0; i < 2; i++) {
                m[i].c = c;
                started[i] = !pthread_create(&t[i], NULL, many_spins, &m[i]);
                CHECK(started[i]);
        }
        for (i = 0; i < 2; i++)
                if (started[i])
                        pthread_join(t[i], NULL);
        par_chrome_stats(c, &st);
        fprintf(stderr,
                "   60 spins in %.1f s: ok %d+%d, launches %llu, recycles "
                "%llu, restarts %llu\n",
                par_clock_mono_s() - t0, m[0].ok, m[1].ok,
                (unsigned long long)st.launches,
                (unsigned long long)st.recycles,
                (unsigned long long)st.restarts);
        CHECK(m[0].ok + m[1].ok == 60);
        CHECK(st.recycles >= 4);
        CHECK(procs_mentioning(dir) > 0);
        {
                char p[600];
                glob_t g;
                snprintf(p, sizeof(p), "%s/parallel-chrome-dead01", dir);
                CHECKF(access(p, F_OK) != 0, "%s was not swept", p);
                snprintf(p, sizeof(p), "%s/parallel-chrome-live01", dir);
                CHECKF(access(p, F_OK) == 0, "%s was swept", p);
                snprintf(p, sizeof(p), "%s/parallel-chrome-live01/owner", dir);
                unlink(p);
                snprintf(p, sizeof(p), "%s/parallel-chrome-live01", dir);
                rmdir(p);
                /* Chromium's own temp dirs live in its instance dir. */
                snprintf(p, sizeof(p),
                         "%s/parallel-chrome-*/tmp/org.chromium.*", dir);
                CHECKF(glob(p, 0, NULL, &g) == 0 && g.gl_pathc > 0, "no %s", p);
                globfree(&g);
        }
        par_chrome_destroy(c);
        CHECKF(procs_mentioning(dir) == 0, "%d processes left",
               procs_mentioning(dir));
        CHECKF(dir_entries(dir) == 0, "%d entries left in %s", dir_entries(dir),
               dir);
        for (i = 0; i < 2; i++)
                par_recipe_destroy(m[i].r);
        rmdir(dir);
}

/* Dirs /tmp/parallel-chrome-* whose owner file names this process. */
static int own_tmp_dirs(void)
{
        glob_t g;
        int n = 0;

        if (glob("/tmp/parallel-chrome-*/owner", 0, NULL, &g))
                return 0;
        for (size_t i = 0; i < g.gl_pathc; i++) {
                FILE *f = fopen(g.gl_pathv[i], "r");
                long pid = 0;
                if (f) {
                        if (fscanf(f, "%ld", &pid) != 1)
                                pid = 0;
                        fclose(f);
                }
                n += pid == (long)getpid();
        }
        globfree(&g);
        return n;
}

/* A temp root whose instance dirs are too long for Chromium's singleton
 * socket in <instance>/tmp: Chromium still starts (its TMPDIR is then its
 * own dir in /tmp) and nothing is left anywhere. */
static void test_long_tmp_dir(void)
{
        char root[] = "/tmp/par_recipe_long_XXXXXX", dir[200];
        par_chrome_opts_t o;
        par_chrome_t *c = NULL;
        par_spin_result_t res;
        par_error_t e = {0};

        REQUIRE(mkdtemp(root));
        snprintf(dir, sizeof(dir), "%s/%s", root,
                 "a-long-directory-name-as-deep-deploy-trees-make-them");
        REQUIRE(mkdir(dir, 0700) == 0);
        par_chrome_opts_default(&o);
        snprintf(o.tmp_dir, sizeof(o.tmp_dir), "%s", dir);
        o.browsers = 1; /* one browser: one dir of its own in /tmp */
        REQUIRE(par_chrome_new(&c, &o, 1, &e) == PAR_OK);
        par_recipe_t *r = fixture("bench");
        REQUIRE(r);
        json_t *p = params("q", "7", NULL);
        CHECKF(spin_on(c, 0, r, p, &res) == PAR_OK,
               "a spin with a %zu-byte temp root", strlen(dir));
        CHECK_STR(value(&res, "answer"), "answer:7");
        CHECK(own_tmp_dirs() == 1);
        par_spin_result_clear(&res);
        json_decref(p);
        par_recipe_destroy(r);
        par_chrome_destroy(c);
        CHECKF(dir_entries(dir) == 0, "%d entries left in %s", dir_entries(dir),
               dir);
        CHECKF(own_tmp_dirs() == 0, "%d dirs of ours left in /tmp",
               own_tmp_dirs());
        rmdir(dir);
        rmdir(root);
}

static int setup(void)
{
        char pages[1024];
        par_chrome_opts_t o;
        par_error_t e = {0};

        par_log_set_level(PAR_LOG_WARN);
        snprintf(pages, sizeof(pages), "%s/tests/fixtures/pages",
                 tu_env("PARALLEL_SOURCE_DIR", "."));
        if (fx_server_start(&fx, pages)) {
                perror("fixture server");
                return 1;
        }
        snprintf(base, sizeof(base), "http://127.0.0.1:%d", fx.port);
        if (!mkdtemp(tmpdir))
                return 1;
        par_chrome_opts_default(&o);
        snprintf(o.tmp_dir, sizeof(o.tmp_dir), "%s", tmpdir);
        if (par_chrome_new(&chrome, &o, 2, &e)) {
                fprintf(stderr, "chrome: %s\n", e.msg);
                rmdir(tmpdir);
                fx_server_stop(&fx);
                return 1;
        }
        return 0;
}

/* The shared pool's browsers and temp dirs are gone once it is destroyed
 * (test_spins_recycled makes its own). */
static void test_pool_leaves_nothing(void)
{
        par_chrome_destroy(chrome);
        chrome = NULL;
        CHECK(procs_mentioning(tmpdir) == 0);
        CHECK(dir_entries(tmpdir) == 0);
        rmdir(tmpdir);
}

static void teardown(void)
{
        par_chrome_destroy(chrome); /* NULL unless a test returned early */
        fx_server_stop(&fx);
}

TEST_MAIN_WITH(setup, teardown, test_noop, test_fixture_pages,
               test_failures_are_classified, test_step_failures,
               test_screenshot_page, test_renderer_crash, test_browser_killed,
               test_pool_leaves_nothing, test_spins_recycled, test_long_tmp_dir)
