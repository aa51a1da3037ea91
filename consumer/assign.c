/*
 * assign.c — rebalances and flow control.
 *
 * Rebalances are incremental (cooperative-sticky): on revoke, the revoked
 * partitions' queued jobs are dropped, the finished prefix is committed
 * synchronously, and only then are they unassigned. A job of a revoked
 * partition that is still running finishes normally; its offset is simply
 * not committed by us (the new owner's claim skips or takes over).
 *
 * Back-pressure is by pausing partitions (per priority level, on the
 * scheduler's watermarks) while polling goes on; librdkafka then stops
 * fetching them and re-fetches from the last delivered position on resume.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assign.h"
#include "base/log.h"
#include "node.h"

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

/* Drops the revoked partitions' queued jobs and pause state, and commits
 * their finished prefix (unless the assignment was lost: the partitions
 * are someone else's already). */
static void revoked(node_t *n, rd_kafka_t *rk,
                    rd_kafka_topic_partition_list_t *parts)
{
        bool lost = rd_kafka_assignment_lost(rk);
        rd_kafka_topic_partition_list_t *commit =
            rd_kafka_topic_partition_list_new(parts->cnt + 1);
        int dropped = 0;
        for (int i = 0; i < parts->cnt; i++) {
                const char *t = parts->elems[i].topic;
                int32_t p = parts->elems[i].partition;
                int L = assign_level(n, t);
                if (L)
                        dropped += par_sched_revoke(n->sched, L, p);
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
                "partitions=%d dropped=%d committed=%d lost=%d", parts->cnt,
                dropped, commit->cnt, lost);
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
        } else {
                revoked(n, rk, parts);
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
