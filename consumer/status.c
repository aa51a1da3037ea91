/*
 * status.c — WorkerStatus and NodeMetrics, and the /metrics gauges that
 * come from the node's state (paused partitions, browsers): sampled here
 * and handed to obs.c, which knows nothing of the node.
 *
 * Worker status goes to a compacted topic keyed "<node>/<worker>", so the
 * latest record per worker is its state; a worker that went away must be
 * tombstoned, or it would show forever. Records are published on change
 * only, at most once a second per worker (the main loop's pace).
 *
 * Metrics are cumulative in the registry (for /metrics) and windowed here
 * (for NodeMetrics): each publication takes the histograms' growth since
 * the last one.
 */
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "node_state.h"
#include "obs.h"
#include "status.h"

static double g_workers(void *opaque)
{
        return pool_size(opaque);
}

static double g_busy(void *opaque)
{
        return pool_busy(opaque);
}

par_err_t status_init(node_t *n, par_error_t *err)
{
        par_err_t rc;
        for (int i = 0; i < NODE_MAX_WORKERS; i++)
                n->published_state[i] = -1;
        if ((rc = par_hist_new(&n->w_wait, err)) ||
            (rc = par_hist_new(&n->w_spin, err)) ||
            (rc = par_hist_new(&n->w_e2e, err)) ||
            (rc = par_metrics_gauge_fn(n->metrics, "parallel_workers", NULL,
                                       "Worker threads.", g_workers, n->pool,
                                       err)) ||
            (rc = par_metrics_gauge_fn(n->metrics, "parallel_workers_busy",
                                       NULL, "Workers running a spin.", g_busy,
                                       n->pool, err)))
                return rc;
        return PAR_OK;
}

void status_fini(node_t *n)
{
        par_hist_destroy(n->w_wait);
        par_hist_destroy(n->w_spin);
        par_hist_destroy(n->w_e2e);
}

int64_t status_chrome_rss(node_t *n)
{
        pid_t groups[NODE_MAX_BROWSERS];
        int ng;
        int64_t total = 0;
        long page = sysconf(_SC_PAGESIZE);

        if (!n->chrome)
                return -1;
        /* every browser: shared ones serve any worker, and there may be
         * more of them than workers */
        ng = par_chrome_browser_pgids(
            n->chrome, groups, (int)(sizeof(groups) / sizeof(groups[0])));
        if (!ng)
                return 0;
        DIR *d = opendir("/proc");
        struct dirent *de;
        while (d && (de = readdir(d))) {
                char path[300], buf[1024];
                if (!isdigit((unsigned char)de->d_name[0]))
                        continue;
                snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
                FILE *f = fopen(path, "r");
                if (!f)
                        continue;
                size_t len = fread(buf, 1, sizeof(buf) - 1, f);
                fclose(f);
                buf[len] = '\0';
                char *p = strrchr(buf, ')'); /* comm may hold spaces */
                int pgrp = 0;
                long rss = 0;
                /* fields after comm: state ppid pgrp ... rss is field 24 */
                if (!p || sscanf(p + 2,
                                 "%*c %*d %d %*d %*d %*d %*u %*u %*u "
                                 "%*u %*u %*u %*u %*d %*d %*d %*d %*d "
                                 "%*d %*u %*u %ld",
                                 &pgrp, &rss) != 2)
                        continue;
                for (int k = 0; k < ng; k++)
                        if (groups[k] == pgrp)
                                total += (int64_t)rss * page;
        }
        if (d)
                closedir(d);
        return total;
}

static int64_t self_rss(void)
{
        long pages = 0, rss = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        if (f) {
                if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
                        rss = 0;
                fclose(f);
        }
        return (int64_t)rss * sysconf(_SC_PAGESIZE);
}

static void publish_worker(node_t *n, const pool_worker_t *w, bool tombstone)
{
        char key[200];
        void *buf = NULL;
        size_t len = 0;
        par_error_t e;

        snprintf(key, sizeof(key), "%s/%s", n->id, w->id);
        if (tombstone) {
                pub_send(n->pub, n->t_workers, key, NULL, 0, NULL, false, &e);
                return;
        }
        bool busy = w->state == WS_BUSY;
        json_t *v = json_pack(
            "{s:s,s:s,s:s,s:o,s:o,s:I,s:I,s:I,s:I,s:o}", "node_id", n->id,
            "worker_id", w->id, "state", pool_state_name(w->state), "signal_id",
            busy && w->signal_id[0] ? json_string(w->signal_id) : json_null(),
            "recipe",
            busy && w->recipe[0] ? json_string(w->recipe) : json_null(),
            "spins", (json_int_t)w->spins, "failures", (json_int_t)w->failures,
            "since", (json_int_t)w->since, "ts",
            (json_int_t)par_clock_wall_ms(), "chrome_pid", json_null());
        if (n->chrome) {
                pid_t g = par_chrome_browser_pgid(n->chrome, w->index);
                if (g > 0)
                        json_object_set_new(v, "chrome_pid", json_integer(g));
        }
        if (v &&
            !par_codec_encode(n->codec, PAR_SCHEMA_WORKER, v, &buf, &len, &e))
                pub_send(n->pub, n->t_workers, key, buf, len, NULL, false, &e);
        json_decref(v);
}

void status_publish_workers(node_t *n)
{
        for (int i = 0; i < NODE_MAX_WORKERS; i++) {
                pool_worker_t w;
                pool_worker(n->pool, i, &w);
                if (!w.used)
                        continue;
                if (w.state == n->published_state[i] &&
                    w.since == n->published_since[i])
                        continue;
                n->published_state[i] = w.state;
                n->published_since[i] = w.since;
                publish_worker(n, &w, false);
        }
}

void status_tombstone_stopped(node_t *n)
{
        for (int i = 0; i < NODE_MAX_WORKERS; i++) {
                pool_worker_t w;
                pool_worker(n->pool, i, &w);
                if (w.used && !w.running) {
                        publish_worker(n, &w, true);
                        n->published_state[i] = -1; /* gone: not "stopped" */
                }
        }
}

void status_publish_final(node_t *n)
{
        for (int i = 0; i < NODE_MAX_WORKERS; i++) {
                pool_worker_t w;
                pool_worker(n->pool, i, &w);
                if (w.used || n->published_state[i] >= 0)
                        publish_worker(n, &w, false);
        }
}

static json_t *latency(par_hist_t *win)
{
        return json_pack("{s:I,s:f,s:f,s:f,s:f}", "count",
                         (json_int_t)par_hist_count(win), "p50_ms",
                         par_hist_percentile(win, 0.5) / 1000.0, "p90_ms",
                         par_hist_percentile(win, 0.9) / 1000.0, "p99_ms",
                         par_hist_percentile(win, 0.99) / 1000.0, "max_ms",
                         par_hist_max(win) / 1000.0);
}

void status_publish_metrics(node_t *n, int64_t interval_ms)
{
        void *buf = NULL;
        size_t len = 0;
        par_error_t e;
        par_chrome_stats_t cs = {0};

        par_hist_take(n->w_wait, n->stats.wait);
        par_hist_take(n->w_spin, n->stats.spin);
        par_hist_take(n->w_e2e, n->stats.e2e);
        uint64_t done = par_counter_get(n->stats.done);
        uint64_t final = done + par_counter_get(n->stats.failed) +
                         par_counter_get(n->stats.dead) +
                         par_counter_get(n->stats.expired);
        uint64_t dfinal = final - n->last_final, ddone = done - n->last_done;
        n->last_final = final;
        n->last_done = done;
        json_t *queues = json_array();
        for (int L = n->levels; L >= 1; L--)
                json_array_append_new(
                    queues, json_pack("{s:i,s:i,s:b}", "priority", L, "depth",
                                      par_sched_depth(n->sched, L), "paused",
                                      (n->paused >> (L - 1)) & 1));
        if (n->chrome)
                par_chrome_stats(n->chrome, &cs);
        int total = pool_size(n->pool), busy = pool_busy(n->pool);
        int paused[NODE_MAX_LEVELS] = {0};
        for (int i = 0; i < n->nparts; i++)
                if (n->parts[i].level >= 1 && n->parts[i].level <= n->levels &&
                    (n->paused >> (n->parts[i].level - 1)) & 1)
                        paused[n->parts[i].level - 1]++;
        int64_t crss = status_chrome_rss(n);
        int64_t lag = obs_refresh(n->obs, paused, n->chrome ? &cs : NULL, crss);
        atomic_store(&n->lag, lag);
        json_t *v = json_pack(
            "{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:o,s:o,s:o,s:o,"
            "s:o,s:i,s:i,s:i,s:I,s:I,s:o,s:o}",
            "node_id", n->id, "ts", (json_int_t)par_clock_wall_ms(),
            "interval_ms", (json_int_t)interval_ms, "uptime_ms",
            (json_int_t)(par_clock_wall_ms() - n->started_ms), "spins_done",
            (json_int_t)done, "spins_failed",
            (json_int_t)par_counter_get(n->stats.failed), "spins_retried",
            (json_int_t)par_counter_get(n->stats.retrying), "spins_dead",
            (json_int_t)par_counter_get(n->stats.dead), "spins_expired",
            (json_int_t)par_counter_get(n->stats.expired), "spins_skipped",
            (json_int_t)par_counter_get(n->stats.skipped), "throughput",
            interval_ms > 0 ? dfinal * 1000.0 / interval_ms : 0.0,
            "success_rate",
            dfinal ? json_real((double)ddone / dfinal) : json_null(), "queues",
            queues, "wait", latency(n->w_wait), "spin", latency(n->w_spin),
            "e2e", latency(n->w_e2e), "workers_busy", busy, "workers_idle",
            total > busy ? total - busy : 0, "workers_total", total,
            "chrome_restarts", (json_int_t)(cs.restarts + cs.recycles),
            "rss_bytes", (json_int_t)self_rss(), "chrome_rss_bytes",
            crss >= 0 ? json_integer(crss) : json_null(), "consumer_lag",
            lag >= 0 ? json_integer(lag) : json_null());
        par_hist_reset(n->w_wait);
        par_hist_reset(n->w_spin);
        par_hist_reset(n->w_e2e);
        if (!v) {
                par_log(PAR_LOG_ERROR, "consumer", "metrics_build", "failed");
                return;
        }
        if (par_codec_encode(n->codec, PAR_SCHEMA_METRICS, v, &buf, &len, &e))
                par_log(PAR_LOG_ERROR, "consumer", "metrics_encode",
                        "error=\"%s\"", e.msg);
        else
                pub_send(n->pub, n->t_metrics, n->id, buf, len, NULL, false,
                         &e);
        json_decref(v);
}
