/* Starting the MPMD job: when `coordinator train` runs outside mpirun, it re-executes itself as
 * `mpirun -np 1 <coordinator> train ... : -np N <worker>` with the same arguments. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "common/mpi_launch.h"

/* The worker binary next to this (coordinator) binary, into out. 0, or -1 with a message. */
int worker_binary(char *out, size_t n, char *err, size_t errlen);
/* Runs mpirun (found on PATH) with 1 coordinator and `workers` workers (bin/worker next to this
 * binary) and the given train arguments; returns mpirun's exit code (or 2 with a message). */
int launch_mpmd(const char *self, int workers, int argc, char **argv);

/* Replaces this process with bin/<program> next to this binary, run as `<program> <argv...>`
 * (the coordinator's val / predict / gate / drift are bin/lifecycle's). Returns only on failure:
 * 2 with a message. */
int exec_sibling(const char *program, int argc, char **argv);
