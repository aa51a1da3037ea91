/*
 * offsets.h — per-partition tracking of out-of-order completion, so a
 * consumer commits only offsets below which every message is finished.
 *
 * The poll thread records each offset it hands to the scheduler
 * (par_offsets_track); workers mark offsets done in any order
 * (par_offsets_done); the committable offset of a partition is one past
 * the last offset of the longest finished prefix of tracked offsets (Kafka's
 * "next offset to read" convention). Offsets need not be
 * contiguous integers (compaction and transaction markers leave gaps): only
 * tracked offsets count.
 *
 * Threads: all functions are thread-safe (one mutex).
 */
#ifndef PAR_OFFSETS_H
#define PAR_OFFSETS_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"

typedef struct par_offsets par_offsets_t;

par_err_t par_offsets_new(par_offsets_t **out, par_error_t *err);
void par_offsets_destroy(par_offsets_t *o);

/* Records that offset of (topic, partition) was handed out for processing.
 * Offsets of a partition must be tracked in increasing order; an offset at
 * or below the last one tracked (a redelivery after a seek) is ignored and
 * PAR_ERR_INVALID returned, so the caller can skip the duplicate message. */
par_err_t par_offsets_track(par_offsets_t *o, const char *topic,
                            int32_t partition, int64_t offset,
                            par_error_t *err);

/* Marks a tracked offset finished. PAR_ERR_NOTFOUND when the partition was
 * revoked (or the offset never tracked): the caller just drops it. */
par_err_t par_offsets_done(par_offsets_t *o, const char *topic,
                           int32_t partition, int64_t offset);

/* The committable offset of a partition (-1 when nothing is tracked or done
 * yet) and how many tracked offsets are still unfinished. */
int64_t par_offsets_committable(par_offsets_t *o, const char *topic,
                                int32_t partition, int *pending);

/* Calls cb for each partition whose committable offset advanced since the
 * last time it was reported, or, when all is set, for every partition with
 * a committable offset (to re-send commits that may have failed). cb runs
 * under the lock: it must not call back into o. Returns how many
 * partitions were reported. */
int par_offsets_collect(par_offsets_t *o, bool all,
                        void (*cb)(const char *topic, int32_t partition,
                                   int64_t offset, void *opaque),
                        void *opaque);

/* Forgets a partition (revoked). Returns its committable offset (-1 when
 * nothing finished), whether or not it was reported before: the final
 * commit of a partition must not depend on an earlier asynchronous one
 * having succeeded. done() on its offsets later returns NOTFOUND. */
int64_t par_offsets_revoke(par_offsets_t *o, const char *topic,
                           int32_t partition);

/* Unfinished tracked offsets across all partitions. */
int par_offsets_pending(par_offsets_t *o);

#endif
