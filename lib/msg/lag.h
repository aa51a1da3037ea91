/*
 * lag.h — consumer-group lag computed the way Kafka's own
 * `kafka-consumer-groups --describe` computes its LAG column, so the figure
 * a node exports, `parallel-ctl status` prints and the Kafka tool reports
 * are the same number.
 *
 * Per partition: lag = high watermark (log end offset) − the group's
 * committed offset. Where the group has committed nothing, the Kafka tool
 * prints "-"; Parallel's consumers start such a partition from the earliest
 * offset (auto.offset.reset=earliest), so every retained message is still
 * to be consumed and the lag is high − low watermark.
 *
 * The committed offsets come from the caller (rd_kafka_committed() on a
 * group member, or the Admin API's ListConsumerGroupOffsets for a view from
 * outside the group); this module adds the watermarks, asked of the
 * partition leaders with rd_kafka_query_watermark_offsets (a broker round
 * trip each: not the cached figure, which is stale for paused partitions).
 */
#ifndef PAR_MSG_LAG_H
#define PAR_MSG_LAG_H

#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "base/err.h"

/*
 * For each element of `parts` (topic, partition, offset = the committed
 * offset or a negative RD_KAFKA_OFFSET_* when none), writes its lag to
 * lag[i] (the caller's array of parts->cnt entries), or -1 when its
 * watermarks could not be read within timeout_ms. Borrows rk (any client
 * type; thread-safe in librdkafka) and parts. Returns PAR_ERR_KAFKA, naming
 * the first partition that failed, if any did; the other entries are still
 * filled.
 */
par_err_t par_lag_compute(rd_kafka_t *rk,
                          const rd_kafka_topic_partition_list_t *parts,
                          int64_t *lag, int timeout_ms, par_error_t *err);

#endif
