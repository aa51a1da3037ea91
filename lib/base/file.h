/*
 * file.h — opening input files that must be regular files.
 *
 * Config files and recipes are read at start-up; a FIFO in their place
 * would block the open forever and a directory reads as an empty file, so
 * both are refused with an error naming the path. Any thread.
 */
#ifndef PAR_FILE_H
#define PAR_FILE_H

#include <stdio.h>

#include "base/err.h"

/* Opens path for reading ("r") when it is a regular file. Returns the
 * stream (the caller fcloses it) or NULL with err set: PAR_ERR_IO
 * ("path: No such file or directory") or PAR_ERR_INVALID ("path: not a
 * regular file"). */
FILE *par_file_open_regular(const char *path, par_error_t *err);

#endif
