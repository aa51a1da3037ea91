/* lws.c — see lws.h. */
#include "net/lws.h"

#include <pthread.h>
#include <string.h>

#include <libwebsockets.h>

#include "base/log.h"

static void log_to_par(int level, const char *line)
{
        size_t n = strlen(line);

        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                n--;
        par_log(level == LLL_ERR ? PAR_LOG_WARN : PAR_LOG_DEBUG, "lws", "log",
                "msg=\"%.*s\"", (int)n, line);
}

static void install(void)
{
        lws_set_log_level(LLL_ERR | LLL_WARN, log_to_par);
}

void par_lws_init(void)
{
        static pthread_once_t once = PTHREAD_ONCE_INIT;

        pthread_once(&once, install);
}
