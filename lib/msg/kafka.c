/*
 * kafka.c — librdkafka configuration, topic names and traceparent helpers
 * (see kafka.h).
 *
 * The traceparent parser is hand-written because it is a fixed 55-character
 * format with a handful of validity rules (W3C Trace Context §3.2); no
 * library we link parses it.
 */
#include "msg/kafka.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "base/log.h"

/* ------------------------------------------------------------ rd_kafka_conf */

/* librdkafka log levels are syslog levels. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf)
{
        par_log_level_t l = level <= 3   ? PAR_LOG_ERROR
                            : level <= 4 ? PAR_LOG_WARN
                            : level <= 6 ? PAR_LOG_INFO
                                         : PAR_LOG_DEBUG;
        if (par_log_enabled(l))
                par_log(l, "kafka", "log", "client=%s fac=%s msg=\"%s\"",
                        rk ? rd_kafka_name(rk) : "-", fac, buf);
}

static _Atomic uint64_t client_errors;

/* Client-level errors (all brokers down, authentication, fatal idempotence
 * errors…): librdkafka would log them itself without an error_cb; this one
 * logs them the same way and counts them for parallel_kafka_errors_total.
 * Runs on whatever thread polls the handle. */
static void error_cb(rd_kafka_t *rk, int code, const char *reason, void *opaque)
{
        (void)opaque;
        par_kafka_client_error_seen();
        par_log(code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ||
                        code == RD_KAFKA_RESP_ERR__FATAL
                    ? PAR_LOG_ERROR
                    : PAR_LOG_WARN,
                "kafka", "error", "client=%s code=%s msg=\"%s\"",
                rk ? rd_kafka_name(rk) : "-", rd_kafka_err2name(code), reason);
}

void par_kafka_client_error_seen(void)
{
        atomic_fetch_add_explicit(&client_errors, 1, memory_order_relaxed);
}

uint64_t par_kafka_client_errors(void)
{
        return atomic_load_explicit(&client_errors, memory_order_relaxed);
}

typedef struct apply_ctx {
        rd_kafka_conf_t *conf;
        par_error_t *err;
} apply_ctx_t;

static int apply_one(const char *key, const char *value, void *opaque)
{
        apply_ctx_t *a = opaque;
        char errstr[256];

        if (rd_kafka_conf_set(a->conf, key, value, errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
                /* librdkafka's message may omit the value; add it unless
                 * the key names a secret (the message may be logged). */
                bool secret = par_config_key_secret(key);
                if (secret || !strstr(errstr, "Invalid value") ||
                    strstr(errstr, value))
                        par_error_set(a->err, PAR_ERR_INVALID, "kafka.%s: %s",
                                      key, errstr);
                else
                        par_error_set(a->err, PAR_ERR_INVALID,
                                      "kafka.%s: %s (got '%.40s')", key, errstr,
                                      value);
                return 1;
        }
        return 0;
}

par_err_t par_kafka_conf_new(rd_kafka_conf_t **out, const par_config_t *cfg,
                             const char *client_id, par_error_t *err)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        apply_ctx_t a = {conf, err};
        char errstr[256];

        if (!conf)
                return par_error_set(err, PAR_ERR_NOMEM,
                                     "kafka: out of memory");
        if (rd_kafka_conf_set(conf, "bootstrap.servers",
                              PAR_KAFKA_DEFAULT_BOOTSTRAP, errstr,
                              sizeof(errstr)) != RD_KAFKA_CONF_OK ||
            (client_id &&
             rd_kafka_conf_set(conf, "client.id", client_id, errstr,
                               sizeof(errstr)) != RD_KAFKA_CONF_OK)) {
                rd_kafka_conf_destroy(conf);
                return par_error_set(err, PAR_ERR_INVALID, "kafka: %s", errstr);
        }
        rd_kafka_conf_set_log_cb(conf, log_cb);
        rd_kafka_conf_set_error_cb(conf, error_cb);
        if (cfg) {
                /* Clients agree with the topics on the largest message
                 * (a kafka.message.max.bytes below still overrides). */
                char lim[32];
                snprintf(
                    lim, sizeof(lim), "%lld",
                    (long long)par_config_int(cfg, "topics.message.max.bytes"));
                rd_kafka_conf_set(conf, "message.max.bytes", lim, errstr,
                                  sizeof(errstr));
        }
        if (cfg && par_config_foreach_kafka(cfg, apply_one, &a)) {
                rd_kafka_conf_destroy(conf);
                return err ? err->code : PAR_ERR_INVALID;
        }
        *out = conf;
        return PAR_OK;
}

/* ------------------------------------------------------------ message sizes */

size_t par_kafka_message_max(const par_config_t *cfg)
{
        int64_t lim = par_config_int(cfg, "topics.message.max.bytes");
        const char *own = NULL;

        own = par_config_kafka_get(cfg, "message.max.bytes");
        if (own && *own) {
                long long v = atoll(own);
                if (v > 0 && v < lim)
                        lim = v;
        }
        return (size_t)lim;
}

size_t par_kafka_value_max_of(size_t m)
{
        return m > PAR_KAFKA_MESSAGE_OVERHEAD * 2
                   ? m - PAR_KAFKA_MESSAGE_OVERHEAD
                   : m / 2;
}

size_t par_kafka_value_max(const par_config_t *cfg)
{
        return par_kafka_value_max_of(par_kafka_message_max(cfg));
}

par_err_t par_kafka_check_sizes(const par_config_t *cfg, par_error_t *err)
{
        int64_t params = par_config_int(cfg, "signal.max_params_bytes");
        size_t room = par_kafka_value_max(cfg);

        if ((size_t)params + PAR_KAFKA_SIGNAL_OVERHEAD > room)
                return par_error_set(
                    err, PAR_ERR_INVALID,
                    "signal.max_params_bytes: %lld does not fit in a message: "
                    "topics.message.max.bytes (or kafka.message.max.bytes) "
                    "allows values up to %zu bytes, and a Signal needs %d "
                    "more; lower it to at most %lld or raise the topic limit",
                    (long long)params, room, PAR_KAFKA_SIGNAL_OVERHEAD,
                    (long long)(room > PAR_KAFKA_SIGNAL_OVERHEAD
                                    ? room - PAR_KAFKA_SIGNAL_OVERHEAD
                                    : 0));
        return PAR_OK;
}

/* ------------------------------------------------------------ topic names */

char *par_kafka_topic_name(const par_config_t *cfg, const char *suffix,
                           char *buf, size_t n)
{
        int len;

        if (!suffix || !*suffix || !buf || !n)
                return NULL;
        len = snprintf(buf, n, "%s.%s", par_config_str(cfg, "topic.prefix"),
                       suffix);
        if (len < 0 || (size_t)len >= n || len > PAR_KAFKA_TOPIC_MAX - 1)
                return NULL;
        return buf;
}

char *par_kafka_signal_topic(const par_config_t *cfg, int priority, char *buf,
                             size_t n)
{
        char suffix[32];

        if (priority < 1 || priority > par_config_int(cfg, "priority.levels"))
                return NULL;
        snprintf(suffix, sizeof(suffix), "signals.p%d", priority);
        return par_kafka_topic_name(cfg, suffix, buf, n);
}

/* ---------------------------------------------------------- trace context */

static bool all_zero(const uint8_t *p, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (p[i])
                        return false;
        return true;
}

/* Random bytes, never all zero (an all-zero id is invalid). */
static void random_id(uint8_t *p, size_t n)
{
        do {
                size_t got = 0;
                while (got < n) {
                        ssize_t r = getrandom(p + got, n - got, 0);
                        if (r > 0)
                                got += (size_t)r;
                }
        } while (all_zero(p, n));
}

void par_kafka_trace_root(par_trace_t *out)
{
        random_id(out->trace_id, sizeof(out->trace_id));
        random_id(out->span_id, sizeof(out->span_id));
        out->flags = 0x01;
}

void par_kafka_trace_child(const par_trace_t *parent, par_trace_t *out)
{
        par_trace_t t = *parent;

        random_id(t.span_id, sizeof(t.span_id));
        *out = t;
}

static char *put_hex(char *p, const uint8_t *b, size_t n)
{
        static const char hex[] = "0123456789abcdef";

        for (size_t i = 0; i < n; i++) {
                *p++ = hex[b[i] >> 4];
                *p++ = hex[b[i] & 15];
        }
        return p;
}

char *par_kafka_trace_format(const par_trace_t *t,
                             char buf[PAR_TRACEPARENT_LEN + 1])
{
        char *p = buf;

        *p++ = '0';
        *p++ = '0';
        *p++ = '-';
        p = put_hex(p, t->trace_id, sizeof(t->trace_id));
        *p++ = '-';
        p = put_hex(p, t->span_id, sizeof(t->span_id));
        *p++ = '-';
        p = put_hex(p, &t->flags, 1);
        *p = '\0';
        return buf;
}

static int hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1; /* uppercase is invalid per the spec */
}

static bool get_hex(const char *s, uint8_t *out, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return false;
                out[i] = (uint8_t)(hi << 4 | lo);
        }
        return true;
}

par_err_t par_kafka_trace_parse(const char *s, size_t len, par_trace_t *out,
                                par_error_t *err)
{
        par_trace_t t;
        uint8_t version;

        if (!s || len < PAR_TRACEPARENT_LEN)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "traceparent: %zu characters, want %d",
                                     s ? len : 0, PAR_TRACEPARENT_LEN);
        if (!get_hex(s, &version, 1))
                return par_error_set(err, PAR_ERR_INVALID,
                                     "traceparent: version is not 2 "
                                     "lowercase hex digits");
        if (version == 0xff)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "traceparent: version ff is invalid");
        if (version == 0 && len != PAR_TRACEPARENT_LEN)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "traceparent: version 00 has %d "
                                     "characters, got %zu",
                                     PAR_TRACEPARENT_LEN, len);
        if (len > PAR_TRACEPARENT_LEN && s[PAR_TRACEPARENT_LEN] != '-')
                return par_error_set(err, PAR_ERR_INVALID,
                                     "traceparent: junk after the flags");
        if (s[2] != '-' || s[35] != '-' || s[52] != '-')
                return par_error_set(err, PAR_ERR_INVALID,
                                     "traceparent: fields must be separated "
                                     "by '-' at 2, 35 and 52");
        if (!get_hex(s + 3, t.trace_id, 16))
                return par_error_set(err, PAR_ERR_INVALID,
                                     "traceparent: trace-id is not 32 "
                                     "lowercase hex digits");
        if (!get_hex(s + 36, t.span_id, 8))
                return par_error_set(err, PAR_ERR_INVALID,
                                     "traceparent: parent-id is not 16 "
                                     "lowercase hex digits");
        if (!get_hex(s + 53, &t.flags, 1))
                return par_error_set(err, PAR_ERR_INVALID,
                                     "traceparent: flags are not 2 "
                                     "lowercase hex digits");
        if (all_zero(t.trace_id, 16))
                return par_error_set(err, PAR_ERR_INVALID,
                                     "traceparent: trace-id is all zero");
        if (all_zero(t.span_id, 8))
                return par_error_set(err, PAR_ERR_INVALID,
                                     "traceparent: parent-id is all zero");
        *out = t;
        return PAR_OK;
}

par_err_t par_kafka_trace_to_headers(rd_kafka_headers_t *hdrs,
                                     const par_trace_t *t, par_error_t *err)
{
        char buf[PAR_TRACEPARENT_LEN + 1];
        rd_kafka_resp_err_t e;

        par_kafka_trace_format(t, buf);
        e = rd_kafka_header_add(hdrs, PAR_TRACEPARENT_HEADER, -1, buf,
                                PAR_TRACEPARENT_LEN);
        if (e)
                return par_error_set(err, PAR_ERR_KAFKA,
                                     "traceparent header: %s",
                                     rd_kafka_err2str(e));
        return PAR_OK;
}

par_err_t par_kafka_trace_from_message(const rd_kafka_message_t *msg,
                                       par_trace_t *out, par_error_t *err)
{
        rd_kafka_headers_t *hdrs = NULL;
        const void *val = NULL;
        size_t size = 0;

        if (rd_kafka_message_headers(msg, &hdrs) || !hdrs ||
            rd_kafka_header_get_last(hdrs, PAR_TRACEPARENT_HEADER, &val,
                                     &size) ||
            !val)
                return par_error_set(err, PAR_ERR_NOTFOUND,
                                     "message has no traceparent header");
        return par_kafka_trace_parse(val, size, out, err);
}
