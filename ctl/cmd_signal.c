/*
 * signal.c — `parallel-ctl signal insert|load|status`: put signals into the
 * MongoDB signals collection the way an upstream system would, and look at
 * them.
 *
 * Every signal goes through par_signal_parse() before it is sent, so what
 * this tool inserts is exactly what the producer accepts. Inserts are
 * ordered bulk writes of up to 1000 documents (one round trip per
 * batch): the stand-in and a real server both take tens of thousands per
 * second that way, against a few thousand one by one.
 *
 * `load` reads JSON lines (relaxed or canonical extended JSON, so dates are
 * {"$date": "2026-11-27T00:00:00Z"}), fills in what an inserter normally
 * sets (_id, created_at = now, status = "pending") when absent, and
 * validates the whole file before inserting anything: a bad line aborts
 * with its number and reason unless --skip-invalid is given.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mongoc/mongoc.h>

#include "base/clock.h"
#include "ctl.h"
#include "store/signal.h"

#define BATCH 1000

typedef struct ins {
        mongoc_client_t *client;
        mongoc_collection_t *coll;
        mongoc_bulk_operation_t *bulk;
        size_t queued, inserted;
} ins_t;

static int open_coll(par_config_t *cfg, ins_t *in)
{
        bson_error_t e;
        mongoc_uri_t *uri;

        mongoc_init();
        uri = mongoc_uri_new_with_error(par_config_str(cfg, "mongo.uri"), &e);
        if (!uri) {
                fprintf(stderr, "parallel-ctl signal: mongo.uri: %s\n",
                        e.message);
                return -1;
        }
        in->client = mongoc_client_new_from_uri_with_error(uri, &e);
        mongoc_uri_destroy(uri);
        if (!in->client) {
                fprintf(stderr, "parallel-ctl signal: %s\n", e.message);
                return -1;
        }
        mongoc_client_set_appname(in->client, "parallel-ctl");
        in->coll = mongoc_client_get_collection(
            in->client, par_config_str(cfg, "mongo.database"),
            par_config_str(cfg, "mongo.collection"));
        return 0;
}

static void close_coll(ins_t *in)
{
        mongoc_bulk_operation_destroy(in->bulk);
        mongoc_collection_destroy(in->coll);
        mongoc_client_destroy(in->client);
        mongoc_cleanup();
}

static int flush(ins_t *in)
{
        bson_error_t e;
        bson_t reply;
        int ok = 0;

        if (!in->queued)
                return 0;
        if (!mongoc_bulk_operation_execute(in->bulk, &reply, &e)) {
                fprintf(stderr,
                        "parallel-ctl signal: insert failed after %zu "
                        "signals: %s\n",
                        in->inserted, e.message);
                ok = -1;
        } else {
                in->inserted += in->queued;
        }
        bson_destroy(&reply);
        mongoc_bulk_operation_destroy(in->bulk);
        in->bulk = NULL;
        in->queued = 0;
        return ok;
}

static int queue(ins_t *in, const bson_t *doc)
{
        bson_error_t e;

        if (!in->bulk) {
                bson_t opts = BSON_INITIALIZER;
                BSON_APPEND_BOOL(&opts, "ordered", true);
                in->bulk = mongoc_collection_create_bulk_operation_with_opts(
                    in->coll, &opts);
                bson_destroy(&opts);
        }
        if (!mongoc_bulk_operation_insert_with_opts(in->bulk, doc, NULL, &e)) {
                fprintf(stderr, "parallel-ctl signal: %s\n", e.message);
                return -1;
        }
        if (++in->queued >= BATCH)
                return flush(in);
        return 0;
}

static void report(const ins_t *in, double t0)
{
        double dt = par_clock_mono_s() - t0;
        printf("inserted %zu signals in %.3f s (%.0f/s)\n", in->inserted, dt,
               dt > 0 ? in->inserted / dt : 0.0);
}

static int parse_long(const char *opt, const char *v, long long min,
                      long long max, long long *out)
{
        char *end;
        long long n;

        errno = 0;
        n = v ? strtoll(v, &end, 10) : 0;
        if (!v || errno || *end || end == v || n < min || n > max) {
                fprintf(stderr,
                        "parallel-ctl signal: %s: '%s' is not an integer in "
                        "%lld..%lld\n",
                        opt, v ? v : "", min, max);
                return -1;
        }
        *out = n;
        return 0;
}

static void insert_usage(FILE *out)
{
        fputs("usage: parallel-ctl signal insert --priority N --recipe NAME "
              "[--resource KEY]\n"
              "           [--param k=v]... [--count N] [--expires-in-ms N]\n"
              "  Inserts N (default 1) identical pending signals, each with "
              "its own _id.\n",
              out);
}

static int cmd_insert(par_config_t *cfg, int argc, char **argv)
{
        par_signal_limits_t lim;
        par_signal_t s;
        par_error_t err;
        long long count = 1, expires_in = 0, prio = 0;
        ins_t in = {0};
        int rc = 2;
        double t0;

        par_signal_limits_from_config(&lim, cfg);
        par_signal_init(&s);
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

                if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
                        insert_usage(stdout);
                        rc = 0;
                        goto out;
                }
                if (!v) {
                        fprintf(stderr,
                                "parallel-ctl signal insert: %s needs a value "
                                "(or is unknown; try --help)\n",
                                a);
                        goto out;
                }
                i++;
                if (!strcmp(a, "--priority")) {
                        if (parse_long(a, v, -1000000, 1000000, &prio))
                                goto out;
                        s.priority = (int)prio;
                } else if (!strcmp(a, "--recipe")) {
                        snprintf(s.recipe, sizeof(s.recipe), "%s", v);
                        if (strlen(v) >= sizeof(s.recipe))
                                s.recipe[0] = '\0'; /* fails validation */
                } else if (!strcmp(a, "--resource")) {
                        if (strlen(v) > PAR_SIGNAL_RESOURCE_MAX) {
                                fprintf(stderr,
                                        "parallel-ctl signal insert: "
                                        "--resource longer than %d bytes\n",
                                        PAR_SIGNAL_RESOURCE_MAX);
                                goto out;
                        }
                        snprintf(s.resource, sizeof(s.resource), "%s", v);
                        s.has_resource = true;
                } else if (!strcmp(a, "--param")) {
                        char *eq = strchr(v, '='), key[128];
                        if (!eq || (size_t)(eq - v) >= sizeof(key)) {
                                fprintf(stderr,
                                        "parallel-ctl signal insert: --param "
                                        "'%s' is not k=v\n",
                                        v);
                                goto out;
                        }
                        memcpy(key, v, eq - v);
                        key[eq - v] = '\0';
                        if (par_signal_add_param(&s, key, eq + 1, &err)) {
                                fprintf(stderr,
                                        "parallel-ctl signal insert: %s\n",
                                        err.msg);
                                goto out;
                        }
                } else if (!strcmp(a, "--count")) {
                        if (parse_long(a, v, 1, 100000000, &count))
                                goto out;
                } else if (!strcmp(a, "--expires-in-ms")) {
                        if (parse_long(a, v, 1, INT64_MAX / 4, &expires_in))
                                goto out;
                } else {
                        fprintf(stderr,
                                "parallel-ctl signal insert: unknown option "
                                "'%s' (try --help)\n",
                                a);
                        goto out;
                }
        }
        if (!s.priority || !s.recipe[0]) {
                fprintf(stderr, "parallel-ctl signal insert: --priority and "
                                "--recipe are required\n");
                goto out;
        }

        rc = 1;
        if (open_coll(cfg, &in))
                goto out;
        t0 = par_clock_mono_s();
        for (long long i = 0; i < count; i++) {
                bson_t doc = BSON_INITIALIZER;
                par_signal_t check;
                int bad;

                bson_oid_init(&s.oid, NULL);
                bson_oid_to_string(&s.oid, s.id);
                s.created_at = par_clock_wall_ms();
                s.expires_at = expires_in ? s.created_at + expires_in : 0;
                par_signal_append_bson(&s, &doc);
                par_signal_init(&check);
                bad = par_signal_parse(&check, &doc, &lim, &err) != PAR_OK;
                par_signal_clear(&check);
                if (bad) {
                        fprintf(stderr, "parallel-ctl signal insert: %s\n",
                                err.msg);
                        bson_destroy(&doc);
                        rc = i ? 1 : 2;
                        goto out;
                }
                bad = queue(&in, &doc);
                bson_destroy(&doc);
                if (bad)
                        goto out;
        }
        if (flush(&in))
                goto out;
        report(&in, t0);
        if (count == 1)
                printf("id %s\n", s.id);
        rc = 0;
out:
        if (in.client)
                close_coll(&in);
        par_signal_clear(&s);
        return rc;
}

/*
 * Turns one JSON line into a signal document with the inserter's defaults
 * filled in, and validates it. Returns 0 (valid, *out set), 1 (invalid,
 * reason in err), or -1 (not a JSON object).
 */
static int load_line(const char *line, size_t len,
                     const par_signal_limits_t *lim, bson_t **out,
                     par_error_t *err)
{
        bson_error_t e;
        bson_t *parsed, *doc;
        bson_iter_t it;
        par_signal_t s;
        int rc;

        parsed = bson_new_from_json((const uint8_t *)line, (ssize_t)len, &e);
        if (!parsed) {
                par_error_set(err, PAR_ERR_INVALID, "not a JSON object: %s",
                              e.message);
                return -1;
        }
        doc = bson_new();
        if (!bson_iter_init_find(&it, parsed, "_id")) {
                bson_oid_t oid;
                bson_oid_init(&oid, NULL);
                BSON_APPEND_OID(doc, "_id", &oid);
        }
        bson_concat(doc, parsed);
        if (!bson_iter_init_find(&it, parsed, "created_at"))
                BSON_APPEND_DATE_TIME(doc, "created_at", par_clock_wall_ms());
        if (!bson_iter_init_find(&it, parsed, "status"))
                BSON_APPEND_UTF8(doc, "status", PAR_SIGNAL_PENDING);
        bson_destroy(parsed);

        par_signal_init(&s);
        rc = par_signal_parse(&s, doc, lim, err) ? 1 : 0;
        par_signal_clear(&s);
        if (rc) {
                bson_destroy(doc);
                return rc;
        }
        *out = doc;
        return 0;
}

static bool blank(const char *s)
{
        for (; *s; s++)
                if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n')
                        return false;
        return true;
}

/* One pass over the file: validate only (in == NULL) or validate and
 * insert. Returns the number of invalid lines, or -1 on an I/O or insert
 * failure. */
static long load_pass(const char *path, const par_signal_limits_t *lim,
                      ins_t *in, bool report_all)
{
        FILE *f = fopen(path, "r");
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        long lineno = 0, invalid = 0;

        if (!f) {
                fprintf(stderr, "parallel-ctl signal load: %s: %s\n", path,
                        strerror(errno));
                return -1;
        }
        while ((n = getline(&line, &cap, f)) >= 0) {
                par_error_t err;
                bson_t *doc = NULL;

                lineno++;
                if (blank(line))
                        continue;
                if (load_line(line, (size_t)n, lim, &doc, &err)) {
                        invalid++;
                        if (report_all || invalid == 1)
                                fprintf(stderr, "%s:%ld: %s\n", path, lineno,
                                        err.msg);
                        if (!report_all)
                                break;
                        continue;
                }
                if (in && queue(in, doc)) {
                        bson_destroy(doc);
                        invalid = -1;
                        break;
                }
                bson_destroy(doc);
        }
        free(line);
        fclose(f);
        return invalid;
}

static int cmd_load(par_config_t *cfg, int argc, char **argv)
{
        par_signal_limits_t lim;
        const char *path = NULL;
        bool skip = false;
        ins_t in = {0};
        long invalid;
        double t0;
        int rc = 1;

        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
                        puts("usage: parallel-ctl signal load FILE.jsonl "
                             "[--skip-invalid]\n"
                             "  One signal per line as (extended) JSON; "
                             "_id, created_at and status=pending\n"
                             "  are added when absent. Without "
                             "--skip-invalid a bad line inserts nothing.");
                        return 0;
                } else if (!strcmp(argv[i], "--skip-invalid")) {
                        skip = true;
                } else if (argv[i][0] == '-' && argv[i][1]) {
                        fprintf(stderr,
                                "parallel-ctl signal load: unknown option "
                                "'%s'\n",
                                argv[i]);
                        return 2;
                } else if (!path) {
                        path = argv[i];
                } else {
                        fprintf(stderr, "parallel-ctl signal load: one file "
                                        "only\n");
                        return 2;
                }
        }
        if (!path) {
                fprintf(stderr, "parallel-ctl signal load: FILE missing\n");
                return 2;
        }
        par_signal_limits_from_config(&lim, cfg);
        if (!skip) {
                invalid = load_pass(path, &lim, NULL, false);
                if (invalid) {
                        if (invalid > 0)
                                fprintf(stderr, "parallel-ctl signal load: "
                                                "nothing inserted\n");
                        return 1;
                }
        }
        if (open_coll(cfg, &in))
                return 1;
        t0 = par_clock_mono_s();
        invalid = load_pass(path, &lim, &in, true);
        if (invalid >= 0 && flush(&in) == 0) {
                report(&in, t0);
                if (invalid > 0)
                        printf("skipped %ld invalid lines\n", invalid);
                rc = 0;
        }
        close_coll(&in);
        return rc;
}

static int cmd_status(par_config_t *cfg, int argc, char **argv)
{
        const char *id = NULL;
        ins_t in = {0};
        bson_error_t e;
        int rc = 1;

        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--id") && i + 1 < argc) {
                        id = argv[++i];
                } else if (!strcmp(argv[i], "--help")) {
                        puts("usage: parallel-ctl signal status [--id ID]\n"
                             "  Counts signals by status, or prints one "
                             "signal as JSON.");
                        return 0;
                } else {
                        fprintf(stderr,
                                "parallel-ctl signal status: unknown "
                                "argument '%s'\n",
                                argv[i]);
                        return 2;
                }
        }
        if (id && !bson_oid_is_valid(id, strlen(id))) {
                fprintf(stderr,
                        "parallel-ctl signal status: '%s' is not an "
                        "ObjectId\n",
                        id);
                return 2;
        }
        if (open_coll(cfg, &in))
                return 1;
        if (id) {
                bson_oid_t oid;
                bson_t filter = BSON_INITIALIZER;
                const bson_t *doc;
                mongoc_cursor_t *c;

                bson_oid_init_from_string(&oid, id);
                BSON_APPEND_OID(&filter, "_id", &oid);
                c = mongoc_collection_find_with_opts(in.coll, &filter, NULL,
                                                     NULL);
                if (mongoc_cursor_next(c, &doc)) {
                        char *j = bson_as_relaxed_extended_json(doc, NULL);
                        puts(j);
                        bson_free(j);
                        rc = 0;
                } else if (mongoc_cursor_error(c, &e)) {
                        fprintf(stderr, "parallel-ctl signal status: %s\n",
                                e.message);
                } else {
                        fprintf(stderr,
                                "parallel-ctl signal status: no signal %s\n",
                                id);
                }
                mongoc_cursor_destroy(c);
                bson_destroy(&filter);
        } else {
                /* Counted client-side: one pass over a projection is
                 * portable across servers and the stand-in alike. */
                bson_t opts = BSON_INITIALIZER, proj, filter = BSON_INITIALIZER;
                const bson_t *doc;
                mongoc_cursor_t *c;
                struct {
                        char name[32];
                        long n;
                } counts[16];
                size_t nc = 0;
                long total = 0;

                BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &proj);
                BSON_APPEND_INT32(&proj, "status", 1);
                bson_append_document_end(&opts, &proj);
                BSON_APPEND_INT32(&opts, "batchSize", 10000);
                c = mongoc_collection_find_with_opts(in.coll, &filter, &opts,
                                                     NULL);
                while (mongoc_cursor_next(c, &doc)) {
                        bson_iter_t it;
                        const char *st = "(none)";
                        size_t k;

                        if (bson_iter_init_find(&it, doc, "status") &&
                            BSON_ITER_HOLDS_UTF8(&it))
                                st = bson_iter_utf8(&it, NULL);
                        else if (bson_iter_init_find(&it, doc, "status"))
                                st = "(not a string)";
                        for (k = 0; k < nc; k++)
                                if (!strncmp(counts[k].name, st,
                                             sizeof(counts[k].name) - 1))
                                        break;
                        if (k == nc && nc < 16) {
                                snprintf(counts[nc].name,
                                         sizeof(counts[nc].name), "%s", st);
                                counts[nc++].n = 0;
                        }
                        if (k < nc)
                                counts[k].n++;
                        total++;
                }
                if (mongoc_cursor_error(c, &e)) {
                        fprintf(stderr, "parallel-ctl signal status: %s\n",
                                e.message);
                } else {
                        for (size_t k = 0; k < nc; k++)
                                printf("%-10s %ld\n", counts[k].name,
                                       counts[k].n);
                        printf("%-10s %ld\n", "total", total);
                        rc = 0;
                }
                mongoc_cursor_destroy(c);
                bson_destroy(&opts);
                bson_destroy(&filter);
        }
        close_coll(&in);
        return rc;
}

int par_ctl_signal(par_config_t *cfg, int argc, char **argv)
{
        if (argc >= 2 && !strcmp(argv[1], "insert"))
                return cmd_insert(cfg, argc - 1, argv + 1);
        if (argc >= 2 && !strcmp(argv[1], "load"))
                return cmd_load(cfg, argc - 1, argv + 1);
        if (argc >= 2 && !strcmp(argv[1], "status"))
                return cmd_status(cfg, argc - 1, argv + 1);
        if (argc >= 2 &&
            (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
                puts("usage: parallel-ctl signal insert|load|status "
                     "[--help]");
                return 0;
        }
        if (argc < 2)
                fprintf(stderr, "parallel-ctl signal: action missing "
                                "(insert|load|status; try --help)\n");
        else
                fprintf(stderr,
                        "parallel-ctl signal: unknown action '%s' "
                        "(insert|load|status)\n",
                        argv[1]);
        return 2;
}
