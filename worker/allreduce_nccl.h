/* The NCCL implementation of the gradient all-reduce (worker/allreduce.h): device memory of a GPU
 * backend, buckets reduced with ncclAllReduce(ncclAvg) on a communication stream of their own.
 * Before each bucket the communication stream waits for the caller's `ready` event (recorded on
 * the compute stream after the work that made the marked ranges final), so the hook that marks
 * ranges only enqueues; nothing waits on the host until allreduce_wait.
 *
 * allreduce_wait records the end of the reductions, and the host polls it together with
 * ncclCommGetAsyncError: a peer that died or a network failure ends the step with a message
 * naming this rank (and NCCL's own words) instead of a hang; no progress for YOLO_NCCL_TIMEOUT
 * seconds (default 300) likewise. The communicator is then aborted. Later work of the backend's
 * stream is ordered after the reduction. */
#pragma once
#include "kernels/backend.h"
#include "worker/allreduce.h"

#include <mpi.h>

/* Collective over comm (the workers' MPI communicator, used once: worker 0's ncclUniqueId is
 * broadcast over it). be: a GPU backend (backend_device >= 0) whose device this process uses;
 * grad: count floats of its memory; ready: an event of be (see above). NULL + err on failure,
 * also when built without CUDA or given the CPU backend. */
allreduce *allreduce_create_nccl(MPI_Comm comm, backend *be, backend_event *ready, float *grad,
                                 size_t count, size_t bucket_bytes, allreduce_order order,
                                 char *err, size_t errlen);
