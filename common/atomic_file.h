/* Write-then-rename: a file appears under its final name complete or not at all.
 * Usage: tmp = atomic_tmp_path(path); write tmp by any means; atomic_commit(tmp, path, ...).
 * On failure call atomic_abort(tmp), which removes the temporary file. */
#pragma once
#include <stddef.h>

/* "<dir>/.<base>.tmp.<pid>" beside the final path (same filesystem, so rename is atomic).
 * Caller frees. */
char *atomic_tmp_path(const char *final_path);
/* fsync the temporary file, rename it over final_path, fsync the directory. 0 or -1 + err. */
int atomic_commit(const char *tmp_path, const char *final_path, char *err, size_t errlen);
void atomic_abort(const char *tmp_path);
/* Whole buffer to a file, atomically (mode from the umask). */
int atomic_write_file(const char *path, const void *data, size_t n, char *err, size_t errlen);
/* The same with exactly these permission bits whatever the umask (e.g. 0600 for secrets). */
int atomic_write_file_mode(const char *path, const void *data, size_t n, int mode, char *err,
                           size_t errlen);
