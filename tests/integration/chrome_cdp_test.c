/*
 * chrome_cdp_test.c — the CDP client and Chrome supervision against a real
 * Chromium (label chrome).
 *
 * Every test builds its own pool in launch mode (temp profile, temp HOME,
 * temp dirs under a per-run directory) so a failure in one does not leak
 * into the next, and checks at the end that no process of any browser
 * group it saw is left and no temp dir remains.
 */
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "browser/cdp.h"
#include "browser/chrome.h"
#include "testutil.h"

static char run_dir[256];
static pid_t seen_pgids[64];
static int nseen;

static void remember_pgid(pid_t pg)
{
        for (int i = 0; i < nseen; i++)
                if (seen_pgids[i] == pg)
                        return;
        if (pg > 0 && nseen < 64)
                seen_pgids[nseen++] = pg;
}

/* Live (non-zombie) processes in process group pg. */
static int group_count(pid_t pg)
{
        DIR *d = opendir("/proc");
        struct dirent *e;
        int n = 0;
        while (d && (e = readdir(d))) {
                char path[300], buf[512], *p, st;
                int ppid, pgrp;
                FILE *f;
                if (e->d_name[0] < '0' || e->d_name[0] > '9')
                        continue;
                snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
                if (!(f = fopen(path, "r")))
                        continue;
                p = fgets(buf, sizeof(buf), f);
                fclose(f);
                if (p && (p = strrchr(buf, ')')) &&
                    sscanf(p + 1, " %c %d %d", &st, &ppid, &pgrp) == 3 &&
                    pgrp == pg && st != 'Z')
                        n++;
        }
        if (d)
                closedir(d);
        return n;
}

/* Processes (any group: Chromium's crashpad handler has its own session)
 * whose command line mentions our run dir. */
static int procs_in_run_dir(void)
{
        DIR *d = opendir("/proc");
        struct dirent *e;
        int n = 0;
        while (d && (e = readdir(d))) {
                char path[300], buf[8192];
                size_t got;
                FILE *f;
                if (e->d_name[0] < '0' || e->d_name[0] > '9' ||
                    atoi(e->d_name) == getpid())
                        continue;
                snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
                if (!(f = fopen(path, "r")))
                        continue;
                got = fread(buf, 1, sizeof(buf) - 1, f);
                fclose(f);
                for (size_t i = 0; i < got; i++)
                        if (!buf[i])
                                buf[i] = ' ';
                buf[got] = 0;
                if (strstr(buf, run_dir)) {
                        fprintf(stderr, "   left: %.150s\n", buf);
                        n++;
                }
        }
        if (d)
                closedir(d);
        return n;
}

static int temp_dirs_left(void)
{
        DIR *d = opendir(run_dir);
        struct dirent *e;
        int n = 0;
        while (d && (e = readdir(d)))
                if (!strncmp(e->d_name, "parallel-chrome-", 16))
                        n++;
        if (d)
                closedir(d);
        return n;
}

static void opts_for_test(par_chrome_opts_t *o)
{
        par_chrome_opts_default(o);
        snprintf(o->tmp_dir, sizeof(o->tmp_dir), "%s", run_dir);
        snprintf(o->path, sizeof(o->path), "%s",
                 tu_env("PARALLEL_TEST_CHROME", "/usr/bin/chromium"));
        o->call_timeout_ms = 10000;
        o->kill_grace_ms = 1000;
        o->backoff_min_ms = 100;
        /* the tests count one shared browser's launches and restarts;
         * test_shared_browsers runs two */
        o->browsers = 1;
}

static par_chrome_t *pool(int workers, par_chrome_isolation_t iso,
                          int recycle_after)
{
        par_chrome_opts_t o;
        par_chrome_t *c = NULL;
        par_error_t err = {0};
        opts_for_test(&o);
        o.isolation = iso;
        o.recycle_after = recycle_after;
        if (par_chrome_new(&c, &o, workers, &err))
                fprintf(stderr, "par_chrome_new: %s\n", err.msg);
        return c;
}

static int eval_int(par_tab_t *t, const char *expr, par_error_t *err)
{
        json_t *r = NULL, *p = json_pack("{s:s,s:b}", "expression", expr,
                                         "returnByValue", 1);
        int v = -1;
        if (!par_tab_call(t, "Runtime.evaluate", p, 5000, &r, err))
                v = (int)json_integer_value(
                    json_object_get(json_object_get(r, "result"), "value"));
        json_decref(p);
        json_decref(r);
        return v;
}

/* ---- a tiny HTTP server for navigation tests -------------------------- */

static int http_fd = -1;
static int http_port;
static int http_hits; /* atomic */

static void *http_main(void *arg)
{
        static const char page[] =
            "<html><head><title>fixture</title></head><body><h1 id=h>hello"
            "</h1><script>document.title='loaded'</script></body></html>";
        (void)arg;
        for (;;) {
                char req[4096], resp[512];
                int fd = accept(http_fd, NULL, NULL);
                if (fd < 0)
                        break;
                if (recv(fd, req, sizeof(req), 0) > 0) {
                        int n = snprintf(resp, sizeof(resp),
                                         "HTTP/1.1 200 OK\r\nContent-Type: "
                                         "text/html\r\nContent-Length: %zu\r\n"
                                         "Connection: close\r\n\r\n%s",
                                         strlen(page), page);
                        send(fd, resp, (size_t)n, MSG_NOSIGNAL);
                        __atomic_add_fetch(&http_hits, 1, __ATOMIC_SEQ_CST);
                }
                close(fd);
        }
        return NULL;
}

static void http_start(void)
{
        struct sockaddr_in a = {.sin_family = AF_INET};
        socklen_t l = sizeof(a);
        pthread_t th;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        http_fd = socket(AF_INET, SOCK_STREAM, 0);
        bind(http_fd, (struct sockaddr *)&a, sizeof(a));
        listen(http_fd, 16);
        getsockname(http_fd, (struct sockaddr *)&a, &l);
        http_port = ntohs(a.sin_port);
        pthread_create(&th, NULL, http_main, NULL);
        pthread_detach(th);
}

/* ---- tests ------------------------------------------------------------ */

static void test_roundtrip(void)
{
        par_chrome_t *c = pool(1, PAR_CHROME_ISO_CONTEXT, 0);
        par_tab_t *t = NULL;
        par_error_t err = {0};
        json_t *r = NULL;

        REQUIRE(c);
        CHECKF(!par_chrome_tab_acquire(c, 0, &t, &err), "%s", err.msg);
        REQUIRE(t);
        remember_pgid(par_tab_browser_pid(t));
        CHECK(*par_tab_session_id(t));
        CHECK(*par_tab_target_id(t));
        CHECK(*par_tab_context_id(t));
        CHECK(eval_int(t, "1+1", &err) == 2);
        /* browser-level call on the same socket */
        CHECKF(!par_cdp_call(par_tab_cdp(t), NULL, "Browser.getVersion", NULL,
                             5000, &r, &err),
               "%s", err.msg);
        CHECK(r && strstr(json_string_value(json_object_get(r, "product")),
                          "Chrome"));
        json_decref(r);
        /* a protocol error is typed and names the method */
        CHECK(par_tab_call(t, "No.such", NULL, 5000, NULL, &err) ==
              PAR_ERR_CDP);
        CHECKF(strstr(err.msg, "No.such") != NULL, "%s", err.msg);
        par_chrome_tab_release(c, t, false);
        /* nothing listens on port 1: errors, quickly, no crash */
        {
                par_cdp_t *x = NULL;
                char ws[256];
                double t0 = par_clock_mono_s();
                CHECK(par_cdp_connect(&x, "ws://127.0.0.1:1/devtools/x", 3000,
                                      &err) != PAR_OK &&
                      !x);
                CHECKF(strstr(err.msg, "127.0.0.1:1") != NULL, "%s", err.msg);
                CHECK(par_cdp_fetch_version("http://127.0.0.1:1", ws,
                                            sizeof(ws), 3000,
                                            &err) == PAR_ERR_IO);
                CHECK(par_cdp_connect(&x, "http://nope", 1000, &err) ==
                      PAR_ERR_INVALID);
                CHECK(par_clock_mono_s() - t0 < 2.0);
        }
        /* spin scope: a new target in a new context every time; resource
         * scope: the resource's own target again */
        {
                char target[64], ctx[64];
                snprintf(target, sizeof(target), "%s", par_tab_target_id(t));
                snprintf(ctx, sizeof(ctx), "%s", par_tab_context_id(t));
                CHECK(!par_chrome_tab_acquire(c, 0, &t, &err));
                CHECK(strcmp(par_tab_target_id(t), target) != 0);
                CHECK(strcmp(par_tab_context_id(t), ctx) != 0);
                par_chrome_tab_release(c, t, false);
                CHECK(!par_chrome_tab_acquire_scoped(c, 0, PAR_STATE_RESOURCE,
                                                     "r", &t, &err));
                CHECK(par_tab_fresh(t));
                snprintf(target, sizeof(target), "%s", par_tab_target_id(t));
                par_chrome_tab_release(c, t, false);
                CHECK(!par_chrome_tab_acquire_scoped(c, 0, PAR_STATE_RESOURCE,
                                                     "r", &t, &err));
                CHECK(!par_tab_fresh(t));
                CHECK_STR(par_tab_target_id(t), target);
                par_chrome_tab_release(c, t, false);
        }
        par_chrome_destroy(c);
}

struct conc {
        par_tab_t *t;
        int id;
        int ok;
};

static void *conc_main(void *arg)
{
        struct conc *k = arg;
        for (int j = 0; j < 200; j++) {
                char expr[64];
                par_error_t err;
                snprintf(expr, sizeof(expr), "%d*1000+%d", k->id, j);
                if (eval_int(k->t, expr, &err) == k->id * 1000 + j)
                        k->ok++;
        }
        return NULL;
}

static void test_concurrent_calls(void)
{
        par_chrome_t *c = pool(1, PAR_CHROME_ISO_CONTEXT, 0);
        par_tab_t *t = NULL;
        par_error_t err;
        pthread_t th[8];
        struct conc k[8];
        int total = 0;

        REQUIRE(c);
        REQUIRE(!par_chrome_tab_acquire(c, 0, &t, &err));
        remember_pgid(par_tab_browser_pid(t));
        for (int i = 0; i < 8; i++) {
                k[i] = (struct conc){t, i + 1, 0};
                pthread_create(&th[i], NULL, conc_main, &k[i]);
        }
        for (int i = 0; i < 8; i++) {
                pthread_join(th[i], NULL);
                total += k[i].ok;
        }
        CHECKF(total == 1600, "%d of 1600 replies matched", total);
        CHECK(par_cdp_pending_count(par_tab_cdp(t)) == 0);
        par_chrome_tab_release(c, t, false);
        par_chrome_destroy(c);
}

static void test_timeout_no_leak(void)
{
        par_chrome_t *c = pool(1, PAR_CHROME_ISO_CONTEXT, 0);
        par_tab_t *t = NULL;
        par_error_t err;
        json_t *p;
        double t0;
        par_err_t rc;

        REQUIRE(c);
        REQUIRE(!par_chrome_tab_acquire(c, 0, &t, &err));
        remember_pgid(par_tab_browser_pid(t));
        p = json_pack("{s:s,s:b}", "expression", "new Promise(() => {})",
                      "awaitPromise", 1);
        t0 = par_clock_mono_s();
        rc = par_tab_call(t, "Runtime.evaluate", p, 300, NULL, &err);
        json_decref(p);
        CHECKF(rc == PAR_ERR_TIMEOUT, "rc=%d %s", rc, err.msg);
        CHECKF(par_clock_mono_s() - t0 >= 0.29 && par_clock_mono_s() - t0 < 2.0,
               "took %.3f s", par_clock_mono_s() - t0);
        CHECK(par_cdp_pending_count(par_tab_cdp(t)) == 0);
        /* the connection is still fine */
        CHECK(eval_int(t, "40+2", &err) == 42);
        CHECK(par_cdp_pending_count(par_tab_cdp(t)) == 0);
        par_chrome_tab_release(c, t, false);
        par_chrome_destroy(c);
}

/* Regression (issue 11): a lone UTF-16 surrogate from the page made the
 * reply unparseable; the call timed out and was retried as transient. */
static void test_lone_surrogate(void)
{
        par_chrome_t *c = pool(1, PAR_CHROME_ISO_CONTEXT, 0);
        par_tab_t *t = NULL;
        par_error_t err;
        json_t *r = NULL, *p;

        REQUIRE(c);
        REQUIRE(!par_chrome_tab_acquire(c, 0, &t, &err));
        remember_pgid(par_tab_browser_pid(t));
        p = json_pack("{s:s,s:b}", "expression",
                      "'a' + String.fromCharCode(0xD800) + 'b' + "
                      "'\\uD83D\\uDE00'",
                      "returnByValue", 1);
        double t0 = (par_clock_mono_ms() / 1000.0);
        CHECKF(!par_tab_call(t, "Runtime.evaluate", p, 5000, &r, &err), "%s",
               err.msg);
        CHECK((par_clock_mono_ms() / 1000.0) - t0 < 2);
        json_decref(p);
        const char *v = json_string_value(
            json_object_get(json_object_get(r, "result"), "value"));
        CHECKF(v && !strcmp(v, "a\xef\xbf\xbd"
                               "b\xf0\x9f\x98\x80"),
               "got '%s'", v ? v : "(null)");
        json_decref(r);
        par_chrome_tab_release(c, t, false);
        par_chrome_destroy(c);
}

static void test_big_messages(void)
{
        par_chrome_t *c = pool(1, PAR_CHROME_ISO_CONTEXT, 0);
        par_tab_t *t = NULL;
        par_error_t err;
        json_t *r = NULL, *p;
        size_t big = 5 * 1024 * 1024;
        char *expr;

        REQUIRE(c);
        REQUIRE(!par_chrome_tab_acquire(c, 0, &t, &err));
        remember_pgid(par_tab_browser_pid(t));

        /* 5 MiB in: a string built by the page */
        p = json_pack("{s:s,s:b}", "expression", "'x'.repeat(5*1024*1024)",
                      "returnByValue", 1);
        CHECKF(!par_tab_call(t, "Runtime.evaluate", p, 20000, &r, &err), "%s",
               err.msg);
        json_decref(p);
        {
                json_t *v =
                    json_object_get(json_object_get(r, "result"), "value");
                CHECKF(json_string_length(v) == big, "got %zu bytes",
                       json_string_length(v));
                CHECK(json_string_value(v) &&
                      json_string_value(v)[big - 1] == 'x');
        }
        json_decref(r);
        r = NULL;

        /* 5 MiB out: a literal in the expression */
        expr = malloc(big + 32);
        REQUIRE(expr);
        expr[0] = '\'';
        memset(expr + 1, 'y', big);
        strcpy(expr + 1 + big, "'.length");
        p = json_pack("{s:s,s:b}", "expression", expr, "returnByValue", 1);
        free(expr);
        CHECKF(!par_tab_call(t, "Runtime.evaluate", p, 20000, &r, &err), "%s",
               err.msg);
        json_decref(p);
        CHECK(json_integer_value(json_object_get(json_object_get(r, "result"),
                                                 "value")) == (json_int_t)big);
        json_decref(r);
        r = NULL;

        /* a multi-MB screenshot: noise does not compress */
        p = json_pack("{s:i,s:i,s:f,s:b}", "width", 1600, "height", 1600,
                      "deviceScaleFactor", 1.0, "mobile", 0);
        CHECK(!par_tab_call(t, "Emulation.setDeviceMetricsOverride", p, 5000,
                            NULL, &err));
        json_decref(p);
        p = json_pack(
            "{s:s,s:b}", "expression",
            "(() => { const c = document.createElement('canvas');"
            " c.width = c.height = 1600; document.body.style.margin = 0;"
            " document.body.appendChild(c); const x = c.getContext('2d');"
            " const d = x.createImageData(1600, 1600);"
            " for (let i = 0; i < d.data.length; i++)"
            "   d.data[i] = (i % 4 == 3) ? 255 : (Math.random() * 256) | 0;"
            " x.putImageData(d, 0, 0); return 1; })()",
            "returnByValue", 1);
        CHECK(!par_tab_call(t, "Runtime.evaluate", p, 10000, NULL, &err));
        json_decref(p);
        CHECKF(
            !par_tab_call(t, "Page.captureScreenshot", NULL, 30000, &r, &err),
            "%s", err.msg);
        {
                const char *b64 = json_string_value(json_object_get(r, "data"));
                size_t n = b64 ? strlen(b64) : 0;
                fprintf(stderr, "   screenshot: %zu base64 bytes\n", n);
                CHECKF(n > 4 * 1024 * 1024, "screenshot only %zu bytes", n);
                CHECK(b64 && !strncmp(b64, "iVBORw0KGgo", 11)); /* PNG */
        }
        json_decref(r);
        CHECK(eval_int(t, "7*6", &err) == 42);
        par_chrome_tab_release(c, t, false);
        par_chrome_destroy(c);
}

static int cb_loads;

static void on_load(const char *sid, const char *method, json_t *params,
                    void *opaque)
{
        if (sid && !strcmp(sid, (const char *)opaque))
                __atomic_add_fetch(&cb_loads, 1, __ATOMIC_SEQ_CST);
}

static void test_events(void)
{
        par_chrome_t *c = pool(1, PAR_CHROME_ISO_CONTEXT, 0);
        par_tab_t *t = NULL;
        par_error_t err;
        par_cdp_waiter_t *w = NULL, *ex = NULL;
        const char *nav_events[] = {"Page.frameNavigated",
                                    "Page.lifecycleEvent",
                                    "Page.loadEventFired", NULL};
        const char *ex_events[] = {"Runtime.exceptionThrown", NULL};
        json_t *p, *ev = NULL;
        char url[128];
        int sub = 0, navigated = 0, lifecycle = 0;

        REQUIRE(c);
        REQUIRE(!par_chrome_tab_acquire(c, 0, &t, &err));
        remember_pgid(par_tab_browser_pid(t));
        REQUIRE(!par_tab_waiter_new(t, nav_events, &w, &err));
        CHECK(!par_cdp_subscribe(par_tab_cdp(t), par_tab_session_id(t),
                                 "Page.loadEventFired", on_load,
                                 (void *)par_tab_session_id(t), &sub, &err));

        snprintf(url, sizeof(url), "http://127.0.0.1:%d/fixture", http_port);
        p = json_pack("{s:s}", "url", url);
        CHECKF(!par_tab_call(t, "Page.navigate", p, 5000, NULL, &err), "%s",
               err.msg);
        json_decref(p);
        /* every event up to the load, in order */
        for (;;) {
                const char *m;
                if (par_cdp_waiter_wait(w, 5000, &ev, &err)) {
                        CHECKF(0, "no load event: %s", err.msg);
                        break;
                }
                m = json_string_value(json_object_get(ev, "method"));
                if (!strcmp(m, "Page.frameNavigated"))
                        navigated = !strcmp(
                            json_string_value(json_object_get(
                                json_object_get(json_object_get(ev, "params"),
                                                "frame"),
                                "url")),
                            url);
                if (!strcmp(m, "Page.lifecycleEvent"))
                        lifecycle++;
                if (!strcmp(m, "Page.loadEventFired")) {
                        json_decref(ev);
                        break;
                }
                json_decref(ev);
        }
        CHECK(navigated);
        CHECKF(lifecycle > 0, "no Page.lifecycleEvent before the load");
        CHECK(__atomic_load_n(&http_hits, __ATOMIC_SEQ_CST) >= 1);
        {
                json_t *r = NULL;
                p = json_pack("{s:s,s:b}", "expression", "document.title",
                              "returnByValue", 1);
                CHECK(!par_tab_call(t, "Runtime.evaluate", p, 5000, &r, &err));
                CHECK_STR(json_string_value(json_object_get(
                              json_object_get(r, "result"), "value")),
                          "loaded");
                json_decref(r);
                json_decref(p);
        }
        /* the callback ran on the I/O thread for the same event */
        for (int i = 0; i < 100 && !__atomic_load_n(&cb_loads, 0); i++)
                usleep(10000);
        CHECK(cb_loads == 1);
        par_cdp_unsubscribe(par_tab_cdp(t), sub);

        /* a data: URL navigation, waited for with wait_for */
        p = json_pack("{s:s}", "url", "data:text/html,<p>two</p>");
        CHECK(!par_tab_call(t, "Page.navigate", p, 5000, NULL, &err));
        json_decref(p);
        CHECKF(!par_cdp_waiter_wait_for(w, "Page.loadEventFired", 5000, NULL,
                                        &err),
               "%s", err.msg);
        CHECK(cb_loads == 1); /* unsubscribed */

        /* an uncaught exception */
        REQUIRE(!par_tab_waiter_new(t, ex_events, &ex, &err));
        p = json_pack("{s:s}", "expression",
                      "setTimeout(() => { throw new Error('boom') }, 0)");
        CHECK(!par_tab_call(t, "Runtime.evaluate", p, 5000, NULL, &err));
        json_decref(p);
        ev = NULL;
        CHECKF(!par_cdp_waiter_wait_for(ex, "Runtime.exceptionThrown", 5000,
                                        &ev, &err),
               "%s", err.msg);
        {
                char *s = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
                CHECKF(s && strstr(s, "boom"), "%s", s ? s : "(none)");
                free(s);
        }
        json_decref(ev);
        /* nothing more: a poll times out at once */
        CHECK(par_cdp_waiter_wait(ex, 0, NULL, &err) == PAR_ERR_TIMEOUT);

        par_cdp_waiter_destroy(ex);
        par_cdp_waiter_destroy(w);
        par_chrome_tab_release(c, t, false);
        par_chrome_destroy(c);
}

static void test_page_crash(void)
{
        par_chrome_t *c = pool(1, PAR_CHROME_ISO_CONTEXT, 0);
        par_tab_t *t = NULL;
        par_error_t err;
        par_cdp_waiter_t *w = NULL;
        const char *evs[] = {"Page.loadEventFired", "Inspector.targetCrashed",
                             NULL};
        char target[64], session[64];
        json_t *ev = NULL;
        par_chrome_stats_t st;
        double t0;

        REQUIRE(c);
        REQUIRE(!par_chrome_tab_acquire(c, 0, &t, &err));
        remember_pgid(par_tab_browser_pid(t));
        snprintf(target, sizeof(target), "%s", par_tab_target_id(t));
        snprintf(session, sizeof(session), "%s", par_tab_session_id(t));
        REQUIRE(!par_tab_waiter_new(t, evs, &w, &err));
        par_tab_call(t, "Page.crash", NULL, 5000, NULL, &err);
        t0 = par_clock_mono_s();
        CHECKF(!par_cdp_waiter_wait(w, 5000, &ev, &err), "%s", err.msg);
        CHECK_STR(json_string_value(json_object_get(ev, "method")),
                  "Inspector.targetCrashed");
        json_decref(ev);
        /* then the waiter and calls fail fast, not at their timeout */
        CHECK(par_cdp_waiter_wait(w, 5000, NULL, &err) == PAR_ERR_DISCONNECTED);
        CHECK(par_cdp_call_take(par_tab_cdp(t), par_tab_session_id(t),
                                "Runtime.evaluate",
                                json_pack("{s:s}", "expression", "1"), 5000,
                                NULL, &err) == PAR_ERR_DISCONNECTED);
        CHECKF(strstr(err.msg, "crashed") != NULL, "%s", err.msg);
        CHECK(par_clock_mono_s() - t0 < 1.0);
        CHECK(par_cdp_session_dead(par_tab_cdp(t), session));
        par_cdp_waiter_destroy(w);
        par_chrome_tab_release(c, t, false); /* the pool notices anyway */

        CHECKF(!par_chrome_tab_acquire(c, 0, &t, &err), "%s", err.msg);
        REQUIRE(t);
        CHECK(strcmp(par_tab_target_id(t), target) != 0);
        CHECK(eval_int(t, "2+3", &err) == 5);
        par_chrome_stats(c, &st);
        CHECK(st.tabs_replaced == 1);
        CHECK(st.launches == 1); /* the browser itself survived */
        par_chrome_tab_release(c, t, false);
        par_chrome_destroy(c);
}

struct hang {
        par_tab_t *t;
        par_err_t rc;
        double took;
        char msg[256];
};

static void *hang_main(void *arg)
{
        struct hang *h = arg;
        par_error_t err = {0};
        json_t *p = json_pack("{s:s,s:b}", "expression",
                              "new Promise(() => {})", "awaitPromise", 1);
        double t0 = par_clock_mono_s();
        h->rc = par_tab_call(h->t, "Runtime.evaluate", p, 20000, NULL, &err);
        h->took = par_clock_mono_s() - t0;
        snprintf(h->msg, sizeof(h->msg), "%s", err.msg);
        json_decref(p);
        return NULL;
}

static void test_kill_browser(void)
{
        par_chrome_t *c = pool(2, PAR_CHROME_ISO_CONTEXT, 0);
        par_tab_t *t = NULL, *t1 = NULL;
        par_error_t err;
        struct hang h[2];
        pthread_t th[2];
        pid_t pid;
        par_chrome_stats_t st;

        REQUIRE(c);
        REQUIRE(!par_chrome_tab_acquire(c, 0, &t, &err));
        REQUIRE(!par_chrome_tab_acquire(c, 1, &t1, &err));
        pid = par_tab_browser_pid(t);
        remember_pgid(pid);
        CHECK(pid == par_tab_browser_pid(t1)); /* shared browser */
        h[0] = (struct hang){.t = t};
        h[1] = (struct hang){.t = t1};
        pthread_create(&th[0], NULL, hang_main, &h[0]);
        pthread_create(&th[1], NULL, hang_main, &h[1]);
        usleep(300000);
        CHECK(kill(pid, SIGKILL) == 0);
        for (int i = 0; i < 2; i++) {
                pthread_join(th[i], NULL);
                CHECKF(h[i].rc == PAR_ERR_DISCONNECTED, "rc=%d %s", h[i].rc,
                       h[i].msg);
                CHECKF(h[i].took < 3.0, "pending call failed after %.2f s",
                       h[i].took);
        }
        fprintf(stderr, "   pending call error: %s\n", h[0].msg);
        par_chrome_tab_release(c, t, true);
        par_chrome_tab_release(c, t1, true);
        t = NULL;

        /* the monitor reaps and relaunches; the next acquire works */
        CHECKF(!par_chrome_tab_acquire(c, 0, &t, &err), "%s", err.msg);
        REQUIRE(t);
        remember_pgid(par_tab_browser_pid(t));
        CHECK(par_tab_browser_pid(t) != pid);
        CHECK(eval_int(t, "6*7", &err) == 42);
        par_chrome_stats(c, &st);
        CHECKF(st.restarts == 1, "restarts=%llu",
               (unsigned long long)st.restarts);
        CHECK(st.browsers_alive == 1);
        CHECKF(group_count(pid) == 0, "%d processes left in group %d",
               group_count(pid), (int)pid);
        par_chrome_tab_release(c, t, false);
        par_chrome_destroy(c);
}

/* A browser that stops answering with its socket open (SIGSTOP) is found
 * by the supervisor's ping, killed (which fails the calls stuck on it) and
 * replaced. */
static void test_hung_browser(void)
{
        par_chrome_opts_t o;
        par_chrome_t *c = NULL;
        par_tab_t *t = NULL;
        par_error_t err;
        struct hang h;
        pthread_t th;
        pid_t pid;
        par_chrome_stats_t st;

        opts_for_test(&o);
        o.ping_interval_ms = 500;
        /* no background preparation competing with the 500 ms pings of a
         * browser that just started (this test is about hangs) */
        o.ready_contexts = 0;
        REQUIRE(!par_chrome_new(&c, &o, 1, &err));
        REQUIRE(!par_chrome_tab_acquire(c, 0, &t, &err));
        pid = par_tab_browser_pid(t);
        remember_pgid(pid);
        h = (struct hang){.t = t};
        pthread_create(&th, NULL, hang_main, &h);
        usleep(200000);
        CHECK(kill(-pid, SIGSTOP) == 0);
        pthread_join(th, NULL);
        CHECKF(h.rc == PAR_ERR_DISCONNECTED, "rc=%d %s", h.rc, h.msg);
        CHECKF(h.took < 10.0, "stuck call failed after %.2f s", h.took);
        par_chrome_tab_release(c, t, true);
        t = NULL;
        CHECKF(!par_chrome_tab_acquire(c, 0, &t, &err), "%s", err.msg);
        REQUIRE(t);
        remember_pgid(par_tab_browser_pid(t));
        CHECK(par_tab_browser_pid(t) != pid);
        CHECK(eval_int(t, "1+2", &err) == 3);
        par_chrome_stats(c, &st);
        CHECK(st.restarts == 1);
        CHECK(group_count(pid) == 0);
        par_chrome_tab_release(c, t, false);
        par_chrome_destroy(c);
}

static void test_recycle(void)
{
        par_chrome_t *c = pool(1, PAR_CHROME_ISO_CONTEXT, 3);
        par_tab_t *t = NULL;
        par_error_t err;
        pid_t first = -1;
        par_chrome_stats_t st;

        REQUIRE(c);
        for (int i = 0; i < 3; i++) {
                REQUIRE(!par_chrome_tab_acquire(c, 0, &t, &err));
                if (first < 0)
                        first = par_tab_browser_pid(t);
                CHECK(par_tab_browser_pid(t) == first);
                CHECK(eval_int(t, "1", &err) == 1);
                par_chrome_tab_release(c, t, false);
        }
        remember_pgid(first);
        REQUIRE(!par_chrome_tab_acquire(c, 0, &t, &err));
        remember_pgid(par_tab_browser_pid(t));
        CHECK(par_tab_browser_pid(t) != first);
        CHECK(eval_int(t, "1", &err) == 1);
        par_chrome_tab_release(c, t, false);
        par_chrome_stats(c, &st);
        CHECK(st.recycles == 1);
        CHECK(st.launches == 2);
        CHECK(st.restarts == 0);
        CHECK(st.spins == 4);
        CHECK(group_count(first) == 0);
        par_chrome_destroy(c);
}

/* Waits up to 20 s for the pool to report `alive` browsers alive and
 * `restarts` restarts. */
/* Until alive browsers run, each with its process group (a recycle stops
 * one and relaunches it after the stats count it), after restarts. */
static void wait_browsers(par_chrome_t *c, int alive, uint64_t restarts)
{
        par_chrome_stats_t st;
        double end = par_clock_mono_s() + 20;
        pid_t g[8];

        do {
                par_chrome_stats(c, &st);
                if (st.browsers_alive == alive && st.restarts == restarts &&
                    par_chrome_browser_pgids(c, g, 8) == alive)
                        return;
                usleep(20000);
        } while (par_clock_mono_s() < end);
}

/*
 * Two shared browsers (chrome.browsers=2) serving one worker: both are
 * supervised. One killed: spins go on without it and it is relaunched;
 * one that reaches recycle_after is recycled while the other serves.
 */
static void test_shared_browsers(void)
{
        par_chrome_opts_t o;
        par_chrome_t *c = NULL;
        par_tab_t *t = NULL;
        par_error_t err;
        par_chrome_stats_t st;
        pid_t g[4], victim;
        int n, spins = 0;

        opts_for_test(&o);
        o.browsers = 2;
        o.recycle_after = 4;
        REQUIRE(!par_chrome_new(&c, &o, 1, &err));
        REQUIRE(!par_chrome_tab_acquire(c, 0, &t, &err));
        par_chrome_tab_release(c, t, false);
        wait_browsers(c, 2, 0);
        n = par_chrome_browser_pgids(c, g, 4);
        REQUIRE(n == 2);
        remember_pgid(g[0]);
        remember_pgid(g[1]);
        victim = g[0];
        CHECK(kill(-victim, SIGKILL) == 0);
        /* noticed (its spins would fail until then, as with one browser) */
        for (double end = par_clock_mono_s() + 10;
             par_chrome_stats(c, &st), !st.crashes && par_clock_mono_s() < end;)
                usleep(20000);
        do {
                CHECKF(!par_chrome_tab_acquire(c, 0, &t, &err), "%s", err.msg);
                if (!t)
                        break;
                remember_pgid(par_tab_browser_pid(t));
                CHECK(par_tab_browser_pid(t) != victim);
                CHECK(par_chrome_browser_pgid(c, 0) == par_tab_browser_pid(t));
                CHECK(eval_int(t, "1", &err) == 1);
                par_chrome_tab_release(c, t, false);
                t = NULL;
                par_chrome_stats(c, &st);
        } while (++spins < 20 && !st.recycles);
        CHECKF(st.recycles == 1, "recycles=%llu after %d spins",
               (unsigned long long)st.recycles, spins);
        wait_browsers(c, 2, 1);
        par_chrome_stats(c, &st);
        CHECKF(st.browsers_alive == 2 && st.restarts == 1 && st.crashes == 1,
               "alive %d restarts %llu crashes %llu", st.browsers_alive,
               (unsigned long long)st.restarts, (unsigned long long)st.crashes);
        n = par_chrome_browser_pgids(c, g, 4);
        CHECK(n == 2);
        for (int i = 0; i < n; i++)
                remember_pgid(g[i]);
        CHECK(group_count(victim) == 0);
        par_chrome_destroy(c);
}

static void test_browser_isolation(void)
{
        par_chrome_t *c = pool(2, PAR_CHROME_ISO_BROWSER, 0);
        par_tab_t *a = NULL, *b = NULL;
        par_error_t err;

        REQUIRE(c);
        REQUIRE(!par_chrome_tab_acquire(c, 0, &a, &err));
        REQUIRE(!par_chrome_tab_acquire(c, 1, &b, &err));
        remember_pgid(par_tab_browser_pid(a));
        remember_pgid(par_tab_browser_pid(b));
        CHECK(par_tab_browser_pid(a) != par_tab_browser_pid(b));
        CHECK(par_tab_cdp(a) != par_tab_cdp(b));
        CHECK(eval_int(a, "1", &err) == 1 && eval_int(b, "2", &err) == 2);
        CHECK(par_chrome_browser_pgid(c, 1) == par_tab_browser_pid(b));
        par_chrome_tab_release(c, a, false);
        par_chrome_tab_release(c, b, false);
        par_chrome_destroy(c);
}

/* chrome.profile_dir is kept (one sub-directory per worker in browser
 * isolation); chrome.extra_args reach the browser. */
static void test_persistent_profile(void)
{
        par_chrome_opts_t o;
        par_chrome_t *c = NULL;
        par_tab_t *t = NULL;
        par_error_t err;
        json_t *r = NULL, *p;
        char state[600];
        struct stat sb;

        opts_for_test(&o);
        o.isolation = PAR_CHROME_ISO_BROWSER;
        snprintf(o.profile_dir, sizeof(o.profile_dir), "%s/persist", run_dir);
        snprintf(o.extra_args, sizeof(o.extra_args),
                 "--user-agent=ParallelTest/1.0  --mute-audio");
        mkdir(o.profile_dir, 0700);
        REQUIRE(!par_chrome_new(&c, &o, 1, &err));
        CHECKF(!par_chrome_tab_acquire(c, 0, &t, &err), "%s", err.msg);
        REQUIRE(t);
        remember_pgid(par_tab_browser_pid(t));
        CHECK(*par_tab_context_id(t)); /* its own browser, a fresh context */
        p = json_pack("{s:s,s:b}", "expression", "navigator.userAgent",
                      "returnByValue", 1);
        CHECK(!par_tab_call(t, "Runtime.evaluate", p, 5000, &r, &err));
        CHECK_STR(json_string_value(
                      json_object_get(json_object_get(r, "result"), "value")),
                  "ParallelTest/1.0");
        json_decref(r);
        json_decref(p);
        par_chrome_tab_release(c, t, false);
        par_chrome_destroy(c);
        snprintf(state, sizeof(state), "%s/worker-0/Local State",
                 o.profile_dir);
        CHECKF(stat(state, &sb) == 0, "%s missing", state);
}

static void test_connect_mode(void)
{
        /* A browser we start ourselves, as an operator would. */
        par_chrome_t *launcher = pool(1, PAR_CHROME_ISO_CONTEXT, 0), *c = NULL;
        par_tab_t *t = NULL, *lt = NULL;
        par_error_t err;
        par_chrome_opts_t o;
        char ep[128];

        REQUIRE(launcher);
        REQUIRE(!par_chrome_tab_acquire(launcher, 0, &lt, &err));
        remember_pgid(par_tab_browser_pid(lt));
        /* its port, from the DevToolsActivePort in its temp profile */
        {
                char path[1024], line[32];
                DIR *d = opendir(run_dir);
                struct dirent *e;
                FILE *f = NULL;
                while (d && (e = readdir(d)) && !f) {
                        if (strncmp(e->d_name, "parallel-chrome-", 16))
                                continue;
                        snprintf(path, sizeof(path),
                                 "%s/%s/profile/DevToolsActivePort", run_dir,
                                 e->d_name);
                        f = fopen(path, "r");
                }
                if (d)
                        closedir(d);
                REQUIRE(f);
                REQUIRE(fgets(line, sizeof(line), f));
                fclose(f);
                snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", atoi(line));
        }

        opts_for_test(&o);
        o.mode = PAR_CHROME_CONNECT;
        snprintf(o.endpoints, sizeof(o.endpoints), "%s", ep);
        CHECKF(!par_chrome_new(&c, &o, 2, &err), "%s", err.msg);
        REQUIRE(c);
        REQUIRE(!par_chrome_tab_acquire(c, 1, &t, &err));
        CHECK(par_tab_browser_pid(t) == -1);
        CHECK(*par_tab_context_id(t));
        CHECK(eval_int(t, "3*3", &err) == 9);
        par_chrome_tab_release(c, t, false);
        par_chrome_destroy(c);
        /* the remote browser is not ours to stop */
        CHECK(eval_int(lt, "4*4", &err) == 16);
        par_chrome_tab_release(launcher, lt, false);
        par_chrome_destroy(launcher);

        /* a wrong endpoint fails at construction with a clear message */
        snprintf(o.endpoints, sizeof(o.endpoints), "http://127.0.0.1:1");
        o.start_timeout_ms = 1000;
        c = NULL;
        CHECK(par_chrome_new(&c, &o, 1, &err) != PAR_OK && !c);
        CHECKF(strstr(err.msg, "127.0.0.1") != NULL, "%s", err.msg);
}

/* A node that dies without cleaning up (SIGKILL) takes its browsers with
 * it: PR_SET_PDEATHSIG on the supervisor thread. */
static void test_node_crash_no_orphan(void)
{
        int fds[2];
        pid_t node, pg = -1;
        char sub[400];
        double end;

        snprintf(sub, sizeof(sub), "%s/crashed-node", run_dir);
        mkdir(sub, 0700);
        REQUIRE(pipe(fds) == 0);
        node = fork();
        REQUIRE(node >= 0);
        if (node == 0) {
                /* a fresh process image: fork alone would leave the child
                 * with one thread of a threaded parent */
                char fd[16];
                snprintf(fd, sizeof(fd), "%d", fds[1]);
                close(fds[0]);
                execl("/proc/self/exe", "chrome_cdp_test", "--crash-node", sub,
                      fd, (char *)NULL);
                _exit(127);
        }
        close(fds[1]);
        CHECK(read(fds[0], &pg, sizeof(pg)) == sizeof(pg));
        close(fds[0]);
        REQUIRE(pg > 0);
        CHECK(group_count(pg) > 0);
        kill(node, SIGKILL);
        waitpid(node, NULL, 0);
        end = par_clock_mono_s() + 10;
        while (group_count(pg) && par_clock_mono_s() < end)
                usleep(50000);
        CHECKF(group_count(pg) == 0, "%d browser processes outlived their node",
               group_count(pg));
        if (group_count(pg))
                kill(-pg, SIGKILL);
}

static void test_nothing_left(void)
{
        int left = 0;
        double end = par_clock_mono_s() + 5;
        /* processes reparented to init may take a moment to be reaped */
        do {
                left = 0;
                for (int i = 0; i < nseen; i++)
                        left += group_count(seen_pgids[i]);
                if (!left)
                        break;
                usleep(50000);
        } while (par_clock_mono_s() < end);
        CHECKF(left == 0, "%d chromium processes left", left);
        /* and nothing outside those groups (crashpad handlers) */
        end = par_clock_mono_s() + 5;
        while (procs_in_run_dir() && par_clock_mono_s() < end)
                usleep(100000);
        CHECKF(procs_in_run_dir() == 0, "processes still use %s", run_dir);
        CHECKF(nseen >= 8, "saw only %d browser groups", nseen);
        CHECKF(temp_dirs_left() == 0, "%d temp dirs left in %s",
               temp_dirs_left(), run_dir);
}

/* The node of test_node_crash_no_orphan: a pool with one browser, whose
 * pgid goes to the parent; then it waits to be killed. */
static int crash_node(const char *dir, int fd)
{
        par_chrome_opts_t o;
        par_chrome_t *c = NULL;
        par_tab_t *t = NULL;
        par_error_t err;
        pid_t pg;

        opts_for_test(&o);
        snprintf(o.tmp_dir, sizeof(o.tmp_dir), "%s", dir);
        if (par_chrome_new(&c, &o, 1, &err) ||
            par_chrome_tab_acquire(c, 0, &t, &err)) {
                fprintf(stderr, "crash node: %s\n", err.msg);
                return 1;
        }
        pg = par_tab_browser_pid(t);
        if (write(fd, &pg, sizeof(pg)) != sizeof(pg))
                return 1;
        for (;;)
                pause();
}

int main(int argc, char **argv)
{
        char home[300];

        if (argc == 4 && !strcmp(argv[1], "--crash-node"))
                return crash_node(argv[2], atoi(argv[3]));

        snprintf(run_dir, sizeof(run_dir), "%s/parallel-cdp-test-XXXXXX",
                 tu_env("TMPDIR", "/tmp"));
        if (!mkdtemp(run_dir)) {
                perror("mkdtemp");
                return 1;
        }
        snprintf(home, sizeof(home), "%s/home", run_dir);
        mkdir(home, 0700);
        setenv("HOME", home, 1);
        signal(SIGPIPE, SIG_IGN);
        http_start();

        RUN(test_roundtrip);
        RUN(test_concurrent_calls);
        RUN(test_timeout_no_leak);
        RUN(test_big_messages);
        RUN(test_lone_surrogate);
        RUN(test_events);
        RUN(test_page_crash);
        RUN(test_kill_browser);
        RUN(test_hung_browser);
        RUN(test_recycle);
        RUN(test_shared_browsers);
        RUN(test_browser_isolation);
        RUN(test_persistent_profile);
        RUN(test_connect_mode);
        RUN(test_node_crash_no_orphan);
        RUN(test_nothing_left);

        {
                char cmd[400];
                snprintf(cmd, sizeof(cmd), "rm -rf '%s'", run_dir);
                if (system(cmd))
                        fprintf(stderr, "could not remove %s\n", run_dir);
        }
        TEST_DONE();
}
