/*
 * metrics.h — counters, gauges and latency histograms, rendered in the
 * Prometheus text exposition format (version 0.0.4).
 *
 * Model. A registry (par_metrics_t) holds metric families; a family is a
 * name, a help text and a type; each family has one series per label set.
 * A label set is a fixed string written the way Prometheus prints it,
 * e.g. `priority="4"` or `priority="4",outcome="ok"` (or NULL/"" for none).
 * Handles returned by the registry are get-or-create: asking twice for the
 * same (name, labels) returns the same handle, so modules need not pass
 * handles around. Handles are borrowed: they stay valid until the registry
 * is destroyed and are never freed by the caller.
 *
 * Histograms (par_hist_t) are log-linear: values below 128 are counted
 * exactly; above, each power of two is split into 64 equal buckets, so a
 * bucket is at most 1/64 of its lower bound wide and a reported percentile
 * (the bucket's midpoint, clamped to the observed min/max) is within
 * PAR_HIST_REL_ERROR (1/128 ≈ 0.8 %) of the exact nearest-rank percentile
 * of the recorded values. Values are unsigned integers in a unit the caller
 * picks (µs is the convention for latencies); values above PAR_HIST_MAX are
 * clamped to it. A histogram is ~22 KB.
 *
 * Prometheus histograms (par_buckets_t) are separate: fixed `le` bounds
 * chosen per metric, lifetime counts, rendered as TYPE histogram. Use them
 * for anything exported; par_hist_t stays for in-process percentiles
 * (per-interval windows in NodeMetrics, benchmarks, reports).
 *
 * Rendering. Counters are rendered as `<name>_total` (the suffix is added
 * unless the name already ends in it). Gauges as they are. Histograms are
 * rendered as Prometheus *summaries*: quantiles 0.5, 0.9, 0.99, 0.999 plus
 * `_sum` and `_count`, all multiplied by the histogram's `scale` (record µs,
 * name the metric `..._seconds`, pass scale 1e-6). Why summaries: the
 * log-linear buckets (thousands) are too many to expose as `le` buckets and
 * arbitrary `le` bounds would not fall on bucket edges, whereas the
 * quantiles are accurate to the stated error. Summary quantiles cover the
 * values the histogram currently holds: everything since start, or since
 * the last par_hist_take/par_hist_reset on it if the owner keeps interval
 * windows. `_sum`/`_count` are lifetime totals that take/reset never clear,
 * so they stay monotonic and can be aggregated across nodes with rate().
 *
 * Threads. All record/update functions (par_counter_*, par_gauge_*,
 * par_hist_record) are lock-free (relaxed atomics) and may be called from
 * any thread concurrently. Registration takes the registry lock and may be
 * called from any thread; cache the handle on hot paths. Rendering takes the
 * registry lock (not the record paths) and may run concurrently with
 * recording: a render is not an atomic snapshot, each value is individually
 * consistent.
 */
#ifndef PAR_METRICS_H
#define PAR_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/err.h"

typedef struct par_metrics par_metrics_t;
typedef struct par_counter par_counter_t;
typedef struct par_gauge par_gauge_t;
typedef struct par_hist par_hist_t;
typedef struct par_buckets par_buckets_t;

/* Most upper bounds a Prometheus histogram may have (besides +Inf). */
#define PAR_BUCKETS_MAX 32

/* Ascending finite upper bounds of a Prometheus histogram's buckets. */
typedef struct par_bucket_bounds {
        const double *v;
        size_t n;
} par_bucket_bounds_t;

/* The bounds Parallel's latencies use (seconds; docs/OPERATIONS.md):
 * long: 5 ms .. 1 h (wait, end to end); spin: 1 ms .. 5 min;
 * short: 0.5 ms .. 10 s (MongoDB claims, Kafka acknowledgements). */
extern const par_bucket_bounds_t par_buckets_long;
extern const par_bucket_bounds_t par_buckets_spin;
extern const par_bucket_bounds_t par_buckets_short;

/* Relative error bound of par_hist_percentile() (see above). */
#define PAR_HIST_REL_ERROR (1.0 / 128)
/* Largest value a histogram distinguishes (2^48-1; ~8.9 years in µs). */
#define PAR_HIST_MAX ((UINT64_C(1) << 48) - 1)

/* ---------------------------------------------------------------- registry */

/* Creates an empty registry. */
par_err_t par_metrics_new(par_metrics_t **out, par_error_t *err);
/* Frees the registry and every handle it gave out. Accepts NULL. No other
 * thread may use the registry or its handles during or after the call. */
void par_metrics_destroy(par_metrics_t *m);

/*
 * Get-or-create a series. `name` must match [a-zA-Z_:][a-zA-Z0-9_:]* (for
 * counters, without or with the `_total` suffix); `labels` is NULL, "" or
 * `k="v"{,k="v"}` with label names [a-zA-Z_][a-zA-Z0-9_]* and values
 * escaped as Prometheus requires (\\, \" and \n). `help` is used when the
 * family is created (later calls may pass NULL). All strings are copied.
 *
 * Returns NULL — and logs an error naming the metric — when the name or
 * labels are malformed, when the name is already registered with another
 * type (or, for histograms, another scale), or on allocation failure. The
 * update functions below accept NULL handles and do nothing, so a bad
 * registration cannot crash a node; it shows up in the log instead.
 */
par_counter_t *par_metrics_counter(par_metrics_t *m, const char *name,
                                   const char *labels, const char *help);
par_gauge_t *par_metrics_gauge(par_metrics_t *m, const char *name,
                               const char *labels, const char *help);
par_hist_t *par_metrics_hist(par_metrics_t *m, const char *name,
                             const char *labels, const char *help,
                             double scale);

/*
 * Get-or-create a series of a Prometheus *histogram* (`_bucket{le=…}`,
 * `_sum`, `_count`): what a latency must be for histogram_quantile() to
 * work over any set of nodes. Unlike par_metrics_hist (a summary of
 * quantiles one process computed, which cannot be combined), its buckets
 * are plain counters. `b` (copied) must be the same for every series of a
 * family. Same naming and failure rules as par_metrics_counter (labels may
 * not use `le`). Values are observed in the metric's unit (seconds).
 */
par_buckets_t *par_metrics_histogram(par_metrics_t *m, const char *name,
                                     const char *labels, const char *help,
                                     const par_bucket_bounds_t *b);

/*
 * A gauge whose value is computed at render time by fn(opaque) (queue
 * depth, consumer lag, …). fn runs on the rendering thread, under the
 * registry lock: it must be quick, thread-safe with respect to what it
 * reads, and must not call into this registry. opaque is borrowed and must
 * outlive the registry. Returns PAR_ERR_INVALID on a malformed name/labels
 * or a name already used.
 */
par_err_t par_metrics_gauge_fn(par_metrics_t *m, const char *name,
                               const char *labels, const char *help,
                               double (*fn)(void *opaque), void *opaque,
                               par_error_t *err);

/* The same for a counter whose value is read at render time from a
 * monotonic source the caller owns (a library's error count, a child
 * object's statistics). fn must never return less than it did before. */
par_err_t par_metrics_counter_fn(par_metrics_t *m, const char *name,
                                 const char *labels, const char *help,
                                 double (*fn)(void *opaque), void *opaque,
                                 par_error_t *err);

/* Writes the whole registry in Prometheus text format to f. Families appear
 * in registration order, series in registration order within a family. */
par_err_t par_metrics_write(par_metrics_t *m, FILE *f, par_error_t *err);

/* Same, into a new NUL-terminated malloc'd string the caller frees;
 * *len (optional) receives its length. */
par_err_t par_metrics_render(par_metrics_t *m, char **out, size_t *len,
                             par_error_t *err);

/* ---------------------------------------------------------------- counters */

/* Adds n (counters only go up). Any thread. NULL is a no-op. */
void par_counter_add(par_counter_t *c, uint64_t n);
void par_counter_inc(par_counter_t *c);
/* The current value (0 for NULL). Any thread. */
uint64_t par_counter_get(const par_counter_t *c);

/* ------------------------------------------------------------------ gauges */

/* Gauges hold a double (integers up to 2^53 are exact). Any thread. */
void par_gauge_set(par_gauge_t *g, double v);
void par_gauge_add(par_gauge_t *g, double delta); /* delta may be < 0 */
double par_gauge_get(const par_gauge_t *g);

/* ------------------------------------------------- Prometheus histograms */

/* Counts v (NaN is ignored) in the first bucket whose bound is >= v. Lock-
 * free; any thread. NULL is a no-op. */
void par_buckets_observe(par_buckets_t *b, double v);
uint64_t par_buckets_count(const par_buckets_t *b);
double par_buckets_sum(const par_buckets_t *b);

/* -------------------------------------------------------------- histograms */

/* A standalone histogram, not in any registry (per-interval windows, tests,
 * benchmarks). Free with par_hist_destroy (accepts NULL). Never destroy a
 * handle obtained from par_metrics_hist. */
par_err_t par_hist_new(par_hist_t **out, par_error_t *err);
void par_hist_destroy(par_hist_t *h);

/* Records one value (clamped to PAR_HIST_MAX). Lock-free; any thread. */
void par_hist_record(par_hist_t *h, uint64_t value);
/* Records `count` occurrences of value at once. */
void par_hist_record_n(par_hist_t *h, uint64_t value, uint64_t count);

/*
 * The q-quantile (0 <= q <= 1; 0.99 for p99) by the nearest-rank rule: the
 * smallest recorded value v such that at least ceil(q*N) values are <= v
 * (q = 0 gives the minimum), within PAR_HIST_REL_ERROR. 0 when empty.
 * Any thread; concurrent recording makes the answer approximate in time.
 */
uint64_t par_hist_percentile(const par_hist_t *h, double q);
uint64_t par_hist_count(const par_hist_t *h);
uint64_t par_hist_sum(const par_hist_t *h); /* of clamped values */
uint64_t par_hist_min(const par_hist_t *h); /* exact; 0 when empty */
uint64_t par_hist_max(const par_hist_t *h); /* exact; 0 when empty */
double par_hist_mean(const par_hist_t *h);  /* 0 when empty */

/* Clears every count. Any thread (recordings racing with it may land on
 * either side). */
void par_hist_reset(par_hist_t *h);

/*
 * Moves everything recorded in src into dst (adding to what dst holds) and
 * leaves src empty: each bucket is exchanged atomically, so a value recorded
 * concurrently is counted exactly once, in src or in dst. This is the
 * per-interval snapshot: keep a standalone `window` histogram, call
 * par_hist_take(window, hist) every interval, read the window's
 * percentiles, then par_hist_reset(window). Min/max of dst become the
 * bounds of the merged values. src and dst must differ.
 */
void par_hist_take(par_hist_t *dst, par_hist_t *src);

/* Adds src's counts into dst without changing src. */
void par_hist_merge(par_hist_t *dst, const par_hist_t *src);

#endif
