/* Stop requests from outside the program: SIGINT (Ctrl-C), SIGTERM (kill, Slurm's preemption and
 * requeue, mpirun tearing a job down) and SIGUSR1 (Slurm's --signal=USR1@<s> before a time limit).
 * The handler only records them, so the training loop decides what to do at its next step
 * boundary (the coordinator: save a version and stop; a worker: tell the coordinator).
 *
 * Only a second SIGINT means "now": the handler writes its line, removes the registered files
 * (the run's endpoints) and ends the process with status 130. A repeated SIGTERM does not, because
 * under Slurm or mpirun one stop arrives as several SIGTERMs (each process of the job is signalled,
 * and mpirun relays its own), and they all ask for the same careful stop. */
#pragma once
#include <stdbool.h>

/* The exit status of a run stopped by a signal after its version was saved: sysexits' EX_TEMPFAIL
 * ("try again later"); resume continues it, and cluster/slurm/train.sbatch requeues on it. */
#define EXIT_STOPPED_BY_SIGNAL 75

typedef struct stop_signal_opts {
    /* A second SIGINT ends the process at once (the coordinator and workers; not the launcher,
     * which escalates in its own loop). */
    bool second_interrupt_exits;
    /* > 0: a process on this host (a worker's coordinator). When a signal arrives and it is gone,
     * end at once: there is nothing left to stop carefully. */
    int peer_pid;
    /* The program name for the line written when the handler ends the process. */
    const char *program;
} stop_signal_opts;

/* Installs the handlers for SIGINT, SIGTERM and SIGUSR1 (SA_RESTART: interrupted system calls in
 * libraries resume). Call once, early. */
void stop_signal_install(const stop_signal_opts *o);
/* From now on, ending at once writes no line: the job was refused and rank 0's line saying why
 * must stay the last one (mpirun's SIGTERM to the ranks still exiting would otherwise follow it).
 */
void stop_signal_quiet(void);
/* The first signal received (0: none yet), and how many of `sig` arrived. */
int stop_signal_first(void);
int stop_signal_received(int sig);
/* For the ending at once: a file to remove (copied; at most 8), and where the line goes (at most
 * 2 descriptors, e.g. the terminal and train.log; stderr until one is given). */
void stop_signal_unlink_on_exit(const char *path);
void stop_signal_write_on_exit(int fd);
/* "SIGINT", "SIGTERM", "SIGUSR1", "SIGKILL", ... or "a signal" (a static string). */
const char *stop_signal_name(int sig);
