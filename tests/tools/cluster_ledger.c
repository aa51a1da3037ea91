/*
 * cluster_ledger.c — the ledger of one cluster scenario: reads every signal
 * document of a run (params.run == TAG) from MongoDB and the results and
 * DLQ topics (as `parallel-ctl decode` JSON lines), and checks that nothing
 * was lost and nothing was overridden.
 *
 *   cluster_ledger --mongo URI [--db DB] [--collection C] --run TAG
 *                  [--expect N] [--results FILE] [--dlq FILE]
 *                  [--wait SECONDS] [--starts FILE] [--winners FILE]
 *
 * --wait polls the documents until every one is terminal (or the time is
 * up) before reading the topics. Checks, per signal:
 *   terminal   the document's status is done/failed/dead/expired/rejected
 *              (one status field: one terminal state);
 *   fenced     the outcome on the document is the claim's: result.attempt
 *              equals attempt and claimed_by is a worker of result.node_id
 *              (`<node>/<worker>`) — a node whose lease lapsed could not
 *              write over it. The worker may differ: with claim.batch a
 *              worker claims queued signals ahead and another worker of
 *              the node runs one under that claim;
 *   published  the results topic holds a result with the document's status
 *              and attempt (dead/failed/rejected: also a DLQ entry), and the
 *              highest-attempt final result on the topic is that one, so a
 *              reader taking the latest attempt sees the document's outcome.
 * Figures: executions (done/failed/dead/retrying results), duplicates (final
 * results beyond one per signal: a spin that ran again after its lease
 * lapsed), late results (final results of an older attempt published after
 * the winning one). --starts writes "started_at_ms node" per execution for
 * the benchmark's gap analysis; --winners writes "id status attempt node
 * finished_at_ms executions" per signal (the document's outcome).
 *
 * Prints one "ledger: k=v ..." line; exits 0 when every check holds, 1 when
 * one fails (the first few offenders are printed), 2 on usage errors.
 * Why a program and not jq: the documents are read with libmongoc (there is
 * no mongo shell here) and the join needs a hash table.
 */
#include <jansson.h>
#include <mongoc/mongoc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct sig {
        char status[16];
        int attempt;
        int res_attempt;
        char res_node[64];
        char res_worker[32];
        char claimed_by[160];
        int64_t finished_at;
        /* from the topics */
        int execs;        /* done/failed/dead/retrying results */
        int finals;       /* done/failed/dead results */
        int match;        /* final results with the doc's status+attempt */
        int best_attempt; /* highest attempt among final results */
        char best_status[16];
        int64_t win_offset_ts; /* timestamp of the matching result */
        int late;              /* older finals after the winning one */
        int dlq;
} sig_t_;

static bool terminal(const char *s)
{
        return !strcmp(s, "done") || !strcmp(s, "failed") ||
               !strcmp(s, "dead") || !strcmp(s, "expired") ||
               !strcmp(s, "rejected");
}

static const char *iter_str(const bson_t *d, const char *path)
{
        bson_iter_t it, f;
        if (bson_iter_init(&it, d) &&
            bson_iter_find_descendant(&it, path, &f) &&
            BSON_ITER_HOLDS_UTF8(&f))
                return bson_iter_utf8(&f, NULL);
        return "";
}

static int iter_int(const bson_t *d, const char *path)
{
        bson_iter_t it, f;
        if (bson_iter_init(&it, d) &&
            bson_iter_find_descendant(&it, path, &f) &&
            (BSON_ITER_HOLDS_INT32(&f) || BSON_ITER_HOLDS_INT64(&f) ||
             BSON_ITER_HOLDS_DOUBLE(&f)))
                return (int)bson_iter_as_int64(&f);
        return 0;
}

static int64_t iter_i64(const bson_t *d, const char *path)
{
        bson_iter_t it, f;
        if (bson_iter_init(&it, d) &&
            bson_iter_find_descendant(&it, path, &f)) {
                if (BSON_ITER_HOLDS_DATE_TIME(&f))
                        return bson_iter_date_time(&f);
                if (BSON_ITER_HOLDS_INT32(&f) || BSON_ITER_HOLDS_INT64(&f) ||
                    BSON_ITER_HOLDS_DOUBLE(&f))
                        return bson_iter_as_int64(&f);
        }
        return 0;
}

/* Loads the run's documents into obj (id → sig_t_ *); returns the count of
 * non-terminal ones, or -1 on a MongoDB error. */
static int load_docs(mongoc_collection_t *coll, const char *tag, json_t *obj)
{
        bson_t *q = BCON_NEW("params.run", BCON_UTF8(tag));
        mongoc_cursor_t *cur =
            mongoc_collection_find_with_opts(coll, q, NULL, NULL);
        const bson_t *d;
        bson_error_t be;
        int open = 0;

        json_object_clear(obj);
        while (mongoc_cursor_next(cur, &d)) {
                bson_iter_t it;
                char id[64] = "";
                if (bson_iter_init_find(&it, d, "_id")) {
                        if (BSON_ITER_HOLDS_OID(&it))
                                bson_oid_to_string(bson_iter_oid(&it), id);
                        else if (BSON_ITER_HOLDS_UTF8(&it))
                                snprintf(id, sizeof(id), "%s",
                                         bson_iter_utf8(&it, NULL));
                }
                sig_t_ *s = calloc(1, sizeof(*s));
                if (!s)
                        abort();
                snprintf(s->status, sizeof(s->status), "%s",
                         iter_str(d, "status"));
                s->attempt = iter_int(d, "attempt");
                s->res_attempt = iter_int(d, "result.attempt");
                s->finished_at = iter_i64(d, "result.finished_at");
                snprintf(s->res_node, sizeof(s->res_node), "%s",
                         iter_str(d, "result.node_id"));
                snprintf(s->res_worker, sizeof(s->res_worker), "%s",
                         iter_str(d, "result.worker_id"));
                snprintf(s->claimed_by, sizeof(s->claimed_by), "%s",
                         iter_str(d, "claimed_by"));
                if (!terminal(s->status))
                        open++;
                json_object_set_new(obj, id,
                                    json_integer((json_int_t)(intptr_t)s));
        }
        if (mongoc_cursor_error(cur, &be)) {
                fprintf(stderr, "ledger: mongo: %s\n", be.message);
                open = -1;
        }
        mongoc_cursor_destroy(cur);
        bson_destroy(q);
        return open;
}

/* The jansson object is the id → record hash table (values hold pointers). */
static sig_t_ *get(json_t *obj, const char *id)
{
        json_t *v = json_object_get(obj, id);
        return v ? (sig_t_ *)(intptr_t)json_integer_value(v) : NULL;
}

static void read_results(const char *path, json_t *obj, FILE *starts)
{
        FILE *f = fopen(path, "r");
        char *line = NULL;
        size_t cap = 0;

        if (!f) {
                perror(path);
                exit(2);
        }
        /* Pass 1: executions and winners; pass 2: late finals. */
        for (int pass = 0; pass < 2; pass++) {
                rewind(f);
                while (getline(&line, &cap, f) > 0) {
                        json_t *m = json_loads(line, 0, NULL);
                        json_t *v = m ? json_object_get(m, "value") : NULL;
                        const char *id =
                            json_string_value(json_object_get(v, "signal_id"));
                        sig_t_ *s = id ? get(obj, id) : NULL;
                        if (!s) {
                                json_decref(m);
                                continue;
                        }
                        const char *st =
                            json_string_value(json_object_get(v, "status"));
                        int att = (int)json_integer_value(
                            json_object_get(v, "attempt"));
                        int64_t ts =
                            json_integer_value(json_object_get(m, "timestamp"));
                        bool fin = st && (!strcmp(st, "done") ||
                                          !strcmp(st, "failed") ||
                                          !strcmp(st, "dead"));
                        bool exec = fin || (st && !strcmp(st, "retrying"));
                        if (pass == 0) {
                                if (exec) {
                                        s->execs++;
                                        json_t *sa =
                                            json_object_get(v, "started_at");
                                        if (starts && json_is_integer(sa))
                                                fprintf(
                                                    starts, "%lld %s\n",
                                                    (long long)
                                                        json_integer_value(sa),
                                                    json_string_value(
                                                        json_object_get(
                                                            v, "node_id")));
                                }
                                if (st && !strcmp(st, s->status) &&
                                    att == s->attempt &&
                                    (fin || !strcmp(st, "expired"))) {
                                        s->match++;
                                        s->win_offset_ts = ts;
                                }
                                if (fin) {
                                        s->finals++;
                                        if (att >= s->best_attempt) {
                                                s->best_attempt = att;
                                                snprintf(s->best_status,
                                                         sizeof(s->best_status),
                                                         "%s", st);
                                        }
                                }
                        } else if (fin && att != s->attempt &&
                                   s->win_offset_ts && ts > s->win_offset_ts) {
                                s->late++;
                        }
                        json_decref(m);
                }
        }
        free(line);
        fclose(f);
}

static void read_dlq(const char *path, json_t *obj)
{
        FILE *f = fopen(path, "r");
        char *line = NULL;
        size_t cap = 0;

        if (!f) {
                perror(path);
                exit(2);
        }
        while (getline(&line, &cap, f) > 0) {
                json_t *m = json_loads(line, 0, NULL);
                json_t *v = m ? json_object_get(m, "value") : NULL;
                const char *id =
                    json_string_value(json_object_get(v, "signal_id"));
                sig_t_ *s = id ? get(obj, id) : NULL;
                if (s)
                        s->dlq++;
                json_decref(m);
        }
        free(line);
        fclose(f);
}

int main(int argc, char **argv)
{
        const char *uri = NULL, *db = "parallel", *cname = "signals";
        const char *tag = NULL, *results = NULL, *dlq = NULL, *starts = NULL;
        const char *winners = NULL;
        long expect = -1, wait_s = 0;

        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
                if (!v)
                        goto usage;
                if (!strcmp(a, "--mongo"))
                        uri = v;
                else if (!strcmp(a, "--db"))
                        db = v;
                else if (!strcmp(a, "--collection"))
                        cname = v;
                else if (!strcmp(a, "--run"))
                        tag = v;
                else if (!strcmp(a, "--expect"))
                        expect = atol(v);
                else if (!strcmp(a, "--results"))
                        results = v;
                else if (!strcmp(a, "--dlq"))
                        dlq = v;
                else if (!strcmp(a, "--wait"))
                        wait_s = atol(v);
                else if (!strcmp(a, "--starts"))
                        starts = v;
                else if (!strcmp(a, "--winners"))
                        winners = v;
                else
                        goto usage;
                i++;
        }
        if (!uri || !tag)
                goto usage;

        mongoc_init();
        mongoc_client_t *cl = mongoc_client_new(uri);
        if (!cl) {
                fprintf(stderr, "ledger: bad uri %s\n", uri);
                return 2;
        }
        mongoc_collection_t *coll = mongoc_client_get_collection(cl, db, cname);
        json_t *obj = json_object();
        time_t t0 = time(NULL);
        int open;
        for (;;) {
                open = load_docs(coll, tag, obj);
                if (open == 0 &&
                    (expect < 0 || (long)json_object_size(obj) >= expect))
                        break;
                if (time(NULL) - t0 >= wait_s)
                        break;
                sleep(1);
        }
        if (open < 0)
                return 1;

        FILE *sf = starts ? fopen(starts, "w") : NULL;
        if (results)
                read_results(results, obj, sf);
        if (dlq)
                read_dlq(dlq, obj);
        if (sf)
                fclose(sf);

        FILE *wf = winners ? fopen(winners, "w") : NULL;
        long n = (long)json_object_size(obj), nonterm = 0, fence = 0,
             missing = 0, override = 0, dup = 0, late = 0, execs = 0;
        long done = 0, failed = 0, dead = 0, other = 0;
        int shown = 0;
        const char *id;
        json_t *val;
        json_object_foreach(obj, id, val)
        {
                sig_t_ *s = (sig_t_ *)(intptr_t)json_integer_value(val);
                const char *why = NULL;
                if (!strcmp(s->status, "done"))
                        done++;
                else if (!strcmp(s->status, "failed"))
                        failed++;
                else if (!strcmp(s->status, "dead"))
                        dead++;
                else
                        other++;
                execs += s->execs;
                late += s->late;
                if (wf)
                        fprintf(wf, "%s %s %d %s %lld %d\n", id, s->status,
                                s->attempt, s->res_node[0] ? s->res_node : "-",
                                (long long)s->finished_at, s->execs);
                if (s->finals > 1)
                        dup += s->finals - 1;
                if (!terminal(s->status)) {
                        nonterm++;
                        why = "not terminal";
                } else if (strcmp(s->status, "expired") &&
                           strcmp(s->status, "rejected") &&
                           (s->res_attempt != s->attempt ||
                            strncmp(s->claimed_by, s->res_node,
                                    strlen(s->res_node)) ||
                            s->claimed_by[strlen(s->res_node)] != '/')) {
                        fence++;
                        why = "outcome not the claim holder's";
                } else if (results && !s->match &&
                           strcmp(s->status, "rejected")) {
                        missing++;
                        why = "no result with the document's outcome";
                } else if (results && s->finals &&
                           (s->best_attempt != s->attempt ||
                            strcmp(s->best_status, s->status))) {
                        override++;
                        why = "a later attempt's result contradicts the "
                              "document";
                } else if (dlq &&
                           (!strcmp(s->status, "dead") ||
                            !strcmp(s->status, "failed") ||
                            !strcmp(s->status, "rejected")) &&
                           !s->dlq) {
                        missing++;
                        why = "no dead letter";
                }
                if (why && shown++ < 5)
                        fprintf(stderr,
                                "ledger: signal %s: %s (status=%s attempt=%d "
                                "claimed_by=%s result=%s/%s attempt %d, "
                                "finals=%d best=%s@%d)\n",
                                id, why, s->status, s->attempt, s->claimed_by,
                                s->res_node, s->res_worker, s->res_attempt,
                                s->finals, s->best_status, s->best_attempt);
        }
        if (wf)
                fclose(wf);
        bool ok = nonterm == 0 && fence == 0 && missing == 0 && override == 0 &&
                  (expect < 0 || n == expect);
        printf("ledger: run=%s signals=%ld expected=%ld done=%ld failed=%ld "
               "dead=%ld other=%ld nonterminal=%ld fence_violations=%ld "
               "missing_results=%ld overridden=%ld executions=%ld "
               "duplicates=%ld late_results=%ld ok=%d\n",
               tag, n, expect, done, failed, dead, other, nonterm, fence,
               missing, override, execs, dup, late, ok);
        json_object_foreach(obj, id, val)
            free((sig_t_ *)(intptr_t)json_integer_value(val));
        json_decref(obj);
        mongoc_collection_destroy(coll);
        mongoc_client_destroy(cl);
        mongoc_cleanup();
        return ok ? 0 : 1;
usage:
        fprintf(stderr,
                "usage: cluster_ledger --mongo URI [--db DB] [--collection C] "
                "--run TAG [--expect N] [--results FILE] [--dlq FILE] "
                "[--wait SECONDS] [--starts FILE] [--winners FILE]\n");
        return 2;
}
