/*
 * pipeline.c — the pipeline every signal goes through on a worker:
 *
 *   claim (MongoDB findAndModify) → resource lock → spin (par_spin_run on
 *   the worker's tab, or the browser-less noop) → SpinResult to
 *   <prefix>.results → (its delivery report) document update → offset
 *   marked done.
 *
 * The order is the same for every outcome, so a crash between two steps
 * leaves a state the next delivery handles: no result yet → the spin runs
 * again (attempt + 1 once the lease lapses); result but no document update
 * → the lease lapses and the signal runs again (results are per attempt);
 * document final but offset not committed → the redelivery is skipped.
 *
 * Retries are local: a transient failure with attempts left produces a
 * "retrying" result, keeps the claim (the renewer keeps its lease alive) and
 * puts the job back into the scheduler with a doubling backoff, at the head
 * of its resource, so per-resource order survives retries and the signal is
 * never re-published (a re-published copy would land behind younger signals
 * of its resource). The retry reclaims from the previous worker, which
 * increments the document's attempt. Attempts count on the document, so
 * attempts made on a crashed node count too. Exhausted → "dead" + DLQ; a
 * permanent failure (recipe error, unknown recipe) → "failed" + DLQ at once.
 *
 * A signal leased by someone else (a redelivery while its holder still
 * runs it) is deferred until the lease ends rather than skipped: if the
 * holder finishes, the next claim sees a terminal document and skips; if
 * the holder died, the claim takes it over. Its offset stays uncommitted
 * meanwhile, so nothing is lost whichever node ends up running it.
 *
 * A signal with a resource of its own (not its id) also takes the
 * resource's lock (claim.h) between the claim and the spin, so signals of
 * one resource never run at once anywhere, even at different priorities
 * (different topics, possibly different nodes). A lock held elsewhere is
 * waited for like a lease held elsewhere, keeping the claim (renewed): the
 * next try moves the claim to whichever worker runs it without counting an
 * attempt. The lock goes with the claim through retries and is deleted
 * after the document update.
 *
 * A final result that is not a failure (done, expired) is published
 * asynchronously: the worker hands it to the producer and takes the next
 * signal. Without claims the delivery report marks the offset done and
 * frees the scheduler slot (and the resource with it). With claims the
 * report queues the outcome to the finisher (finisher.c: one thread, its
 * own MongoDB client), which writes the outcomes of many signals per round
 * trip (par_claim_finish_batch, each fenced by its claim's owner), then,
 * per signal and in this order: deletes the resource lock, stops renewing
 * the claim, marks the offset done and frees the scheduler slot. So the
 * order per signal is unchanged: result acknowledged → document final →
 * offset committable. Results in flight, reported or not, until their
 * document is written are bounded by the producer (pub_send_async waits
 * beyond the bound; pub_settle ends one), and with claims also by the
 * finisher's places (as many as workers): a worker that finds none free
 * finishes its signal itself, so a slow store slows the workers as it did
 * (no backlog for an urgent signal to wait behind) and a crash leaves no
 * more signals acknowledged but unwritten (to run again) than that. Failures
 * (result + dead letter), retries and skips keep the synchronous path,
 * where the worker waits for the report and writes the document itself.
 *
 * The machine: pipe_run moves a run_t through steps (step_t); each step
 * function does one stage and returns the next step. The outcome is an enum
 * (pipe_outcome_t), turned into the status string only where it is written
 * out.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/backoff.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/text.h"
#include "job.h"
#include "msg/kafka.h"
#include "obs.h"
#include "pipeline.h"
#include "sessions.h"

const char *pipe_outcome_name(pipe_outcome_t o)
{
        switch (o) {
        case PIPE_DEFERRED:
                return "deferred";
        case PIPE_DONE:
                return "done";
        case PIPE_FAILED:
                return "failed";
        case PIPE_RETRYING:
                return "retrying";
        case PIPE_DEAD:
                return "dead";
        case PIPE_EXPIRED:
                return "expired";
        case PIPE_SKIPPED:
                return "skipped";
        }
        return "unknown";
}

typedef enum step {
        STEP_CLAIM,   /* claims on: take (or take over) the signal's claim */
        STEP_LOCK,    /* claims on: the resource lock, then hold the claim */
        STEP_ADMIT,   /* claims off: attempt from the message */
        STEP_SPIN,    /* run the recipe and classify */
        STEP_EXPIRE,  /* past expires_at: never runs */
        STEP_SKIP,    /* already final: a "skipped" result, offset done */
        STEP_PUBLISH, /* result (and dead letter) out */
        STEP_RETRY,   /* keep the claim, re-queue after a backoff */
        STEP_FINISH,  /* document, lock released, offset done */
        STEP_END,
} step_t;

/* One delivery on one worker. */
typedef struct run {
        const pipe_env_t *env;
        const pipe_worker_t *w;
        par_claim_t *claim; /* NULL: claims off */
        par_sched_job_t *sj;
        job_t *j;
        char prevbuf[sizeof(((job_t *)0)->prev_owner)];
        const char *prev;  /* the claim's previous owner (a local retry) */
        const char *owner; /* whose claim this run holds: claimed_by */
        char ownerbuf[sizeof(((job_t *)0)->prev_owner)];
        bool reowned; /* the claim handle acts as owner for this run */
        par_claim_info_t ci;
        bool locked; /* we hold the resource lock */

        /* the outcome */
        pipe_outcome_t outcome;
        int32_t attempt;
        int64_t claimed_at, started_at, finished_at; /* 0 = null */
        par_spin_result_t sr;
        bool have_sr;
        const par_recipe_t *recipe; /* may be NULL */
        bool failed;                /* err_* are set */
        par_spin_class_t err_class;
        const char *err_code;
        char err_msg[300];
        int err_step; /* -1: none */
} run_t;

/*
 * Caps the extracted values (a JSON object of strings, modified) to budget
 * bytes in all, each value to an equal share, cut at a character boundary
 * with PAR_TEXT_CUT_MARK: a 2 MB extract made the result too large for the
 * results topic and its worker retried forever. Applied once, to the spin's
 * own values, so the result and the document carry the same (the document
 * used to keep the whole value: 2 MB of it on the signal, and past 16 MB an
 * update MongoDB refuses).
 */
static void cap_values(json_t *values, size_t budget)
{
        size_t n = json_object_size(values), total = 0, share;
        const char *k;
        json_t *v;

        json_object_foreach(values, k, v) total +=
            json_string_length(v) + strlen(k);
        if (total <= budget || n == 0)
                return;
        share = budget / n;
        json_object_foreach(values, k, v)
        {
                size_t len = json_string_length(v);
                if (!json_is_string(v) || len <= share)
                        continue;
                char *cut = malloc(share + 1);
                if (!cut)
                        continue;
                size_t m = par_text_clip(cut, share + 1, json_string_value(v),
                                         len, share, NULL);
                json_object_set_new(values, k, json_stringn(cut, m));
                free(cut);
        }
}

static json_t *result_json(const run_t *r, const char *traceparent)
{
        const job_t *j = r->j;
        const par_spin_result_t *sr = r->have_sr ? &r->sr : NULL;
        /* Already capped (step_spin). */
        json_t *values = sr && sr->values && r->outcome == PIPE_DONE
                             ? json_deep_copy(sr->values)
                             : json_object();
        json_t *steps = json_array();
        if (sr && r->recipe)
                for (size_t i = 0; i < sr->nsteps && i < r->recipe->nsteps; i++)
                        json_array_append_new(
                            steps,
                            json_pack(
                                "{s:s,s:I}", "type",
                                par_step_type_name(r->recipe->steps[i].type),
                                "duration_us",
                                (json_int_t)sr->step_ms[i] * 1000));
        json_t *error = json_null();
        if (r->failed) {
                error = json_pack("{s:s,s:s,s:s}", "class",
                                  par_spin_class_name(r->err_class), "code",
                                  r->err_code, "message", r->err_msg);
                json_object_set_new(error, "step",
                                    r->err_step >= 0 ? json_integer(r->err_step)
                                                     : json_null());
        }
#define TS(v) ((v) ? json_integer(v) : json_null())
        return json_pack(
            "{s:s,s:s,s:s,s:i,s:s,s:i,s:s,s:s,s:o,s:o,s:o,s:I,s:I,s:o,s:o,"
            "s:I,s:s}",
            "signal_id", j->id, "recipe", j->recipe, "resource", j->resource,
            "priority", j->priority, "status", pipe_outcome_name(r->outcome),
            "attempt", (int)r->attempt, "node_id", r->env->node_id, "worker_id",
            r->w->id, "values", values, "error", error, "steps", steps,
            "created_at", (json_int_t)j->created_at, "queued_at",
            (json_int_t)j->queued_at, "claimed_at", TS(r->claimed_at),
            "started_at", TS(r->started_at), "finished_at",
            (json_int_t)r->finished_at, "traceparent", traceparent);
#undef TS
}

/* The child span of this delivery, as a traceparent string. */
static void child_trace(const job_t *j, char out[PAR_TRACEPARENT_LEN + 1])
{
        par_trace_t parent, child;
        if (par_kafka_trace_parse(j->traceparent, strlen(j->traceparent),
                                  &parent, NULL) == PAR_OK)
                par_kafka_trace_child(&parent, &child);
        else
                par_kafka_trace_root(&child);
        par_kafka_trace_format(&child, out);
}

/* The result's bytes and its trace context. */
static par_err_t encode_result(const run_t *r, char tp[PAR_TRACEPARENT_LEN + 1],
                               void **buf, size_t *len)
{
        par_error_t e;
        par_err_t rc;

        child_trace(r->j, tp);
        json_t *res = result_json(r, tp);
        if (!res)
                return PAR_ERR_NOMEM;
        rc = par_codec_encode(r->env->codec, PAR_SCHEMA_RESULT, res, buf, len,
                              &e);
        json_decref(res);
        if (rc)
                par_log(PAR_LOG_ERROR, "consumer", "result_encode",
                        "signal=%s error=\"%s\"", r->j->id, e.msg);
        return rc;
}

/* Produces the result (waiting for delivery, retrying until it is out or
 * the node gives up on shutdown). */
static par_err_t publish_result(const run_t *r)
{
        const pipe_env_t *env = r->env;
        const job_t *j = r->j;
        char tp[PAR_TRACEPARENT_LEN + 1];
        void *buf = NULL;
        size_t len = 0;
        par_error_t e;
        par_err_t rc;

        if ((rc = encode_result(r, tp, &buf, &len)))
                return rc;
        for (int tries = 0;; tries++) {
                void *copy = malloc(len);
                if (!copy) {
                        free(buf);
                        return PAR_ERR_NOMEM;
                }
                memcpy(copy, buf, len);
                rc = pub_send(env->pub, env->t_results, j->id, copy, len, tp,
                              true, &e);
                if (!rc || rc == PAR_ERR_PERMANENT ||
                    (pub_stopping(env->pub) && tries > 2))
                        break;
                par_log(PAR_LOG_WARN, "consumer", "result_retry",
                        "signal=%s error=\"%s\"", j->id, e.msg);
                par_clock_sleep_ms(500);
        }
        free(buf);
        return rc;
}

/* The document's `result` for the outcome (NULL when out of memory). */
static bson_t *outcome_bson(const run_t *r)
{
        const pipe_env_t *env = r->env;
        bson_error_t be;

        json_t *res = json_pack(
            "{s:s,s:i,s:s,s:s,s:I}", "status", pipe_outcome_name(r->outcome),
            "attempt", (int)r->attempt, "node_id", env->node_id, "worker_id",
            r->w->id, "finished_at", (json_int_t)r->finished_at);
        if (r->have_sr) {
                json_object_set(res, "values",
                                r->sr.values ? r->sr.values : json_null());
                json_object_set_new(res, "total_ms",
                                    json_integer(r->sr.total_ms));
        }
        char *text = json_dumps(res, JSON_COMPACT);
        json_decref(res);
        bson_t *doc =
            text ? bson_new_from_json((const uint8_t *)text, -1, &be) : NULL;
        free(text);
        return doc;
}

/* A result handed to the producer: the rest of its delivery (offset done,
 * scheduler slot and resource freed) runs from its delivery report; with
 * claims, after the finisher has written the document (fin). */
typedef struct inflight {
        pub_cb_t cb; /* first: the report finds us through it */
        const pipe_env_t *env;
        par_sched_job_t *sj;
        job_t *j;
        int64_t finished_at;
        void *buf;
        size_t len;
        char tp[PAR_TRACEPARENT_LEN + 1];
        int tries;
        /* claims on: the outcome to write (fin.out points into these) */
        bool claims;
        fin_item_t fin;
        bson_t *result;
        char error[300];
        char owner[160]; /* the claim's (and the resource lock's) owner */
        bool locked;
} inflight_t;

static void inflight_done(inflight_t *f)
{
        const pipe_env_t *env = f->env;
        job_t *j = f->j;

        if (f->finished_at > j->created_at && j->created_at > 0) {
                par_hist_record(env->stats->e2e,
                                (uint64_t)(f->finished_at - j->created_at) *
                                    1000);
                obs_e2e(env->stats->obs, j->priority,
                        (f->finished_at - j->created_at) / 1e3);
        }
        par_offsets_done(env->offsets, j->topic, j->partition, j->offset);
        par_sched_done(env->sched, f->sj);
        job_free(j);
        bson_destroy(f->result);
        free(f->buf);
        free(f);
}

static par_err_t inflight_send(inflight_t *f, par_error_t *e)
{
        void *copy = malloc(f->len);
        if (!copy)
                return par_error_set(e, PAR_ERR_NOMEM, "out of memory");
        memcpy(copy, f->buf, f->len);
        return pub_send_async(f->env->pub, f->env->t_results, f->j->id, copy,
                              f->len, f->tp, &f->cb, e);
}

/* Finisher thread, claims on: the document is written (or fenced off);
 * then, as on the synchronous path, the resource lock goes, the claim
 * leaves the renewer, the offset is marked done and the scheduler slot
 * freed; last, the result stops counting in flight. */
static void inflight_finished(fin_item_t *it, par_claim_t *c, par_err_t rc)
{
        inflight_t *f =
            (inflight_t *)(void *)((char *)it - offsetof(inflight_t, fin));
        const pipe_env_t *env = f->env;
        pub_t *pub = env->pub;
        job_t *j = f->j;
        par_error_t e;

        if (rc == PAR_ERR_NOTFOUND) {
                /* Our lease lapsed and someone else holds it now: their
                 * outcome stands. */
                par_log(PAR_LOG_WARN, "consumer", "lease_lost",
                        "signal=%s worker=%s", j->id, f->owner);
        } else if (rc) {
                par_counter_inc(env->stats->mongo_errors);
        }
        if (f->locked && par_claim_unlock(c, j->resource, j->id, f->owner,
                                          &e) == PAR_ERR_MONGO) {
                /* It lapses with its lease instead. */
                par_counter_inc(env->stats->mongo_errors);
                par_log(PAR_LOG_WARN, "consumer", "unlock_error",
                        "signal=%s resource=%s error=\"%s\"", j->id,
                        j->resource, e.msg);
        }
        holds_remove(env->holds, j->id, f->owner);
        inflight_done(f);
        fin_unreserve(holds_finisher(env->holds));
        pub_settle(pub);
}

/* kpoll thread. A failed delivery is sent again (librdkafka already
 * retried it within message.timeout.ms), up to ten times (three on
 * shutdown, like the synchronous path); this thread must not sleep, as
 * every report waits for it. With claims the document is then written by
 * the finisher, also when the result could not be delivered (as the
 * synchronous path finishes it after giving up); if the finisher has
 * stopped (shutdown), the claim stays held and is given back with the
 * others, so the signal runs again. */
static bool inflight_report(pub_cb_t *cb, rd_kafka_resp_err_t err)
{
        inflight_t *f = (inflight_t *)cb;
        par_error_t e;

        while (err && f->tries < 10 &&
               !(pub_stopping(f->env->pub) && f->tries > 2)) {
                f->tries++;
                par_log(PAR_LOG_WARN, "consumer", "result_retry",
                        "signal=%s error=\"%s\"", f->j->id,
                        rd_kafka_err2str(err));
                if (!inflight_send(f, &e))
                        return true; /* the re-sent one's report decides */
                err = RD_KAFKA_RESP_ERR__FAIL;
        }
        fin_t *fin = holds_finisher(f->env->holds);
        if (f->claims && fin_push(fin, &f->fin))
                return false; /* settled by inflight_finished */
        if (f->claims)
                fin_unreserve(fin);
        inflight_done(f);
        return true;
}

/* Hands the result to the producer; false when that failed, or with
 * claims when the finisher has no place for it (the caller then publishes
 * synchronously and writes the document itself). Takes the job on
 * success. */
static bool publish_result_async(run_t *r)
{
        par_error_t e;
        fin_t *fin = r->claim ? holds_finisher(r->env->holds) : NULL;
        if (fin && !fin_reserve(fin, r->w->finishing_max))
                return false;
        inflight_t *f = calloc(1, sizeof(*f));
        if (!f) {
                if (fin)
                        fin_unreserve(fin);
                return false;
        }
        f->cb.fn = inflight_report;
        f->env = r->env;
        f->sj = r->sj;
        f->j = r->j;
        f->finished_at = r->finished_at;
        if (r->claim) {
                f->claims = true;
                f->locked = r->locked;
                f->result = outcome_bson(r);
                snprintf(f->owner, sizeof(f->owner), "%s", r->owner);
                snprintf(f->error, sizeof(f->error), "%s", r->err_msg);
                f->fin.done = inflight_finished;
                f->fin.out = (par_claim_finish_t){
                    .id = r->j->id,
                    .owner = f->owner,
                    .status = pipe_outcome_name(r->outcome),
                    .result = f->result,
                    .error = r->failed ? f->error : NULL};
        }
        if (encode_result(r, f->tp, &f->buf, &f->len) || inflight_send(f, &e)) {
                if (fin)
                        fin_unreserve(fin);
                bson_destroy(f->result);
                free(f->buf);
                free(f);
                return false;
        }
        r->j = NULL; /* the report completes it */
        return true;
}

static void publish_dead_letter(const run_t *r)
{
        const pipe_env_t *env = r->env;
        const job_t *j = r->j;
        void *buf = NULL;
        size_t len = 0;
        par_error_t e;

        json_t *dl = json_pack(
            "{s:s,s:s,s:s,s:s,s:i,s:s,s:s,s:i,s:I,s:s,s:I,s:s}", "signal_id",
            j->id, "source", "consumer", "reason", r->err_msg, "error_class",
            par_spin_class_name(r->err_class), "attempt", (int)r->attempt,
            "node_id", env->node_id, "topic", j->topic, "partition",
            (int)j->partition, "offset", (json_int_t)j->offset,
            "original_format", "avro", "ts", (json_int_t)par_clock_wall_ms(),
            "traceparent", j->traceparent);
        if (dl && par_codec_dead_letter_original(
                      dl, j->raw, j->raw_len,
                      par_codec_dead_letter_max(env->value_max))) {
                json_decref(dl);
                dl = NULL;
        }
        if (!dl)
                return;
        if (par_codec_encode(env->codec, PAR_SCHEMA_DLQ, dl, &buf, &len, &e) ||
            pub_send(env->pub, env->t_dlq, j->id, buf, len, j->traceparent,
                     true, &e))
                par_log(PAR_LOG_ERROR, "consumer", "dlq_failed",
                        "signal=%s error=\"%s\"", j->id, e.msg);
        json_decref(dl);
}

/* Writes the outcome onto the document; retries while MongoDB is away. */
static void finish_doc(const run_t *r)
{
        const pipe_env_t *env = r->env;
        const job_t *j = r->j;
        par_error_t e;
        bson_t *doc = outcome_bson(r);

        for (int tries = 0;; tries++) {
                par_err_t rc = par_claim_finish(
                    r->claim, j->id, pipe_outcome_name(r->outcome), doc,
                    r->failed ? r->err_msg : NULL, par_clock_wall_ms(), &e);
                if (rc == PAR_OK)
                        break;
                if (rc == PAR_ERR_NOTFOUND) {
                        /* Our lease lapsed and someone else holds it now:
                         * their outcome stands. */
                        par_log(PAR_LOG_WARN, "consumer", "lease_lost",
                                "signal=%s worker=%s", j->id, r->owner);
                        break;
                }
                par_counter_inc(env->stats->mongo_errors);
                if (pub_stopping(env->pub) && tries > 2)
                        break;
                par_log(PAR_LOG_WARN, "consumer", "finish_retry",
                        "signal=%s error=\"%s\"", j->id, e.msg);
                par_clock_sleep_ms(500);
        }
        bson_destroy(doc);
}

static void count(const stats_t *s, const job_t *j, pipe_outcome_t o)
{
        if (o != PIPE_DEFERRED)
                obs_outcome(s->obs, j->priority, j->recipe,
                            pipe_outcome_name(o));
        switch (o) {
        case PIPE_DONE:
                par_counter_inc(s->done);
                break;
        case PIPE_FAILED:
                par_counter_inc(s->failed);
                break;
        case PIPE_RETRYING:
                par_counter_inc(s->retrying);
                break;
        case PIPE_DEAD:
                par_counter_inc(s->dead);
                break;
        case PIPE_EXPIRED:
                par_counter_inc(s->expired);
                break;
        case PIPE_SKIPPED:
                par_counter_inc(s->skipped);
                break;
        case PIPE_DEFERRED:
                break;
        }
}

/* The job left the node: offset done, scheduler slot freed. */
static void complete(run_t *r)
{
        par_offsets_done(r->env->offsets, r->j->topic, r->j->partition,
                         r->j->offset);
        par_sched_done(r->env->sched, r->sj);
        job_free(r->j);
        r->j = NULL;
}

/* The job goes back to the scheduler, runnable after delay_ms. */
static step_t defer(run_t *r, int64_t delay_ms)
{
        par_sched_defer(r->env->sched, r->sj, par_clock_mono_ms() + delay_ms);
        r->outcome = PIPE_DEFERRED;
        return STEP_END;
}

/* How long a delivery waits for a lease held until lease_until elsewhere:
 * 100 ms, doubling per wait up to cap_ms, never later than just after the
 * lease ends. A claimed signal usually waits for a holder that a rebalance
 * or a crash left behind (cap 5 s); a resource lock is given back the
 * moment its spin ends, so its waiters look again at least every second. */
static int64_t lease_wait_ms(run_t *r, int64_t lease_until, int64_t cap_ms)
{
        int64_t left = lease_until - par_clock_wall_ms() + 50;
        int64_t step = 100;
        for (int k = 0; k < r->j->deferrals && step < cap_ms; k++)
                step *= 2;
        if (step > cap_ms)
                step = cap_ms;
        if (left > step)
                left = step;
        if (left < 50)
                left = 50;
        r->j->deferrals++;
        par_counter_inc(r->env->stats->deferred);
        return left;
}

/*
 * Takes the claim. A delivery that waited for its resource lock still holds
 * its claim (as prev_owner): it is moved to this worker as it is, attempt
 * unchanged; if it was lost meanwhile, a normal claim decides.
 */
static par_err_t take_claim(run_t *r, par_error_t *e)
{
        const pipe_env_t *env = r->env;
        job_t *j = r->j;
        const char *prev = r->prev;
        par_claim_info_t *ci = &r->ci;

        if (prev && j->lock_wait) {
                int64_t now = par_clock_wall_ms();
                par_err_t rc = par_claim_transfer(r->claim, j->id, prev, now,
                                                  env->lease_ms, e);
                if (rc != PAR_ERR_NOTFOUND) {
                        memset(ci, 0, sizeof(*ci));
                        ci->outcome = j->expires_at && j->expires_at <= now
                                          ? PAR_CLAIM_EXPIRED
                                          : PAR_CLAIM_OK;
                        ci->attempt = j->claim_attempt;
                        ci->claimed_at = now;
                        ci->lease_until = now + env->lease_ms;
                        ci->expires_at = j->expires_at;
                        return rc;
                }
                prev = NULL;
        }
        int64_t t0 = par_clock_mono_ms();
        par_err_t rc = par_claim_acquire(
            r->claim, j->id, prev, par_clock_wall_ms(), env->lease_ms, ci, e);
        obs_claim(env->stats->obs, (par_clock_mono_ms() - t0) / 1e3);
        return rc;
}

/* The claim's answer (r->ci) decides the next step. */
static step_t claimed(run_t *r)
{
        r->attempt = r->ci.attempt;
        if (r->ci.outcome == PAR_CLAIM_TERMINAL ||
            r->ci.outcome == PAR_CLAIM_NOTFOUND) {
                if (r->ci.outcome == PAR_CLAIM_NOTFOUND)
                        r->attempt = 0;
                return STEP_SKIP;
        }
        r->claimed_at = r->ci.claimed_at;
        return STEP_LOCK;
}

/*
 * A claim made ahead (batch.c): the run holds it under the owner that made
 * it, with no round trip; or the document was found final then. False when
 * the renewer found that claim lost (its lease lapsed while the job waited),
 * when its lease has ended by our clock (no renewal reached the store: a
 * node cut off from it must not start spins another node may be running),
 * or the claim handle cannot act as its owner: the job then claims from
 * that owner like a retry, which says whether it is still ours.
 */
static bool use_pre(run_t *r)
{
        job_t *j = r->j;
        par_error_t e;

        j->have_pre = false;
        r->ci = j->pre;
        if (j->prev_owner[0]) {
                if (holds_lost(r->env->holds, j->id, j->prev_owner) ||
                    holds_lapsed(r->env->holds, j->id, j->prev_owner,
                                 par_clock_wall_ms()) ||
                    par_claim_set_owner(r->claim, j->prev_owner, &e))
                        return false;
                snprintf(r->ownerbuf, sizeof(r->ownerbuf), "%s", j->prev_owner);
                r->owner = r->ownerbuf;
                r->reowned = true;
                /* Held from now on as a running claim (step_lock). */
                holds_remove(r->env->holds, j->id, r->owner);
                j->prev_owner[0] = '\0';
                j->holds_claim = false;
        }
        return true;
}

static step_t step_claim(run_t *r)
{
        job_t *j = r->j;
        par_error_t e;

        if (j->have_pre && use_pre(r))
                return claimed(r);

        snprintf(r->prevbuf, sizeof(r->prevbuf), "%s", j->prev_owner);
        r->prev = r->prevbuf[0] ? r->prevbuf : NULL;
        if (take_claim(r, &e)) {
                par_counter_inc(r->env->stats->mongo_errors);
                par_log(PAR_LOG_WARN, "consumer", "claim_error",
                        "signal=%s error=\"%s\"", j->id, e.msg);
                return defer(r, 1000);
        }
        if (r->ci.outcome == PAR_CLAIM_LEASED) {
                /* The holder usually finishes soon (a rebalance moved the
                 * partition while it ran). */
                int64_t left = lease_wait_ms(r, r->ci.lease_until, 5000);
                PAR_DEBUG("consumer", "deferred",
                          "signal=%s holder=%s wait_ms=%lld", j->id,
                          r->ci.holder, (long long)left);
                return defer(r, left);
        }
        if (r->prev) {
                holds_remove(r->env->holds, j->id, r->prev);
                j->prev_owner[0] = '\0';
                j->holds_claim = false;
                j->lock_wait = false;
        }
        return claimed(r);
}

/* The resource lock: not for a signal that is its own resource, nor for one
 * that will not run. On success the claim (and lock) go to the renewer. */
static step_t step_lock(run_t *r)
{
        const pipe_env_t *env = r->env;
        job_t *j = r->j;
        par_error_t e;

        if (r->ci.outcome == PAR_CLAIM_OK && env->resource_lock &&
            strcmp(j->resource, j->id) != 0) {
                par_claim_info_t li;
                par_err_t rc =
                    par_claim_lock(r->claim, j->resource, j->id, r->prev,
                                   par_clock_wall_ms(), env->lease_ms, &li, &e);
                if (rc || li.outcome != PAR_CLAIM_OK) {
                        /* Keep the claim (renewed) and come back like a
                         * delivery leased elsewhere. */
                        holds_add(env->holds, j->id, r->owner, NULL, true);
                        snprintf(j->prev_owner, sizeof(j->prev_owner), "%s",
                                 r->owner);
                        j->holds_claim = true;
                        j->lock_wait = true;
                        j->claim_attempt = r->ci.attempt;
                        if (rc) {
                                par_counter_inc(env->stats->mongo_errors);
                                par_log(PAR_LOG_WARN, "consumer", "lock_error",
                                        "signal=%s resource=%s error=\"%s\"",
                                        j->id, j->resource, e.msg);
                                return defer(r, 1000);
                        }
                        int64_t left = lease_wait_ms(r, li.lease_until, 1000);
                        PAR_DEBUG("consumer", "resource_busy",
                                  "signal=%s resource=%s holder=%s "
                                  "wait_ms=%lld",
                                  j->id, j->resource, li.holder,
                                  (long long)left);
                        return defer(r, left);
                }
                r->locked = true;
                /* Held from here on (surely once the answer is back): the
                 * result's claimed_at says when the worker had everything
                 * it runs under. */
                r->claimed_at = par_clock_wall_ms();
        }
        holds_add(env->holds, j->id, r->owner, r->locked ? j->resource : NULL,
                  false);
        return r->ci.outcome == PAR_CLAIM_EXPIRED ? STEP_EXPIRE : STEP_SPIN;
}

static step_t step_admit(run_t *r)
{
        job_t *j = r->j;
        r->attempt = j->msg_attempt + j->attempts_here + 1;
        if (j->expires_at && j->expires_at <= par_clock_wall_ms())
                return STEP_EXPIRE;
        return STEP_SPIN;
}

static void fail(run_t *r, par_spin_class_t cls, const char *code)
{
        r->failed = true;
        r->err_class = cls;
        r->err_code = code;
}

/* Runs the recipe (on the worker's tab when it uses the browser). */
static void spin(run_t *r)
{
        const pipe_env_t *env = r->env;
        job_t *j = r->j;
        par_tab_t *tab = NULL;
        par_error_t e;
        par_err_t rc = PAR_OK;

        if (!r->recipe) {
                fail(r, PAR_SPIN_PERMANENT, par_err_name(PAR_ERR_NOTFOUND));
                snprintf(r->err_msg, sizeof(r->err_msg),
                         "unknown recipe \"%s\"", j->recipe);
                return;
        }
        if (r->recipe->uses_browser) {
                if (!env->chrome)
                        rc = par_error_set(&e, PAR_ERR_INVALID,
                                           "no browser configured");
                else
                        rc = par_sessions_acquire(env->chrome, r->w->sessions,
                                                  r->w->index, r->recipe, j->id,
                                                  j->resource, &tab, &e);
                if (rc) {
                        fail(r, PAR_SPIN_TRANSIENT, par_err_name(rc));
                        snprintf(r->err_msg, sizeof(r->err_msg), "browser: %s",
                                 e.msg);
                        return;
                }
        }
        par_spin_run(tab, r->recipe, json_object_get(j->signal, "params"),
                     env->spin_opts, &r->sr, &e);
        r->have_sr = true;
        if (tab)
                par_sessions_release(env->chrome, r->w->sessions, tab, &r->sr,
                                     r->w->owner);
        if (r->sr.status != PAR_SPIN_DONE) {
                fail(r, r->sr.err_class, par_err_name(r->sr.err_code));
                r->err_step = r->sr.err_step;
                snprintf(r->err_msg, sizeof(r->err_msg), "%s",
                         e.msg[0] ? e.msg : r->sr.err_msg);
        }
}

static step_t step_spin(run_t *r)
{
        const pipe_env_t *env = r->env;

        r->recipe = par_recipe_set_get(env->recipes, r->j->recipe);
        r->started_at = par_clock_wall_ms();
        spin(r);
        r->finished_at = par_clock_wall_ms();
        /* Half the message for the values; the rest of a result is the
         * fixed fields, the step timings and the error. */
        if (r->have_sr && r->sr.values)
                cap_values(r->sr.values, r->env->value_max / 2);

        if (!r->failed)
                r->outcome = PIPE_DONE;
        else if (r->err_class != PAR_SPIN_TRANSIENT)
                r->outcome = PIPE_FAILED;
        else if (r->attempt < env->max_attempts)
                r->outcome = PIPE_RETRYING;
        else
                r->outcome = PIPE_DEAD;

        par_hist_record(env->stats->spin,
                        (uint64_t)(r->finished_at - r->started_at) * 1000);
        obs_spin(env->stats->obs, r->j->priority, r->j->recipe,
                 (r->finished_at - r->started_at) / 1e3);
        if (r->started_at > r->j->queued_at) {
                par_hist_record(env->stats->wait,
                                (uint64_t)(r->started_at - r->j->queued_at) *
                                    1000);
                obs_wait(env->stats->obs, r->j->priority,
                         (r->started_at - r->j->queued_at) / 1e3);
        }
        return STEP_PUBLISH;
}

static step_t step_expire(run_t *r)
{
        r->outcome = PIPE_EXPIRED;
        fail(r, PAR_SPIN_PERMANENT, "expired");
        snprintf(r->err_msg, sizeof(r->err_msg), "expired at %lld",
                 (long long)r->j->expires_at);
        r->finished_at = par_clock_wall_ms();
        return STEP_PUBLISH;
}

static step_t step_skip(run_t *r)
{
        r->outcome = PIPE_SKIPPED;
        r->finished_at = par_clock_wall_ms();
        publish_result(r);
        count(r->env->stats, r->j, r->outcome);
        complete(r);
        return STEP_END;
}

static step_t step_publish(run_t *r)
{
        /* Done and expired: the worker moves on once the result is handed
         * over. The rest runs from its delivery report (result
         * acknowledged before anything else): without claims the offset
         * is marked done there; with claims the finisher writes the
         * document first (claim renewed until then). The resource stays
         * taken in the scheduler until the offset is done, so per
         * resource order holds. Failures, retries and skips keep the
         * synchronous path: a dead letter follows the result, a retry
         * keeps its claim, and they are rare. */
        if (r->outcome == PIPE_DONE || r->outcome == PIPE_EXPIRED) {
                count(r->env->stats, r->j, r->outcome);
                if (publish_result_async(r))
                        return STEP_END;
                publish_result(r);
                return STEP_FINISH;
        }
        publish_result(r);
        if (r->outcome == PIPE_DEAD || r->outcome == PIPE_FAILED) {
                publish_dead_letter(r);
                obs_dead_letter(r->env->stats->obs,
                                pipe_outcome_name(r->outcome));
        }
        count(r->env->stats, r->j, r->outcome);
        return r->outcome == PIPE_RETRYING ? STEP_RETRY : STEP_FINISH;
}

/* Keeps the claim (renewed) and runs again after a backoff. */
static step_t step_retry(run_t *r)
{
        job_t *j = r->j;
        snprintf(j->prev_owner, sizeof(j->prev_owner), "%s", r->owner);
        j->attempts_here++;
        j->holds_claim = r->claim != NULL;
        par_sched_defer(r->env->sched, r->sj,
                        par_clock_mono_ms() +
                            par_backoff_ms(r->env->backoff_ms,
                                           r->env->backoff_max_ms,
                                           j->attempts_here));
        return STEP_END;
}

static step_t step_finish(run_t *r)
{
        const pipe_env_t *env = r->env;
        job_t *j = r->j;
        par_error_t e;

        if (r->claim) {
                finish_doc(r);
                if (r->locked && par_claim_unlock(r->claim, j->resource, j->id,
                                                  NULL, &e) == PAR_ERR_MONGO) {
                        /* It lapses with its lease instead. */
                        par_counter_inc(env->stats->mongo_errors);
                        par_log(PAR_LOG_WARN, "consumer", "unlock_error",
                                "signal=%s resource=%s error=\"%s\"", j->id,
                                j->resource, e.msg);
                }
                holds_remove(env->holds, j->id, r->owner);
        }
        if (r->finished_at > j->created_at && j->created_at > 0) {
                par_hist_record(env->stats->e2e,
                                (uint64_t)(r->finished_at - j->created_at) *
                                    1000);
                obs_e2e(env->stats->obs, j->priority,
                        (r->finished_at - j->created_at) / 1e3);
        }
        complete(r);
        return STEP_END;
}

pipe_outcome_t pipe_run(const pipe_env_t *env, const pipe_worker_t *w,
                        par_claim_t *claim, par_sched_job_t *sj)
{
        run_t r = {.env = env,
                   .w = w,
                   .claim = claim,
                   .sj = sj,
                   .j = sj->payload,
                   .owner = w->owner,
                   .err_step = -1};
        step_t s = claim ? STEP_CLAIM : STEP_ADMIT;

        while (s != STEP_END) {
                switch (s) {
                case STEP_CLAIM:
                        s = step_claim(&r);
                        break;
                case STEP_LOCK:
                        s = step_lock(&r);
                        break;
                case STEP_ADMIT:
                        s = step_admit(&r);
                        break;
                case STEP_SPIN:
                        s = step_spin(&r);
                        break;
                case STEP_EXPIRE:
                        s = step_expire(&r);
                        break;
                case STEP_SKIP:
                        s = step_skip(&r);
                        break;
                case STEP_PUBLISH:
                        s = step_publish(&r);
                        break;
                case STEP_RETRY:
                        s = step_retry(&r);
                        break;
                case STEP_FINISH:
                        s = step_finish(&r);
                        break;
                case STEP_END:
                        break;
                }
        }
        if (r.have_sr)
                par_spin_result_clear(&r.sr);
        if (r.reowned) {
                par_error_t e;
                /* Cannot fail: the handle holds owners in place. */
                par_claim_set_owner(claim, w->owner, &e);
        }
        return r.outcome;
}
