/* MPI all-reduce of gradient buckets in host memory (worker/allreduce_mpi.h). */
#include "worker/allreduce_mpi.h"

#include "common/log.h"
#include "common/timer.h"
#include "kernels/threads.h"
#include "worker/allreduce_impl.h"

#include <malloc.h>
#include <stdlib.h>

typedef struct mpi_impl {
    MPI_Comm comm; /* private duplicate: our collectives never interleave with the caller's */
    float *grad;
    MPI_Request *req;   /* per bucket; MPI_REQUEST_NULL when not in flight */
    int *idx;           /* scratch for MPI_Testsome / MPI_Waitsome */
    double t_first;     /* first launch of the step */
    double t_last_done; /* latest observed completion */
    double scale_s;     /* time spent dividing completed buckets this step */
    bool started;       /* a bucket was launched this step */
} mpi_impl;

static mpi_impl *impl_of(const allreduce *ar) {
    return ar->impl;
}

int allreduce_tune_malloc(void) {
    /* mallopt returns 1 on success. */
    int ok = mallopt(M_MMAP_THRESHOLD, 1 << 30) == 1;
    ok &= mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
    return ok ? 0 : -1;
}

/* "rank R (worker W)": which process failed, in the world and among the workers. */
int allreduce_mpi_fail(const allreduce *ar, int rc, const char *what, char *err, size_t errlen) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "code %d", rc);
    return errf(err, errlen, "allreduce: rank %d (worker %d of %d): %s failed: %s", ar->world_rank,
                ar->rank, ar->size, what, msg);
}

static int mpi_launch(allreduce *ar, int b, size_t first, size_t n, char *err, size_t errlen) {
    mpi_impl *im = impl_of(ar);
    if (!im->started) im->t_first = now_seconds(), im->started = true;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, im->grad + first, (int)n, MPI_FLOAT, MPI_SUM, im->comm,
                            &im->req[b]);
    if (rc != MPI_SUCCESS) {
        char what[64];
        snprintf(what, sizeof what, "MPI_Iallreduce (bucket %d)", b);
        return allreduce_mpi_fail(ar, rc, what, err, errlen);
    }
    return 0;
}

/* A reduced bucket holds the sum: divide it now, while the other buckets are still in flight.
 * Division (not multiplication by 1/size) is correctly rounded, so the average is exact whenever
 * the sum is. */
static void finish_bucket(allreduce *ar, int b) {
    mpi_impl *im = impl_of(ar);
    double t0 = now_seconds();
    size_t first, n;
    allreduce_bucket_range(ar, b, &first, &n);
    float *g = im->grad + first;
    const float size = (float)ar->size;
    if (ar->size > 1) {
#pragma omp parallel for num_threads(kernels_threads()) if (n > (1u << 18)) schedule(static)
        for (size_t i = 0; i < n; i++) g[i] /= size;
    }
    double t1 = now_seconds();
    im->scale_s += t1 - t0;
    im->t_last_done = t0;
}

static bool mpi_in_flight(const allreduce *ar) {
    const mpi_impl *im = impl_of(ar);
    for (int b = 0; b < ar->nb; b++)
        if (im->req[b] != MPI_REQUEST_NULL) return true;
    return false;
}

/* Completes whatever finished (blocking: until at least one did), scaling each bucket. */
static int complete_some(allreduce *ar, bool blocking, char *err, size_t errlen) {
    mpi_impl *im = impl_of(ar);
    int outcount = 0;
    int rc = blocking ? MPI_Waitsome(ar->nb, im->req, &outcount, im->idx, MPI_STATUSES_IGNORE)
                      : MPI_Testsome(ar->nb, im->req, &outcount, im->idx, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS)
        return allreduce_mpi_fail(ar, rc, blocking ? "MPI_Waitsome" : "MPI_Testsome", err, errlen);
    if (outcount == MPI_UNDEFINED) return 0;
    for (int i = 0; i < outcount; i++) finish_bucket(ar, im->idx[i]);
    return 0;
}

static int mpi_complete(allreduce *ar, bool blocking, char *err, size_t errlen) {
    if (!blocking) return complete_some(ar, false, err, errlen);
    while (mpi_in_flight(ar))
        if (complete_some(ar, true, err, errlen) != 0) return -1;
    return 0;
}

static void mpi_step_times(allreduce *ar, double *comm_s, double *scale_s) {
    mpi_impl *im = impl_of(ar);
    *comm_s = im->t_last_done - im->t_first;
    *scale_s = im->scale_s;
    im->t_first = im->t_last_done = im->scale_s = 0;
    im->started = false;
}

static void mpi_destroy(allreduce *ar) {
    mpi_impl *im = impl_of(ar);
    if (!im) return;
    char err[MPI_MAX_ERROR_STRING + 128];
    int rc;
    if (im->req && (rc = MPI_Waitall(ar->nb, im->req, MPI_STATUSES_IGNORE)) != MPI_SUCCESS) {
        allreduce_mpi_fail(ar, rc, "MPI_Waitall (free)", err, sizeof err);
        log_warn("%s", err);
    }
    if (im->comm != MPI_COMM_NULL && (rc = MPI_Comm_free(&im->comm)) != MPI_SUCCESS) {
        allreduce_mpi_fail(ar, rc, "MPI_Comm_free", err, sizeof err);
        log_warn("%s", err);
    }
    free(im->req);
    free(im->idx);
    free(im);
    ar->impl = NULL;
}

static const allreduce_ops mpi_ops = {
    .kind = "mpi",
    .launch = mpi_launch,
    .complete = mpi_complete,
    .in_flight = mpi_in_flight,
    .step_times = mpi_step_times,
    .destroy = mpi_destroy,
};

allreduce *allreduce_create_mpi(MPI_Comm comm, float *grad, size_t count, size_t bucket_bytes,
                                allreduce_order order, char *err, size_t errlen) {
    allreduce *ar = xcalloc(1, sizeof *ar);
    mpi_impl *im = xcalloc(1, sizeof *im);
    ar->ops = &mpi_ops;
    ar->impl = im;
    im->grad = grad;
    im->comm = MPI_COMM_NULL;
    int rc = MPI_Comm_rank(MPI_COMM_WORLD, &ar->world_rank);
    if (rc != MPI_SUCCESS) ar->world_rank = -1;
    /* Return codes instead of aborting, so every failure gets our one-line message. */
    if ((rc = MPI_Comm_dup(comm, &im->comm)) != MPI_SUCCESS) {
        allreduce_mpi_fail(ar, rc, "MPI_Comm_dup", err, errlen);
        goto fail;
    }
    if ((rc = MPI_Comm_set_errhandler(im->comm, MPI_ERRORS_RETURN)) != MPI_SUCCESS ||
        (rc = MPI_Comm_rank(im->comm, &ar->rank)) != MPI_SUCCESS ||
        (rc = MPI_Comm_size(im->comm, &ar->size)) != MPI_SUCCESS) {
        allreduce_mpi_fail(ar, rc, "communicator setup", err, errlen);
        goto fail;
    }
    if (!grad) {
        errf(err, errlen, "allreduce: rank %d: empty gradient buffer", ar->world_rank);
        goto fail;
    }
    if (allreduce_init_common(ar, count, bucket_bytes, order, err, errlen) != 0) goto fail;
    im->req = xmalloc((size_t)ar->nb * sizeof *im->req);
    im->idx = xmalloc((size_t)ar->nb * sizeof *im->idx);
    for (int i = 0; i < ar->nb; i++) im->req[i] = MPI_REQUEST_NULL;
    return ar;
fail:
    mpi_destroy(ar);
    allreduce_free_common(ar);
    return NULL;
}
