/*
 * node.c — a consumer node's main loop: the Kafka group member that feeds
 * the scheduler, and everything around the worker pool (see node.h for the
 * threads).
 *
 * Why the main thread never blocks on work: librdkafka evicts a member that
 * does not call poll within max.poll.interval.ms, and serves rebalances only
 * from poll. So spins run on workers, and the main thread only polls,
 * enqueues and does bookkeeping. Back-pressure is by pausing partitions
 * (per priority level, on the scheduler's watermarks) while polling goes
 * on; librdkafka then stops fetching them and re-fetches from the last
 * delivered position on resume.
 *
 * Rebalances are incremental (cooperative-sticky): on revoke, the revoked
 * partitions' queued jobs are dropped, the finished prefix is committed
 * synchronously, and only then are they unassigned. A job of a revoked
 * partition that is still running finishes normally; its offset is simply
 * not committed by us (the new owner's claim skips or takes over).
 */
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "store/claim.h"
#include "base/log.h"
#include "node.h"

static int topic_level(node_t *n, const char *topic)
{
        for (int L = 1; L <= n->levels; L++)
                if (!strcmp(n->topics[L - 1], topic))
                        return L;
        return 0;
}

static struct npart *part_find(node_t *n, const char *topic, int32_t p);
static void part_pause(node_t *n, struct npart *np, bool pause);

/* ------------------------------------------------------------- producing */

typedef struct dwait {
        bool done;
        rd_kafka_resp_err_t err;
} dwait_t;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
        node_t *n = opaque;
        dwait_t *w = m->_private;
        if (m->err)
                par_log(PAR_LOG_WARN, "consumer", "delivery_failed",
                        "topic=%s error=\"%s\"", rd_kafka_topic_name(m->rkt),
                        rd_kafka_err2str(m->err));
        if (!w)
                return;
        pthread_mutex_lock(&n->dlock);
        w->err = m->err;
        w->done = true;
        pthread_cond_broadcast(&n->dcond);
        pthread_mutex_unlock(&n->dlock);
}

par_err_t node_produce(node_t *n, const char *topic, const char *key,
                       void *value, size_t len, const char *traceparent,
                       bool wait, par_error_t *err)
{
        dwait_t w = {0};
        rd_kafka_resp_err_t e;

        for (;;) {
                rd_kafka_headers_t *h = NULL;
                if (traceparent && *traceparent) {
                        h = rd_kafka_headers_new(1);
                        rd_kafka_header_add(h, PAR_TRACEPARENT_HEADER, -1,
                                            traceparent, -1);
                }
                e = rd_kafka_producev(
                    n->producer, RD_KAFKA_V_TOPIC(topic),
                    RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                    RD_KAFKA_V_VALUE(value, len),
                    RD_KAFKA_V_MSGFLAGS(value ? RD_KAFKA_MSG_F_FREE : 0),
                    RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(wait ? &w : NULL),
                    RD_KAFKA_V_END);
                if (!e)
                        break;
                rd_kafka_headers_destroy(h);
                if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                        free(value);
                        return par_error_set(err, PAR_ERR_KAFKA,
                                             "produce to %s: %s", topic,
                                             rd_kafka_err2str(e));
                }
                par_clock_sleep_ms(10); /* the kpoll thread drains the queue */
        }
        if (!wait)
                return PAR_OK;
        pthread_mutex_lock(&n->dlock);
        while (!w.done)
                pthread_cond_wait(&n->dcond, &n->dlock);
        pthread_mutex_unlock(&n->dlock);
        if (w.err)
                return par_error_set(err, PAR_ERR_KAFKA, "deliver to %s: %s",
                                     topic, rd_kafka_err2str(w.err));
        return PAR_OK;
}

static void *kpoll_main(void *arg)
{
        node_t *n = arg;
        while (!atomic_load(&n->quit_bg))
                rd_kafka_poll(n->producer, 100);
        return NULL;
}

/* ------------------------------------------------------------ held claims */

void node_hold(node_t *n, const char *id, const char *owner,
               const char *resource, bool waiting)
{
        held_t *h = calloc(1, sizeof(*h));
        if (!h)
                return; /* not renewed: the lease may lapse, never wrong */
        snprintf(h->id, sizeof(h->id), "%s", id);
        snprintf(h->owner, sizeof(h->owner), "%s", owner);
        snprintf(h->resource, sizeof(h->resource), "%s",
                 resource ? resource : "");
        h->waiting = waiting;
        pthread_mutex_lock(&n->hlock);
        h->next = n->held;
        n->held = h;
        pthread_mutex_unlock(&n->hlock);
}

static void unhold(node_t *n, const char *id, const char *owner,
                   bool to_release)
{
        pthread_mutex_lock(&n->hlock);
        for (held_t **pp = &n->held; *pp; pp = &(*pp)->next) {
                held_t *h = *pp;
                if (!strcmp(h->id, id) && !strcmp(h->owner, owner)) {
                        if (to_release) {
                                h->release = true;
                        } else {
                                *pp = h->next;
                                free(h);
                        }
                        break;
                }
        }
        pthread_mutex_unlock(&n->hlock);
}

void node_unhold(node_t *n, const char *id, const char *owner)
{
        unhold(n, id, owner, false);
}

void node_release_later(node_t *n, const char *id, const char *owner)
{
        unhold(n, id, owner, true);
}

/* Renews a held claim and its resource lock; true when either is lost. A
 * lock whose claim is gone is dropped rather than renewed: whoever holds the
 * signal now needs the resource (if our worker just finished, it drops the
 * lock itself a moment later anyway). */
static bool renew(node_t *n, par_claim_t *c, const held_t *h)
{
        par_error_t e;
        bool lost = par_claim_renew(c, h->id, h->owner, par_clock_wall_ms(),
                                    n->lease_ms, &e) == PAR_ERR_NOTFOUND;
        if (!h->resource[0])
                return lost;
        if (lost)
                par_claim_unlock(c, h->resource, h->id, h->owner, &e);
        else if (par_claim_lock_renew(c, h->resource, h->id, h->owner,
                                      par_clock_wall_ms(), n->lease_ms,
                                      &e) == PAR_ERR_NOTFOUND)
                lost = true;
        return lost;
}

/* Renews every held lease and gives back the ones marked for release.
 * Works on a copy of the list so MongoDB calls run without the lock. */
static void held_pass(node_t *n, par_claim_t *c, bool release_all)
{
        held_t *copy = NULL;
        par_error_t e;

        pthread_mutex_lock(&n->hlock);
        for (held_t *h = n->held; h; h = h->next) {
                held_t *x = malloc(sizeof(*x));
                if (!x)
                        break;
                *x = *h;
                x->next = copy;
                copy = x;
        }
        pthread_mutex_unlock(&n->hlock);
        for (held_t *h = copy, *nx; h; h = nx) {
                nx = h->next;
                if (h->release || release_all) {
                        par_claim_t *rc = NULL;
                        if (!par_claim_new(
                                &rc, n->mpool,
                                par_config_str(n->cfg, "mongo.database"),
                                par_config_str(n->cfg, "mongo.collection"),
                                h->owner, &e)) {
                                par_claim_release(rc, h->id, NULL, h->waiting,
                                                  &e);
                                if (h->resource[0])
                                        par_claim_unlock(rc, h->resource, h->id,
                                                         NULL, &e);
                        }
                        par_claim_destroy(rc);
                        node_unhold(n, h->id, h->owner);
                } else if (renew(n, c, h)) {
                        /* Usually the worker just finished it (and unheld
                         * it after our copy): only a claim still held is a
                         * lost lease. */
                        bool still = false;
                        pthread_mutex_lock(&n->hlock);
                        for (held_t *x = n->held; x && !still; x = x->next)
                                still = !strcmp(x->id, h->id) &&
                                        !strcmp(x->owner, h->owner) &&
                                        !x->release;
                        pthread_mutex_unlock(&n->hlock);
                        if (still)
                                par_log(PAR_LOG_WARN, "consumer", "lease_lost",
                                        "signal=%s owner=%s resource=%s", h->id,
                                        h->owner, h->resource);
                }
                free(h);
        }
}

static void *renew_main(void *arg)
{
        node_t *n = arg;
        par_claim_t *c = NULL;
        par_error_t e;
        char owner[160];

        snprintf(owner, sizeof(owner), "%s/renewer", n->id);
        if (par_claim_new(
                &c, n->mpool, par_config_str(n->cfg, "mongo.database"),
                par_config_str(n->cfg, "mongo.collection"), owner, &e)) {
                par_log(PAR_LOG_ERROR, "consumer", "renewer_failed",
                        "error=\"%s\"", e.msg);
                return NULL;
        }
        int64_t next = 0;
        while (!atomic_load(&n->quit_renew)) {
                if (par_clock_mono_ms() >= next) {
                        held_pass(n, c, false);
                        next = par_clock_mono_ms() + n->lease_ms / 3;
                }
                par_clock_sleep_ms(100);
        }
        par_claim_destroy(c);
        return NULL;
}

/* ------------------------------------------------------------- messages */

static void dead_letter_raw(node_t *n, const rd_kafka_message_t *m,
                            const char *reason)
{
        void *buf = NULL;
        size_t len = 0;
        par_error_t e;
        json_t *dl = json_pack(
            "{s:n,s:s,s:s,s:s,s:i,s:s,s:s,s:i,s:I,s:s,s:o,s:I,s:n}",
            "signal_id", "source", "consumer", "reason", reason, "error_class",
            "permanent", "attempt", 0, "node_id", n->id, "topic",
            rd_kafka_topic_name(m->rkt), "partition", (int)m->partition,
            "offset", (json_int_t)m->offset, "original_format", "avro",
            "original", par_codec_json_bytes(m->payload, m->len), "ts",
            (json_int_t)par_clock_wall_ms(), "traceparent");
        if (dl &&
            !par_codec_encode(n->codec, PAR_SCHEMA_DLQ, dl, &buf, &len, &e))
                node_produce(n, n->t_dlq, NULL, buf, len, NULL, false, &e);
        json_decref(dl);
}

static const char *jstr(json_t *o, const char *k)
{
        const char *s = json_string_value(json_object_get(o, k));
        return s ? s : "";
}

static void handle_message(node_t *n, rd_kafka_message_t *m)
{
        const char *topic = rd_kafka_topic_name(m->rkt);
        int level = topic_level(n, topic);
        json_t *sig = NULL;
        par_error_t e;

        if (!level)
                return;
        struct npart *np = part_find(n, topic, m->partition);
        if (np) {
                np->delivered = true;
                if ((n->paused & (1u << (level - 1))) && !np->paused)
                        part_pause(n, np, true);
        }
        if (par_offsets_track(n->offsets, topic, m->partition, m->offset, &e)) {
                PAR_DEBUG("consumer", "duplicate", "%s", e.msg);
                return;
        }
        if (par_codec_decode(n->codec, m->payload, m->len, PAR_SCHEMA_SIGNAL,
                             &sig, NULL, &e)) {
                par_counter_inc(n->c_undecodable);
                par_log(PAR_LOG_WARN, "consumer", "undecodable",
                        "topic=%s partition=%d offset=%lld error=\"%s\"", topic,
                        (int)m->partition, (long long)m->offset, e.msg);
                dead_letter_raw(n, m, e.msg);
                par_offsets_done(n->offsets, topic, m->partition, m->offset);
                return;
        }
        job_t *j = calloc(1, sizeof(*j));
        if (!j || !(j->raw = malloc(m->len ? m->len : 1))) {
                free(j);
                json_decref(sig);
                par_log(PAR_LOG_ERROR, "consumer", "nomem", "dropping=%lld",
                        (long long)m->offset);
                return; /* not done: never committed past */
        }
        memcpy(j->raw, m->payload, m->len);
        j->raw_len = m->len;
        j->node = n;
        snprintf(j->topic, sizeof(j->topic), "%s", topic);
        j->partition = m->partition;
        j->offset = m->offset;
        j->queued_at = rd_kafka_message_timestamp(m, NULL);
        j->received_ms = par_clock_mono_ms();
        j->signal = sig;
        j->id = jstr(sig, "id");
        j->recipe = jstr(sig, "recipe");
        j->resource = jstr(sig, "resource");
        j->traceparent = jstr(sig, "traceparent");
        j->priority = (int)json_integer_value(json_object_get(sig, "priority"));
        j->created_at = json_integer_value(json_object_get(sig, "created_at"));
        j->expires_at = json_integer_value(json_object_get(sig, "expires_at"));
        j->msg_attempt =
            (int32_t)json_integer_value(json_object_get(sig, "attempt"));
        if (j->queued_at <= 0)
                j->queued_at = par_clock_wall_ms();

        par_sched_job_t sj = {.level = level,
                              .partition = m->partition,
                              .offset = m->offset,
                              .resource = j->resource,
                              .payload = j,
                              .enqueued_ms = j->received_ms};
        if (par_sched_push(n->sched, &sj, &e)) {
                par_log(PAR_LOG_ERROR, "consumer", "enqueue_failed",
                        "error=\"%s\"", e.msg);
                job_free(j);
        }
}

/* ------------------------------------------------------------ rebalances */

static struct npart *part_find(node_t *n, const char *topic, int32_t p)
{
        for (int i = 0; i < n->nparts; i++)
                if (n->parts[i].partition == p &&
                    !strcmp(n->parts[i].topic, topic))
                        return &n->parts[i];
        return NULL;
}

static void part_pause(node_t *n, struct npart *np, bool pause)
{
        rd_kafka_topic_partition_list_t *l =
            rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, np->topic, np->partition);
        if (pause)
                rd_kafka_pause_partitions(n->consumer, l);
        else
                rd_kafka_resume_partitions(n->consumer, l);
        rd_kafka_topic_partition_list_destroy(l);
        np->paused = pause;
}

/* Pauses (resumes) the partitions of the levels in mask; a partition that
 * has not delivered since its assignment is paused on its first message
 * (see node.h). */
static void pause_levels(node_t *n, uint32_t mask, bool pause)
{
        for (int i = 0; i < n->nparts; i++) {
                struct npart *np = &n->parts[i];
                if (!(mask & (1u << (np->level - 1))))
                        continue;
                if (pause && np->delivered && !np->paused)
                        part_pause(n, np, true);
                else if (!pause && np->paused)
                        part_pause(n, np, false);
        }
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        node_t *n = opaque;
        bool coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
        rd_kafka_error_t *ke = NULL;

        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                par_log(PAR_LOG_INFO, "consumer", "assigned", "partitions=%d",
                        parts->cnt);
                if (coop)
                        ke = rd_kafka_incremental_assign(rk, parts);
                else
                        rd_kafka_assign(rk, parts);
                for (int i = 0; i < parts->cnt; i++) {
                        int L = topic_level(n, parts->elems[i].topic);
                        if (!L || part_find(n, parts->elems[i].topic,
                                            parts->elems[i].partition))
                                continue;
                        if (n->nparts == n->cap_parts) {
                                int cap = n->cap_parts ? n->cap_parts * 2 : 64;
                                struct npart *np = realloc(
                                    n->parts, (size_t)cap * sizeof(*np));
                                if (!np)
                                        break; /* never paused: safe */
                                n->parts = np;
                                n->cap_parts = cap;
                        }
                        struct npart *np = &n->parts[n->nparts++];
                        memset(np, 0, sizeof(*np));
                        snprintf(np->topic, sizeof(np->topic), "%s",
                                 parts->elems[i].topic);
                        np->partition = parts->elems[i].partition;
                        np->level = L;
                }
                atomic_store(&n->assigned_any, true);
        } else {
                bool lost = rd_kafka_assignment_lost(rk);
                rd_kafka_topic_partition_list_t *commit =
                    rd_kafka_topic_partition_list_new(parts->cnt + 1);
                int dropped = 0;
                for (int i = 0; i < parts->cnt; i++) {
                        const char *t = parts->elems[i].topic;
                        int32_t p = parts->elems[i].partition;
                        int L = topic_level(n, t);
                        if (L)
                                dropped += par_sched_revoke(n->sched, L, p);
                        int64_t c = par_offsets_revoke(n->offsets, t, p);
                        if (c >= 0 && !lost)
                                rd_kafka_topic_partition_list_add(commit, t, p)
                                    ->offset = c;
                        /* Leave no pause behind: librdkafka keeps a
                         * partition's pause flag across unassign, and a
                         * later assignment would never fetch it. */
                        struct npart *np = part_find(n, t, p);
                        if (np) {
                                if (np->paused)
                                        part_pause(n, np, false);
                                *np = n->parts[--n->nparts];
                        }
                }
                if (commit->cnt) {
                        rd_kafka_resp_err_t ce = rd_kafka_commit(rk, commit, 0);
                        if (ce)
                                par_log(PAR_LOG_WARN, "consumer",
                                        "revoke_commit_failed", "error=\"%s\"",
                                        rd_kafka_err2str(ce));
                }
                par_log(PAR_LOG_INFO, "consumer", "revoked",
                        "partitions=%d dropped=%d committed=%d lost=%d",
                        parts->cnt, dropped, commit->cnt, lost);
                rd_kafka_topic_partition_list_destroy(commit);
                if (coop)
                        ke = rd_kafka_incremental_unassign(rk, parts);
                else
                        rd_kafka_assign(rk, NULL);
        }
        if (ke) {
                par_log(PAR_LOG_ERROR, "consumer", "rebalance_error",
                        "error=\"%s\"", rd_kafka_error_string(ke));
                rd_kafka_error_destroy(ke);
        }
}

/* --------------------------------------------------------------- commits */

static void add_commit(const char *topic, int32_t partition, int64_t offset,
                       void *opaque)
{
        rd_kafka_topic_partition_list_add(opaque, topic, partition)->offset =
            offset;
}

/* Commits the finished prefixes that advanced; with all (every few
 * seconds, and at shutdown) every partition's, so a commit that failed
 * (e.g. during a rebalance) is sent again. */
static void commit(node_t *n, bool sync, bool all)
{
        rd_kafka_topic_partition_list_t *l =
            rd_kafka_topic_partition_list_new(8);
        if (par_offsets_collect(n->offsets, all, add_commit, l)) {
                rd_kafka_resp_err_t e = rd_kafka_commit(n->consumer, l, !sync);
                if (e)
                        par_log(PAR_LOG_WARN, "consumer", "commit_failed",
                                "error=\"%s\"", rd_kafka_err2str(e));
        }
        rd_kafka_topic_partition_list_destroy(l);
}

/* ---------------------------------------------------- status and metrics */

static const char *state_name(int s)
{
        static const char *n[] = {"starting",  "idle",    "busy",
                                  "recycling", "crashed", "stopped"};
        return s >= 0 && s <= WS_STOPPED ? n[s] : "stopped";
}

/* Resident bytes of every process in the browsers' process groups. */
static int64_t chrome_rss(node_t *n)
{
        pid_t groups[NODE_MAX_WORKERS];
        int ng = 0;
        int64_t total = 0;
        long page = sysconf(_SC_PAGESIZE);

        if (!n->chrome)
                return -1;
        for (int i = 0; i < n->workers_max && i < NODE_MAX_WORKERS; i++) {
                pid_t g = par_chrome_browser_pgid(n->chrome, i);
                bool seen = false;
                for (int k = 0; k < ng; k++)
                        seen |= groups[k] == g;
                if (g > 0 && !seen)
                        groups[ng++] = g;
        }
        if (!ng)
                return 0;
        DIR *d = opendir("/proc");
        struct dirent *de;
        while (d && (de = readdir(d))) {
                char path[300], buf[1024];
                if (!isdigit((unsigned char)de->d_name[0]))
                        continue;
                snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
                FILE *f = fopen(path, "r");
                if (!f)
                        continue;
                size_t len = fread(buf, 1, sizeof(buf) - 1, f);
                fclose(f);
                buf[len] = '\0';
                char *p = strrchr(buf, ')'); /* comm may hold spaces */
                int pgrp = 0;
                long rss = 0;
                /* fields after comm: state ppid pgrp ... rss is field 24 */
                if (!p || sscanf(p + 2,
                                 "%*c %*d %d %*d %*d %*d %*u %*u %*u "
                                 "%*u %*u %*u %*u %*d %*d %*d %*d %*d "
                                 "%*d %*u %*u %ld",
                                 &pgrp, &rss) != 2)
                        continue;
                for (int k = 0; k < ng; k++)
                        if (groups[k] == pgrp)
                                total += (int64_t)rss * page;
        }
        if (d)
                closedir(d);
        return total;
}

static int64_t self_rss(void)
{
        long pages = 0, rss = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        if (f) {
                if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
                        rss = 0;
                fclose(f);
        }
        return (int64_t)rss * sysconf(_SC_PAGESIZE);
}

static void publish_worker(node_t *n, worker_t *w, bool tombstone)
{
        char key[200];
        void *buf = NULL;
        size_t len = 0;
        par_error_t e;

        snprintf(key, sizeof(key), "%s/%s", n->id, w->id);
        if (tombstone) {
                node_produce(n, n->t_workers, key, NULL, 0, NULL, false, &e);
                return;
        }
        pthread_mutex_lock(&n->wlock);
        int st = atomic_load(&w->state);
        json_t *v = json_pack(
            "{s:s,s:s,s:s,s:o,s:o,s:I,s:I,s:I,s:I,s:o}", "node_id", n->id,
            "worker_id", w->id, "state", state_name(st), "signal_id",
            st == WS_BUSY && w->signal_id[0] ? json_string(w->signal_id)
                                             : json_null(),
            "recipe",
            st == WS_BUSY && w->recipe[0] ? json_string(w->recipe)
                                          : json_null(),
            "spins", (json_int_t)atomic_load(&w->spins), "failures",
            (json_int_t)atomic_load(&w->failures), "since",
            (json_int_t)atomic_load(&w->since), "ts",
            (json_int_t)par_clock_wall_ms(), "chrome_pid", json_null());
        pthread_mutex_unlock(&n->wlock);
        if (n->chrome) {
                pid_t g = par_chrome_browser_pgid(n->chrome, w->index);
                if (g > 0)
                        json_object_set_new(v, "chrome_pid", json_integer(g));
        }
        if (v &&
            !par_codec_encode(n->codec, PAR_SCHEMA_WORKER, v, &buf, &len, &e))
                node_produce(n, n->t_workers, key, buf, len, NULL, false, &e);
        json_decref(v);
}

/* Publishes workers whose state changed since last time (≤ 1/s each). */
static void publish_workers(node_t *n)
{
        for (int i = 0; i < NODE_MAX_WORKERS; i++) {
                worker_t *w = &n->workers[i];
                if (!w->used)
                        continue;
                int st = atomic_load(&w->state);
                long long since = atomic_load(&w->since);
                if (st == w->published_state && since == w->published_since)
                        continue;
                w->published_state = st;
                w->published_since = since;
                publish_worker(n, w, false);
        }
}

static json_t *latency(par_hist_t *win)
{
        return json_pack("{s:I,s:f,s:f,s:f,s:f}", "count",
                         (json_int_t)par_hist_count(win), "p50_ms",
                         par_hist_percentile(win, 0.5) / 1000.0, "p90_ms",
                         par_hist_percentile(win, 0.9) / 1000.0, "p99_ms",
                         par_hist_percentile(win, 0.99) / 1000.0, "max_ms",
                         par_hist_max(win) / 1000.0);
}

static int64_t consumer_lag(node_t *n)
{
        rd_kafka_topic_partition_list_t *a = NULL;
        int64_t lag = -1;
        if (rd_kafka_assignment(n->consumer, &a) || !a)
                return -1;
        if (a->cnt && !rd_kafka_position(n->consumer, a)) {
                lag = 0;
                for (int i = 0; i < a->cnt; i++) {
                        int64_t lo, hi;
                        if (rd_kafka_get_watermark_offsets(
                                n->consumer, a->elems[i].topic,
                                a->elems[i].partition, &lo, &hi) ||
                            hi < 0)
                                continue;
                        int64_t pos = a->elems[i].offset;
                        if (pos < 0)
                                pos = lo;
                        if (hi > pos)
                                lag += hi - pos;
                }
        }
        rd_kafka_topic_partition_list_destroy(a);
        return lag;
}

static void publish_metrics(node_t *n, int64_t interval_ms)
{
        void *buf = NULL;
        size_t len = 0;
        par_error_t e;
        par_chrome_stats_t cs = {0};

        par_hist_take(n->w_wait, n->h_wait);
        par_hist_take(n->w_spin, n->h_spin);
        par_hist_take(n->w_e2e, n->h_e2e);
        uint64_t done = par_counter_get(n->c_done);
        uint64_t final = done + par_counter_get(n->c_failed) +
                         par_counter_get(n->c_dead) +
                         par_counter_get(n->c_expired);
        uint64_t dfinal = final - n->last_final, ddone = done - n->last_done;
        n->last_final = final;
        n->last_done = done;
        json_t *queues = json_array();
        for (int L = n->levels; L >= 1; L--)
                json_array_append_new(
                    queues, json_pack("{s:i,s:i,s:b}", "priority", L, "depth",
                                      par_sched_depth(n->sched, L), "paused",
                                      (n->paused >> (L - 1)) & 1));
        if (n->chrome)
                par_chrome_stats(n->chrome, &cs);
        int total = pool_size(n), busy = atomic_load(&n->busy);
        int64_t crss = chrome_rss(n), lag = consumer_lag(n);
        atomic_store(&n->lag, lag);
        json_t *v = json_pack(
            "{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:o,s:o,s:o,s:o,"
            "s:o,s:i,s:i,s:i,s:I,s:I,s:o,s:o}",
            "node_id", n->id, "ts", (json_int_t)par_clock_wall_ms(),
            "interval_ms", (json_int_t)interval_ms, "uptime_ms",
            (json_int_t)(par_clock_wall_ms() - n->started_ms), "spins_done",
            (json_int_t)done, "spins_failed",
            (json_int_t)par_counter_get(n->c_failed), "spins_retried",
            (json_int_t)par_counter_get(n->c_retrying), "spins_dead",
            (json_int_t)par_counter_get(n->c_dead), "spins_expired",
            (json_int_t)par_counter_get(n->c_expired), "spins_skipped",
            (json_int_t)par_counter_get(n->c_skipped), "throughput",
            interval_ms > 0 ? dfinal * 1000.0 / interval_ms : 0.0,
            "success_rate",
            dfinal ? json_real((double)ddone / dfinal) : json_null(), "queues",
            queues, "wait", latency(n->w_wait), "spin", latency(n->w_spin),
            "e2e", latency(n->w_e2e), "workers_busy", busy, "workers_idle",
            total > busy ? total - busy : 0, "workers_total", total,
            "chrome_restarts", (json_int_t)(cs.restarts + cs.recycles),
            "rss_bytes", (json_int_t)self_rss(), "chrome_rss_bytes",
            crss >= 0 ? json_integer(crss) : json_null(), "consumer_lag",
            lag >= 0 ? json_integer(lag) : json_null());
        par_hist_reset(n->w_wait);
        par_hist_reset(n->w_spin);
        par_hist_reset(n->w_e2e);
        if (!v) {
                par_log(PAR_LOG_ERROR, "consumer", "metrics_build", "failed");
                return;
        }
        if (par_codec_encode(n->codec, PAR_SCHEMA_METRICS, v, &buf, &len, &e))
                par_log(PAR_LOG_ERROR, "consumer", "metrics_encode",
                        "error=\"%s\"", e.msg);
        else
                node_produce(n, n->t_metrics, n->id, buf, len, NULL, false, &e);
        json_decref(v);
}

/* ------------------------------------------------------------------ http */

static int h_health(void *opaque, const char *path, const char *query,
                    par_http_body_t *body, const char **ct)
{
        node_t *n = opaque;
        if (atomic_load(&n->draining)) {
                par_http_body_printf(body, "draining\n");
                return 503;
        }
        par_http_body_printf(body, "ok\n");
        return 200;
}

static int h_status(void *opaque, const char *path, const char *query,
                    par_http_body_t *body, const char **ct)
{
        node_t *n = opaque;
        json_t *workers = json_array(), *queues = json_array();

        pthread_mutex_lock(&n->wlock);
        for (int i = 0; i < NODE_MAX_WORKERS; i++) {
                worker_t *w = &n->workers[i];
                if (!w->used)
                        continue;
                int st = atomic_load(&w->state);
                json_array_append_new(
                    workers,
                    json_pack("{s:s,s:s,s:s?,s:s?,s:I,s:I,s:I}", "id", w->id,
                              "state", state_name(st), "signal_id",
                              st == WS_BUSY ? w->signal_id : NULL, "recipe",
                              st == WS_BUSY ? w->recipe : NULL, "spins",
                              (json_int_t)atomic_load(&w->spins), "failures",
                              (json_int_t)atomic_load(&w->failures), "since",
                              (json_int_t)atomic_load(&w->since)));
        }
        pthread_mutex_unlock(&n->wlock);
        for (int L = n->levels; L >= 1; L--)
                json_array_append_new(
                    queues, json_pack("{s:i,s:i}", "priority", L, "depth",
                                      par_sched_depth(n->sched, L)));
        long long lag = atomic_load(&n->lag);
        json_t *s = json_pack(
            "{s:s,s:s,s:I,s:b,s:o,s:o,s:i,s:i,s:{s:I,s:I,s:I,s:I,s:I,s:I},"
            "s:o}",
            "node_id", n->id, "version", PARALLEL_VERSION, "uptime_ms",
            (json_int_t)(par_clock_wall_ms() - n->started_ms), "draining",
            atomic_load(&n->draining), "workers", workers, "queues", queues,
            "running", par_sched_running(n->sched), "uncommitted",
            par_offsets_pending(n->offsets), "spins", "done",
            (json_int_t)par_counter_get(n->c_done), "failed",
            (json_int_t)par_counter_get(n->c_failed), "retrying",
            (json_int_t)par_counter_get(n->c_retrying), "dead",
            (json_int_t)par_counter_get(n->c_dead), "expired",
            (json_int_t)par_counter_get(n->c_expired), "skipped",
            (json_int_t)par_counter_get(n->c_skipped), "consumer_lag",
            lag >= 0 ? json_integer(lag) : json_null());
        char *text = s ? json_dumps(s, JSON_COMPACT) : NULL;
        json_decref(s);
        if (!text)
                return 500;
        par_http_body_printf(body, "%s\n", text);
        free(text);
        *ct = "application/json";
        return 200;
}

static const char dashboard[] =
    "<!doctype html><meta charset=utf-8><title>parallel-consumer</title>"
    "<style>body{font:14px monospace;margin:2em}td,th{padding:2px 10px;"
    "text-align:left}</style><h1 id=h>parallel-consumer</h1><div id=s>"
    "</div><table id=w></table><script>"
    "async function t(){try{const r=await fetch('/status');const s=await "
    "r.json();document.getElementById('h').textContent='node '+s.node_id+"
    "(s.draining?' (draining)':'');document.getElementById('s').textContent="
    "'done '+s.spins.done+' failed '+s.spins.failed+' dead '+s.spins.dead+"
    "' retrying '+s.spins.retrying+' skipped '+s.spins.skipped+' | queues '+"
    "s.queues.map(q=>'p'+q.priority+':'+q.depth).join(' ')+' | lag '+"
    "s.consumer_lag;document.getElementById('w').innerHTML='<tr><th>worker"
    "<th>state<th>signal<th>recipe<th>spins<th>failures'+s.workers.map(w=>"
    "'<tr><td>'+w.id+'<td>'+w.state+'<td>'+(w.signal_id||'')+'<td>'+"
    "(w.recipe||'')+'<td>'+w.spins+'<td>'+w.failures).join('')}catch(e){}"
    "}setInterval(t,1000);t()</script>\n";

static int h_dashboard(void *opaque, const char *path, const char *query,
                       par_http_body_t *body, const char **ct)
{
        par_http_body_append(body, dashboard, sizeof(dashboard) - 1);
        *ct = "text/html; charset=utf-8";
        return 200;
}

static double g_depth(void *opaque)
{
        return par_sched_depth(opaque, 0);
}

static double g_workers(void *opaque)
{
        return pool_size(opaque);
}

static double g_busy(void *opaque)
{
        return atomic_load(&((node_t *)opaque)->busy);
}

/* ------------------------------------------------------------- lifecycle */

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

static par_err_t make_clients(node_t *n, par_error_t *err)
{
        rd_kafka_conf_t *pc = NULL, *cc = NULL;
        char es[512], cid[200];
        par_err_t rc;

        snprintf(cid, sizeof(cid), "parallel-consumer-%s", n->id);
        if ((rc = par_kafka_conf_new(&pc, n->cfg, cid, err)))
                return rc;
        if ((rc = kset(pc, "enable.idempotence", "true", err)) ||
            (rc = kset(pc, "linger.ms", "2", err)))
                goto fail;
        rd_kafka_conf_set_dr_msg_cb(pc, dr_cb);
        rd_kafka_conf_set_opaque(pc, n);
        if (!(n->producer =
                  rd_kafka_new(RD_KAFKA_PRODUCER, pc, es, sizeof(es)))) {
                rc = par_error_set(err, PAR_ERR_KAFKA, "producer: %s", es);
                goto fail;
        }
        pc = NULL;

        if ((rc = par_kafka_conf_new(&cc, n->cfg, cid, err)))
                goto fail;
        if ((rc = kdefault(cc, "group.id",
                           par_config_str(n->cfg, "consumer.group"), err)) ||
            (rc = kset(cc, "enable.auto.commit", "false", err)) ||
            (rc = kset(cc, "enable.auto.offset.store", "false", err)) ||
            (rc = kset(cc, "partition.assignment.strategy",
                       "cooperative-sticky", err)) ||
            (rc = kset(cc, "auto.offset.reset", "earliest", err)))
                goto fail;
        if (par_config_bool(n->cfg, "consumer.static_membership") &&
            (rc = kset(cc, "group.instance.id", n->id, err)))
                goto fail;
        rd_kafka_conf_set_rebalance_cb(cc, rebalance_cb);
        rd_kafka_conf_set_opaque(cc, n);
        if (!(n->consumer =
                  rd_kafka_new(RD_KAFKA_CONSUMER, cc, es, sizeof(es)))) {
                rc = par_error_set(err, PAR_ERR_KAFKA, "consumer: %s", es);
                goto fail;
        }
        cc = NULL;
        rd_kafka_poll_set_consumer(n->consumer);

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

par_err_t node_new(node_t **out, par_config_t *cfg, par_error_t *err)
{
        node_t *n = calloc(1, sizeof(*n));
        par_err_t rc;
        bson_error_t be;
        char host[100];

        if (!n)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        n->cfg = cfg;
        pthread_mutex_init(&n->wlock, NULL);
        pthread_mutex_init(&n->dlock, NULL);
        pthread_cond_init(&n->dcond, NULL);
        pthread_mutex_init(&n->hlock, NULL);
        atomic_store(&n->lag, -1);
        for (int i = 0; i < NODE_MAX_WORKERS; i++)
                n->workers[i].published_state = -1;
        n->started_ms = par_clock_wall_ms();

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

        n->claims = par_config_bool(cfg, "claim.enabled");
        n->resource_lock =
            n->claims && par_config_bool(cfg, "claim.resource_lock");
        n->lease_ms = par_config_int(cfg, "claim.lease");
        n->backoff_ms = par_config_int(cfg, "retry.backoff");
        n->backoff_max_ms = par_config_int(cfg, "retry.backoff_max");
        n->grace_ms = par_config_int(cfg, "shutdown.grace");
        n->max_attempts = (int)par_config_int(cfg, "max.attempts");
        n->workers_min = (int)par_config_int(cfg, "workers.min");
        n->workers_max = (int)par_config_int(cfg, "workers.max");
        n->idle_timeout_ms = par_config_int(cfg, "workers.idle_timeout");
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
            .free_payload = job_free};
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

        if ((rc = par_metrics_new(&n->metrics, err)))
                goto fail;
        par_metrics_t *m = n->metrics;
#define CNT(var, st)                                                           \
        n->var = par_metrics_counter(m, "parallel_spins", "status=\"" st "\"", \
                                     "Deliveries handled, by outcome.")
        CNT(c_done, "done");
        CNT(c_failed, "failed");
        CNT(c_retrying, "retrying");
        CNT(c_dead, "dead");
        CNT(c_expired, "expired");
        CNT(c_skipped, "skipped");
#undef CNT
        n->c_deferred = par_metrics_counter(
            m, "parallel_claims_deferred", NULL,
            "Deliveries put back because another worker held the lease.");
        n->c_undecodable = par_metrics_counter(
            m, "parallel_messages_undecodable", NULL,
            "Signal messages that could not be decoded (sent to the DLQ).");
        n->c_claim_errors = par_metrics_counter(
            m, "parallel_mongo_errors", NULL,
            "MongoDB calls that failed (claims, finishes).");
        n->h_wait = par_metrics_hist(m, "parallel_wait_seconds", NULL,
                                     "Kafka timestamp of the signal to the "
                                     "start of its spin.",
                                     1e-6);
        n->h_spin = par_metrics_hist(m, "parallel_spin_seconds", NULL,
                                     "Spin duration.", 1e-6);
        n->h_e2e =
            par_metrics_hist(m, "parallel_e2e_seconds", NULL,
                             "Signal created_at to its final result.", 1e-6);
        if ((rc = par_hist_new(&n->w_wait, err)) ||
            (rc = par_hist_new(&n->w_spin, err)) ||
            (rc = par_hist_new(&n->w_e2e, err)) ||
            (rc = par_metrics_gauge_fn(m, "parallel_queue_depth", NULL,
                                       "Signals queued locally.", g_depth,
                                       n->sched, err)) ||
            (rc = par_metrics_gauge_fn(m, "parallel_workers", NULL,
                                       "Worker threads.", g_workers, n, err)) ||
            (rc = par_metrics_gauge_fn(m, "parallel_workers_busy", NULL,
                                       "Workers running a spin.", g_busy, n,
                                       err)))
                goto fail;

        const char *listen = par_config_str(cfg, "http.listen");
        if (*listen) {
                if ((rc = par_http_new(&n->http, listen, err)) ||
                    (rc = par_http_route(n->http, "/health", h_health, n,
                                         err)) ||
                    (rc = par_http_route(n->http, "/status", h_status, n,
                                         err)) ||
                    (rc = par_http_route(n->http, "/metrics",
                                         par_http_metrics_handler, n->metrics,
                                         err)) ||
                    (rc = par_http_route(n->http, "/", h_dashboard, n, err)))
                        goto fail;
        }
        /* Chrome last: everything a user can misconfigure locally (Kafka
         * keys, the HTTP address) is reported before any browser starts or
         * remote endpoint is contacted. */
        if ((rc = make_clients(n, err)) ||
            (rc = par_chrome_new(&n->chrome, &co, n->workers_max, err)))
                goto fail;
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
        int size = pool_size(n);

        /* A worker that stopped (retired or died) leaves the compacted
         * workers topic: tombstone its key before its slot is reused. */
        for (int i = 0; i < NODE_MAX_WORKERS; i++) {
                worker_t *w = &n->workers[i];
                if (w->used && !atomic_load(&w->running)) {
                        publish_worker(n, w, true);
                        w->published_state = -1; /* gone: not "stopped" */
                }
        }
        pool_reap(n);
        while (size < n->workers_min) {
                if (pool_start_worker(n, &e))
                        return;
                size++;
        }
        if (size >= n->workers_max || atomic_load(&n->busy) < size ||
            par_sched_depth(n->sched, 0) == 0)
                return;
        if (n->memory_limit_mb > 0 &&
            *chrome_rss_cache > n->memory_limit_mb * 1024 * 1024)
                return;
        if (!pool_start_worker(n, &e))
                par_log(PAR_LOG_INFO, "consumer", "worker_added",
                        "workers=%d queued=%d", size + 1,
                        par_sched_depth(n->sched, 0));
}

static void apply_flow(node_t *n)
{
        uint32_t pause, resume;
        if (!par_sched_take_flow(n->sched, &pause, &resume))
                return;
        n->paused = (n->paused | pause) & ~resume;
        pause_levels(n, pause, true);
        pause_levels(n, resume, false);
        PAR_DEBUG("consumer", "flow", "paused_mask=0x%x", n->paused);
}

/* Leaving without par_chrome_destroy (workers still drive tabs): kill
 * every browser process group we launched so none is orphaned. */
static void kill_browsers(node_t *n)
{
        for (int i = 0; n->chrome && i < n->workers_max; i++) {
                pid_t g = par_chrome_browser_pgid(n->chrome, i);
                if (g > 0)
                        kill(-g, SIGKILL);
        }
}

int node_run(node_t *n, volatile sig_atomic_t *stop)
{
        par_error_t e;
        int64_t now, next_commit = 0, next_pool = 0, next_status = 0;
        int64_t metrics_ms = par_config_int(n->cfg, "metrics.interval");
        int64_t commit_ms = par_config_int(n->cfg, "commit.interval");
        int64_t next_metrics = par_clock_mono_ms() + metrics_ms;
        int64_t last_metrics = par_clock_mono_ms(), crss = 0;
        unsigned commits = 0;

        pthread_create(&n->kpoll_thread, NULL, kpoll_main, n);
        if (n->claims)
                pthread_create(&n->renew_thread, NULL, renew_main, n);
        for (int i = 0; i < n->workers_min; i++)
                if (pool_start_worker(n, &e))
                        par_log(PAR_LOG_ERROR, "consumer", "worker_failed",
                                "error=\"%s\"", e.msg);
        par_log(PAR_LOG_INFO, "consumer", "started",
                "node=%s levels=%d workers=%d..%d http=%d claims=%d", n->id,
                n->levels, n->workers_min, n->workers_max,
                n->http ? par_http_port(n->http) : 0, n->claims);

        while (!*stop) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(n->consumer, 50);
                if (m) {
                        if (!m->err)
                                handle_message(n, m);
                        else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                par_log(PAR_LOG_WARN, "consumer",
                                        "consume_error", "error=\"%s\"",
                                        rd_kafka_message_errstr(m));
                        rd_kafka_message_destroy(m);
                }
                apply_flow(n);
                now = par_clock_mono_ms();
                if (now >= next_commit) {
                        commit(n, false, ++commits % 10 == 0);
                        next_commit = now + commit_ms;
                }
                if (now >= next_pool) {
                        size_pool(n, &crss);
                        next_pool = now + 100;
                }
                if (now >= next_status) {
                        publish_workers(n);
                        if (n->memory_limit_mb > 0)
                                crss = chrome_rss(n);
                        next_status = now + 1000;
                }
                if (now >= next_metrics) {
                        publish_metrics(n, now - last_metrics);
                        last_metrics = now;
                        next_metrics = now + metrics_ms;
                }
        }

        /* Graceful shutdown: stop taking work, let in-flight spins finish
         * (their results are produced by the workers), commit, leave. */
        par_log(PAR_LOG_INFO, "consumer", "draining",
                "running=%d queued=%d grace_ms=%lld",
                par_sched_running(n->sched), par_sched_depth(n->sched, 0),
                (long long)n->grace_ms);
        atomic_store(&n->draining, true);
        par_sched_close(n->sched);
        n->paused = (1u << n->levels) - 1;
        pause_levels(n, n->paused, true);
        int64_t deadline = par_clock_mono_ms() + n->grace_ms;
        int left;
        for (;;) {
                left = pool_stop(n, par_clock_mono_ms());
                if (!left || par_clock_mono_ms() >= deadline || *stop >= 2)
                        break;
                rd_kafka_message_t *m = rd_kafka_consumer_poll(n->consumer, 50);
                if (m) /* paused: only stragglers; not tracked, refetched */
                        rd_kafka_message_destroy(m);
                commit(n, false, false);
                publish_workers(n);
        }
        if (*stop >= 2) {
                par_log(PAR_LOG_WARN, "consumer", "exit_now", "running=%d",
                        left);
                kill_browsers(n);
                _exit(1);
        }
        int dropped = par_sched_clear(n->sched);
        commit(n, true, true);
        atomic_store(&n->quit_renew, true);
        if (n->claims) {
                pthread_join(n->renew_thread, NULL);
                /* Give back claims of retries we will not run. */
                par_claim_t *c = NULL;
                if (!par_claim_new(
                        &c, n->mpool, par_config_str(n->cfg, "mongo.database"),
                        par_config_str(n->cfg, "mongo.collection"), n->id, &e))
                        held_pass(n, c, left == 0);
                par_claim_destroy(c);
        }
        for (int i = 0; i < NODE_MAX_WORKERS; i++)
                if (n->workers[i].used || n->workers[i].published_state >= 0)
                        publish_worker(n, &n->workers[i], false);
        /* Leaving the group can hang in librdkafka 2.0.2 when a
         * cooperative rebalance races the close (seen as "Unknown member"
         * on the revoke commit). Everything finished is committed by now,
         * so bound the wait; the broker expires the member if we leave
         * without a clean close. */
        pthread_t closer;
        bool closed = false;
        if (!pthread_create(&closer, NULL, close_main, n)) {
                int64_t until = par_clock_mono_ms() + 15000;
                while (!atomic_load(&n->closed) && par_clock_mono_ms() < until)
                        par_clock_sleep_ms(20);
                closed = atomic_load(&n->closed);
                if (closed)
                        pthread_join(closer, NULL);
                else
                        par_log(PAR_LOG_WARN, "consumer", "close_timeout",
                                "after_ms=15000");
        }
        rd_kafka_flush(n->producer, 10000);
        atomic_store(&n->quit_bg, true);
        pthread_join(n->kpoll_thread, NULL);
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
                (unsigned long long)par_counter_get(n->c_done));
        return 0;
}

void node_destroy(node_t *n)
{
        if (!n)
                return;
        if (n->http)
                par_http_destroy(n->http);
        if (n->consumer)
                rd_kafka_destroy(n->consumer);
        if (n->producer)
                rd_kafka_destroy(n->producer);
        par_chrome_destroy(n->chrome);
        par_recipe_set_destroy(n->recipes);
        par_sched_destroy(n->sched);
        par_offsets_destroy(n->offsets);
        if (n->mpool)
                mongoc_client_pool_destroy(n->mpool);
        mongoc_uri_destroy(n->muri);
        par_codec_destroy(n->codec);
        par_hist_destroy(n->w_wait);
        par_hist_destroy(n->w_spin);
        par_hist_destroy(n->w_e2e);
        par_metrics_destroy(n->metrics);
        free(n->parts);
        for (held_t *h = n->held, *nx; h; h = nx) {
                nx = h->next;
                free(h);
        }
        pthread_mutex_destroy(&n->wlock);
        pthread_mutex_destroy(&n->dlock);
        pthread_cond_destroy(&n->dcond);
        pthread_mutex_destroy(&n->hlock);
        free(n);
}
