/* The coordinator's watch over the job's ranks: every wait for a worker's message goes through
 * here, so a worker that dies or goes silent is named (rank, host, pid, the last step it reported)
 * on the terminal, in train.log and as a "failed" event, and the job ends non-zero instead of
 * waiting forever. One per process (the coordinator runs one job).
 *
 * A worker on the coordinator's host is checked for life twice a second (its process: gone, a
 * zombie, or its pid reused is dead); one on another host is known only by its messages: silent
 * past stall_abort, it is named as hung. Waiting never spins a core (the coordinator shares the
 * machine with the workers it waits for): it probes and sleeps (common/poll_wait.h), finely where
 * the message is due (the step reports: one step's period after the last ones), at most every
 * millisecond elsewhere. */
#pragma once
#include <mpi.h>
#include <stddef.h>

#include "common/protocol.h"
#include "common/rank_info.h"
#include "coordinator/telemetry.h"

/* Right after MPI_Init and the workers' split: the hello exchange (common/protocol.h, collective),
 * the stop-signal handlers, and, as a safety net, SIGTERM to this process when its launcher dies
 * (mpirun killed: the coordinator then finds its workers gone and ends cleanly). */
void rank_watch_start(void);
/* stall_warn / stall_abort of the run (defaults 60 / 600 s until set). */
void rank_watch_limits(double warn_s, double abort_s);
/* Where failures and warnings are published besides the terminal (NULL: nowhere). */
void rank_watch_telemetry(telemetry *t);
/* Called once when a rank has failed, after the message and the "failed" event, to finish what
 * can be finished (queued versions, endpoints, train.log); then the job ends with MPI_Abort. */
void rank_watch_on_fail(void (*fn)(void *ctx), void *ctx);

/* Returns once a message (src, tag) can be received. Stall limits apply: a warning past
 * stall_warn, failure past stall_abort or when a rank is found dead. `what` names the message
 * ("checkpoint state"). Never returns on failure. */
void rank_watch_wait(int src, int tag, const char *what);
/* The same for a wait whose length grows with the work (a worker validating its share of a large
 * val split): every message on progress_tag from src is a heartbeat (received and dropped) that
 * restarts the stall clock. Heartbeats still queued once (src, tag) is there are dropped too. */
void rank_watch_wait_progress(int src, int tag, int progress_tag, const char *what);
/* MPI_Irecv of count items of type from src, completed under rank_watch_wait's limits. */
void rank_watch_recv(void *buf, int count, MPI_Datatype type, int src, int tag, const char *what);
/* Completes a nonblocking collective the workers take part in (their setup reports): a dead
 * worker is named at once; past stall_abort the job ends naming the workers (which one is late a
 * collective does not say). Never returns on failure. */
void rank_watch_collective(MPI_Request *req, const char *what);
/* One step's report from each of the workers (ranks 1..workers) into r[0..workers-1], with the
 * stall limits; records each rank's last step. Never returns on failure. */
void rank_watch_reports(int workers, step_report *r);

/* One line (terminal, train.log): "ranks: coordinator vm:1200, workers vm:1201 vm:1202" (the
 * first 16 workers, then how many more). */
void rank_watch_log_ranks(void);
/* "rank 2 (host vm, pid 1234, last reported epoch 1 step 3)" into out. */
void rank_watch_describe(int rank, char *out, size_t n);
/* A rank's identity (world rank 0 is the coordinator). */
const rank_info *rank_watch_rank(int rank);
