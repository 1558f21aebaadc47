/* Built without CUDA: there is no NCCL all-reduce; the CPU backend uses MPI's. */
#include "worker/allreduce_nccl.h"

#include "common/log.h"

allreduce *allreduce_create_nccl(MPI_Comm comm, backend *be, backend_event *ready, float *grad,
                                 size_t count, size_t bucket_bytes, allreduce_order order,
                                 char *err, size_t errlen) {
    (void)comm, (void)be, (void)ready, (void)grad, (void)count, (void)bucket_bytes, (void)order;
    errf(err, errlen, "allreduce: NCCL is not available: this build has no CUDA (make CUDA=1)");
    return NULL;
}
