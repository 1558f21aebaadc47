/* One training run per run folder: the coordinator holds an exclusive flock on <run>/.lock for
 * its whole life (the kernel releases it when the process ends, however it ends), so a second
 * run pointed at the same folder (exist_ok, resume) is refused instead of writing the same
 * results.csv and weights. The file names the holder (pid, host, start time) for the message. */
#pragma once
#include <stddef.h>

#define RUN_LOCK_FILE ".lock"

/* Takes the lock and keeps it (the returned descriptor stays open until exit). -1 with one line
 * in err naming the folder and the holder when another process has it. */
int run_lock_acquire(const char *run_dir, char *err, size_t errlen);
/* Before launching: 0 when the folder is free (or does not exist yet), -1 with the same message
 * as run_lock_acquire when a live run holds it. Takes nothing. */
int run_lock_check(const char *run_dir, char *err, size_t errlen);
