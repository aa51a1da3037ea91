/*
 * assign.h — the node's partition assignment (internal to consumer/).
 *
 * Owns: the rebalance callback (incremental assign / unassign, with the
 * revoked partitions' queued jobs dropped and their finished prefix
 * committed first), the table of assigned partitions (and its counts per
 * level, which /status reads on the HTTP thread) and the forwarding
 * of their messages to one queue per priority level, and which levels are
 * held back on the scheduler's watermarks. Stays
 * out: the periodic commits (commit.c) and the messages themselves
 * (intake.c). Main thread (librdkafka serves rebalances from poll),
 * except assign_held.
 */
#ifndef PAR_CONSUMER_ASSIGN_H
#define PAR_CONSUMER_ASSIGN_H

#include <stdbool.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

typedef struct node node_t;

/* The priority level of a signal topic; 0 for any other topic. */
int assign_level(node_t *n, const char *topic);
/* True when topic/partition is assigned to this node now. */
bool assign_owned(node_t *n, const char *topic, int32_t partition);
/* Forwards every assigned partition to its level's queue again (a forward
 * an unassign cleared after a quick re-assignment would strand its
 * messages; cheap, so the main loop repeats it every second). */
void assign_reforward(node_t *n);
/* Applies the scheduler's hold/go-on decisions to n->paused. */
void assign_apply_flow(node_t *n);
/* Holds every level (shutdown). */
void assign_pause_all(node_t *n);
/* Any thread: the partitions this node held after the last rebalance, per
 * level (by_level[L-1] for levels 1..n->levels), and their total. */
int assign_held(node_t *n, int *by_level);
/* The rebalance callback; opaque is the node. */
void assign_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque);

#endif
