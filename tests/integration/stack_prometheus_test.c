/*
 * stack_prometheus_test.c — the metrics, the alert rules and the Grafana
 * dashboard against a real Prometheus (Debian's, run without root on a
 * private port and data dir).
 *
 * The test starts the producer and two consumer nodes on a fresh world,
 * then Prometheus scraping all three every second with
 * deploy/monitoring/parallel-rules.yml loaded. It inserts N noop signals
 * (priorities 1..4) through the producer, reads every result from
 * <prefix>.results into a ledger, lets Prometheus scrape the final
 * figures, and asks its HTTP API cluster-wide questions whose answers the
 * ledger knows:
 *   - done spins per priority over both nodes
 *     (sum by (priority) (parallel_spins_total{status="done"})) equal the
 *     ledger's counts exactly;
 *   - spins per second per priority (rate over the run) within 25 % of
 *     the ledger's count over the same window (rate() extrapolates to the
 *     window's edges from 1 s scrapes);
 *   - p99 wait per priority over both nodes (histogram_quantile over the
 *     summed buckets) falls in the same bucket as the ledger's exact p99
 *     of started_at − queued_at, and the bucket counts match the ledger;
 *   - the producer's published signals per priority equal the ledger's;
 *   - every rule of the rule file loaded healthy, and no
 *     ParallelNoActiveProducer alert fires while a producer is active;
 *   - every query of every Grafana panel ($__rate_interval as 1m)
 *     succeeds and returns data;
 *   - `parallel-ctl decode --topic results --status done --priority P`
 *     prints exactly the ledger's done results of priority P;
 *   - `parallel-ctl status --json` (built from Kafka and the lease) shows
 *     both nodes in the group and in the metrics topic, their workers,
 *     the active producer, and done spins per priority over the minute
 *     matching the ledger (PARALLEL_TEST_STATUS_OUT=FILE keeps its text form);
 *   - the cluster page (`parallel-ctl status --http`) in real headless
 *     Chromium: the rendered DOM lists both nodes, both charts have data
 *     points, the console shows no error, and a screenshot is a real
 *     (non-blank) PNG (PARALLEL_TEST_SCREENSHOT_OUT=FILE keeps it).
 */
#include <jansson.h>
#include <math.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "base/clock.h"
#include "net/httpc.h"
#include "obs/metrics.h"
#include "stack_consumer_util.h"

#define N 80

static int free_port(void)
{
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;
        if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof(a)) &&
            !getsockname(fd, (struct sockaddr *)&a, &len))
                port = ntohs(a.sin_port);
        if (fd >= 0)
                close(fd);
        return port;
}

typedef struct prom {
        pid_t pid;
        int port;
        char dir[400];
} prom_t;

static int prom_start(prom_t *p, const su_ctx_t *c, const su_proc_t *prod,
                      const su_proc_t *nodes, int nn)
{
        char path[500], log[500], a1[600], a2[600], a3[100];
        snprintf(p->dir, sizeof(p->dir), "%s/%s-prometheus", c->logdir,
                 c->name);
        if (mkdir(p->dir, 0700))
                return -1;
        snprintf(path, sizeof(path), "%s/prometheus.yml", p->dir);
        FILE *f = fopen(path, "w");
        if (!f)
                return -1;
        fprintf(f,
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "rule_files:\n  - %s/deploy/monitoring/parallel-rules.yml\n"
                "scrape_configs:\n"
                "  - job_name: parallel-producer\n    static_configs:\n"
                "      - targets: ['127.0.0.1:%d']\n"
                "  - job_name: parallel-consumer\n    static_configs:\n"
                "      - targets: [",
                tu_env("PARALLEL_SOURCE_DIR", "."), prod->port);
        for (int i = 0; i < nn; i++)
                fprintf(f, "%s'127.0.0.1:%d'", i ? ", " : "", nodes[i].port);
        fprintf(f, "]\n");
        fclose(f);
        p->port = free_port();
        snprintf(log, sizeof(log), "%s/prometheus.log", p->dir);
        snprintf(a1, sizeof(a1), "--config.file=%s", path);
        snprintf(a2, sizeof(a2), "--storage.tsdb.path=%s/data", p->dir);
        snprintf(a3, sizeof(a3), "--web.listen-address=127.0.0.1:%d", p->port);
        if ((p->pid = fork()) < 0)
                return -1;
        if (p->pid == 0) {
                if (!freopen(log, "w", stderr))
                        _exit(127);
                dup2(2, 1);
                execlp("prometheus", "prometheus", a1, a2, a3, (char *)NULL);
                _exit(127);
        }
        double deadline = par_clock_mono_s() + 30;
        char buf[256];
        while (par_clock_mono_s() < deadline) {
                if (su_http_get(p->port, "/-/ready", buf, sizeof(buf)) == 200)
                        return 0;
                int st;
                if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
                        fprintf(stderr, "prometheus exited, see %s\n", log);
                        p->pid = 0;
                        return -1;
                }
                par_clock_sleep_ms(200);
        }
        return -1;
}

static void prom_stop(prom_t *p)
{
        char cmd[500];
        if (p->pid > 0) {
                su_producer_stop((su_proc_t *)&(su_proc_t){.pid = p->pid},
                                 SIGTERM, 20);
                p->pid = 0;
        }
        if (p->dir[0]) {
                snprintf(cmd, sizeof(cmd), "rm -rf '%s'", p->dir);
                if (system(cmd)) {
                }
        }
}

/* GET /api/v1/<what>, with the expression and time as the query string.
 * Returns the "data" object (caller decrefs) or NULL on error (printed). */
static json_t *prom_api(const prom_t *p, const char *what, const char *expr,
                        double at)
{
        char endpoint[64], *path = NULL;
        size_t qn = expr ? par_httpc_escape(NULL, 0, expr) : 0;
        size_t pn = qn + strlen(what) + 100;
        par_httpc_reply_t r = {0};
        par_error_t e;
        json_t *d = NULL;

        snprintf(endpoint, sizeof(endpoint), "127.0.0.1:%d", p->port);
        if (!(path = malloc(pn)))
                return NULL;
        int k = snprintf(path, pn, "/api/v1/%s%s", what, expr ? "?query=" : "");
        if (expr) {
                par_httpc_escape(path + k, pn - (size_t)k, expr);
                k += (int)qn;
                snprintf(path + k, pn - (size_t)k, "&time=%.3f", at);
        }
        if (par_httpc_get(endpoint, path, 10000, &r, &e)) {
                fprintf(stderr, "   prometheus %s '%s': %s\n", what,
                        expr ? expr : "", e.msg);
                free(path);
                return NULL;
        }
        json_t *v = json_loads(r.body, 0, NULL);
        const char *st = json_string_value(json_object_get(v, "status"));
        if (!st || strcmp(st, "success"))
                fprintf(stderr, "   prometheus %s '%s': %d %.300s\n", what,
                        expr ? expr : "", r.status, r.body);
        else
                d = json_incref(json_object_get(v, "data"));
        json_decref(v);
        par_httpc_reply_free(&r);
        free(path);
        return d;
}

/* An instant query's vector as (label value → number) for one label. */
static int prom_by(const prom_t *p, const char *expr, const char *label,
                   double at, double out[5])
{
        for (int i = 0; i < 5; i++)
                out[i] = NAN;
        json_t *d = prom_api(p, "query", expr, at);
        json_t *res = json_object_get(d, "result");
        size_t i;
        json_t *s;
        int n = 0;
        json_array_foreach(res, i, s)
        {
                const char *lv = json_string_value(
                    json_object_get(json_object_get(s, "metric"), label));
                const char *v = json_string_value(
                    json_array_get(json_object_get(s, "value"), 1));
                int k = lv ? atoi(lv) : 0;
                if (k >= 1 && k <= 4 && v) {
                        out[k] = atof(v);
                        n++;
                }
        }
        json_decref(d);
        return n;
}

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return x < y ? -1 : x > y;
}

/* The bucket (upper bound; +Inf as INFINITY) a value in seconds falls in. */
static double bucket_of(double v, double *lo)
{
        const par_bucket_bounds_t *b = &par_buckets_long;
        *lo = 0;
        for (size_t i = 0; i < b->n; i++) {
                if (v <= b->v[i])
                        return b->v[i];
                *lo = b->v[i];
        }
        return INFINITY;
}

static char *run_ctl_cmd(const su_ctx_t *c, const char *verb, const char *args);

static char *run_ctl(const su_ctx_t *c, const char *args)
{
        return run_ctl_cmd(c, "status", args);
}

static char *run_ctl_cmd(const su_ctx_t *c, const char *verb, const char *args)
{
        char cmd[1600], buf[4096], *out = NULL;
        size_t len = 0, got;
        snprintf(cmd, sizeof(cmd),
                 "%s/parallel-ctl -X kafka.bootstrap.servers=%s "
                 "-X topic.prefix=%s -X consumer.group=%s -X mongo.uri=%s "
                 "-X mongo.database=%s %s %s",
                 tu_env("PARALLEL_BINARY_DIR", "."), c->kafka, c->name, c->name,
                 c->mongo_uri, c->name, verb, args);
        FILE *pf = popen(cmd, "r"), *mem = open_memstream(&out, &len);
        if (!pf || !mem)
                return NULL;
        while ((got = fread(buf, 1, sizeof(buf), pf)) > 0)
                fwrite(buf, 1, got, mem);
        fclose(mem);
        if (pclose(pf)) {
                free(out);
                return NULL;
        }
        return out;
}

typedef struct world {
        su_ctx_t c;
        su_ledger_t l;
        sc_reader_t r;
        su_proc_t prod, nodes[2];
        prom_t prom;
        int ledger_up, reader_up;
} world_t;

static void check_dashboard(world_t *w, double at)
{
        char path[600];
        snprintf(path, sizeof(path),
                 "%s/deploy/monitoring/parallel-dashboard.json",
                 tu_env("PARALLEL_SOURCE_DIR", "."));
        json_t *dash = json_load_file(path, 0, NULL);
        REQUIRE(dash);
        size_t i, k, queries = 0, with_data = 0;
        json_t *panel, *t;
        json_array_foreach(json_object_get(dash, "panels"), i, panel)
        {
                json_array_foreach(json_object_get(panel, "targets"), k, t)
                {
                        const char *e =
                            json_string_value(json_object_get(t, "expr"));
                        char q[1024], *s;
                        if (!e)
                                continue;
                        snprintf(q, sizeof(q), "%s", e);
                        while ((s = strstr(q, "$__rate_interval"))) {
                                memcpy(s, "1m", 2);
                                memmove(s + 2, s + 16, strlen(s + 16) + 1);
                        }
                        queries++;
                        json_t *d = prom_api(&w->prom, "query", q, at);
                        size_t n =
                            json_array_size(json_object_get(d, "result"));
                        CHECKF(
                            d && n > 0, "panel '%s': no data for %s",
                            json_string_value(json_object_get(panel, "title")),
                            q);
                        with_data += d && n > 0;
                        json_decref(d);
                }
        }
        fprintf(stderr, "   dashboard: %zu of %zu panel queries have data\n",
                with_data, queries);
        CHECK(queries > 20);
        json_decref(dash);
}

static void check_status(world_t *w, const int *done)
{
        char *out = run_ctl(&w->c, "--json");
        json_t *st = out ? json_loads(out, 0, NULL) : NULL, *x;
        size_t i;
        REQUIRE(st);
        int members = 0, nodes = 0, workers = 0;
        json_array_foreach(
            json_object_get(json_object_get(st, "group"), "members"), i, x)
        {
                const char *n = json_string_value(json_object_get(x, "node"));
                members += n && (!strcmp(n, "n1") || !strcmp(n, "n2"));
        }
        json_array_foreach(json_object_get(st, "nodes"), i, x)
        {
                const char *n = json_string_value(json_object_get(x, "node"));
                nodes += n && (!strcmp(n, "n1") || !strcmp(n, "n2"));
        }
        json_array_foreach(json_object_get(st, "workers"), i, x) workers++;
        CHECKF(members == 2, "status: %d of n1, n2 in the group", members);
        CHECKF(nodes == 2, "status: %d of n1, n2 in the metrics", nodes);
        CHECKF(workers >= 2, "status: %d workers", workers);
        CHECK(json_is_true(
            json_object_get(json_object_get(st, "producer"), "active")));
        json_array_foreach(json_object_get(st, "priorities"), i, x)
        {
                int p = (int)json_integer_value(json_object_get(x, "priority"));
                double sps =
                    json_number_value(json_object_get(x, "spins_per_s"));
                json_t *lag = json_object_get(x, "lag");
                if (p < 1 || p > 4)
                        continue;
                /* every final result of the run is inside the minute */
                CHECKF(fabs(sps * 60 - done[p]) < 0.5,
                       "status: p%d %.2f spins/s, ledger %d in the minute", p,
                       sps, done[p]);
                CHECK(json_is_integer(lag) && json_integer_value(lag) >= 0);
        }
        json_decref(st);
        free(out);
        out = run_ctl(&w->c, "");
        CHECK(out && strstr(out, "priority") && strstr(out, "n1") &&
              strstr(out, "n2"));
        if (out) {
                fputs(out, stderr);
                const char *keep = getenv("PARALLEL_TEST_STATUS_OUT");
                FILE *f = keep ? fopen(keep, "w") : NULL;
                if (f) {
                        fputs(out, f);
                        fclose(f);
                }
        }
        free(out);
}

/* Runs headless Chromium on url with extra arguments; its stdout goes to
 * out, its log (console messages included) to log. */
static int chromium(const char *home, const char *url, const char *extra,
                    const char *out, const char *log)
{
        char cmd[8192];
        int n = snprintf(
            cmd, sizeof(cmd),
            "HOME='%s' XDG_CONFIG_HOME='%s' timeout 90 chromium "
            "--headless --no-sandbox --disable-gpu --disable-quic "
            "--no-first-run --disable-background-networking "
            "--disable-component-update --disable-sync "
            "--user-data-dir='%s/profile' --enable-logging=stderr --v=0 "
            "--window-size=1280,1150 --virtual-time-budget=6000 %s '%s' "
            ">'%s' 2>'%s'",
            home, home, home, extra, url, out, log);
        if (n < 0 || n >= (int)sizeof(cmd))
                return -1;
        return system(cmd);
}

static char *slurp(const char *path, size_t *len)
{
        FILE *f = fopen(path, "rb");
        char *buf = NULL;
        size_t n = 0;
        if (!f)
                return NULL;
        FILE *m = open_memstream(&buf, &n);
        char b[8192];
        size_t got;
        while ((got = fread(b, 1, sizeof(b), f)) > 0)
                fwrite(b, 1, got, m);
        fclose(m);
        fclose(f);
        if (len)
                *len = n;
        return buf;
}

static int attr_int(const char *dom, const char *id, const char *attr)
{
        const char *s = strstr(dom, id);
        const char *a = s ? strstr(s, attr) : NULL;
        return a ? atoi(a + strlen(attr)) : -1;
}

static void check_page(world_t *w)
{
        su_ctx_t *c = &w->c;
        char dir[600], outf[700], cmd[4096], url[64], dom_p[700], log_p[700],
            png[700];
        snprintf(dir, sizeof(dir), "%s/%s-page", c->logdir, c->name);
        REQUIRE(mkdir(dir, 0700) == 0);
        snprintf(outf, sizeof(outf), "%s/ctl.out", dir);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
                snprintf(cmd, sizeof(cmd),
                         "exec %s/parallel-ctl -X kafka.bootstrap.servers=%s "
                         "-X topic.prefix=%s -X consumer.group=%s "
                         "-X mongo.uri=%s -X mongo.database=%s status --http "
                         "127.0.0.1:0 --interval-ms 1000 >'%s' 2>&1",
                         tu_env("PARALLEL_BINARY_DIR", "."), c->kafka, c->name,
                         c->name, c->mongo_uri, c->name, outf);
                execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
                _exit(127);
        }
        int port = 0;
        char buf[4096];
        for (double d = par_clock_mono_s() + 30; par_clock_mono_s() < d;) {
                char *o = slurp(outf, NULL), *p;
                if (o && (p = strstr(o, "serving http://127.0.0.1:")))
                        port = atoi(p + strlen("serving http://127.0.0.1:"));
                free(o);
                if (port &&
                    su_http_get(port, "/cluster.json", buf, sizeof(buf)) == 200)
                        break;
                par_clock_sleep_ms(200);
        }
        CHECKF(port > 0, "parallel-ctl status --http did not start");
        if (port) {
                snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
                snprintf(dom_p, sizeof(dom_p), "%s/dom.html", dir);
                snprintf(log_p, sizeof(log_p), "%s/chromium.log", dir);
                CHECK(chromium(dir, url, "--dump-dom", dom_p, log_p) == 0);
                char *dom = slurp(dom_p, NULL), *log = slurp(log_p, NULL);
                CHECKF(dom && strstr(dom, "data-rendered=\"1\""),
                       "the page did not render (see %s)", dom_p);
                CHECK(dom && strstr(dom, "data-node=\"n1\"") &&
                      strstr(dom, "data-node=\"n2\""));
                int ps = dom ? attr_int(dom, "id=\"c-spins\"", "data-points=\"")
                             : -1,
                    pw = dom ? attr_int(dom, "id=\"c-wait\"", "data-points=\"")
                             : -1;
                CHECKF(ps > 0 && pw > 0, "chart points: spins %d, wait %d", ps,
                       pw);
                CHECKF(log && !strstr(log, "Uncaught") &&
                           !strstr(log, "Failed to load resource"),
                       "console errors, see %s", log_p);
                fprintf(stderr,
                        "   cluster page: spins chart %d points, "
                        "wait chart %d points\n",
                        ps, pw);
                free(dom);
                free(log);

                snprintf(png, sizeof(png), "%s/page.png", dir);
                char extra[800];
                snprintf(extra, sizeof(extra), "--screenshot='%s'", png);
                CHECK(chromium(dir, url, extra, dom_p, log_p) == 0);
                size_t plen = 0;
                char *img = slurp(png, &plen);
                /* a blank 1280x1150 page compresses to a few KB */
                CHECKF(img && plen > 20000 && !memcmp(img, "\x89PNG", 4),
                       "screenshot: %zu bytes", plen);
                const char *keep = getenv("PARALLEL_TEST_SCREENSHOT_OUT");
                FILE *f = keep && img ? fopen(keep, "wb") : NULL;
                if (f) {
                        fwrite(img, 1, plen, f);
                        fclose(f);
                }
                free(img);
        }
        kill(pid, SIGTERM);
        int st;
        waitpid(pid, &st, 0);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd)) {
        }
}

static void run(world_t *w)
{
        su_ctx_t *c = &w->c;
        REQUIRE(sc_init(c, "prom") == 0);
        REQUIRE(su_ledger_init(&w->l, N, 50) == 0);
        w->ledger_up = 1;
        REQUIRE(sc_reader_new(c, &w->r, N) == 0);
        w->reader_up = 1;
        for (int i = 0; i < 2; i++)
                REQUIRE(sc_node_start(c, &w->nodes[i], i ? "n2" : "n1",
                                      "workers.max=2", NULL) == 0);
        REQUIRE(su_producer_start(c, &w->prod, "producer", NULL) == 0);
        REQUIRE(su_wait_log(&w->prod, "event=pipeline.started", 30) == 0);
        REQUIRE(prom_start(&w->prom, c, &w->prod, w->nodes, 2) == 0);
        /* every target scraped once before the work starts, so counters
         * are seen at 0 */
        double v[5], deadline = par_clock_mono_s() + 20;
        json_t *d = NULL;
        while (par_clock_mono_s() < deadline) {
                d = prom_api(&w->prom, "query", "sum(up)",
                             par_clock_wall_ms() / 1e3);
                const char *s = json_string_value(json_array_get(
                    json_object_get(
                        json_array_get(json_object_get(d, "result"), 0),
                        "value"),
                    1));
                int up = s ? atoi(s) : 0;
                json_decref(d);
                if (up == 3)
                        break;
                par_clock_sleep_ms(250);
        }
        REQUIRE(par_clock_mono_s() < deadline); /* every target scraped */
        par_clock_sleep_ms(1500);
        double t0 = par_clock_wall_ms() / 1e3;
        /* in 4 bulks, 0.5 s apart: a run of a few seconds to take a rate of */
        REQUIRE(su_insert(c->signals, &w->l, N, 50, N / 4, 500) == N);
        size_t missing = sc_read(c, &w->r, &w->l, N, 150, 500);
        REQUIRE(missing == 0);
        double t1 = par_clock_wall_ms() / 1e3;
        par_clock_sleep_ms(
            3000); /* the final figures scraped and rules evaluated */
        double at = par_clock_wall_ms() / 1e3;

        /* the ledger: done per priority, waits, finish times */
        int done[5] = {0};
        static int64_t waits[5][N];
        size_t nw[5] = {0};
        for (size_t i = 0; i < N; i++) {
                int pr = w->l.e[i].priority;
                sc_rec_t *x = &w->r.recs[i];
                for (int k = 0; k < x->nres; k++) {
                        sc_result_t *y = &x->r[k];
                        if (strcmp(y->status, "done"))
                                continue;
                        done[pr]++;
                        if (y->started_at > y->queued_at)
                                waits[pr][nw[pr]++] =
                                    y->started_at - y->queued_at;
                }
        }

        /* 1. done spins per priority, cluster-wide */
        CHECK(prom_by(&w->prom,
                      "sum by (priority) "
                      "(parallel_spins_total{status=\"done\"})",
                      "priority", at, v) == 4);
        for (int p = 1; p <= 4; p++)
                CHECKF(v[p] == done[p], "p%d: prometheus %g done, ledger %d", p,
                       v[p], done[p]);

        /* 2. spins/s per priority over the run */
        int win = (int)ceil(at - t0) + 2;
        char q[512];
        snprintf(q, sizeof(q),
                 "sum by (priority) (rate(parallel_spins_total{status="
                 "\"done\"}[%ds]))",
                 win);
        CHECK(prom_by(&w->prom, q, "priority", at, v) == 4);
        for (int p = 1; p <= 4; p++) {
                double want = done[p] / (double)win;
                fprintf(stderr,
                        "   p%d: %.2f spins/s (prometheus), %.2f (ledger over "
                        "%d s); run %.1f s\n",
                        p, v[p], want, win, t1 - t0);
                CHECKF(fabs(v[p] - want) <= 0.25 * want + 0.05,
                       "p%d spins/s %g vs ledger %g", p, v[p], want);
        }

        /* 3. p99 wait per priority over both nodes */
        CHECK(prom_by(&w->prom,
                      "sum by (priority) (parallel_wait_seconds_count)",
                      "priority", at, v) == 4);
        for (int p = 1; p <= 4; p++)
                CHECKF(v[p] == nw[p], "p%d: %g waits counted, ledger %zu", p,
                       v[p], nw[p]);
        CHECK(prom_by(&w->prom,
                      "histogram_quantile(0.99, sum by (le, priority) "
                      "(parallel_wait_seconds_bucket))",
                      "priority", at, v) == 4);
        for (int p = 1; p <= 4; p++) {
                if (!nw[p])
                        continue;
                qsort(waits[p], nw[p], sizeof(int64_t), cmp_i64);
                size_t rank = (size_t)ceil(0.99 * nw[p]);
                double exact = waits[p][rank ? rank - 1 : 0] / 1e3, lo;
                double hi = bucket_of(exact, &lo);
                fprintf(stderr,
                        "   p%d: p99 wait %.3f s (prometheus), ledger %.3f s, "
                        "bucket (%g, %g]\n",
                        p, v[p], exact, lo, hi);
                CHECKF(v[p] >= lo && v[p] <= hi,
                       "p%d p99 wait %g outside the ledger's bucket (%g, %g]",
                       p, v[p], lo, hi);
        }

        /* 4. the producer's side */
        CHECK(prom_by(&w->prom,
                      "sum by (priority) (parallel_producer_published_total)",
                      "priority", at, v) == 4);
        for (int p = 1; p <= 4; p++)
                CHECKF(v[p] >= N / 4, "p%d: %g published (at least %d)", p,
                       v[p], N / 4);

        /* 5. the rules loaded and evaluate */
        d = prom_api(&w->prom, "rules", NULL, 0);
        size_t gi, ri, rules = 0, healthy = 0;
        json_t *g, *r;
        json_array_foreach(json_object_get(d, "groups"), gi, g)
        {
                json_array_foreach(json_object_get(g, "rules"), ri, r)
                {
                        rules++;
                        healthy += !strcmp(
                            json_string_value(json_object_get(r, "health"))
                                ?: "",
                            "ok");
                }
        }
        json_decref(d);
        CHECKF(rules == 9 && healthy == rules, "%zu rules, %zu healthy", rules,
               healthy);
        d = prom_api(&w->prom, "query",
                     "ALERTS{alertname=\"ParallelNoActiveProducer\"}", at);
        CHECK(d && json_array_size(json_object_get(d, "result")) == 0);
        json_decref(d);

        /* 6. every dashboard panel */
        check_dashboard(w, at);

        /* 7. parallel-ctl decode filters, parallel-ctl status */
        for (int p = 1; p <= 4; p += 3) {
                char args[200];
                snprintf(args, sizeof(args),
                         "--topic results --from-beginning --status done "
                         "--priority %d --timeout-ms 3000",
                         p);
                char *out = run_ctl_cmd(c, "decode", args);
                int lines = 0;
                for (char *s = out; s && (s = strchr(s, '\n')); s++)
                        lines++;
                CHECKF(lines == done[p],
                       "decode --status done --priority %d: "
                       "%d lines, ledger %d",
                       p, lines, done[p]);
                free(out);
        }
        check_status(w, done);
        check_page(w);
}

static void test_prometheus(void)
{
        static world_t w;
        run(&w);
        prom_stop(&w.prom);
        for (int i = 0; i < 2; i++)
                if (w.nodes[i].pid > 0)
                        su_producer_stop(&w.nodes[i], SIGTERM, 30);
        if (w.prod.pid > 0)
                su_producer_stop(&w.prod, SIGTERM, 30);
        if (w.reader_up)
                sc_reader_destroy(&w.r);
        if (w.ledger_up)
                su_ledger_free(&w.l);
        sc_cleanup(&w.c);
}

static int setup(void)
{
        if (system("command -v prometheus >/dev/null 2>&1") != 0) {
                fprintf(stderr, "prometheus not installed (Debian package "
                                "prometheus; deploy/dev/stack install)\n");
                return 1;
        }
        return 0;
}

TEST_MAIN_WITH(setup, NULL, test_prometheus)
