/*
 * err.h — the one error convention of Parallel.
 *
 * Functions return par_err_t (PAR_OK == 0) and, on failure, fill a
 * caller-supplied par_error_t with a message a user can act on, e.g.
 * "signal 65a1…: priority 7 out of range 1..4". Library code never prints
 * and never exits; only main() decides what to do with an error.
 */
#ifndef PAR_ERR_H
#define PAR_ERR_H

#include <stdarg.h>

typedef enum par_err {
        PAR_OK = 0,
        PAR_ERR_INVALID,      /* bad argument, config or input data */
        PAR_ERR_NOMEM,        /* allocation failed */
        PAR_ERR_IO,           /* file, socket or process failure */
        PAR_ERR_TIMEOUT,      /* a deadline passed */
        PAR_ERR_NOTFOUND,     /* a named thing does not exist */
        PAR_ERR_KAFKA,        /* librdkafka reported an error */
        PAR_ERR_MONGO,        /* libmongoc reported an error */
        PAR_ERR_CDP,          /* the browser answered a call with an error */
        PAR_ERR_DISCONNECTED, /* a connection or process went away */
        PAR_ERR_TRANSIENT,    /* retrying later may succeed */
        PAR_ERR_PERMANENT,    /* retrying will not help */
        PAR_ERR_CANCELLED,    /* stopped on request (shutdown) */
} par_err_t;

typedef struct par_error {
        par_err_t code;
        char msg[256];
} par_error_t;

/* Fills err (which may be NULL) and returns code, so callers can write
 * `return par_error_set(err, PAR_ERR_INVALID, "…", …);`. */
par_err_t par_error_set(par_error_t *err, par_err_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "context: " to an error message already in err. */
par_err_t par_error_prefix(par_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A short stable name for a code ("invalid", "timeout", …). */
const char *par_err_name(par_err_t code);

#endif
