/*
 * stack_util.h — shared helpers for the producer's stack tests (label
 * `stack`: they need the local Kafka and the MongoDB stand-in).
 *
 * Each test gets a private world: a unique MongoDB database and a unique
 * topic prefix (created here with the Admin API, deleted at the end), so
 * tests can run beside each other and beside anyone else's. The producer is
 * the real binary ($PARALLEL_BINARY_DIR/parallel-producer), spawned with -X
 * options and killed by pid. A ledger records every signal id inserted and
 * counts how often each is read back from Kafka.
 *
 * Compiled once into the test harness (par_harness); single-threaded
 * unless a function says otherwise. SU_TEST_MAIN is the main() of a test
 * that needs one world.
 */
#ifndef PAR_STACK_UTIL_H
#define PAR_STACK_UTIL_H

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <mongoc/mongoc.h>

#include "base/clock.h"
#include "msg/admin.h"
#include "msg/codec.h"
#include "net/httpc.h"
#include "testutil.h"

#define SU_PARTITIONS 3

typedef struct su_ctx {
        char name[64]; /* database name and topic prefix */
        const char *mongo_uri;
        const char *kafka;
        mongoc_client_t *client;
        mongoc_collection_t *signals;
        par_codec_t *codec;
        char bin[512];
        char logdir[256];
        int log_append_time; /* topics stamp messages when appended */
} su_ctx_t;

/* ---------------------------------------------------------------- topics */

/* Creates (create=1) or deletes the topics <world>.<suffix> for
 * suffixes[0..n) through msg/admin, SU_PARTITIONS partitions each, with
 * the world's timestamp type. */
int su_topics(su_ctx_t *c, const char *const *suffixes, size_t n, int create);

/* ------------------------------------------------------------ life cycle */

/* Creates the private world for test `what`; with log_append_time its
 * topics use message.timestamp.type=LogAppendTime (the broker's append time
 * is then each message's timestamp). Returns 0 or -1. */
int su_init_ex(su_ctx_t *c, const char *what, int log_append_time);

int su_init(su_ctx_t *c, const char *what);

void su_cleanup(su_ctx_t *c);

/* ------------------------------------------------------------- producers */

typedef struct su_proc {
        pid_t pid;
        int port; /* its HTTP port (0 if unknown) */
        char log[512];
} su_proc_t;

/*
 * Spawns the producer for this world with -X options (NULL-terminated list
 * of "key=value"), HTTP on an ephemeral port, output to <logdir>/<tag>.log.
 * Waits (up to 15 s) for its "started" line to learn the port.
 */
int su_producer_start(su_ctx_t *c, su_proc_t *p, const char *tag, ...);

/* Waits up to timeout_s for a log line containing what; 0 when found. */
int su_wait_log(const su_proc_t *p, const char *what, double timeout_s);

/* Sends sig and waits up to timeout_s; returns the exit status (or 128 +
 * signal), -1 on timeout (then SIGKILLs it). */
int su_producer_stop(su_proc_t *p, int sig, double timeout_s);

/* GETs path from a local HTTP port (a producer's or a node's) into buf,
 * cut to n - 1 bytes; returns the status, 0 when nothing answered in 2 s. */
int su_http_get(int port, const char *path, char *buf, size_t n);

/* A metric's value from /metrics, or -1. */
double su_metric(int port, const char *name);

/* The sum of every series whose text starts with `prefix` (e.g.
 * `parallel_spins_total{status="done"` adds up all priorities and
 * recipes), or -1 when /metrics cannot be read or nothing matches. */
double su_metric_sum(int port, const char *prefix);

/* 1 active, 0 standby, -1 unreachable. */
int su_active(int port);

/* ---------------------------------------------------------------- ledger */

typedef struct su_entry {
        char id[25];
        int priority;
        int resource;  /* index; the key is "res-<n>" */
        size_t idx;    /* insertion order */
        int seen;      /* times read from Kafka */
        int bad_topic; /* read from a topic not of its priority */
        int bad_key;
} su_entry_t;

typedef struct su_ledger {
        su_entry_t *e;
        size_t n, cap;
        size_t *slots; /* open addressing: index+1, 0 = empty */
        size_t nslots;
        pthread_mutex_t lock;
        size_t *last_idx; /* per resource and priority: last index read */
        int nres;
        long out_of_order, unknown, read;
} su_ledger_t;

int su_ledger_init(su_ledger_t *l, size_t cap, int nres);

void su_ledger_free(su_ledger_t *l);

/* Thread-safe. */
su_entry_t *su_ledger_add(su_ledger_t *l, const char *id, int priority,
                          int resource);

su_entry_t *su_ledger_find(su_ledger_t *l, const char *id);

typedef struct su_tally {
        size_t inserted, missing, duplicates, bad_topic, bad_key;
} su_tally_t;

su_tally_t su_ledger_tally(su_ledger_t *l);

/* ------------------------------------------------------------- inserting */

/* Builds one valid pending signal document. */
void su_signal_doc(bson_t *d, bson_oid_t *oid, int priority, int resource,
                   const char *recipe);

/*
 * Inserts n valid signals in bulks of `batch` (priority 1 + i % 4, resource
 * i % nres), recording each in the ledger. Uses its own client when called
 * from another thread (pass a collection from that client). Returns the
 * number inserted.
 */
size_t su_insert(mongoc_collection_t *coll, su_ledger_t *l, size_t n, int nres,
                 size_t batch, int pause_ms);

/* su_insert on a thread with its own MongoDB client, for tests that kill or
 * restart things while signals arrive. su_insert_join returns the count
 * inserted. */
typedef struct su_inserter {
        pthread_t th;
        const su_ctx_t *ctx;
        su_ledger_t *ledger;
        size_t n, batch, done;
        int nres, pause_ms;
} su_inserter_t;

int su_insert_start(su_inserter_t *in, const su_ctx_t *c, su_ledger_t *l,
                    size_t n, int nres, size_t batch, int pause_ms);

size_t su_insert_join(su_inserter_t *in);

/* --------------------------------------------------------------- reading */

typedef struct su_reader {
        rd_kafka_t *rk;
} su_reader_t;

/* Assigns every partition of the world's signal topics (and the DLQ when
 * dlq) from the beginning. */
int su_reader_new(su_ctx_t *c, su_reader_t *r, int dlq);

void su_reader_destroy(su_reader_t *r);

/* Called for every DLQ message (decoded DeadLetter). */
typedef void (*su_dlq_fn)(void *opaque, json_t *dead_letter,
                          const rd_kafka_message_t *m);

/*
 * Reads until every ledger entry has been seen and `settle_ms` passed with
 * nothing new, or until timeout_s. Checks headers on every signal: a
 * traceparent and a signal-id equal to the value's id (bad ones counted in
 * *bad_headers). Returns the number of messages read.
 */
long su_read(su_ctx_t *c, su_reader_t *r, su_ledger_t *l, double timeout_s,
             int settle_ms, long *bad_headers, su_dlq_fn on_dlq, void *opaque);

/* Setup and teardown of a one-world test: su_init (failing the program,
 * with a hint, when the stack does not answer) and su_cleanup. */
int su_setup(su_ctx_t *c, const char *what);

/* main() for a test with one world in `ctx` (a static su_ctx_t) named
 * `what`, running the listed tests in it. */
#define SU_TEST_MAIN(ctx, what, ...)                                           \
        TEST_MAIN_CTX(su_setup, su_cleanup, ctx, what, __VA_ARGS__)

#endif
