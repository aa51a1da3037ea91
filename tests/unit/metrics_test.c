/*
 * metrics_test.c — histogram accuracy against exact percentiles of random
 * data, concurrent recording, interval takes, registry rules, and the
 * Prometheus rendering (checked by `promtool check metrics` when present).
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "obs/metrics.h"
#include "testutil.h"

/* xorshift64*: deterministic data so a failure can be reproduced. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 0x2545f4914f6cdd1dULL;
}

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

/* Nearest rank: the ceil(q*n)-th smallest (1-based), q=0 → the minimum. */
static uint64_t exact_pct(const uint64_t *sorted, size_t n, double q)
{
        size_t rank = (size_t)ceil(q * (double)n);
        if (rank < 1)
                rank = 1;
        return sorted[rank - 1];
}

typedef uint64_t (*gen_fn)(void);
static uint64_t gen_uniform(void)
{
        return rnd() % 1000000;
}
static uint64_t gen_small(void)
{
        return rnd() % 300;
}
/* log-uniform over 1 .. 2^40: every bucket octave gets used */
static uint64_t gen_logu(void)
{
        double e = (double)(rnd() % 1000000) / 1000000.0 * 40.0;
        return (uint64_t)pow(2.0, e);
}
/* latency-like: mostly ~2 ms with a long tail */
static uint64_t gen_latency(void)
{
        uint64_t v = 1500 + rnd() % 1000;
        if (rnd() % 100 == 0)
                v *= 50 + rnd() % 100;
        return v;
}

static void check_distribution(const char *what, gen_fn gen, size_t n)
{
        static const double qs[] = {0,    0.001, 0.01, 0.1,   0.25,   0.5,
                                    0.75, 0.9,   0.99, 0.999, 0.9999, 1};
        uint64_t *v = malloc(n * sizeof(*v)), sum = 0;
        par_hist_t *h = NULL;
        par_error_t err;
        double worst = 0;

        REQUIRE(v);
        REQUIRE(par_hist_new(&h, &err) == PAR_OK);
        for (size_t i = 0; i < n; i++) {
                v[i] = gen();
                sum += v[i];
                par_hist_record(h, v[i]);
        }
        qsort(v, n, sizeof(*v), cmp_u64);
        CHECK(par_hist_count(h) == n);
        CHECK(par_hist_sum(h) == sum);
        CHECK(par_hist_min(h) == v[0]);
        CHECK(par_hist_max(h) == v[n - 1]);
        for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
                uint64_t want = exact_pct(v, n, qs[i]);
                uint64_t got = par_hist_percentile(h, qs[i]);
                double diff = fabs((double)got - (double)want);
                double rel = want ? diff / (double)want : diff;
                if (rel > worst)
                        worst = rel;
                CHECKF(diff <= (double)want * PAR_HIST_REL_ERROR,
                       "%s q=%g: got %llu want %llu (rel %.5f)", what, qs[i],
                       (unsigned long long)got, (unsigned long long)want, rel);
        }
        fprintf(stderr, "   %s: n=%zu worst relative error %.5f (bound %.5f)\n",
                what, n, worst, PAR_HIST_REL_ERROR);
        par_hist_destroy(h);
        free(v);
}

static void test_percentiles(void)
{
        check_distribution("uniform", gen_uniform, 200000);
        check_distribution("small-exact", gen_small, 50000);
        check_distribution("log-uniform", gen_logu, 200000);
        check_distribution("latency", gen_latency, 200000);
}

static void test_edges(void)
{
        par_hist_t *h = NULL;
        par_error_t err;

        REQUIRE(par_hist_new(&h, &err) == PAR_OK);
        CHECK(par_hist_percentile(h, 0.5) == 0);
        CHECK(par_hist_count(h) == 0 && par_hist_min(h) == 0);
        CHECK(par_hist_mean(h) == 0);
        par_hist_record(h, 42);
        CHECK(par_hist_percentile(h, 0) == 42);
        CHECK(par_hist_percentile(h, 0.99) == 42);
        CHECK(par_hist_percentile(h, 1) == 42);
        /* a single big value comes back exactly thanks to min/max clamp */
        par_hist_reset(h);
        par_hist_record(h, 123456789);
        CHECK(par_hist_percentile(h, 0.5) == 123456789);
        /* clamping to PAR_HIST_MAX */
        par_hist_record(h, UINT64_MAX);
        CHECK(par_hist_max(h) == PAR_HIST_MAX);
        CHECK(par_hist_percentile(h, 1) == PAR_HIST_MAX);
        /* record_n is the same as n records */
        par_hist_reset(h);
        par_hist_record_n(h, 1000, 99);
        par_hist_record(h, 5000);
        CHECK(par_hist_count(h) == 100);
        CHECK(par_hist_percentile(h, 0.99) == 1000 ||
              llabs((long long)par_hist_percentile(h, 0.99) - 1000) <= 8);
        CHECK(par_hist_percentile(h, 1) == 5000);
        CHECK(fabs(par_hist_mean(h) - (99000.0 + 5000) / 100) < 1e-9);
        /* NULL handles are no-ops */
        par_hist_record(NULL, 1);
        CHECK(par_hist_percentile(NULL, 0.5) == 0);
        par_hist_destroy(h);
        par_hist_destroy(NULL);
}

#define THREADS    4
#define PER_THREAD 250000

static void *recorder(void *arg)
{
        par_hist_t *h = arg;
        for (uint64_t i = 1; i <= PER_THREAD; i++)
                par_hist_record(h, i);
        return NULL;
}

static void *counter_bumper(void *arg)
{
        for (int i = 0; i < PER_THREAD; i++)
                par_counter_inc(arg);
        return NULL;
}

static void *taker(void *arg)
{
        par_hist_t **hs = arg; /* [0] = live, [1] = window */
        for (int i = 0; i < 200; i++) {
                par_hist_take(hs[1], hs[0]);
                usleep(100);
        }
        return NULL;
}

static void test_concurrency(void)
{
        par_hist_t *h = NULL, *win = NULL, *hs[2];
        par_metrics_t *m = NULL;
        par_counter_t *c;
        pthread_t t[THREADS + 1];
        par_error_t err;
        uint64_t want_sum =
            (uint64_t)THREADS * PER_THREAD * (PER_THREAD + 1) / 2;

        REQUIRE(par_hist_new(&h, &err) == PAR_OK);
        REQUIRE(par_hist_new(&win, &err) == PAR_OK);
        REQUIRE(par_metrics_new(&m, &err) == PAR_OK);
        c = par_metrics_counter(m, "test_events", NULL, "Events.");
        REQUIRE(c);
        /* recorders racing a taker: nothing may be lost or counted twice */
        hs[0] = h;
        hs[1] = win;
        for (int i = 0; i < THREADS; i++)
                pthread_create(&t[i], NULL, recorder, h);
        pthread_create(&t[THREADS], NULL, taker, hs);
        for (int i = 0; i <= THREADS; i++)
                pthread_join(t[i], NULL);
        par_hist_take(win, h);
        CHECK(par_hist_count(h) == 0);
        CHECKF(par_hist_count(win) == (uint64_t)THREADS * PER_THREAD,
               "count %llu", (unsigned long long)par_hist_count(win));
        CHECK(par_hist_sum(win) == want_sum);
        CHECK(par_hist_min(win) == 1);
        CHECK(par_hist_max(win) == PER_THREAD);
        CHECK(llabs((long long)par_hist_percentile(win, 0.5) -
                    PER_THREAD / 2) <= PER_THREAD / 2 / 128 + 1);

        for (int i = 0; i < THREADS; i++)
                pthread_create(&t[i], NULL, counter_bumper, c);
        for (int i = 0; i < THREADS; i++)
                pthread_join(t[i], NULL);
        CHECK(par_counter_get(c) == (uint64_t)THREADS * PER_THREAD);

        par_hist_destroy(h);
        par_hist_destroy(win);
        par_metrics_destroy(m);
}

static void test_take_merge(void)
{
        par_hist_t *a = NULL, *b = NULL;
        par_error_t err;

        REQUIRE(par_hist_new(&a, &err) == PAR_OK);
        REQUIRE(par_hist_new(&b, &err) == PAR_OK);
        for (int i = 1; i <= 100; i++)
                par_hist_record(a, (uint64_t)i * 1000);
        par_hist_merge(b, a);
        CHECK(par_hist_count(a) == 100 && par_hist_count(b) == 100);
        CHECK(par_hist_percentile(b, 0.5) == par_hist_percentile(a, 0.5));
        par_hist_reset(b);
        CHECK(par_hist_count(b) == 0 && par_hist_max(b) == 0);
        par_hist_take(b, a);
        CHECK(par_hist_count(a) == 0 && par_hist_percentile(a, 0.5) == 0);
        CHECK(par_hist_count(b) == 100);
        CHECK(par_hist_min(b) == 1000 && par_hist_max(b) == 100000);
        par_hist_destroy(a);
        par_hist_destroy(b);
}

static double depth_fn(void *opaque)
{
        return (double)*(int *)opaque;
}

static void test_registry(void)
{
        par_metrics_t *m = NULL;
        par_error_t err;
        static int depth = 7;

        REQUIRE(par_metrics_new(&m, &err) == PAR_OK);
        par_counter_t *a = par_metrics_counter(m, "x_spins", "p=\"1\"", "S.");
        par_counter_t *b = par_metrics_counter(m, "x_spins", "p=\"1\"", NULL);
        par_counter_t *c =
            par_metrics_counter(m, "x_spins_total", "p=\"2\"", NULL);
        CHECK(a && a == b);
        CHECK(c && c != a);
        /* bad names and labels */
        CHECK(!par_metrics_counter(m, "9lives", NULL, "x"));
        CHECK(!par_metrics_counter(m, "a-b", NULL, "x"));
        CHECK(!par_metrics_counter(m, "", NULL, "x"));
        CHECK(!par_metrics_gauge(m, "g", "p=1", "x"));
        CHECK(!par_metrics_gauge(m, "g", "p=\"1\",", "x"));
        CHECK(!par_metrics_gauge(m, "g", "p=\"1", "x"));
        CHECK(!par_metrics_gauge(m, "g", "__p=\"1\"", "x"));
        CHECK(!par_metrics_gauge(m, "g", "p=\"a\\q\"", "x"));
        CHECK(par_metrics_gauge(m, "g", "p=\"a\\\"b\",q=\"\"", "x"));
        CHECK(!par_metrics_hist(m, "h_seconds", "quantile=\"1\"", "x", 1e-6));
        CHECK(!par_metrics_hist(m, "h_seconds", NULL, "x", 0));
        /* one name, one type (and one scale) */
        CHECK(!par_metrics_gauge(m, "x_spins_total", NULL, "x"));
        CHECK(par_metrics_hist(m, "h_seconds", NULL, "x", 1e-6));
        CHECK(!par_metrics_hist(m, "h_seconds", "a=\"b\"", "x", 1e-3));
        /* computed gauges don't mix with set gauges */
        CHECK(par_metrics_gauge_fn(m, "depth", NULL, "D.", depth_fn, &depth,
                                   &err) == PAR_OK);
        CHECK(par_metrics_gauge_fn(m, "depth", NULL, "D.", depth_fn, &depth,
                                   &err) == PAR_ERR_INVALID);
        CHECK(!par_metrics_gauge(m, "depth", NULL, "D."));
        /* NULL handles are no-ops */
        par_counter_inc(NULL);
        par_gauge_set(NULL, 1);
        CHECK(par_counter_get(NULL) == 0 && par_gauge_get(NULL) == 0);
        par_gauge_t *g = par_metrics_gauge(m, "g2", NULL, "x");
        par_gauge_set(g, 2.5);
        par_gauge_add(g, -1);
        CHECK(par_gauge_get(g) == 1.5);
        par_metrics_destroy(m);
        par_metrics_destroy(NULL);
}

static int contains(const char *text, const char *line)
{
        int ok = strstr(text, line) != NULL;
        if (!ok)
                fprintf(stderr, "   missing line: %s\n", line);
        return ok;
}

static void test_render(void)
{
        par_metrics_t *m = NULL;
        par_error_t err;
        char *text = NULL, path[] = "/tmp/par-metrics-XXXXXX", cmd[512];
        size_t len = 0;
        static int depth = 3;
        int fd;

        REQUIRE(par_metrics_new(&m, &err) == PAR_OK);
        par_counter_add(par_metrics_counter(m, "parallel_spins",
                                            "priority=\"4\",outcome=\"ok\"",
                                            "Spins finished."),
                        12);
        par_counter_inc(par_metrics_counter(
            m, "parallel_spins", "priority=\"1\",outcome=\"failed\"", NULL));
        par_counter_add(par_metrics_counter(m, "parallel_bytes_total", NULL,
                                            "Bytes.\nSecond \\ line."),
                        5);
        par_gauge_set(par_metrics_gauge(m, "parallel_workers", "state=\"idle\"",
                                        "Workers by state."),
                      2);
        par_gauge_set(par_metrics_gauge(m, "parallel_load", NULL, "Load."),
                      0.1);
        CHECK(par_metrics_gauge_fn(m, "parallel_queue_depth", "priority=\"2\"",
                                   "Queued signals.", depth_fn, &depth,
                                   &err) == PAR_OK);
        par_hist_t *h = par_metrics_hist(m, "parallel_spin_duration_seconds",
                                         "priority=\"4\"", "Spin time.", 1e-6);
        REQUIRE(h);
        for (int i = 1; i <= 1000; i++)
                par_hist_record(h, (uint64_t)i * 1000); /* 1..1000 ms */
        /* an empty summary renders NaN quantiles */
        REQUIRE(par_metrics_hist(m, "parallel_wait_seconds", NULL,
                                 "Queue wait.", 1e-6));
        REQUIRE(par_metrics_render(m, &text, &len, &err) == PAR_OK);
        CHECK(len == strlen(text));
        fputs(text, stderr);

        CHECK(contains(text, "# HELP parallel_spins_total Spins finished.\n"
                             "# TYPE parallel_spins_total counter\n"
                             "parallel_spins_total{priority=\"4\","
                             "outcome=\"ok\"} 12\n"
                             "parallel_spins_total{priority=\"1\","
                             "outcome=\"failed\"} 1\n"));
        CHECK(contains(text, "# HELP parallel_bytes_total Bytes.\\nSecond "
                             "\\\\ line.\n"));
        CHECK(contains(text, "parallel_bytes_total 5\n"));
        CHECK(contains(text, "# TYPE parallel_workers gauge\n"
                             "parallel_workers{state=\"idle\"} 2\n"));
        CHECK(contains(text, "parallel_load 0.1\n"));
        CHECK(contains(text, "parallel_queue_depth{priority=\"2\"} 3\n"));
        CHECK(contains(text, "# TYPE parallel_spin_duration_seconds summary\n"
                             "parallel_spin_duration_seconds{priority=\"4\","
                             "quantile=\"0.5\"} 0.5"));
        CHECK(contains(text, "parallel_spin_duration_seconds_sum{priority="
                             "\"4\"} 500.5\n"));
        CHECK(contains(text, "parallel_spin_duration_seconds_count{priority="
                             "\"4\"} 1000\n"));
        CHECK(contains(text, "parallel_wait_seconds{quantile=\"0.99\"} NaN\n"));
        CHECK(contains(text, "parallel_wait_seconds_count 0\n"));

        /* _sum/_count survive a take (they are lifetime totals) */
        {
                par_hist_t *win = NULL;
                char *t2 = NULL;
                REQUIRE(par_hist_new(&win, &err) == PAR_OK);
                par_hist_take(win, h);
                CHECK(par_hist_count(win) == 1000);
                REQUIRE(par_metrics_render(m, &t2, NULL, &err) == PAR_OK);
                CHECK(contains(t2, "parallel_spin_duration_seconds_count{"
                                   "priority=\"4\"} 1000\n"));
                CHECK(contains(t2, "parallel_spin_duration_seconds{priority="
                                   "\"4\",quantile=\"0.5\"} NaN\n"));
                free(t2);
                par_hist_destroy(win);
        }

        /* promtool is the reference parser and linter */
        fd = mkstemp(path);
        REQUIRE(fd >= 0);
        CHECK(write(fd, text, len) == (ssize_t)len);
        close(fd);
        if (system("command -v promtool >/dev/null 2>&1") != 0) {
                fprintf(stderr, "   SKIP promtool check metrics: promtool "
                                "not installed (apt-get install "
                                "prometheus)\n");
        } else {
                snprintf(cmd, sizeof(cmd), "promtool check metrics < %s", path);
                int rc = system(cmd);
                CHECKF(rc == 0, "promtool check metrics failed (%d)", rc);
                /* and it must be able to fail: a counter without _total
                 * and a duplicate TYPE are rejected */
                FILE *f = fopen(path, "w");
                REQUIRE(f);
                fputs("# HELP bad Bad.\n# TYPE bad counter\nbad 1\n"
                      "# TYPE bad counter\n",
                      f);
                fclose(f);
                CHECK(system(cmd) != 0);
        }
        unlink(path);
        free(text);
        par_metrics_destroy(m);
}

/* Prometheus histograms: cumulative buckets, a bound is inclusive, +Inf
 * equals _count, bad bounds and a second set of bounds are refused, and
 * promtool accepts the rendering. */
static void test_buckets(void)
{
        par_metrics_t *m = NULL;
        par_error_t err;
        char *text = NULL, path[] = "/tmp/par-buckets-XXXXXX", cmd[512];
        size_t len = 0;
        static const double bv[] = {0.01, 0.1, 1};
        par_bucket_bounds_t b = {bv, 3}, other = {bv, 2};

        REQUIRE(par_metrics_new(&m, &err) == PAR_OK);
        par_buckets_t *p4 = par_metrics_histogram(
            m, "parallel_wait_seconds", "priority=\"4\"", "Wait.", &b);
        par_buckets_t *p1 = par_metrics_histogram(m, "parallel_wait_seconds",
                                                  "priority=\"1\"", NULL, &b);
        REQUIRE(p4 && p1);
        CHECK(par_metrics_histogram(m, "parallel_wait_seconds",
                                    "priority=\"4\"", NULL, &b) == p4);
        CHECK(!par_metrics_histogram(m, "parallel_wait_seconds",
                                     "priority=\"3\"", NULL, &other));
        CHECK(!par_metrics_histogram(m, "parallel_x_seconds", "le=\"1\"", NULL,
                                     &b));
        double desc[] = {1, 0.5};
        par_bucket_bounds_t bad = {desc, 2};
        CHECK(
            !par_metrics_histogram(m, "parallel_y_seconds", NULL, NULL, &bad));
        /* the summary kind keeps its name to itself */
        CHECK(!par_metrics_hist(m, "parallel_wait_seconds", NULL, NULL, 1e-6));
        par_buckets_observe(p4, 0.005);
        par_buckets_observe(p4, 0.01); /* on the bound: counted in le=0.01 */
        par_buckets_observe(p4, 0.5);
        par_buckets_observe(p4, 7);
        par_buckets_observe(p4, NAN);
        CHECK(par_buckets_count(p4) == 4);
        CHECK(fabs(par_buckets_sum(p4) - 7.515) < 1e-9);
        REQUIRE(par_metrics_render(m, &text, &len, &err) == PAR_OK);
        CHECK(contains(text, "# TYPE parallel_wait_seconds histogram\n"
                             "parallel_wait_seconds_bucket{priority=\"4\","
                             "le=\"0.01\"} 2\n"
                             "parallel_wait_seconds_bucket{priority=\"4\","
                             "le=\"0.1\"} 2\n"
                             "parallel_wait_seconds_bucket{priority=\"4\","
                             "le=\"1\"} 3\n"
                             "parallel_wait_seconds_bucket{priority=\"4\","
                             "le=\"+Inf\"} 4\n"
                             "parallel_wait_seconds_sum{priority=\"4\"} "
                             "7.515\n"
                             "parallel_wait_seconds_count{priority=\"4\"} 4\n"
                             "parallel_wait_seconds_bucket{priority=\"1\","
                             "le=\"0.01\"} 0\n"));
        CHECK(
            contains(text, "parallel_wait_seconds_count{priority=\"1\"} 0\n"));
        /* the shipped bounds are valid */
        CHECK(
            par_metrics_histogram(m, "a_seconds", NULL, "", &par_buckets_long));
        CHECK(
            par_metrics_histogram(m, "b_seconds", NULL, "", &par_buckets_spin));
        CHECK(par_metrics_histogram(m, "c_seconds", NULL, "",
                                    &par_buckets_short));
        int fd = mkstemp(path);
        REQUIRE(fd >= 0);
        CHECK(write(fd, text, len) == (ssize_t)len);
        close(fd);
        if (system("command -v promtool >/dev/null 2>&1") == 0) {
                snprintf(cmd, sizeof(cmd), "promtool check metrics < %s", path);
                CHECK(system(cmd) == 0);
        }
        unlink(path);
        free(text);
        par_metrics_destroy(m);
}

TEST_MAIN(test_percentiles, test_edges, test_take_merge, test_concurrency,
          test_registry, test_render, test_buckets)
