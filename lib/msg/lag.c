/*
 * lag.c — consumer-group lag per partition (see lag.h).
 *
 * Why not rd_kafka_ListOffsets: it arrived in librdkafka 2.3; Debian 12 has
 * 2.0.2, whose per-partition watermark query does the same job.
 */
#include "msg/lag.h"

par_err_t par_lag_compute(rd_kafka_t *rk,
                          const rd_kafka_topic_partition_list_t *parts,
                          int64_t *lag, int timeout_ms, par_error_t *err)
{
        par_err_t rc = PAR_OK;

        for (int i = 0; parts && i < parts->cnt; i++) {
                const rd_kafka_topic_partition_t *p = &parts->elems[i];
                int64_t lo = -1, hi = -1;
                rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(
                    rk, p->topic, p->partition, &lo, &hi, timeout_ms);
                if (e) {
                        lag[i] = -1;
                        if (!rc)
                                rc = par_error_set(
                                    err, PAR_ERR_KAFKA,
                                    "lag: watermarks of %s [%d]: %s", p->topic,
                                    (int)p->partition, rd_kafka_err2str(e));
                        continue;
                }
                int64_t from = p->offset >= 0 ? p->offset : lo;
                lag[i] = hi > from ? hi - from : 0;
        }
        return rc;
}
