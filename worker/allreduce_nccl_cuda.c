/* NCCL all-reduce of gradient buckets in device memory (worker/allreduce_nccl.h). */
#include "worker/allreduce_nccl.h"

#include "common/log.h"
#include "common/timer.h"
#include "worker/allreduce_impl.h"

#include <cuda_runtime_api.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define NCCL_TIMEOUT_DEFAULT_S 300.0

typedef struct nccl_impl {
    backend *be;
    backend_event *ready;
    float *grad;
    int device;
    ncclComm_t comm;
    cudaStream_t stream;    /* communication stream */
    cudaEvent_t start, end; /* first launch, completion of the step */
    bool launched;          /* something was launched since the last blocking complete */
    bool timed;             /* start and end bracket this step's reductions */
    bool failed;            /* the communicator is unusable: abort it instead of destroying */
    double timeout_s;
} nccl_impl;

static nccl_impl *impl_of(const allreduce *ar) {
    return ar->impl;
}

static int where(const allreduce *ar, char *buf, size_t n) {
    return snprintf(buf, n, "allreduce: rank %d (worker %d of %d, GPU %d)", ar->world_rank,
                    ar->rank, ar->size, ar->impl ? impl_of(ar)->device : -1);
}

static int cuda_fail(const allreduce *ar, cudaError_t e, const char *what, char *err,
                     size_t errlen) {
    char w[128];
    where(ar, w, sizeof w);
    return errf(err, errlen, "%s: %s failed: %s (%s)", w, what, cudaGetErrorString(e),
                cudaGetErrorName(e));
}

static int nccl_fail(allreduce *ar, ncclResult_t r, const char *what, char *err, size_t errlen) {
    nccl_impl *im = impl_of(ar);
    char w[128];
    where(ar, w, sizeof w);
    const char *last = im && im->comm ? ncclGetLastError(im->comm) : NULL;
    if (im) im->failed = true;
    return errf(err, errlen, "%s: %s failed: %s%s%s", w, what, ncclGetErrorString(r),
                last && *last ? ": " : "", last ? last : "");
}

#define CU(ar, call, what)                                                                         \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) return cuda_fail(ar, e_, what, err, errlen);                        \
    } while (0)
#define NC(ar, call, what)                                                                         \
    do {                                                                                           \
        ncclResult_t r_ = (call);                                                                  \
        if (r_ != ncclSuccess) return nccl_fail(ar, r_, what, err, errlen);                        \
    } while (0)

static int nccl_launch(allreduce *ar, int b, size_t first, size_t n, char *err, size_t errlen) {
    nccl_impl *im = impl_of(ar);
    char what[64];
    snprintf(what, sizeof what, "ncclAllReduce (bucket %d)", b);
    /* the marked ranges are final once the compute stream reaches the last ready record */
    CU(ar, cudaStreamWaitEvent(im->stream, (cudaEvent_t)backend_event_native(im->ready), 0),
       "cudaStreamWaitEvent (ready)");
    if (!im->launched) {
        CU(ar, cudaEventRecord(im->start, im->stream), "cudaEventRecord (start)");
        im->launched = true;
    }
    NC(ar,
       ncclAllReduce(im->grad + first, im->grad + first, n, ncclFloat, ncclAvg, im->comm,
                     im->stream),
       what);
    return 0;
}

/* A peer's death or a network failure surfaces here (the collectives themselves just wait). */
static int check_async(allreduce *ar, char *err, size_t errlen) {
    nccl_impl *im = impl_of(ar);
    ncclResult_t st = ncclSuccess;
    NC(ar, ncclCommGetAsyncError(im->comm, &st), "ncclCommGetAsyncError");
    if (st != ncclSuccess && st != ncclInProgress) {
        nccl_fail(ar, st, "the all-reduce (a peer failed, left or the network broke)", err, errlen);
        ncclCommAbort(im->comm); /* unblocks the stream; the job ends */
        im->comm = NULL;
        return -1;
    }
    return 0;
}

static int nccl_complete(allreduce *ar, bool blocking, char *err, size_t errlen) {
    nccl_impl *im = impl_of(ar);
    if (!blocking || !im->launched) return im->launched ? check_async(ar, err, errlen) : 0;
    CU(ar, cudaEventRecord(im->end, im->stream), "cudaEventRecord (end)");
    double t0 = now_seconds();
    for (;;) {
        cudaError_t q = cudaEventQuery(im->end);
        if (q == cudaSuccess) break;
        if (q != cudaErrorNotReady) {
            im->failed = true;
            return cuda_fail(ar, q, "the all-reduce (cudaEventQuery)", err, errlen);
        }
        if (check_async(ar, err, errlen) != 0) return -1;
        if (now_seconds() - t0 > im->timeout_s) {
            char w[128];
            where(ar, w, sizeof w);
            errf(err, errlen,
                 "%s: the gradient all-reduce made no progress in %.0f s (YOLO_NCCL_TIMEOUT): a "
                 "peer rank stopped or hangs",
                 w, im->timeout_s);
            im->failed = true;
            ncclCommAbort(im->comm);
            im->comm = NULL;
            return -1;
        }
        nanosleep(&(struct timespec){0, 50000}, NULL);
    }
    /* later work of the compute stream (clip, optimizer) comes after the reduction */
    CU(ar, cudaStreamWaitEvent((cudaStream_t)backend_native_stream(im->be), im->end, 0),
       "cudaStreamWaitEvent (compute after all-reduce)");
    im->launched = false;
    im->timed = true;
    return 0;
}

static bool nccl_in_flight(const allreduce *ar) {
    return impl_of(ar)->launched;
}

static void nccl_step_times(allreduce *ar, double *comm_s, double *scale_s) {
    nccl_impl *im = impl_of(ar);
    float ms = 0;
    if (im->timed && cudaEventElapsedTime(&ms, im->start, im->end) != cudaSuccess) ms = 0;
    im->timed = false;
    *comm_s = ms / 1e3;
    *scale_s = 0; /* ncclAvg divides inside the reduction */
}

static void nccl_destroy(allreduce *ar) {
    nccl_impl *im = impl_of(ar);
    if (!im) return;
    if (im->comm) {
        if (!im->failed && im->launched) { /* finish what is enqueued, or give up on error */
            char err[512];
            if (nccl_complete(ar, true, err, sizeof err) != 0) log_warn("%s", err);
        }
        if (im->comm) {
            ncclResult_t r = im->failed ? ncclCommAbort(im->comm) : ncclCommDestroy(im->comm);
            if (r != ncclSuccess) log_warn("allreduce: ncclCommDestroy: %s", ncclGetErrorString(r));
        }
    }
    cudaError_t e[3] = {im->stream ? cudaStreamDestroy(im->stream) : cudaSuccess,
                        im->start ? cudaEventDestroy(im->start) : cudaSuccess,
                        im->end ? cudaEventDestroy(im->end) : cudaSuccess};
    for (int i = 0; i < 3; i++) /* teardown: said, not fatal (the job is ending anyway) */
        if (e[i] != cudaSuccess)
            log_warn("allreduce: destroying the %s failed: %s",
                     i == 0 ? "communication stream" : "timing events", cudaGetErrorString(e[i]));
    free(im);
    ar->impl = NULL;
}

static const allreduce_ops nccl_ops = {
    .kind = "nccl",
    .launch = nccl_launch,
    .complete = nccl_complete,
    .in_flight = nccl_in_flight,
    .step_times = nccl_step_times,
    .destroy = nccl_destroy,
};

static int setup(allreduce *ar, MPI_Comm comm, char *err, size_t errlen) {
    nccl_impl *im = impl_of(ar);
    int rc;
    if ((rc = MPI_Comm_rank(comm, &ar->rank)) != MPI_SUCCESS ||
        (rc = MPI_Comm_size(comm, &ar->size)) != MPI_SUCCESS)
        return allreduce_mpi_fail(ar, rc, "communicator setup", err, errlen);
    if (im->device < 0)
        return errf(err, errlen,
                    "allreduce: rank %d: the NCCL all-reduce needs a GPU backend, not %s",
                    ar->world_rank, backend_name(im->be));
    if (!backend_native_stream(im->be) || !backend_event_native(im->ready))
        return errf(err, errlen, "allreduce: rank %d: backend %s gives no stream or event",
                    ar->world_rank, backend_name(im->be));
    CU(ar, cudaSetDevice(im->device), "cudaSetDevice");
    ncclUniqueId id;
    if (ar->rank == 0) NC(ar, ncclGetUniqueId(&id), "ncclGetUniqueId");
    /* the only MPI traffic of this implementation */
    if ((rc = MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, comm)) != MPI_SUCCESS)
        return allreduce_mpi_fail(ar, rc, "MPI_Bcast (ncclUniqueId)", err, errlen);
    NC(ar, ncclCommInitRank(&im->comm, ar->size, id, ar->rank), "ncclCommInitRank");
    CU(ar, cudaStreamCreateWithFlags(&im->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    CU(ar, cudaEventCreate(&im->start), "cudaEventCreate");
    CU(ar, cudaEventCreate(&im->end), "cudaEventCreate");
    return 0;
}

allreduce *allreduce_create_nccl(MPI_Comm comm, backend *be, backend_event *ready, float *grad,
                                 size_t count, size_t bucket_bytes, allreduce_order order,
                                 char *err, size_t errlen) {
    allreduce *ar = xcalloc(1, sizeof *ar);
    nccl_impl *im = xcalloc(1, sizeof *im);
    ar->ops = &nccl_ops;
    ar->impl = im;
    im->be = be;
    im->ready = ready;
    im->grad = grad;
    im->device = backend_device(be);
    const char *to = getenv("YOLO_NCCL_TIMEOUT");
    im->timeout_s = to && atof(to) > 0 ? atof(to) : NCCL_TIMEOUT_DEFAULT_S;
    if (MPI_Comm_rank(MPI_COMM_WORLD, &ar->world_rank) != MPI_SUCCESS) ar->world_rank = -1;
    if (!grad) {
        errf(err, errlen, "allreduce: rank %d: empty gradient buffer", ar->world_rank);
        goto fail;
    }
    if (setup(ar, comm, err, errlen) != 0 ||
        allreduce_init_common(ar, count, bucket_bytes, order, err, errlen) != 0)
        goto fail;
    return ar;
fail:
    im->failed = true;
    nccl_destroy(ar);
    allreduce_free_common(ar);
    return NULL;
}
