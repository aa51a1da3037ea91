/*
 * http_test.c — the observability server on an ephemeral port, exercised
 * with the HTTP client (net/httpc), which this also tests: routes, 404/405/500,
 * HEAD, query strings, large bodies, keep-alive, concurrent clients, bind
 * failure, stop/restart; and, against canned replies from a raw socket, the
 * client's chunked decoding and query escaping.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"
#include "net/httpc.h"
#include "obs/http.h"
#include "obs/metrics.h"
#include "testutil.h"

/* ------------------------------------------------------------- handlers */

static atomic_int health_calls;

static int health(void *opaque, const char *path, const char *query,
                  par_http_body_t *body, const char **ctype)
{
        atomic_fetch_add(&health_calls, 1);
        par_http_body_printf(body, "ok\n");
        return 200;
}

static int echo(void *opaque, const char *path, const char *query,
                par_http_body_t *body, const char **ctype)
{
        *ctype = "application/json";
        par_http_body_printf(body, "{\"path\":\"%s\",\"query\":\"%s\"}", path,
                             query);
        return 200;
}

#define BIG (300 * 1000 + 7)

static int big(void *opaque, const char *path, const char *query,
               par_http_body_t *body, const char **ctype)
{
        char line[100];
        for (size_t n = 0; n < BIG;) {
                size_t k = BIG - n < sizeof(line) ? BIG - n : sizeof(line);
                for (size_t i = 0; i < k; i++)
                        line[i] = (char)('a' + (n + i) % 26);
                par_http_body_append(body, line, k);
                n += k;
        }
        return 200;
}

static int busy(void *opaque, const char *path, const char *query,
                par_http_body_t *body, const char **ctype)
{
        par_http_body_printf(body, "draining\n");
        return 503;
}

static int broken(void *opaque, const char *path, const char *query,
                  par_http_body_t *body, const char **ctype)
{
        par_http_body_printf(body, "secret internals");
        return 42;
}

/* --------------------------------------------------------------- client */

typedef par_httpc_reply_t resp_t;

static par_httpc_t *connect_port(int port)
{
        char endpoint[32];
        par_httpc_t *c = NULL;

        snprintf(endpoint, sizeof(endpoint), "127.0.0.1:%d", port);
        return par_httpc_open(&c, endpoint, 5000, NULL) ? NULL : c;
}

/* One request on a fresh connection with Connection: close. */
static int request(int port, const char *method, const char *path, resp_t *r)
{
        par_httpc_t *c = connect_port(port);
        int rc;

        if (!c)
                return -1;
        rc = par_httpc_request(c, method, path, PAR_HTTPC_CLOSE, 5000, r, NULL)
                 ? -1
                 : 0;
        par_httpc_close(c);
        return rc;
}

#define resp_free par_httpc_reply_free

/* ---------------------------------------------------------------- tests */

static void test_addresses(void)
{
        par_http_t *h = NULL;
        par_error_t err;

        CHECK(par_http_new(&h, "127.0.0.1", &err) == PAR_ERR_INVALID);
        CHECK(strstr(err.msg, "127.0.0.1") != NULL);
        CHECK(par_http_new(&h, "127.0.0.1:99999", &err) == PAR_ERR_INVALID);
        CHECK(par_http_new(&h, "127.0.0.1:", &err) == PAR_ERR_INVALID);
        CHECK(par_http_new(&h, "127.0.0.1:80x", &err) == PAR_ERR_INVALID);
        CHECK(h == NULL);
        REQUIRE(par_http_new(&h, "localhost:0", &err) == PAR_OK);
        CHECK(par_http_route(h, "health", health, NULL, &err) ==
              PAR_ERR_INVALID);
        CHECK(par_http_route(h, "/health", health, NULL, &err) == PAR_OK);
        CHECK(par_http_route(h, "/health", health, NULL, &err) ==
              PAR_ERR_INVALID);
        CHECK(par_http_port(h) == 0); /* not started */
        par_http_stop(h);             /* not started: harmless */
        par_http_destroy(h);
        par_http_destroy(NULL);
}

static void test_requests(void)
{
        par_http_t *h = NULL;
        par_metrics_t *m = NULL;
        par_error_t err;
        resp_t r;
        int port;

        REQUIRE(par_metrics_new(&m, &err) == PAR_OK);
        par_counter_add(par_metrics_counter(m, "parallel_test_events", NULL,
                                            "Test events."),
                        3);
        REQUIRE(par_http_new(&h, "127.0.0.1:0", &err) == PAR_OK);
        REQUIRE(par_http_route(h, "/health", health, NULL, &err) == PAR_OK);
        REQUIRE(par_http_route(h, "/metrics", par_http_metrics_handler, m,
                               &err) == PAR_OK);
        REQUIRE(par_http_route(h, "/status", echo, NULL, &err) == PAR_OK);
        REQUIRE(par_http_route(h, "/big", big, NULL, &err) == PAR_OK);
        REQUIRE(par_http_route(h, "/busy", busy, NULL, &err) == PAR_OK);
        REQUIRE(par_http_route(h, "/broken", broken, NULL, &err) == PAR_OK);
        REQUIRE(par_http_start(h, &err) == PAR_OK);
        port = par_http_port(h);
        CHECKF(port > 0 && port < 65536, "port %d", port);
        CHECK(par_http_route(h, "/late", health, NULL, &err) ==
              PAR_ERR_INVALID);

        REQUIRE(request(port, "GET", "/health", &r) == 0);
        CHECK(r.status == 200);
        CHECK_STR(r.body, "ok\n");
        CHECK(r.content_length == 3);
        CHECK(strcasestr(r.headers, "content-type: text/plain") != NULL);
        CHECK(strcasestr(r.headers, "cache-control: no-store") != NULL);
        resp_free(&r);

        REQUIRE(request(port, "GET", "/metrics", &r) == 0);
        CHECK(r.status == 200);
        CHECK(strstr(r.body, "parallel_test_events_total 3\n") != NULL);
        CHECK(strcasestr(r.headers, "text/plain; version=0.0.4") != NULL);
        CHECK(r.content_length == (long)r.body_len);
        resp_free(&r);

        REQUIRE(request(port, "GET", "/nope", &r) == 0);
        CHECK(r.status == 404);
        resp_free(&r);
        REQUIRE(request(port, "GET", "/health/extra", &r) == 0);
        CHECK(r.status == 404);
        resp_free(&r);

        REQUIRE(request(port, "POST", "/health", &r) == 0);
        CHECK(r.status == 405);
        resp_free(&r);

        REQUIRE(request(port, "HEAD", "/health", &r) == 0);
        CHECK(r.status == 200);
        CHECK(r.content_length == 3);
        CHECK(r.body_len == 0);
        resp_free(&r);

        REQUIRE(request(port, "GET", "/status?verbose=1&x=y", &r) == 0);
        CHECK(r.status == 200);
        CHECK_STR(r.body, "{\"path\":\"/status\",\"query\":\"verbose=1&x=y\"}");
        CHECK(strcasestr(r.headers, "content-type: application/json") != NULL);
        resp_free(&r);

        REQUIRE(request(port, "GET", "/big", &r) == 0);
        CHECK(r.status == 200);
        CHECKF(r.body_len == BIG, "%zu", r.body_len);
        if (r.body_len == BIG)
                CHECK(r.body[0] == 'a' &&
                      r.body[BIG - 1] == (char)('a' + (BIG - 1) % 26));
        resp_free(&r);

        REQUIRE(request(port, "GET", "/busy", &r) == 0);
        CHECK(r.status == 503);
        CHECK_STR(r.body, "draining\n");
        resp_free(&r);

        REQUIRE(request(port, "GET", "/broken", &r) == 0);
        CHECK(r.status == 500);
        CHECK(strstr(r.body, "secret") == NULL);
        resp_free(&r);

        /* keep-alive: three requests on one connection */
        {
                par_httpc_t *c = connect_port(port);
                int ok = 1;
                REQUIRE(c != NULL);
                for (int i = 0; i < 3 && ok; i++) {
                        ok = par_httpc_request(c, "GET", "/health", 0, 5000, &r,
                                               NULL) == PAR_OK;
                        CHECKF(ok, "keep-alive request %d", i);
                        if (ok) {
                                CHECK(r.status == 200);
                                CHECK_STR(r.body, "ok\n");
                                resp_free(&r);
                        }
                }
                par_httpc_close(c);
        }

        par_http_destroy(h);
        par_metrics_destroy(m);
}

#define CLIENTS    8
#define PER_CLIENT 40

static atomic_int concurrent_ok;

static void *client_main(void *arg)
{
        int port = *(int *)arg;
        for (int i = 0; i < PER_CLIENT; i++) {
                resp_t r;
                const char *path = i % 2 ? "/health" : "/big";
                if (request(port, "GET", path, &r))
                        continue;
                if (r.status == 200 && r.body_len == (i % 2 ? 3u : (size_t)BIG))
                        atomic_fetch_add(&concurrent_ok, 1);
                resp_free(&r);
        }
        return NULL;
}

static void test_concurrent(void)
{
        par_http_t *h = NULL;
        par_error_t err;
        pthread_t t[CLIENTS];
        int port;
        double t0;

        REQUIRE(par_http_new(&h, "127.0.0.1:0", &err) == PAR_OK);
        REQUIRE(par_http_route(h, "/health", health, NULL, &err) == PAR_OK);
        REQUIRE(par_http_route(h, "/big", big, NULL, &err) == PAR_OK);
        REQUIRE(par_http_start(h, &err) == PAR_OK);
        port = par_http_port(h);
        atomic_store(&concurrent_ok, 0);
        t0 = par_clock_mono_s();
        for (int i = 0; i < CLIENTS; i++)
                pthread_create(&t[i], NULL, client_main, &port);
        for (int i = 0; i < CLIENTS; i++)
                pthread_join(t[i], NULL);
        CHECKF(atomic_load(&concurrent_ok) == CLIENTS * PER_CLIENT,
               "%d of %d requests ok", atomic_load(&concurrent_ok),
               CLIENTS * PER_CLIENT);
        fprintf(stderr, "   %d concurrent requests (half 300 KB) in %.3f s\n",
                CLIENTS * PER_CLIENT, par_clock_mono_s() - t0);
        par_http_destroy(h);
}

static void test_bind_conflict_and_restart(void)
{
        par_http_t *a = NULL, *b = NULL;
        par_error_t err;
        char addr[64];
        resp_t r;
        int port;

        REQUIRE(par_http_new(&a, "127.0.0.1:0", &err) == PAR_OK);
        REQUIRE(par_http_route(a, "/health", health, NULL, &err) == PAR_OK);
        REQUIRE(par_http_start(a, &err) == PAR_OK);
        port = par_http_port(a);
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);

        /* the port is taken: start fails and names the address */
        REQUIRE(par_http_new(&b, addr, &err) == PAR_OK);
        CHECK(par_http_start(b, &err) == PAR_ERR_IO);
        CHECKF(strstr(err.msg, addr) != NULL, "%s", err.msg);
        CHECK(par_http_port(b) == 0);
        par_http_destroy(b);

        /* stop: the port no longer answers; a fresh start serves again */
        par_http_stop(a);
        CHECK(par_http_port(a) == 0);
        CHECK(request(port, "GET", "/health", &r) != 0);
        par_http_stop(a); /* twice is fine */
        REQUIRE(par_http_start(a, &err) == PAR_OK);
        REQUIRE(request(par_http_port(a), "GET", "/health", &r) == 0);
        CHECK(r.status == 200);
        resp_free(&r);
        /* destroy with an idle keep-alive connection still open */
        {
                par_httpc_t *c = connect_port(par_http_port(a));
                CHECK(c && par_httpc_request(c, "GET", "/health", 0, 5000, &r,
                                             NULL) == PAR_OK);
                resp_free(&r);
                double t0 = par_clock_mono_s();
                par_http_destroy(a);
                CHECK(par_clock_mono_s() - t0 < 2);
                par_httpc_close(c);
        }
}

static double now_s(void)
{
        return par_clock_mono_ms() / 1000.0;
}

/* A plain socket to the server: these tests send what no client would. */
static int raw_connect(int port)
{
        struct sockaddr_in a = {0};
        int fd = socket(AF_INET, SOCK_STREAM, 0);

        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a))) {
                close(fd);
                return -1;
        }
        return fd;
}

/* Waits up to secs for the peer to close fd (read returns 0 or an error);
 * returns the seconds it took, or -1 when it stayed open. */
static double closed_within(int fd, double secs)
{
        double t0 = now_s();
        char buf[4096];

        while (now_s() - t0 < secs) {
                struct pollfd p = {fd, POLLIN, 0};
                if (poll(&p, 1, 100) > 0) {
                        ssize_t n = read(fd, buf, sizeof(buf));
                        if (n <= 0)
                                return now_s() - t0;
                }
        }
        return -1;
}

/* Regression (issue 11): WebSocket upgrades and CONNECT were accepted and
 * never timed out; 1,100 of them took every file descriptor. */
static void test_hostile_connections(void)
{
        par_http_t *h = NULL;
        par_error_t err;
        resp_t r;
        int port, fds[300], nfd = 0;

        REQUIRE(par_http_new(&h, "127.0.0.1:0", &err) == PAR_OK);
        REQUIRE(par_http_route(h, "/health", health, NULL, &err) == PAR_OK);
        REQUIRE(par_http_start(h, &err) == PAR_OK);
        port = par_http_port(h);

        /* An upgrade is refused and the connection closed at once. */
        int fd = raw_connect(port);
        const char *up = "GET /health HTTP/1.1\r\nHost: x\r\n"
                         "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n";
        REQUIRE(fd >= 0);
        CHECK(write(fd, up, strlen(up)) > 0);
        CHECKF(closed_within(fd, 3) >= 0, "upgrade left open");
        close(fd);

        /* CONNECT: refused, closed. */
        fd = raw_connect(port);
        const char *co = "CONNECT example.com:443 HTTP/1.1\r\nHost: "
                         "example.com:443\r\n\r\n";
        REQUIRE(fd >= 0);
        CHECK(write(fd, co, strlen(co)) > 0);
        CHECKF(closed_within(fd, 15) >= 0, "CONNECT left open");
        close(fd);

        /* POST: 405 and closed. */
        REQUIRE(request(port, "POST", "/health", &r) == 0);
        CHECK(r.status == 405);
        resp_free(&r);

        /* A silent client and one that never finishes its headers are cut
         * off after the header timeout. */
        int silent = raw_connect(port), slow = raw_connect(port);
        REQUIRE(silent >= 0 && slow >= 0);
        CHECK(write(slow, "GET /health HTTP/1.1\r\nHost", 26) > 0);
        double t1 = closed_within(silent, 20), t2 = closed_within(slow, 20);
        CHECKF(t1 >= 0, "silent connection never closed");
        CHECKF(t2 >= 0, "half-sent headers never closed");
        close(silent);
        close(slow);

        /* A flood of idle connections: the server keeps answering. */
        for (nfd = 0; nfd < 300; nfd++)
                if ((fds[nfd] = raw_connect(port)) < 0)
                        break;
        int refused = 0;
        for (int i = 0; i < nfd; i++) {
                struct pollfd p = {fds[i], POLLIN, 0};
                char c;
                if (poll(&p, 1, i < 10 ? 200 : 0) > 0 &&
                    read(fds[i], &c, 1) <= 0)
                        refused++;
        }
        for (int i = 0; i < nfd; i++)
                close(fds[i]);
        CHECKF(refused > 0, "%d idle connections all held", nfd);
        usleep(200 * 1000);
        REQUIRE(request(port, "GET", "/health", &r) == 0);
        CHECK(r.status == 200);
        resp_free(&r);
        par_http_destroy(h);
}

/* GET /health on a fresh connection, everything bounded by 1 s: the
 * status, or -1 when the server did not answer in time. */
static int health_within_1s(int port)
{
        char endpoint[32];
        par_httpc_t *c = NULL;
        resp_t r;
        int status = -1;

        snprintf(endpoint, sizeof(endpoint), "127.0.0.1:%d", port);
        if (par_httpc_open(&c, endpoint, 1000, NULL))
                return -1;
        if (!par_httpc_request(c, "GET", "/health", PAR_HTTPC_CLOSE, 1000, &r,
                               NULL)) {
                status = r.status;
                resp_free(&r);
        }
        par_httpc_close(c);
        return status;
}

/* Regression (issue 11, found by fuzz_http): a GET carrying a body,
 * pipelined behind another request, made lws call HTTP_BODY_COMPLETION in a
 * loop on the service thread; nothing was served again. */
static void test_pipelined_body(void)
{
        par_http_t *h = NULL;
        par_error_t err;
        char buf[1024] = "";
        size_t got = 0;
        const char *req = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                          "GET /health HTTP/1.1\r\nHost: x\r\n"
                          "Content-Length: 3\r\n\r\nabc";

        REQUIRE(par_http_new(&h, "127.0.0.1:0", &err) == PAR_OK);
        REQUIRE(par_http_route(h, "/health", health, NULL, &err) == PAR_OK);
        REQUIRE(par_http_start(h, &err) == PAR_OK);
        int port = par_http_port(h), fd = raw_connect(port);
        REQUIRE(fd >= 0);
        CHECK(write(fd, req, strlen(req)) == (ssize_t)strlen(req));
        double t0 = now_s();
        bool eof = false;
        while (!eof && got < sizeof(buf) - 1 && now_s() - t0 < 2) {
                struct pollfd p = {fd, POLLIN, 0};
                if (poll(&p, 1, 100) <= 0)
                        continue;
                ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
                if (n <= 0)
                        eof = true;
                else
                        got += (size_t)n;
        }
        buf[got] = '\0';
        CHECKF(!strncmp(buf, "HTTP/1.1 200", 12), "first got '%.20s'", buf);
        CHECKF(strstr(buf, "HTTP/1.1 400"), "the body got no 400");
        CHECKF(eof, "left open after the 400");
        close(fd);
        CHECKF(health_within_1s(port) == 200, "server wedged");
        par_http_destroy(h);
}

/* Slowloris (issue 11): more clients than the connection cap, each sending
 * its headers a few bytes at a time or not at all. /health must keep
 * answering at once, and every slow connection must be closed within the
 * header timeout (3 s) however it trickles. */
static void test_slow_clients(void)
{
        enum { N = 160 }; /* the server's cap is 128 */
        par_http_t *h = NULL;
        par_error_t err;
        int fds[N], open_fds = 0, port;
        const char *part = "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ";

        REQUIRE(par_http_new(&h, "127.0.0.1:0", &err) == PAR_OK);
        REQUIRE(par_http_route(h, "/health", health, NULL, &err) == PAR_OK);
        REQUIRE(par_http_start(h, &err) == PAR_OK);
        port = par_http_port(h);

        double t0 = now_s();
        for (int i = 0; i < N; i++) {
                fds[i] = raw_connect(port);
                REQUIRE(fds[i] >= 0);
                /* Half send part of a request, half nothing. */
                if (i % 2)
                        CHECK(send(fds[i], part, strlen(part), MSG_NOSIGNAL) >
                              0);
        }
        usleep(300 * 1000);
        for (int i = 0; i < 3; i++)
                CHECKF(health_within_1s(port) == 200,
                       "/health not answered with %d slow clients", N);

        /* Trickle a byte every 200 ms on every connection still open: a
         * deadline per byte would keep them all forever. */
        bool closed[N] = {false};
        while (now_s() - t0 < 7) {
                open_fds = 0;
                for (int i = 0; i < N; i++) {
                        if (closed[i])
                                continue;
                        struct pollfd p = {fds[i], POLLIN, 0};
                        char c;
                        if ((poll(&p, 1, 0) > 0 && read(fds[i], &c, 1) <= 0) ||
                            send(fds[i], "a", 1, MSG_NOSIGNAL) < 0) {
                                closed[i] = true;
                                continue;
                        }
                        open_fds++;
                }
                if (!open_fds)
                        break;
                usleep(200 * 1000);
        }
        CHECKF(open_fds == 0, "%d of %d slow connections open after %.1f s",
               open_fds, N, now_s() - t0);
        for (int i = 0; i < N; i++)
                close(fds[i]);
        CHECK(health_within_1s(port) == 200);
        par_http_destroy(h);
}

/* Regression (issue 11): an address the host does not have logged
 * "listening" and bound nothing. */
static void test_non_local_address(void)
{
        par_http_t *h = NULL;
        par_error_t err;

        REQUIRE(par_http_new(&h, "192.0.2.77:0", &err) == PAR_OK);
        CHECK(par_http_start(h, &err) == PAR_ERR_IO);
        CHECKF(strstr(err.msg, "192.0.2.77"), "%s", err.msg);
        CHECK(par_http_port(h) == 0);
        par_http_destroy(h);
}

/* --------------------------------------------- the client, canned replies */

/* Serves one connection: for each reply, waits for a request's blank line,
 * then writes the reply a few bytes at a time, so the client meets every
 * boundary (size line, data, CRLF, trailer) split across reads. */
typedef struct canned {
        int fd;
        const char *const *replies;
        int n;
} canned_t;

static void *canned_main(void *arg)
{
        canned_t *cs = arg;
        int c = accept(cs->fd, NULL, NULL);
        char buf[4096];
        size_t len = 0;

        for (int i = 0; c >= 0 && i < cs->n; i++) {
                char *e;
                while (!(e = memmem(buf, len, "\r\n\r\n", 4))) {
                        ssize_t r = recv(c, buf + len, sizeof(buf) - len, 0);
                        if (r <= 0)
                                goto out;
                        len += (size_t)r;
                }
                size_t used = (size_t)(e + 4 - buf);
                memmove(buf, buf + used, len - used);
                len -= used;
                const char *p = cs->replies[i];
                for (size_t k = strlen(p), at = 0; at < k; at += 3) {
                        if (send(c, p + at, k - at < 3 ? k - at : 3,
                                 MSG_NOSIGNAL) <= 0)
                                goto out;
                        if (at % 30 == 0)
                                par_clock_sleep_ms(1);
                }
        }
out:
        if (c >= 0)
                close(c);
        return NULL;
}

static int canned_listen(void)
{
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
            listen(fd, 1)) {
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        return fd;
}

static int canned_port(int fd)
{
        struct sockaddr_in a;
        socklen_t len = sizeof(a);
        return getsockname(fd, (struct sockaddr *)&a, &len) ? 0
                                                            : ntohs(a.sin_port);
}

static void test_chunked(void)
{
        static const char *const replies[] = {
            /* chunked, with an extension and a trailer */
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: application/json\r\n\r\n"
            "5\r\nhello\r\n1;ext=1\r\n \r\n10\r\n0123456789abcdef\r\n"
            "0\r\nX-Trailer: t\r\n\r\n",
            /* on the same connection: Content-Length framing still works
             * after a chunked reply */
            "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope",
            /* an empty chunked body */
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            /* malformed: a size line that is not hex */
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            "zz\r\nhello\r\n0\r\n\r\n"};
        canned_t cs = {.fd = canned_listen(),
                       .replies = replies,
                       .n = (int)(sizeof(replies) / sizeof(replies[0]))};
        pthread_t t;
        par_httpc_t *c = NULL;
        par_error_t err;
        resp_t r;

        REQUIRE(cs.fd >= 0);
        REQUIRE(!pthread_create(&t, NULL, canned_main, &cs));
        c = connect_port(canned_port(cs.fd));
        CHECK(c != NULL);
        if (c && par_httpc_request(c, "GET", "/a", 0, 5000, &r, &err) == 0) {
                CHECK(r.status == 200);
                CHECK_STR(r.body, "hello 0123456789abcdef");
                CHECK(r.body_len == 22);
                resp_free(&r);
        } else
                CHECK(!"chunked reply read");
        if (c && par_httpc_request(c, "GET", "/b", 0, 5000, &r, &err) == 0) {
                CHECK(r.status == 404);
                CHECK_STR(r.body, "nope");
                resp_free(&r);
        } else
                CHECK(!"reply after a chunked one read");
        if (c && par_httpc_request(c, "GET", "/c", 0, 5000, &r, &err) == 0) {
                CHECK(r.status == 200 && r.body_len == 0);
                resp_free(&r);
        } else
                CHECK(!"empty chunked reply read");
        CHECK(c && par_httpc_request(c, "GET", "/d", 0, 5000, &r, &err) ==
                       PAR_ERR_IO);
        CHECKF(strstr(err.msg, "malformed chunked"), "%s", err.msg);
        par_httpc_close(c);
        pthread_join(t, NULL);
        close(cs.fd);
}

static void test_escape(void)
{
        char out[64];

        CHECK(par_httpc_escape(out, sizeof(out), "sum by (le) (x{a=\"b\"})") ==
              46);
        CHECK_STR(out, "sum%20by%20%28le%29%20%28x%7Ba%3D%22b%22%7D%29");
        CHECK(par_httpc_escape(out, sizeof(out), "A-z_0.9~") == 8);
        CHECK_STR(out, "A-z_0.9~");
        CHECK(par_httpc_escape(out, sizeof(out), "1+1&t=2%") == 16);
        CHECK_STR(out, "1%2B1%26t%3D2%25");
        /* truncated like snprintf: NUL-terminated, full length returned */
        CHECK(par_httpc_escape(out, 5, "a b") == 5);
        CHECK_STR(out, "a%20");
        CHECK(par_httpc_escape(NULL, 0, "\xc3\xa9") == 6);
}

/* Every test above that expects a 200 from /health went through it. */
static void test_health_handler_ran(void)
{
        CHECK(atomic_load(&health_calls) > 0);
}

TEST_MAIN(test_addresses, test_requests, test_concurrent,
          test_bind_conflict_and_restart, test_hostile_connections,
          test_pipelined_body, test_slow_clients, test_non_local_address,
          test_chunked, test_escape, test_health_handler_ran)
