/*
 * node.c — a consumer node's life: building it from the configuration, the
 * main loop, and the shutdown sequence (see node_state.h for the threads and
 * the files that do the rest).
 *
 * Why the main thread never blocks on work: librdkafka evicts a member that
 * does not call poll within max.poll.interval.ms, and serves rebalances only
 * from poll. So spins run on workers, and the main thread only polls,
 * enqueues and does bookkeeping on a timetable: commits every
 * commit.interval, pool sizing every 100 ms, worker status every second,
 * metrics every metrics.interval.
 *
 * Each turn of the loop serves the consumer queue (rebalances, errors),
 * then takes messages from the levels' queues, most urgent level first,
 * each up to the room its local queue has; when a turn took nothing it
 * sleeps on the wake pipe (node_state.h) for up to 50 ms.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "assign.h"
#include "base/clock.h"
#include "base/log.h"
#include "commit.h"
#include "msg/admin.h"
#include "endpoint.h"
#include "intake.h"
#include "job.h"
#include "node.h"
#include "node_state.h"
#include "obs.h"
#include "status.h"

/* Results handed to the producer and not yet acknowledged, per node: enough
 * to keep the producer's batches full (linger.ms=2) at tens of thousands a
 * second, small enough that a shutdown waits for them briefly. */
#define RESULTS_IN_FLIGHT 4096

/* Messages taken from one level's queue per turn of the main loop at most:
 * the other levels and the consumer queue are served between batches. */
#define INTAKE_BATCH 256

static par_err_t kset(rd_kafka_conf_t *c, const char *k, const char *v,
                      par_error_t *err)
{
        char es[256];
        if (rd_kafka_conf_set(c, k, v, es, sizeof(es)) != RD_KAFKA_CONF_OK)
                return par_error_set(err, PAR_ERR_INVALID, "%s: %s", k, es);
        return PAR_OK;
}

/* Sets k unless the operator already set it through kafka.*. */
static par_err_t kdefault(rd_kafka_conf_t *c, const char *k, const char *v,
                          par_error_t *err)
{
        char cur[256];
        size_t sz = sizeof(cur);
        if (rd_kafka_conf_get(c, k, cur, &sz) == RD_KAFKA_CONF_OK && cur[0])
                return PAR_OK;
        return kset(c, k, v, err);
}

/*
 * Sizes results and dead letters against the output topics' own
 * max.message.bytes when it is below the configured limit (asked once,
 * with the consumer handle, before the producer is made). Sized by the
 * configuration alone, a result the topic refused was dropped, and a batch
 * of small results over the topic's limit with it. No answer within 2 s:
 * the configured limit.
 */
static void size_to_topics(node_t *n, rd_kafka_conf_t *pc)
{
        const char *names[] = {n->t_results, n->t_dlq, n->t_workers,
                               n->t_metrics};
        size_t conf_max = par_kafka_message_max(n->cfg);
        int64_t lim = 0;
        par_error_t e;
        char v[32];

        n->message_max = conf_max;
        if (par_admin_message_max(n->consumer, names, 4, 2000, &lim, &e)) {
                PAR_DEBUG("consumer", "topics.limit_unknown", "error=\"%s\"",
                          e.msg);
        } else if ((size_t)lim < conf_max) {
                n->message_max = (size_t)lim;
                par_log(PAR_LOG_WARN, "consumer", "topics.limit",
                        "topic_max_message_bytes=%lld configured=%zu "
                        "sizing_to=%zu",
                        (long long)lim, conf_max, n->message_max);
                snprintf(v, sizeof(v), "%zu", n->message_max);
                kset(pc, "message.max.bytes", v, NULL);
        }
        n->value_max = par_kafka_value_max_of(n->message_max);
}

/* The scheduler's on_resume: a held level may take messages again. */
static void wake_main(void *arg)
{
        node_t *n = arg;
        char c = 1;
        if (write(n->wake[1], &c, 1) < 0) {
                /* full pipe: a wake-up is pending anyway */
        }
}

static void drain_wake(node_t *n)
{
        char buf[64];
        while (read(n->wake[0], buf, sizeof(buf)) > 0)
                ;
}

/* One queue per level, and the consumer queue, each writing a byte to the
 * wake pipe when it gets something while nobody is serving it. */
static par_err_t make_queues(node_t *n, par_error_t *err)
{
        static const char byte = 1;
        if (!(n->cq = rd_kafka_queue_get_consumer(n->consumer)))
                return par_error_set(err, PAR_ERR_KAFKA,
                                     "consumer: no consumer queue");
        rd_kafka_queue_io_event_enable(n->cq, n->wake[1], &byte, 1);
        for (int L = 1; L <= n->levels; L++) {
                if (!(n->lq[L - 1] = rd_kafka_queue_new(n->consumer)))
                        return par_error_set(err, PAR_ERR_NOMEM,
                                             "out of memory");
                rd_kafka_queue_io_event_enable(n->lq[L - 1], n->wake[1], &byte,
                                               1);
        }
        return PAR_OK;
}

static void destroy_queues(node_t *n)
{
        for (int L = 1; L <= NODE_MAX_LEVELS; L++)
                if (n->lq[L - 1]) {
                        rd_kafka_queue_io_event_enable(n->lq[L - 1], -1, NULL,
                                                       0);
                        rd_kafka_queue_destroy(n->lq[L - 1]);
                        n->lq[L - 1] = NULL;
                }
        if (n->cq) {
                rd_kafka_queue_io_event_enable(n->cq, -1, NULL, 0);
                rd_kafka_queue_destroy(n->cq);
                n->cq = NULL;
        }
}

static par_err_t make_clients(node_t *n, par_error_t *err)
{
        rd_kafka_conf_t *pc = NULL, *cc = NULL;
        char es[512], cid[200], commit_ms[24];
        par_err_t rc;

        snprintf(cid, sizeof(cid), "parallel-consumer-%s", n->id);
        snprintf(commit_ms, sizeof(commit_ms), "%lld",
                 (long long)par_config_int(n->cfg, "commit.interval"));
        if ((rc = par_kafka_conf_new(&cc, n->cfg, cid, err)))
                goto fail;
        if ((rc = kdefault(cc, "group.id",
                           par_config_str(n->cfg, "consumer.group"), err)) ||
            /* Commits only what commit.c stores: finished prefixes. */
            (rc = kset(cc, "enable.auto.commit", "true", err)) ||
            (rc = kset(cc, "auto.commit.interval.ms", commit_ms, err)) ||
            (rc = kset(cc, "enable.auto.offset.store", "false", err)) ||
            (rc = kset(cc, "partition.assignment.strategy",
                       par_config_str(n->cfg, "consumer.assignment"), err)) ||
            (rc = kset(cc, "auto.offset.reset", "earliest", err)) ||
            /* What librdkafka prefetches per level queue (it counts a
             * forwarded partition against the queue it forwards to): a
             * fraction of a second of work at full speed, not the 64 MB
             * per queue of its defaults. */
            (rc = kdefault(cc, "queued.min.messages", "10000", err)) ||
            (rc = kdefault(cc, "queued.max.messages.kbytes", "16384", err)))
                goto fail;
        if (par_config_bool(n->cfg, "consumer.static_membership") &&
            (rc = kset(cc, "group.instance.id", n->id, err)))
                goto fail;
        rd_kafka_conf_set_rebalance_cb(cc, assign_rebalance_cb);
        rd_kafka_conf_set_offset_commit_cb(cc, commit_result_cb);
        rd_kafka_conf_set_opaque(cc, n);
        if (!(n->consumer =
                  rd_kafka_new(RD_KAFKA_CONSUMER, cc, es, sizeof(es)))) {
                rc = par_error_set(err, PAR_ERR_KAFKA, "consumer: %s", es);
                goto fail;
        }
        cc = NULL;
        rd_kafka_poll_set_consumer(n->consumer);
        if ((rc = make_queues(n, err)))
                goto fail;

        if ((rc = par_kafka_conf_new(&pc, n->cfg, cid, err)))
                goto fail;
        size_to_topics(n, pc);
        if ((rc = kset(pc, "enable.idempotence", "true", err)) ||
            (rc = kset(pc, "linger.ms", "2", err)))
                goto fail;
        rc = pub_new(&n->pub, pc, RESULTS_IN_FLIGHT, err);
        pc = NULL;
        if (rc)
                goto fail;

        rd_kafka_topic_partition_list_t *subs =
            rd_kafka_topic_partition_list_new(n->levels);
        for (int L = 1; L <= n->levels; L++)
                rd_kafka_topic_partition_list_add(subs, n->topics[L - 1],
                                                  RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t ke = rd_kafka_subscribe(n->consumer, subs);
        rd_kafka_topic_partition_list_destroy(subs);
        if (ke)
                return par_error_set(err, PAR_ERR_KAFKA, "subscribe: %s",
                                     rd_kafka_err2str(ke));
        return PAR_OK;
fail:
        if (pc)
                rd_kafka_conf_destroy(pc);
        if (cc)
                rd_kafka_conf_destroy(cc);
        return rc;
}

static void node_names(node_t *n, par_config_t *cfg)
{
        char host[100];
        const char *id = par_config_str(cfg, "node.id");
        if (*id) {
                snprintf(n->id, sizeof(n->id), "%s", id);
        } else {
                if (gethostname(host, sizeof(host)))
                        snprintf(host, sizeof(host), "node");
                host[sizeof(host) - 1] = '\0';
                snprintf(n->id, sizeof(n->id), "%s-%d", host, (int)getpid());
        }
        n->levels = (int)par_config_int(cfg, "priority.levels");
        if (n->levels > NODE_MAX_LEVELS)
                n->levels = NODE_MAX_LEVELS;
        for (int L = 1; L <= n->levels; L++)
                par_kafka_signal_topic(cfg, L, n->topics[L - 1],
                                       sizeof(n->topics[0]));
        par_kafka_topic_name(cfg, "results", n->t_results,
                             sizeof(n->t_results));
        par_kafka_topic_name(cfg, "dlq", n->t_dlq, sizeof(n->t_dlq));
        par_kafka_topic_name(cfg, "metrics", n->t_metrics,
                             sizeof(n->t_metrics));
        par_kafka_topic_name(cfg, "workers", n->t_workers,
                             sizeof(n->t_workers));
}

/* The workers' view of the node (pipeline.h), once every handle in it
 * exists. */
static void fill_pipe_env(node_t *n)
{
        par_config_t *cfg = n->cfg;
        n->pipe = (pipe_env_t){
            .node_id = n->id,
            .t_results = n->t_results,
            .t_dlq = n->t_dlq,
            .codec = n->codec,
            .pub = n->pub,
            .sched = n->sched,
            .offsets = n->offsets,
            .holds = n->holds,
            .recipes = n->recipes,
            .chrome = n->chrome,
            .spin_opts = &n->spin_opts,
            .stats = &n->stats,
            .resource_lock =
                n->claims && par_config_bool(cfg, "claim.resource_lock"),
            .lease_ms = par_config_int(cfg, "claim.lease"),
            .backoff_ms = par_config_int(cfg, "retry.backoff"),
            .backoff_max_ms = par_config_int(cfg, "retry.backoff_max"),
            .max_attempts = (int)par_config_int(cfg, "max.attempts"),
            .claim_batch = (int)par_config_int(cfg, "claim.batch"),
            .value_max = n->value_max,
        };
}

par_err_t node_new(node_t **out, par_config_t *cfg, par_error_t *err)
{
        node_t *n = calloc(1, sizeof(*n));
        par_err_t rc;
        bson_error_t be;

        if (!n)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        n->cfg = cfg;
        n->wake[0] = n->wake[1] = -1;
        if (pipe2(n->wake, O_NONBLOCK | O_CLOEXEC)) {
                free(n);
                return par_error_set(err, PAR_ERR_IO, "pipe: %s",
                                     strerror(errno));
        }
        pthread_mutex_init(&n->held_lock, NULL);
        atomic_store(&n->lag, -1);
        n->started_ms = par_clock_wall_ms();
        node_names(n, cfg);

        n->claims = par_config_bool(cfg, "claim.enabled");
        par_signal_limits_from_config(&n->limits, cfg);
        n->grace_ms = par_config_int(cfg, "shutdown.grace");
        n->workers_min = (int)par_config_int(cfg, "workers.min");
        n->workers_max = (int)par_config_int(cfg, "workers.max");
        n->memory_limit_mb = par_config_int(cfg, "workers.memory_limit_mb");
        if (n->workers_max < n->workers_min) {
                rc = par_error_set(err, PAR_ERR_INVALID,
                                   "workers.max (%d) is below workers.min "
                                   "(%d)",
                                   n->workers_max, n->workers_min);
                goto fail;
        }

        par_sched_opts_t so = {
            .levels = n->levels,
            .aging_ms = par_config_int(cfg, "sched.aging"),
            .high_watermark = (int)par_config_int(cfg, "sched.queue.high"),
            .low_watermark = (int)par_config_int(cfg, "sched.queue.low"),
            .free_payload = job_free,
            .on_resume = wake_main,
            .wake_arg = n};
        n->queue_high = so.high_watermark;
        if ((rc = par_sched_new(&n->sched, &so, err)) ||
            (rc = par_offsets_new(&n->offsets, err)) ||
            (rc = par_codec_new(&n->codec, err)))
                goto fail;

        if (!(n->muri = mongoc_uri_new_with_error(
                  par_config_str(cfg, "mongo.uri"), &be))) {
                rc = par_error_set(err, PAR_ERR_INVALID, "mongo.uri: %s",
                                   be.message);
                goto fail;
        }
        n->mpool = mongoc_client_pool_new(n->muri);
        mongoc_client_pool_set_error_api(n->mpool, MONGOC_ERROR_API_VERSION_2);
        mongoc_client_pool_set_appname(n->mpool, "parallel-consumer");
        const char *db = par_config_str(cfg, "mongo.database");
        const char *coll = par_config_str(cfg, "mongo.collection");
        pool_opts_t po = {
            .node_id = n->id,
            .pipe = &n->pipe,
            .sched = n->sched,
            .claims = n->claims,
            .mpool = n->mpool,
            .database = db,
            .collection = coll,
            .sessions_collection = par_config_str(cfg, "sessions.collection"),
            .workers_min = n->workers_min,
            .workers_max = n->workers_max,
            .finishing_max = (int)par_config_int(cfg, "claim.finishing"),
            .idle_timeout_ms = par_config_int(cfg, "workers.idle_timeout"),
            .draining = &n->draining};
        if ((rc = holds_new(&n->holds, n->mpool, db, coll, n->id,
                            par_config_int(cfg, "claim.lease"), err)) ||
            (rc = pool_new(&n->pool, &po, err)))
                goto fail;

        const char *dir = par_config_str(cfg, "recipes.dir");
        rc = *dir ? par_recipe_load_dir(
                        &n->recipes, dir,
                        (int)par_config_int(cfg, "recipes.step_timeout"), err)
                  : par_recipe_set_new(&n->recipes, err);
        if (rc)
                goto fail;
        par_spin_opts_from_config(&n->spin_opts, cfg);
        par_chrome_opts_t co;
        if ((rc = par_chrome_opts_from_config(&co, cfg, err)))
                goto fail;

        if ((rc = par_metrics_new(&n->metrics, err)) ||
            (rc = par_metrics_new(&n->totals, err)) ||
            (rc = stats_init(&n->stats, n->metrics, n->totals, err)) ||
            (rc = status_init(n, err)))
                goto fail;
        obs_opts_t oo = {.metrics = n->metrics,
                         .cfg = cfg,
                         .node_id = n->id,
                         .levels = n->levels,
                         .topics = n->topics,
                         .recipes = n->recipes,
                         .sched = n->sched};
        if ((rc = obs_new(&n->obs, &oo, err)))
                goto fail;
        n->stats.obs = n->obs;

        const char *listen = par_config_str(cfg, "http.listen");
        if (*listen && (rc = endpoint_new(n, listen, err)))
                goto fail;
        /* Chrome last: everything a user can misconfigure locally (Kafka
         * keys, the HTTP address) is reported before any browser starts or
         * remote endpoint is contacted. */
        if ((rc = make_clients(n, err)) ||
            (rc = par_chrome_new(&n->chrome, &co, n->workers_max, err)))
                goto fail;
        pub_set_obs(n->pub, n->obs);
        fill_pipe_env(n);
        if (n->http && (rc = par_http_start(n->http, err)))
                goto fail;
        *out = n;
        return PAR_OK;
fail:
        node_destroy(n);
        return rc;
}

/* Runs rd_kafka_consumer_close on its own thread so shutdown can bound it.
 * Its rebalance callback runs here while the main thread only waits. */
static void *close_main(void *arg)
{
        node_t *n = arg;

        rd_kafka_consumer_close(n->consumer);
        atomic_store(&n->closed, true);
        return NULL;
}

/* Grows the pool while signals wait and every worker is busy; keeps at
 * least workers.min alive (replacing workers that died). */
static void size_pool(node_t *n, int64_t *chrome_rss_cache)
{
        par_error_t e;
        int size = pool_size(n->pool);

        /* A worker that stopped (retired or died) leaves the compacted
         * workers topic: tombstone its key before its slot is reused. */
        status_tombstone_stopped(n);
        pool_reap(n->pool);
        while (size < n->workers_min) {
                if (pool_start_worker(n->pool, &e))
                        return;
                size++;
        }
        if (size >= n->workers_max || pool_busy(n->pool) < size ||
            par_sched_depth(n->sched, 0) == 0)
                return;
        if (n->memory_limit_mb > 0 &&
            *chrome_rss_cache > n->memory_limit_mb * 1024 * 1024)
                return;
        if (!pool_start_worker(n->pool, &e))
                par_log(PAR_LOG_INFO, "consumer", "worker_added",
                        "workers=%d queued=%d", size + 1,
                        par_sched_depth(n->sched, 0));
}

/* Leaving without par_chrome_destroy (workers still drive tabs): kill
 * every browser process group we launched so none is orphaned. */
static void kill_browsers(node_t *n)
{
        pid_t g[NODE_MAX_BROWSERS];
        int ng = par_chrome_browser_pgids(n->chrome, g,
                                          (int)(sizeof(g) / sizeof(g[0])));

        for (int i = 0; i < ng; i++)
                kill(-g[i], SIGKILL);
}

static void handle(node_t *n, rd_kafka_message_t *m)
{
        if (!m->err)
                intake_message(n, m);
        else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                par_log(PAR_LOG_WARN, "consumer", "consume_error",
                        "error=\"%s\"", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
}

/* Takes level L's messages up to the room its local queue has. The queue
 * always has a bound: sched.queue.high is at least 1 (lib/base/config.c),
 * so "no bound" (the scheduler's high_watermark <= 0) never reaches here. */
static int take_level(node_t *n, int L)
{
        rd_kafka_message_t *batch[INTAKE_BATCH];
        int room = n->queue_high - par_sched_depth(n->sched, L);
        if (room > INTAKE_BATCH)
                room = INTAKE_BATCH;
        if (room <= 0)
                return 0;
        ssize_t got =
            rd_kafka_consume_batch_queue(n->lq[L - 1], 0, batch, (size_t)room);
        for (ssize_t i = 0; i < got; i++)
                handle(n, batch[i]);
        return got > 0 ? (int)got : 0;
}

/* One turn: the consumer queue (rebalance callbacks run here), then the
 * levels not held, most urgent first. Returns the messages taken. */
static int serve(node_t *n)
{
        rd_kafka_message_t *m;
        int got = 0;

        /* Only errors, unless a partition's forward was lost: its
         * messages then arrive here, and are taken all the same. */
        while (got < INTAKE_BATCH &&
               (m = rd_kafka_consumer_poll(n->consumer, 0))) {
                handle(n, m);
                got++;
        }
        assign_apply_flow(n);
        for (int L = n->levels; L >= 1; L--)
                if (!(n->paused & (1u << (L - 1))))
                        got += take_level(n, L);
        return got;
}

/* Sleeps until a queue or the scheduler wakes the loop, or ms pass. */
static void wait_wake(node_t *n, int ms)
{
        struct pollfd p = {.fd = n->wake[0], .events = POLLIN};
        if (poll(&p, 1, ms) > 0)
                drain_wake(n);
}

static void start(node_t *n)
{
        par_error_t e;
        const char *out[] = {n->t_results, n->t_dlq};

        pub_learn_topics(n->pub, out, 2, 3000);
        if (pub_start(n->pub, &e) || (n->claims && holds_start(n->holds, &e)) ||
            obs_start(n->obs, n->consumer,
                      par_config_int(n->cfg, "metrics.interval"), &e))
                par_log(PAR_LOG_ERROR, "consumer", "thread_failed",
                        "error=\"%s\"", e.msg);
        for (int i = 0; i < n->workers_min; i++)
                if (pool_start_worker(n->pool, &e))
                        par_log(PAR_LOG_ERROR, "consumer", "worker_failed",
                                "error=\"%s\"", e.msg);
        par_log(PAR_LOG_INFO, "consumer", "started",
                "node=%s levels=%d workers=%d..%d http=%d claims=%d", n->id,
                n->levels, n->workers_min, n->workers_max,
                n->http ? par_http_port(n->http) : 0, n->claims);
}

/* Leaving the group can hang in librdkafka 2.0.2 when a cooperative
 * rebalance races the close (seen as "Unknown member" on the revoke
 * commit). Everything finished is committed by then, so the wait is
 * bounded; the broker expires the member if we leave without a clean
 * close. True when the close returned. */
static bool close_bounded(node_t *n)
{
        pthread_t closer;
        if (pthread_create(&closer, NULL, close_main, n))
                return false;
        int64_t until = par_clock_mono_ms() + 15000;
        while (!atomic_load(&n->closed) && par_clock_mono_ms() < until)
                par_clock_sleep_ms(20);
        if (!atomic_load(&n->closed)) {
                par_log(PAR_LOG_WARN, "consumer", "close_timeout",
                        "after_ms=15000");
                return false;
        }
        pthread_join(closer, NULL);
        return true;
}

/* Graceful shutdown: stop taking work, let in-flight spins finish (their
 * results are produced by the workers), commit, leave. */
static int shut_down(node_t *n, volatile sig_atomic_t *stop)
{
        par_log(PAR_LOG_INFO, "consumer", "draining",
                "running=%d queued=%d grace_ms=%lld",
                par_sched_running(n->sched), par_sched_depth(n->sched, 0),
                (long long)n->grace_ms);
        atomic_store(&n->draining, true);
        par_sched_close(n->sched);
        assign_pause_all(n);
        int64_t deadline = par_clock_mono_ms() + n->grace_ms;
        int left;
        for (;;) {
                left = pool_stop(n->pool, par_clock_mono_ms());
                /* Results in flight still mark their offsets done. */
                if ((!left && !pub_inflight(n->pub)) ||
                    par_clock_mono_ms() >= deadline || *stop >= 2)
                        break;
                rd_kafka_message_t *m = rd_kafka_consumer_poll(n->consumer, 50);
                if (m) /* held: only stragglers; not tracked, refetched */
                        rd_kafka_message_destroy(m);
                commit_offsets(n, false);
                status_publish_workers(n);
        }
        if (*stop >= 2) {
                par_log(PAR_LOG_WARN, "consumer", "exit_now", "running=%d",
                        left);
                kill_browsers(n);
                _exit(1);
        }
        int dropped = par_sched_clear(n->sched);
        /* The auto-committer sends the final offsets once the group is
         * steady; a commit of our own during a rebalance (often the very
         * one that another node's leave starts) would be refused. */
        commit_final(n, 10000);
        holds_stop(n->holds);
        /* Give back claims of retries we will not run. */
        if (n->claims)
                holds_give_back(n->holds, left == 0);
        status_publish_final(n);
        /* The last snapshot: a node that leaves between two still leaves
         * its final counts on the topic. */
        status_publish_metrics(n, par_clock_mono_ms() - n->metrics_at);
        obs_stop(n->obs); /* its lag thread uses the consumer handle */
        bool closed = close_bounded(n);
        pub_stop(n->pub, 10000);
        if (left || !closed) {
                /* Spins overran the grace (or the close is stuck): kill
                 * the browsers; unfinished signals are retried elsewhere
                 * once their lease lapses. */
                kill_browsers(n);
                /* Workers or the closer still use the node: nothing can
                 * be torn down safely, so leave now (results and commits
                 * are out). */
                par_log(PAR_LOG_WARN, "consumer", "stopped",
                        "abandoned=%d after grace_ms=%lld", left,
                        (long long)n->grace_ms);
                _exit(0);
        }
        par_log(PAR_LOG_INFO, "consumer", "stopped",
                "dropped=%d abandoned=%d done=%llu", dropped, left,
                (unsigned long long)par_counter_get(n->stats.done));
        return 0;
}

int node_run(node_t *n, volatile sig_atomic_t *stop)
{
        int64_t now, next_commit = 0, next_pool = 0, next_status = 0;
        int64_t metrics_ms = par_config_int(n->cfg, "metrics.interval");
        int64_t commit_ms = par_config_int(n->cfg, "commit.interval");
        int64_t next_metrics = par_clock_mono_ms() + metrics_ms, crss = 0;
        unsigned commits = 0;

        n->metrics_at = par_clock_mono_ms();
        start(n);
        while (!*stop) {
                int got = serve(n);
                now = par_clock_mono_ms();
                /* Stores finished prefixes for the auto-committer, a few
                 * times per commit.interval so its commits are fresh. */
                if (now >= next_commit) {
                        commit_offsets(n, ++commits % 50 == 0);
                        next_commit = now + (commit_ms < 100 ? commit_ms : 100);
                }
                if (now >= next_pool) {
                        size_pool(n, &crss);
                        next_pool = now + 100;
                }
                if (now >= next_status) {
                        assign_reforward(n);
                        status_publish_workers(n);
                        if (n->memory_limit_mb > 0)
                                crss = status_chrome_rss(n);
                        next_status = now + 1000;
                }
                if (now >= next_metrics) {
                        status_publish_metrics(n, now - n->metrics_at);
                        n->metrics_at = now;
                        next_metrics = now + metrics_ms;
                }
                if (!got)
                        wait_wake(n, 50);
        }
        return shut_down(n, stop);
}

void node_destroy(node_t *n)
{
        if (!n)
                return;
        if (n->http)
                par_http_destroy(n->http);
        n->stats.obs = NULL;
        obs_destroy(n->obs); /* before the consumer handle it uses */
        destroy_queues(n);
        if (n->consumer)
                rd_kafka_destroy(n->consumer);
        pub_destroy(n->pub);
        par_chrome_destroy(n->chrome);
        par_recipe_set_destroy(n->recipes);
        par_sched_destroy(n->sched);
        par_offsets_destroy(n->offsets);
        pool_destroy(n->pool);
        holds_destroy(n->holds);
        if (n->mpool)
                mongoc_client_pool_destroy(n->mpool);
        mongoc_uri_destroy(n->muri);
        par_codec_destroy(n->codec);
        status_fini(n);
        stats_destroy(&n->stats);
        par_metrics_destroy(n->metrics);
        par_metrics_destroy(n->totals);
        free(n->parts);
        pthread_mutex_destroy(&n->held_lock);
        if (n->wake[0] >= 0)
                close(n->wake[0]);
        if (n->wake[1] >= 0)
                close(n->wake[1]);
        free(n);
}
