/* The MPI implementation of the gradient all-reduce (worker/allreduce.h): host memory, buckets
 * reduced with MPI_Iallreduce (in place, MPI_SUM) on a private duplicate of the workers'
 * communicator, each bucket divided by the number of workers as soon as its reduction is seen
 * complete (in mark_ready / progress / wait). For the CPU backend. */
#pragma once
#include "worker/allreduce.h"

#include <mpi.h>

/* Raise glibc's mmap/trim thresholds (1 GiB) so MPI's temporary reduction buffers above 32 MiB
 * are reused instead of mmapped and page-faulted on every call (10x slower on our VMs, see
 * toolchain notes). Call first thing in main, BEFORE MPI_Init. 0 or -1 if mallopt refused. */
int allreduce_tune_malloc(void);

/* Collective over comm (it duplicates comm). grad: count floats of host memory, owned by the
 * caller, must stay valid. bucket_bytes is rounded down to whole floats (at least one). NULL +
 * err on failure. */
allreduce *allreduce_create_mpi(MPI_Comm comm, float *grad, size_t count, size_t bucket_bytes,
                                allreduce_order order, char *err, size_t errlen);
