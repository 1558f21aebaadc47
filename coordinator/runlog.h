/* The run's log, P/N/train.log: everything the coordinator writes to its stdout and stderr
 * (progress, validation tables, warnings, errors, summary) also goes to the file. A thread tees two
 * pipes that replace fds 1 and 2; in the file a line redrawn with carriage returns keeps only its
 * final state, so each epoch's progress appears once. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

/* Starts teeing into <dir>/train.log (appending). 0, or -1 with err naming the file. */
int runlog_open(const char *dir, char *err, size_t errlen);
/* Flushes stdio, restores fds 1 and 2, waits for the tee thread and closes the file. No-op when
 * not open. */
void runlog_close(void);
/* The descriptors of the original stderr and of train.log while the tee is active (-1 each when
 * not): for a line written from a signal handler, which cannot go through the tee thread. */
void runlog_raw_fds(int *terminal, int *file);
/* isatty() of the ORIGINAL fd 1 or 2 while the tee is active (the pipe would say no). */
bool runlog_isatty(int fd);
