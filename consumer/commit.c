/*
 * commit.c — committing finished offsets. An offset is committed only once
 * every message before it has finished (offsets.c), which is what makes a
 * restart or a rebalance lose nothing.
 *
 * The periodic commits are librdkafka's auto-committer's, fed only with
 * finished prefixes (enable.auto.offset.store is off; we store them): it
 * skips its turn while the group rebalances. A commit of our own then would
 * carry the old generation, and librdkafka 2.0.2 takes its refusal
 * ("illegal generation") for a lost assignment: every partition revoked
 * without a commit and re-read from the last one, re-running what had
 * finished. Any member joining or leaving the group starts such a window
 * for every other member, not only for the one that rebalanced.
 */
#include "assign.h"
#include "base/clock.h"
#include "base/log.h"
#include "commit.h"
#include "node_state.h"
#include "obs.h"

static void add_commit(const char *topic, int32_t partition, int64_t offset,
                       void *opaque)
{
        rd_kafka_topic_partition_list_add(opaque, topic, partition)->offset =
            offset;
}

/* Stores the finished prefixes that advanced (all: every partition's);
 * returns them (the caller destroys the list). A partition revoked since
 * is refused (not assigned): its final prefix went with its revoke. */
static rd_kafka_topic_partition_list_t *store_prefixes(node_t *n, bool all)
{
        rd_kafka_topic_partition_list_t *l =
            rd_kafka_topic_partition_list_new(8);
        if (par_offsets_collect(n->offsets, all, add_commit, l))
                rd_kafka_offsets_store(n->consumer, l);
        return l;
}

void commit_offsets(node_t *n, bool all)
{
        rd_kafka_topic_partition_list_destroy(store_prefixes(n, all));
}

/* True when the broker holds at least l's offsets for every partition of
 * l this node still owns (a partition revoked meanwhile had its final
 * prefix stored for its unassign). */
static bool committed_all(node_t *n, const rd_kafka_topic_partition_list_t *l)
{
        rd_kafka_topic_partition_list_t *c =
            rd_kafka_topic_partition_list_copy(l);
        bool ok = !rd_kafka_committed(n->consumer, c, 2000);
        for (int i = 0; ok && i < c->cnt; i++) {
                const rd_kafka_topic_partition_t *p = &c->elems[i];
                if (assign_owned(n, p->topic, p->partition) &&
                    (p->err || p->offset < l->elems[i].offset))
                        ok = false;
        }
        rd_kafka_topic_partition_list_destroy(c);
        return ok;
}

bool commit_final(node_t *n, int64_t timeout_ms)
{
        rd_kafka_topic_partition_list_t *l = store_prefixes(n, true);
        int64_t until = par_clock_mono_ms() + timeout_ms;
        bool ok = true;

        /* Polling serves the rebalance callbacks of a rejoin under way;
         * messages polled are not tracked (the next owner reads them
         * again). */
        while (l->cnt && !(ok = committed_all(n, l)) &&
               par_clock_mono_ms() < until) {
                rd_kafka_message_t *m =
                    rd_kafka_consumer_poll(n->consumer, 100);
                if (m)
                        rd_kafka_message_destroy(m);
        }
        rd_kafka_topic_partition_list_destroy(l);
        atomic_store(&n->final_committed, ok);
        if (!ok)
                par_log(PAR_LOG_WARN, "consumer", "final_commit_timeout",
                        "after_ms=%lld", (long long)timeout_ms);
        return ok;
}

void commit_result_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
        node_t *n = opaque;
        int failed = 0;
        const char *why = rd_kafka_err2str(err);

        /* NO_OFFSET: nothing new to commit on the auto-committer's turn. */
        if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
                return;
        for (int i = 0; offsets && i < offsets->cnt; i++)
                if (offsets->elems[i].err) {
                        failed++;
                        why = rd_kafka_err2str(offsets->elems[i].err);
                }
        if (!err && !failed)
                return;
        if (atomic_load(&n->final_committed)) {
                PAR_DEBUG("consumer", "commit_after_final", "error=\"%s\"",
                          why);
                return;
        }
        obs_kafka_error(n->obs, "commit");
        par_log(PAR_LOG_WARN, "consumer", "commit_failed",
                "partitions=%d failed=%d error=\"%s\"",
                offsets ? offsets->cnt : 0, failed, why);
}
