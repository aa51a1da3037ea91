/*
 * spin.c — `parallel-ctl spin`: run a recipe locally, without Kafka or
 * MongoDB, to test a recipe or measure spins.
 *
 *   parallel-ctl spin --recipe FILE|NAME [--param k=v]... [--repeat N]
 *                     [--concurrency C] [--resource KEY] [--gap MS]
 *
 * C worker threads share one par_chrome_t (chrome.* config applies, so
 * isolation, recycling and connect mode behave as in a consumer); each
 * worker takes the next spin number, acquires its tab, runs the recipe,
 * releases the tab (as broken when the spin says so) and prints the result
 * as one JSON line on stdout. A summary line goes to stderr. The latency
 * figures are per spin, end to end in the worker: tab acquire + recipe +
 * release; the summary also gives the acquire's part (acquire_p50_ms,
 * acquire_p99_ms: waiting for or making a context) and how many acquires
 * the stock of prepared contexts served (ready; waited: of those, the ones
 * that found it empty and waited for the context being prepared) or not
 * (missed: made their own). Before the clock starts every worker opens its
 * tab once (launching the browser) and the browsers' stock of prepared
 * contexts is filled (up to 10 s), so start-up is not counted: the figures
 * are a warm node's. --gap MS makes each worker idle MS between its spins
 * (not counted in the latency): back to back, spins measure a node at full
 * load, where preparing the next contexts shares the CPU with the spins;
 * with a gap, a node whose stager keeps up.
 *
 * State scope: the recipe's "stateScope", else chrome.state_scope. In
 * resource scope every spin uses resource KEY ("{worker}" in it is replaced
 * by the worker's index, e.g. --resource 'acct-{worker}' gives each worker
 * its own); without --resource the spins run in spin scope. Sessions stay
 * in memory here: `spin` neither reads nor writes the session store.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "browser/chrome.h"
#include "base/text.h"
#include "ctl.h"
#include "browser/recipe.h"
#include "browser/spin.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
        (void)sig;
        stop_requested = 1;
}

typedef struct run {
        const par_recipe_t *recipe;
        json_t *params;
        par_spin_opts_t opts;
        par_chrome_t *chrome; /* NULL for recipes without a browser */
        int repeat;
        int gap_ms; /* idle between a worker's spins */
        par_state_scope_t scope;
        const char *resource; /* NULL: none */
        atomic_int next;
        atomic_int ok, transient, permanent;
        atomic_int warmed; /* workers whose first tab is ready */
        atomic_int go;     /* set once every worker is warmed up */
        double *lat_ms;    /* per spin, indexed by spin number */
        double *acq_ms;    /* of which the tab acquire */
        pthread_mutex_t out_lock;
} run_t;

typedef struct worker {
        run_t *run;
        int index;
        pthread_t thread;
} worker_t;

/* The resource key of worker w: "{worker}" replaced by its index. */
static void resource_of(const run_t *run, int w, char *buf, size_t n)
{
        const char *p = run->resource, *at;
        size_t len = 0;

        buf[0] = 0;
        if (!p)
                return;
        while ((at = strstr(p, "{worker}")) && len < n) {
                len += (size_t)snprintf(buf + len, n - len, "%.*s%d",
                                        (int)(at - p), p, w);
                p = at + 8;
        }
        if (len < n)
                snprintf(buf + len, n - len, "%s", p);
}

static void *worker_main(void *arg)
{
        worker_t *w = arg;
        run_t *run = w->run;
        char resource[256];
        int i;

        resource_of(run, w->index, resource, sizeof(resource));

        /* Warm-up, outside the clock: launch the browser and open this
         * worker's tab, so the figures are about spins, not start-up. */
        if (run->chrome) {
                par_error_t err = {0};
                par_tab_t *tab = NULL;

                if (!par_chrome_tab_acquire_scoped(run->chrome, w->index,
                                                   run->scope, resource, &tab,
                                                   &err))
                        par_chrome_tab_release(run->chrome, tab, false);
        }
        atomic_fetch_add(&run->warmed, 1);
        while (!atomic_load(&run->go) && !stop_requested)
                par_clock_sleep_ms(1);

        while (!stop_requested &&
               (i = atomic_fetch_add(&run->next, 1)) < run->repeat) {
                par_spin_result_t res = {0};
                par_error_t err = {0};
                par_tab_t *tab = NULL;
                double t0 = par_clock_mono_s();
                json_t *line;
                char *text;
                par_err_t rc = PAR_OK;

                if (run->chrome)
                        rc = par_chrome_tab_acquire_scoped(
                            run->chrome, w->index, run->scope, resource, &tab,
                            &err);
                run->acq_ms[i] = (par_clock_mono_s() - t0) * 1000;
                if (rc) {
                        /* No tab: a transient failure before any step. */
                        memset(&res, 0, sizeof(res));
                        res.status = PAR_SPIN_FAILED;
                        res.err_class = PAR_SPIN_TRANSIENT;
                        res.err_step = -1;
                        res.err_code = rc;
                        snprintf(res.err_msg, sizeof(res.err_msg),
                                 "no tab: %.240s", err.msg);
                } else {
                        par_spin_run(tab, run->recipe, run->params, &run->opts,
                                     &res, &err);
                        par_chrome_tab_release(run->chrome, tab,
                                               res.tab_broken);
                }
                run->lat_ms[i] = (par_clock_mono_s() - t0) * 1000;
                if (res.status == PAR_SPIN_DONE)
                        atomic_fetch_add(&run->ok, 1);
                else if (res.err_class == PAR_SPIN_TRANSIENT)
                        atomic_fetch_add(&run->transient, 1);
                else
                        atomic_fetch_add(&run->permanent, 1);
                line = par_spin_result_json(&res, run->recipe);
                if (line) {
                        json_object_set_new(line, "spin", json_integer(i));
                        json_object_set_new(line, "worker",
                                            json_integer(w->index));
                        json_object_set_new(line, "ms",
                                            json_real(run->lat_ms[i]));
                        json_object_set_new(line, "acquire_ms",
                                            json_real(run->acq_ms[i]));
                        text = json_dumps(line, JSON_COMPACT);
                        pthread_mutex_lock(&run->out_lock);
                        if (text)
                                printf("%s\n", text);
                        fflush(stdout);
                        pthread_mutex_unlock(&run->out_lock);
                        free(text);
                        json_decref(line);
                }
                par_spin_result_clear(&res);
                if (run->gap_ms > 0 && !stop_requested)
                        par_clock_sleep_ms(run->gap_ms);
        }
        return NULL;
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return x < y ? -1 : x > y;
}

static double percentile(const double *sorted, int n, double p)
{
        int k;

        if (n <= 0)
                return 0;
        k = (int)(p / 100.0 * n + 0.999999) - 1; /* nearest rank */
        if (k < 0)
                k = 0;
        if (k >= n)
                k = n - 1;
        return sorted[k];
}

static void usage(FILE *out)
{
        fputs("usage: parallel-ctl spin --recipe FILE|NAME [--param k=v]... "
              "[--repeat N] [--concurrency C]\n"
              "                    [--resource KEY] [--gap MS]\n\n"
              "Runs a recipe locally in Chromium (no Kafka, no MongoDB) and "
              "prints each\nresult as a JSON line; a summary goes to stderr. "
              "FILE is a recipe file;\nNAME a recipe in recipes.dir (or "
              "the built-in noop). chrome.*, recipes.*\nand spin.* keys "
              "apply (-X key=value). Exit status 0 if every spin "
              "succeeded.\n\nState scope: the recipe's \"stateScope\", "
              "else chrome.state_scope (spin:\na clean browser context per "
              "spin). In resource scope the spins share the\ncontext of "
              "resource KEY; \"{worker}\" in KEY becomes the worker's "
              "index.\n--gap MS: each worker idles MS between its spins "
              "(not in the latency).\n",
              out);
}

static par_err_t load_recipe(par_config_t *cfg, const char *arg,
                             par_recipe_t **owned, par_recipe_set_t **set,
                             const par_recipe_t **out, par_error_t *err)
{
        int step_to = (int)par_config_int(cfg, "recipes.step_timeout");
        size_t l = strlen(arg);
        par_err_t rc;

        if (strchr(arg, '/') || (l > 5 && !strcmp(arg + l - 5, ".json"))) {
                rc = par_recipe_load_file(owned, arg, step_to, err);
                *out = *owned;
                return rc;
        }
        if (!strcmp(arg, "noop")) {
                *out = par_recipe_noop();
                return PAR_OK;
        }
        rc = par_recipe_load_dir(set, par_config_str(cfg, "recipes.dir"),
                                 step_to, err);
        if (rc)
                return rc;
        *out = par_recipe_set_get(*set, arg);
        if (!*out)
                return par_error_set(err, PAR_ERR_NOTFOUND,
                                     "no recipe named '%s' in %s", arg,
                                     par_config_str(cfg, "recipes.dir"));
        return PAR_OK;
}

int par_ctl_spin(par_config_t *cfg, int argc, char **argv)
{
        const char *recipe_arg = NULL;
        int repeat = 1, conc = 1, i, exit_code = 2, nw = 0;
        par_recipe_t *owned = NULL;
        par_recipe_set_t *set = NULL;
        par_chrome_opts_t copts;
        par_error_t err = {0};
        worker_t *workers = NULL;
        struct sigaction sa;
        run_t run;
        par_chrome_stats_t st0 = {0}, st1 = {0};
        double t0, elapsed;
        int done;

        memset(&run, 0, sizeof(run));
        pthread_mutex_init(&run.out_lock, NULL);
        run.params = json_object();
        for (i = 1; i < argc; i++) {
                const char *a = argv[i];
                const char *v = i + 1 < argc ? argv[i + 1] : NULL;

                if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
                        usage(stdout);
                        exit_code = 0;
                        goto out;
                } else if (!strcmp(a, "--recipe") && v) {
                        recipe_arg = v;
                        i++;
                } else if (!strcmp(a, "--param") && v) {
                        const char *eq = strchr(v, '=');

                        if (!eq || eq == v) {
                                fprintf(stderr,
                                        "parallel-ctl spin: --param %s: "
                                        "expected key=value\n",
                                        v);
                                goto out;
                        }
                        /* jansson refuses a non-UTF-8 string (NULL), which
                         * used to drop the param without a word. */
                        json_t *pv = json_string(eq + 1);
                        if (!pv || !par_utf8_valid(v, (size_t)(eq - v)) ||
                            json_object_setn_new(run.params, v,
                                                 (size_t)(eq - v), pv)) {
                                fprintf(stderr,
                                        "parallel-ctl spin: --param: key and "
                                        "value must be UTF-8 text\n");
                                goto out;
                        }
                        i++;
                } else if (!strcmp(a, "--repeat") && v) {
                        repeat = atoi(v);
                        i++;
                } else if (!strcmp(a, "--resource") && v) {
                        run.resource = v;
                        i++;
                } else if (!strcmp(a, "--gap") && v) {
                        run.gap_ms = atoi(v);
                        i++;
                } else if (!strcmp(a, "--concurrency") && v) {
                        conc = atoi(v);
                        i++;
                } else {
                        fprintf(stderr,
                                "parallel-ctl spin: unexpected argument "
                                "'%s' (try --help)\n",
                                a);
                        goto out;
                }
        }
        if (!recipe_arg || repeat < 1 || conc < 1 || conc > 256 ||
            run.gap_ms < 0 || run.gap_ms > 600000) {
                fprintf(stderr, "parallel-ctl spin: need --recipe, "
                                "--repeat >= 1, 1 <= --concurrency <= "
                                "256 and 0 <= --gap <= 600000 (try "
                                "--help)\n");
                goto out;
        }
        if (conc > repeat)
                conc = repeat;
        if (load_recipe(cfg, recipe_arg, &owned, &set, &run.recipe, &err)) {
                /* A bad or missing recipe is a bad argument (2), like
                 * every other input the command refuses before running. */
                fprintf(stderr, "parallel-ctl spin: %s\n", err.msg);
                exit_code = err.code == PAR_ERR_NOMEM ? 1 : 2;
                goto out;
        }
        exit_code = 1;
        par_spin_opts_from_config(&run.opts, cfg);
        run.repeat = repeat;
        run.lat_ms = calloc((size_t)repeat, sizeof(double));
        run.acq_ms = calloc((size_t)repeat, sizeof(double));
        workers = calloc((size_t)conc, sizeof(*workers));
        if (!run.lat_ms || !run.acq_ms || !workers) {
                fprintf(stderr, "parallel-ctl spin: out of memory\n");
                goto out;
        }
        switch (run.recipe->state_scope) {
        case PAR_RECIPE_SCOPE_SPIN:
                run.scope = PAR_STATE_SPIN;
                break;
        case PAR_RECIPE_SCOPE_RESOURCE:
                run.scope = PAR_STATE_RESOURCE;
                break;
        default:
                run.scope = PAR_STATE_DEFAULT;
        }
        if (run.recipe->uses_browser) {
                if (par_chrome_opts_from_config(&copts, cfg, &err) ||
                    par_chrome_new(&run.chrome, &copts, conc, &err)) {
                        fprintf(stderr, "parallel-ctl spin: %s\n", err.msg);
                        goto out;
                }
        }
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);

        for (nw = 0; nw < conc; nw++) {
                workers[nw].run = &run;
                workers[nw].index = nw;
                if (pthread_create(&workers[nw].thread, NULL, worker_main,
                                   &workers[nw])) {
                        fprintf(stderr, "parallel-ctl spin: cannot start "
                                        "worker thread\n");
                        stop_requested = 1;
                        break;
                }
        }
        while (atomic_load(&run.warmed) < nw && !stop_requested)
                par_clock_sleep_ms(5);
        for (i = 0; run.chrome && i < 2000 && !stop_requested &&
                    !par_chrome_stocked(run.chrome);
             i++)
                par_clock_sleep_ms(5);
        if (run.chrome)
                par_chrome_stats(run.chrome, &st0);
        t0 = par_clock_mono_s();
        atomic_store(&run.go, 1);
        for (i = 0; i < nw; i++)
                pthread_join(workers[i].thread, NULL);
        elapsed = par_clock_mono_s() - t0;

        done = atomic_load(&run.ok) + atomic_load(&run.transient) +
               atomic_load(&run.permanent);
        if (run.chrome)
                par_chrome_stats(run.chrome, &st1);
        {
                /* Only spins that ran have a latency (an interrupted run
                 * leaves zeros at the end of the array). */
                double *lat = calloc((size_t)done + 1, sizeof(double));
                double *acq = calloc((size_t)done + 1, sizeof(double));
                int n = 0;

                for (i = 0; lat && acq && i < repeat; i++)
                        if (run.lat_ms[i] > 0) {
                                acq[n] = run.acq_ms[i];
                                lat[n++] = run.lat_ms[i];
                        }
                if (lat && acq) {
                        qsort(lat, (size_t)n, sizeof(double), cmp_double);
                        qsort(acq, (size_t)n, sizeof(double), cmp_double);
                }
                fprintf(stderr,
                        "summary recipe=%s count=%d ok=%d failed=%d "
                        "transient=%d permanent=%d concurrency=%d "
                        "elapsed_s=%.3f spins_per_s=%.2f p50_ms=%.1f "
                        "p99_ms=%.1f acquire_p50_ms=%.1f "
                        "acquire_p99_ms=%.1f ready=%llu waited=%llu "
                        "missed=%llu\n",
                        run.recipe->name, done, atomic_load(&run.ok),
                        done - atomic_load(&run.ok),
                        atomic_load(&run.transient),
                        atomic_load(&run.permanent), conc, elapsed,
                        elapsed > 0 ? done / elapsed : 0,
                        lat && acq ? percentile(lat, n, 50) : 0,
                        lat && acq ? percentile(lat, n, 99) : 0,
                        lat && acq ? percentile(acq, n, 50) : 0,
                        lat && acq ? percentile(acq, n, 99) : 0,
                        (unsigned long long)(st1.contexts_ready -
                                             st0.contexts_ready),
                        (unsigned long long)(st1.contexts_waited -
                                             st0.contexts_waited),
                        (unsigned long long)(st1.contexts_missed -
                                             st0.contexts_missed));
                free(lat);
                free(acq);
        }
        exit_code = done == repeat && atomic_load(&run.ok) == repeat ? 0 : 1;
out:
        par_chrome_destroy(run.chrome);
        free(workers);
        free(run.lat_ms);
        free(run.acq_ms);
        json_decref(run.params);
        par_recipe_destroy(owned);
        par_recipe_set_destroy(set);
        pthread_mutex_destroy(&run.out_lock);
        return exit_code;
}
