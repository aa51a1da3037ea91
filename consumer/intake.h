/*
 * intake.h — turning polled messages into scheduler jobs (internal to
 * consumer/).
 *
 * Owns: offset tracking of each message, decoding, dead-lettering what
 * cannot be decoded, and building the job. Stays out: running the job
 * (pipeline.c) and pausing partitions (assign.c, told of each delivery).
 * Main thread.
 */
#ifndef PAR_CONSUMER_INTAKE_H
#define PAR_CONSUMER_INTAKE_H

#include <librdkafka/rdkafka.h>

typedef struct node node_t;

/* Handles one message from the signal topics (borrowed). */
void intake_message(node_t *n, const rd_kafka_message_t *m);

#endif
