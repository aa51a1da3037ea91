/* fixture_server.c — see fixture_server.h. */
#include "fixture_server.h"

static void fx__send(int fd, const void *buf, size_t n)
{
        const char *p = (const char *)buf;

        while (n) {
                ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

                if (w <= 0)
                        return;
                p += w;
                n -= (size_t)w;
        }
}

static void fx__status(int fd, int code)
{
        char h[160];
        int n = snprintf(h, sizeof(h),
                         "HTTP/1.1 %d X\r\nContent-Length: 0\r\n"
                         "Connection: close\r\n\r\n",
                         code);

        fx__send(fd, h, (size_t)n);
}

static const char *fx__type(const char *path)
{
        const char *dot = strrchr(path, '.');

        if (!dot)
                return "application/octet-stream";
        if (!strcmp(dot, ".html"))
                return "text/html; charset=utf-8";
        if (!strcmp(dot, ".js"))
                return "text/javascript";
        if (!strcmp(dot, ".css"))
                return "text/css";
        if (!strcmp(dot, ".json"))
                return "application/json";
        if (!strcmp(dot, ".png"))
                return "image/png";
        if (!strcmp(dot, ".txt"))
                return "text/plain; charset=utf-8";
        return "application/octet-stream";
}

static void fx__file(fx_server_t *s, int fd, const char *rel)
{
        char path[2048], h[256];
        struct stat st;
        FILE *f;
        char buf[65536];
        size_t n;
        int hl;

        snprintf(path, sizeof(path), "%s/%s", s->root, rel);
        if (strstr(rel, "..") || stat(path, &st) || !S_ISREG(st.st_mode) ||
            !(f = fopen(path, "rb"))) {
                fx__status(fd, 404);
                return;
        }
        hl = snprintf(h, sizeof(h),
                      "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n"
                      "Content-Length: %lld\r\nCache-Control: no-store\r\n"
                      "Connection: close\r\n\r\n",
                      fx__type(path), (long long)st.st_size);
        fx__send(fd, h, (size_t)hl);
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
                fx__send(fd, buf, n);
        fclose(f);
}

static void *fx__conn(void *arg)
{
        fx_conn_t *c = (fx_conn_t *)arg;
        fx_server_t *s = c->s;
        char req[8192], method[16], target[2048];
        size_t n = 0;
        char *q;

        /* Read the request head (bodies are not supported). */
        while (n < sizeof(req) - 1) {
                struct pollfd p = {c->fd, POLLIN, 0};
                ssize_t r;

                if (poll(&p, 1, 100) <= 0) {
                        if (atomic_load(&s->stop))
                                goto done;
                        continue;
                }
                r = recv(c->fd, req + n, sizeof(req) - 1 - n, 0);
                if (r <= 0)
                        goto done;
                n += (size_t)r;
                req[n] = '\0';
                if (strstr(req, "\r\n\r\n"))
                        break;
        }
        if (sscanf(req, "%15s %2047s", method, target) != 2)
                goto done;
        atomic_fetch_add(&s->requests, 1);
        if ((q = strchr(target, '?')) != NULL)
                *q = '\0';
        if (!strcmp(target, "/slow")) {
                static const char head[] =
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                    "Content-Length: 100000\r\nConnection: close\r\n\r\n"
                    "<!doctype html><title>slow</title>"
                    "<p id=partial>partial</p>";

                fx__send(c->fd, head, sizeof(head) - 1);
                while (!atomic_load(&s->stop))
                        par_clock_sleep_ms(50);
        } else if (!strncmp(target, "/delay/", 7)) {
                char *end;
                long ms = strtol(target + 7, &end, 10);

                if (*end != '/') {
                        fx__status(c->fd, 400);
                        goto done;
                }
                for (; ms > 0 && !atomic_load(&s->stop); ms -= 20)
                        par_clock_sleep_ms(ms < 20 ? (int)ms : 20);
                fx__file(s, c->fd, end + 1);
        } else if (!strncmp(target, "/status/", 8)) {
                fx__status(c->fd, atoi(target + 8));
        } else {
                fx__file(s, c->fd,
                         strcmp(target, "/") ? target + 1 : "index.html");
        }
done:
        close(c->fd);
        free(c);
        atomic_fetch_sub(&s->active, 1);
        return NULL;
}

static void *fx__accept(void *arg)
{
        fx_server_t *s = (fx_server_t *)arg;

        while (!atomic_load(&s->stop)) {
                struct pollfd p = {s->fd, POLLIN, 0};
                fx_conn_t *c;
                pthread_t t;
                int fd;

                if (poll(&p, 1, 100) <= 0)
                        continue;
                fd = accept(s->fd, NULL, NULL);
                if (fd < 0)
                        continue;
                c = (fx_conn_t *)malloc(sizeof(*c));
                if (!c) {
                        close(fd);
                        continue;
                }
                c->s = s;
                c->fd = fd;
                atomic_fetch_add(&s->active, 1);
                if (pthread_create(&t, NULL, fx__conn, c)) {
                        atomic_fetch_sub(&s->active, 1);
                        close(fd);
                        free(c);
                        continue;
                }
                pthread_detach(t);
        }
        return NULL;
}

/* Starts serving root (copied) on addr:port (IPv4, network order not
 * needed: addr is dotted text; port 0 picks one). Returns 0, or -1 with
 * errno set. */
int fx_server_start_at(fx_server_t *s, const char *root, const char *addr,
                       int port)
{
        struct sockaddr_in a;
        socklen_t al = sizeof(a);
        int one = 1;

        memset(s, 0, sizeof(*s));
        snprintf(s->root, sizeof(s->root), "%s", root);
        s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s->fd < 0)
                return -1;
        setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        if (inet_pton(AF_INET, addr, &a.sin_addr) != 1) {
                close(s->fd);
                s->fd = -1;
                errno = EINVAL;
                return -1;
        }
        a.sin_port = htons((uint16_t)port);
        if (bind(s->fd, (struct sockaddr *)&a, sizeof(a)) ||
            listen(s->fd, 128) ||
            getsockname(s->fd, (struct sockaddr *)&a, &al))
                goto fail;
        s->port = ntohs(a.sin_port);
        if (pthread_create(&s->thread, NULL, fx__accept, s))
                goto fail;
        return 0;
fail:
        close(s->fd);
        s->fd = -1;
        return -1;
}

/* Starts serving root on 127.0.0.1 on an ephemeral port. */
int fx_server_start(fx_server_t *s, const char *root)
{
        return fx_server_start_at(s, root, "127.0.0.1", 0);
}

/* Stops accepting, ends stalled responses, waits for connection threads
 * (up to 5 s) and closes the socket. */
void fx_server_stop(fx_server_t *s)
{
        int i;

        if (s->fd < 0)
                return;
        atomic_store(&s->stop, 1);
        pthread_join(s->thread, NULL);
        for (i = 0; i < 250 && atomic_load(&s->active) > 0; i++)
                par_clock_sleep_ms(20);
        close(s->fd);
        s->fd = -1;
}
