/* file.c — see file.h. */
#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

FILE *par_file_open_regular(const char *path, par_error_t *err)
{
        struct stat st;
        FILE *f;
        /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
         * writer before fstat could refuse it. */
        int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);

        if (fd < 0) {
                par_error_set(err, PAR_ERR_IO, "%s: %s", path, strerror(errno));
                return NULL;
        }
        if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
                close(fd);
                par_error_set(err, PAR_ERR_INVALID, "%s: not a regular file",
                              path);
                return NULL;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        f = fdopen(fd, "r");
        if (!f) {
                par_error_set(err, PAR_ERR_IO, "%s: %s", path, strerror(errno));
                close(fd);
        }
        return f;
}
