/* stack_util.c — see stack_util.h. */
#include "stack_util.h"

/* Creates (create=1) or deletes the topics <world>.<suffix> for
 * suffixes[0..n) through msg/admin, SU_PARTITIONS partitions each, with
 * the world's timestamp type. */
int su_topics(su_ctx_t *c, const char *const *suffixes, size_t n, int create)
{
        char names[8][128];
        const char *pnames[8];
        par_admin_topic_t topics[8];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_t *rk = NULL;
        par_error_t err = {0};
        par_err_t rc;
        char es[512];

        if (n > 8)
                return -1;
        for (size_t i = 0; i < n; i++) {
                snprintf(names[i], sizeof(names[i]), "%s.%s", c->name,
                         suffixes[i]);
                pnames[i] = names[i];
                topics[i] = (par_admin_topic_t){
                    .name = names[i],
                    .partitions = SU_PARTITIONS,
                    .replication = 1,
                    .config = {"message.timestamp.type",
                               c->log_append_time ? "LogAppendTime"
                                                  : "CreateTime",
                               NULL}};
        }
        rd_kafka_conf_set(conf, "bootstrap.servers", c->kafka, es, sizeof(es));
        rc = par_admin_client_new(&rk, conf, 30000, &err);
        if (!rc)
                rc = create
                         ? par_admin_create(rk, topics, n, 30000, NULL, &err)
                         : par_admin_delete(rk, pnames, n, 30000, NULL, &err);
        if (rc)
                fprintf(stderr, "stack_util: %s topics: %s\n",
                        create ? "creating" : "deleting", err.msg);
        if (rk)
                rd_kafka_destroy(rk);
        return rc ? -1 : 0;
}

/* The producer's topics: four priorities and the dead letters. */
static int su_admin(su_ctx_t *c, int create)
{
        static const char *const sfx[] = {"signals.p1", "signals.p2",
                                          "signals.p3", "signals.p4", "dlq"};
        return su_topics(c, sfx, 5, create);
}

/* A {ping: 1} command document (static storage; single-threaded use). */
static const bson_t *tmp_bson_ping(void)
{
        static bson_t doc;
        bson_init(&doc); /* small: inline storage, nothing to free */
        BSON_APPEND_INT32(&doc, "ping", 1);
        return &doc;
}

/* Creates the private world for test `what`; with log_append_time its
 * topics use message.timestamp.type=LogAppendTime (the broker's append time
 * is then each message's timestamp). Returns 0 or -1. */
int su_init_ex(su_ctx_t *c, const char *what, int log_append_time)
{
        bson_error_t e;
        par_error_t err;

        memset(c, 0, sizeof(*c));
        c->log_append_time = log_append_time;
        mongoc_init();
        snprintf(c->name, sizeof(c->name), "pt_%s_%d_%lld", what, (int)getpid(),
                 (long long)(par_clock_wall_ms() / 1000 % 100000));
        c->mongo_uri =
            tu_env("PARALLEL_TEST_MONGO_URI", "mongodb://127.0.0.1:27017");
        c->kafka = tu_env("PARALLEL_TEST_KAFKA", "127.0.0.1:9092");
        snprintf(c->bin, sizeof(c->bin), "%s/parallel-producer",
                 tu_env("PARALLEL_BINARY_DIR", "."));
        snprintf(c->logdir, sizeof(c->logdir), "%s",
                 tu_env("PARALLEL_BINARY_DIR", "/tmp"));
        c->client = mongoc_client_new(c->mongo_uri);
        if (!c->client)
                return -1;
        c->signals =
            mongoc_client_get_collection(c->client, c->name, "signals");
        if (!mongoc_client_command_simple(c->client, "admin", tmp_bson_ping(),
                                          NULL, NULL, &e)) {
                fprintf(stderr, "stack_util: MongoDB at %s: %s\n", c->mongo_uri,
                        e.message);
                return -1;
        }
        if (par_codec_new(&c->codec, &err)) {
                fprintf(stderr, "stack_util: codec: %s\n", err.msg);
                return -1;
        }
        if (su_admin(c, 1))
                return -1;
        fprintf(stderr, "stack_util: world %s (mongo %s, kafka %s)\n", c->name,
                c->mongo_uri, c->kafka);
        return 0;
}

int su_init(su_ctx_t *c, const char *what)
{
        return su_init_ex(c, what, 0);
}

void su_cleanup(su_ctx_t *c)
{
        mongoc_database_t *db;

        if (c->client) {
                db = mongoc_client_get_database(c->client, c->name);
                mongoc_database_drop(db, NULL);
                mongoc_database_destroy(db);
        }
        if (c->codec)
                su_admin(c, 0);
        if (c->signals)
                mongoc_collection_destroy(c->signals);
        if (c->client)
                mongoc_client_destroy(c->client);
        par_codec_destroy(c->codec);
}

/*
 * Spawns the producer for this world with -X options (NULL-terminated list
 * of "key=value"), HTTP on an ephemeral port, output to <logdir>/<tag>.log.
 * Waits (up to 15 s) for its "started" line to learn the port.
 */
int su_producer_start(su_ctx_t *c, su_proc_t *p, const char *tag, ...)
{
        char *argv[64], xs[16][160];
        int n = 0, k = 0;
        va_list ap;
        double deadline;

        memset(p, 0, sizeof(*p));
        snprintf(p->log, sizeof(p->log), "%s/%s-%s.log", c->logdir, c->name,
                 tag);
        argv[n++] = c->bin;
#define SU_X(...)                                                              \
        do {                                                                   \
                snprintf(xs[k], sizeof(xs[k]), __VA_ARGS__);                   \
                argv[n++] = "-X";                                              \
                argv[n++] = xs[k++];                                           \
        } while (0)
        SU_X("mongo.uri=%s", c->mongo_uri);
        SU_X("mongo.database=%s", c->name);
        SU_X("kafka.bootstrap.servers=%s", c->kafka);
        SU_X("topic.prefix=%s", c->name);
        SU_X("producer.http.listen=127.0.0.1:0");
        va_start(ap, tag);
        for (const char *x; (x = va_arg(ap, const char *)) && k < 16;)
                SU_X("%s", x);
        va_end(ap);
#undef SU_X
        argv[n] = NULL;
        p->pid = fork();
        if (p->pid < 0)
                return -1;
        if (p->pid == 0) {
                FILE *f = freopen(p->log, "a", stderr);
                (void)f;
                dup2(2, 1);
                execv(c->bin, argv);
                _exit(127);
        }
        deadline = par_clock_mono_s() + 15;
        while (par_clock_mono_s() < deadline && !p->port) {
                FILE *f = fopen(p->log, "r");
                char line[1024];
                while (f && fgets(line, sizeof(line), f)) {
                        char *s = strstr(line, "event=started");
                        char *q = s ? strstr(s, " port=") : NULL;
                        if (q)
                                p->port = atoi(q + 6);
                }
                if (f)
                        fclose(f);
                if (!p->port)
                        par_clock_sleep_ms(50);
        }
        return p->port ? 0 : -1;
}

/* Waits up to timeout_s for a log line containing what; 0 when found. */
int su_wait_log(const su_proc_t *p, const char *what, double timeout_s)
{
        double deadline = par_clock_mono_s() + timeout_s;
        char line[2048];

        for (;;) {
                FILE *f = fopen(p->log, "r");
                int found = 0;
                while (f && !found && fgets(line, sizeof(line), f))
                        found = strstr(line, what) != NULL;
                if (f)
                        fclose(f);
                if (found)
                        return 0;
                if (par_clock_mono_s() >= deadline)
                        return -1;
                par_clock_sleep_ms(50);
        }
}

/* Sends sig and waits up to timeout_s; returns the exit status (or 128 +
 * signal), -1 on timeout (then SIGKILLs it). */
int su_producer_stop(su_proc_t *p, int sig, double timeout_s)
{
        double deadline = par_clock_mono_s() + timeout_s;
        int st;

        if (p->pid <= 0)
                return -1;
        kill(p->pid, sig);
        while (par_clock_mono_s() < deadline) {
                pid_t r = waitpid(p->pid, &st, WNOHANG);
                if (r == p->pid) {
                        p->pid = 0;
                        return WIFEXITED(st) ? WEXITSTATUS(st)
                                             : 128 + WTERMSIG(st);
                }
                par_clock_sleep_ms(20);
        }
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &st, 0);
        p->pid = 0;
        return -1;
}

/* GETs path from a local HTTP port (a producer's or a node's) into buf,
 * cut to n - 1 bytes; returns the status, 0 when nothing answered in 2 s. */
int su_http_get(int port, const char *path, char *buf, size_t n)
{
        char endpoint[32];
        par_httpc_reply_t r;
        int status;

        buf[0] = '\0';
        snprintf(endpoint, sizeof(endpoint), "127.0.0.1:%d", port);
        if (par_httpc_get(endpoint, path, 2000, &r, NULL))
                return 0;
        snprintf(buf, n, "%s", r.body);
        status = r.status;
        par_httpc_reply_free(&r);
        return status;
}

/* A metric's value from /metrics, or -1. */
double su_metric(int port, const char *name)
{
        static char buf[1 << 18];
        char *s;
        size_t l = strlen(name);

        if (su_http_get(port, "/metrics", buf, sizeof(buf)) != 200)
                return -1;
        for (s = buf; (s = strstr(s, name));) {
                if ((s == buf || s[-1] == '\n') && s[l] == ' ')
                        return atof(s + l + 1);
                s += l;
        }
        return -1;
}

/* The sum of every series whose text starts with `prefix`, or -1. */
double su_metric_sum(int port, const char *prefix)
{
        static char buf[1 << 18];
        size_t l = strlen(prefix);
        double sum = 0;
        int found = 0;

        if (su_http_get(port, "/metrics", buf, sizeof(buf)) != 200)
                return -1;
        for (char *s = buf; s && *s;) {
                char *eol = strchr(s, '\n');
                if (!strncmp(s, prefix, l)) {
                        char *sp = eol ? eol : s + strlen(s);
                        while (sp > s && sp[-1] != ' ')
                                sp--;
                        sum += atof(sp);
                        found = 1;
                }
                s = eol ? eol + 1 : NULL;
        }
        return found ? sum : -1;
}

/* 1 active, 0 standby, -1 unreachable. */
int su_active(int port)
{
        char buf[1024];
        if (su_http_get(port, "/health", buf, sizeof(buf)) <= 0)
                return -1;
        return strstr(buf, "\"role\":\"active\"") ? 1 : 0;
}

int su_ledger_init(su_ledger_t *l, size_t cap, int nres)
{
        memset(l, 0, sizeof(*l));
        l->cap = cap;
        l->e = calloc(cap, sizeof(*l->e));
        for (l->nslots = 1; l->nslots < cap * 2; l->nslots <<= 1)
                ;
        l->slots = calloc(l->nslots, sizeof(size_t));
        l->nres = nres;
        l->last_idx = calloc(((size_t)nres + 1) * 5, sizeof(size_t));
        pthread_mutex_init(&l->lock, NULL);
        return l->e && l->slots && l->last_idx ? 0 : -1;
}

void su_ledger_free(su_ledger_t *l)
{
        free(l->e);
        free(l->slots);
        free(l->last_idx);
        pthread_mutex_destroy(&l->lock);
}

static size_t su_hash(const char *id)
{
        size_t h = 1469598103934665603ULL;
        for (; *id; id++)
                h = (h ^ (unsigned char)*id) * 1099511628211ULL;
        return h;
}

/* Thread-safe. */
su_entry_t *su_ledger_add(su_ledger_t *l, const char *id, int priority,
                          int resource)
{
        su_entry_t *e = NULL;
        pthread_mutex_lock(&l->lock);
        if (l->n < l->cap) {
                size_t h = su_hash(id) & (l->nslots - 1);
                e = &l->e[l->n];
                snprintf(e->id, sizeof(e->id), "%s", id);
                e->priority = priority;
                e->resource = resource;
                e->idx = ++l->n;
                while (l->slots[h])
                        h = (h + 1) & (l->nslots - 1);
                l->slots[h] = l->n;
        }
        pthread_mutex_unlock(&l->lock);
        return e;
}

su_entry_t *su_ledger_find(su_ledger_t *l, const char *id)
{
        su_entry_t *e = NULL;
        pthread_mutex_lock(&l->lock);
        for (size_t h = su_hash(id) & (l->nslots - 1); l->slots[h];
             h = (h + 1) & (l->nslots - 1))
                if (!strcmp(l->e[l->slots[h] - 1].id, id)) {
                        e = &l->e[l->slots[h] - 1];
                        break;
                }
        pthread_mutex_unlock(&l->lock);
        return e;
}

su_tally_t su_ledger_tally(su_ledger_t *l)
{
        su_tally_t t = {0};
        pthread_mutex_lock(&l->lock);
        t.inserted = l->n;
        for (size_t i = 0; i < l->n; i++) {
                if (!l->e[i].seen)
                        t.missing++;
                else
                        t.duplicates += (size_t)l->e[i].seen - 1;
                t.bad_topic += (size_t)l->e[i].bad_topic;
                t.bad_key += (size_t)l->e[i].bad_key;
        }
        pthread_mutex_unlock(&l->lock);
        return t;
}

/* Builds one valid pending signal document. */
void su_signal_doc(bson_t *d, bson_oid_t *oid, int priority, int resource,
                   const char *recipe)
{
        char res[32];
        bson_t params;

        bson_oid_init(oid, NULL);
        BSON_APPEND_OID(d, "_id", oid);
        BSON_APPEND_INT32(d, "priority", priority);
        BSON_APPEND_UTF8(d, "recipe", recipe);
        if (resource >= 0) {
                snprintf(res, sizeof(res), "res-%d", resource);
                BSON_APPEND_UTF8(d, "resource", res);
        }
        BSON_APPEND_DOCUMENT_BEGIN(d, "params", &params);
        BSON_APPEND_UTF8(&params, "n", "1");
        bson_append_document_end(d, &params);
        BSON_APPEND_DATE_TIME(d, "created_at", par_clock_wall_ms());
        BSON_APPEND_UTF8(d, "status", "pending");
}

/*
 * Inserts n valid signals in bulks of `batch` (priority 1 + i % 4, resource
 * i % nres), recording each in the ledger. Uses its own client when called
 * from another thread (pass a collection from that client). Returns the
 * number inserted.
 */
size_t su_insert(mongoc_collection_t *coll, su_ledger_t *l, size_t n, int nres,
                 size_t batch, int pause_ms)
{
        size_t done = 0;

        while (done < n) {
                bson_t opts = BSON_INITIALIZER, reply;
                mongoc_bulk_operation_t *b;
                bson_error_t e;
                size_t k = n - done < batch ? n - done : batch;

                BSON_APPEND_BOOL(&opts, "ordered", true);
                b = mongoc_collection_create_bulk_operation_with_opts(coll,
                                                                      &opts);
                for (size_t i = 0; i < k; i++) {
                        bson_t d = BSON_INITIALIZER;
                        bson_oid_t oid;
                        char id[25];
                        size_t g = l->n;
                        int prio = 1 + (int)(g % 4);
                        int res = (int)(g % (size_t)nres);
                        su_signal_doc(&d, &oid, prio, res, "noop");
                        bson_oid_to_string(&oid, id);
                        su_ledger_add(l, id, prio, res);
                        mongoc_bulk_operation_insert(b, &d);
                        bson_destroy(&d);
                }
                if (!mongoc_bulk_operation_execute(b, &reply, &e)) {
                        fprintf(stderr, "stack_util: insert: %s\n", e.message);
                        bson_destroy(&reply);
                        mongoc_bulk_operation_destroy(b);
                        bson_destroy(&opts);
                        break;
                }
                bson_destroy(&reply);
                mongoc_bulk_operation_destroy(b);
                bson_destroy(&opts);
                done += k;
                if (pause_ms)
                        par_clock_sleep_ms(pause_ms);
        }
        return done;
}

static void *su_inserter_main(void *arg)
{
        su_inserter_t *in = arg;
        mongoc_client_t *c = mongoc_client_new(in->ctx->mongo_uri);
        mongoc_collection_t *coll =
            mongoc_client_get_collection(c, in->ctx->name, "signals");

        in->done = su_insert(coll, in->ledger, in->n, in->nres, in->batch,
                             in->pause_ms);
        mongoc_collection_destroy(coll);
        mongoc_client_destroy(c);
        return NULL;
}

int su_insert_start(su_inserter_t *in, const su_ctx_t *c, su_ledger_t *l,
                    size_t n, int nres, size_t batch, int pause_ms)
{
        *in = (su_inserter_t){.ctx = c,
                              .ledger = l,
                              .n = n,
                              .batch = batch,
                              .nres = nres,
                              .pause_ms = pause_ms};
        return pthread_create(&in->th, NULL, su_inserter_main, in);
}

size_t su_insert_join(su_inserter_t *in)
{
        pthread_join(in->th, NULL);
        return in->done;
}

/* Assigns every partition of the world's signal topics (and the DLQ when
 * dlq) from the beginning. */
int su_reader_new(su_ctx_t *c, su_reader_t *r, int dlq)
{
        char es[512], name[128];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_topic_partition_list_t *tp;

        rd_kafka_conf_set(conf, "bootstrap.servers", c->kafka, es, sizeof(es));
        rd_kafka_conf_set(conf, "group.id", c->name, es, sizeof(es));
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", es, sizeof(es));
        r->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, es, sizeof(es));
        if (!r->rk)
                return -1;
        tp = rd_kafka_topic_partition_list_new(20);
        for (int p = 1; p <= 4 + (dlq ? 1 : 0); p++) {
                if (p <= 4)
                        snprintf(name, sizeof(name), "%s.signals.p%d", c->name,
                                 p);
                else
                        snprintf(name, sizeof(name), "%s.dlq", c->name);
                for (int part = 0; part < SU_PARTITIONS; part++)
                        rd_kafka_topic_partition_list_add(tp, name, part)
                            ->offset = RD_KAFKA_OFFSET_BEGINNING;
        }
        rd_kafka_assign(r->rk, tp);
        rd_kafka_topic_partition_list_destroy(tp);
        return 0;
}

void su_reader_destroy(su_reader_t *r)
{
        if (r->rk) {
                rd_kafka_consumer_close(r->rk);
                rd_kafka_destroy(r->rk);
        }
}

/* Accounts one signal message against the ledger. */
static void su_account(su_ctx_t *c, su_ledger_t *l, const rd_kafka_message_t *m,
                       json_t *v)
{
        const char *id = json_string_value(json_object_get(v, "id"));
        const char *res = json_string_value(json_object_get(v, "resource"));
        int prio = (int)json_integer_value(json_object_get(v, "priority"));
        su_entry_t *e = id ? su_ledger_find(l, id) : NULL;
        char want_topic[128], want_key[32];
        const char *topic = rd_kafka_topic_name(m->rkt);

        l->read++;
        if (!e) {
                l->unknown++;
                return;
        }
        e->seen++;
        snprintf(want_topic, sizeof(want_topic), "%s.signals.p%d", c->name,
                 e->priority);
        if (strcmp(topic, want_topic) || prio != e->priority)
                e->bad_topic++;
        snprintf(want_key, sizeof(want_key), "res-%d", e->resource);
        if (!res || strcmp(res, want_key) || m->key_len != strlen(want_key) ||
            memcmp(m->key, want_key, m->key_len))
                e->bad_key++;
        /* Per-resource order within a topic (Kafka orders a partition,
         * and a resource's signals of one priority share one): a first
         * sighting must come after every earlier-inserted signal of its
         * resource and priority already read. */
        if (e->seen == 1 && e->priority >= 1 && e->priority <= 4) {
                size_t k = (size_t)e->resource * 5 + (size_t)e->priority;
                if (e->idx < l->last_idx[k])
                        l->out_of_order++;
                else
                        l->last_idx[k] = e->idx;
        }
}

/*
 * Reads until every ledger entry has been seen and `settle_ms` passed with
 * nothing new, or until timeout_s. Checks headers on every signal: a
 * traceparent and a signal-id equal to the value's id (bad ones counted in
 * *bad_headers). Returns the number of messages read.
 */
long su_read(su_ctx_t *c, su_reader_t *r, su_ledger_t *l, double timeout_s,
             int settle_ms, long *bad_headers, su_dlq_fn on_dlq, void *opaque)
{
        double deadline = par_clock_mono_s() + timeout_s,
               last_new = par_clock_mono_s();
        long n = 0;

        while (par_clock_mono_s() < deadline) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(r->rk, 100);
                if (!m) {
                        su_tally_t t = su_ledger_tally(l);
                        if (!t.missing &&
                            (par_clock_mono_s() - last_new) * 1000 > settle_ms)
                                break;
                        continue;
                }
                if (!m->err) {
                        json_t *v = NULL;
                        const char *schema = NULL;
                        par_error_t err;
                        n++;
                        last_new = par_clock_mono_s();
                        if (par_codec_decode(c->codec, m->payload, m->len, NULL,
                                             &v, &schema, &err)) {
                                fprintf(stderr,
                                        "stack_util: undecodable "
                                        "message: %s\n",
                                        err.msg);
                                (*bad_headers)++;
                        } else if (!strcmp(schema, PAR_SCHEMA_SIGNAL)) {
                                rd_kafka_headers_t *h = NULL;
                                const void *hv;
                                size_t hl;
                                const char *id =
                                    json_string_value(json_object_get(v, "id"));
                                if (rd_kafka_message_headers(m, &h) ||
                                    rd_kafka_header_get_last(h, "traceparent",
                                                             &hv, &hl) ||
                                    hl != 55 ||
                                    rd_kafka_header_get_last(h, "signal-id",
                                                             &hv, &hl) ||
                                    !id || hl != strlen(id) ||
                                    memcmp(hv, id, hl))
                                        (*bad_headers)++;
                                su_account(c, l, m, v);
                        } else if (on_dlq) {
                                on_dlq(opaque, v, m);
                        }
                        json_decref(v);
                }
                rd_kafka_message_destroy(m);
        }
        return n;
}

int su_setup(su_ctx_t *c, const char *what)
{
        if (su_init(c, what)) {
                fprintf(stderr, "FAIL: the stack is not reachable "
                                "(deploy/dev/stack up)\n");
                return -1;
        }
        return 0;
}
