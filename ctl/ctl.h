/*
 * ctl.h — parallel-ctl subcommands. Each takes the loaded config and the
 * arguments after its name (argv[0] is the subcommand name) and returns the
 * process exit code: 0 ok, 1 failure, 2 bad arguments. Each prints its own
 * one-line reason to stderr on failure and answers --help.
 */
#ifndef PAR_CTL_H
#define PAR_CTL_H

#include "base/config.h"

int par_ctl_topics(par_config_t *cfg, int argc, char **argv);
int par_ctl_signal(par_config_t *cfg, int argc, char **argv);
int par_ctl_decode(par_config_t *cfg, int argc, char **argv);
int par_ctl_spin(par_config_t *cfg, int argc, char **argv);
int par_ctl_report(par_config_t *cfg, int argc, char **argv);
int par_ctl_status(par_config_t *cfg, int argc, char **argv);
int par_ctl_sessions(par_config_t *cfg, int argc, char **argv);

#endif
