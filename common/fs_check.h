/* Folder checks made before anything is written, so that a command with an unusable output
 * folder fails before it creates anything. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

/* A folder writable by its permission bits, not only by access(): root may write anywhere, but a
 * folder marked read-only (shared data, a locked project) is treated as read-only for root too. */
bool dir_writable(const char *dir);
/* The folder `path` exists and is writable, or could be created: every existing component is a
 * folder and the nearest existing one is writable (dir_writable). 0, or -1 with one line naming
 * the component in the way. */
int dir_creatable(const char *path, char *err, size_t errlen);
