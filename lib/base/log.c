/* log.c — see log.h. Lines are built in a local buffer and written whole so
 * lines from different threads never interleave.
 *
 * Every %s value is escaped where it lands, so no input (a recipe name from
 * a signal, a node.id, an error text from Chromium, Kafka or MongoDB, a
 * URL) can forge a line or a field: after "key=" it becomes a logfmt value
 * (quoted when it holds a space, '"', '=', '\', a control byte or invalid
 * UTF-8); between the quotes of key="%s" its '"' and '\' are escaped too.
 * vsnprintf cannot say where a value lands, hence the small walker over the
 * format below; the arguments' types are checked by the compiler
 * (format attribute), the walker only reads them in the same order. */
#include "base/log.h"
#include "base/text.h"

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/time.h>
#include <time.h>

static volatile int min_level = PAR_LOG_INFO;
static FILE *sink;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const char *names[] = {"debug", "info", "warn", "error", "off"};

void par_log_set_level(par_log_level_t level)
{
        min_level = level;
}

int par_log_level_parse(const char *s)
{
        for (int i = 0; i <= PAR_LOG_OFF; i++)
                if (s && !strcmp(s, names[i]))
                        return i;
        return -1;
}

void par_log_set_file(FILE *f)
{
        pthread_mutex_lock(&lock);
        sink = f;
        pthread_mutex_unlock(&lock);
}

int par_log_enabled(par_log_level_t level)
{
        return (int)level >= min_level;
}

/* Output bytes one %s value may take (escaped, quotes included): three
 * long values still fit a line. */
#define VALUE_MAX 1024

typedef struct out {
        char *buf;
        size_t len, cap; /* cap excludes the NUL */
} out_t;

static void out_put(out_t *o, const char *s, size_t n)
{
        if (n > o->cap - o->len)
                n = o->cap - o->len;
        memcpy(o->buf + o->len, s, n);
        o->len += n;
        o->buf[o->len] = '\0';
}

/* Appends the string value v where fmt has put it: start..at is the format
 * text before the conversion, next the text after it. */
static void put_value(out_t *o, const char *start, const char *at,
                      const char *next, const char *v)
{
        char q[VALUE_MAX + 1];
        size_t n;

        if (!*v && (at == start || at[-1] != '='))
                return; /* "%s" with "": nothing */
        par_text_logfmt(q, sizeof(q), v);
        n = strlen(q);
        if (at - start >= 2 && at[-1] == '"' && at[-2] == '=' && *next == '"') {
                /* key="%s": the quotes are the format's; keep the escaped
                 * inside only. */
                if (n >= 2 && q[0] == '"')
                        out_put(o, q + 1, n - 2);
                else
                        out_put(o, q, n);
                return;
        }
        out_put(o, q, n);
}

/* Formats one conversion with its argument from ap: spec is the
 * conversion ('*' replaced by numbers), len its length modifier without
 * 'h'; at is where it starts in the format (which starts at start), next
 * what follows it. */
static void put_conversion(out_t *o, const char *start, const char *at,
                           const char *next, const char *spec, char conv,
                           const char *len, va_list *ap)
{
        char tmp[VALUE_MAX + 1];
        int n = 0;

        switch (conv) {
        case 's': {
                const char *v = va_arg(*ap, const char *);
                /* Precision applies to the raw value; width is ignored
                 * (padding would only be quoted). */
                const char *dot = strchr(spec, '.');
                if (!v)
                        v = "(null)";
                if (dot) {
                        size_t max = (size_t)strtoul(dot + 1, NULL, 10);
                        size_t l = strnlen(
                            v, max < sizeof(tmp) - 1 ? max : sizeof(tmp) - 1);
                        memcpy(tmp, v, l);
                        tmp[l] = '\0';
                        v = tmp;
                }
                put_value(o, start, at, next, v);
                return;
        }
        case 'd':
        case 'i':
                if (!strcmp(len, "l"))
                        n = snprintf(tmp, sizeof(tmp), spec, va_arg(*ap, long));
                else if (!strcmp(len, "ll"))
                        n = snprintf(tmp, sizeof(tmp), spec,
                                     va_arg(*ap, long long));
                else if (!strcmp(len, "z"))
                        n = snprintf(tmp, sizeof(tmp), spec,
                                     va_arg(*ap, ssize_t));
                else if (!strcmp(len, "j"))
                        n = snprintf(tmp, sizeof(tmp), spec,
                                     va_arg(*ap, intmax_t));
                else if (!strcmp(len, "t"))
                        n = snprintf(tmp, sizeof(tmp), spec,
                                     va_arg(*ap, ptrdiff_t));
                else
                        n = snprintf(tmp, sizeof(tmp), spec, va_arg(*ap, int));
                break;
        case 'u':
        case 'x':
        case 'X':
        case 'o':
                if (!strcmp(len, "l"))
                        n = snprintf(tmp, sizeof(tmp), spec,
                                     va_arg(*ap, unsigned long));
                else if (!strcmp(len, "ll"))
                        n = snprintf(tmp, sizeof(tmp), spec,
                                     va_arg(*ap, unsigned long long));
                else if (!strcmp(len, "z"))
                        n = snprintf(tmp, sizeof(tmp), spec,
                                     va_arg(*ap, size_t));
                else if (!strcmp(len, "j"))
                        n = snprintf(tmp, sizeof(tmp), spec,
                                     va_arg(*ap, uintmax_t));
                else if (!strcmp(len, "t"))
                        n = snprintf(tmp, sizeof(tmp), spec,
                                     va_arg(*ap, ptrdiff_t));
                else
                        n = snprintf(tmp, sizeof(tmp), spec,
                                     va_arg(*ap, unsigned));
                break;
        case 'c':
                n = snprintf(tmp, sizeof(tmp), spec, va_arg(*ap, int));
                break;
        case 'p':
                n = snprintf(tmp, sizeof(tmp), spec, va_arg(*ap, void *));
                break;
        case 'e':
        case 'E':
        case 'f':
        case 'F':
        case 'g':
        case 'G':
        case 'a':
        case 'A':
                if (!strcmp(len, "L"))
                        n = snprintf(tmp, sizeof(tmp), spec,
                                     va_arg(*ap, long double));
                else
                        n = snprintf(tmp, sizeof(tmp), spec,
                                     va_arg(*ap, double));
                break;
        default:
                return; /* %n and unknowns: nothing */
        }
        if (n > 0)
                out_put(o, tmp,
                        (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* printf-style formatting of the fields with every %s escaped as above. */
static void format_fields(out_t *o, const char *fmt, va_list *ap)
{
        const char *p = fmt, *lit = fmt;

        while (*p) {
                char spec[48], len[3] = "";
                size_t sn = 0;
                const char *at = p;

                if (*p != '%') {
                        p++;
                        continue;
                }
                out_put(o, lit, (size_t)(p - lit));
                p++;
                if (*p == '%') {
                        out_put(o, "%", 1);
                        lit = ++p;
                        continue;
                }
                spec[sn++] = '%';
                while (*p && strchr("-+ #0", *p) && sn < 8)
                        spec[sn++] = *p++;
                for (int part = 0; part < 2; part++) {
                        if (part == 1) {
                                if (*p != '.')
                                        break;
                                spec[sn++] = *p++;
                        }
                        if (*p == '*') {
                                sn += (size_t)snprintf(spec + sn, 12, "%d",
                                                       va_arg(*ap, int));
                                p++;
                        } else {
                                while (*p >= '0' && *p <= '9' && sn < 30)
                                        spec[sn++] = *p++;
                        }
                }
                for (size_t l = 0; *p && strchr("hljztL", *p) && l < 2; l++) {
                        if (*p != 'h')
                                len[l] = *p;
                        spec[sn++] = *p++;
                }
                if (!*p)
                        break;
                spec[sn++] = *p;
                spec[sn] = '\0';
                put_conversion(o, fmt, at, p + 1, spec, *p, len, ap);
                lit = ++p;
        }
        out_put(o, lit, (size_t)(p - lit));
}

void par_log(par_log_level_t level, const char *comp, const char *event,
             const char *fmt, ...)
{
        char line[4096];
        struct timeval tv;
        struct tm tm;
        size_t n;
        int w;
        va_list ap;

        if (!par_log_enabled(level) || level >= PAR_LOG_OFF)
                return;
        gettimeofday(&tv, NULL);
        gmtime_r(&tv.tv_sec, &tm);
        n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
        w = snprintf(line + n, sizeof(line) - n,
                     ".%03dZ level=%s comp=%s event=%s",
                     (int)(tv.tv_usec / 1000), names[level], comp, event);
        n += w > 0 ? (size_t)w : 0;
        if (fmt && *fmt && n < sizeof(line) - 2) {
                char fields[sizeof(line)];
                out_t o = {fields, 0, sizeof(fields) - 1};

                line[n++] = ' ';
                va_start(ap, fmt);
                format_fields(&o, fmt, &ap);
                va_end(ap);
                if (!o.len)
                        n--; /* no fields: no trailing space */
                /* Values are escaped already; this catches control bytes
                 * in the format text itself (and %c). */
                n += par_text_escape_controls(line + n, sizeof(line) - 1 - n,
                                              fields);
        }
        if (n > sizeof(line) - 2)
                n = sizeof(line) - 2;
        line[n++] = '\n';
        pthread_mutex_lock(&lock);
        fwrite(line, 1, n, sink ? sink : stderr);
        fflush(sink ? sink : stderr);
        pthread_mutex_unlock(&lock);
}
