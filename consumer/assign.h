/*
 * assign.h — the node's partition assignment (internal to consumer/).
 *
 * Owns: the rebalance callback (incremental assign / unassign, with the
 * revoked partitions' queued jobs dropped and their finished prefix
 * committed first), the table of assigned partitions, and pausing and
 * resuming them per priority level on the scheduler's watermarks. Stays
 * out: the periodic commits (commit.c) and the messages themselves
 * (intake.c). Main thread (librdkafka serves rebalances from poll).
 */
#ifndef PAR_CONSUMER_ASSIGN_H
#define PAR_CONSUMER_ASSIGN_H

#include <stdbool.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

typedef struct node node_t;

/* The priority level of a signal topic; 0 for any other topic. */
int assign_level(node_t *n, const char *topic);
/* A message of topic/partition (at level) reached the application: from
 * now on it may be paused (see node.h). */
void assign_delivered(node_t *n, const char *topic, int32_t partition,
                      int level);
/* Applies the scheduler's pause/resume decisions. */
void assign_apply_flow(node_t *n);
/* Pauses every level (shutdown). */
void assign_pause_all(node_t *n);
/* False while the member rejoins after a revoke: a commit then would be
 * taken for a lost assignment (assign.c). */
bool assign_commits_allowed(node_t *n);
/* The rebalance callback; opaque is the node. */
void assign_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque);

#endif
