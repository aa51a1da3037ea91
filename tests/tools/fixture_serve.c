/*
 * fixture_serve.c — fixture_serve: serves a directory with
 * tests/fixture_server.h until SIGINT/SIGTERM, for benchmarks and demos.
 *
 *   fixture_serve DIR [PORTFILE] [ADDR:PORT]
 *
 * Prints "port=<n>" on stdout once listening (and writes the number to
 * PORTFILE when given), then the request count on exit. ADDR:PORT binds
 * there instead of 127.0.0.1 on an ephemeral port (deploy/cluster's web
 * host, which other namespaces reach).
 */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "fixture_server.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
        (void)sig;
        stop = 1;
}

int main(int argc, char **argv)
{
        struct sigaction sa;
        fx_server_t fx;

        if (argc < 2) {
                fprintf(stderr, "usage: %s DIR [PORTFILE] [ADDR:PORT]\n",
                        argv[0]);
                return 2;
        }
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        char addr[64] = "127.0.0.1";
        int port = 0;
        if (argc > 3) {
                const char *colon = strrchr(argv[3], ':');
                if (!colon || colon == argv[3] ||
                    (size_t)(colon - argv[3]) >= sizeof(addr)) {
                        fprintf(stderr, "%s: ADDR:PORT expected, got %s\n",
                                argv[0], argv[3]);
                        return 2;
                }
                memcpy(addr, argv[3], (size_t)(colon - argv[3]));
                addr[colon - argv[3]] = '\0';
                port = atoi(colon + 1);
        }
        if (fx_server_start_at(&fx, argv[1], addr, port)) {
                perror("fixture server");
                return 1;
        }
        printf("port=%d\n", fx.port);
        fflush(stdout);
        if (argc > 2) {
                FILE *f = fopen(argv[2], "w");

                if (f) {
                        fprintf(f, "%d\n", fx.port);
                        fclose(f);
                }
        }
        while (!stop)
                pause();
        fx_server_stop(&fx);
        printf("requests=%d\n", atomic_load(&fx.requests));
        return 0;
}
