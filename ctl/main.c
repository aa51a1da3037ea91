/*
 * parallel-ctl — the operator's tool: create topics, insert and load
 * signals, decode topics, run spins locally, print the configuration docs.
 *
 * A linear main(): config layers (defaults < -c FILE < env < -X), then the
 * subcommand. Global options come before or after the subcommand name.
 */
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "msg/kafka.h"

static int config_cmd(par_config_t *cfg, int argc, char **argv)
{
        if (argc >= 2 && !strcmp(argv[1], "docs")) {
                par_config_markdown(stdout);
                return 0;
        }
        if (argc >= 2 && !strcmp(argv[1], "dump")) {
                par_config_dump(cfg, stdout);
                return 0;
        }
        fprintf(stderr,
                "parallel-ctl config: unknown action '%s' (want docs|dump)\n",
                argc >= 2 ? argv[1] : "");
        return 2;
}

static const struct {
        const char *name;
        int (*run)(par_config_t *, int, char **);
        const char *help;
} cmds[] = {
    {"topics", par_ctl_topics, "create|list|delete the Kafka topics"},
    {"signal", par_ctl_signal, "insert|load|status signals in MongoDB"},
    {"decode", par_ctl_decode, "print a topic's messages as JSON lines"},
    {"spin", par_ctl_spin, "run a recipe locally in Chromium"},
    {"report", par_ctl_report, "summarise outcomes from the results topic"},
    {"status", par_ctl_status, "the cluster: group, lag, nodes, workers, DLQ"},
    {"sessions", par_ctl_sessions, "list|delete saved browser sessions"},
    {"config", config_cmd, "docs|dump: the configuration reference"},
};

static void usage(FILE *out)
{
        fputs("usage: parallel-ctl [-c FILE] [-X key=value]... COMMAND "
              "[ARGS]\n\ncommands:\n",
              out);
        for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
                fprintf(out, "  %-8s %s\n", cmds[i].name, cmds[i].help);
        fputs("\n`parallel-ctl COMMAND --help` describes a command.\n\n", out);
        par_config_help(out, PAR_SCOPE_CTL);
}

int main(int argc, char **argv)
{
        par_config_t *cfg = NULL;
        par_error_t err = {0};
        bool dump = false;
        int rc = 2;

        if (argc >= 2 &&
            (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
                usage(stdout);
                return 0;
        }
        if (argc >= 2 && !strcmp(argv[1], "--version")) {
                printf("parallel-ctl %s\n", PARALLEL_VERSION);
                return 0;
        }
        if (par_config_new(&cfg, &err) ||
            par_config_parse_args(cfg, &argc, argv, &dump, &err)) {
                fprintf(stderr, "parallel-ctl: %s\n", err.msg);
                goto out;
        }
        if (dump) {
                par_config_dump(cfg, stdout);
                rc = 0;
                goto out;
        }
        if (par_kafka_check_sizes(cfg, &err)) {
                fprintf(stderr, "parallel-ctl: %s\n", err.msg);
                goto out;
        }
        if (argc < 2) {
                fprintf(stderr,
                        "parallel-ctl: no command given (try --help)\n");
                goto out;
        }
        for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
                if (!strcmp(argv[1], cmds[i].name)) {
                        rc = cmds[i].run(cfg, argc - 1, argv + 1);
                        goto out;
                }
        fprintf(stderr, "parallel-ctl: unknown command '%s' (try --help)\n",
                argv[1]);
out:
        par_config_destroy(cfg);
        return rc;
}
