/*
 * log.h — one line per event, key=value fields, to a sink (stderr by default).
 *
 *   par_log(PAR_LOG_INFO, "producer", "started", "lease=%s port=%d", id, p);
 * prints
 *   ts=2026-11-27T00:00:00.123Z level=info comp=producer event=started lease=…
 * port=…
 *
 * Values need no escaping by the caller: every %s is escaped where it
 * lands. After "key=" it is written as a logfmt value, double-quoted when it
 * holds a space, '"', '=', '\', a control byte or invalid UTF-8 (with \"
 * \\ \n \r \t \xNN escapes); inside the format's own quotes (key="%s") only
 * escaped. So an event is one line and its fields are the caller's, whatever
 * the values contain. A value is cut (ending "...") past about 1 KB.
 *
 * Thread-safe: each line is written with one fwrite under a lock. Library code
 * may log (it never prints otherwise); main() picks the level and the sink.
 * Never pass secrets as fields; config values marked secret are redacted by
 * config.c before they can reach a log line.
 */
#ifndef PAR_LOG_H
#define PAR_LOG_H

#include <stdio.h>

typedef enum par_log_level {
        PAR_LOG_DEBUG = 0,
        PAR_LOG_INFO,
        PAR_LOG_WARN,
        PAR_LOG_ERROR,
        PAR_LOG_OFF,
} par_log_level_t;

/* Sets the minimum level written (default info). Any thread. */
void par_log_set_level(par_log_level_t level);
/* Parses "debug|info|warn|error|off"; returns -1 on anything else. */
int par_log_level_parse(const char *s);
/* Redirects lines to f (borrowed; NULL restores stderr). Any thread. */
void par_log_set_file(FILE *f);
int par_log_enabled(par_log_level_t level);

void par_log(par_log_level_t level, const char *comp, const char *event,
             const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define PAR_DEBUG(comp, ev, ...)                                               \
        do {                                                                   \
                if (par_log_enabled(PAR_LOG_DEBUG))                            \
                        par_log(PAR_LOG_DEBUG, comp, ev, __VA_ARGS__);         \
        } while (0)

#endif
