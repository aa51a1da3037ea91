/* httpc.c — see httpc.h. */
#include "net/httpc.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"

#define DEFAULT_TIMEOUT_MS 5000

struct par_httpc {
        int fd;
        bool spent; /* the server will close, or has closed */
        char host[256], port[16];
        /* Bytes read past the previous reply (none from a well-behaved
         * server, which answers one request at a time). */
        char *buf;
        size_t len, cap;
};

/* Waits for fd to be ready for `ev` before the monotonic deadline. */
static bool wait_fd(int fd, short ev, int64_t deadline)
{
        struct pollfd pfd = {.fd = fd, .events = ev};
        int r;

        do {
                int64_t left = deadline - par_clock_mono_ms();
                if (left <= 0)
                        return false;
                r = poll(&pfd, 1, (int)left);
        } while (r < 0 && errno == EINTR);
        return r > 0;
}

static int64_t deadline_in(int timeout_ms)
{
        return par_clock_mono_ms() +
               (timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS);
}

static par_err_t parse_endpoint(const char *endpoint, char *host, size_t hn,
                                char *port, size_t pn, par_error_t *err)
{
        char tmp[256], *colon;

        if (!endpoint)
                return par_error_set(err, PAR_ERR_INVALID, "no endpoint");
        if (!strncmp(endpoint, "http://", 7))
                endpoint += 7;
        snprintf(tmp, sizeof(tmp), "%s", endpoint);
        tmp[strcspn(tmp, "/")] = '\0';
        colon = strrchr(tmp, ':');
        if (!colon || !colon[1] || colon == tmp)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "endpoint '%s': expected host:port",
                                     endpoint);
        *colon = '\0';
        /* "[::1]:9222" → "::1" */
        if (tmp[0] == '[' && colon[-1] == ']') {
                colon[-1] = '\0';
                snprintf(host, hn, "%s", tmp + 1);
        } else {
                snprintf(host, hn, "%s", tmp);
        }
        snprintf(port, pn, "%s", colon + 1);
        return PAR_OK;
}

static par_err_t connect_by(par_httpc_t *c, int64_t deadline, par_error_t *err)
{
        struct addrinfo hints = {0}, *ai = NULL;
        int gai, soerr = 0;
        socklen_t sl = sizeof(soerr);
        par_err_t rc = PAR_OK;

        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        if ((gai = getaddrinfo(c->host, c->port, &hints, &ai)))
                return par_error_set(err, PAR_ERR_IO, "endpoint %s:%s: %s",
                                     c->host, c->port, gai_strerror(gai));
        c->fd = socket(ai->ai_family,
                       SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
                rc = par_error_set(err, PAR_ERR_IO, "socket: %s",
                                   strerror(errno));
                goto out;
        }
        if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) &&
            errno != EINPROGRESS) {
                rc = par_error_set(err, PAR_ERR_IO, "endpoint %s:%s: %s",
                                   c->host, c->port, strerror(errno));
                goto out;
        }
        if (!wait_fd(c->fd, POLLOUT, deadline)) {
                rc = par_error_set(err, PAR_ERR_TIMEOUT,
                                   "endpoint %s:%s: connect timed out", c->host,
                                   c->port);
                goto out;
        }
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (soerr)
                rc = par_error_set(err, PAR_ERR_IO, "endpoint %s:%s: %s",
                                   c->host, c->port, strerror(soerr));
out:
        freeaddrinfo(ai);
        return rc;
}

static par_err_t open_by(par_httpc_t **out, const char *endpoint,
                         int64_t deadline, par_error_t *err)
{
        par_httpc_t *c = calloc(1, sizeof(*c));
        par_err_t rc;

        if (!c)
                return par_error_set(err, PAR_ERR_NOMEM, "http: out of memory");
        c->fd = -1;
        if ((rc = parse_endpoint(endpoint, c->host, sizeof(c->host), c->port,
                                 sizeof(c->port), err)) ||
            (rc = connect_by(c, deadline, err))) {
                par_httpc_close(c);
                return rc;
        }
        *out = c;
        return PAR_OK;
}

par_err_t par_httpc_open(par_httpc_t **out, const char *endpoint,
                         int timeout_ms, par_error_t *err)
{
        return open_by(out, endpoint, deadline_in(timeout_ms), err);
}

static par_err_t send_all(par_httpc_t *c, const char *p, size_t n,
                          int64_t deadline, par_error_t *err)
{
        while (n) {
                ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
                if (w < 0 && (errno == EINTR || errno == EAGAIN)) {
                        if (!wait_fd(c->fd, POLLOUT, deadline))
                                return par_error_set(
                                    err, PAR_ERR_TIMEOUT,
                                    "endpoint %s:%s: send timed out", c->host,
                                    c->port);
                        continue;
                }
                if (w <= 0)
                        return par_error_set(err, PAR_ERR_IO,
                                             "endpoint %s:%s: send: %s",
                                             c->host, c->port, strerror(errno));
                p += w;
                n -= (size_t)w;
        }
        return PAR_OK;
}

/* Reads more into c->buf; *eof tells whether the peer has closed. */
static par_err_t read_more(par_httpc_t *c, int64_t deadline, const char *what,
                           bool *eof, par_error_t *err)
{
        for (;;) {
                ssize_t r;
                if (c->len + 1 >= c->cap) {
                        size_t cap = c->cap ? c->cap * 2 : 16384;
                        char *p;
                        if (cap > 2 * (size_t)PAR_HTTPC_MAX_REPLY)
                                return par_error_set(err, PAR_ERR_IO,
                                                     "endpoint %s:%s: %s: "
                                                     "reply too large",
                                                     c->host, c->port, what);
                        if (!(p = realloc(c->buf, cap)))
                                return par_error_set(err, PAR_ERR_NOMEM,
                                                     "http: out of memory");
                        c->buf = p;
                        c->cap = cap;
                }
                if (!wait_fd(c->fd, POLLIN, deadline))
                        return par_error_set(err, PAR_ERR_TIMEOUT,
                                             "endpoint %s:%s: no %s reply in "
                                             "time",
                                             c->host, c->port, what);
                r = recv(c->fd, c->buf + c->len, c->cap - 1 - c->len, 0);
                if (r < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (r < 0)
                        return par_error_set(err, PAR_ERR_IO,
                                             "endpoint %s:%s: %s: %s", c->host,
                                             c->port, what, strerror(errno));
                c->len += (size_t)r;
                c->buf[c->len] = '\0';
                *eof = r == 0;
                return PAR_OK;
        }
}

static bool has_body(const char *method, int status)
{
        return strcmp(method, "HEAD") && status >= 200 && status != 204 &&
               status != 304;
}

/* The status line and headers (the first hlen bytes of c->buf) into r;
 * *want becomes the body length, SIZE_MAX when framed by EOF or by chunks
 * (*chunked). */
static par_err_t parse_head(par_httpc_t *c, const char *method,
                            const char *what, size_t hlen, par_httpc_reply_t *r,
                            size_t *want, bool *chunked, par_error_t *err)
{
        const char *cl, *te;

        if (!(r->headers = strndup(c->buf, hlen)))
                return par_error_set(err, PAR_ERR_NOMEM, "http: out of memory");
        if (sscanf(r->headers, "HTTP/1.%*d %d", &r->status) != 1)
                return par_error_set(err, PAR_ERR_IO,
                                     "endpoint %s:%s: %s: not an HTTP reply",
                                     c->host, c->port, what);
        if ((cl = strcasestr(r->headers, "\r\ncontent-length:")))
                r->content_length = strtol(cl + 17, NULL, 10);
        te = strcasestr(r->headers, "\r\ntransfer-encoding:");
        if (!has_body(method, r->status))
                *want = 0;
        else if (te && strcasestr(te, "chunked") &&
                 strcasestr(te, "chunked") < strstr(te + 2, "\r\n"))
                *chunked = true; /* overrides any Content-Length */
        else if (r->content_length >= 0)
                *want = (size_t)r->content_length;
        if (*want != SIZE_MAX && *want > PAR_HTTPC_MAX_REPLY)
                return par_error_set(err, PAR_ERR_IO,
                                     "endpoint %s:%s: %s: reply too large",
                                     c->host, c->port, what);
        return PAR_OK;
}

/*
 * Walks a chunked body (RFC 9112, 7.1) in p[0..n), p[n] being a NUL.
 * Returns 1 when it is complete (*wire: its bytes on the wire, trailers
 * included; *size: the data's), 0 when more must be read, -1 when it is
 * malformed. With out (*size bytes), copies the data there.
 */
static int chunks(const char *p, size_t n, char *out, size_t *wire,
                  size_t *size)
{
        size_t at = 0, total = 0;

        for (;;) {
                const char *eol = memmem(p + at, n - at, "\r\n", 2);
                char *end;
                if (!eol) /* a size line is short; extensions are ignored */
                        return n - at > 1024 ? -1 : 0;
                if (!isxdigit((unsigned char)p[at]))
                        return -1;
                unsigned long long len = strtoull(p + at, &end, 16);
                if (end > eol ||
                    (end < eol && *end != ';' && *end != ' ' && *end != '\t'))
                        return -1;
                at = (size_t)(eol - p) + 2;
                if (!len) {
                        /* trailer lines, then a blank one */
                        for (;;) {
                                const char *t =
                                    memmem(p + at, n - at, "\r\n", 2);
                                if (!t)
                                        return 0;
                                bool blank = t == p + at;
                                at = (size_t)(t - p) + 2;
                                if (blank) {
                                        *wire = at;
                                        *size = total;
                                        return 1;
                                }
                        }
                }
                if (len > PAR_HTTPC_MAX_REPLY - total)
                        return -1;
                if (n - at < len + 2)
                        return 0;
                if (memcmp(p + at + len, "\r\n", 2))
                        return -1;
                if (out)
                        memcpy(out + total, p + at, len);
                total += len;
                at += len + 2;
        }
}

par_err_t par_httpc_request(par_httpc_t *c, const char *method,
                            const char *path, int flags, int timeout_ms,
                            par_httpc_reply_t *reply, par_error_t *err)
{
        int64_t deadline = deadline_in(timeout_ms);
        par_httpc_reply_t r = {.content_length = -1};
        char req[8192], what[300];
        size_t hlen = 0, want = SIZE_MAX, wire = 0;
        bool eof, chunked = false;
        par_err_t rc;
        int n;

        if (!c || c->fd < 0 || c->spent)
                return par_error_set(err, PAR_ERR_INVALID,
                                     "http: connection not usable");
        snprintf(what, sizeof(what), "%s %s", method, path);
        /* Chromium checks Host against DNS rebinding: an IP or localhost,
         * which is what the endpoint holds. */
        n = snprintf(req, sizeof(req),
                     "%s %s HTTP/1.1\r\nHost: %s:%s\r\n%s\r\n", method, path,
                     c->host, c->port,
                     flags & PAR_HTTPC_CLOSE ? "Connection: close\r\n" : "");
        if (n < 0 || (size_t)n >= sizeof(req))
                return par_error_set(err, PAR_ERR_INVALID,
                                     "http: request line too long");
        if (flags & PAR_HTTPC_CLOSE)
                c->spent = true;
        if ((rc = send_all(c, req, (size_t)n, deadline, err)))
                return rc;
        for (;;) {
                if (!hlen) {
                        char *e = c->len ? strstr(c->buf, "\r\n\r\n") : NULL;
                        if (e && (rc = parse_head(c, method, what,
                                                  (size_t)(e + 4 - c->buf), &r,
                                                  &want, &chunked, err)))
                                goto fail;
                        if (e)
                                hlen = (size_t)(e + 4 - c->buf);
                }
                if (hlen && chunked) {
                        int k = chunks(c->buf + hlen, c->len - hlen, NULL,
                                       &wire, &want);
                        if (k > 0)
                                break;
                        if (k < 0) {
                                rc = par_error_set(err, PAR_ERR_IO,
                                                   "endpoint %s:%s: %s: "
                                                   "malformed chunked body",
                                                   c->host, c->port, what);
                                goto fail;
                        }
                }
                if (hlen && !chunked && want != SIZE_MAX &&
                    c->len - hlen >= want) {
                        wire = want;
                        break;
                }
                if ((rc = read_more(c, deadline, what, &eof, err)))
                        goto fail;
                if (eof) {
                        c->spent = true;
                        if (hlen && !chunked && want == SIZE_MAX) {
                                want = wire = c->len - hlen; /* by EOF */
                                break;
                        }
                        rc = par_error_set(err, PAR_ERR_IO,
                                           "endpoint %s:%s: %s: connection "
                                           "closed mid-reply",
                                           c->host, c->port, what);
                        goto fail;
                }
        }
        if (!(r.body = malloc(want + 1)))
                goto nomem;
        if (chunked)
                (void)chunks(c->buf + hlen, c->len - hlen, r.body, &wire,
                             &want);
        else
                memcpy(r.body, c->buf + hlen, want);
        r.body[want] = '\0';
        r.body_len = want;
        /* Keep what follows the reply for the next one. */
        memmove(c->buf, c->buf + hlen + wire, c->len - hlen - wire);
        c->len -= hlen + wire;
        c->buf[c->len] = '\0';
        *reply = r;
        return PAR_OK;
nomem:
        rc = par_error_set(err, PAR_ERR_NOMEM, "http: out of memory");
fail:
        c->spent = true; /* the stream is out of step now */
        par_httpc_reply_free(&r);
        return rc;
}

void par_httpc_close(par_httpc_t *c)
{
        if (!c)
                return;
        if (c->fd >= 0)
                close(c->fd);
        free(c->buf);
        free(c);
}

par_err_t par_httpc_get(const char *endpoint, const char *path, int timeout_ms,
                        par_httpc_reply_t *reply, par_error_t *err)
{
        int64_t deadline = deadline_in(timeout_ms);
        par_httpc_t *c = NULL;
        par_err_t rc;
        int64_t left;

        if ((rc = open_by(&c, endpoint, deadline, err)))
                return rc;
        left = deadline - par_clock_mono_ms();
        rc = par_httpc_request(c, "GET", path, PAR_HTTPC_CLOSE,
                               left > 0 ? (int)left : 1, reply, err);
        par_httpc_close(c);
        return rc;
}

size_t par_httpc_escape(char *out, size_t size, const char *s)
{
        static const char hex[] = "0123456789ABCDEF";
        size_t n = 0;

        for (; *s; s++) {
                unsigned char ch = (unsigned char)*s;
                bool plain = isalnum(ch) || strchr("-._~", ch);
                char enc[3] = {'%', hex[ch >> 4], hex[ch & 15]};
                for (int i = 0; i < (plain ? 1 : 3); i++, n++)
                        if (n + 1 < size)
                                out[n] = plain ? (char)ch : enc[i];
        }
        if (size)
                out[n < size ? n : size - 1] = '\0';
        return n;
}

void par_httpc_reply_free(par_httpc_reply_t *r)
{
        if (!r)
                return;
        free(r->headers);
        free(r->body);
        memset(r, 0, sizeof(*r));
        r->content_length = -1;
}
