/* A worker's watch on its coordinator (world rank 0). The coordinator names a dead or silent
 * worker; this is the other direction: a worker waiting for the coordinator's next message checks
 * that it is still there (on the same host: its process; anywhere: it spoke within stall_abort),
 * and otherwise ends the job instead of waiting forever. Also the worker's stop signals: recorded
 * (the coordinator decides), reported in the next step report. One per process. */
#pragma once

/* Right after MPI_Init and the workers' communicator split: the hello exchange of every rank's
 * rank_info (common/protocol.h, collective), then the stop-signal handlers and, as a safety net,
 * death of this rank with its launcher (mpirun, slurmstepd): no worker outlives its job. */
void coord_watch_start(void);
/* The run's stall_abort. A worker gives up on a silent coordinator after twice that: the
 * coordinator, which may itself be waiting for a silent worker, names that one first. */
void coord_watch_limit(double abort_s);
/* Returns once a message with `tag` from the coordinator can be received. When the coordinator is
 * gone or silent past the limit: one line naming it and `what` was awaited, and the job ends
 * (MPI_Abort). */
void coord_watch_wait(int tag, const char *what);
/* The stop signal this worker received and has not reported yet (0: none); reported once. */
int coord_watch_take_signal(void);
