/*
 * endpoint.c — /health, /status, /metrics and the dashboard.
 *
 * /health answers 503 while draining, so a load balancer or orchestrator
 * stops counting the node before it leaves. The dashboard is one static
 * page polling /status: no template engine, nothing to build.
 */
#include <stdlib.h>

#include "assign.h"
#include "base/clock.h"
#include "endpoint.h"
#include "node_state.h"

static int h_health(void *opaque, const char *path, const char *query,
                    par_http_body_t *body, const char **ct)
{
        node_t *n = opaque;
        if (atomic_load(&n->draining)) {
                par_http_body_printf(body, "draining\n");
                return 503;
        }
        par_http_body_printf(body, "ok\n");
        return 200;
}

static int h_status(void *opaque, const char *path, const char *query,
                    par_http_body_t *body, const char **ct)
{
        node_t *n = opaque;
        json_t *workers = json_array(), *queues = json_array();

        for (int i = 0; i < NODE_MAX_WORKERS; i++) {
                pool_worker_t w;
                pool_worker(n->pool, i, &w);
                if (!w.used)
                        continue;
                bool busy = w.state == WS_BUSY;
                json_array_append_new(
                    workers, json_pack("{s:s,s:s,s:s?,s:s?,s:I,s:I,s:I}", "id",
                                       w.id, "state", pool_state_name(w.state),
                                       "signal_id", busy ? w.signal_id : NULL,
                                       "recipe", busy ? w.recipe : NULL,
                                       "spins", (json_int_t)w.spins, "failures",
                                       (json_int_t)w.failures, "since",
                                       (json_int_t)w.since));
        }
        for (int L = n->levels; L >= 1; L--)
                json_array_append_new(
                    queues, json_pack("{s:i,s:i}", "priority", L, "depth",
                                      par_sched_depth(n->sched, L)));
        /* by_level[i] is priority i + 1, as in the log's "assigned"
         * lines (held_by_level=a,b,c,d). */
        int held[NODE_MAX_LEVELS];
        int nheld = assign_held(n, held);
        json_t *by_level = json_array();
        for (int L = 1; L <= n->levels; L++)
                json_array_append_new(by_level, json_integer(held[L - 1]));
        long long lag = atomic_load(&n->lag);
        const stats_t *st = &n->stats;
        json_t *s = json_pack(
            "{s:s,s:s,s:I,s:b,s:o,s:o,s:{s:i,s:o},s:i,s:i,"
            "s:{s:I,s:I,s:I,s:I,s:I,s:I},s:o}",
            "node_id", n->id, "version", PARALLEL_VERSION, "uptime_ms",
            (json_int_t)(par_clock_wall_ms() - n->started_ms), "draining",
            atomic_load(&n->draining), "workers", workers, "queues", queues,
            "partitions", "held", nheld, "by_level", by_level, "running",
            par_sched_running(n->sched), "uncommitted",
            par_offsets_pending(n->offsets), "spins", "done",
            (json_int_t)par_counter_get(st->done), "failed",
            (json_int_t)par_counter_get(st->failed), "retrying",
            (json_int_t)par_counter_get(st->retrying), "dead",
            (json_int_t)par_counter_get(st->dead), "expired",
            (json_int_t)par_counter_get(st->expired), "skipped",
            (json_int_t)par_counter_get(st->skipped), "consumer_lag",
            lag >= 0 ? json_integer(lag) : json_null());
        char *text = s ? json_dumps(s, JSON_COMPACT) : NULL;
        json_decref(s);
        if (!text)
                return 500;
        par_http_body_printf(body, "%s\n", text);
        free(text);
        *ct = "application/json";
        return 200;
}

static const char dashboard[] =
    "<!doctype html><meta charset=utf-8><title>parallel-consumer</title>"
    "<style>body{font:14px monospace;margin:2em}td,th{padding:2px 10px;"
    "text-align:left}</style><h1 id=h>parallel-consumer</h1><div id=s>"
    "</div><table id=w></table><script>"
    "async function t(){try{const r=await fetch('/status');const s=await "
    "r.json();document.getElementById('h').textContent='node '+s.node_id+"
    "(s.draining?' (draining)':'');document.getElementById('s').textContent="
    "'done '+s.spins.done+' failed '+s.spins.failed+' dead '+s.spins.dead+"
    "' retrying '+s.spins.retrying+' skipped '+s.spins.skipped+' | queues '+"
    "s.queues.map(q=>'p'+q.priority+':'+q.depth).join(' ')+' | lag '+"
    "s.consumer_lag;document.getElementById('w').innerHTML='<tr><th>worker"
    "<th>state<th>signal<th>recipe<th>spins<th>failures'+s.workers.map(w=>"
    "'<tr><td>'+w.id+'<td>'+w.state+'<td>'+(w.signal_id||'')+'<td>'+"
    "(w.recipe||'')+'<td>'+w.spins+'<td>'+w.failures).join('')}catch(e){}"
    "}setInterval(t,1000);t()</script>\n";

static int h_dashboard(void *opaque, const char *path, const char *query,
                       par_http_body_t *body, const char **ct)
{
        par_http_body_append(body, dashboard, sizeof(dashboard) - 1);
        *ct = "text/html; charset=utf-8";
        return 200;
}

par_err_t endpoint_new(node_t *n, const char *listen, par_error_t *err)
{
        par_err_t rc;
        if ((rc = par_http_new(&n->http, listen, err)) ||
            (rc = par_http_route(n->http, "/health", h_health, n, err)) ||
            (rc = par_http_route(n->http, "/status", h_status, n, err)) ||
            (rc = par_http_route(n->http, "/metrics", par_http_metrics_handler,
                                 n->metrics, err)) ||
            (rc = par_http_route(n->http, "/", h_dashboard, n, err)))
                return rc;
        return PAR_OK;
}
