/* Whether this process was started by an MPI launcher (mpirun, srun): the coordinator then runs
 * as rank 0 instead of launching a job, and a worker without a command is a training rank. */
#pragma once
#include <stdbool.h>

bool launched_by_mpi(void);
