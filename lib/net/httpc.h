/*
 * httpc.h — the one HTTP/1.1 client: small requests to local endpoints
 * (Chromium's /json/version, a node's /health, /metrics and /status in
 * tests and benchmarks).
 *
 * Plain blocking sockets with poll() deadlines rather than an lws client
 * context: every use is one short request on a loopback port, for which a
 * context and its service thread would be heavier than the request. The
 * reply is framed by Content-Length (Chromium keeps the connection open
 * whatever Connection says, so reading to EOF would hang) or, when a
 * server sends none, read to EOF; chunked replies (Prometheus's API sends
 * them for anything over a few kB) are joined. No TLS, no redirects: none
 * of the endpoints it talks to use them.
 *
 * Usage:
 *   par_httpc_reply_t r;
 *   if (!par_httpc_get("127.0.0.1:9280", "/health", 2000, &r, &err)) {
 *           printf("%d %s", r.status, r.body);
 *           par_httpc_reply_free(&r);
 *   }
 * or, for several requests on one keep-alive connection,
 * par_httpc_open / par_httpc_request … / par_httpc_close.
 *
 * Threads: a par_httpc_t belongs to one thread at a time; the functions
 * keep no other state.
 */
#ifndef PAR_NET_HTTPC_H
#define PAR_NET_HTTPC_H

#include <stddef.h>

#include "base/err.h"

/* Replies larger than this are refused (PAR_ERR_IO). */
#define PAR_HTTPC_MAX_REPLY (64u << 20)

typedef struct par_httpc par_httpc_t;

/* One response. Owned by the caller once a request succeeded; release
 * with par_httpc_reply_free. */
typedef struct par_httpc_reply {
        int status;          /* 200, 404, … */
        long content_length; /* as sent, -1 if the header was absent */
        char *headers; /* status line and header lines, up to and including
                          the blank line; NUL-terminated */
        char *body;    /* NUL-terminated (the NUL is not counted) */
        size_t body_len;
} par_httpc_reply_t;

/* Request flags. */
#define PAR_HTTPC_CLOSE 1 /* send Connection: close */

/*
 * Connects to `endpoint`: "host:port", optionally with a leading "http://"
 * and a trailing path (ignored). Waits at most timeout_ms (<= 0: 5000).
 * *out is written only on success. Errors name the endpoint.
 */
par_err_t par_httpc_open(par_httpc_t **out, const char *endpoint,
                         int timeout_ms, par_error_t *err);

/*
 * Sends `method path` and reads the whole reply into *reply (written only
 * on success) within timeout_ms (<= 0: 5000). HEAD replies (and 1xx, 204,
 * 304) have no body whatever Content-Length says. After a reply without
 * Content-Length, or with PAR_HTTPC_CLOSE, the connection cannot be used
 * again.
 */
par_err_t par_httpc_request(par_httpc_t *c, const char *method,
                            const char *path, int flags, int timeout_ms,
                            par_httpc_reply_t *reply, par_error_t *err);

/* Closes and frees. Accepts NULL. */
void par_httpc_close(par_httpc_t *c);

/* One GET on a fresh connection (Connection: close), all within
 * timeout_ms. */
par_err_t par_httpc_get(const char *endpoint, const char *path, int timeout_ms,
                        par_httpc_reply_t *reply, par_error_t *err);

/*
 * Percent-encodes s as one query-string component (everything but
 * A-Z a-z 0-9 - . _ ~), e.g. a PromQL expression for "?query=". Writes at
 * most size bytes, NUL included, and returns the length the whole
 * encoding needs (as snprintf does). Any thread.
 */
size_t par_httpc_escape(char *out, size_t size, const char *s);

/* Frees what a reply holds and zeroes it. Accepts NULL and a zeroed
 * reply. */
void par_httpc_reply_free(par_httpc_reply_t *r);

#endif
