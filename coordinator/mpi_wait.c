#include "coordinator/mpi_wait.h"

#include "common/log.h"
#include "common/protocol.h"

#include <mpi.h>
#include <unistd.h>

/* A blocking MPI_Recv busy-polls a whole core while the workers train or validate, and on a
 * small machine that core is one of theirs. */
void mpi_wait_message(int src, int tag) {
    for (;;) {
        int flag = 0;
        CHECK_MPI(MPI_Iprobe(src, tag, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE));
        if (flag) return;
        usleep(1000);
    }
}
