/*
 * cdp.c — CDP client: one libwebsockets context + one I/O thread per socket.
 *
 * Why this shape: lws is single-threaded per context, so the socket belongs
 * to the I/O thread alone. Callers never touch lws except through
 * lws_cancel_service(), the one call lws allows from other threads: a
 * caller queues its request under c->mu, wakes the loop, and blocks on its
 * own condition variable (a stack-allocated `struct pending`) until the I/O
 * thread files the reply, the deadline passes or the socket dies. Keeping
 * the pending entry on the caller's stack and unlinking it under the lock
 * before returning means a timed-out call leaves nothing behind; a late
 * reply finds no entry and is dropped.
 *
 * Messages of any size: incoming fragments are appended to one growing
 * buffer until lws says the message is complete; outgoing messages are sent
 * in 256 KiB WebSocket fragments, one per WRITEABLE callback, writing each
 * fragment in place (the bytes before it, already sent, serve as the
 * LWS_PRE headroom lws needs).
 *
 * Events go to subscriptions (callbacks on the I/O thread, under sub_mu so
 * unsubscribe can guarantee the callback is not running) and to waiters
 * (queues under mu, one condition variable each).
 */
#include "base/clock.h"
#include "net/httpc.h"
#include "net/lws.h"
#include "browser/cdp.h"

#include <ctype.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "base/log.h"
#include "base/text.h"

#define CDP_RX_BUFFER          (1024 * 1024)
#define CDP_TX_FRAGMENT        (256 * 1024)
#define CDP_DEFAULT_TIMEOUT_MS 30000
#define CDP_MAX_SESSIONS       4096

/* A call waiting for its reply; lives on the caller's stack. */
struct pending {
        int64_t id;
        char *session; /* NULL = browser */
        const char *method;
        pthread_cond_t cond;
        bool done;
        par_err_t code;
        char msg[256];
        json_t *result;
        struct pending *next;
};

/* One outgoing text message: [LWS_PRE headroom][payload]. */
struct outmsg {
        unsigned char *buf;
        size_t len;
        size_t off;
        struct outmsg *next;
};

/* What we know about a flattened session. */
struct session {
        char *id;
        char *target_id;
        bool dead;
        char why[96];
        struct session *next;
};

struct evnode {
        json_t *event;
        struct evnode *next;
};

struct par_cdp_waiter {
        par_cdp_t *c;
        char *session;  /* NULL = browser level */
        char **methods; /* NULL-terminated, NULL = any */
        pthread_cond_t cond;
        struct evnode *head, *tail;
        size_t count;
        bool dead;
        char why[128];
        struct par_cdp_waiter *next;
};

struct sub {
        int id;
        char *session; /* NULL = any, "" = browser */
        char *method;  /* NULL = any */
        par_cdp_event_cb cb;
        void *opaque;
        struct sub *next;
};

struct par_cdp {
        char url[512];
        struct lws_context *ctx;
        struct lws *wsi; /* I/O thread only (and connect before start) */
        pthread_t thread;
        bool thread_started;

        pthread_mutex_t mu; /* everything below except subs */
        pthread_cond_t state_cond;
        bool established;
        bool closed;
        bool stop;
        char close_why[160];
        int64_t next_id;
        struct pending *pending;
        struct outmsg *out_head, *out_tail;
        struct session *sessions;
        int nsessions;
        struct par_cdp_waiter *waiters;

        /* rx reassembly, I/O thread only */
        unsigned char *rx;
        size_t rx_len, rx_cap;

        pthread_mutex_t sub_mu;
        struct sub *subs;
        int next_sub_id;
};

/* ---- small helpers ---------------------------------------------------- */

static bool is_browser(const char *s)
{
        return !s || !*s;
}

static bool same_session(const char *a, const char *b)
{
        if (is_browser(a) || is_browser(b))
                return is_browser(a) && is_browser(b);
        return !strcmp(a, b);
}

/* mu held */
static struct session *session_find(par_cdp_t *c, const char *id)
{
        for (struct session *s = c->sessions; s; s = s->next)
                if (!strcmp(s->id, id))
                        return s;
        return NULL;
}

static void session_free(struct session *s)
{
        free(s->id);
        free(s->target_id);
        free(s);
}

/* mu held. Records sid ↔ target. Bounded: the oldest entries go first. */
static void session_note(par_cdp_t *c, const char *sid, const char *target)
{
        struct session *s = session_find(c, sid);
        if (!s) {
                s = calloc(1, sizeof(*s));
                if (!s || !(s->id = strdup(sid))) {
                        free(s);
                        return;
                }
                s->next = c->sessions;
                c->sessions = s;
                if (++c->nsessions > CDP_MAX_SESSIONS) {
                        struct session **pp = &c->sessions;
                        while ((*pp)->next)
                                pp = &(*pp)->next;
                        session_free(*pp);
                        *pp = NULL;
                        c->nsessions--;
                }
        }
        if (target && !s->target_id)
                s->target_id = strdup(target);
}

static void pending_fail(struct pending *p, par_err_t code, const char *msg)
{
        p->done = true;
        p->code = code;
        snprintf(p->msg, sizeof(p->msg), "%s: %s", p->method, msg);
        pthread_cond_signal(&p->cond);
}

/* mu held. Fails calls and wakes waiters of one session. */
static void session_kill(par_cdp_t *c, const char *sid, const char *why)
{
        struct session *s = session_find(c, sid);
        if (!s) {
                session_note(c, sid, NULL);
                s = session_find(c, sid);
        }
        if (s) {
                if (s->dead)
                        return;
                s->dead = true;
                snprintf(s->why, sizeof(s->why), "%s", why);
        }
        PAR_DEBUG("cdp", "session_dead", "session=%s why=%s", sid, why);
        for (struct pending **pp = &c->pending; *pp;) {
                struct pending *p = *pp;
                if (p->session && !strcmp(p->session, sid)) {
                        *pp = p->next;
                        pending_fail(p, PAR_ERR_DISCONNECTED, why);
                } else {
                        pp = &p->next;
                }
        }
        for (struct par_cdp_waiter *w = c->waiters; w; w = w->next) {
                if (w->session && !strcmp(w->session, sid) && !w->dead) {
                        w->dead = true;
                        snprintf(w->why, sizeof(w->why), "session %s: %s", sid,
                                 why);
                        pthread_cond_signal(&w->cond);
                }
        }
}

/* mu held. The socket is gone: fail everything at once. */
static void conn_closed(par_cdp_t *c, const char *why)
{
        if (!c->closed) {
                c->closed = true;
                snprintf(c->close_why, sizeof(c->close_why), "%s", why);
                /* Callers get the failure as an error; this line is for
                 * the timeline only. */
                par_log(c->stop ? PAR_LOG_DEBUG : PAR_LOG_INFO, "cdp", "closed",
                        "url=%s why=\"%s\"", c->url, why);
        }
        while (c->pending) {
                struct pending *p = c->pending;
                c->pending = p->next;
                pending_fail(p, PAR_ERR_DISCONNECTED, c->close_why);
        }
        while (c->out_head) {
                struct outmsg *m = c->out_head;
                c->out_head = m->next;
                free(m->buf);
                free(m);
        }
        c->out_tail = NULL;
        for (struct par_cdp_waiter *w = c->waiters; w; w = w->next) {
                if (!w->dead) {
                        w->dead = true;
                        snprintf(w->why, sizeof(w->why), "%.120s",
                                 c->close_why);
                        pthread_cond_signal(&w->cond);
                }
        }
        pthread_cond_broadcast(&c->state_cond);
}

static bool waiter_wants(struct par_cdp_waiter *w, const char *sid,
                         const char *method)
{
        if (!same_session(w->session, sid))
                return false;
        if (!w->methods)
                return true;
        for (char **m = w->methods; *m; m++)
                if (!strcmp(*m, method))
                        return true;
        return false;
}

/* ---- incoming messages (I/O thread) ----------------------------------- */

static void handle_reply(par_cdp_t *c, json_t *msg)
{
        int64_t id = json_integer_value(json_object_get(msg, "id"));
        json_t *error = json_object_get(msg, "error");

        pthread_mutex_lock(&c->mu);
        for (struct pending **pp = &c->pending; *pp; pp = &(*pp)->next) {
                struct pending *p = *pp;
                if (p->id != id)
                        continue;
                *pp = p->next;
                p->done = true;
                if (error) {
                        p->code = PAR_ERR_CDP;
                        snprintf(p->msg, sizeof(p->msg),
                                 "%s: %s (code %lld)%s%s", p->method,
                                 json_string_value(
                                     json_object_get(error, "message")),
                                 (long long)json_integer_value(
                                     json_object_get(error, "code")),
                                 json_is_string(json_object_get(error, "data"))
                                     ? ": "
                                     : "",
                                 json_is_string(json_object_get(error, "data"))
                                     ? json_string_value(
                                           json_object_get(error, "data"))
                                     : "");
                } else {
                        p->code = PAR_OK;
                        /* Detach it, so the caller is its only owner. */
                        p->result = json_object_get(msg, "result");
                        if (p->result) {
                                json_incref(p->result);
                                json_object_del(msg, "result");
                        } else {
                                p->result = json_object();
                        }
                }
                pthread_cond_signal(&p->cond);
                break;
        }
        pthread_mutex_unlock(&c->mu);
}

static void track_sessions(par_cdp_t *c, const char *sid, const char *method,
                           json_t *params)
{
        const char *psid =
            json_string_value(json_object_get(params, "sessionId"));

        if (!strcmp(method, "Target.attachedToTarget") && psid) {
                json_t *ti = json_object_get(params, "targetInfo");
                session_note(
                    c, psid,
                    json_string_value(json_object_get(ti, "targetId")));
        } else if (!strcmp(method, "Target.detachedFromTarget") && psid) {
                session_kill(c, psid, "detached from target");
        } else if (!strcmp(method, "Target.targetCrashed")) {
                const char *tid =
                    json_string_value(json_object_get(params, "targetId"));
                char **ids = NULL;
                size_t n = 0;
                for (struct session *s = c->sessions; tid && s; s = s->next) {
                        if (s->target_id && !strcmp(s->target_id, tid) &&
                            !s->dead) {
                                char **nids =
                                    realloc(ids, (n + 1) * sizeof(*ids));
                                if (!nids)
                                        break;
                                ids = nids;
                                ids[n++] = s->id;
                        }
                }
                for (size_t i = 0; i < n; i++)
                        session_kill(c, ids[i], "target crashed");
                free(ids);
        } else if (sid && !strcmp(method, "Inspector.targetCrashed")) {
                session_kill(c, sid, "target crashed");
        } else if (sid && !strcmp(method, "Inspector.detached")) {
                const char *r =
                    json_string_value(json_object_get(params, "reason"));
                char why[96];
                snprintf(why, sizeof(why), "inspector detached (%s)",
                         r ? r : "no reason");
                session_kill(c, sid, why);
        }
}

static void waiter_push(par_cdp_waiter_t *w, json_t *event)
{
        struct evnode *n = event ? malloc(sizeof(*n)) : NULL;
        if (!n) {
                json_decref(event);
                return;
        }
        n->event = event;
        n->next = NULL;
        if (w->tail)
                w->tail->next = n;
        else
                w->head = n;
        w->tail = n;
        w->count++;
        pthread_cond_signal(&w->cond);
}

/*
 * Ownership is handed over whole: the event (which owns its params,
 * detached from msg) goes to exactly one waiter, and any other waiter of
 * the same event gets a deep copy, so no JSON value is ever shared between
 * threads. Subscriptions run first, while the I/O thread still owns it.
 */
static void handle_event(par_cdp_t *c, json_t *msg)
{
        const char *method = json_string_value(json_object_get(msg, "method"));
        const char *sid = json_string_value(json_object_get(msg, "sessionId"));
        json_t *params = json_object_get(msg, "params");
        json_t *event;
        par_cdp_waiter_t *last = NULL;

        if (params) {
                json_incref(params);
                json_object_del(msg, "params");
        } else {
                params = json_object();
        }
        event = json_pack("{s:s,s:o}", "method", method, "params", params);
        if (!event)
                return;

        pthread_mutex_lock(&c->sub_mu);
        for (struct sub *s = c->subs; s; s = s->next) {
                if (s->method && strcmp(s->method, method))
                        continue;
                if (s->session && !same_session(s->session, sid))
                        continue;
                s->cb(sid, method, params, s->opaque);
        }
        pthread_mutex_unlock(&c->sub_mu);

        pthread_mutex_lock(&c->mu);
        /* Session bookkeeping reads params before they are handed over;
         * waiters only see the death once mu is released, after their
         * copy of e.g. Inspector.targetCrashed is queued. */
        track_sessions(c, sid, method, params);
        for (par_cdp_waiter_t *w = c->waiters; w; w = w->next) {
                if (!waiter_wants(w, sid, method))
                        continue;
                if (last)
                        waiter_push(last, json_deep_copy(event));
                last = w;
        }
        if (last)
                waiter_push(last, event);
        pthread_mutex_unlock(&c->mu);
        if (!last)
                json_decref(event);
}

static bool is_hex4(const char *p)
{
        for (int i = 0; i < 4; i++)
                if (!isxdigit((unsigned char)p[i]))
                        return false;
        return true;
}

static unsigned hex4(const char *p)
{
        char tmp[5] = {p[0], p[1], p[2], p[3], 0};
        return (unsigned)strtoul(tmp, NULL, 16);
}

/*
 * Replaces every \uD800-\uDFFF escape that is not half of a valid pair
 * with \uFFFD (same length, in place) and every byte that is not valid
 * UTF-8 with '?'. JavaScript strings may hold lone surrogates (a page's
 * title cut in the middle of an emoji) and Chromium sends them escaped
 * as they are; jansson refuses such a document, and the reply was lost
 * (its call timed out and was retried as transient). Returns true when
 * anything changed.
 */
static bool repair_json(char *s, size_t n)
{
        bool changed = false, in_str = false;
        size_t i = 0, l;

        while (i < n) {
                if ((unsigned char)s[i] >= 0x80) {
                        l = par_utf8_seq_len(s + i, n - i);
                        if (!l) {
                                s[i++] = '?';
                                changed = true;
                        } else {
                                i += l;
                        }
                        continue;
                }
                if (!in_str) {
                        in_str = s[i++] == '"';
                        continue;
                }
                if (s[i] == '"') {
                        in_str = false;
                        i++;
                        continue;
                }
                if (s[i] != '\\' || i + 1 >= n) {
                        i++;
                        continue;
                }
                if (s[i + 1] != 'u' || i + 6 > n || !is_hex4(s + i + 2)) {
                        i += 2;
                        continue;
                }
                unsigned u = hex4(s + i + 2);
                if (u >= 0xd800 && u <= 0xdbff && i + 12 <= n &&
                    s[i + 6] == '\\' && s[i + 7] == 'u' && is_hex4(s + i + 8)) {
                        unsigned lo = hex4(s + i + 8);
                        if (lo >= 0xdc00 && lo <= 0xdfff) {
                                i += 12; /* a valid pair */
                                continue;
                        }
                }
                if (u >= 0xd800 && u <= 0xdfff) {
                        memcpy(s + i + 2, "FFFD", 4);
                        changed = true;
                }
                i += 6;
        }
        return changed;
}

json_t *par_cdp_parse_message(const char *buf, size_t len, json_error_t *jerr)
{
        json_t *msg = json_loadb(buf, len, 0, jerr);
        char *copy;

        if (msg || !len)
                return msg;
        copy = malloc(len);
        if (!copy)
                return NULL;
        memcpy(copy, buf, len);
        if (repair_json(copy, len))
                msg = json_loadb(copy, len, 0, jerr);
        free(copy);
        return msg;
}

static void handle_message(par_cdp_t *c, const unsigned char *buf, size_t len)
{
        json_error_t jerr;
        json_t *msg = par_cdp_parse_message((const char *)buf, len, &jerr);

        if (!msg) {
                par_log(PAR_LOG_WARN, "cdp", "bad_message",
                        "url=%s len=%zu error=\"%s\"", c->url, len, jerr.text);
                return;
        }
        if (json_is_integer(json_object_get(msg, "id")))
                handle_reply(c, msg);
        else if (json_is_string(json_object_get(msg, "method")))
                handle_event(c, msg);
        json_decref(msg);
}

static int rx_append(par_cdp_t *c, const void *in, size_t len)
{
        if (c->rx_len + len > c->rx_cap) {
                size_t cap = c->rx_cap ? c->rx_cap : 64 * 1024;
                unsigned char *nb;
                while (cap < c->rx_len + len)
                        cap *= 2;
                nb = realloc(c->rx, cap);
                if (!nb)
                        return -1;
                c->rx = nb;
                c->rx_cap = cap;
        }
        memcpy(c->rx + c->rx_len, in, len);
        c->rx_len += len;
        return 0;
}

/* ---- outgoing (I/O thread) -------------------------------------------- */

static int write_some(par_cdp_t *c, struct lws *wsi)
{
        struct outmsg *m;
        size_t n;
        int flags, more;

        pthread_mutex_lock(&c->mu);
        m = c->out_head;
        pthread_mutex_unlock(&c->mu);
        if (!m)
                return 0;

        n = m->len - m->off;
        if (n > CDP_TX_FRAGMENT)
                n = CDP_TX_FRAGMENT;
        flags = lws_write_ws_flags(LWS_WRITE_TEXT, m->off == 0,
                                   m->off + n == m->len);
        if (lws_write(wsi, m->buf + LWS_PRE + m->off, n, flags) < (int)n)
                return -1;
        m->off += n;

        pthread_mutex_lock(&c->mu);
        if (m->off == m->len) {
                c->out_head = m->next;
                if (!c->out_head)
                        c->out_tail = NULL;
                free(m->buf);
                free(m);
        }
        more = c->out_head != NULL;
        pthread_mutex_unlock(&c->mu);
        if (more)
                lws_callback_on_writable(wsi);
        return 0;
}

static int cdp_callback(struct lws *wsi, enum lws_callback_reasons reason,
                        void *user, void *in, size_t len)
{
        par_cdp_t *c = lws_context_user(lws_get_context(wsi));
        char why[160];

        switch (reason) {
        case LWS_CALLBACK_CLIENT_ESTABLISHED:
                pthread_mutex_lock(&c->mu);
                c->established = true;
                pthread_cond_broadcast(&c->state_cond);
                if (c->out_head)
                        lws_callback_on_writable(wsi);
                pthread_mutex_unlock(&c->mu);
                break;

        case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
                snprintf(why, sizeof(why), "cannot connect to %.100s: %.38s",
                         c->url, in ? (const char *)in : "connection error");
                pthread_mutex_lock(&c->mu);
                c->wsi = NULL;
                conn_closed(c, why);
                pthread_mutex_unlock(&c->mu);
                break;

        case LWS_CALLBACK_CLIENT_CLOSED:
                snprintf(why, sizeof(why), "connection to %.120s closed",
                         c->url);
                pthread_mutex_lock(&c->mu);
                c->wsi = NULL;
                conn_closed(c, why);
                pthread_mutex_unlock(&c->mu);
                break;

        case LWS_CALLBACK_CLIENT_RECEIVE:
                if (lws_is_first_fragment(wsi))
                        c->rx_len = 0;
                if (rx_append(c, in, len)) {
                        par_log(PAR_LOG_ERROR, "cdp", "nomem", "url=%s len=%zu",
                                c->url, c->rx_len + len);
                        return -1;
                }
                if (lws_is_final_fragment(wsi) &&
                    !lws_remaining_packet_payload(wsi)) {
                        handle_message(c, c->rx, c->rx_len);
                        c->rx_len = 0;
                        if (c->rx_cap > 4 * CDP_RX_BUFFER) {
                                /* don't pin a screenshot-sized buffer */
                                free(c->rx);
                                c->rx = NULL;
                                c->rx_cap = 0;
                        }
                }
                break;

        case LWS_CALLBACK_CLIENT_WRITEABLE: {
                bool stop;
                pthread_mutex_lock(&c->mu);
                stop = c->stop;
                pthread_mutex_unlock(&c->mu);
                if (stop)
                        return -1;
                return write_some(c, wsi);
        }

        case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
                /* Another thread queued a message or asked us to stop. */
                pthread_mutex_lock(&c->mu);
                if (c->wsi && c->established && (c->out_head || c->stop))
                        lws_callback_on_writable(c->wsi);
                pthread_mutex_unlock(&c->mu);
                break;

        default:
                break;
        }
        return 0;
}

static const struct lws_protocols cdp_protocols[] = {
    {"par-cdp", cdp_callback, 0, CDP_RX_BUFFER, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void *io_thread(void *arg)
{
        par_cdp_t *c = arg;
        for (;;) {
                bool stop;
                pthread_mutex_lock(&c->mu);
                stop = c->stop;
                pthread_mutex_unlock(&c->mu);
                if (stop)
                        break;
                if (lws_service(c->ctx, 0) < 0) {
                        pthread_mutex_lock(&c->mu);
                        conn_closed(c, "websocket service loop failed");
                        pthread_mutex_unlock(&c->mu);
                        break;
                }
        }
        return NULL;
}

/* ---- public API ------------------------------------------------------- */

par_err_t par_cdp_connect(par_cdp_t **out, const char *ws_url, int timeout_ms,
                          par_error_t *err)
{
        struct lws_context_creation_info info;
        struct lws_client_connect_info ci;
        char tmp[512], path[512], host[300];
        const char *prot, *ads, *p;
        int port;
        struct timespec dl;
        par_cdp_t *c = NULL;
        par_err_t rc = PAR_OK;

        par_lws_init();
        if (!ws_url || strlen(ws_url) >= sizeof(tmp))
                return par_error_set(err, PAR_ERR_INVALID,
                                     "cdp: bad websocket url");
        snprintf(tmp, sizeof(tmp), "%s", ws_url);
        if (lws_parse_uri(tmp, &prot, &ads, &port, &p) || strcmp(prot, "ws"))
                return par_error_set(err, PAR_ERR_INVALID,
                                     "cdp: '%s' is not a ws:// url", ws_url);
        snprintf(path, sizeof(path), "/%s", p);
        snprintf(host, sizeof(host), "%s:%d", ads, port);
        if (timeout_ms <= 0)
                timeout_ms = CDP_DEFAULT_TIMEOUT_MS;

        c = calloc(1, sizeof(*c));
        if (!c)
                return par_error_set(err, PAR_ERR_NOMEM, "cdp: out of memory");
        snprintf(c->url, sizeof(c->url), "%s", ws_url);
        pthread_mutex_init(&c->mu, NULL);
        pthread_mutex_init(&c->sub_mu, NULL);
        par_clock_cond_init(&c->state_cond);
        c->next_id = 1;
        c->next_sub_id = 1;

        memset(&info, 0, sizeof(info));
        info.port = CONTEXT_PORT_NO_LISTEN;
        info.protocols = cdp_protocols;
        info.user = c;
        info.gid = -1;
        info.uid = -1;
        c->ctx = lws_create_context(&info);
        if (!c->ctx) {
                rc = par_error_set(err, PAR_ERR_IO,
                                   "cdp: cannot create lws context");
                goto fail;
        }

        memset(&ci, 0, sizeof(ci));
        ci.context = c->ctx;
        ci.address = ads;
        ci.port = port;
        ci.path = path;
        ci.host = host;
        ci.origin = NULL;   /* an Origin gets 403 from Chromium */
        ci.protocol = NULL; /* Chromium offers no subprotocol */
        ci.pwsi = &c->wsi;
        if (!lws_client_connect_via_info(&ci) && !c->closed) {
                rc = par_error_set(err, PAR_ERR_IO, "cdp: cannot connect to %s",
                                   ws_url);
                goto fail;
        }
        if (pthread_create(&c->thread, NULL, io_thread, c)) {
                rc = par_error_set(err, PAR_ERR_IO,
                                   "cdp: cannot start I/O thread");
                goto fail;
        }
        c->thread_started = true;

        par_clock_deadline(&dl, timeout_ms);
        pthread_mutex_lock(&c->mu);
        while (!c->established && !c->closed) {
                if (pthread_cond_timedwait(&c->state_cond, &c->mu, &dl) ==
                    ETIMEDOUT)
                        break;
        }
        if (!c->established) {
                if (c->closed)
                        rc = par_error_set(err, PAR_ERR_DISCONNECTED, "cdp: %s",
                                           c->close_why);
                else
                        rc = par_error_set(
                            err, PAR_ERR_TIMEOUT,
                            "cdp: no websocket handshake with %s in %d ms",
                            ws_url, timeout_ms);
        }
        pthread_mutex_unlock(&c->mu);
        if (rc)
                goto fail;
        PAR_DEBUG("cdp", "connected", "url=%s", ws_url);
        *out = c;
        return PAR_OK;
fail:
        par_cdp_destroy(c);
        return rc;
}

void par_cdp_destroy(par_cdp_t *c)
{
        if (!c)
                return;
        pthread_mutex_lock(&c->mu);
        c->stop = true;
        pthread_mutex_unlock(&c->mu);
        if (c->thread_started) {
                lws_cancel_service(c->ctx);
                pthread_join(c->thread, NULL);
        }
        /* The loop has stopped: destroying the context closes the socket
         * and runs CLIENT_CLOSED here, which fails what is pending. */
        if (c->ctx)
                lws_context_destroy(c->ctx);
        pthread_mutex_lock(&c->mu);
        conn_closed(c, "connection closed by client");
        pthread_mutex_unlock(&c->mu);

        while (c->sessions) {
                struct session *s = c->sessions;
                c->sessions = s->next;
                session_free(s);
        }
        while (c->subs) {
                struct sub *s = c->subs;
                c->subs = s->next;
                free(s->session);
                free(s->method);
                free(s);
        }
        free(c->rx);
        pthread_cond_destroy(&c->state_cond);
        pthread_mutex_destroy(&c->sub_mu);
        pthread_mutex_destroy(&c->mu);
        free(c);
}

bool par_cdp_connected(par_cdp_t *c)
{
        bool ok;
        pthread_mutex_lock(&c->mu);
        ok = c->established && !c->closed;
        pthread_mutex_unlock(&c->mu);
        return ok;
}

par_err_t par_cdp_call(par_cdp_t *c, const char *session_id, const char *method,
                       json_t *params, int timeout_ms, json_t **result,
                       par_error_t *err)
{
        struct pending p;
        struct outmsg *m = NULL;
        struct timespec dl;
        json_t *req;
        size_t len;
        par_err_t rc;
        struct session *s;

        if (!c || !method)
                return par_error_set(err, PAR_ERR_INVALID, "cdp: no method");
        if (params && !json_is_object(params))
                return par_error_set(err, PAR_ERR_INVALID,
                                     "%s: params must be an object", method);
        if (timeout_ms <= 0)
                timeout_ms = CDP_DEFAULT_TIMEOUT_MS;

        memset(&p, 0, sizeof(p));
        p.method = method;
        p.session = is_browser(session_id) ? NULL : (char *)session_id;
        par_clock_cond_init(&p.cond);

        req = json_pack("{s:I,s:s,s:o}", "id", (json_int_t)0, "method", method,
                        "params", params ? json_incref(params) : json_object());
        if (!req) {
                rc = par_error_set(err, PAR_ERR_NOMEM, "%s: out of memory",
                                   method);
                goto out;
        }
        if (p.session)
                json_object_set_new(req, "sessionId", json_string(p.session));

        pthread_mutex_lock(&c->mu);
        if (c->closed || !c->established) {
                rc = par_error_set(err, PAR_ERR_DISCONNECTED, "%s: %s", method,
                                   c->closed ? c->close_why : "not connected");
                pthread_mutex_unlock(&c->mu);
                goto out;
        }
        if (p.session && (s = session_find(c, p.session)) && s->dead) {
                rc = par_error_set(err, PAR_ERR_DISCONNECTED,
                                   "%s: session %s: %s", method, p.session,
                                   s->why);
                pthread_mutex_unlock(&c->mu);
                goto out;
        }
        p.id = c->next_id++;
        json_object_set_new(req, "id", json_integer(p.id));
        pthread_mutex_unlock(&c->mu);

        /* Serialize outside the lock: a 5 MB params object takes a while. */
        len = json_dumpb(req, NULL, 0, JSON_COMPACT);
        m = calloc(1, sizeof(*m));
        if (!m || !(m->buf = malloc(LWS_PRE + len + 1))) {
                rc = par_error_set(err, PAR_ERR_NOMEM, "%s: out of memory",
                                   method);
                goto out;
        }
        m->len = json_dumpb(req, (char *)m->buf + LWS_PRE, len, JSON_COMPACT);

        pthread_mutex_lock(&c->mu);
        if (c->closed) {
                rc = par_error_set(err, PAR_ERR_DISCONNECTED, "%s: %s", method,
                                   c->close_why);
                pthread_mutex_unlock(&c->mu);
                goto out;
        }
        if (c->out_tail)
                c->out_tail->next = m;
        else
                c->out_head = m;
        c->out_tail = m;
        m = NULL;
        p.next = c->pending;
        c->pending = &p;
        pthread_mutex_unlock(&c->mu);
        lws_cancel_service(c->ctx);

        par_clock_deadline(&dl, timeout_ms);
        pthread_mutex_lock(&c->mu);
        while (!p.done) {
                if (pthread_cond_timedwait(&p.cond, &c->mu, &dl) == ETIMEDOUT &&
                    !p.done) {
                        for (struct pending **pp = &c->pending; *pp;
                             pp = &(*pp)->next) {
                                if (*pp == &p) {
                                        *pp = p.next;
                                        break;
                                }
                        }
                        p.done = true;
                        p.code = PAR_ERR_TIMEOUT;
                        snprintf(p.msg, sizeof(p.msg), "%s: no reply in %d ms",
                                 method, timeout_ms);
                }
        }
        pthread_mutex_unlock(&c->mu);

        rc = p.code;
        if (rc) {
                par_error_set(err, rc, "%s", p.msg);
                json_decref(p.result);
        } else {
                if (!strcmp(method, "Target.attachToTarget") && params) {
                        const char *sid = json_string_value(
                            json_object_get(p.result, "sessionId"));
                        const char *tid = json_string_value(
                            json_object_get(params, "targetId"));
                        if (sid) {
                                pthread_mutex_lock(&c->mu);
                                session_note(c, sid, tid);
                                pthread_mutex_unlock(&c->mu);
                        }
                }
                if (result)
                        *result = p.result;
                else
                        json_decref(p.result);
        }
out:
        if (m) {
                free(m->buf);
                free(m);
        }
        json_decref(req);
        pthread_cond_destroy(&p.cond);
        return rc;
}

par_err_t par_cdp_call_take(par_cdp_t *c, const char *session_id,
                            const char *method, json_t *params, int timeout_ms,
                            json_t **result, par_error_t *err)
{
        par_err_t rc = par_cdp_call(c, session_id, method, params, timeout_ms,
                                    result, err);
        json_decref(params);
        return rc;
}

size_t par_cdp_pending_count(par_cdp_t *c)
{
        size_t n = 0;
        pthread_mutex_lock(&c->mu);
        for (struct pending *p = c->pending; p; p = p->next)
                n++;
        pthread_mutex_unlock(&c->mu);
        return n;
}

bool par_cdp_session_dead(par_cdp_t *c, const char *session_id)
{
        struct session *s;
        bool dead;

        if (is_browser(session_id))
                return false;
        pthread_mutex_lock(&c->mu);
        s = session_find(c, session_id);
        dead = s && s->dead;
        pthread_mutex_unlock(&c->mu);
        return dead;
}

void par_cdp_session_forget(par_cdp_t *c, const char *session_id)
{
        if (!c || is_browser(session_id))
                return;
        pthread_mutex_lock(&c->mu);
        for (struct session **pp = &c->sessions; *pp; pp = &(*pp)->next) {
                if (!strcmp((*pp)->id, session_id)) {
                        struct session *s = *pp;
                        *pp = s->next;
                        session_free(s);
                        c->nsessions--;
                        break;
                }
        }
        pthread_mutex_unlock(&c->mu);
}

par_err_t par_cdp_subscribe(par_cdp_t *c, const char *session_id,
                            const char *method, par_cdp_event_cb cb,
                            void *opaque, int *id_out, par_error_t *err)
{
        struct sub *s = calloc(1, sizeof(*s));

        if (!s || !cb) {
                free(s);
                return par_error_set(err, cb ? PAR_ERR_NOMEM : PAR_ERR_INVALID,
                                     "cdp: cannot subscribe");
        }
        s->session = session_id ? strdup(session_id) : NULL;
        s->method = method ? strdup(method) : NULL;
        s->cb = cb;
        s->opaque = opaque;
        pthread_mutex_lock(&c->sub_mu);
        s->id = c->next_sub_id++;
        s->next = c->subs;
        c->subs = s;
        pthread_mutex_unlock(&c->sub_mu);
        if (id_out)
                *id_out = s->id;
        return PAR_OK;
}

void par_cdp_unsubscribe(par_cdp_t *c, int id)
{
        struct sub *found = NULL;

        if (!c)
                return;
        pthread_mutex_lock(&c->sub_mu);
        for (struct sub **pp = &c->subs; *pp; pp = &(*pp)->next) {
                if ((*pp)->id == id) {
                        found = *pp;
                        *pp = found->next;
                        break;
                }
        }
        pthread_mutex_unlock(&c->sub_mu);
        if (found) {
                free(found->session);
                free(found->method);
                free(found);
        }
}

/* ---- waiters ---------------------------------------------------------- */

par_err_t par_cdp_waiter_new(par_cdp_waiter_t **out, par_cdp_t *c,
                             const char *session_id, const char *const *methods,
                             par_error_t *err)
{
        par_cdp_waiter_t *w = calloc(1, sizeof(*w));
        size_t n = 0;
        struct session *s;

        if (!w)
                goto nomem;
        w->c = c;
        par_clock_cond_init(&w->cond);
        if (!is_browser(session_id) && !(w->session = strdup(session_id)))
                goto nomem;
        if (methods) {
                while (methods[n])
                        n++;
                w->methods = calloc(n + 1, sizeof(char *));
                if (!w->methods)
                        goto nomem;
                for (size_t i = 0; i < n; i++)
                        if (!(w->methods[i] = strdup(methods[i])))
                                goto nomem;
        }
        pthread_mutex_lock(&c->mu);
        if (c->closed) {
                w->dead = true;
                snprintf(w->why, sizeof(w->why), "%.120s", c->close_why);
        } else if (w->session && (s = session_find(c, w->session)) && s->dead) {
                w->dead = true;
                snprintf(w->why, sizeof(w->why), "session %s: %s", w->session,
                         s->why);
        }
        w->next = c->waiters;
        c->waiters = w;
        pthread_mutex_unlock(&c->mu);
        *out = w;
        return PAR_OK;
nomem:
        if (w) {
                for (size_t i = 0; w->methods && i < n; i++)
                        free(w->methods[i]);
                free(w->methods);
                free(w->session);
                pthread_cond_destroy(&w->cond);
                free(w);
        }
        return par_error_set(err, PAR_ERR_NOMEM, "cdp: out of memory");
}

par_err_t par_cdp_waiter_wait(par_cdp_waiter_t *w, int timeout_ms,
                              json_t **event, par_error_t *err)
{
        par_cdp_t *c = w->c;
        struct timespec dl;
        struct evnode *n = NULL;
        par_err_t rc = PAR_OK;

        par_clock_deadline(&dl, timeout_ms > 0 ? timeout_ms : 0);
        pthread_mutex_lock(&c->mu);
        while (!w->head && !w->dead) {
                if (timeout_ms <= 0 ||
                    pthread_cond_timedwait(&w->cond, &c->mu, &dl) == ETIMEDOUT)
                        break;
        }
        if (w->head) {
                n = w->head;
                w->head = n->next;
                if (!w->head)
                        w->tail = NULL;
                w->count--;
        } else if (w->dead) {
                rc = par_error_set(err, PAR_ERR_DISCONNECTED, "%s", w->why);
        } else {
                rc = par_error_set(err, PAR_ERR_TIMEOUT, "no event in %d ms",
                                   timeout_ms);
        }
        pthread_mutex_unlock(&c->mu);
        if (n) {
                if (event)
                        *event = n->event;
                else
                        json_decref(n->event);
                free(n);
        }
        return rc;
}

par_err_t par_cdp_waiter_wait_for(par_cdp_waiter_t *w, const char *method,
                                  int timeout_ms, json_t **params,
                                  par_error_t *err)
{
        int64_t end = par_clock_mono_ms() + timeout_ms;
        json_t *ev = NULL;
        par_err_t rc;

        for (;;) {
                int64_t left = end - par_clock_mono_ms();
                rc = par_cdp_waiter_wait(w, left > 0 ? (int)left : 0, &ev, err);
                if (rc == PAR_ERR_TIMEOUT)
                        return par_error_set(err, rc, "no %s in %d ms", method,
                                             timeout_ms);
                if (rc)
                        return rc;
                if (!strcmp(json_string_value(json_object_get(ev, "method")),
                            method)) {
                        if (params)
                                *params =
                                    json_incref(json_object_get(ev, "params"));
                        json_decref(ev);
                        return PAR_OK;
                }
                json_decref(ev);
        }
}

size_t par_cdp_waiter_pending(par_cdp_waiter_t *w)
{
        size_t n;
        pthread_mutex_lock(&w->c->mu);
        n = w->count;
        pthread_mutex_unlock(&w->c->mu);
        return n;
}

void par_cdp_waiter_destroy(par_cdp_waiter_t *w)
{
        par_cdp_t *c;

        if (!w)
                return;
        c = w->c;
        pthread_mutex_lock(&c->mu);
        for (par_cdp_waiter_t **pp = &c->waiters; *pp; pp = &(*pp)->next) {
                if (*pp == w) {
                        *pp = w->next;
                        break;
                }
        }
        pthread_mutex_unlock(&c->mu);
        while (w->head) {
                struct evnode *n = w->head;
                w->head = n->next;
                json_decref(n->event);
                free(n);
        }
        for (char **m = w->methods; m && *m; m++)
                free(*m);
        free(w->methods);
        free(w->session);
        pthread_cond_destroy(&w->cond);
        free(w);
}

/* ---- /json/version ---------------------------------------------------- */

par_err_t par_cdp_fetch_version(const char *host_port, char *ws_url, size_t n,
                                int timeout_ms, par_error_t *err)
{
        par_httpc_reply_t r = {0};
        json_t *doc = NULL;
        const char *url;
        par_err_t rc;

        if ((rc = par_httpc_get(host_port, "/json/version", timeout_ms, &r,
                                err)))
                return rc;
        if (r.status != 200) {
                rc = par_error_set(err, PAR_ERR_IO,
                                   "endpoint %s: /json/version: HTTP %d",
                                   host_port, r.status);
                goto out;
        }
        /* Pretty-printed JSON: parse it, don't search it. */
        doc = json_loadb(r.body, r.body_len, 0, NULL);
        url = json_string_value(json_object_get(doc, "webSocketDebuggerUrl"));
        if (!url) {
                rc = par_error_set(err, PAR_ERR_IO,
                                   "endpoint %s: /json/version has no "
                                   "webSocketDebuggerUrl",
                                   host_port);
                goto out;
        }
        if (strlen(url) >= n) {
                rc = par_error_set(err, PAR_ERR_INVALID,
                                   "webSocketDebuggerUrl too long");
                goto out;
        }
        memcpy(ws_url, url, strlen(url) + 1);
out:
        json_decref(doc);
        par_httpc_reply_free(&r);
        return rc;
}
