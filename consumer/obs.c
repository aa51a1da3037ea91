/*
 * obs.c — a node's Prometheus series (see obs.h).
 *
 * Handles of labelled series are cached in fixed tables indexed by
 * (status, priority, recipe index) and filled on first use through the
 * registry's get-or-create (which locks); a racing fill stores the same
 * handle, so the tables need only atomic pointers.
 */
#include "obs.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "msg/kafka.h"
#include "msg/lag.h"

#define NSTATUS 6
static const char *const statuses[NSTATUS] = {"done", "failed",  "retrying",
                                              "dead", "expired", "skipped"};
#define NREASON 3
static const char *const reasons[NREASON] = {"failed", "dead", "undecodable"};

struct node_obs {
        par_metrics_t *m;
        const par_config_t *cfg;
        char node_id[128];
        int levels;
        char topics[OBS_MAX_LEVELS][PAR_KAFKA_TOPIC_MAX];
        char **recipes; /* sorted names, then "noop" and "other" if absent */
        size_t nrecipes;
        _Atomic(par_counter_t *) *spins; /* [status][level][recipe] */
        _Atomic(par_buckets_t *) *spin;  /* [level][recipe] */
        par_buckets_t *wait[OBS_MAX_LEVELS], *e2e[OBS_MAX_LEVELS];
        par_buckets_t *claim, *publish;
        par_gauge_t *lag[OBS_MAX_LEVELS], *paused[OBS_MAX_LEVELS];
        par_counter_t *dead_letters[NREASON];
        par_counter_t *k_delivery, *k_commit;
        par_gauge_t *b_up, *b_tabs, *b_mem, *b_preparing;
        /* the lag thread */
        pthread_t lag_thread;
        bool lag_started;
        atomic_bool lag_quit;
        atomic_llong lag_total; /* -1 unknown */
        int64_t lag_interval_ms;
        rd_kafka_t *consumer; /* the node's; only its assignment is read */
        rd_kafka_t *lag_rk;   /* the lag thread's own client */
        char group[256];
        struct depth_arg {
                par_sched_t *sched;
                int level;
        } depth[OBS_MAX_LEVELS];
};

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static size_t recipe_index(const node_obs_t *o, const char *recipe)
{
        const char *key = recipe ? recipe : "";
        /* the sorted part first; "noop" and "other" follow it */
        size_t sorted = o->nrecipes - 2;
        char **hit = bsearch(&key, o->recipes, sorted, sizeof(char *), cmp_str);
        if (hit)
                return (size_t)(hit - o->recipes);
        if (!strcmp(key, o->recipes[sorted]))
                return sorted;
        return o->nrecipes - 1; /* other */
}

static bool level_ok(const node_obs_t *o, int priority)
{
        return priority >= 1 && priority <= o->levels;
}

static par_counter_t *spins_counter(node_obs_t *o, int s, int priority,
                                    size_t r)
{
        size_t i = ((size_t)s * o->levels + (priority - 1)) * o->nrecipes + r;
        par_counter_t *c = atomic_load(&o->spins[i]);
        if (!c) {
                char lb[200];
                snprintf(lb, sizeof(lb),
                         "status=\"%s\",priority=\"%d\",recipe=\"%s\"",
                         statuses[s], priority, o->recipes[r]);
                c = par_metrics_counter(o->m, "parallel_spins", lb,
                                        "Deliveries handled, by outcome.");
                atomic_store(&o->spins[i], c);
        }
        return c;
}

static double g_depth(void *opaque)
{
        struct depth_arg *d = opaque;
        return par_sched_depth(d->sched, d->level);
}

static double g_client_errors(void *opaque)
{
        (void)opaque;
        return (double)par_kafka_client_errors();
}

par_err_t obs_new(node_obs_t **out, const obs_opts_t *opts, par_error_t *err)
{
        node_obs_t *o;
        par_metrics_t *m = opts->metrics;
        par_err_t rc = PAR_OK;
        char lb[160];

        if (opts->levels < 1 || opts->levels > OBS_MAX_LEVELS)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "obs: %d priority levels (1..%d)",
                                     opts->levels, OBS_MAX_LEVELS);
        if (!(o = calloc(1, sizeof(*o))))
                return par_error_set(err, PAR_ERR_NOMEM, "obs: out of memory");
        o->m = m;
        o->cfg = opts->cfg;
        snprintf(o->node_id, sizeof(o->node_id), "%s", opts->node_id);
        atomic_init(&o->lag_quit, false);
        atomic_init(&o->lag_total, -1);
        o->levels = opts->levels;
        for (int L = 1; L <= o->levels; L++)
                snprintf(o->topics[L - 1], sizeof(o->topics[0]), "%s",
                         opts->topics[L - 1]);
        size_t nr = par_recipe_set_count(opts->recipes);
        o->recipes = calloc(nr + 2, sizeof(char *));
        if (!o->recipes)
                goto nomem;
        size_t k = 0;
        for (size_t i = 0; i < nr; i++) {
                const char *name = par_recipe_set_at(opts->recipes, i)->name;
                if (strcmp(name, "noop") && strcmp(name, "other") &&
                    !(o->recipes[k++] = strdup(name)))
                        goto nomem;
        }
        qsort(o->recipes, k, sizeof(char *), cmp_str);
        if (!(o->recipes[k++] = strdup("noop")) ||
            !(o->recipes[k++] = strdup("other")))
                goto nomem;
        o->nrecipes = k;
        o->spins = calloc(NSTATUS * (size_t)o->levels * k, sizeof(*o->spins));
        o->spin = calloc((size_t)o->levels * k, sizeof(*o->spin));
        if (!o->spins || !o->spin)
                goto nomem;

        snprintf(lb, sizeof(lb), "version=\"%s\",node=\"%s\"", PARALLEL_VERSION,
                 o->node_id);
        par_gauge_set(par_metrics_gauge(m, "parallel_build_info", lb,
                                        "Which build runs where (always 1)."),
                      1);
        for (int L = 1; L <= o->levels; L++) {
                snprintf(lb, sizeof(lb), "priority=\"%d\"", L);
                o->wait[L - 1] = par_metrics_histogram(
                    m, "parallel_wait_seconds", lb,
                    "Kafka timestamp of the signal to the start of its spin.",
                    &par_buckets_long);
                o->e2e[L - 1] = par_metrics_histogram(
                    m, "parallel_e2e_seconds", lb,
                    "Signal created_at to its final result.",
                    &par_buckets_long);
                o->lag[L - 1] = par_metrics_gauge(
                    m, "parallel_consumer_lag", lb,
                    "High watermark minus the group's committed offset, "
                    "summed over this node's partitions of the level.");
                o->paused[L - 1] =
                    par_metrics_gauge(m, "parallel_partitions_paused", lb,
                                      "Partitions of the level whose messages "
                                      "are held back (its local "
                                      "queue is full).");
                o->depth[L - 1].sched = opts->sched;
                o->depth[L - 1].level = L;
                if ((rc = par_metrics_gauge_fn(
                         m, "parallel_queue_depth", lb,
                         "Signals queued locally, not yet running.", g_depth,
                         &o->depth[L - 1], err)))
                        goto fail;
        }
        /* Every outcome series exists from the start at 0: a series that
         * appears only with its first increment loses that increment to
         * rate() and increase(). */
        for (int st = 0; st < NSTATUS; st++)
                for (int L = 1; L <= o->levels; L++)
                        for (size_t r = 0; r < o->nrecipes; r++)
                                (void)spins_counter(o, st, L, r);
        o->claim = par_metrics_histogram(m, "parallel_claim_seconds", NULL,
                                         "One claim (findAndModify) in "
                                         "MongoDB.",
                                         &par_buckets_short);
        o->publish = par_metrics_histogram(
            m, "parallel_publish_seconds", NULL,
            "A result or dead letter produced to Kafka's acknowledgement.",
            &par_buckets_short);
        for (int i = 0; i < NREASON; i++) {
                snprintf(lb, sizeof(lb), "reason=\"%s\"", reasons[i]);
                o->dead_letters[i] = par_metrics_counter(
                    m, "parallel_dead_letters", lb,
                    "Messages sent to the dead-letter topic, by reason.");
        }
        if ((rc = par_metrics_counter_fn(
                 m, "parallel_kafka_errors", "kind=\"client\"",
                 "librdkafka errors: client-level, failed deliveries, "
                 "failed commits.",
                 g_client_errors, NULL, err)))
                goto fail;
        o->k_delivery = par_metrics_counter(m, "parallel_kafka_errors",
                                            "kind=\"delivery\"", NULL);
        o->k_commit = par_metrics_counter(m, "parallel_kafka_errors",
                                          "kind=\"commit\"", NULL);
        o->b_up = par_metrics_gauge(m, "parallel_browsers_up", NULL,
                                    "Chromium processes running.");
        par_metrics_counter(m, "parallel_browser_launches", NULL,
                            "Chromium processes started.");
        par_metrics_counter(m, "parallel_browser_crashes", NULL,
                            "Chromium processes that died or stopped "
                            "answering.");
        par_metrics_counter(m, "parallel_browser_recycles", NULL,
                            "Planned Chromium restarts after "
                            "chrome.recycle_after spins.");
        o->b_tabs = par_metrics_gauge(m, "parallel_browser_tabs", NULL,
                                      "Tabs held by workers.");
        par_metrics_counter(m, "parallel_browser_contexts", "source=\"stock\"",
                            "Clean browser contexts handed to spins, by where "
                            "they came from: stock (prepared beforehand), "
                            "waited (the stock was empty; the spin waited for "
                            "the one being prepared), made (on the spin's "
                            "own path).");
        par_metrics_counter(m, "parallel_browser_contexts", "source=\"waited\"",
                            NULL);
        par_metrics_counter(m, "parallel_browser_contexts", "source=\"made\"",
                            NULL);
        par_metrics_counter(m, "parallel_browser_contexts_disposed", NULL,
                            "Browser contexts disposed of after their spin.");
        o->b_preparing = par_metrics_gauge(
            m, "parallel_browser_contexts_preparing", NULL,
            "Clean contexts being prepared in the background now.");
        o->b_mem = par_metrics_gauge(m, "parallel_browser_memory_bytes", NULL,
                                     "Resident memory of the node's Chromium "
                                     "processes.");
        *out = o;
        return PAR_OK;
nomem:
        rc = par_error_set(err, PAR_ERR_NOMEM, "obs: out of memory");
fail:
        obs_destroy(o);
        return rc;
}

void obs_destroy(node_obs_t *o)
{
        if (!o)
                return;
        obs_stop(o);
        for (size_t i = 0; o->recipes && i < o->nrecipes; i++)
                free(o->recipes[i]);
        free(o->recipes);
        free((void *)o->spins);
        free((void *)o->spin);
        free(o);
}

static int status_index(const char *status)
{
        for (int i = 0; i < NSTATUS; i++)
                if (!strcmp(status, statuses[i]))
                        return i;
        return NSTATUS - 1;
}

void obs_outcome(node_obs_t *o, int priority, const char *recipe,
                 const char *status)
{
        if (!o || !level_ok(o, priority))
                return;
        par_counter_inc(spins_counter(o, status_index(status), priority,
                                      recipe_index(o, recipe)));
}

void obs_spin(node_obs_t *o, int priority, const char *recipe, double s)
{
        if (!o || !level_ok(o, priority))
                return;
        size_t r = recipe_index(o, recipe);
        size_t i = (size_t)(priority - 1) * o->nrecipes + r;
        par_buckets_t *b = atomic_load(&o->spin[i]);
        if (!b) {
                char lb[160];
                snprintf(lb, sizeof(lb), "priority=\"%d\",recipe=\"%s\"",
                         priority, o->recipes[r]);
                b = par_metrics_histogram(o->m, "parallel_spin_seconds", lb,
                                          "Spin duration.", &par_buckets_spin);
                atomic_store(&o->spin[i], b);
        }
        par_buckets_observe(b, s);
}

void obs_wait(node_obs_t *o, int priority, double s)
{
        if (o && level_ok(o, priority))
                par_buckets_observe(o->wait[priority - 1], s);
}

void obs_e2e(node_obs_t *o, int priority, double s)
{
        if (o && level_ok(o, priority))
                par_buckets_observe(o->e2e[priority - 1], s);
}

void obs_claim(node_obs_t *o, double s)
{
        if (o)
                par_buckets_observe(o->claim, s);
}

void obs_publish(node_obs_t *o, double s)
{
        if (o)
                par_buckets_observe(o->publish, s);
}

void obs_dead_letter(node_obs_t *o, const char *reason)
{
        for (int i = 0; o && i < NREASON; i++)
                if (!strcmp(reason, reasons[i]))
                        par_counter_inc(o->dead_letters[i]);
}

void obs_kafka_error(node_obs_t *o, const char *kind)
{
        if (o)
                par_counter_inc(!strcmp(kind, "commit") ? o->k_commit
                                                        : o->k_delivery);
}

/* Raises a counter to a monotonic total read elsewhere. */
static void counter_to(par_metrics_t *m, const char *name, const char *labels,
                       uint64_t total)
{
        par_counter_t *c = par_metrics_counter(m, name, labels, NULL);
        uint64_t cur = par_counter_get(c);
        if (total > cur)
                par_counter_add(c, total - cur);
}

/* Sets each element's offset to the group's committed offset (or
 * RD_KAFKA_OFFSET_INVALID). Returns NULL or what went wrong. */
static const char *committed(node_obs_t *o, rd_kafka_topic_partition_list_t *a)
{
        static _Thread_local char why[256];
        rd_kafka_queue_t *q = rd_kafka_queue_new(o->lag_rk);
        rd_kafka_ListConsumerGroupOffsets_t *req =
            rd_kafka_ListConsumerGroupOffsets_new(o->group, a);
        rd_kafka_ListConsumerGroupOffsets(o->lag_rk, &req, 1, NULL, q);
        rd_kafka_ListConsumerGroupOffsets_destroy(req);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 10000);
        const rd_kafka_ListConsumerGroupOffsets_result_t *res =
            ev ? rd_kafka_event_ListConsumerGroupOffsets_result(ev) : NULL;
        size_t n = 0;
        const rd_kafka_group_result_t **gr =
            res ? rd_kafka_ListConsumerGroupOffsets_result_groups(res, &n)
                : NULL;
        const char *ret = NULL;
        if (!n || rd_kafka_group_result_error(gr[0])) {
                snprintf(why, sizeof(why), "committed offsets: %s",
                         !ev ? "timed out"
                         : n ? rd_kafka_error_string(
                                   rd_kafka_group_result_error(gr[0]))
                             : rd_kafka_event_error_string(ev));
                ret = why;
        } else {
                const rd_kafka_topic_partition_list_t *c =
                    rd_kafka_group_result_partitions(gr[0]);
                for (int i = 0; i < a->cnt; i++) {
                        const rd_kafka_topic_partition_t *p =
                            c ? rd_kafka_topic_partition_list_find(
                                    c, a->elems[i].topic, a->elems[i].partition)
                              : NULL;
                        a->elems[i].offset = p && !p->err && p->offset >= 0
                                                 ? p->offset
                                                 : RD_KAFKA_OFFSET_INVALID;
                }
        }
        if (ev)
                rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
        return ret;
}

static int64_t refresh_lag(node_obs_t *o)
{
        rd_kafka_topic_partition_list_t *a = NULL;
        int64_t per[OBS_MAX_LEVELS] = {0}, total = 0, *lag = NULL;
        par_error_t e;

        if (rd_kafka_assignment(o->consumer, &a) || !a)
                return -1;
        if (a->cnt) {
                /* The group's committed offsets (Admin API) and the
                 * watermarks, both through the lag thread's own client: on
                 * the consumer's connections these requests would queue
                 * behind its long-poll fetches (a broker answers one request
                 * per connection at a time) and hold up the next fetch. */
                const char *ke = committed(o, a);
                if (ke || !(lag = calloc((size_t)a->cnt, sizeof(*lag))) ||
                    par_lag_compute(o->lag_rk, a, lag, 5000, &e)) {
                        par_log(PAR_LOG_WARN, "consumer", "lag_unknown",
                                "error=\"%s\"",
                                ke    ? ke
                                : lag ? e.msg
                                      : "out of memory");
                        total = -1;
                        goto out;
                }
                for (int i = 0; i < a->cnt; i++)
                        for (int L = 1; L <= o->levels; L++)
                                if (!strcmp(a->elems[i].topic,
                                            o->topics[L - 1]))
                                        per[L - 1] += lag[i];
        }
        for (int L = 1; L <= o->levels; L++) {
                par_gauge_set(o->lag[L - 1], (double)per[L - 1]);
                total += per[L - 1];
        }
out:
        free(lag);
        rd_kafka_topic_partition_list_destroy(a);
        return total;
}

int64_t obs_refresh(node_obs_t *o, const int *paused,
                    const par_chrome_stats_t *chrome, int64_t chrome_rss_bytes)
{
        if (!o)
                return -1;
        for (int L = 1; L <= o->levels; L++)
                par_gauge_set(o->paused[L - 1], paused[L - 1]);
        if (chrome) {
                par_gauge_set(o->b_up, chrome->browsers_alive);
                par_gauge_set(o->b_tabs, chrome->tabs_open);
                par_gauge_set(o->b_preparing, chrome->contexts_preparing);
                counter_to(o->m, "parallel_browser_launches", NULL,
                           chrome->launches);
                counter_to(o->m, "parallel_browser_crashes", NULL,
                           chrome->crashes);
                counter_to(o->m, "parallel_browser_recycles", NULL,
                           chrome->recycles);
                /* contexts_waited counts within contexts_ready. */
                counter_to(o->m, "parallel_browser_contexts",
                           "source=\"stock\"",
                           chrome->contexts_ready - chrome->contexts_waited);
                counter_to(o->m, "parallel_browser_contexts",
                           "source=\"waited\"", chrome->contexts_waited);
                counter_to(o->m, "parallel_browser_contexts", "source=\"made\"",
                           chrome->contexts_missed);
                counter_to(o->m, "parallel_browser_contexts_disposed", NULL,
                           chrome->contexts_disposed);
        }
        if (chrome_rss_bytes >= 0)
                par_gauge_set(o->b_mem, (double)chrome_rss_bytes);
        return atomic_load(&o->lag_total);
}

/* Asking the coordinator and every partition leader takes round trips
 * (seconds on a loaded broker): on its own thread, never in the loop that
 * dispatches work. librdkafka's calls used here are thread-safe. */
static void *lag_main(void *arg)
{
        node_obs_t *o = arg;
        while (!atomic_load(&o->lag_quit)) {
                atomic_store(&o->lag_total, refresh_lag(o));
                for (int64_t t = 0;
                     t < o->lag_interval_ms && !atomic_load(&o->lag_quit);
                     t += 50)
                        par_clock_sleep_ms(50);
        }
        return NULL;
}

par_err_t obs_start(node_obs_t *o, rd_kafka_t *consumer, int64_t interval_ms,
                    par_error_t *err)
{
        rd_kafka_conf_t *conf = NULL;
        char cid[200], es[256];
        par_err_t rc;

        o->consumer = consumer;
        o->lag_interval_ms = interval_ms;
        snprintf(o->group, sizeof(o->group), "%s",
                 par_config_str(o->cfg, "consumer.group"));
        snprintf(cid, sizeof(cid), "parallel-consumer-%s-lag", o->node_id);
        if ((rc = par_kafka_conf_new(&conf, o->cfg, cid, err)))
                return rc;
        if (!(o->lag_rk =
                  rd_kafka_new(RD_KAFKA_PRODUCER, conf, es, sizeof(es)))) {
                rd_kafka_conf_destroy(conf);
                return par_error_set(err, PAR_ERR_KAFKA, "lag client: %s", es);
        }
        if (pthread_create(&o->lag_thread, NULL, lag_main, o)) {
                rd_kafka_destroy(o->lag_rk);
                o->lag_rk = NULL;
                return par_error_set(err, PAR_ERR_NOMEM,
                                     "obs: cannot start the lag thread");
        }
        o->lag_started = true;
        return PAR_OK;
}

void obs_stop(node_obs_t *o)
{
        if (!o || !o->lag_started)
                return;
        atomic_store(&o->lag_quit, true);
        pthread_join(o->lag_thread, NULL);
        o->lag_started = false;
        rd_kafka_destroy(o->lag_rk);
        o->lag_rk = NULL;
}
