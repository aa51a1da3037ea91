/*
 * cdp_roundtrip.c — latency of one sequential CDP round trip.
 *
 *   bench-cdp_roundtrip [-n N] [-e http://127.0.0.1:PORT]
 *
 * Sends N sequential Runtime.evaluate {"expression": "1+1"} on one tab's
 * flattened session and prints the median, p99, mean and max latency in
 * microseconds. With -e it connects to a running browser (so
 * tests/bench/cdp_roundtrip.sh can measure puppeteer against the same
 * Chromium); without it, it launches its own. A benchmark prints numbers;
 * it asserts nothing beyond the replies being right.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "browser/chrome.h"

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
        par_chrome_opts_t o;
        par_chrome_t *c = NULL;
        par_tab_t *t = NULL;
        par_error_t err = {0};
        json_t *params;
        double *lat, sum = 0;
        int n = 10000, opt, bad = 0, rc = 1;

        par_chrome_opts_default(&o);
        while ((opt = getopt(argc, argv, "n:e:")) != -1) {
                if (opt == 'n')
                        n = atoi(optarg);
                else if (opt == 'e') {
                        o.mode = PAR_CHROME_CONNECT;
                        snprintf(o.endpoints, sizeof(o.endpoints), "%s",
                                 optarg);
                } else {
                        fprintf(stderr, "usage: %s [-n N] [-e http://h:p]\n",
                                argv[0]);
                        return 2;
                }
        }
        if (n < 1 || !(lat = calloc((size_t)n, sizeof(*lat))))
                return 2;
        o.recycle_after = 0;
        if (par_chrome_new(&c, &o, 1, &err) ||
            par_chrome_tab_acquire(c, 0, &t, &err)) {
                fprintf(stderr, "cdp_roundtrip: %s\n", err.msg);
                goto out;
        }
        params = json_pack("{s:s}", "expression", "1+1");
        for (int i = 0; i < 200; i++) /* warm up */
                par_tab_call(t, "Runtime.evaluate", params, 5000, NULL, &err);
        for (int i = 0; i < n; i++) {
                json_t *r = NULL;
                double t0 = par_clock_mono_s();
                if (par_tab_call(t, "Runtime.evaluate", params, 5000, &r,
                                 &err) ||
                    json_integer_value(json_object_get(
                        json_object_get(r, "result"), "value")) != 2)
                        bad++;
                lat[i] = (par_clock_mono_s() - t0) * 1e6;
                sum += lat[i];
                json_decref(r);
        }
        json_decref(params);
        qsort(lat, (size_t)n, sizeof(*lat), cmp_double);
        printf("impl=parallel-c op=Runtime.evaluate n=%d median_us=%.1f "
               "p99_us=%.1f mean_us=%.1f max_us=%.1f errors=%d\n",
               n, lat[n / 2], lat[(size_t)(n * 0.99)], sum / n, lat[n - 1],
               bad);
        rc = bad ? 1 : 0;
out:
        par_chrome_tab_release(c, t, false);
        par_chrome_destroy(c);
        free(lat);
        return rc;
}
