/*
 * commit.c — periodic commits. Auto-commit is off: an offset is committed
 * only once every message before it has finished (offsets.c), which is
 * what makes a restart or a rebalance lose nothing.
 */
#include "assign.h"
#include "commit.h"
#include "base/log.h"
#include "node_state.h"
#include "obs.h"

static void add_commit(const char *topic, int32_t partition, int64_t offset,
                       void *opaque)
{
        rd_kafka_topic_partition_list_add(opaque, topic, partition)->offset =
            offset;
}

void commit_offsets(node_t *n, bool sync, bool all)
{
        /* A synchronous commit (shutdown) goes out regardless: the node
         * leaves, and shut_down waits for the rejoin first (node.c). */
        if (!sync && !assign_commits_allowed(n))
                return; /* what advanced is collected next time */
        rd_kafka_topic_partition_list_t *l =
            rd_kafka_topic_partition_list_new(8);
        if (par_offsets_collect(n->offsets, all, add_commit, l)) {
                rd_kafka_resp_err_t e = rd_kafka_commit(n->consumer, l, !sync);
                if (e)
                        obs_kafka_error(n->obs, "commit");
                if (e)
                        par_log(PAR_LOG_WARN, "consumer", "commit_failed",
                                "error=\"%s\"", rd_kafka_err2str(e));
        }
        rd_kafka_topic_partition_list_destroy(l);
}
