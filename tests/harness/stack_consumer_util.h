/*
 * stack_consumer_util.h — helpers for the consumer's stack tests, on top of
 * tests/stack_util.h (the private world: unique database and topic prefix,
 * the real producer, the ledger of inserted signals).
 *
 * Adds: the results/metrics/workers topics of the world, inserting signals
 * with a chosen priority, resource and recipe, spawning real
 * parallel-consumer nodes, reading <prefix>.results and <prefix>.dlq back
 * into per-signal records, and checking every document's final status.
 *
 * Compiled once into the test harness (par_harness); single-threaded.
 */
#ifndef PAR_STACK_CONSUMER_UTIL_H
#define PAR_STACK_CONSUMER_UTIL_H

#include "base/clock.h"
#include "msg/kafka.h"
#include "stack_util.h"

#define SC_MAX_RESULTS 8 /* per signal, kept for inspection */

int sc_init(su_ctx_t *c, const char *what);

void sc_cleanup(su_ctx_t *c);

/*
 * Inserts n pending signals: priority, recipe, resource "res-<r>" with r =
 * res_base + i % nres (nres 0: no resource), and publishes each to its
 * signal topic in insertion order. Each is added to the ledger (its idx is
 * the insertion order). Returns how many.
 */
size_t sc_insert(su_ctx_t *c, su_ledger_t *l, size_t n, int priority,
                 const char *recipe, int nres, int res_base);

/* ------------------------------------------------------------- consumers */

/*
 * Spawns a consumer node named tag for this world (its own HTTP port,
 * fast failure detection, 1 s metrics), with extra -X "key=value" options
 * (NULL-terminated). Waits up to 20 s for its "started" line.
 */
int sc_node_start(su_ctx_t *c, su_proc_t *p, const char *tag, ...);

/* The partitions node p holds now, from its /status ("partitions"):
 * by_level[L-1] for the world's 4 levels. Returns the "held" total, or -1
 * when /status does not answer or lacks them. */
int sc_node_held(const su_proc_t *p, int by_level[4]);

/* ----------------------------------------------------------------- results */

typedef struct sc_result {
        char status[12];
        int attempt;
        int64_t created_at, queued_at, claimed_at, started_at, finished_at;
        char node[64];
        char value[64];  /* the first extracted value, "name=value" */
        char error[160]; /* "code: message" of a failed attempt, or "" */
} sc_result_t;

typedef struct sc_rec {
        int finals, dones, retrying, skipped, dlq, nres;
        sc_result_t r[SC_MAX_RESULTS];
} sc_rec_t;

typedef struct sc_reader {
        rd_kafka_t *rk;
        sc_rec_t *recs; /* indexed by ledger idx - 1 */
        size_t cap;
        long results, unknown, dead_letters;
} sc_reader_t;

int sc_reader_new(su_ctx_t *c, sc_reader_t *r, size_t cap);

void sc_reader_destroy(sc_reader_t *r);

int sc_is_final(const char *s);

void sc_take(su_ctx_t *c, sc_reader_t *r, su_ledger_t *l,
             rd_kafka_message_t *m);

/* Reads results until the first `upto` signals all have a final result and
 * settle_ms passed without news, or timeout_s. Returns signals missing. */
size_t sc_read(su_ctx_t *c, sc_reader_t *r, su_ledger_t *l, size_t upto,
               double timeout_s, int settle_ms);

/* Signals with at least one final result so far. */
size_t sc_finals(sc_reader_t *r);

/* Reads results until at least want signals are final (or timeout_s). */
void sc_read_until(su_ctx_t *c, sc_reader_t *r, su_ledger_t *l, size_t want,
                   double timeout_s);

/* Counts documents by final/non-final status; *nonfinal gets the rest. */
size_t sc_docs_final(su_ctx_t *c, size_t *nonfinal);

/* Prints up to max documents that are not final (diagnostics). */
void sc_dump_nonfinal(su_ctx_t *c, int max);

/* The q-quantile (nearest rank) of v[0..n) (sorted in place). */
int64_t sc_quantile(int64_t *v, size_t n, double q);

#endif
