/* log.c — see log.h. Lines are built in a local buffer and written whole so
 * lines from different threads never interleave; control bytes and invalid
 * UTF-8 in the fields are escaped so one event is always one line. */
#include "base/log.h"
#include "base/text.h"

#include <pthread.h>
#include <stdarg.h>
#include <string.h>
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

void par_log(par_log_level_t level, const char *comp, const char *event,
             const char *fmt, ...)
{
        char line[2048];
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

                line[n++] = ' ';
                va_start(ap, fmt);
                vsnprintf(fields, sizeof(fields), fmt, ap);
                va_end(ap);
                /* A value may carry a newline (a recipe name from a signal,
                 * a node.id): escaped, it cannot start a forged line. */
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
