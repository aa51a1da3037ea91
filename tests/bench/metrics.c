/*
 * bench-metrics — what observability costs a node: histogram/counter
 * recording (1 and N threads on one handle), percentile and render cost,
 * and /metrics scrapes per second over one keep-alive HTTP connection.
 * Prints numbers; asserts nothing.
 *
 *   bench-metrics [threads]      (default 2)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "net/httpc.h"
#include "obs/http.h"
#include "obs/metrics.h"

#define OPS 5000000

static par_hist_t *hist;
static par_counter_t *counter;

static void *rec_hist(void *arg)
{
        uint64_t x = (uintptr_t)arg * 7919 + 1;
        for (int i = 0; i < OPS; i++) {
                x = x * 6364136223846793005ULL + 1442695040888963407ULL;
                par_hist_record(hist, (x >> 40) & 0xfffff);
        }
        return NULL;
}

static void *rec_counter(void *arg)
{
        for (int i = 0; i < OPS; i++)
                par_counter_inc(counter);
        return NULL;
}

static double run(void *(*fn)(void *), int threads)
{
        pthread_t t[64];
        double t0 = par_clock_mono_s();

        for (int i = 0; i < threads; i++)
                pthread_create(&t[i], NULL, fn, (void *)(uintptr_t)i);
        for (int i = 0; i < threads; i++)
                pthread_join(t[i], NULL);
        return (par_clock_mono_s() - t0) * 1e9 / ((double)OPS * threads);
}

/* Scrapes path `n` times over one keep-alive connection; returns req/s. */
static double scrape(int port, const char *path, int n, size_t *bytes)
{
        char endpoint[32];
        par_httpc_t *c = NULL;
        par_error_t err;
        double t0;

        snprintf(endpoint, sizeof(endpoint), "127.0.0.1:%d", port);
        if (par_httpc_open(&c, endpoint, 5000, &err))
                return 0;
        t0 = par_clock_mono_s();
        for (int i = 0; i < n; i++) {
                par_httpc_reply_t r;
                if (par_httpc_request(c, "GET", path, 0, 5000, &r, &err)) {
                        fprintf(stderr, "%s\n", err.msg);
                        par_httpc_close(c);
                        return 0;
                }
                *bytes = r.body_len;
                par_httpc_reply_free(&r);
        }
        par_httpc_close(c);
        return n / (par_clock_mono_s() - t0);
}

int main(int argc, char **argv)
{
        int threads = argc > 1 ? atoi(argv[1]) : 2;
        par_metrics_t *m = NULL;
        par_http_t *h = NULL;
        par_error_t err;
        char *text;
        size_t len, bytes = 0;
        double t0, rate;

        if (threads < 1 || threads > 64)
                threads = 2;
        par_metrics_new(&m, &err);
        hist =
            par_metrics_hist(m, "bench_latency_seconds", "p=\"1\"", "B.", 1e-6);
        counter = par_metrics_counter(m, "bench_events", NULL, "B.");
        printf("par_hist_record     1 thread : %6.1f ns/op\n",
               run(rec_hist, 1));
        printf("par_hist_record   %2d threads: %6.1f ns/op (per thread, one "
               "shared histogram)\n",
               threads, run(rec_hist, threads));
        printf("par_counter_inc     1 thread : %6.1f ns/op\n",
               run(rec_counter, 1));
        printf("par_counter_inc   %2d threads: %6.1f ns/op (per thread, one "
               "shared counter)\n",
               threads, run(rec_counter, threads));

        t0 = par_clock_mono_s();
        for (int i = 0; i < 1000; i++)
                (void)par_hist_percentile(hist, 0.99);
        printf("par_hist_percentile          : %6.1f µs (2752 buckets)\n",
               (par_clock_mono_s() - t0) * 1e6 / 1000);

        /* a node-sized registry: 4 priorities × (5 counters + 3 summaries)
         * + 10 gauges */
        for (int p = 1; p <= 4; p++) {
                char l[32];
                snprintf(l, sizeof(l), "priority=\"%d\"", p);
                static const char *cn[] = {"c_done", "c_failed", "c_dead",
                                           "c_expired", "c_retry"};
                static const char *hn[] = {"h_wait_seconds", "h_spin_seconds",
                                           "h_e2e_seconds"};
                for (int i = 0; i < 5; i++)
                        par_counter_add(par_metrics_counter(m, cn[i], l, "C."),
                                        (uint64_t)p * 100);
                for (int i = 0; i < 3; i++) {
                        par_hist_t *x =
                            par_metrics_hist(m, hn[i], l, "H.", 1e-6);
                        for (int k = 0; k < 10000; k++)
                                par_hist_record(x, (uint64_t)k * 37 % 500000);
                }
        }
        for (int i = 0; i < 10; i++) {
                char n[32];
                snprintf(n, sizeof(n), "g_%d", i);
                par_gauge_set(par_metrics_gauge(m, n, NULL, "G."), i);
        }
        t0 = par_clock_mono_s();
        for (int i = 0; i < 200; i++) {
                par_metrics_render(m, &text, &len, &err);
                free(text);
        }
        printf("par_metrics_render (%zu bytes): %6.1f µs\n", len,
               (par_clock_mono_s() - t0) * 1e6 / 200);

        par_http_new(&h, "127.0.0.1:0", &err);
        par_http_route(h, "/metrics", par_http_metrics_handler, m, &err);
        if (par_http_start(h, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
        }
        rate = scrape(par_http_port(h), "/metrics", 2000, &bytes);
        printf("GET /metrics keep-alive      : %6.0f req/s (%zu bytes)\n", rate,
               bytes);
        par_http_destroy(h);
        par_metrics_destroy(m);
        return 0;
}
