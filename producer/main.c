/*
 * parallel-producer — tails the MongoDB signals collection's change stream
 * into the Kafka priority topics, losing nothing (see producer.h for the
 * structure and docs/PRODUCER.md for the guarantees).
 *
 * A linear main() in kcat's manner: config layers, signal handlers that
 * only set a flag, the loop, an orderly teardown. The lease thread (lease.c)
 * takes and renews the lease; the loop, while this process holds it: serve
 * delivery reports and move the checkpoint, write it when due, sweep
 * expired worker leases, read the next slice of events or back off. When
 * the lease is lost it stops publishing at once and waits, as a standby,
 * for the lease thread to win it again.
 *
 * Exit codes: 0 after SIGTERM/SIGINT with everything delivered and
 * checkpointed as far as possible; 1 on a start-up failure; 2 on bad
 * arguments or configuration.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/backoff.h"
#include "base/clock.h"
#include "msg/kafka.h"
#include "base/log.h"
#include "producer.h"

volatile sig_atomic_t par_producer_stop;

static void on_signal(int sig)
{
        (void)sig;
        par_producer_stop = 1;
}

static void usage(FILE *out)
{
        fputs("usage: parallel-producer [-c FILE] [-X key=value]... "
              "[-X dump] [--help] [--version]\n\n"
              "Tails the MongoDB signals collection's change stream into "
              "the Kafka topics\n<topic.prefix>.signals.p1..pN (invalid "
              "signals to <topic.prefix>.dlq).\nRun two for high "
              "availability: a lease in MongoDB keeps exactly one "
              "active.\nSIGTERM: stop reading, flush, checkpoint, release "
              "the lease, exit 0.\n\n",
              out);
        par_config_help(out, PAR_SCOPE_PRODUCER);
}

static int health(void *opaque, const char *path, const char *query,
                  par_http_body_t *body, const char **ctype)
{
        prod_t *p = opaque;
        int64_t age = par_clock_wall_ms() - (int64_t)atomic_load(&p->h_last_ok);
        int streak = atomic_load(&p->h_restart_streak);
        bool ok = age < 3 * p->lease_ttl;
        /* Three restarts in a row without progress: something the pipeline
         * cannot get past (it backs off up to 10 s between tries). */
        bool looping = streak >= 3;
        json_t *j =
            json_pack("{s:s,s:s,s:s,s:I,s:i}", "status",
                      !ok       ? "unhealthy"
                      : looping ? "restarting"
                                : "ok",
                      "role", atomic_load(&p->h_active) ? "active" : "standby",
                      "node_id", p->node_id, "mongo_ok_ms_ago", (json_int_t)age,
                      "restart_streak", streak);
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;

        *ctype = "application/json";
        par_http_body_printf(body, "%s\n", text ? text : "{}");
        free(text);
        json_decref(j);
        return ok && !looping ? 200 : 503;
}

static double kafka_client_errors(void *opaque)
{
        (void)opaque;
        return (double)par_kafka_client_errors();
}

static par_err_t setup_metrics(prod_t *p, par_error_t *err)
{
        par_metrics_t *m;
        par_err_t rc = par_metrics_new(&p->metrics, err);

        if (rc)
                return rc;
        m = p->metrics;
        p->m_events = par_metrics_counter(m, "parallel_producer_events", NULL,
                                          "Change events read.");
        p->m_produced = par_metrics_counter(
            m, "parallel_producer_delivered", NULL,
            "Messages (signals and dead letters) acknowledged by Kafka.");
        p->m_backfilled = par_metrics_counter(
            m, "parallel_producer_backfilled", NULL,
            "Signals published by the start-up backfill scan.");
        p->m_rejected = par_metrics_counter(
            m, "parallel_producer_rejected", NULL,
            "Invalid signals marked rejected and sent to the DLQ.");
        p->m_skipped = par_metrics_counter(
            m, "parallel_producer_skipped", NULL,
            "Events needing no message (signal no longer pending).");
        p->m_expired = par_metrics_counter(
            m, "parallel_producer_expired", NULL,
            "Signals already past expires_at, marked expired.");
        p->m_delivery_errors = par_metrics_counter(
            m, "parallel_producer_delivery_errors", NULL,
            "Failed delivery reports (each is published again).");
        p->m_checkpoints =
            par_metrics_counter(m, "parallel_producer_checkpoints", NULL,
                                "Resume-token checkpoints written.");
        p->m_requeued = par_metrics_counter(
            m, "parallel_producer_requeued", NULL,
            "Signals put back to pending by the lease sweeper.");
        p->m_restarts = par_metrics_counter(
            m, "parallel_producer_pipeline_restarts", NULL,
            "Pipeline restarts from the checkpoint after an error.");
        p->m_set_aside = par_metrics_counter(
            m, "parallel_producer_set_aside", NULL,
            "Documents that could not be published nor marked rejected and "
            "were skipped with a dead letter (or only a log line).");
        p->m_restart_streak = par_metrics_gauge(
            m, "parallel_producer_pipeline_restart_streak", NULL,
            "Pipeline restarts since the last step that made progress (a "
            "restart loop when it keeps growing).");
        p->m_cp_age = par_metrics_gauge(
            m, "parallel_producer_checkpoint_age_seconds", NULL,
            "Time since the checkpointed event was read, while newer events "
            "are not yet checkpointed (0 when caught up).");
        p->m_lag = par_metrics_gauge(
            m, "parallel_producer_stream_lag_seconds", NULL,
            "now - clusterTime of the last change event read (0 when idle).");
        p->m_active = par_metrics_gauge(
            m, "parallel_producer_active", NULL,
            "1 while this producer holds the lease, 0 on standby.");
        p->m_inflight =
            par_metrics_gauge(m, "parallel_producer_inflight", NULL,
                              "Events read but not yet fully delivered.");
        char lb[200];
        snprintf(lb, sizeof(lb), "version=\"%s\",node=\"%s\"", PARALLEL_VERSION,
                 p->node_id);
        par_gauge_set(par_metrics_gauge(m, "parallel_build_info", lb,
                                        "Which build runs where (always 1)."),
                      1);
        int levels = (int)par_config_int(p->cfg, "priority.levels");
        for (int L = 1; L <= levels && L <= PROD_MAX_LEVELS; L++) {
                snprintf(lb, sizeof(lb), "priority=\"%d\"", L);
                p->m_published[L] = par_metrics_counter(
                    m, "parallel_producer_published", lb,
                    "Signals acknowledged by Kafka, per priority topic.");
                p->m_publish_s[L] = par_metrics_histogram(
                    m, "parallel_producer_publish_seconds", lb,
                    "A signal produced to Kafka's acknowledgement.",
                    &par_buckets_short);
        }
        p->m_dead_letters = par_metrics_counter(
            m, "parallel_dead_letters", "reason=\"rejected\"",
            "Messages sent to the dead-letter topic, by reason.");
        if ((rc = par_metrics_counter_fn(
                 m, "parallel_kafka_errors", "kind=\"client\"",
                 "librdkafka errors: client-level, failed deliveries.",
                 kafka_client_errors, NULL, err)))
                return rc;
        p->m_kafka_delivery = par_metrics_counter(m, "parallel_kafka_errors",
                                                  "kind=\"delivery\"", NULL);
        p->m_mongo_errors = par_metrics_counter(
            m, "parallel_mongo_errors", NULL,
            "Failed MongoDB calls (lease, stream, checkpoint, marking).");
        return PAR_OK;
}

static par_err_t setup(prod_t *p, par_error_t *err)
{
        bson_error_t e;
        mongoc_uri_t *uri;
        char host[64];
        const char *listen;
        par_err_t rc;

        par_signal_limits_from_config(&p->limits, p->cfg);
        p->message_max = par_kafka_message_max(p->cfg);
        p->value_max = par_kafka_value_max_of(p->message_max);
        p->lease_ttl = par_config_int(p->cfg, "producer.lease.ttl");
        if (*par_config_str(p->cfg, "node.id"))
                snprintf(p->node_id, sizeof(p->node_id), "%s",
                         par_config_str(p->cfg, "node.id"));
        else {
                if (gethostname(host, sizeof(host)))
                        snprintf(host, sizeof(host), "host");
                host[sizeof(host) - 1] = '\0';
                snprintf(p->node_id, sizeof(p->node_id), "%s-%d", host,
                         (int)getpid());
        }
        snprintf(p->lease_id, sizeof(p->lease_id), "producer/%s.%s/%s",
                 par_config_str(p->cfg, "mongo.database"),
                 par_config_str(p->cfg, "mongo.collection"),
                 par_config_str(p->cfg, "topic.prefix"));
        if (!par_kafka_topic_name(p->cfg, "dlq", p->dlq_topic,
                                  sizeof(p->dlq_topic)))
                return par_error_set(err, PAR_ERR_INVALID,
                                     "topic.prefix: too long");

        /* The Kafka producer is built only once the lease is won; check
         * the kafka.* keys now so a typo fails at start, not later. */
        rd_kafka_conf_t *kc = NULL;
        rc = par_kafka_conf_new(&kc, p->cfg, "parallel-producer", err);
        if (rc)
                return rc;
        rd_kafka_conf_destroy(kc);

        rc = par_codec_new(&p->codec, err);
        if (rc)
                return rc;
        rc = setup_metrics(p, err);
        if (rc)
                return rc;

        uri =
            mongoc_uri_new_with_error(par_config_str(p->cfg, "mongo.uri"), &e);
        if (!uri)
                return par_error_set(err, PAR_ERR_INVALID, "mongo.uri: %s",
                                     e.message);
        p->client = mongoc_client_new_from_uri_with_error(uri, &e);
        mongoc_uri_destroy(uri);
        if (!p->client)
                return par_error_set(err, PAR_ERR_INVALID, "mongo.uri: %s",
                                     e.message);
        mongoc_client_set_appname(p->client, "parallel-producer");
        p->signals = mongoc_client_get_collection(
            p->client, par_config_str(p->cfg, "mongo.database"),
            par_config_str(p->cfg, "mongo.collection"));
        p->state = mongoc_client_get_collection(
            p->client, par_config_str(p->cfg, "mongo.database"),
            par_config_str(p->cfg, "producer.state.collection"));
        atomic_store(&p->h_last_ok, (long long)par_clock_wall_ms());

        listen = par_config_str(p->cfg, "producer.http.listen");
        if (*listen) {
                rc = par_http_new(&p->http, listen, err);
                if (!rc)
                        rc = par_http_route(p->http, "/metrics",
                                            par_http_metrics_handler,
                                            p->metrics, err);
                if (!rc)
                        rc = par_http_route(p->http, "/health", health, p, err);
                if (!rc)
                        rc = par_http_start(p->http, err);
                if (rc)
                        return rc;
        }
        return PAR_OK;
}

static void teardown(prod_t *p)
{
        pipeline_stop(p, false);
        lease_stop(p);
        par_http_destroy(p->http);
        if (p->signals)
                mongoc_collection_destroy(p->signals);
        if (p->state)
                mongoc_collection_destroy(p->state);
        if (p->client)
                mongoc_client_destroy(p->client);
        par_metrics_destroy(p->metrics);
        par_codec_destroy(p->codec);
}

/* Stops the pipeline after an error and waits before the next start. */
static void restart_later(prod_t *p, const char *why, int *failures)
{
        int backoff_ms = (int)par_backoff_ms(250, 10000, ++*failures);

        par_log(PAR_LOG_WARN, COMP, "pipeline.restart",
                "why=\"%s\" backoff_ms=%d", why, backoff_ms);
        par_counter_inc(p->m_restarts);
        par_gauge_set(p->m_restart_streak,
                      atomic_fetch_add(&p->h_restart_streak, 1) + 1);
        pipeline_stop(p, false);
        for (int waited = 0; waited < backoff_ms && !par_producer_stop;
             waited += 50) {
                par_clock_sleep_ms(50);
                (void)lease_held(p); /* keep the heartbeat going */
        }
}

static void loop(prod_t *p)
{
        int failures = 0; /* restarts since the last good step */
        int64_t sweep_every =
            par_config_int(p->cfg, "producer.sweeper.interval");
        int max_wait = (int)par_config_int(p->cfg, "producer.idle.max_wait");
        par_error_t err;

        while (!par_producer_stop) {
                int handled = 0;
                int64_t t_step, epoch = lease_held(p);
                par_err_t rc;

                if (p->running && epoch != p->epoch) {
                        /* Lost (or lapsed): stop publishing at once; no
                         * checkpoint, the new holder owns it. */
                        par_log(PAR_LOG_WARN, COMP, "pipeline.standby",
                                "epoch=%lld", (long long)p->epoch);
                        pipeline_stop(p, false);
                }
                if (!epoch) {
                        par_clock_sleep_ms(50);
                        continue;
                }
                if (!p->running) {
                        p->epoch = epoch;
                        p->next_sweep = par_clock_wall_ms();
                        rc = pipeline_start(p, &err);
                        if (rc) {
                                restart_later(p, err.msg, &failures);
                                continue;
                        }
                        par_log(PAR_LOG_INFO, COMP, "pipeline.started",
                                "node=%s epoch=%lld", p->node_id,
                                (long long)p->epoch);
                }

                pipeline_advance(p);
                rc = lease_checkpoint(p, false, &err);
                if (rc == PAR_ERR_CANCELLED) {
                        pipeline_stop(p, false);
                        continue;
                } else if (rc) {
                        par_counter_inc(p->m_mongo_errors);
                        par_log(PAR_LOG_WARN, COMP, "checkpoint.failed",
                                "err=\"%s\"", err.msg);
                }
                if (p->restart) {
                        restart_later(p,
                                      p->kafka_fatal ? "kafka fatal error"
                                                     : "delivery failed or "
                                                       "stream invalidated",
                                      &failures);
                        continue;
                }
                if (sweep_every && par_clock_wall_ms() >= p->next_sweep) {
                        sweeper_run(p);
                        p->next_sweep = par_clock_wall_ms() + sweep_every;
                }

                t_step = par_clock_wall_ms();
                rc = pipeline_step(p, &handled, &err);
                t_step = par_clock_wall_ms() - t_step;
                if (t_step > p->lease_ttl / 3)
                        par_log(PAR_LOG_WARN, COMP, "stream.slow",
                                "ms=%lld events=%d", (long long)t_step,
                                handled);
                if (rc) {
                        restart_later(p, err.msg, &failures);
                        continue;
                }
                failures = 0;
                /* Progress is an event completed, or nothing left to
                 * complete: re-reading the events after a poison one is
                 * not (that kept a replay loop out of /health). */
                if ((p->progressed || par_seqwin_size(p->win) == 0) &&
                    atomic_load(&p->h_restart_streak)) {
                        atomic_store(&p->h_restart_streak, 0);
                        par_gauge_set(p->m_restart_streak, 0);
                }
                p->progressed = false;
                if (handled) {
                        p->idle_wait_ms = 0;
                } else if (t_step >= max_wait / 2) {
                        /* The server held the empty getMore for its
                         * maxAwaitTimeMS: polling again at once loses no
                         * CPU, and a back-off would only add latency. */
                        p->idle_wait_ms = 0;
                        rd_kafka_poll(p->rk, 0);
                } else {
                        /* An empty getMore answered at once (a server that
                         * does not wait): back off in rd_kafka_poll. */
                        p->idle_wait_ms =
                            p->idle_wait_ms ? p->idle_wait_ms * 2 : 1;
                        if (p->idle_wait_ms > max_wait)
                                p->idle_wait_ms = max_wait;
                        rd_kafka_poll(p->rk, p->idle_wait_ms);
                }
        }
}

int main(int argc, char **argv)
{
        prod_t p;
        par_error_t err = {0};
        bool dump = false;
        int rc = 2, lvl;
        struct sigaction sa;

        memset(&p, 0, sizeof(p));
        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
                        usage(stdout);
                        return 0;
                }
                if (!strcmp(argv[i], "--version")) {
                        printf("parallel-producer %s\n", PARALLEL_VERSION);
                        return 0;
                }
        }
        if (par_config_new(&p.cfg, &err) ||
            par_config_parse_args(p.cfg, &argc, argv, &dump, &err)) {
                fprintf(stderr, "parallel-producer: %s\n", err.msg);
                goto out;
        }
        if (par_kafka_check_sizes(p.cfg, &err)) {
                fprintf(stderr, "parallel-producer: %s\n", err.msg);
                goto out;
        }
        if (argc > 1) {
                fprintf(stderr,
                        "parallel-producer: unexpected argument '%s' (try "
                        "--help)\n",
                        argv[1]);
                goto out;
        }
        if (dump) {
                par_config_dump(p.cfg, stdout);
                rc = 0;
                goto out;
        }
        lvl = par_log_level_parse(par_config_str(p.cfg, "log.level"));
        if (lvl >= 0)
                par_log_set_level((par_log_level_t)lvl);

        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);

        mongoc_init();
        rc = 1;
        if (setup(&p, &err)) {
                fprintf(stderr, "parallel-producer: %s\n", err.msg);
                goto cleanup;
        }
        par_log(PAR_LOG_INFO, COMP, "started",
                "node=%s lease=%s http=%s port=%d", p.node_id, p.lease_id,
                par_config_str(p.cfg, "producer.http.listen"),
                p.http ? par_http_port(p.http) : 0);
        if (lease_start(&p, &err)) {
                fprintf(stderr, "parallel-producer: %s\n", err.msg);
                goto cleanup;
        }
        loop(&p);

        /* SIGTERM: stop reading, flush, checkpoint, release the lease. */
        par_log(PAR_LOG_INFO, COMP, "stopping", "active=%d",
                p.running && lease_held(&p) == p.epoch);
        pipeline_stop(&p, true);
        lease_stop(&p);
        par_log(PAR_LOG_INFO, COMP, "stopped",
                "events=%llu delivered=%llu rejected=%llu",
                (unsigned long long)par_counter_get(p.m_events),
                (unsigned long long)par_counter_get(p.m_produced),
                (unsigned long long)par_counter_get(p.m_rejected));
        rc = 0;
cleanup:
        teardown(&p);
        mongoc_cleanup();
out:
        par_config_destroy(p.cfg);
        return rc;
}
