/*
 * config.h — configuration: one property table drives everything.
 *
 * The table in config.c (name, type, default, bounds, allowed values, secret
 * flag, scope, doc) is the only place a key is declared. It drives parsing,
 * validation, --help, the redacted dump and docs/CONFIGURATION.md
 * (`parallel-ctl config docs`).
 *
 * Layers, lowest first: table defaults < properties file (-c FILE, or
 * PARALLEL_CONFIG) < environment (PARALLEL_FOO_BAR=… sets foo.bar; use a
 * double underscore for a literal underscore: PARALLEL_KAFKA_SASL__X) <
 * `-X key=value` on the command line.
 *
 * Keys starting with "kafka." are not in the table: they pass through,
 * prefix stripped, to librdkafka unchanged (librdkafka validates them when
 * the client is built). Any key whose name contains "password", "secret" or
 * "token", or whose table row is marked secret, is redacted in dumps; a URI
 * value has its userinfo password redacted.
 *
 * A par_config_t is built on one thread and then only read: readers on any
 * thread are safe once loading is done.
 */
#ifndef PAR_CONFIG_H
#define PAR_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/err.h"

typedef struct par_config par_config_t;

/* Which programs a key concerns (for --help). */
enum {
        PAR_SCOPE_PRODUCER = 1,
        PAR_SCOPE_CONSUMER = 2,
        PAR_SCOPE_CTL = 4,
        PAR_SCOPE_ALL = 7,
};

/* Builds a config holding every table default. */
par_err_t par_config_new(par_config_t **out, par_error_t *err);
void par_config_destroy(par_config_t *cfg);

/* Sets one key after validating the value against its table row. Errors name
 * the key and the allowed values: "chrome.mode: 'x' is not one of
 * launch|connect". Unknown keys are an error (with the closest known key
 * suggested when one is close), except "kafka.*". */
par_err_t par_config_set(par_config_t *cfg, const char *key, const char *value,
                         par_error_t *err);

/* Loads `key=value` lines; `#` starts a comment line; blank lines ignored.
 * Errors name the file and line. */
par_err_t par_config_load_file(par_config_t *cfg, const char *path,
                               par_error_t *err);

/* Applies PARALLEL_* environment variables (except PARALLEL_CONFIG, which
 * names a file and is handled by par_config_parse_args). */
par_err_t par_config_load_env(par_config_t *cfg, par_error_t *err);

/*
 * The standard layering for a main(): consumes `-c FILE`/`--config FILE` and
 * `-X key=value` from argv (compacting argv and updating *argc), applies
 * file, then env, then -X in that order. `-X dump` sets *dump to true (when
 * dump is non-NULL) instead of setting a key. Other arguments are left for
 * the caller.
 */
par_err_t par_config_parse_args(par_config_t *cfg, int *argc, char **argv,
                                bool *dump, par_error_t *err);

/* Getters. The key must be in the table (a programming error otherwise:
 * they return ""/0 and log an error). Durations are in milliseconds
 * (values may be written "250ms", "10s", "5m", "1h" or plain ms). */
const char *par_config_str(const par_config_t *cfg, const char *key);
int64_t par_config_int(const par_config_t *cfg, const char *key);
bool par_config_bool(const par_config_t *cfg, const char *key);

/* Calls cb for each "kafka.*" key set (prefix stripped), in the order set.
 * Stops and returns cb's non-zero result. */
/* The value of kafka.<key> (key without the prefix) as set, or NULL. */
const char *par_config_kafka_get(const par_config_t *cfg, const char *key);

int par_config_foreach_kafka(const par_config_t *cfg,
                             int (*cb)(const char *key, const char *value,
                                       void *opaque),
                             void *opaque);

/* Writes the effective config, `key=value` per line, secrets redacted. */
void par_config_dump(const par_config_t *cfg, FILE *out);

/* Writes a --help listing of the keys in scope (a PAR_SCOPE_* mask). */
void par_config_help(FILE *out, unsigned scope);

/* Writes docs/CONFIGURATION.md. */
void par_config_markdown(FILE *out);

/* True when a key's value is a secret, by name pattern (password,
 * secret, token, key, pem, credential…): dumps and error messages never
 * show such a value. Any thread. */
bool par_config_key_secret(const char *key);

#endif
