/*
 * config.c — the property table and everything it drives.
 *
 * Why one table: parsing, validation, --help, the redacted dump and
 * docs/CONFIGURATION.md all read the same rows, so a key cannot be
 * documented one way and parsed another. Values are stored as validated
 * strings (what the user wrote, normalised for durations) next to their
 * parsed integer, so getters are cheap and dumps show what was set.
 *
 * Add a key by adding a row in the block of the module that reads it.
 */
#include "base/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/file.h"
#include "base/log.h"

typedef enum {
        T_STR,
        T_INT,
        T_BOOL,
        T_ENUM,
        T_MS, /* duration, stored in milliseconds */
} ptype_t;

typedef struct prop {
        const char *name;
        ptype_t type;
        const char *def;
        int64_t min, max;   /* T_INT and T_MS bounds (inclusive) */
        const char *values; /* T_ENUM: "a|b|c" */
        int secret;
        unsigned scope;
        const char *doc;
} prop_t;

#define P   PAR_SCOPE_PRODUCER
#define C   PAR_SCOPE_CONSUMER
#define X   PAR_SCOPE_CTL
#define ALL PAR_SCOPE_ALL
#define DAY (86400000LL)

static const prop_t props[] = {
    /* general */
    {"log.level", T_ENUM, "info", 0, 0, "debug|info|warn|error|off", 0, ALL,
     "Minimum level of log lines written to stderr."},
    {"node.id", T_STR, "", 0, 0, NULL, 0, P | C,
     "This process's stable identity (default: hostname-pid). Used as the "
     "consumer's group.instance.id when consumer.static_membership is on."},

    /* mongo */
    {"mongo.uri", T_STR, "mongodb://127.0.0.1:27017", 1, 0, NULL, 1, ALL,
     "MongoDB connection string (its password, if any, is redacted in dumps)."},
    {"mongo.database", T_STR, "parallel", 1, 0, NULL, 0, ALL,
     "Database holding the signals and Parallel's state."},
    {"mongo.collection", T_STR, "signals", 1, 0, NULL, 0, ALL,
     "Collection of signal documents."},
    {"sessions.collection", T_STR, "sessions", 0, 0, NULL, 0, C | X,
     "State scope resource: collection (in mongo.database) of the saved "
     "browser sessions, one document per resource. They are credentials: "
     "see OPERATIONS.md on protecting them."},

    /* kafka */
    {"topic.prefix", T_STR, "parallel", 1, 0, NULL, 0, ALL,
     "Prefix of every topic name: <prefix>.signals.p1 … <prefix>.dlq."},
    {"priority.levels", T_INT, "4", 1, 16, NULL, 0, ALL,
     "Number of priority levels; priority N goes to <prefix>.signals.pN and "
     "the highest number is the most urgent."},

    /* topics */
    {"topics.partitions", T_INT, "6", 1, 10000, NULL, 0, X,
     "Partitions per topic created by `parallel-ctl topics create`."},
    {"topics.replication.factor", T_INT, "1", 1, 32, NULL, 0, X,
     "Replication factor of created topics."},
    {"topics.min.insync.replicas", T_INT, "0", 0, 32, NULL, 0, X,
     "min.insync.replicas of created topics (0: the broker's default). With "
     "acks=all a write needs this many replicas in sync; 2 with replication "
     "factor 3 survives one broker down without losing an acknowledged "
     "message. At most topics.replication.factor."},
    {"topics.retention.ms", T_MS, "7d", 60000, 3650 * DAY, NULL, 0, X,
     "retention.ms of created topics (parallel.workers is compacted)."},
    {"topics.message.max.bytes", T_INT, "1000000", 65536, 100 * 1024 * 1024,
     NULL, 0, ALL,
     "Largest message the topics take (their max.message.bytes, set by "
     "`parallel-ctl topics create`). Every Signal, SpinResult and "
     "DeadLetter is sized against it at its source, together with "
     "kafka.message.max.bytes; signal.max_params_bytes must fit in it."},

    /* http */
    {"http.listen", T_STR, "127.0.0.1:9280", 0, 0, NULL, 0, C,
     "host:port of the consumer node's /health, /metrics, /status and "
     "dashboard endpoint; loopback by default, port 0 picks a free port "
     "(empty: off)."},

    /* signal */
    {"signal.max_params_bytes", T_INT, "65536", 64, 16 * 1024 * 1024, NULL, 0,
     ALL,
     "Largest total size of a signal's params (keys plus values, bytes); "
     "larger signals are rejected."},

    /* producer */
    {"producer.http.listen", T_STR, "127.0.0.1:9281", 0, 0, NULL, 0, P,
     "host:port of the producer's /health and /metrics endpoint (empty: "
     "off)."},
    {"producer.lease.ttl", T_MS, "10s", 1000, 600000, NULL, 0, P,
     "HA lease length: a standby takes over this long after the active "
     "producer stops renewing (renewed every ttl/3)."},
    {"producer.state.collection", T_STR, "parallel_state", 0, 0, NULL, 0, P | X,
     "Collection (in mongo.database) holding the producer's lease and "
     "resume-token checkpoint."},
    {"producer.checkpoint.interval", T_MS, "1s", 0, 60000, NULL, 0, P,
     "Longest time between checkpoint writes while events are delivered (0: "
     "after every delivery)."},
    {"producer.idle.max_wait", T_MS, "500ms", 1, 10000, NULL, 0, P,
     "The change stream's maxAwaitTimeMS: how long the server holds a "
     "getMore that has nothing. Against a server that answers empty at "
     "once, the longest back-off between polls (doubling from 1 ms)."},
    {"producer.batch.size", T_INT, "1000", 1, 100000, NULL, 0, P,
     "Change-stream batchSize (events fetched per getMore)."},
    {"producer.inflight.max", T_INT, "100000", 100, 10000000, NULL, 0, P,
     "Events read but not yet delivered beyond which the producer stops "
     "reading until deliveries catch up."},
    {"producer.backfill", T_BOOL, "true", 0, 0, NULL, 0, P,
     "With no checkpoint, publish every pending signal (in created_at "
     "order) before following the change stream."},
    {"producer.sweeper.interval", T_MS, "5s", 0, 3600000, NULL, 0, P,
     "How often the active producer puts signals whose worker lease expired "
     "back to pending (0: never)."},

    /* consumer */
    {"consumer.group", T_STR, "parallel", 0, 0, NULL, 0, C,
     "Kafka consumer group id shared by every consumer node (a "
     "kafka.group.id key overrides it)."},
    {"consumer.assignment", T_ENUM, "cooperative-sticky", 0, 0,
     "cooperative-sticky|roundrobin", 0, C,
     "How the group spreads partitions over nodes. cooperative-sticky: a "
     "node joining or leaving moves only the partitions that must move, "
     "and the others keep working; but a node that joins may get whole "
     "priority levels (all of p1 and p2, say) while another keeps the "
     "rest, so each node's priority order is its own. roundrobin: every "
     "rebalance deals all partitions out afresh, so each node holds its "
     "share of every level (with partitions a multiple of the nodes), "
     "at the cost of pausing every node at each rebalance."},
    {"consumer.static_membership", T_BOOL, "false", 0, 0, NULL, 0, C,
     "Use node.id as group.instance.id (KIP-345): a node restarting within "
     "the session timeout gets its partitions back without a rebalance."},
    {"workers.min", T_INT, "1", 1, 256, NULL, 0, C,
     "Workers always kept running (each may hold one Chrome tab)."},
    {"workers.max", T_INT, "4", 1, 256, NULL, 0, C,
     "Most workers the pool grows to while signals wait in the local "
     "queues."},
    {"workers.idle_timeout", T_MS, "30s", 100, 3600000, NULL, 0, C,
     "A worker above workers.min that found no work for this long stops."},
    {"workers.memory_limit_mb", T_INT, "0", 0, 1048576, NULL, 0, C,
     "The pool does not grow while the node's browsers (launch mode) use "
     "more resident memory than this, in MiB (0: no limit)."},
    {"sched.aging", T_MS, "60s", 0, 86400000, NULL, 0, C,
     "Anti-starvation: a queued signal counts one priority level more "
     "urgent per full period waited in the node's local queue (0: off). "
     "With 4 levels, a priority-1 signal waits behind newer priority-4 "
     "ones for at most three periods."},
    {"sched.queue.high", T_INT, "256", 1, 1000000, NULL, 0, C,
     "Local queue depth of one priority level at which the node stops "
     "taking that level's messages from Kafka."},
    {"sched.queue.low", T_INT, "64", 0, 1000000, NULL, 0, C,
     "Depth at which a held level's messages are taken again (below "
     "sched.queue.high)."},
    {"claim.enabled", T_BOOL, "true", 0, 0, NULL, 0, C,
     "Claim each signal in MongoDB before running it and write the outcome "
     "back. Off only for pipeline benchmarks: no deduplication at all."},
    {"claim.lease", T_MS, "30s", 1000, 3600000, NULL, 0, C,
     "Lease of a claim; renewed every lease/3 while the spin runs or waits "
     "for a retry. A crashed worker's signal is claimable after this."},
    {"claim.batch", T_INT, "32", 1, 64, NULL, 0, C,
     "Most signals a worker claims in one round trip when a backlog waits "
     "(the one it runs and queued ones claimed ahead); 1: every signal "
     "claims alone."},
    {"claim.finishing", T_INT, "128", 1, 1024, NULL, 0, C,
     "Most results a node has had acknowledged by Kafka whose documents it "
     "has not yet written (its finisher writes them in batches of up to "
     "128). A worker whose result finds no place publishes it on its own "
     "and writes its document itself, one round trip each. A crash can "
     "leave this many, plus one per worker, to run again once their leases "
     "lapse; with spins of a second or more the finisher seldom holds more "
     "than a few. 128 (one full write) ran noop signals ~1.35x faster than "
     "32, and 32 1.6-2.8x faster than 4 (docs/BENCHMARKS.md)."},
    {"claim.resource_lock", T_BOOL, "true", 0, 0, NULL, 0, C,
     "Lock a signal's resource in MongoDB (collection "
     "`<mongo.collection>_resources`) "
     "from claim to outcome, so signals of one resource never run at once "
     "anywhere in the cluster, whatever their priority. Signals without a "
     "resource of their own take no lock. Off: exclusive per node only."},
    {"max.attempts", T_INT, "3", 1, 100, NULL, 0, C,
     "Attempts (the first included) before a transiently failing signal "
     "becomes dead and goes to the DLQ."},
    {"retry.backoff", T_MS, "500ms", 0, 600000, NULL, 0, C,
     "Delay before the first local retry; doubles per attempt up to "
     "retry.backoff_max."},
    {"retry.backoff_max", T_MS, "30s", 0, 3600000, NULL, 0, C,
     "Longest delay between local retries."},
    {"commit.interval", T_MS, "500ms", 10, 60000, NULL, 0, C,
     "How often the finished offset prefix is committed."},
    {"metrics.interval", T_MS, "5s", 100, 3600000, NULL, 0, C,
     "Period of NodeMetrics snapshots to <prefix>.metrics."},
    {"shutdown.grace", T_MS, "30s", 0, 3600000, NULL, 0, C,
     "On SIGTERM, how long in-flight spins may take to finish before the "
     "node exits anyway (their signals are then retried elsewhere once the "
     "lease ends)."},

    /* chrome */
    {"chrome.mode", T_ENUM, "launch", 0, 0, "launch|connect", 0, C | X,
     "launch: the node starts and supervises Chromium processes; connect: "
     "use the running browsers listed in chrome.endpoints."},
    {"chrome.path", T_STR, "/usr/bin/chromium", 0, 0, NULL, 0, C | X,
     "Chromium executable (launch mode)."},
    {"chrome.endpoints", T_STR, "", 0, 0, NULL, 0, C | X,
     "Connect mode: comma list of DevTools endpoints, e.g. "
     "http://10.0.0.5:9222,http://10.0.0.6:9222 (context isolation: a "
     "spin uses the least busy; browser isolation: worker i uses i % n)."},
    {"chrome.isolation", T_ENUM, "context", 0, 0, "context|browser", 0, C | X,
     "context: browser contexts in shared browsers (chrome.browsers of "
     "them; cheap); browser: one Chromium process and profile per worker "
     "(strongest)."},
    {"chrome.browsers", T_INT, "2", 1, 64, NULL, 0, C | X,
     "Launch mode, context isolation: how many shared Chromium processes "
     "the node's workers spread over. A spin takes its clean context from "
     "the least busy browser that has one prepared, so a browser prepares "
     "and disposes of contexts (work that runs mostly on its one UI "
     "thread) while another runs the spin. Measured on two cores: 2 gave "
     "7-21 % more clean spins/s than 1 at concurrency 1-2, the same at "
     "4-8; the second costs ~113 MB of PSS idle."},
    {"chrome.recycle_after", T_INT, "500", 0, 100000000, NULL, 0, C | X,
     "Restart a browser (connect mode: recreate its contexts) after this "
     "many spins on it (0: never)."},
    {"chrome.profile_dir", T_STR, "", 0, 0, NULL, 0, C | X,
     "Persistent profile directory (browser isolation: one sub-directory "
     "per worker, worker-N; context isolation with chrome.browsers > 1: "
     "one per browser, browser-N). Empty: a fresh temporary profile, "
     "removed on exit."},
    {"chrome.headless", T_BOOL, "true", 0, 0, NULL, 0, C | X,
     "Run Chromium headless."},
    {"chrome.extra_args", T_STR, "", 0, 0, NULL, 0, C | X,
     "Extra Chromium command-line flags, separated by spaces; double quotes "
     "group a value that has spaces (`\"--host-rules=MAP a.test "
     "127.0.0.1\"`). A `--disable-features=` list here is joined to the "
     "one Parallel always passes (Chromium would honour only the last)."},
    {"chrome.start_timeout", T_MS, "20s", 1000, 600000, NULL, 0, C | X,
     "How long a launched browser may take to answer /json/version."},
    {"chrome.call_timeout", T_MS, "30s", 100, 3600000, NULL, 0, C | X,
     "Default deadline of one CDP call."},
    {"chrome.kill_grace", T_MS, "2s", 0, 60000, NULL, 0, C | X,
     "Time between SIGTERM and SIGKILL when stopping a browser's process "
     "group."},
    {"chrome.restart_backoff", T_MS, "250ms", 0, 60000, NULL, 0, C | X,
     "First delay before relaunching a browser that failed; doubles per "
     "consecutive failure up to chrome.restart_backoff_max."},
    {"chrome.restart_backoff_max", T_MS, "10s", 0, 600000, NULL, 0, C | X,
     "Longest delay between relaunch attempts."},
    {"chrome.ping_interval", T_MS, "5s", 0, 600000, NULL, 0, C | X,
     "How often the supervisor checks each browser with a CDP round trip; "
     "two misses in a row mean it hung and it is restarted (0: never)."},
    {"chrome.state_scope", T_ENUM, "spin", 0, 0, "spin|resource", 0, C | X,
     "What a spin inherits from earlier spins. spin: nothing; every spin "
     "starts in a browser context no earlier spin used (no cookies, "
     "storage, IndexedDB, cache, service workers, permissions, pages). "
     "resource: spins of the same resource share that resource's context "
     "(a login survives), and the consumer saves its cookies and storage "
     "to MongoDB (sessions.collection) after each successful spin so "
     "another node can restore them. A recipe's \"stateScope\" overrides "
     "it."},
    {"chrome.ready_contexts", T_INT, "2", 0, 64, NULL, 0, C | X,
     "Clean browser contexts kept prepared per worker (context + blank "
     "page, attached; with shared browsers spread over them) by a "
     "background thread, so a spin waits for no set-up. The first per "
     "worker is replaced as soon as a spin takes it; the others only "
     "while no spin runs on that browser, so "
     "preparing does not take the CPU from a spin (measured: a clean "
     "spin's p50 141 ms with 2, 279 ms with 1, against 118 ms for tab "
     "reuse, when the node is not saturated). 0: every spin makes its own "
     "context on its critical path."},
    {"chrome.resource_contexts", T_INT, "32", 1, 100000, NULL, 0, C | X,
     "State scope resource: contexts kept in memory per node (least "
     "recently used ones beyond this are disposed of; their session stays "
     "in MongoDB)."},
    {"chrome.resource_idle", T_MS, "10m", 1000, 86400000, NULL, 0, C | X,
     "State scope resource: a resource's context unused this long is "
     "disposed of (its session stays in MongoDB)."},
    {"chrome.tmp_dir", T_STR, "", 0, 0, NULL, 0, C | X,
     "Where temporary profiles and HOME directories go (empty: $TMPDIR or "
     "/tmp)."},

    /* recipes */
    {"recipes.dir", T_STR, "recipes", 0, 0, NULL, 0, C | X,
     "Directory of recipe files (*.json, Chrome DevTools Recorder format); "
     "all are loaded and validated at start. The recipe name is the file "
     "name without .json."},
    {"recipes.step_timeout", T_MS, "5s", 1, 3600000, NULL, 0, C | X,
     "Default timeout of one recipe step when neither the step nor the "
     "recipe sets \"timeout\"."},
    {"spin.timeout", T_MS, "60s", 0, 3600000, NULL, 0, C | X,
     "Deadline of a whole spin (0: none); past it the spin fails as "
     "transient."},
    {"spin.poll", T_MS, "50ms", 5, 5000, NULL, 0, C | X,
     "How often waits in the page (waitForElement, waitForExpression, "
     "selectors) re-check when no DOM mutation wakes them earlier."},
};

#undef P
#undef C
#undef X
#undef ALL

#define NPROPS (sizeof(props) / sizeof(props[0]))

typedef struct kv {
        char *key;
        char *value;
} kv_t;

struct par_config {
        char *val[NPROPS];
        int64_t num[NPROPS];
        kv_t *kafka;
        size_t nkafka;
};

static const prop_t *find(const char *key, size_t *idx)
{
        for (size_t i = 0; i < NPROPS; i++)
                if (!strcmp(props[i].name, key)) {
                        if (idx)
                                *idx = i;
                        return &props[i];
                }
        return NULL;
}

/* Edit distance, to suggest the key a typo meant. */
static int distance(const char *a, const char *b)
{
        size_t la = strlen(a), lb = strlen(b);
        int row[128];

        if (lb >= sizeof(row) / sizeof(row[0]))
                return INT_MAX;
        for (size_t j = 0; j <= lb; j++)
                row[j] = (int)j;
        for (size_t i = 1; i <= la; i++) {
                int diag = row[0];
                row[0] = (int)i;
                for (size_t j = 1; j <= lb; j++) {
                        int up = row[j];
                        int best = diag + (a[i - 1] != b[j - 1]);
                        if (row[j] + 1 < best)
                                best = row[j] + 1;
                        if (row[j - 1] + 1 < best)
                                best = row[j - 1] + 1;
                        row[j] = best;
                        diag = up;
                }
        }
        return row[lb];
}

static int parse_int(const char *s, int64_t *out)
{
        char *end;
        long long v;

        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno || end == s || *end)
                return -1;
        *out = v;
        return 0;
}

/* "250ms", "10s", "5m", "1h", "7d" or plain milliseconds. */
static int parse_ms(const char *s, int64_t *out)
{
        static const struct {
                const char *suffix;
                int64_t mult;
        } units[] = {{"ms", 1},      {"s", 1000}, {"m", 60000},
                     {"h", 3600000}, {"d", DAY},  {"", 1}};
        char *end;
        long long v;

        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno || end == s || v < 0)
                return -1;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
                if (!strcmp(end, units[i].suffix)) {
                        if (v > INT64_MAX / units[i].mult)
                                return -1;
                        *out = v * units[i].mult;
                        return 0;
                }
        return -1;
}

static int parse_bool(const char *s, int64_t *out)
{
        if (!strcasecmp(s, "true") || !strcmp(s, "1") ||
            !strcasecmp(s, "yes") || !strcasecmp(s, "on"))
                *out = 1;
        else if (!strcasecmp(s, "false") || !strcmp(s, "0") ||
                 !strcasecmp(s, "no") || !strcasecmp(s, "off"))
                *out = 0;
        else
                return -1;
        return 0;
}

static int enum_has(const char *values, const char *v, int64_t *idx)
{
        size_t n = strlen(v);
        int64_t i = 0;

        for (const char *p = values; *p; i++) {
                const char *bar = strchr(p, '|');
                size_t len = bar ? (size_t)(bar - p) : strlen(p);
                if (len == n && !strncmp(p, v, n)) {
                        *idx = i;
                        return 1;
                }
                if (!bar)
                        break;
                p = bar + 1;
        }
        return 0;
}

static par_err_t validate(const prop_t *p, const char *v, int64_t *num,
                          par_error_t *err)
{
        switch (p->type) {
        case T_STR:
                /* min is the least length: names that build topics,
                 * databases and collections cannot be empty. */
                *num = 0;
                if ((int64_t)strlen(v) < p->min)
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "%s: must not be empty", p->name);
                return PAR_OK;
        case T_BOOL:
                if (parse_bool(v, num))
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "%s: '%s' is not a boolean "
                                             "(true|false)",
                                             p->name, v);
                return PAR_OK;
        case T_ENUM:
                if (!enum_has(p->values, v, num))
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "%s: '%s' is not one of %s",
                                             p->name, v, p->values);
                return PAR_OK;
        case T_INT:
                if (parse_int(v, num))
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "%s: '%s' is not an integer",
                                             p->name, v);
                break;
        case T_MS:
                if (parse_ms(v, num))
                        return par_error_set(
                            err, PAR_ERR_INVALID,
                            "%s: '%s' is not a duration (e.g. 500ms, 10s, "
                            "5m, 1h, 7d, or milliseconds)",
                            p->name, v);
                break;
        }
        if (*num < p->min || *num > p->max)
                return par_error_set(
                    err, PAR_ERR_INVALID, "%s: %s out of range %lld..%lld%s",
                    p->name, v, (long long)p->min, (long long)p->max,
                    p->type == T_MS ? " ms" : "");
        return PAR_OK;
}

static par_err_t set_kafka(par_config_t *cfg, const char *key,
                           const char *value, par_error_t *err)
{
        kv_t *kv;

        if (!key[6])
                return par_error_set(err, PAR_ERR_INVALID,
                                     "kafka.: a librdkafka property name "
                                     "must follow the prefix");
        for (size_t i = 0; i < cfg->nkafka; i++)
                if (!strcmp(cfg->kafka[i].key, key + 6)) {
                        char *v = strdup(value);
                        if (!v)
                                return par_error_set(err, PAR_ERR_NOMEM,
                                                     "out of memory");
                        free(cfg->kafka[i].value);
                        cfg->kafka[i].value = v;
                        return PAR_OK;
                }
        kv = realloc(cfg->kafka, (cfg->nkafka + 1) * sizeof(*kv));
        if (!kv)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        cfg->kafka = kv;
        kv[cfg->nkafka].key = strdup(key + 6);
        kv[cfg->nkafka].value = strdup(value);
        if (!kv[cfg->nkafka].key || !kv[cfg->nkafka].value) {
                free(kv[cfg->nkafka].key);
                free(kv[cfg->nkafka].value);
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        }
        cfg->nkafka++;
        return PAR_OK;
}

par_err_t par_config_set(par_config_t *cfg, const char *key, const char *value,
                         par_error_t *err)
{
        const prop_t *p;
        size_t idx;
        int64_t num = 0;
        char *copy;

        if (!key || !*key)
                return par_error_set(err, PAR_ERR_INVALID, "empty key");
        if (!value)
                value = "";
        if (!strncmp(key, "kafka.", 6))
                return set_kafka(cfg, key, value, err);
        p = find(key, &idx);
        if (!p) {
                const char *best = NULL;
                int bestd = INT_MAX;
                for (size_t i = 0; i < NPROPS; i++) {
                        int d = distance(key, props[i].name);
                        if (d < bestd) {
                                bestd = d;
                                best = props[i].name;
                        }
                }
                if (best && bestd <= 3)
                        return par_error_set(err, PAR_ERR_INVALID,
                                             "%s: unknown key (did you mean "
                                             "%s?)",
                                             key, best);
                return par_error_set(err, PAR_ERR_INVALID,
                                     "%s: unknown key (see --help)", key);
        }
        if (validate(p, value, &num, err))
                return PAR_ERR_INVALID;
        copy = strdup(value);
        if (!copy)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        free(cfg->val[idx]);
        cfg->val[idx] = copy;
        cfg->num[idx] = num;
        return PAR_OK;
}

par_err_t par_config_new(par_config_t **out, par_error_t *err)
{
        par_config_t *cfg = calloc(1, sizeof(*cfg));
        par_err_t rc = PAR_OK;

        if (!cfg)
                return par_error_set(err, PAR_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < NPROPS && !rc; i++) {
                rc = par_config_set(cfg, props[i].name, props[i].def, err);
                if (rc)
                        par_error_prefix(err, "built-in default");
        }
        if (!rc)
                rc = par_config_set(cfg, "kafka.bootstrap.servers",
                                    "127.0.0.1:9092", err);
        if (rc) {
                par_config_destroy(cfg);
                return rc;
        }
        *out = cfg;
        return PAR_OK;
}

void par_config_destroy(par_config_t *cfg)
{
        if (!cfg)
                return;
        for (size_t i = 0; i < NPROPS; i++)
                free(cfg->val[i]);
        for (size_t i = 0; i < cfg->nkafka; i++) {
                free(cfg->kafka[i].key);
                free(cfg->kafka[i].value);
        }
        free(cfg->kafka);
        free(cfg);
}

static char *trim(char *s)
{
        char *e;

        while (isspace((unsigned char)*s))
                s++;
        e = s + strlen(s);
        while (e > s && isspace((unsigned char)e[-1]))
                *--e = '\0';
        return s;
}

par_err_t par_config_load_file(par_config_t *cfg, const char *path,
                               par_error_t *err)
{
        FILE *f = par_file_open_regular(path, err);
        char *line = NULL;
        size_t cap = 0;
        int lineno = 0;
        par_err_t rc = PAR_OK;

        if (!f)
                return err ? err->code : PAR_ERR_IO;
        while (getline(&line, &cap, f) >= 0) {
                char *s = trim(line), *eq;
                lineno++;
                if (!*s || *s == '#')
                        continue;
                eq = strchr(s, '=');
                if (!eq) {
                        rc = par_error_set(err, PAR_ERR_INVALID,
                                           "%s:%d: expected key=value", path,
                                           lineno);
                        break;
                }
                *eq = '\0';
                rc = par_config_set(cfg, trim(s), trim(eq + 1), err);
                if (rc) {
                        par_error_prefix(err, "%s:%d", path, lineno);
                        break;
                }
        }
        free(line);
        fclose(f);
        return rc;
}

/* PARALLEL_KAFKA_SASL_MECHANISM → kafka.sasl.mechanism; "__" → "_". */
static void env_to_key(const char *name, char *key, size_t n)
{
        size_t j = 0;

        for (size_t i = 0; name[i] && j + 1 < n; i++) {
                if (name[i] == '_' && name[i + 1] == '_') {
                        key[j++] = '_';
                        i++;
                } else if (name[i] == '_') {
                        key[j++] = '.';
                } else {
                        key[j++] = (char)tolower((unsigned char)name[i]);
                }
        }
        key[j] = '\0';
}

extern char **environ;

par_err_t par_config_load_env(par_config_t *cfg, par_error_t *err)
{
        for (char **e = environ; e && *e; e++) {
                const char *eq = strchr(*e, '=');
                char name[256], key[256];
                size_t len;

                if (strncmp(*e, "PARALLEL_", 9) || !eq)
                        continue;
                len = (size_t)(eq - *e) - 9;
                if (len == 0 || len >= sizeof(name))
                        continue;
                memcpy(name, *e + 9, len);
                name[len] = '\0';
                /* Not config keys: the file to load, and the test/build
                 * locations our tests and scripts pass around. */
                if (!strcmp(name, "CONFIG") || !strncmp(name, "TEST_", 5) ||
                    !strncmp(name, "STACK_", 6) ||
                    !strcmp(name, "SOURCE_DIR") || !strcmp(name, "BINARY_DIR"))
                        continue;
                env_to_key(name, key, sizeof(key));
                if (par_config_set(cfg, key, eq + 1, err))
                        return par_error_prefix(err, "environment PARALLEL_%s",
                                                name);
        }
        return PAR_OK;
}

par_err_t par_config_parse_args(par_config_t *cfg, int *argc, char **argv,
                                bool *dump, par_error_t *err)
{
        const char *file = getenv("PARALLEL_CONFIG");
        int n = *argc, w = 1;
        par_err_t rc;

        /* First pass: find the file so layers apply in order. */
        for (int i = 1; i < n; i++) {
                if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config"))) {
                        if (i + 1 >= n)
                                return par_error_set(err, PAR_ERR_INVALID,
                                                     "%s needs a file name",
                                                     argv[i]);
                        file = argv[++i];
                } else if (!strcmp(argv[i], "--")) {
                        break;
                }
        }
        if (file && *file && (rc = par_config_load_file(cfg, file, err)))
                return rc;
        if ((rc = par_config_load_env(cfg, err)))
                return rc;
        for (int i = 1; i < n; i++) {
                const char *a = argv[i];
                if (!strcmp(a, "--")) {
                        while (i < n)
                                argv[w++] = argv[i++];
                        break;
                }
                if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
                        i++;
                        continue;
                }
                if (!strcmp(a, "-X") || !strncmp(a, "-X", 2)) {
                        const char *kv = a[2] ? a + 2 : NULL;
                        char key[256];
                        const char *eq;

                        if (!kv) {
                                if (i + 1 >= n)
                                        return par_error_set(
                                            err, PAR_ERR_INVALID,
                                            "-X needs key=value");
                                kv = argv[++i];
                        }
                        if (!strcmp(kv, "dump")) {
                                if (dump)
                                        *dump = true;
                                continue;
                        }
                        eq = strchr(kv, '=');
                        if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof(key))
                                return par_error_set(err, PAR_ERR_INVALID,
                                                     "-X %s: expected "
                                                     "key=value",
                                                     kv);
                        memcpy(key, kv, (size_t)(eq - kv));
                        key[eq - kv] = '\0';
                        if ((rc = par_config_set(cfg, key, eq + 1, err)))
                                return rc;
                        continue;
                }
                argv[w++] = argv[i];
        }
        argv[w] = NULL;
        *argc = w;
        par_log_set_level(
            par_log_level_parse(par_config_str(cfg, "log.level")));
        return PAR_OK;
}

static size_t must_find(const char *key)
{
        size_t idx;

        if (!find(key, &idx)) {
                par_log(PAR_LOG_ERROR, "config", "unknown_key", "key=%s", key);
                return NPROPS;
        }
        return idx;
}

const char *par_config_str(const par_config_t *cfg, const char *key)
{
        size_t i = must_find(key);
        return i < NPROPS ? cfg->val[i] : "";
}

int64_t par_config_int(const par_config_t *cfg, const char *key)
{
        size_t i = must_find(key);
        return i < NPROPS ? cfg->num[i] : 0;
}

bool par_config_bool(const par_config_t *cfg, const char *key)
{
        return par_config_int(cfg, key) != 0;
}

const char *par_config_kafka_get(const par_config_t *cfg, const char *key)
{
        for (size_t i = 0; i < cfg->nkafka; i++)
                if (!strcmp(cfg->kafka[i].key, key))
                        return cfg->kafka[i].value;
        return NULL;
}

int par_config_foreach_kafka(const par_config_t *cfg,
                             int (*cb)(const char *, const char *, void *),
                             void *opaque)
{
        for (size_t i = 0; i < cfg->nkafka; i++) {
                int r = cb(cfg->kafka[i].key, cfg->kafka[i].value, opaque);
                if (r)
                        return r;
        }
        return 0;
}

/* Keys whose values are secrets, by name pattern, so that a key nobody
 * listed (kafka.ssl.key.pem, kafka.sasl.oauthbearer.client.secret, a
 * future credentials file) is redacted too. Over-redacting a path such as
 * ssl.key.location costs nothing. */
bool par_config_key_secret(const char *key)
{
        static const char *const words[] = {"password",
                                            "passwd",
                                            "secret",
                                            "token",
                                            "key",
                                            "pem",
                                            "credential",
                                            "jaas",
                                            "sasl."
                                            "oauthbearer."
                                            "config"};
        char low[256];
        size_t i;

        for (i = 0; key[i] && i + 1 < sizeof(low); i++)
                low[i] = (char)tolower((unsigned char)key[i]);
        low[i] = '\0';
        for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
                if (strstr(low, words[i]))
                        return true;
        return false;
}

/*
 * Writes value with a URI's userinfo password replaced by "***". The
 * userinfo ends at the last '@' of the authority: a password may itself
 * hold '@' (unencoded, as people write it), and cutting at the first one
 * left the rest of the password in the dump. The authority ends at the
 * first '/', '?' or '#' after that '@'; a query can hold '@' too, so only
 * the part before the first '?' is searched.
 */
static void print_redacted_uri(FILE *out, const char *v)
{
        const char *scheme = strstr(v, "://");
        const char *start, *end, *at = NULL, *colon;

        if (!scheme) {
                fputs(v, out);
                return;
        }
        start = scheme + 3;
        end = start + strcspn(start, "?#");
        for (const char *c = start; c < end; c++)
                if (*c == '@')
                        at = c;
        if (!at) {
                fputs(v, out);
                return;
        }
        colon = memchr(start, ':', (size_t)(at - start));
        if (!colon) {
                fputs(v, out);
                return;
        }
        fprintf(out, "%.*s:***%s", (int)(colon - v), v, at);
}

void par_config_dump(const par_config_t *cfg, FILE *out)
{
        for (size_t i = 0; i < NPROPS; i++) {
                fprintf(out, "%s=", props[i].name);
                if (par_config_key_secret(props[i].name))
                        fputs(cfg->val[i][0] ? "***" : "", out);
                else if (props[i].secret)
                        print_redacted_uri(out, cfg->val[i]);
                else
                        fputs(cfg->val[i], out);
                fputc('\n', out);
        }
        for (size_t i = 0; i < cfg->nkafka; i++)
                fprintf(out, "kafka.%s=%s\n", cfg->kafka[i].key,
                        par_config_key_secret(cfg->kafka[i].key)
                            ? "***"
                            : cfg->kafka[i].value);
}

static const char *type_name(const prop_t *p)
{
        switch (p->type) {
        case T_INT:
                return "integer";
        case T_BOOL:
                return "boolean";
        case T_ENUM:
                return p->values;
        case T_MS:
                return "duration";
        default:
                return "string";
        }
}

void par_config_help(FILE *out, unsigned scope)
{
        fputs("Configuration keys (set with -X key=value, -c FILE or "
              "PARALLEL_KEY_NAME=value):\n",
              out);
        for (size_t i = 0; i < NPROPS; i++) {
                if (!(props[i].scope & scope))
                        continue;
                fprintf(out, "  %-28s %s (default: %s)\n      %s\n",
                        props[i].name, type_name(&props[i]),
                        props[i].def[0] ? props[i].def : "empty", props[i].doc);
        }
        fputs("  kafka.*                      passed to librdkafka with the "
              "prefix removed\n",
              out);
}

void par_config_markdown(FILE *out)
{
        static const struct {
                unsigned bit;
                const char *name;
        } scopes[] = {{PAR_SCOPE_PRODUCER, "producer"},
                      {PAR_SCOPE_CONSUMER, "consumer"},
                      {PAR_SCOPE_CTL, "ctl"}};

        fputs("# Configuration\n\n"
              "Generated by `parallel-ctl config docs` from the property "
              "table in `lib/base/config.c`; do not edit by hand.\n\n"
              "Every program reads, lowest precedence first: the built-in "
              "defaults below, a properties file (`-c FILE` or "
              "`PARALLEL_CONFIG=FILE`; `key=value` lines, `#` comments), "
              "environment variables (`PARALLEL_` + the key upper-cased with "
              "dots as underscores, e.g. `PARALLEL_MONGO_URI`; a literal "
              "underscore is written `__`), and `-X key=value` arguments. "
              "`-X dump` prints the effective configuration with secrets "
              "redacted. Keys starting with `kafka.` are handed to "
              "librdkafka with the prefix removed "
              "(`kafka.bootstrap.servers` defaults to `127.0.0.1:9092`).\n\n"
              "| key | type | default | range | used by | description |\n"
              "|---|---|---|---|---|---|\n",
              out);
        for (size_t i = 0; i < NPROPS; i++) {
                const prop_t *p = &props[i];
                char range[64] = "";
                int first = 1;

                if (p->type == T_INT || p->type == T_MS)
                        snprintf(range, sizeof(range), "%lld..%lld%s",
                                 (long long)p->min, (long long)p->max,
                                 p->type == T_MS ? " ms" : "");
                fprintf(out, "| `%s` | ", p->name);
                for (const char *t = type_name(p); *t; t++)
                        fputs(*t == '|' ? " \\| " : (char[2]){*t, 0}, out);
                fprintf(out, " | `%s` | %s | ", p->def, range);
                for (size_t s = 0; s < 3; s++)
                        if (p->scope & scopes[s].bit) {
                                fprintf(out, "%s%s", first ? "" : ", ",
                                        scopes[s].name);
                                first = 0;
                        }
                fprintf(out, " | %s |\n", p->doc);
        }
}
