/*
 * chrome_state_test.c — state scopes against real Chromium (label chrome).
 *
 * The leak probe (tests/fixtures/pages/probe.html) reads, then writes,
 * localStorage, sessionStorage, a cookie and IndexedDB; it reports what it
 * found as "l|s|c|i", "-" for nothing. In spin scope every spin must find
 * nothing, whatever ran before on the same worker or another one, in
 * context isolation, browser isolation and connect mode. In resource scope
 * the same resource must find what its last spin left and another resource
 * nothing; a cookie login (login.html: cookie + localStorage token) must
 * survive for its resource only, and must survive a move to another pool
 * (another node) through a captured and restored snapshot. A warm pool must
 * serve acquires from its stock of prepared contexts.
 */
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "browser/chrome.h"
#include "browser/recipe.h"
#include "browser/spin.h"
#include "browser/state.h"
#include "fixture_server.h"
#include "testutil.h"

static fx_server_t fx;
static char base[64];
static char tmpdir[] = "/tmp/par_state_it_XXXXXX";
static par_spin_opts_t sopts = {30000, 50};
static par_recipe_t *probe, *login, *whoami;
static pid_t spun_on; /* spin(): the browser of the last spin's tab */

static void opts_for_test(par_chrome_opts_t *o)
{
        par_chrome_opts_default(o);
        snprintf(o->tmp_dir, sizeof(o->tmp_dir), "%s", tmpdir);
}

/*
 * One spin of r on worker w in scope sc (resource res), with param k=v.
 * Returns the extracted value `out` (static buffer) or NULL on failure;
 * *tab_out, when given, keeps the tab acquired for the caller to release.
 */
static const char *spin(par_chrome_t *c, int w, par_state_scope_t sc,
                        const char *res, const par_recipe_t *r, const char *k,
                        const char *v, const char *out, char *ctx_out)
{
        static char buf[256];
        par_spin_result_t sr = {0};
        par_error_t e = {0};
        par_tab_t *tab = NULL;
        json_t *p = json_pack("{s:s,s:s}", "base", base, k, v);
        const char *got = NULL;

        if (par_chrome_tab_acquire_scoped(c, w, sc, res, &tab, &e)) {
                fprintf(stderr, "acquire: %s\n", e.msg);
                json_decref(p);
                return NULL;
        }
        if (ctx_out)
                snprintf(ctx_out, 64, "%s", par_tab_context_id(tab));
        spun_on = par_tab_browser_pid(tab);
        CHECKF(par_chrome_browser_pgid(c, w) == spun_on,
               "worker %d: pgid %d, its tab's browser %d", w,
               (int)par_chrome_browser_pgid(c, w), (int)spun_on);
        if (par_spin_run(tab, r, p, &sopts, &sr, &e))
                fprintf(stderr, "spin %s: %s\n", r->name, e.msg);
        else if ((got = json_string_value(json_object_get(sr.values, out))))
                got = strcpy(buf, got);
        par_chrome_tab_release(c, tab, sr.tab_broken);
        par_spin_result_clear(&sr);
        json_decref(p);
        return got;
}

/* Three probe spins alternating two workers, each writing its own value:
 * every one must start clean, each in a context never seen before. */
static void probe_clean(par_chrome_t *c, const char *mode)
{
        char ctx[3][64];

        for (int i = 0; i < 3; i++) {
                char v[8];
                const char *seen;

                snprintf(v, sizeof(v), "V%d", i);
                seen = spin(c, i % 2, PAR_STATE_DEFAULT, "same-resource", probe,
                            "v", v, "seen", ctx[i]);
                CHECKF(tu_streq(seen, "-|-|-|-"), "%s spin %d saw '%s'", mode,
                       i, tu_str(seen));
                CHECKF(*ctx[i], "%s: no browser context", mode);
                for (int j = 0; j < i; j++)
                        CHECKF(strcmp(ctx[i], ctx[j]), "%s: context reused",
                               mode);
        }
}

static void test_spin_scope_context(void)
{
        par_chrome_t *c = NULL;
        par_chrome_opts_t o;
        par_error_t e;

        opts_for_test(&o);
        REQUIRE(!par_chrome_new(&c, &o, 2, &e));
        probe_clean(c, "context");
        par_chrome_destroy(c);
}

static void test_spin_scope_browser(void)
{
        par_chrome_t *c = NULL;
        par_chrome_opts_t o;
        par_error_t e;

        opts_for_test(&o);
        o.isolation = PAR_CHROME_ISO_BROWSER;
        REQUIRE(!par_chrome_new(&c, &o, 2, &e));
        probe_clean(c, "browser");
        par_chrome_destroy(c);
}

/*
 * Two shared browsers (chrome.browsers=2), one worker: the leak probe finds
 * nothing, and consecutive spins take turns between the browsers (each
 * prepares and disposes of contexts while the other runs the spin), which
 * a worker tied to one browser would not. A resource's context stays in
 * the browser it was made in.
 */
static void test_spin_scope_browsers(void)
{
        par_chrome_t *c = NULL;
        par_chrome_opts_t o;
        par_error_t e;
        par_tab_t *t = NULL;
        pid_t pids[2], home, last = -1;
        int turns = 0, n;
        const char *s;

        opts_for_test(&o);
        o.browsers = 2;
        REQUIRE(!par_chrome_new(&c, &o, 1, &e));
        REQUIRE(!par_chrome_tab_acquire(c, 0, &t, &e)); /* launches */
        CHECK(par_chrome_browser_pgid(c, 0) == par_tab_browser_pid(t));
        par_chrome_tab_release(c, t, false);
        /* warm: both browsers up, each with its share of the stock */
        for (double end = par_clock_mono_s() + 20;
             !par_chrome_stocked(c) && par_clock_mono_s() < end;)
                par_clock_sleep_ms(10);
        for (int i = 0; i < 6; i++) {
                char v[8];
                snprintf(v, sizeof(v), "W%d", i);
                s = spin(c, 0, PAR_STATE_SPIN, NULL, probe, "v", v, "seen",
                         NULL);
                CHECKF(tu_streq(s, "-|-|-|-"), "spin %d saw '%s'", i,
                       tu_str(s));
                turns += i > 0 && spun_on != last;
                last = spun_on;
        }
        CHECKF(turns >= 4, "%d of 5 spins changed browser", turns);
        n = par_chrome_browser_pgids(c, pids, 2);
        CHECKF(n == 2 && pids[0] != pids[1], "%d browsers", n);
        home = par_chrome_browser_pgid(c, 0);
        CHECKF(n == 2 && (home == pids[0] || home == pids[1]), "pgid %d",
               (int)home);

        /* a resource's context stays where it was made */
        s = spin(c, 0, PAR_STATE_RESOURCE, "r1", probe, "v", "A", "seen", NULL);
        CHECK_STR(s, "-|-|-|-");
        last = spun_on;
        for (int i = 0; i < 3; i++) {
                s = spin(c, 0, PAR_STATE_RESOURCE, "r1", probe, "v", "A",
                         "seen", NULL);
                CHECK_STR(s, "A|A|A|A");
                CHECK(spun_on == last);
        }
        par_chrome_destroy(c);
}

/* The DevTools endpoint of the one browser a launch pool runs in tmpdir. */
static int endpoint_of_launched(char *ep, size_t n)
{
        char path[1024], line[32];
        DIR *d = opendir(tmpdir);
        struct dirent *de;
        FILE *f = NULL;

        while (d && (de = readdir(d)) && !f) {
                if (strncmp(de->d_name, "parallel-chrome-", 16))
                        continue;
                snprintf(path, sizeof(path), "%s/%s/profile/DevToolsActivePort",
                         tmpdir, de->d_name);
                f = fopen(path, "r");
        }
        if (d)
                closedir(d);
        if (!f)
                return -1;
        if (!fgets(line, sizeof(line), f)) {
                fclose(f);
                return -1;
        }
        fclose(f);
        snprintf(ep, n, "http://127.0.0.1:%d", atoi(line));
        return 0;
}

static void test_spin_scope_connect(void)
{
        par_chrome_t *launcher = NULL, *c = NULL;
        par_tab_t *lt = NULL;
        par_chrome_opts_t o;
        par_error_t e;
        char ep[128];

        /* A browser started as an operator would; its first page already
         * holds state in the default context, which no spin may see. */
        opts_for_test(&o);
        o.ready_contexts = 0;
        REQUIRE(!par_chrome_new(&launcher, &o, 1, &e));
        REQUIRE(!par_chrome_tab_acquire(launcher, 0, &lt, &e));
        REQUIRE(!endpoint_of_launched(ep, sizeof(ep)));
        opts_for_test(&o);
        o.mode = PAR_CHROME_CONNECT;
        snprintf(o.endpoints, sizeof(o.endpoints), "%s", ep);
        CHECKF(!par_chrome_new(&c, &o, 2, &e), "%s", e.msg);
        if (c)
                probe_clean(c, "connect");
        par_chrome_destroy(c);
        par_chrome_tab_release(launcher, lt, false);
        par_chrome_destroy(launcher);
}

/* Resource scope keeps a resource's state, and only its own. */
static void test_resource_scope(void)
{
        par_chrome_t *c = NULL;
        par_chrome_opts_t o;
        par_error_t e;
        const char *s;

        opts_for_test(&o);
        o.scope = PAR_STATE_RESOURCE;
        REQUIRE(!par_chrome_new(&c, &o, 2, &e));
        s = spin(c, 0, PAR_STATE_DEFAULT, "r1", probe, "v", "A", "seen", NULL);
        CHECK_STR(s, "-|-|-|-");
        /* the same resource on the other worker sees what it left */
        s = spin(c, 1, PAR_STATE_DEFAULT, "r1", probe, "v", "B", "seen", NULL);
        CHECK_STR(s, "A|A|A|A");
        s = spin(c, 0, PAR_STATE_DEFAULT, "r2", probe, "v", "C", "seen", NULL);
        CHECK_STR(s, "-|-|-|-");
        /* a spin-scope spin (the recipe's override) sees nothing either */
        s = spin(c, 0, PAR_STATE_SPIN, "r1", probe, "v", "D", "seen", NULL);
        CHECK_STR(s, "-|-|-|-");
        s = spin(c, 0, PAR_STATE_DEFAULT, "r1", probe, "v", "E", "seen", NULL);
        CHECK_STR(s, "B|B|B|B");

        /* a cookie login stays with its resource */
        CHECK_STR(spin(c, 0, PAR_STATE_RESOURCE, "alice", login, "user",
                       "alice", "status", NULL),
                  "user:alice");
        CHECK_STR(spin(c, 1, PAR_STATE_RESOURCE, "alice", whoami, "user", "",
                       "status", NULL),
                  "user:alice");
        CHECK_STR(spin(c, 1, PAR_STATE_RESOURCE, "bob", whoami, "user", "",
                       "status", NULL),
                  "anonymous");
        /* dropped from memory: gone on this pool */
        CHECK(par_chrome_resource_drop(c, "alice"));
        CHECK_STR(spin(c, 0, PAR_STATE_RESOURCE, "alice", whoami, "user", "",
                       "status", NULL),
                  "anonymous");
        par_chrome_destroy(c);
}

/* Log in on one pool, capture; restore on another pool (another node,
 * browser isolation this time): logged in there, and only for alice. */
static void test_session_moves(void)
{
        par_chrome_t *a = NULL, *b = NULL;
        par_chrome_opts_t o;
        par_error_t e = {0};
        par_tab_t *t = NULL;
        json_t *snap = NULL;
        char *text;

        opts_for_test(&o);
        o.scope = PAR_STATE_RESOURCE;
        REQUIRE(!par_chrome_new(&a, &o, 1, &e));
        CHECK_STR(spin(a, 0, PAR_STATE_DEFAULT, "alice", login, "user", "alice",
                       "status", NULL),
                  "user:alice");
        REQUIRE(!par_chrome_tab_acquire_scoped(a, 0, PAR_STATE_DEFAULT, "alice",
                                               &t, &e));
        CHECK(!par_tab_fresh(t));
        CHECKF(!par_state_capture(t, &snap, &e), "%s", e.msg);
        par_chrome_tab_release(a, t, false);
        par_chrome_destroy(a);
        REQUIRE(snap);
        text = json_dumps(snap, JSON_COMPACT);
        CHECKF(text && strstr(text, "\"sid\"") && strstr(text, "tok-alice"),
               "snapshot lacks the login");
        free(text);

        o.isolation = PAR_CHROME_ISO_BROWSER;
        REQUIRE(!par_chrome_new(&b, &o, 2, &e));
        t = NULL;
        CHECKF(!par_chrome_tab_acquire_scoped(b, 1, PAR_STATE_DEFAULT, "alice",
                                              &t, &e),
               "%s", e.msg);
        if (t) {
                CHECK(par_tab_fresh(t));
                CHECKF(!par_state_restore(t, snap, 10000, &e), "%s", e.msg);
                par_chrome_tab_release(b, t, false);
        }
        CHECK_STR(spin(b, 1, PAR_STATE_DEFAULT, "alice", whoami, "user", "",
                       "status", NULL),
                  "user:alice");
        CHECK_STR(spin(b, 0, PAR_STATE_DEFAULT, "alice", whoami, "user", "",
                       "status", NULL),
                  "user:alice");
        CHECK_STR(spin(b, 0, PAR_STATE_DEFAULT, "bob", whoami, "user", "",
                       "status", NULL),
                  "anonymous");
        json_decref(snap);
        par_chrome_destroy(b);
}

/* A warm pool hands out prepared contexts: none made on the spin's path. */
static void test_stock(void)
{
        par_chrome_t *c = NULL;
        par_chrome_opts_t o;
        par_chrome_stats_t st;
        par_error_t e;
        par_tab_t *t = NULL;
        double end;

        opts_for_test(&o);
        o.ready_contexts = 2;
        REQUIRE(!par_chrome_new(&c, &o, 1, &e));
        REQUIRE(!par_chrome_tab_acquire(c, 0, &t, &e)); /* launches */
        par_chrome_tab_release(c, t, false);
        for (int i = 0; i < 4; i++) {
                end = par_clock_mono_s() + 20;
                while (!par_chrome_stocked(c) && par_clock_mono_s() < end)
                        par_clock_sleep_ms(10);
                CHECK(par_chrome_stocked(c));
                REQUIRE(!par_chrome_tab_acquire(c, 0, &t, &e));
                par_chrome_tab_release(c, t, false);
        }
        par_chrome_stats(c, &st);
        CHECKF(st.contexts_ready == 4, "ready %llu",
               (unsigned long long)st.contexts_ready);
        CHECKF(st.contexts_missed == 1, "missed %llu",
               (unsigned long long)st.contexts_missed);
        end = par_clock_mono_s() + 20;
        while (!par_chrome_stocked(c) && par_clock_mono_s() < end)
                par_clock_sleep_ms(10);
        par_chrome_stats(c, &st);
        CHECKF(st.contexts_disposed >= 5, "disposed %llu",
               (unsigned long long)st.contexts_disposed);
        par_chrome_destroy(c);
}

/*
 * An acquire that finds the stock empty while the stager is preparing a
 * context waits for that one instead of making a second in parallel (which
 * would split the browser's time between two preparations).
 */
static void test_stock_wait(void)
{
        par_chrome_t *c = NULL;
        par_chrome_opts_t o;
        par_chrome_stats_t st0, st;
        par_error_t e;
        par_tab_t *t = NULL;
        int rounds = 0;

        opts_for_test(&o);
        o.browsers = 1;       /* another browser's stock would serve it */
        o.ready_contexts = 1; /* one taken: the stock is empty */
        REQUIRE(!par_chrome_new(&c, &o, 1, &e));
        REQUIRE(!par_chrome_tab_acquire(c, 0, &t, &e)); /* launches */
        par_chrome_tab_release(c, t, false);
        par_chrome_stats(c, &st0);
        for (int i = 0; i < 3; i++) {
                double end = par_clock_mono_s() + 20;
                while (!par_chrome_stocked(c) && par_clock_mono_s() < end)
                        par_clock_sleep_ms(5);
                /* the stock's one context taken: the stager makes the next */
                REQUIRE(!par_chrome_tab_acquire(c, 0, &t, &e));
                par_chrome_tab_release(c, t, false);
                do
                        par_chrome_stats(c, &st);
                while (!st.contexts_preparing && par_clock_mono_s() < end &&
                       (par_clock_sleep_ms(1), 1));
                if (!st.contexts_preparing)
                        continue; /* already made: nothing to wait for */
                rounds++;
                CHECKF(!par_chrome_tab_acquire(c, 0, &t, &e), "%s", e.msg);
                par_chrome_tab_release(c, t, false);
        }
        par_chrome_stats(c, &st);
        CHECKF(rounds > 0, "never caught the stager preparing");
        CHECKF(st.contexts_missed == st0.contexts_missed,
               "%llu acquires made their own context while one was being "
               "prepared",
               (unsigned long long)(st.contexts_missed - st0.contexts_missed));
        CHECKF(st.contexts_waited >= st0.contexts_waited + 1, "waited %llu",
               (unsigned long long)(st.contexts_waited - st0.contexts_waited));
        par_chrome_destroy(c);
}

/*
 * Beyond one prepared context per worker (chrome.ready_contexts > 1) the
 * stager prepares only while no tab of the browser is acquired, so it does
 * not take the CPU from a running spin; the stock is full again once the
 * browser is idle.
 */
static void test_stock_idle(void)
{
        par_chrome_t *c = NULL;
        par_chrome_opts_t o;
        par_chrome_stats_t st0, st;
        par_error_t e;
        par_tab_t *t = NULL;
        double end;

        opts_for_test(&o);
        o.ready_contexts = 2;
        REQUIRE(!par_chrome_new(&c, &o, 1, &e));
        REQUIRE(!par_chrome_tab_acquire(c, 0, &t, &e)); /* launches */
        par_chrome_tab_release(c, t, false);
        end = par_clock_mono_s() + 20;
        while (!par_chrome_stocked(c) && par_clock_mono_s() < end)
                par_clock_sleep_ms(5);
        REQUIRE(par_chrome_stocked(c));
        par_chrome_stats(c, &st0);
        REQUIRE(!par_chrome_tab_acquire(c, 0, &t, &e)); /* one left */
        par_clock_sleep_ms(500);                        /* a spin */
        par_chrome_stats(c, &st);
        CHECKF(st.tabs_created == st0.tabs_created && !st.contexts_preparing,
               "prepared %llu while a spin ran",
               (unsigned long long)(st.tabs_created - st0.tabs_created));
        par_chrome_tab_release(c, t, false);
        end = par_clock_mono_s() + 20;
        while (!par_chrome_stocked(c) && par_clock_mono_s() < end)
                par_clock_sleep_ms(5);
        CHECK(par_chrome_stocked(c));
        par_chrome_stats(c, &st);
        CHECKF(
            st.tabs_created == st0.tabs_created + 1 &&
                st.contexts_disposed == st0.contexts_disposed + 1,
            "created %llu disposed %llu",
            (unsigned long long)(st.tabs_created - st0.tabs_created),
            (unsigned long long)(st.contexts_disposed - st0.contexts_disposed));
        par_chrome_destroy(c);
}

/*
 * Every context costs one renderer, the page's: the features chrome.c turns
 * off (a spare renderer, the omnibox popups each headless window loads)
 * stay off when chrome.extra_args has a --disable-features of its own
 * (Chromium honours only the last one), and both lists apply.
 */
static void test_launch_features(void)
{
        par_chrome_t *c = NULL;
        par_chrome_opts_t o;
        par_error_t e;
        par_tab_t *t = NULL;
        json_t *r = NULL, *ti;
        char path[64], cmd[16384];
        size_t n = 0, i;
        int switches = 0;
        const char *merged = NULL;
        FILE *f;

        opts_for_test(&o);
        snprintf(o.extra_args, sizeof(o.extra_args),
                 "--disable-features=Translate");
        REQUIRE(!par_chrome_new(&c, &o, 1, &e));
        REQUIRE(!par_chrome_tab_acquire(c, 0, &t, &e));
        snprintf(path, sizeof(path), "/proc/%d/cmdline",
                 (int)par_tab_browser_pid(t));
        if ((f = fopen(path, "r"))) {
                n = fread(cmd, 1, sizeof(cmd) - 1, f);
                fclose(f);
        }
        cmd[n] = 0;
        for (i = 0; i < n; i += strlen(cmd + i) + 1)
                if (!strncmp(cmd + i, "--disable-features=", 19)) {
                        switches++;
                        merged = cmd + i;
                }
        CHECKF(switches == 1, "%d --disable-features switches", switches);
        CHECKF(merged && strstr(merged, "WebUIOmniboxPopup") &&
                   strstr(merged, "SpareRendererForSitePerProcess") &&
                   strstr(merged, "Translate"),
               "disabled: %s", tu_str(merged));
        CHECKF(!par_cdp_call(par_tab_cdp(t), NULL, "Target.getTargets", NULL,
                             10000, &r, &e),
               "%s", e.msg);
        json_array_foreach(json_object_get(r, "targetInfos"), i, ti)
        {
                const char *url = json_string_value(json_object_get(ti, "url"));
                CHECKF(!url || strncmp(url, "chrome://omnibox-popup", 22),
                       "a context opened %s", url);
        }
        json_decref(r);
        par_chrome_tab_release(c, t, false);
        par_chrome_destroy(c);
}

static int setup(void)
{
        char pages[1024];

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
        probe = tu_recipe_fixture("probe", 10000);
        login = tu_recipe_fixture("login", 10000);
        whoami = tu_recipe_fixture("whoami", 10000);
        return !probe || !login || !whoami;
}

static void teardown(void)
{
        par_recipe_destroy(probe);
        par_recipe_destroy(login);
        par_recipe_destroy(whoami);
        rmdir(tmpdir);
        fx_server_stop(&fx);
}

TEST_MAIN_WITH(setup, teardown, test_spin_scope_context,
               test_spin_scope_browser, test_spin_scope_browsers,
               test_spin_scope_connect, test_resource_scope, test_session_moves,
               test_stock, test_stock_wait, test_stock_idle,
               test_launch_features)
