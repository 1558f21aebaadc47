/* Starting the MPMD job: when `coordinator train` runs outside mpirun, it re-executes itself as
 * `mpirun -np 1 <coordinator> train ... : -np N <worker>` with the same arguments. */
#pragma once
#include <stdbool.h>

/* True when this process was started by an MPI launcher (mpirun, srun). */
bool launched_by_mpi(void);
/* Runs mpirun (found on PATH) with 1 coordinator and `workers` workers (bin/worker next to this
 * binary) and the given train arguments; returns mpirun's exit code (or 2 with a message). */
int launch_mpmd(const char *self, int workers, int argc, char **argv);

/* Replaces this process with bin/<program> next to this binary, run as `<program> <argv...>`
 * (the coordinator's val / predict / gate / drift are bin/lifecycle's). Returns only on failure:
 * 2 with a message. */
int exec_sibling(const char *program, int argc, char **argv);
