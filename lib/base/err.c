/* err.c — see err.h. */
#include "base/err.h"

#include <stdio.h>
#include <string.h>

#include "base/text.h"

par_err_t par_error_set(par_error_t *err, par_err_t code, const char *fmt, ...)
{
        if (err) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
                va_end(ap);
                /* Messages end up in JSON, BSON and Avro: a "%.64s" or the
                 * buffer's end may have split a character. */
                par_utf8_scrub(err->msg);
                err->code = code;
        }
        return code;
}

par_err_t par_error_prefix(par_error_t *err, const char *fmt, ...)
{
        char pre[256], old[sizeof(err->msg)];
        va_list ap;

        if (!err)
                return PAR_ERR_INVALID;
        va_start(ap, fmt);
        vsnprintf(pre, sizeof(pre), fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof(old));
        /* Truncation is acceptable: the start of a message matters most. */
        size_t n = strnlen(pre, sizeof(err->msg) - 1);
        memcpy(err->msg, pre, n);
        if (n + 2 < sizeof(err->msg)) {
                memcpy(err->msg + n, ": ", 2);
                n += 2;
        }
        size_t m = strnlen(old, sizeof(old));
        if (m > sizeof(err->msg) - 1 - n)
                m = sizeof(err->msg) - 1 - n;
        memcpy(err->msg + n, old, m);
        err->msg[n + m] = '\0';
        par_utf8_scrub(err->msg);
        return err->code;
}

const char *par_err_name(par_err_t code)
{
        static const char *names[] = {
            "ok",        "invalid",   "nomem",     "io",  "timeout",
            "notfound",  "kafka",     "mongo",     "cdp", "disconnected",
            "transient", "permanent", "cancelled",
        };
        if ((unsigned)code < sizeof(names) / sizeof(names[0]))
                return names[code];
        return "unknown";
}
