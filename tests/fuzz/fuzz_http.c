/* fuzz_http.c — the HTTP request path: any bytes sent to a running
 * observability server over a real socket. The server must survive every
 * input and keep answering: every 500 inputs a plain GET /health must get
 * its 200 within a second, or the harness aborts (a wedge is a finding). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "obs/http.h"
#include "obs/metrics.h"

static par_http_t *http;
static par_metrics_t *metrics;
static int port;

static int ok(void *o, const char *path, const char *query,
              par_http_body_t *body, const char **ctype)
{
        (void)o;
        par_http_body_printf(body, "{\"path\":\"%s\",\"query\":\"%s\"}", path,
                             query);
        *ctype = "application/json";
        return 200;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        par_error_t err;
        (void)argc;
        (void)argv;
        par_log_set_level(PAR_LOG_OFF);
        if (par_metrics_new(&metrics, &err) ||
            par_http_new(&http, "127.0.0.1:0", &err) ||
            par_http_route(http, "/health", ok, NULL, &err) ||
            par_http_route(http, "/status", ok, NULL, &err) ||
            par_http_route(http, "/metrics", par_http_metrics_handler, metrics,
                           &err) ||
            par_http_start(http, &err)) {
                fprintf(stderr, "fuzz_http: %s\n", err.msg);
                abort();
        }
        port = par_http_port(http);
        return 0;
}

static int dial(void)
{
        struct sockaddr_in a = {0};
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        /* Closed with a reset: tens of thousands of inputs a minute would
         * otherwise leave as many client ports in TIME_WAIT and run out of
         * ephemeral ports (connect: EADDRNOTAVAIL), which is not the
         * server's fault. */
        struct linger lg = {1, 0};

        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd >= 0 &&
            (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) ||
             connect(fd, (struct sockaddr *)&a, sizeof(a)))) {
                fprintf(stderr, "fuzz_http: connect: %s\n", strerror(errno));
                close(fd);
                return -1;
        }
        return fd;
}

/* Reads until EOF or ms pass; returns bytes read into buf (n max). */
static size_t drain(int fd, char *buf, size_t n, int ms)
{
        size_t got = 0;
        char sink[4096];

        for (;;) {
                struct pollfd p = {fd, POLLIN, 0};
                if (poll(&p, 1, ms) <= 0)
                        return got;
                ssize_t r = read(fd, got < n ? buf + got : sink,
                                 got < n ? n - got : sizeof(sink));
                if (r <= 0)
                        return got;
                if (got < n)
                        got += (size_t)r;
        }
}

static void check_alive(void)
{
        const char *req = "GET /health HTTP/1.1\r\nHost: x\r\n"
                          "Connection: close\r\n\r\n";
        char buf[64] = "";
        int fd = dial();

        /* Strict: connections the fuzzer left half-sent cannot hold the
         * cap (the server evicts the one waiting longest for a request). */
        if (fd < 0 || write(fd, req, strlen(req)) < 0)
                abort();
        drain(fd, buf, sizeof(buf) - 1, 1000);
        close(fd);
        if (strncmp(buf, "HTTP/1.1 200", 12))
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static unsigned n;
        char buf[256];
        int fd = dial();

        if (fd < 0)
                abort(); /* the server stopped accepting */
        if (size && write(fd, data, size) < 0) {
                close(fd);
                return 0;
        }
        shutdown(fd, SHUT_WR);
        drain(fd, buf, sizeof(buf), 200);
        close(fd);
        if (++n % 500 == 0)
                check_alive();
        return 0;
}
