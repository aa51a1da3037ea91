/*
 * batch.c — see batch.h.
 *
 * With claims on, one MongoDB round trip per signal bounds a node on short
 * recipes. A worker that takes a job while more are queued than the idle
 * workers will take claims the next ones too, in the same round trip, and
 * puts them back where they were: whichever worker takes one later runs it
 * under the claim already made (the job carries its claimed_by in
 * prev_owner), with no round trip of its own. The batch grows with the
 * surplus of queued jobs over idle workers, so an idle node (or a short
 * queue) claims each signal alone, at once, and a backlog is claimed
 * BATCH_CLAIM_MAX at a time.
 *
 * The jobs claimed ahead are taken out of the scheduler for the round trip
 * (par_sched_try_next: the most urgent runnable ones, which are the next
 * to run anyway) so no other worker starts one half-claimed, and are put
 * back unrun in their places (par_sched_put_back). Until they run, their
 * claims are held like a deferred retry's: renewed, and given back with
 * attempt − 1 if the job is dropped (revoke, shutdown), since they never
 * ran.
 */
#include "batch.h"

#include <stdio.h>

#include "base/clock.h"
#include "base/log.h"
#include "job.h"
#include "obs.h"

/* The bound of claim.batch (its default, 32, cuts claim round trips by an
 * order of magnitude and keeps the leases claimed ahead few: each is
 * renewed until it runs). */
#define BATCH_CLAIM_MAX 64

/* A job that has no claim yet: not claimed ahead, not a retry or a
 * delivery waiting for its resource lock (those hold theirs). */
static bool fresh(const job_t *j)
{
        return !j->have_pre && !j->prev_owner[0];
}

/* Leaves the batch's answer for id on its job. A live claim held
 * elsewhere is asked again when the job runs (and waited for then). */
static void keep(const pipe_env_t *env, const pipe_worker_t *w, job_t *j,
                 const par_claim_info_t *ci)
{
        if (ci->outcome == PAR_CLAIM_LEASED)
                return;
        if (ci->outcome == PAR_CLAIM_OK || ci->outcome == PAR_CLAIM_EXPIRED) {
                holds_add(env->holds, j->id, w->owner, NULL, true);
                snprintf(j->prev_owner, sizeof(j->prev_owner), "%s", w->owner);
                j->holds_claim = true;
        }
        j->pre = *ci;
        j->have_pre = true;
}

void batch_claim(const pipe_env_t *env, const pipe_worker_t *w,
                 par_claim_t *claim, par_sched_job_t *sj, int idle_others)
{
        par_sched_job_t *taken[BATCH_CLAIM_MAX], *batch[BATCH_CLAIM_MAX];
        const char *ids[BATCH_CLAIM_MAX];
        par_claim_info_t info[BATCH_CLAIM_MAX];
        int ntaken = 0, n = 0;
        par_error_t e;

        int max = env->claim_batch < BATCH_CLAIM_MAX ? env->claim_batch
                                                     : BATCH_CLAIM_MAX;
        if (!claim || max <= 1 || !fresh(sj->payload))
                return;
        int surplus = par_sched_depth(env->sched, 0) - idle_others;
        if (surplus <= 0)
                return;
        if (surplus > max - 1)
                surplus = max - 1;
        batch[n] = sj;
        ids[n++] = ((job_t *)sj->payload)->id;
        int64_t mono = par_clock_mono_ms();
        while (ntaken < surplus) {
                par_sched_job_t *x = par_sched_try_next(env->sched, mono);
                if (!x)
                        break;
                taken[ntaken++] = x;
                if (fresh(x->payload)) {
                        batch[n] = x;
                        ids[n++] = ((job_t *)x->payload)->id;
                }
        }
        if (n > 1) {
                int64_t t0 = par_clock_mono_ms();
                if (par_claim_acquire_batch(claim, ids, (size_t)n,
                                            par_clock_wall_ms(), env->lease_ms,
                                            info, &e)) {
                        /* Each claims alone when it runs. */
                        par_counter_inc(env->stats->mongo_errors);
                        par_log(PAR_LOG_WARN, "consumer", "claim_error",
                                "signals=%d error=\"%s\"", n, e.msg);
                } else {
                        obs_claim(env->stats->obs,
                                  (par_clock_mono_ms() - t0) / 1e3);
                        for (int i = 0; i < n; i++)
                                keep(env, w, batch[i]->payload, &info[i]);
                }
        }
        for (int i = 0; i < ntaken; i++)
                par_sched_put_back(env->sched, taken[i]);
}
