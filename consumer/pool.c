/*
 * pool.c — the worker pool and the pipeline every signal goes through:
 *
 *   claim (MongoDB findAndModify) → spin (par_spin_run on the worker's tab,
 *   or the browser-less noop) → SpinResult to <prefix>.results, waiting for
 *   its delivery report → document update → offset marked done.
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
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "store/claim.h"
#include "base/log.h"
#include "node.h"

void job_free(void *p)
{
        job_t *j = p;
        if (!j)
                return;
        if (j->holds_claim && j->prev_owner[0])
                node_release_later(j->node, j->id, j->prev_owner);
        json_decref(j->signal);
        free(j->raw);
        free(j);
}

static void set_state(worker_t *w, int state)
{
        atomic_store(&w->state, state);
        atomic_store(&w->since, par_clock_wall_ms());
}

typedef struct outcome {
        const char *status; /* done failed retrying dead expired skipped */
        int32_t attempt;
        int64_t claimed_at, started_at, finished_at; /* 0 = null */
        par_spin_result_t *sr;                       /* may be NULL */
        const par_recipe_t *recipe;                  /* may be NULL */
        const char *err_class, *err_code;            /* NULL: no error */
        char err_msg[300];
        int err_step; /* -1: none */
} outcome_t;

static json_t *result_json(worker_t *w, job_t *j, const outcome_t *o,
                           const char *traceparent)
{
        node_t *n = w->node;
        json_t *values = o->sr && o->sr->values && !strcmp(o->status, "done")
                             ? json_deep_copy(o->sr->values)
                             : json_object();
        json_t *steps = json_array();
        if (o->sr && o->recipe)
                for (size_t i = 0; i < o->sr->nsteps && i < o->recipe->nsteps;
                     i++)
                        json_array_append_new(
                            steps,
                            json_pack(
                                "{s:s,s:I}", "type",
                                par_step_type_name(o->recipe->steps[i].type),
                                "duration_us",
                                (json_int_t)o->sr->step_ms[i] * 1000));
        json_t *error = json_null();
        if (o->err_class) {
                error = json_pack("{s:s,s:s,s:s}", "class", o->err_class,
                                  "code", o->err_code, "message", o->err_msg);
                json_object_set_new(error, "step",
                                    o->err_step >= 0 ? json_integer(o->err_step)
                                                     : json_null());
        }
#define TS(v) ((v) ? json_integer(v) : json_null())
        return json_pack(
            "{s:s,s:s,s:s,s:i,s:s,s:i,s:s,s:s,s:o,s:o,s:o,s:I,s:I,s:o,s:o,"
            "s:I,s:s}",
            "signal_id", j->id, "recipe", j->recipe, "resource", j->resource,
            "priority", j->priority, "status", o->status, "attempt",
            (int)o->attempt, "node_id", n->id, "worker_id", w->id, "values",
            values, "error", error, "steps", steps, "created_at",
            (json_int_t)j->created_at, "queued_at", (json_int_t)j->queued_at,
            "claimed_at", TS(o->claimed_at), "started_at", TS(o->started_at),
            "finished_at", (json_int_t)o->finished_at, "traceparent",
            traceparent);
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

/* Produces the result (waiting for delivery, retrying until it is out or
 * the node gives up on shutdown). */
static par_err_t publish_result(worker_t *w, job_t *j, const outcome_t *o)
{
        node_t *n = w->node;
        char tp[PAR_TRACEPARENT_LEN + 1];
        void *buf = NULL;
        size_t len = 0;
        par_error_t e;
        par_err_t rc;

        child_trace(j, tp);
        json_t *r = result_json(w, j, o, tp);
        if (!r)
                return PAR_ERR_NOMEM;
        rc = par_codec_encode(n->codec, PAR_SCHEMA_RESULT, r, &buf, &len, &e);
        json_decref(r);
        if (rc) {
                par_log(PAR_LOG_ERROR, "consumer", "result_encode",
                        "signal=%s error=\"%s\"", j->id, e.msg);
                return rc;
        }
        for (int tries = 0;; tries++) {
                void *copy = malloc(len);
                if (!copy) {
                        free(buf);
                        return PAR_ERR_NOMEM;
                }
                memcpy(copy, buf, len);
                rc = node_produce(n, n->t_results, j->id, copy, len, tp, true,
                                  &e);
                if (!rc || (atomic_load(&n->quit_bg) && tries > 2))
                        break;
                par_log(PAR_LOG_WARN, "consumer", "result_retry",
                        "signal=%s error=\"%s\"", j->id, e.msg);
                par_clock_sleep_ms(500);
        }
        free(buf);
        return rc;
}

static void publish_dead_letter(worker_t *w, job_t *j, const outcome_t *o)
{
        node_t *n = w->node;
        void *buf = NULL;
        size_t len = 0;
        par_error_t e;

        json_t *dl = json_pack(
            "{s:s,s:s,s:s,s:s,s:i,s:s,s:s,s:i,s:I,s:s,s:o,s:I,s:s}",
            "signal_id", j->id, "source", "consumer", "reason", o->err_msg,
            "error_class", o->err_class ? o->err_class : "permanent", "attempt",
            (int)o->attempt, "node_id", n->id, "topic", j->topic, "partition",
            (int)j->partition, "offset", (json_int_t)j->offset,
            "original_format", "avro", "original",
            par_codec_json_bytes(j->raw, j->raw_len), "ts",
            (json_int_t)par_clock_wall_ms(), "traceparent", j->traceparent);
        if (!dl)
                return;
        if (par_codec_encode(n->codec, PAR_SCHEMA_DLQ, dl, &buf, &len, &e) ||
            node_produce(n, n->t_dlq, j->id, buf, len, j->traceparent, true,
                         &e))
                par_log(PAR_LOG_ERROR, "consumer", "dlq_failed",
                        "signal=%s error=\"%s\"", j->id, e.msg);
        json_decref(dl);
}

/* Writes the outcome onto the document; retries while MongoDB is away. */
static void finish_doc(worker_t *w, par_claim_t *claim, job_t *j,
                       const outcome_t *o)
{
        node_t *n = w->node;
        par_error_t e;
        bson_error_t be;

        json_t *res =
            json_pack("{s:s,s:i,s:s,s:s,s:I}", "status", o->status, "attempt",
                      (int)o->attempt, "node_id", n->id, "worker_id", w->id,
                      "finished_at", (json_int_t)o->finished_at);
        if (o->sr) {
                json_object_set(res, "values",
                                o->sr->values ? o->sr->values : json_null());
                json_object_set_new(res, "total_ms",
                                    json_integer(o->sr->total_ms));
        }
        char *text = json_dumps(res, JSON_COMPACT);
        json_decref(res);
        bson_t *doc =
            text ? bson_new_from_json((const uint8_t *)text, -1, &be) : NULL;
        free(text);
        for (int tries = 0;; tries++) {
                par_err_t rc = par_claim_finish(
                    claim, j->id, o->status, doc,
                    o->err_class ? o->err_msg : NULL, par_clock_wall_ms(), &e);
                if (rc == PAR_OK)
                        break;
                if (rc == PAR_ERR_NOTFOUND) {
                        /* Our lease lapsed and someone else holds it now:
                         * their outcome stands. */
                        par_log(PAR_LOG_WARN, "consumer", "lease_lost",
                                "signal=%s worker=%s", j->id, w->owner);
                        break;
                }
                par_counter_inc(n->c_claim_errors);
                if (atomic_load(&n->quit_bg) && tries > 2)
                        break;
                par_log(PAR_LOG_WARN, "consumer", "finish_retry",
                        "signal=%s error=\"%s\"", j->id, e.msg);
                par_clock_sleep_ms(500);
        }
        bson_destroy(doc);
}

static int64_t backoff_ms(node_t *n, int failures)
{
        int64_t b = n->backoff_ms;
        for (int i = 1; i < failures && b < n->backoff_max_ms; i++)
                b *= 2;
        return b < n->backoff_max_ms ? b : n->backoff_max_ms;
}

static void count(node_t *n, const char *status)
{
        if (!strcmp(status, "done"))
                par_counter_inc(n->c_done);
        else if (!strcmp(status, "failed"))
                par_counter_inc(n->c_failed);
        else if (!strcmp(status, "retrying"))
                par_counter_inc(n->c_retrying);
        else if (!strcmp(status, "dead"))
                par_counter_inc(n->c_dead);
        else if (!strcmp(status, "expired"))
                par_counter_inc(n->c_expired);
        else
                par_counter_inc(n->c_skipped);
}

/* The job left the node: offset done, scheduler slot freed. */
static void complete(node_t *n, par_sched_job_t *sj, job_t *j)
{
        par_offsets_done(n->offsets, j->topic, j->partition, j->offset);
        par_sched_done(n->sched, sj);
        job_free(j);
}

static void defer(node_t *n, par_sched_job_t *sj, int64_t delay_ms)
{
        par_sched_defer(n->sched, sj, par_clock_mono_ms() + delay_ms);
}

/* How long a delivery waits for a lease (signal or resource) held until
 * lease_until elsewhere: 100 ms, doubling per wait up to 5 s, never later
 * than just after the lease ends. */
static int64_t lease_wait_ms(node_t *n, job_t *j, int64_t lease_until)
{
        int64_t left = lease_until - par_clock_wall_ms() + 50;
        int64_t step = 100;
        for (int k = 0; k < j->deferrals && step < 5000; k++)
                step *= 2;
        if (step > 5000)
                step = 5000;
        if (left > step)
                left = step;
        if (left < 50)
                left = 50;
        j->deferrals++;
        par_counter_inc(n->c_deferred);
        return left;
}

/*
 * The claim step. A delivery that waited for its resource lock still holds
 * its claim (as prev_owner): it is moved to this worker as it is, attempt
 * unchanged; if it was lost meanwhile, a normal claim decides.
 */
static par_err_t take_claim(node_t *n, par_claim_t *claim, job_t *j,
                            const char *prev, par_claim_info_t *ci,
                            par_error_t *e)
{
        if (prev && j->lock_wait) {
                int64_t now = par_clock_wall_ms();
                par_err_t rc =
                    par_claim_transfer(claim, j->id, prev, now, n->lease_ms, e);
                if (rc != PAR_ERR_NOTFOUND) {
                        memset(ci, 0, sizeof(*ci));
                        ci->outcome = j->expires_at && j->expires_at <= now
                                          ? PAR_CLAIM_EXPIRED
                                          : PAR_CLAIM_OK;
                        ci->attempt = j->claim_attempt;
                        ci->claimed_at = now;
                        ci->lease_until = now + n->lease_ms;
                        ci->expires_at = j->expires_at;
                        return rc;
                }
                prev = NULL;
        }
        return par_claim_acquire(claim, j->id, prev, par_clock_wall_ms(),
                                 n->lease_ms, ci, e);
}

static void run_job(worker_t *w, par_claim_t *claim, par_sched_job_t *sj)
{
        node_t *n = w->node;
        job_t *j = sj->payload;
        outcome_t o = {.err_step = -1};
        par_spin_result_t sr;
        par_claim_info_t ci;
        par_error_t e;
        bool have_sr = false, locked = false;

        memset(&sr, 0, sizeof(sr));
        pthread_mutex_lock(&n->wlock);
        snprintf(w->signal_id, sizeof(w->signal_id), "%s", j->id);
        snprintf(w->recipe, sizeof(w->recipe), "%s", j->recipe);
        pthread_mutex_unlock(&n->wlock);
        set_state(w, WS_BUSY);
        atomic_fetch_add(&n->busy, 1);

        /* 1. claim */
        if (claim) {
                char prevbuf[sizeof(j->prev_owner)];
                snprintf(prevbuf, sizeof(prevbuf), "%s", j->prev_owner);
                const char *prev = prevbuf[0] ? prevbuf : NULL;
                if (take_claim(n, claim, j, prev, &ci, &e)) {
                        par_counter_inc(n->c_claim_errors);
                        par_log(PAR_LOG_WARN, "consumer", "claim_error",
                                "signal=%s error=\"%s\"", j->id, e.msg);
                        defer(n, sj, 1000);
                        goto out;
                }
                if (ci.outcome == PAR_CLAIM_LEASED) {
                        /* The holder usually finishes soon (a rebalance
                         * moved the partition while it ran). */
                        int64_t left = lease_wait_ms(n, j, ci.lease_until);
                        PAR_DEBUG("consumer", "deferred",
                                  "signal=%s holder=%s wait_ms=%lld", j->id,
                                  ci.holder, (long long)left);
                        defer(n, sj, left);
                        goto out;
                }
                if (prev) {
                        node_unhold(n, j->id, prev);
                        j->prev_owner[0] = '\0';
                        j->holds_claim = false;
                        j->lock_wait = false;
                }
                o.attempt = ci.attempt;
                if (ci.outcome == PAR_CLAIM_TERMINAL ||
                    ci.outcome == PAR_CLAIM_NOTFOUND) {
                        o.status = "skipped";
                        o.finished_at = par_clock_wall_ms();
                        if (ci.outcome == PAR_CLAIM_NOTFOUND)
                                o.attempt = 0;
                        publish_result(w, j, &o);
                        count(n, o.status);
                        complete(n, sj, j);
                        goto out;
                }
                o.claimed_at = ci.claimed_at;
                /* 1b. the resource lock (not for a signal that is its own
                 * resource, nor for one that will not run) */
                if (ci.outcome == PAR_CLAIM_OK && n->resource_lock &&
                    strcmp(j->resource, j->id) != 0) {
                        par_claim_info_t li;
                        par_err_t rc = par_claim_lock(claim, j->resource, j->id,
                                                      prev, par_clock_wall_ms(),
                                                      n->lease_ms, &li, &e);
                        if (rc || li.outcome != PAR_CLAIM_OK) {
                                /* Keep the claim (renewed) and come back
                                 * like a delivery leased elsewhere. */
                                node_hold(n, j->id, w->owner, NULL, true);
                                snprintf(j->prev_owner, sizeof(j->prev_owner),
                                         "%s", w->owner);
                                j->holds_claim = true;
                                j->lock_wait = true;
                                j->claim_attempt = ci.attempt;
                                if (rc) {
                                        par_counter_inc(n->c_claim_errors);
                                        par_log(PAR_LOG_WARN, "consumer",
                                                "lock_error",
                                                "signal=%s resource=%s "
                                                "error=\"%s\"",
                                                j->id, j->resource, e.msg);
                                        defer(n, sj, 1000);
                                        goto out;
                                }
                                int64_t left =
                                    lease_wait_ms(n, j, li.lease_until);
                                PAR_DEBUG("consumer", "resource_busy",
                                          "signal=%s resource=%s holder=%s "
                                          "wait_ms=%lld",
                                          j->id, j->resource, li.holder,
                                          (long long)left);
                                defer(n, sj, left);
                                goto out;
                        }
                        locked = true;
                        /* Held from here on (surely once the answer is
                         * back): the result's claimed_at says when the
                         * worker had everything it runs under. */
                        o.claimed_at = par_clock_wall_ms();
                }
                node_hold(n, j->id, w->owner, locked ? j->resource : NULL,
                          false);
                if (ci.outcome == PAR_CLAIM_EXPIRED)
                        goto expired;
        } else {
                o.attempt = j->msg_attempt + j->attempts_here + 1;
                if (j->expires_at && j->expires_at <= par_clock_wall_ms())
                        goto expired;
        }

        /* 2. spin */
        o.recipe = par_recipe_set_get(n->recipes, j->recipe);
        o.started_at = par_clock_wall_ms();
        if (!o.recipe) {
                o.err_class = "permanent";
                o.err_code = par_err_name(PAR_ERR_NOTFOUND);
                snprintf(o.err_msg, sizeof(o.err_msg), "unknown recipe \"%s\"",
                         j->recipe);
        } else {
                par_tab_t *tab = NULL;
                par_err_t rc = PAR_OK;
                if (o.recipe->uses_browser) {
                        if (!n->chrome)
                                rc = par_error_set(&e, PAR_ERR_INVALID,
                                                   "no browser configured");
                        else
                                rc = par_chrome_tab_acquire(n->chrome, w->index,
                                                            &tab, &e);
                        if (rc) {
                                o.err_class = "transient";
                                o.err_code = par_err_name(rc);
                                snprintf(o.err_msg, sizeof(o.err_msg),
                                         "browser: %s", e.msg);
                        }
                }
                if (!rc) {
                        rc = par_spin_run(tab, o.recipe,
                                          json_object_get(j->signal, "params"),
                                          &n->spin_opts, &sr, &e);
                        have_sr = true;
                        o.sr = &sr;
                        if (tab)
                                par_chrome_tab_release(n->chrome, tab,
                                                       sr.tab_broken);
                        if (sr.status != PAR_SPIN_DONE) {
                                o.err_class = par_spin_class_name(sr.err_class);
                                o.err_code = par_err_name(sr.err_code);
                                o.err_step = sr.err_step;
                                snprintf(o.err_msg, sizeof(o.err_msg), "%s",
                                         e.msg[0] ? e.msg : sr.err_msg);
                        }
                }
        }
        o.finished_at = par_clock_wall_ms();

        /* 3. classify */
        if (!o.err_class)
                o.status = "done";
        else if (strcmp(o.err_class, "transient") != 0)
                o.status = "failed";
        else if (o.attempt < n->max_attempts)
                o.status = "retrying";
        else
                o.status = "dead";

        par_hist_record(n->h_spin,
                        (uint64_t)(o.finished_at - o.started_at) * 1000);
        if (o.started_at > j->queued_at)
                par_hist_record(n->h_wait,
                                (uint64_t)(o.started_at - j->queued_at) * 1000);
        goto publish;

expired:
        o.status = "expired";
        o.err_class = "permanent";
        o.err_code = "expired";
        snprintf(o.err_msg, sizeof(o.err_msg), "expired at %lld",
                 (long long)j->expires_at);
        o.finished_at = par_clock_wall_ms();

publish:
        /* 4. result, 5. document, 6. offset */
        publish_result(w, j, &o);
        if (!strcmp(o.status, "dead") || !strcmp(o.status, "failed"))
                publish_dead_letter(w, j, &o);
        count(n, o.status);
        atomic_fetch_add(&w->spins, 1);
        if (strcmp(o.status, "done") != 0)
                atomic_fetch_add(&w->failures, 1);
        if (!strcmp(o.status, "retrying")) {
                /* Keep the claim (renewed) and run again after a backoff. */
                snprintf(j->prev_owner, sizeof(j->prev_owner), "%s", w->owner);
                j->attempts_here++;
                j->holds_claim = claim != NULL;
                defer(n, sj, backoff_ms(n, j->attempts_here));
                goto out;
        }
        if (claim) {
                finish_doc(w, claim, j, &o);
                if (locked && par_claim_unlock(claim, j->resource, j->id, NULL,
                                               &e) == PAR_ERR_MONGO) {
                        /* It lapses with its lease instead. */
                        par_counter_inc(n->c_claim_errors);
                        par_log(PAR_LOG_WARN, "consumer", "unlock_error",
                                "signal=%s resource=%s error=\"%s\"", j->id,
                                j->resource, e.msg);
                }
                node_unhold(n, j->id, w->owner);
        }
        if (o.finished_at > j->created_at && j->created_at > 0)
                par_hist_record(
                    n->h_e2e, (uint64_t)(o.finished_at - j->created_at) * 1000);
        complete(n, sj, j);
out:
        if (have_sr)
                par_spin_result_clear(&sr);
        atomic_fetch_sub(&n->busy, 1);
        pthread_mutex_lock(&n->wlock);
        w->signal_id[0] = w->recipe[0] = '\0';
        pthread_mutex_unlock(&n->wlock);
        set_state(w, WS_IDLE);
}

static void *worker_main(void *arg)
{
        worker_t *w = arg;
        node_t *n = w->node;
        par_claim_t *claim = NULL;
        par_error_t e;
        bool counted = true;

        if (n->claims &&
            par_claim_new(
                &claim, n->mpool, par_config_str(n->cfg, "mongo.database"),
                par_config_str(n->cfg, "mongo.collection"), w->owner, &e)) {
                par_log(PAR_LOG_ERROR, "consumer", "worker_failed",
                        "worker=%s error=\"%s\"", w->id, e.msg);
                set_state(w, WS_CRASHED);
                goto out;
        }
        set_state(w, WS_IDLE);
        int64_t idle_since = par_clock_mono_ms();
        while (!atomic_load(&w->stop)) {
                par_sched_job_t *sj = par_sched_next(n->sched, 200);
                if (sj) {
                        run_job(w, claim, sj);
                        idle_since = par_clock_mono_ms();
                        continue;
                }
                if (atomic_load(&n->draining))
                        break;
                if (par_clock_mono_ms() - idle_since < n->idle_timeout_ms)
                        continue;
                /* Idle long enough: retire if above the minimum. */
                int cur = atomic_load(&n->nworkers);
                if (cur > n->workers_min && atomic_compare_exchange_strong(
                                                &n->nworkers, &cur, cur - 1)) {
                        counted = false;
                        par_log(PAR_LOG_INFO, "consumer", "worker_retired",
                                "worker=%s workers=%d", w->id, cur - 1);
                        break;
                }
                idle_since = par_clock_mono_ms();
        }
        set_state(w, WS_STOPPED);
out:
        par_claim_destroy(claim);
        if (counted)
                atomic_fetch_sub(&n->nworkers, 1);
        atomic_store(&w->running, false);
        return NULL;
}

par_err_t pool_start_worker(node_t *n, par_error_t *err)
{
        worker_t *w = NULL;
        int limit = n->workers_max < NODE_MAX_WORKERS ? n->workers_max
                                                      : NODE_MAX_WORKERS;

        for (int i = 0; i < limit; i++)
                if (!n->workers[i].used) {
                        w = &n->workers[i];
                        break;
                }
        if (!w)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "no free worker slot");
        int index = (int)(w - n->workers);
        memset(w, 0, sizeof(*w));
        w->node = n;
        w->index = index;
        w->used = true;
        w->published_state = -1;
        snprintf(w->id, sizeof(w->id), "w%d", index);
        /* Via a local: gcc cannot tell w->owner from n->id apart. */
        char owner[sizeof(w->owner)];
        snprintf(owner, sizeof(owner), "%s/w%d", n->id, index);
        memcpy(w->owner, owner, sizeof(owner));
        atomic_store(&w->running, true);
        set_state(w, WS_STARTING);
        atomic_fetch_add(&n->nworkers, 1);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
                atomic_fetch_sub(&n->nworkers, 1);
                w->used = false;
                return par_error_set(err, PAR_ERR_IO,
                                     "cannot start worker thread");
        }
        return PAR_OK;
}

int pool_reap(node_t *n)
{
        int reaped = 0;
        for (int i = 0; i < NODE_MAX_WORKERS; i++) {
                worker_t *w = &n->workers[i];
                if (w->used && !atomic_load(&w->running)) {
                        pthread_join(w->thread, NULL);
                        w->used = false;
                        reaped++;
                }
        }
        return reaped;
}

int pool_size(node_t *n)
{
        return atomic_load(&n->nworkers);
}

int pool_stop(node_t *n, int64_t deadline_ms)
{
        int left;
        for (int i = 0; i < NODE_MAX_WORKERS; i++)
                if (n->workers[i].used)
                        atomic_store(&n->workers[i].stop, true);
        for (;;) {
                left = 0;
                for (int i = 0; i < NODE_MAX_WORKERS; i++) {
                        worker_t *w = &n->workers[i];
                        if (!w->used)
                                continue;
                        if (atomic_load(&w->running)) {
                                left++;
                                continue;
                        }
                        pthread_join(w->thread, NULL);
                        w->used = false;
                }
                if (!left || par_clock_mono_ms() >= deadline_ms)
                        break;
                par_clock_sleep_ms(50);
        }
        return left;
}
