/*
 * stats.c — registering a node's counters and histograms, in one place so
 * the exported names and help texts are listed together. A handle that
 * fails to register is NULL, which the update functions ignore: a bad
 * registration is logged by the registry and never stops a node.
 */
#include "stats.h"

par_err_t stats_init(stats_t *s, par_metrics_t *m, par_metrics_t *totals,
                     par_error_t *err)
{
        par_err_t rc;
#define CNT(var, st)                                                           \
        s->var = par_metrics_counter(totals, "parallel_spins",                 \
                                     "status=\"" st "\"", NULL)
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
        if ((rc = par_hist_new(&s->wait, err)) ||
            (rc = par_hist_new(&s->spin, err)) ||
            (rc = par_hist_new(&s->e2e, err)))
                return rc;
        return PAR_OK;
}

void stats_destroy(stats_t *s)
{
        par_hist_destroy(s->wait);
        par_hist_destroy(s->spin);
        par_hist_destroy(s->e2e);
        s->wait = s->spin = s->e2e = NULL;
}
