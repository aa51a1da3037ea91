/*
 * commit.h — committing finished offsets (internal to consumer/).
 *
 * Owns: storing each partition's finished prefix (tracked by offsets.c) for
 * librdkafka's auto-committer, which commits them every commit.interval
 * while the group is steady and on every unassign; waiting at shutdown
 * until they are committed; reporting commits that failed. Stays out: what
 * is stored on revoke (assign.c), which must happen inside the rebalance
 * callback, before the unassign commits it. Main thread; the commit callback
 * also runs on the closer's thread at shutdown (node.c).
 */
#ifndef PAR_CONSUMER_COMMIT_H
#define PAR_CONSUMER_COMMIT_H

#include <stdbool.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

typedef struct node node_t;

/* Stores the finished prefixes that advanced; with all, every partition's
 * (cheap: librdkafka commits only what differs from its last commit). */
void commit_offsets(node_t *n, bool all);
/* Shutdown: stores every finished prefix and waits (serving callbacks)
 * until the broker has them, i.e. the auto-committer sent them in a steady
 * group, or timeout_ms. False on timeout (logged). */
bool commit_final(node_t *n, int64_t timeout_ms);
/* librdkafka's offset_commit_cb (the auto-committer's and the unassign's
 * commits): counts and logs failures. opaque is the node. */
void commit_result_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque);

#endif
