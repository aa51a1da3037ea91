/*
 * commit.h — committing finished offsets (internal to consumer/).
 *
 * Owns: the periodic commit of each partition's finished prefix (tracked by
 * offsets.c). Stays out: the commit on revoke (assign.c), which must
 * happen inside the rebalance callback. Main thread.
 */
#ifndef PAR_CONSUMER_COMMIT_H
#define PAR_CONSUMER_COMMIT_H

#include <stdbool.h>

typedef struct node node_t;

/* Commits the finished prefixes that advanced; with all, every
 * partition's, so a commit that failed (e.g. during a rebalance) is sent
 * again. sync: wait for the broker's answer. Nothing is sent while the
 * member rejoins after a revoke (assign_commits_allowed). */
void commit_offsets(node_t *n, bool sync, bool all);

#endif
