/* The run directory project/name: created fresh (name, name2, name3, ... as Ultralytics increments)
 * unless exist_ok, with a weights/ folder. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

/* Creates the directory (and parents) and weights/ inside; writes the chosen path to out.
 * 0, or -1 with one line in err naming the path. */
int rundir_create(const char *project, const char *name, bool exist_ok, char *out, size_t outlen,
                  char *err, size_t errlen);
/* The same folder without weights/ (val, predict and drift outputs: runs/detect/val, val2, ...). */
int rundir_claim(const char *project, const char *name, bool exist_ok, char *out, size_t outlen,
                 char *err, size_t errlen);
/* mkdir -p */
int mkdir_p(const char *path, char *err, size_t errlen);
