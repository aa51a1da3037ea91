/*
 * assign.c — rebalances and flow control.
 *
 * Rebalances are incremental (cooperative-sticky): on revoke, the revoked
 * partitions' queued jobs are dropped, the running ones may finish, the
 * finished prefix is stored, and then they are unassigned, which commits
 * what is stored (librdkafka waits for that commit before the member
 * rejoins), so the new owner starts after everything that finished here.
 *
 * Commits are the auto-committer's (commit.c): one of our own that met a
 * rebalance would be refused and taken for a lost assignment.
 *
 * Back-pressure without pausing: every assigned partition's messages are
 * forwarded to its priority level's queue, and the main thread stops
 * taking from a level's queue while the scheduler holds the level (its
 * local queue reached the high watermark, until it drains to the low one).
 * librdkafka's own prefetch limits (queued.min.messages,
 * queued.max.messages.kbytes) bound what waits there. Pausing instead threw
 * the prefetched messages away on every pause and fetched them again on
 * every resume: a node at its watermarks spent most of its time waiting
 * for those fetches.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assign.h"
#include "base/clock.h"
#include "base/log.h"
#include "node_state.h"
#include "obs.h"

int assign_level(node_t *n, const char *topic)
{
        for (int L = 1; L <= n->levels; L++)
                if (!strcmp(n->topics[L - 1], topic))
                        return L;
        return 0;
}

static struct npart *part_find(node_t *n, const char *topic, int32_t p)
{
        for (int i = 0; i < n->nparts; i++)
                if (n->parts[i].partition == p &&
                    !strcmp(n->parts[i].topic, topic))
                        return &n->parts[i];
        return NULL;
}

bool assign_owned(node_t *n, const char *topic, int32_t partition)
{
        return part_find(n, topic, partition) != NULL;
}

/* Routes the partition's fetched messages to its level's queue (level 0:
 * back to none). librdkafka keeps an application's forward across its own
 * fetch start, but its fetch stop (an unassign) clears it. */
static void part_forward(node_t *n, const char *topic, int32_t partition,
                         int level)
{
        rd_kafka_queue_t *pq =
            rd_kafka_queue_get_partition(n->consumer, topic, partition);
        if (!pq)
                return;
        rd_kafka_queue_forward(pq, level ? n->lq[level - 1] : NULL);
        rd_kafka_queue_destroy(pq);
}

void assign_reforward(node_t *n)
{
        for (int i = 0; i < n->nparts; i++)
                part_forward(n, n->parts[i].topic, n->parts[i].partition,
                             n->parts[i].level);
}

void assign_apply_flow(node_t *n)
{
        uint32_t pause, resume;
        if (!par_sched_take_flow(n->sched, &pause, &resume))
                return;
        if (atomic_load(&n->draining))
                return; /* held for good */
        n->paused = (n->paused | pause) & ~resume;
        PAR_DEBUG("consumer", "flow", "held_mask=0x%x", n->paused);
}

void assign_pause_all(node_t *n)
{
        n->paused = (1u << n->levels) - 1;
}

static void assigned(node_t *n, rd_kafka_topic_partition_list_t *parts)
{
        for (int i = 0; i < parts->cnt; i++) {
                int L = assign_level(n, parts->elems[i].topic);
                if (!L || part_find(n, parts->elems[i].topic,
                                    parts->elems[i].partition))
                        continue;
                if (n->nparts == n->cap_parts) {
                        int cap = n->cap_parts ? n->cap_parts * 2 : 64;
                        struct npart *np =
                            realloc(n->parts, (size_t)cap * sizeof(*np));
                        if (!np)
                                break; /* not forwarded: intake drops it */
                        n->parts = np;
                        n->cap_parts = cap;
                }
                struct npart *np = &n->parts[n->nparts++];
                memset(np, 0, sizeof(*np));
                snprintf(np->topic, sizeof(np->topic), "%s",
                         parts->elems[i].topic);
                np->partition = parts->elems[i].partition;
                np->level = L;
                /* Before the assignment starts fetching it. */
                part_forward(n, np->topic, np->partition, L);
        }
}

/* How long a revoke waits for the running jobs of its partitions. Long
 * enough for API-like recipes and the noop; far below the rebalance timeout
 * (max.poll.interval.ms). A spin still running after it is left to the new
 * owner (a claim defers or skips it; without claims it runs again). */
#define REVOKE_DRAIN_MS 10000

/* Jobs of the revoked partitions still running (a job whose result is in
 * flight counts: its offset is marked done from the delivery report). */
static int running_in(node_t *n, rd_kafka_topic_partition_list_t *parts)
{
        int running = 0;
        for (int i = 0; i < parts->cnt; i++) {
                int L = assign_level(n, parts->elems[i].topic);
                if (L)
                        running += par_sched_running_in(
                            n->sched, L, parts->elems[i].partition);
        }
        return running;
}

/* Drops the queued jobs of the revoked partitions; returns how many. */
static int drop_queued(node_t *n, rd_kafka_topic_partition_list_t *parts)
{
        int dropped = 0;
        for (int i = 0; i < parts->cnt; i++) {
                int L = assign_level(n, parts->elems[i].topic);
                if (L)
                        dropped += par_sched_revoke(n->sched, L,
                                                    parts->elems[i].partition);
        }
        return dropped;
}

/* Drops the revoked partitions' queued jobs and pause state, lets their
 * running jobs finish (bounded), and commits their finished prefix (unless
 * the assignment was lost: the partitions are someone else's already, and
 * a commit would be refused). */
static void revoked(node_t *n, rd_kafka_t *rk,
                    rd_kafka_topic_partition_list_t *parts)
{
        bool lost = rd_kafka_assignment_lost(rk);
        rd_kafka_topic_partition_list_t *commit =
            rd_kafka_topic_partition_list_new(parts->cnt + 1);
        int ndropped = drop_queued(n, parts), waited = 0, left = 0;

        /* On shutdown the workers have stopped already (or overran the
         * grace, and waiting again would only delay the leave). */
        if (!lost && !atomic_load(&n->draining)) {
                int64_t t0 = par_clock_mono_ms();
                while ((left = running_in(n, parts)) > 0 &&
                       par_clock_mono_ms() - t0 < REVOKE_DRAIN_MS)
                        par_clock_sleep_ms(2);
                waited = (int)(par_clock_mono_ms() - t0);
                /* A job that was put back meanwhile (retry, lease wait)
                 * goes with the partition. */
                ndropped += drop_queued(n, parts);
        }
        for (int i = 0; i < parts->cnt; i++) {
                const char *t = parts->elems[i].topic;
                int32_t p = parts->elems[i].partition;
                int64_t c = par_offsets_revoke(n->offsets, t, p);
                if (c >= 0 && !lost)
                        rd_kafka_topic_partition_list_add(commit, t, p)
                            ->offset = c;
                /* Its messages still in the level queue are outdated for
                 * librdkafka now and never reach intake. */
                struct npart *np = part_find(n, t, p);
                if (np)
                        *np = n->parts[--n->nparts];
        }
        /* Stored, not committed here: the unassign that follows commits
         * what is stored (auto-commit), and would otherwise commit an
         * older stored offset after ours. */
        if (commit->cnt)
                rd_kafka_offsets_store(rk, commit);
        par_log(PAR_LOG_INFO, "consumer", "revoked",
                "partitions=%d dropped=%d stored=%d lost=%d waited_ms=%d "
                "still_running=%d",
                parts->cnt, ndropped, commit->cnt, lost, waited, left);
        rd_kafka_topic_partition_list_destroy(commit);
}

/* Counts parts per level into n->held, for other threads (assign_held).
 * assigned() keeps signal topics' partitions only: each has a level.
 * Main thread, after every change to parts. */
static void held_update(node_t *n)
{
        int by[NODE_MAX_LEVELS] = {0};

        for (int i = 0; i < n->nparts; i++)
                by[n->parts[i].level - 1]++;
        pthread_mutex_lock(&n->held_lock);
        memcpy(n->held, by, sizeof(by));
        pthread_mutex_unlock(&n->held_lock);
}

int assign_held(node_t *n, int *by_level)
{
        int total = 0;
        pthread_mutex_lock(&n->held_lock);
        for (int L = 1; L <= n->levels; L++) {
                by_level[L - 1] = n->held[L - 1];
                total += n->held[L - 1];
        }
        pthread_mutex_unlock(&n->held_lock);
        return total;
}

/* "a,b,c,d": partitions this node holds at levels 1..levels. */
static void held_by_level(node_t *n, char *out, size_t size)
{
        int by[NODE_MAX_LEVELS];
        size_t at = 0;

        assign_held(n, by);
        out[0] = '\0';
        for (int L = 1; L <= n->levels && at < size; L++) {
                int w = snprintf(out + at, size - at, "%s%d", L > 1 ? "," : "",
                                 by[L - 1]);
                if (w < 0)
                        break;
                at += (size_t)w;
        }
}

void assign_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
        node_t *n = opaque;
        bool coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
        rd_kafka_error_t *ke = NULL;

        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                assigned(n, parts);
                held_update(n);
                char by[NODE_MAX_LEVELS * 8] = "";
                held_by_level(n, by, sizeof(by));
                par_log(PAR_LOG_INFO, "consumer", "assigned",
                        "partitions=%d held=%d held_by_level=%s", parts->cnt,
                        n->nparts, by);
                if (coop)
                        ke = rd_kafka_incremental_assign(rk, parts);
                else
                        rd_kafka_assign(rk, parts);
        } else {
                revoked(n, rk, parts);
                held_update(n);
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
