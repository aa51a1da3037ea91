/*
 * assign.c — rebalances and flow control.
 *
 * Rebalances are incremental (cooperative-sticky): on revoke, the revoked
 * partitions' queued jobs are dropped, the finished prefix is committed
 * synchronously, and only then are they unassigned.
 *
 * After an incremental revoke the member rejoins at once, and librdkafka
 * 2.0.2 treats a commit that meets the new generation meanwhile ("illegal
 * generation") as a lost assignment: every partition is revoked without a
 * commit and re-read from the last one, re-running what had finished. So
 * the periodic commits wait (commit.c asks assign_commits_allowed) from a
 * revoke until the rejoin's assignment; the revoke itself commits
 * synchronously, after letting the running jobs of the revoked partitions
 * finish, so the new owner starts after everything that finished here.
 *
 * Back-pressure is by pausing partitions (per priority level, on the
 * scheduler's watermarks) while polling goes on; librdkafka then stops
 * fetching them and re-fetches from the last delivered position on resume.
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

void assign_delivered(node_t *n, const char *topic, int32_t partition,
                      int level)
{
        struct npart *np = part_find(n, topic, partition);
        if (!np)
                return;
        np->delivered = true;
        if ((n->paused & (1u << (level - 1))) && !np->paused)
                part_pause(n, np, true);
}

/* Pauses (resumes) the partitions of the levels in mask; a partition that
 * has not delivered since its assignment is paused on its first message
 * (see node_state.h). */
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

void assign_apply_flow(node_t *n)
{
        uint32_t pause, resume;
        if (!par_sched_take_flow(n->sched, &pause, &resume))
                return;
        n->paused = (n->paused | pause) & ~resume;
        pause_levels(n, pause, true);
        pause_levels(n, resume, false);
        PAR_DEBUG("consumer", "flow", "paused_mask=0x%x", n->paused);
}

void assign_pause_all(node_t *n)
{
        n->paused = (1u << n->levels) - 1;
        pause_levels(n, n->paused, true);
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
                /* Leave no pause behind: librdkafka keeps a partition's
                 * pause flag across unassign, and a later assignment would
                 * never fetch it. */
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
                        obs_kafka_error(n->obs, "commit");
                if (ce)
                        par_log(PAR_LOG_WARN, "consumer",
                                "revoke_commit_failed", "error=\"%s\"",
                                rd_kafka_err2str(ce));
        }
        par_log(PAR_LOG_INFO, "consumer", "revoked",
                "partitions=%d dropped=%d committed=%d lost=%d waited_ms=%d "
                "still_running=%d",
                parts->cnt, ndropped, commit->cnt, lost, waited, left);
        rd_kafka_topic_partition_list_destroy(commit);
}

void assign_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
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
                assigned(n, parts);
                /* The assignment that follows a revoke belongs to the same
                 * round; the next one ends the rejoin. */
                if (n->rejoin == NODE_REJOIN_REVOKED) {
                        n->rejoin = NODE_REJOIN_WAITING;
                } else if (n->rejoin == NODE_REJOIN_WAITING) {
                        n->rejoin = NODE_REJOIN_NONE;
                        PAR_DEBUG(
                            "consumer", "rejoined", "after_ms=%lld",
                            (long long)(par_clock_mono_ms() - n->rejoin_since));
                }
        } else {
                bool lost = rd_kafka_assignment_lost(rk);
                revoked(n, rk, parts);
                if (coop) {
                        n->rejoin =
                            lost ? NODE_REJOIN_WAITING : NODE_REJOIN_REVOKED;
                        n->rejoin_since = par_clock_mono_ms();
                }
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

bool assign_commits_allowed(node_t *n)
{
        if (n->rejoin == NODE_REJOIN_NONE)
                return true;
        /* A safety valve should librdkafka skip an assignment callback. */
        if (par_clock_mono_ms() - n->rejoin_since > 60000) {
                par_log(PAR_LOG_WARN, "consumer", "rejoin_timeout",
                        "after_ms=60000");
                n->rejoin = NODE_REJOIN_NONE;
                return true;
        }
        return false;
}
