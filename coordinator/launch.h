/* Starting the MPMD job: when `coordinator train` runs outside mpirun, it re-executes itself as
 * `mpirun -np 1 <coordinator> train ... : -np N <worker>` with the same arguments, and stays as
 * the launcher: the one process a user or a batch system signals.
 *
 * The job stays on one host and on loopback (mpirun's own listener included, through
 * bin/yolo-loopback.so). mpirun runs in a process group of its own (the terminal's Ctrl-C reaches
 * only the launcher), with SIGTERM blocked (it would kill every rank a second later), and dies with
 * the launcher, even a SIGKILLed one (the workers die with mpirun; the coordinator gets SIGTERM,
 * finds them gone and ends cleanly). Stop signals: the first SIGINT, SIGTERM or SIGUSR1 goes to the
 * coordinator rank itself, which saves a version at the next step boundary and ends the job (exit
 * 75, common/stop_signal.h); a second SIGINT or SIGTERM stops the job at once (exit 130). */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "common/mpi_launch.h"

/* The worker binary next to this (coordinator) binary, into out. 0, or -1 with a message. */
int worker_binary(char *out, size_t n, char *err, size_t errlen);
/* Runs mpirun (found on PATH) with 1 coordinator and `workers` workers (bin/worker next to this
 * binary) and the given train arguments; returns mpirun's exit code (or 2 with a message). */
int launch_mpmd(const char *self, int workers, int argc, char **argv);
/* The coordinator rank's run folder, for the launcher (it removes the endpoints a killed
 * coordinator leaves). Nothing without a launcher. */
void launch_report_run_dir(const char *dir);
/* The coordinator rank's exit status: under the launcher, handed to it (the rank then exits 0, so
 * mpirun ends at once and quietly); returns what the rank should exit with. */
int launch_report_status(int rc);

/* Replaces this process with bin/<program> next to this binary, run as `<program> <argv...>`
 * (the coordinator's val / predict / gate / drift are bin/lifecycle's). Returns only on failure:
 * 2 with a message. */
int exec_sibling(const char *program, int argc, char **argv);
