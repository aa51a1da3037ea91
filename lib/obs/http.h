/*
 * http.h — a tiny HTTP/1.1 server for a node's observability endpoints
 * (/health, /metrics, /status, the dashboard page), built on libwebsockets'
 * server mode with its own service thread.
 *
 * Usage:
 *   par_http_t *h;
 *   par_http_new(&h, "127.0.0.1:9280", &err);
 *   par_http_route(h, "/metrics", metrics_handler, registry, &err);
 *   par_http_route(h, "/health", health_handler, node, &err);
 *   par_http_start(h, &err);               // binds, starts the thread
 *   printf("%d\n", par_http_port(h));      // the bound port (port 0 works)
 *   ...
 *   par_http_destroy(h);                   // stops, joins, frees
 *
 * Requests. Only GET and HEAD are served (405 otherwise). The path is
 * matched exactly against the registered routes after the query string is
 * split off (query is passed to the handler without the '?', "" if none);
 * an unknown path gets 404. Responses carry Content-Length, are never
 * chunked, are sent with `Cache-Control: no-store`, and the connection is
 * kept alive per HTTP/1.1 unless the client asks otherwise.
 *
 * Threads. Handlers run on the server's service thread, one at a time, while
 * other threads keep working: whatever a handler reads must be safe to read
 * concurrently (metrics handles are; other state needs the owner's lock).
 * A handler must not block for long: every other request waits behind it.
 * par_http_* functions other than handlers' helpers are called from the
 * owning thread only (typically main()).
 */
#ifndef PAR_HTTP_H
#define PAR_HTTP_H

#include <stddef.h>

#include "base/err.h"

typedef struct par_http par_http_t;

/* A response body being built by a handler. Owned by the server; valid only
 * during the handler call. */
typedef struct par_http_body par_http_body_t;

/* Appends len bytes / formatted text to the body. Return PAR_ERR_NOMEM on
 * allocation failure (the server then answers 500). */
par_err_t par_http_body_append(par_http_body_t *b, const void *data,
                               size_t len);
par_err_t par_http_body_printf(par_http_body_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * A route handler. Builds the response body in `body` and returns the HTTP
 * status code (200, 404, 500, 503, …). *content_type starts as
 * "text/plain; charset=utf-8"; set it to a static string to change it
 * (e.g. "application/json", "text/html; charset=utf-8",
 * "text/plain; version=0.0.4; charset=utf-8" for Prometheus). A return
 * value outside 100..599 is answered with 500. Runs on the service thread.
 */
typedef int (*par_http_handler_fn)(void *opaque, const char *path,
                                   const char *query, par_http_body_t *body,
                                   const char **content_type);

/* A ready-made handler serving a metrics registry (opaque is the
 * par_metrics_t *) in Prometheus text format 0.0.4. */
int par_http_metrics_handler(void *registry, const char *path,
                             const char *query, par_http_body_t *body,
                             const char **content_type);

/*
 * Creates a stopped server for `listen` = "host:port": host is an IPv4
 * address, "[IPv6]", "localhost" (= 127.0.0.1), or "*"/"0.0.0.0" for every
 * interface; port 0 picks an ephemeral port (see par_http_port). Validates
 * the syntax; binds nothing yet. Errors name the bad address.
 */
par_err_t par_http_new(par_http_t **out, const char *listen, par_error_t *err);

/* Registers fn for the exact path (must start with '/'). Only before
 * par_http_start. opaque is borrowed and must outlive the server. A path
 * registered twice is an error. */
par_err_t par_http_route(par_http_t *h, const char *path,
                         par_http_handler_fn fn, void *opaque,
                         par_error_t *err);

/* Binds and starts the service thread. On failure (address in use, …)
 * nothing is left running and the error names the address. */
par_err_t par_http_start(par_http_t *h, par_error_t *err);

/* The bound TCP port once started (useful with port 0), else 0. */
int par_http_port(const par_http_t *h);

/* Stops the service thread (closing open connections) and joins it. Safe to
 * call when not started or already stopped. */
void par_http_stop(par_http_t *h);

/* Stops (if running) and frees. Accepts NULL. */
void par_http_destroy(par_http_t *h);

#endif
