/*
 * http.c — the observability HTTP server (see http.h), on libwebsockets.
 *
 * One lws context with one explicitly created vhost (so we hold the vhost
 * and can ask it for the bound port when the config says port 0) and one
 * HTTP protocol. A dedicated thread runs lws_service() until asked to stop;
 * par_http_stop() sets a flag and calls lws_cancel_service(), the only lws
 * call that is safe from another thread, then joins and destroys the
 * context from the owning thread once the service loop has returned.
 *
 * A request is answered in two steps, the way lws wants it: on
 * LWS_CALLBACK_HTTP the route's handler builds the whole body in memory
 * (bodies here are small: metrics text, a JSON status, one HTML page), the
 * headers are written with Content-Length, and the body is then written in
 * chunks from LWS_CALLBACK_HTTP_WRITEABLE, each with LWS_PRE headroom as
 * lws_write() requires.
 *
 * Hostile clients. Connections are capped; each one is tracked in a slot
 * that says whether it is answering a request or waiting for one. A
 * connection waiting for its request headers gets HEADER_TIMEOUT seconds
 * from accept (and from the first byte after a keep-alive pause); when the
 * cap is reached, a new connection takes the slot of the one that has been
 * waiting longest, so clients that send nothing, or their headers a byte at
 * a time, cannot keep /health from answering. Requests with a body are
 * refused: nothing here takes one, and lws 4.1 spins on a body followed by
 * a pipelined request (see FILTER_HTTP_CONNECTION).
 */
#include "obs/http.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "base/log.h"
#include "net/lws.h"
#include "obs/metrics.h"

#define CHUNK      16384
#define MAX_ROUTES 32
/* Connections served at once. These endpoints answer dashboards and
 * scrapers, a handful of clients: a cap keeps a flood of idle sockets from
 * taking every file descriptor of the node. At the cap a new connection
 * evicts the one waiting longest for a request (refused only when every
 * connection is answering one). */
#define MAX_CONNECTIONS 128
/* Seconds a connection may take to send its request headers (a real client
 * sends them in one packet), to stay idle between requests, and to take a
 * response. */
#define HEADER_TIMEOUT 3
#define IDLE_TIMEOUT   5
#define SEND_TIMEOUT   10

struct par_http_body {
        char *data;
        size_t len, cap;
        bool failed;
};

/* An accepted connection. The wsi's opaque user data points at its slot,
 * so WSI_DESTROY frees it; slots are touched on the service thread only. */
typedef struct conn {
        struct lws *wsi; /* NULL: slot free */
        /* 0 while answering a request; otherwise when it began waiting for
         * one, as a sequence number (lower = waiting longer) */
        uint64_t waiting_since;
} conn_t;

typedef struct route {
        char *path;
        par_http_handler_fn fn;
        void *opaque;
} route_t;

struct par_http {
        char *host; /* NULL: every interface */
        int port;   /* as configured; 0 = ephemeral */
        char *listen;
        route_t routes[MAX_ROUTES];
        size_t nroutes;

        struct lws_context *ctx;
        struct lws_vhost *vhost;
        int bound_port;
        pthread_t thread;
        bool running;
        atomic_bool stopping;
        /* service thread only */
        conn_t conns[MAX_CONNECTIONS];
        int connections;
        uint64_t seq;
};

/* Per-connection state: the response being written. */
typedef struct pss {
        char *body;
        size_t len, sent;
        bool head; /* HEAD: headers only */
        bool close_after;
} pss_t;

/* -------------------------------------------------------------- the body */

static par_err_t body_reserve(par_http_body_t *b, size_t more)
{
        size_t need = b->len + more + 1, cap;
        char *p;

        if (b->failed)
                return PAR_ERR_NOMEM;
        if (need <= b->cap)
                return PAR_OK;
        cap = b->cap ? b->cap : 1024;
        while (cap < need)
                cap *= 2;
        p = realloc(b->data, cap);
        if (!p) {
                b->failed = true;
                return PAR_ERR_NOMEM;
        }
        b->data = p;
        b->cap = cap;
        return PAR_OK;
}

par_err_t par_http_body_append(par_http_body_t *b, const void *data, size_t len)
{
        if (body_reserve(b, len))
                return PAR_ERR_NOMEM;
        memcpy(b->data + b->len, data, len);
        b->len += len;
        b->data[b->len] = '\0';
        return PAR_OK;
}

par_err_t par_http_body_printf(par_http_body_t *b, const char *fmt, ...)
{
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0 || body_reserve(b, (size_t)n))
                return b->failed = true, PAR_ERR_NOMEM;
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
        b->len += (size_t)n;
        return PAR_OK;
}

int par_http_metrics_handler(void *registry, const char *path,
                             const char *query, par_http_body_t *body,
                             const char **content_type)
{
        char *text = NULL;
        size_t len = 0;
        par_error_t err = {0};

        if (par_metrics_render(registry, &text, &len, &err)) {
                par_http_body_printf(body, "%s\n", err.msg);
                return 500;
        }
        *content_type = "text/plain; version=0.0.4; charset=utf-8";
        par_http_body_append(body, text, len);
        free(text);
        return 200;
}

/* --------------------------------------------------------- lws plumbing */

static const route_t *find_route(const par_http_t *h, const char *path)
{
        for (size_t i = 0; i < h->nroutes; i++)
                if (!strcmp(h->routes[i].path, path))
                        return &h->routes[i];
        return NULL;
}

/* Joins the decoded query fragments lws split at '&'. */
static void get_query(struct lws *wsi, char *q, size_t n)
{
        size_t used = 0;

        q[0] = '\0';
        for (int i = 0;; i++) {
                char frag[256];
                int len = lws_hdr_copy_fragment(wsi, frag, sizeof(frag),
                                                WSI_TOKEN_HTTP_URI_ARGS, i);
                if (len <= 0)
                        break;
                if (used + (size_t)len + 2 > n)
                        break;
                if (used)
                        q[used++] = '&';
                memcpy(q + used, frag, (size_t)len);
                used += (size_t)len;
                q[used] = '\0';
        }
}

static void pss_clear(pss_t *pss)
{
        free(pss->body);
        memset(pss, 0, sizeof(*pss));
}

/* ---------------------------------------------------------- connections */

/* wsi's slot; NULL when it has none (refused before it got one). */
static conn_t *conn_of(struct lws *wsi)
{
        conn_t *c = lws_get_opaque_user_data(wsi);

        return c && c->wsi == wsi ? c : NULL;
}

/* Gives a new connection a free slot, waiting for its first request.
 * False when none is free. */
static bool conn_add(par_http_t *h, struct lws *wsi)
{
        for (int i = 0; i < MAX_CONNECTIONS; i++) {
                conn_t *c = &h->conns[i];
                if (c->wsi)
                        continue;
                c->wsi = wsi;
                c->waiting_since = ++h->seq;
                h->connections++;
                lws_set_opaque_user_data(wsi, c);
                return true;
        }
        return false;
}

static void conn_remove(par_http_t *h, struct lws *wsi)
{
        conn_t *c = conn_of(wsi);

        if (!c)
                return;
        memset(c, 0, sizeof(*c));
        h->connections--;
        lws_set_opaque_user_data(wsi, NULL);
}

/* Marks wsi as answering a request (waiting false) or waiting for the
 * next one. */
static void conn_set_waiting(par_http_t *h, struct lws *wsi, bool waiting)
{
        conn_t *c = conn_of(wsi);

        if (c)
                c->waiting_since = waiting ? ++h->seq : 0;
}

/* At the cap, closes the connection that has waited longest for a request,
 * so a new client gets its slot. False when every connection is answering
 * one (the new one is refused then). */
static bool conn_make_room(par_http_t *h)
{
        conn_t *oldest = NULL;

        if (h->connections < MAX_CONNECTIONS)
                return true;
        for (int i = 0; i < MAX_CONNECTIONS; i++) {
                conn_t *c = &h->conns[i];
                if (c->wsi && c->waiting_since &&
                    (!oldest || c->waiting_since < oldest->waiting_since))
                        oldest = c;
        }
        if (!oldest)
                return false;
        /* Synchronously: WSI_DESTROY frees the slot before this returns.
         * Safe here, inside the listening socket's callback, not the
         * victim's. */
        lws_set_timeout(oldest->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
        return h->connections < MAX_CONNECTIONS;
}

/* --------------------------------------------------------------- requests */

static bool method_allowed(struct lws *wsi)
{
        char *uri = NULL;
        int len = 0;
        int m = lws_http_get_uri_and_method(wsi, &uri, &len);

        return m == LWSHUMETH_GET || m == LWSHUMETH_HEAD;
}

/* True when the request announces a body (Content-Length other than 0, or
 * any Transfer-Encoding). */
static bool has_body(struct lws *wsi)
{
        char len[32];

        if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0)
                return true;
        if (lws_hdr_copy(wsi, len, sizeof(len),
                         WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0)
                return lws_hdr_total_length(wsi,
                                            WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0;
        return strspn(len, "0") != strlen(len);
}

/* Runs the handler for the request and sends the headers. Returns -1 to
 * close the connection. */
static int begin_response(struct lws *wsi, par_http_t *h, pss_t *pss,
                          const char *path)
{
        unsigned char hdr[LWS_PRE + 1024];
        unsigned char *start = hdr + LWS_PRE, *p = start,
                      *end = hdr + sizeof(hdr) - 1;
        par_http_body_t body = {0};
        const char *ctype = "text/plain; charset=utf-8";
        char *uri = NULL;
        int urilen = 0, status;
        int method = lws_http_get_uri_and_method(wsi, &uri, &urilen);

        pss_clear(pss);
        conn_set_waiting(h, wsi, false);
        if (method != LWSHUMETH_GET && method != LWSHUMETH_HEAD) {
                status = 405;
                par_http_body_printf(&body, "method not allowed\n");
                pss->close_after = true;
        } else {
                const route_t *r = find_route(h, path);
                pss->head = method == LWSHUMETH_HEAD;
                if (!r) {
                        status = 404;
                        par_http_body_printf(&body, "not found: %s\n", path);
                } else {
                        char query[1024];
                        get_query(wsi, query, sizeof(query));
                        status = r->fn(r->opaque, path, query, &body, &ctype);
                        if (status < 100 || status > 599 || body.failed) {
                                par_log(PAR_LOG_ERROR, "http", "handler_failed",
                                        "path=%s status=%d nomem=%d", path,
                                        status, body.failed);
                                free(body.data);
                                memset(&body, 0, sizeof(body));
                                ctype = "text/plain; charset=utf-8";
                                status = 500;
                                par_http_body_printf(&body, "internal error\n");
                        }
                }
        }
        pss->body = body.data;
        pss->len = body.len;

        if (lws_add_http_common_headers(wsi, (unsigned)status, ctype,
                                        (lws_filepos_t)pss->len, &p, end) ||
            lws_add_http_header_by_name(
                wsi, (const unsigned char *)"cache-control:",
                (const unsigned char *)"no-store", 8, &p, end) ||
            (pss->close_after &&
             lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
                                          (const unsigned char *)"close", 5, &p,
                                          end)) ||
            lws_finalize_write_http_header(wsi, start, &p, end))
                return -1;
        if (pss->head || pss->len == 0) {
                if (pss->close_after || lws_http_transaction_completed(wsi))
                        return -1;
                conn_set_waiting(h, wsi, true);
                return 0;
        }
        lws_callback_on_writable(wsi);
        return 0;
}

/* Writes the next chunk of the body. Returns -1 to close. */
static int continue_response(struct lws *wsi, par_http_t *h, pss_t *pss)
{
        unsigned char buf[LWS_PRE + CHUNK];
        size_t n = pss->len - pss->sent;
        bool last;

        if (!pss->body)
                return 0;
        if (n > CHUNK)
                n = CHUNK;
        last = pss->sent + n == pss->len;
        memcpy(buf + LWS_PRE, pss->body + pss->sent, n);
        if (lws_write(wsi, buf + LWS_PRE, n,
                      last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
                return -1;
        pss->sent += n;
        if (!last) {
                lws_callback_on_writable(wsi);
                return 0;
        }
        pss_clear(pss);
        if (pss->close_after || lws_http_transaction_completed(wsi))
                return -1;
        conn_set_waiting(h, wsi, true);
        return 0;
}

static int callback_http(struct lws *wsi, enum lws_callback_reasons reason,
                         void *user, void *in, size_t len)
{
        pss_t *pss = user;
        par_http_t *h = lws_context_user(lws_get_context(wsi));

        switch (reason) {
        case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
                /* Before anything is allocated for the socket. */
                return h && !conn_make_room(h);
        case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
                /* The slot hangs on the wsi itself: its per-session data
                 * may not exist yet. */
                if (h && !conn_add(h, wsi))
                        return -1;
                /* Bounds the wait for the first byte (silent clients); lws
                 * replaces it with timeout_secs_ah_idle = HEADER_TIMEOUT
                 * once the headers start. */
                lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_KEEPALIVE_IDLE,
                                HEADER_TIMEOUT);
                return 0;
        case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
                /* No WebSocket upgrades: nothing here speaks it, and an
                 * upgraded socket would stay open with no timeout. */
                return 1;
        case LWS_CALLBACK_FILTER_HTTP_CONNECTION:
                /* GET and HEAD only; CONNECT, bodies, upgrades are refused
                 * before any handler runs. */
                if (!method_allowed(wsi) ||
                    lws_hdr_total_length(wsi, WSI_TOKEN_UPGRADE) > 0) {
                        lws_return_http_status(
                            wsi, HTTP_STATUS_METHOD_NOT_ALLOWED, NULL);
                        return -1;
                }
                /* A GET with a body: lws 4.1 would read the body and then
                 * spin on a request pipelined behind it, calling
                 * HTTP_BODY_COMPLETION forever (the service thread at 100%,
                 * every other connection stuck). */
                if (has_body(wsi)) {
                        lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST,
                                               NULL);
                        return -1;
                }
                return 0;
        case LWS_CALLBACK_RAW_ADOPT:
        case LWS_CALLBACK_RAW_RX:
                /* lws turns a request line it cannot parse (CONNECT, junk)
                 * into a raw socket with no timeout: close it. */
                return -1;
        case LWS_CALLBACK_WSI_DESTROY:
                if (h)
                        conn_remove(h, wsi);
                return 0;
        case LWS_CALLBACK_HTTP:
                return begin_response(wsi, h, pss, in ? (const char *)in : "/");
        case LWS_CALLBACK_HTTP_WRITEABLE:
                return continue_response(wsi, h, pss);
        case LWS_CALLBACK_HTTP_BODY:
        case LWS_CALLBACK_HTTP_BODY_COMPLETION:
                return 0; /* request bodies are ignored (405 anyway) */
        case LWS_CALLBACK_CLOSED_HTTP:
        case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
                if (pss)
                        pss_clear(pss);
                return 0;
        default:
                return lws_callback_http_dummy(wsi, reason, user, in, len);
        }
}

static const struct lws_protocols protocols[] = {
    {"http", callback_http, sizeof(pss_t), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void *service_main(void *arg)
{
        par_http_t *h = arg;

        while (!atomic_load(&h->stopping))
                if (lws_service(h->ctx, 0) < 0)
                        break;
        return NULL;
}

/* ------------------------------------------------------------ lifecycle */

par_err_t par_http_new(par_http_t **out, const char *listen, par_error_t *err)
{
        par_http_t *h = NULL;
        const char *colon;
        char *endp;
        long port;
        size_t hostlen;

        if (!listen || !(colon = strrchr(listen, ':')))
                return par_error_set(err, PAR_ERR_INVALID,
                                     "http listen address '%s': want "
                                     "host:port",
                                     listen ? listen : "(null)");
        errno = 0;
        port = strtol(colon + 1, &endp, 10);
        if (colon[1] == '\0' || *endp || errno || port < 0 || port > 65535)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "http listen address '%s': bad port",
                                     listen);
        h = calloc(1, sizeof(*h));
        if (!h || !(h->listen = strdup(listen)))
                goto nomem;
        hostlen = (size_t)(colon - listen);
        if (hostlen >= 2 && listen[0] == '[' && listen[hostlen - 1] == ']') {
                if (!(h->host = strndup(listen + 1, hostlen - 2)))
                        goto nomem;
        } else if (hostlen == 9 && !strncmp(listen, "localhost", 9)) {
                if (!(h->host = strdup("127.0.0.1"))) /* lws wants an IP */
                        goto nomem;
        } else if (hostlen && !(hostlen == 1 && listen[0] == '*') &&
                   !(hostlen == 7 && !strncmp(listen, "0.0.0.0", 7))) {
                if (!(h->host = strndup(listen, hostlen)))
                        goto nomem;
        } /* else every interface */
        h->port = (int)port;
        atomic_init(&h->stopping, false);
        *out = h;
        return PAR_OK;
nomem:
        par_http_destroy(h);
        return par_error_set(err, PAR_ERR_NOMEM, "http: out of memory");
}

par_err_t par_http_route(par_http_t *h, const char *path,
                         par_http_handler_fn fn, void *opaque, par_error_t *err)
{
        route_t *r;

        if (!h || !path || path[0] != '/' || !fn)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "http route '%s': path must start with "
                                     "'/' and have a handler",
                                     path ? path : "(null)");
        if (h->running)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "http route %s: server already started",
                                     path);
        if (find_route(h, path))
                return par_error_set(err, PAR_ERR_INVALID,
                                     "http route %s: already registered", path);
        if (h->nroutes == MAX_ROUTES)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "http route %s: more than %d routes", path,
                                     MAX_ROUTES);
        r = &h->routes[h->nroutes];
        if (!(r->path = strdup(path)))
                return par_error_set(err, PAR_ERR_NOMEM, "http: out of memory");
        r->fn = fn;
        r->opaque = opaque;
        h->nroutes++;
        return PAR_OK;
}

/* True when something now listens on h's port at h's address: a connect
 * to it succeeds. Checked once at start, so a bind that failed inside lws
 * cannot pass as "listening". */
static bool bound(const par_http_t *h)
{
        struct addrinfo hints = {0}, *ai = NULL;
        char port[16];
        bool ok = false;

        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
        snprintf(port, sizeof(port), "%d", h->bound_port);
        if (getaddrinfo(h->host ? h->host : "127.0.0.1", port, &hints, &ai))
                return false;
        for (struct addrinfo *a = ai; a && !ok; a = a->ai_next) {
                int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC,
                                a->ai_protocol);
                if (fd < 0)
                        continue;
                ok = connect(fd, a->ai_addr, a->ai_addrlen) == 0;
                close(fd);
        }
        freeaddrinfo(ai);
        return ok;
}

par_err_t par_http_start(par_http_t *h, par_error_t *err)
{
        struct lws_context_creation_info info;

        if (!h)
                return par_error_set(err, PAR_ERR_INVALID, "http: no server");
        if (h->running)
                return PAR_OK;
        par_lws_init();

        memset(&info, 0, sizeof(info));
        info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
        info.port = CONTEXT_PORT_NO_LISTEN;
        info.user = h;
        /* Per context in lws 4.1: bounds the time from a request's headers
         * to the end of its response. */
        info.timeout_secs = SEND_TIMEOUT;
        info.gid = -1;
        info.uid = -1;
        h->ctx = lws_create_context(&info);
        if (!h->ctx)
                return par_error_set(err, PAR_ERR_IO,
                                     "http %s: cannot create lws context",
                                     h->listen);

        memset(&info, 0, sizeof(info));
        info.vhost_name = "parallel";
        info.port = h->port;
        info.iface = h->host;
        info.protocols = protocols;
        info.keepalive_timeout = IDLE_TIMEOUT;
        info.timeout_secs_ah_idle = HEADER_TIMEOUT;
        /* An IPv4 address must be bound as an IPv4 socket. */
        if (h->host && !strchr(h->host, ':'))
                info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
        h->vhost = lws_create_vhost(h->ctx, &info);
        if (!h->vhost) {
                lws_context_destroy(h->ctx);
                h->ctx = NULL;
                return par_error_set(err, PAR_ERR_IO,
                                     "http %s: cannot listen (address in "
                                     "use or not local?)",
                                     h->listen);
        }
        h->bound_port = lws_get_vhost_listen_port(h->vhost);
        if (h->bound_port <= 0 || !bound(h)) {
                /* lws logs a failed bind and still returns the vhost:
                 * an address this host does not have must fail here. */
                lws_context_destroy(h->ctx);
                h->ctx = NULL;
                h->vhost = NULL;
                return par_error_set(err, PAR_ERR_IO,
                                     "http %s: cannot listen (address in "
                                     "use or not local?)",
                                     h->listen);
        }
        atomic_store(&h->stopping, false);
        if (pthread_create(&h->thread, NULL, service_main, h)) {
                lws_context_destroy(h->ctx);
                h->ctx = NULL;
                h->vhost = NULL;
                return par_error_set(err, PAR_ERR_IO,
                                     "http %s: cannot start thread", h->listen);
        }
        h->running = true;
        par_log(PAR_LOG_INFO, "http", "listening", "addr=%s port=%d",
                h->host ? h->host : "*", h->bound_port);
        return PAR_OK;
}

int par_http_port(const par_http_t *h)
{
        return h && h->running ? h->bound_port : 0;
}

void par_http_stop(par_http_t *h)
{
        if (!h || !h->running)
                return;
        atomic_store(&h->stopping, true);
        lws_cancel_service(h->ctx);
        pthread_join(h->thread, NULL);
        lws_context_destroy(h->ctx);
        h->ctx = NULL;
        h->vhost = NULL;
        h->running = false;
        h->bound_port = 0;
}

void par_http_destroy(par_http_t *h)
{
        if (!h)
                return;
        par_http_stop(h);
        for (size_t i = 0; i < h->nroutes; i++)
                free(h->routes[i].path);
        free(h->host);
        free(h->listen);
        free(h);
}
