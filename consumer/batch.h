/*
 * batch.h — claiming queued signals ahead, several per round trip
 * (internal to consumer/).
 *
 * Owns: deciding how many queued jobs a worker claims together with the
 * one it is about to run, claiming them in one call
 * (par_claim_acquire_batch), and leaving each claim on its job for
 * whichever worker runs it. Stays out: running a job and using the claim
 * (pipeline.c), renewing and giving back the claims (holds.c), worker
 * threads (pool.c).
 *
 * Threads: a worker thread, with its own claim handle.
 */
#ifndef PAR_CONSUMER_BATCH_H
#define PAR_CONSUMER_BATCH_H

#include "pipeline.h"

/*
 * sj: the job worker w just took from the scheduler (claims on). When more
 * runnable jobs are queued than the other idle workers (idle_others) will
 * take at once, claims sj and up to that surplus of them (at most
 * BATCH_CLAIM_MAX in all) in one round trip: each job so claimed or found
 * final carries the answer (job_t.have_pre) and goes back to its place in
 * the scheduler; sj keeps its own. Otherwise (a short queue, an idle node)
 * does nothing and sj claims alone, at once.
 */
void batch_claim(const pipe_env_t *env, const pipe_worker_t *w,
                 par_claim_t *claim, par_sched_job_t *sj, int idle_others);

#endif
