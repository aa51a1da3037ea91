/*
 * fixture_server.h — a tiny static HTTP/1.1 server for tests and the demo
 * (tests/tools/fixture_serve), part of the compiled test harness.
 *
 *   fx_server_t fx;
 *   if (fx_server_start(&fx, "/path/to/tests/fixtures/pages") != 0) …
 *   … "http://127.0.0.1:%d/late.html", fx.port …
 *   fx_server_stop(&fx);
 *
 * It listens on 127.0.0.1 on an ephemeral port (fx_server_start_at: any
 * IPv4 address and port, e.g. a test network namespace's) and serves files
 * under root with one detached thread per connection (so a request that never
 * ends does not block the others), answering with "Connection: close". Special
 * paths, for the failure cases a browser test needs:
 *   /slow            headers and half a page, then nothing until stop: the
 *                    page never finishes loading.
 *   /delay/<ms>/<f>  serves file <f> after <ms> milliseconds.
 *   /status/<code>   an empty response with that status code.
 * Anything with ".." in the path is a 404. fx.requests counts requests.
 *
 * Threads: start and stop from one thread; the server's threads touch only
 * the fx_server_t. Why not lws? Tests need a server that can misbehave on
 * purpose (stall mid-body) with no event-loop plumbing; a blocking
 * thread-per-connection server is the smallest thing that does that.
 */
#ifndef PAR_FIXTURE_SERVER_H
#define PAR_FIXTURE_SERVER_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"

typedef struct fx_server {
        int fd;
        int port;
        char root[1024];
        pthread_t thread;
        atomic_int stop;
        atomic_int active; /* connection threads alive */
        atomic_int requests;
} fx_server_t;

typedef struct fx_conn {
        fx_server_t *s;
        int fd;
} fx_conn_t;

/* Starts serving root (copied) on addr:port (IPv4, network order not
 * needed: addr is dotted text; port 0 picks one). Returns 0, or -1 with
 * errno set. */
int fx_server_start_at(fx_server_t *s, const char *root, const char *addr,
                       int port);

/* Starts serving root on 127.0.0.1 on an ephemeral port. */
int fx_server_start(fx_server_t *s, const char *root);

/* Stops accepting, ends stalled responses, waits for connection threads
 * (up to 5 s) and closes the socket. */
void fx_server_stop(fx_server_t *s);

#endif
