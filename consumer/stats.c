/*
 * stats.c — registering a node's counters and histograms, in one place so
 * the exported names and help texts are listed together. A handle that
 * fails to register is NULL, which the update functions ignore: a bad
 * registration is logged by the registry and never stops a node.
 */
#include "stats.h"

void stats_init(stats_t *s, par_metrics_t *m)
{
#define CNT(var, st)                                                           \
        s->var = par_metrics_counter(m, "parallel_spins", "status=\"" st "\"", \
                                     "Deliveries handled, by outcome.")
        CNT(done, "done");
        CNT(failed, "failed");
        CNT(retrying, "retrying");
        CNT(dead, "dead");
        CNT(expired, "expired");
        CNT(skipped, "skipped");
#undef CNT
        s->deferred = par_metrics_counter(
            m, "parallel_claims_deferred", NULL,
            "Deliveries put back because another worker held the lease.");
        s->undecodable = par_metrics_counter(
            m, "parallel_messages_undecodable", NULL,
            "Signal messages that could not be decoded (sent to the DLQ).");
        s->mongo_errors = par_metrics_counter(
            m, "parallel_mongo_errors", NULL,
            "MongoDB calls that failed (claims, finishes).");
        s->wait = par_metrics_hist(m, "parallel_wait_seconds", NULL,
                                   "Kafka timestamp of the signal to the "
                                   "start of its spin.",
                                   1e-6);
        s->spin = par_metrics_hist(m, "parallel_spin_seconds", NULL,
                                   "Spin duration.", 1e-6);
        s->e2e =
            par_metrics_hist(m, "parallel_e2e_seconds", NULL,
                             "Signal created_at to its final result.", 1e-6);
}
