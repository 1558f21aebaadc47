#include "common/mpi_launch.h"

#include <stdlib.h>

bool launched_by_mpi(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK") ||
           getenv("SLURM_STEP_ID");
}
