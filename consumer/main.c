/*
 * main.c — parallel-consumer: one node of the consumer group.
 *
 *   parallel-consumer [-c FILE] [-X key=value]... [-X dump] [--help]
 *
 * Linear, kcat-style: load config (defaults < file < env < -X), install
 * signal handlers that only count signals, run the node until SIGTERM or
 * SIGINT, shut down gracefully, exit 0. A second signal exits at once.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <mongoc/mongoc.h>

#include "base/config.h"
#include "base/log.h"
#include "msg/kafka.h"
#include "node.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
        (void)sig;
        stop = stop + 1;
}

static void usage(FILE *f)
{
        fprintf(f, "usage: parallel-consumer [-c FILE] [-X key=value]... "
                   "[-X dump] [--help] [--version]\n\nKeys:\n");
        par_config_help(f, PAR_SCOPE_CONSUMER);
}

int main(int argc, char **argv)
{
        par_config_t *cfg = NULL;
        node_t *node = NULL;
        par_error_t err;
        bool dump = false;
        int rc = 1;

        if (par_config_new(&cfg, &err) ||
            par_config_parse_args(cfg, &argc, argv, &dump, &err)) {
                fprintf(stderr, "parallel-consumer: %s\n", err.msg);
                par_config_destroy(cfg);
                return 2;
        }
        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
                        usage(stdout);
                        par_config_destroy(cfg);
                        return 0;
                }
                if (!strcmp(argv[i], "--version")) {
                        printf("parallel-consumer %s\n", PARALLEL_VERSION);
                        par_config_destroy(cfg);
                        return 0;
                }
                fprintf(stderr, "parallel-consumer: unknown argument %s\n",
                        argv[i]);
                par_config_destroy(cfg);
                return 2;
        }
        if (dump) {
                par_config_dump(cfg, stdout);
                par_config_destroy(cfg);
                return 0;
        }
        if (par_kafka_check_sizes(cfg, &err)) {
                fprintf(stderr, "parallel-consumer: %s\n", err.msg);
                par_config_destroy(cfg);
                return 2;
        }
        par_log_set_level(
            par_log_level_parse(par_config_str(cfg, "log.level")));

        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);

        mongoc_init();
        if (node_new(&node, cfg, &err)) {
                fprintf(stderr, "parallel-consumer: %s\n", err.msg);
                goto out;
        }
        rc = node_run(node, &stop);
out:
        node_destroy(node);
        mongoc_cleanup();
        par_config_destroy(cfg);
        return rc;
}
