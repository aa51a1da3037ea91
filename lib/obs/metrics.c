/*
 * metrics.c — the metrics registry and log-linear histograms (see metrics.h).
 *
 * Why hand-written: HdrHistogram is not packaged for Debian and the part we
 * need is small. The layout is HdrHistogram's idea reduced to one fixed
 * shape: 7 significant bits. Values 0..127 get one bucket each; a value with
 * its highest set bit at position b >= 7 goes to the bucket of its top 7
 * bits (64 buckets per power of two), i.e. index
 *   128 + (shift - 1) * 64 + ((v >> shift) - 64),   shift = b - 6.
 * A bucket [lo, hi] therefore has hi - lo < lo / 64, and its midpoint is
 * within lo / 128 of any value in it. Every counter is a relaxed atomic so
 * recording never takes a lock; only registration and rendering take the
 * registry mutex, which protects the family/series lists, never the values.
 */
#include "obs/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

#define SUB_BITS   7
#define SUB_COUNT  (1u << SUB_BITS)    /* 128: exact values */
#define HALF_COUNT (SUB_COUNT / 2)     /* 64 buckets per power of two */
#define MAX_SHIFT  (48 - SUB_BITS + 1) /* 42: msb 47 → shift 41 */
#define NBUCKETS   (SUB_COUNT + (MAX_SHIFT - 1) * HALF_COUNT)

struct par_hist {
        _Atomic uint64_t buckets[NBUCKETS];
        _Atomic uint64_t count, sum;             /* held values */
        _Atomic uint64_t min, max;               /* min = UINT64_MAX if none */
        _Atomic uint64_t total_count, total_sum; /* lifetime, for rendering */
};

struct par_counter {
        _Atomic uint64_t v;
};

struct par_gauge {
        _Atomic uint64_t bits; /* a double's bit pattern */
};

/* A Prometheus histogram: cumulative-by-render counts over fixed upper
 * bounds (the family's), plus a sum kept as a double's bit pattern. Lifetime
 * values only: nothing resets them, so rate() and histogram_quantile() over
 * any set of nodes work on them. */
struct par_buckets {
        const double *bounds; /* the family's, borrowed */
        size_t n;
        _Atomic uint64_t counts[PAR_BUCKETS_MAX + 1]; /* last: above all */
        _Atomic uint64_t count;
        _Atomic uint64_t sum_bits;
};

typedef enum { K_COUNTER, K_GAUGE, K_HIST, K_BUCKETS } kind_t;

typedef struct series {
        struct series *next;
        char *labels; /* "" when none */
        par_counter_t counter;
        par_gauge_t gauge;
        double (*fn)(void *opaque); /* gauge computed at render time */
        void *opaque;
        par_hist_t *hist;
        par_buckets_t *buckets;
} series_t;

typedef struct family {
        struct family *next;
        char *name; /* as rendered (counters end in _total) */
        char *help;
        kind_t kind;
        double scale;                   /* histograms */
        double bounds[PAR_BUCKETS_MAX]; /* K_BUCKETS: ascending upper bounds */
        size_t nbounds;
        series_t *series, **series_tail;
} family_t;

struct par_metrics {
        pthread_mutex_t lock;
        family_t *families, **families_tail;
};

/* ------------------------------------------------------------ histograms */

static unsigned bucket_of(uint64_t v)
{
        if (v < SUB_COUNT)
                return (unsigned)v;
        unsigned msb = 63 - (unsigned)__builtin_clzll(v);
        unsigned shift = msb - (SUB_BITS - 1);
        return SUB_COUNT + (shift - 1) * HALF_COUNT +
               (unsigned)((v >> shift) - HALF_COUNT);
}

/* The value reported for bucket i: its midpoint. */
static uint64_t bucket_mid(unsigned i)
{
        if (i < SUB_COUNT)
                return i;
        unsigned k = i - SUB_COUNT;
        unsigned shift = k / HALF_COUNT + 1;
        uint64_t lo = (uint64_t)(HALF_COUNT + k % HALF_COUNT) << shift;
        return lo + ((UINT64_C(1) << shift) - 1) / 2;
}

static void hist_init(par_hist_t *h)
{
        for (unsigned i = 0; i < NBUCKETS; i++)
                atomic_init(&h->buckets[i], 0);
        atomic_init(&h->count, 0);
        atomic_init(&h->sum, 0);
        atomic_init(&h->min, UINT64_MAX);
        atomic_init(&h->max, 0);
        atomic_init(&h->total_count, 0);
        atomic_init(&h->total_sum, 0);
}

par_err_t par_hist_new(par_hist_t **out, par_error_t *err)
{
        par_hist_t *h = malloc(sizeof(*h));

        if (!h)
                return par_error_set(err, PAR_ERR_NOMEM,
                                     "histogram: out of memory");
        hist_init(h);
        *out = h;
        return PAR_OK;
}

void par_hist_destroy(par_hist_t *h)
{
        free(h);
}

static void lower_min(_Atomic uint64_t *a, uint64_t v)
{
        uint64_t cur = atomic_load_explicit(a, memory_order_relaxed);
        while (v < cur &&
               !atomic_compare_exchange_weak_explicit(
                   a, &cur, v, memory_order_relaxed, memory_order_relaxed))
                ;
}

static void raise_max(_Atomic uint64_t *a, uint64_t v)
{
        uint64_t cur = atomic_load_explicit(a, memory_order_relaxed);
        while (v > cur &&
               !atomic_compare_exchange_weak_explicit(
                   a, &cur, v, memory_order_relaxed, memory_order_relaxed))
                ;
}

void par_hist_record_n(par_hist_t *h, uint64_t value, uint64_t n)
{
        if (!h || !n)
                return;
        if (value > PAR_HIST_MAX)
                value = PAR_HIST_MAX;
        atomic_fetch_add_explicit(&h->buckets[bucket_of(value)], n,
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&h->count, n, memory_order_relaxed);
        atomic_fetch_add_explicit(&h->sum, value * n, memory_order_relaxed);
        atomic_fetch_add_explicit(&h->total_count, n, memory_order_relaxed);
        atomic_fetch_add_explicit(&h->total_sum, value * n,
                                  memory_order_relaxed);
        lower_min(&h->min, value);
        raise_max(&h->max, value);
}

void par_hist_record(par_hist_t *h, uint64_t value)
{
        par_hist_record_n(h, value, 1);
}

uint64_t par_hist_percentile(const par_hist_t *h, double q)
{
        uint64_t n = 0, rank, cum = 0;
        par_hist_t *hh = (par_hist_t *)h; /* atomics need non-const */

        if (!h)
                return 0;
        /* Count from the buckets themselves so a concurrent record or take
         * cannot make the rank point past the last bucket. */
        for (unsigned i = 0; i < NBUCKETS; i++)
                n +=
                    atomic_load_explicit(&hh->buckets[i], memory_order_relaxed);
        if (!n)
                return 0;
        if (!(q > 0)) /* also catches NaN */
                q = 0;
        if (q > 1)
                q = 1;
        rank = (uint64_t)ceil(q * (double)n);
        if (rank < 1)
                rank = 1;
        if (rank >= n) /* the largest value is known exactly */
                return par_hist_max(h);
        if (rank == 1)
                return par_hist_min(h);
        for (unsigned i = 0; i < NBUCKETS; i++) {
                cum +=
                    atomic_load_explicit(&hh->buckets[i], memory_order_relaxed);
                if (cum >= rank) {
                        uint64_t v = bucket_mid(i);
                        uint64_t lo = par_hist_min(h), hi = par_hist_max(h);
                        if (v < lo)
                                v = lo;
                        if (v > hi && hi >= lo)
                                v = hi;
                        return v;
                }
        }
        return par_hist_max(h);
}

uint64_t par_hist_count(const par_hist_t *h)
{
        return h ? atomic_load_explicit(&((par_hist_t *)h)->count,
                                        memory_order_relaxed)
                 : 0;
}

uint64_t par_hist_sum(const par_hist_t *h)
{
        return h ? atomic_load_explicit(&((par_hist_t *)h)->sum,
                                        memory_order_relaxed)
                 : 0;
}

uint64_t par_hist_min(const par_hist_t *h)
{
        uint64_t v;

        if (!h)
                return 0;
        v = atomic_load_explicit(&((par_hist_t *)h)->min, memory_order_relaxed);
        return v == UINT64_MAX ? 0 : v;
}

uint64_t par_hist_max(const par_hist_t *h)
{
        return h ? atomic_load_explicit(&((par_hist_t *)h)->max,
                                        memory_order_relaxed)
                 : 0;
}

double par_hist_mean(const par_hist_t *h)
{
        uint64_t n = par_hist_count(h);
        return n ? (double)par_hist_sum(h) / (double)n : 0;
}

void par_hist_reset(par_hist_t *h)
{
        if (!h)
                return;
        for (unsigned i = 0; i < NBUCKETS; i++)
                atomic_store_explicit(&h->buckets[i], 0, memory_order_relaxed);
        atomic_store_explicit(&h->count, 0, memory_order_relaxed);
        atomic_store_explicit(&h->sum, 0, memory_order_relaxed);
        atomic_store_explicit(&h->min, UINT64_MAX, memory_order_relaxed);
        atomic_store_explicit(&h->max, 0, memory_order_relaxed);
}

void par_hist_take(par_hist_t *dst, par_hist_t *src)
{
        uint64_t mn, mx, n, sum;

        if (!dst || !src || dst == src)
                return;
        /* Exchange the bounds first: a value recorded after this point
         * lowers/raises src's fresh bounds and stays in src. */
        mn = atomic_exchange_explicit(&src->min, UINT64_MAX,
                                      memory_order_relaxed);
        mx = atomic_exchange_explicit(&src->max, 0, memory_order_relaxed);
        for (unsigned i = 0; i < NBUCKETS; i++) {
                uint64_t c = atomic_exchange_explicit(&src->buckets[i], 0,
                                                      memory_order_relaxed);
                if (c)
                        atomic_fetch_add_explicit(&dst->buckets[i], c,
                                                  memory_order_relaxed);
        }
        n = atomic_exchange_explicit(&src->count, 0, memory_order_relaxed);
        sum = atomic_exchange_explicit(&src->sum, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&dst->count, n, memory_order_relaxed);
        atomic_fetch_add_explicit(&dst->sum, sum, memory_order_relaxed);
        /* dst's lifetime totals grow by what it received; src's stay. */
        atomic_fetch_add_explicit(&dst->total_count, n, memory_order_relaxed);
        atomic_fetch_add_explicit(&dst->total_sum, sum, memory_order_relaxed);
        /* A record racing with this may leave its bound on the other side;
         * bounds then only clamp percentiles slightly less tightly. */
        if (mn != UINT64_MAX)
                lower_min(&dst->min, mn);
        raise_max(&dst->max, mx);
}

void par_hist_merge(par_hist_t *dst, const par_hist_t *src)
{
        par_hist_t *s = (par_hist_t *)src;
        uint64_t n;

        if (!dst || !src || dst == src)
                return;
        for (unsigned i = 0; i < NBUCKETS; i++) {
                uint64_t c =
                    atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
                if (c)
                        atomic_fetch_add_explicit(&dst->buckets[i], c,
                                                  memory_order_relaxed);
        }
        n = par_hist_count(src);
        atomic_fetch_add_explicit(&dst->count, n, memory_order_relaxed);
        atomic_fetch_add_explicit(&dst->sum, par_hist_sum(src),
                                  memory_order_relaxed);
        atomic_fetch_add_explicit(&dst->total_count, n, memory_order_relaxed);
        atomic_fetch_add_explicit(&dst->total_sum, par_hist_sum(src),
                                  memory_order_relaxed);
        if (n) {
                lower_min(&dst->min, par_hist_min(src));
                raise_max(&dst->max, par_hist_max(src));
        }
}

/* ------------------------------------------------------ counters, gauges */

void par_counter_add(par_counter_t *c, uint64_t n)
{
        if (c)
                atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

void par_counter_inc(par_counter_t *c)
{
        par_counter_add(c, 1);
}

uint64_t par_counter_get(const par_counter_t *c)
{
        return c ? atomic_load_explicit(&((par_counter_t *)c)->v,
                                        memory_order_relaxed)
                 : 0;
}

static uint64_t d2b(double d)
{
        uint64_t b;
        memcpy(&b, &d, sizeof(b));
        return b;
}

static double b2d(uint64_t b)
{
        double d;
        memcpy(&d, &b, sizeof(d));
        return d;
}

void par_gauge_set(par_gauge_t *g, double v)
{
        if (g)
                atomic_store_explicit(&g->bits, d2b(v), memory_order_relaxed);
}

void par_gauge_add(par_gauge_t *g, double delta)
{
        uint64_t cur;

        if (!g)
                return;
        cur = atomic_load_explicit(&g->bits, memory_order_relaxed);
        while (!atomic_compare_exchange_weak_explicit(
            &g->bits, &cur, d2b(b2d(cur) + delta), memory_order_relaxed,
            memory_order_relaxed))
                ;
}

double par_gauge_get(const par_gauge_t *g)
{
        return g ? b2d(atomic_load_explicit(&((par_gauge_t *)g)->bits,
                                            memory_order_relaxed))
                 : 0;
}

/* --------------------------------------------------------------- registry */

par_err_t par_metrics_new(par_metrics_t **out, par_error_t *err)
{
        par_metrics_t *m = calloc(1, sizeof(*m));

        if (!m)
                return par_error_set(err, PAR_ERR_NOMEM,
                                     "metrics: out of memory");
        pthread_mutex_init(&m->lock, NULL);
        m->families_tail = &m->families;
        *out = m;
        return PAR_OK;
}

static void series_free(series_t *s)
{
        if (!s)
                return;
        free(s->labels);
        par_hist_destroy(s->hist);
        free(s->buckets);
        free(s);
}

static void family_free(family_t *f)
{
        series_t *s, *next;

        if (!f)
                return;
        for (s = f->series; s; s = next) {
                next = s->next;
                series_free(s);
        }
        free(f->name);
        free(f->help);
        free(f);
}

void par_metrics_destroy(par_metrics_t *m)
{
        family_t *f, *next;

        if (!m)
                return;
        for (f = m->families; f; f = next) {
                next = f->next;
                family_free(f);
        }
        pthread_mutex_destroy(&m->lock);
        free(m);
}

static bool valid_name(const char *s)
{
        if (!s || !*s)
                return false;
        for (const char *p = s; *p; p++) {
                char c = *p;
                bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                             c == '_' || c == ':';
                if (!alpha && !(p > s && c >= '0' && c <= '9'))
                        return false;
        }
        return true;
}

/* `k="v"{,k="v"}` with escapes \\ \" \n; rejects a label named `reserved`
 * (the summary's "quantile") and names starting with "__". */
static bool valid_labels(const char *s, const char *reserved)
{
        const char *p = s;

        if (!s || !*s)
                return true;
        for (;;) {
                const char *name = p;
                while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                       *p == '_' || (p > name && *p >= '0' && *p <= '9'))
                        p++;
                if (p == name || *p != '=' || p[1] != '"')
                        return false;
                if (!strncmp(name, "__", 2) ||
                    (reserved && (size_t)(p - name) == strlen(reserved) &&
                     !strncmp(name, reserved, strlen(reserved))))
                        return false;
                p += 2;
                while (*p && *p != '"' && *p != '\n') {
                        if (*p == '\\') {
                                if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
                                        return false;
                                p++;
                        }
                        p++;
                }
                if (*p != '"')
                        return false;
                p++;
                if (!*p)
                        return true;
                if (*p != ',' || !p[1])
                        return false;
                p++;
        }
}

static const char *kind_name(kind_t k)
{
        return k == K_COUNTER ? "counter"
               : k == K_GAUGE ? "gauge"
               : k == K_HIST  ? "summary"
                              : "histogram";
}

/*
 * Finds or creates the series (name, labels) of kind k. With fn != NULL a
 * computed gauge is wanted, which is never shared with a set() gauge.
 * Called with no lock held; takes the registry lock.
 */
static series_t *get_series_b(par_metrics_t *m, const char *name,
                              const char *labels, const char *help, kind_t k,
                              double scale, const double *bounds,
                              size_t nbounds, bool computed, par_error_t *err);

static series_t *get_series(par_metrics_t *m, const char *name,
                            const char *labels, const char *help, kind_t k,
                            double scale, bool computed, par_error_t *err)
{
        return get_series_b(m, name, labels, help, k, scale, NULL, 0, computed,
                            err);
}

static series_t *get_series_b(par_metrics_t *m, const char *name,
                              const char *labels, const char *help, kind_t k,
                              double scale, const double *bounds,
                              size_t nbounds, bool computed, par_error_t *err)
{
        char full[256];
        family_t *f;
        series_t *s = NULL;
        size_t nl = name ? strlen(name) : 0;

        if (!m) {
                par_error_set(err, PAR_ERR_INVALID, "metrics: no registry");
                return NULL;
        }
        if (!labels)
                labels = "";
        if (!valid_name(name) || nl + 7 > sizeof(full)) {
                par_error_set(err, PAR_ERR_INVALID,
                              "metric '%s': name must match "
                              "[a-zA-Z_:][a-zA-Z0-9_:]*",
                              name ? name : "(null)");
                return NULL;
        }
        if (!valid_labels(labels, k == K_HIST      ? "quantile"
                                  : k == K_BUCKETS ? "le"
                                                   : NULL)) {
                par_error_set(err, PAR_ERR_INVALID,
                              "metric %s: malformed labels '%s' (want "
                              "k=\"v\",… with \\\\, \\\" and \\n escapes)",
                              name, labels);
                return NULL;
        }
        if (k == K_HIST && !(scale > 0 && isfinite(scale))) {
                par_error_set(err, PAR_ERR_INVALID,
                              "metric %s: scale must be > 0", name);
                return NULL;
        }
        if (k == K_BUCKETS) {
                bool ok = nbounds >= 1 && nbounds <= PAR_BUCKETS_MAX;
                for (size_t i = 0; ok && i < nbounds; i++)
                        ok = isfinite(bounds[i]) &&
                             (i == 0 || bounds[i] > bounds[i - 1]);
                if (!ok) {
                        par_error_set(err, PAR_ERR_INVALID,
                                      "metric %s: want 1..%d finite "
                                      "ascending bucket bounds",
                                      name, PAR_BUCKETS_MAX);
                        return NULL;
                }
        }
        strcpy(full, name);
        if (k == K_COUNTER && (nl < 6 || strcmp(name + nl - 6, "_total")))
                strcat(full, "_total");

        pthread_mutex_lock(&m->lock);
        for (f = m->families; f; f = f->next)
                if (!strcmp(f->name, full))
                        break;
        if (f && (f->kind != k || (k == K_HIST && f->scale != scale) ||
                  (k == K_BUCKETS &&
                   (f->nbounds != nbounds ||
                    memcmp(f->bounds, bounds, nbounds * sizeof(double)))))) {
                par_error_set(err, PAR_ERR_INVALID,
                              "metric %s: already registered as a %s%s", full,
                              kind_name(f->kind),
                              f->kind != k     ? ""
                              : k == K_BUCKETS ? " with other buckets"
                                               : " with another scale");
                goto out;
        }
        if (f)
                for (s = f->series; s; s = s->next)
                        if (!strcmp(s->labels, labels))
                                break;
        if (s) {
                if (computed || s->fn) {
                        par_error_set(err, PAR_ERR_INVALID,
                                      "metric %s{%s}: already registered", full,
                                      labels);
                        s = NULL;
                }
                goto out;
        }
        if (!f) {
                f = calloc(1, sizeof(*f));
                if (!f || !(f->name = strdup(full)) ||
                    !(f->help = strdup(help ? help : ""))) {
                        family_free(f);
                        f = NULL;
                        goto nomem;
                }
                f->kind = k;
                f->scale = scale;
                if (k == K_BUCKETS) {
                        memcpy(f->bounds, bounds, nbounds * sizeof(double));
                        f->nbounds = nbounds;
                }
                f->series_tail = &f->series;
                *m->families_tail = f;
                m->families_tail = &f->next;
        }
        s = calloc(1, sizeof(*s));
        if (!s || !(s->labels = strdup(labels)))
                goto nomem;
        atomic_init(&s->counter.v, 0);
        atomic_init(&s->gauge.bits, d2b(0));
        if (k == K_HIST) {
                s->hist = malloc(sizeof(*s->hist));
                if (!s->hist)
                        goto nomem;
                hist_init(s->hist);
        }
        if (k == K_BUCKETS) {
                s->buckets = calloc(1, sizeof(*s->buckets));
                if (!s->buckets)
                        goto nomem;
                s->buckets->bounds = f->bounds;
                s->buckets->n = f->nbounds;
                for (size_t i = 0; i <= PAR_BUCKETS_MAX; i++)
                        atomic_init(&s->buckets->counts[i], 0);
                atomic_init(&s->buckets->count, 0);
                atomic_init(&s->buckets->sum_bits, d2b(0));
        }
        *f->series_tail = s;
        f->series_tail = &s->next;
        goto out;
nomem:
        series_free(s);
        s = NULL;
        par_error_set(err, PAR_ERR_NOMEM, "metric %s: out of memory", full);
out:
        pthread_mutex_unlock(&m->lock);
        return s;
}

static series_t *get_logged(par_metrics_t *m, const char *name,
                            const char *labels, const char *help, kind_t k,
                            double scale)
{
        par_error_t err = {0};
        series_t *s = get_series(m, name, labels, help, k, scale, false, &err);
        if (!s)
                par_log(PAR_LOG_ERROR, "metrics", "register_failed",
                        "error=\"%s\"", err.msg);
        return s;
}

par_counter_t *par_metrics_counter(par_metrics_t *m, const char *name,
                                   const char *labels, const char *help)
{
        series_t *s = get_logged(m, name, labels, help, K_COUNTER, 1);
        return s ? &s->counter : NULL;
}

par_gauge_t *par_metrics_gauge(par_metrics_t *m, const char *name,
                               const char *labels, const char *help)
{
        series_t *s = get_logged(m, name, labels, help, K_GAUGE, 1);
        return s ? &s->gauge : NULL;
}

par_hist_t *par_metrics_hist(par_metrics_t *m, const char *name,
                             const char *labels, const char *help, double scale)
{
        series_t *s = get_logged(m, name, labels, help, K_HIST, scale);
        return s ? s->hist : NULL;
}

par_buckets_t *par_metrics_histogram(par_metrics_t *m, const char *name,
                                     const char *labels, const char *help,
                                     const par_bucket_bounds_t *b)
{
        par_error_t err = {0};
        series_t *s = b ? get_series_b(m, name, labels, help, K_BUCKETS, 1,
                                       b->v, b->n, false, &err)
                        : NULL;
        if (!s)
                par_log(PAR_LOG_ERROR, "metrics", "register_failed",
                        "error=\"%s\"", b ? err.msg : "no bucket bounds");
        return s ? s->buckets : NULL;
}

void par_buckets_observe(par_buckets_t *b, double v)
{
        size_t i = 0;
        uint64_t cur;

        if (!b || isnan(v))
                return;
        /* Few bounds (< 32): a linear scan beats a binary search here. */
        while (i < b->n && v > b->bounds[i])
                i++;
        atomic_fetch_add_explicit(&b->counts[i], 1, memory_order_relaxed);
        cur = atomic_load_explicit(&b->sum_bits, memory_order_relaxed);
        while (!atomic_compare_exchange_weak_explicit(
            &b->sum_bits, &cur, d2b(b2d(cur) + v), memory_order_relaxed,
            memory_order_relaxed))
                ;
        /* count last: a render never shows a count above its buckets' */
        atomic_fetch_add_explicit(&b->count, 1, memory_order_relaxed);
}

uint64_t par_buckets_count(const par_buckets_t *b)
{
        return b ? atomic_load_explicit(&((par_buckets_t *)b)->count,
                                        memory_order_relaxed)
                 : 0;
}

double par_buckets_sum(const par_buckets_t *b)
{
        return b ? b2d(atomic_load_explicit(&((par_buckets_t *)b)->sum_bits,
                                            memory_order_relaxed))
                 : 0;
}

/* Bounds fitted to the ranges Parallel measures (docs/OPERATIONS.md). */
static const double b_long[] = {0.005, 0.01, 0.025, 0.05, 0.1,  0.25,
                                0.5,   1,    2.5,   5,    10,   30,
                                60,    120,  300,   600,  1800, 3600};
static const double b_spin[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                0.1,   0.25,   0.5,   1,    2.5,   5,
                                10,    30,     60,    120,  300};
static const double b_short[] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                 0.025,  0.05,  0.1,    0.25,  0.5,
                                 1,      2.5,   5,      10};
const par_bucket_bounds_t par_buckets_long = {b_long, sizeof(b_long) /
                                                          sizeof(b_long[0])};
const par_bucket_bounds_t par_buckets_spin = {b_spin, sizeof(b_spin) /
                                                          sizeof(b_spin[0])};
const par_bucket_bounds_t par_buckets_short = {b_short, sizeof(b_short) /
                                                            sizeof(b_short[0])};

static par_err_t computed_fn(par_metrics_t *m, kind_t k, const char *name,
                             const char *labels, const char *help,
                             double (*fn)(void *opaque), void *opaque,
                             par_error_t *err)
{
        series_t *s;

        if (!fn)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "metric %s: no function",
                                     name ? name : "(null)");
        s = get_series(m, name, labels, help, k, 1, true, err);
        if (!s)
                return err ? err->code : PAR_ERR_INVALID;
        /* Published under the lock so a concurrent render sees both. */
        pthread_mutex_lock(&m->lock);
        s->opaque = opaque;
        s->fn = fn;
        pthread_mutex_unlock(&m->lock);
        return PAR_OK;
}

par_err_t par_metrics_gauge_fn(par_metrics_t *m, const char *name,
                               const char *labels, const char *help,
                               double (*fn)(void *opaque), void *opaque,
                               par_error_t *err)
{
        return computed_fn(m, K_GAUGE, name, labels, help, fn, opaque, err);
}

par_err_t par_metrics_counter_fn(par_metrics_t *m, const char *name,
                                 const char *labels, const char *help,
                                 double (*fn)(void *opaque), void *opaque,
                                 par_error_t *err)
{
        return computed_fn(m, K_COUNTER, name, labels, help, fn, opaque, err);
}

/* ---------------------------------------------------------------- render */

/* A sample value as Prometheus parses it (Go's ParseFloat). */
static void put_double(FILE *f, double v)
{
        char buf[40];

        if (isnan(v)) {
                fputs("NaN", f);
                return;
        }
        if (isinf(v)) {
                fputs(v > 0 ? "+Inf" : "-Inf", f);
                return;
        }
        snprintf(buf, sizeof(buf), "%.15g", v);
        if (strtod(buf, NULL) != v)
                snprintf(buf, sizeof(buf), "%.17g", v);
        fputs(buf, f);
}

/* HELP text escapes: backslash and newline. */
static void put_help(FILE *f, const char *s)
{
        for (; *s; s++) {
                if (*s == '\\')
                        fputs("\\\\", f);
                else if (*s == '\n')
                        fputs("\\n", f);
                else
                        fputc(*s, f);
        }
}

static void put_labels(FILE *f, const char *labels, const char *extra)
{
        if (!*labels && !extra)
                return;
        fputc('{', f);
        fputs(labels, f);
        if (extra) {
                if (*labels)
                        fputc(',', f);
                fputs(extra, f);
        }
        fputc('}', f);
}

/* Cumulative `_bucket` lines, then `_sum` and `_count`. The count line is
 * the +Inf bucket's value, so the two always agree. */
static void render_buckets(FILE *f, const family_t *fam, const series_t *s)
{
        par_buckets_t *b = s->buckets;
        uint64_t cum = 0;
        char le[48];

        for (size_t i = 0; i <= b->n; i++) {
                cum +=
                    atomic_load_explicit(&b->counts[i], memory_order_relaxed);
                if (i < b->n) {
                        char v[40];
                        snprintf(v, sizeof(v), "%.15g", b->bounds[i]);
                        snprintf(le, sizeof(le), "le=\"%s\"", v);
                } else {
                        snprintf(le, sizeof(le), "le=\"+Inf\"");
                }
                fprintf(f, "%s_bucket", fam->name);
                put_labels(f, s->labels, le);
                fprintf(f, " %" PRIu64 "\n", cum);
        }
        fprintf(f, "%s_sum", fam->name);
        put_labels(f, s->labels, NULL);
        fputc(' ', f);
        put_double(f, par_buckets_sum(b));
        fprintf(f, "\n%s_count", fam->name);
        put_labels(f, s->labels, NULL);
        fprintf(f, " %" PRIu64 "\n", cum);
}

static void render_family(FILE *f, const family_t *fam)
{
        static const double qs[] = {0.5, 0.9, 0.99, 0.999};

        fprintf(f, "# HELP %s ", fam->name);
        put_help(f, fam->help);
        fprintf(f, "\n# TYPE %s %s\n", fam->name, kind_name(fam->kind));
        for (const series_t *s = fam->series; s; s = s->next) {
                if (fam->kind == K_COUNTER) {
                        fputs(fam->name, f);
                        put_labels(f, s->labels, NULL);
                        fputc(' ', f);
                        if (s->fn)
                                put_double(f, s->fn(s->opaque));
                        else
                                fprintf(f, "%" PRIu64,
                                        par_counter_get(&s->counter));
                        fputc('\n', f);
                } else if (fam->kind == K_GAUGE) {
                        fputs(fam->name, f);
                        put_labels(f, s->labels, NULL);
                        fputc(' ', f);
                        put_double(f, s->fn ? s->fn(s->opaque)
                                            : par_gauge_get(&s->gauge));
                        fputc('\n', f);
                } else if (fam->kind == K_BUCKETS) {
                        render_buckets(f, fam, s);
                } else {
                        par_hist_t *h = s->hist;
                        bool empty = par_hist_count(h) == 0;
                        for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]);
                             i++) {
                                char q[32];
                                snprintf(q, sizeof(q), "quantile=\"%g\"",
                                         qs[i]);
                                fputs(fam->name, f);
                                put_labels(f, s->labels, q);
                                fputc(' ', f);
                                put_double(f, empty
                                                  ? NAN
                                                  : (double)par_hist_percentile(
                                                        h, qs[i]) *
                                                        fam->scale);
                                fputc('\n', f);
                        }
                        fprintf(f, "%s_sum", fam->name);
                        put_labels(f, s->labels, NULL);
                        fputc(' ', f);
                        put_double(f, (double)atomic_load_explicit(
                                          &h->total_sum, memory_order_relaxed) *
                                          fam->scale);
                        fprintf(f, "\n%s_count", fam->name);
                        put_labels(f, s->labels, NULL);
                        fprintf(f, " %" PRIu64 "\n",
                                atomic_load_explicit(&h->total_count,
                                                     memory_order_relaxed));
                }
        }
}

par_err_t par_metrics_write(par_metrics_t *m, FILE *f, par_error_t *err)
{
        if (!m || !f)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "metrics: nothing to write");
        pthread_mutex_lock(&m->lock);
        for (const family_t *fam = m->families; fam; fam = fam->next)
                render_family(f, fam);
        pthread_mutex_unlock(&m->lock);
        if (ferror(f))
                return par_error_set(err, PAR_ERR_IO, "metrics: write failed");
        return PAR_OK;
}

par_err_t par_metrics_render(par_metrics_t *m, char **out, size_t *len,
                             par_error_t *err)
{
        char *buf = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&buf, &n);
        par_err_t rc;

        if (!f)
                return par_error_set(err, PAR_ERR_NOMEM,
                                     "metrics: out of memory");
        rc = par_metrics_write(m, f, err);
        if (fclose(f) && !rc)
                rc =
                    par_error_set(err, PAR_ERR_NOMEM, "metrics: out of memory");
        if (rc) {
                free(buf);
                return rc;
        }
        *out = buf;
        if (len)
                *len = n;
        return PAR_OK;
}
