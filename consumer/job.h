/*
 * job.h — a Kafka message turned into work: the scheduler's payload.
 *
 * Owns: the job record (the decoded signal, the raw bytes kept for the dead
 * letter queue, and the retry bookkeeping a job carries between attempts)
 * and its release. Stays out: how a job is made (intake.c) and how it runs
 * (pipeline.c).
 */
#ifndef PAR_CONSUMER_JOB_H
#define PAR_CONSUMER_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "holds.h"
#include "msg/kafka.h"
#include "store/claim.h"

/* Owned by whoever holds the scheduler job (freed with job_free). */
typedef struct job {
        holds_t *holds; /* where a claim kept for a retry is given back */
        char topic[PAR_KAFKA_TOPIC_MAX];
        int32_t partition;
        int64_t offset;
        int64_t queued_at;   /* Kafka message timestamp (ms epoch) */
        int64_t received_ms; /* monotonic, when the poll thread got it */
        json_t *signal;      /* decoded Signal record */
        void *raw;           /* the message value as read (for the DLQ) */
        size_t raw_len;
        const char *id, *recipe, *resource, *traceparent; /* in signal */
        int priority;
        int64_t created_at, expires_at;
        int32_t msg_attempt;   /* Signal.attempt */
        char prev_owner[160];  /* local retry: the worker that ran before */
        int attempts_here;     /* failed attempts run by this node */
        int deferrals;         /* times put back because leased elsewhere */
        bool holds_claim;      /* claim held while deferred (renewed) */
        bool lock_wait;        /* deferred for its resource lock: the claim
                                  kept meanwhile is not a failed attempt */
        int32_t claim_attempt; /* the document's attempt when lock_wait */
        /* Claimed ahead in a batch (batch.c) by the worker prev_owner names
         * (held, renewed, given back unrun if dropped, like a retry's), or
         * found final there: what the claim said, used once by the run. */
        bool have_pre;
        par_claim_info_t pre;
} job_t;

/* Frees a job (NULL is fine); a job dropped while holding a claim for its
 * retry (revoke, shutdown) has that claim queued for release. Any thread;
 * takes only the held-claims lock. */
void job_free(void *job);

#endif
