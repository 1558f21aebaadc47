#include "worker/allreduce.h"

#include "common/log.h"
#include "common/timer.h"
#include "kernels/threads.h"

#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Marked ranges of the current step, sorted and merged, so a float marked twice is caught. */
typedef struct span {
    size_t a, b; /* [a, b) */
} span;

struct allreduce {
    MPI_Comm comm; /* private duplicate: our collectives never interleave with the caller's */
    int rank, size, world_rank;
    float *grad;
    size_t count, bucket_floats;
    int nb;
    allreduce_order order;
    size_t *ready;      /* per bucket: floats marked so far this step */
    MPI_Request *req;   /* per bucket; MPI_REQUEST_NULL when not in flight */
    int next;           /* position in launch order of the next bucket to launch */
    int launched_early; /* launched before allreduce_wait this step */
    double t_first;     /* first launch of the step */
    double t_last_done; /* latest observed completion */
    double scale_s;     /* time spent dividing completed buckets this step */
    int *idx;           /* scratch for MPI_Testsome / MPI_Waitsome */
    span *spans;
    int nspans, capspans;
};

int allreduce_tune_malloc(void) {
    /* mallopt returns 1 on success. */
    int ok = mallopt(M_MMAP_THRESHOLD, 1 << 30) == 1;
    ok &= mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
    return ok ? 0 : -1;
}

/* "rank R (worker W)": which process failed, in the world and among the workers. */
static int mpi_err(const allreduce *ar, int rc, const char *what, char *err, size_t errlen) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "code %d", rc);
    return errf(err, errlen, "allreduce: rank %d (worker %d of %d): %s failed: %s", ar->world_rank,
                ar->rank, ar->size, what, msg);
}

allreduce *allreduce_create(MPI_Comm comm, float *grad, size_t count, size_t bucket_bytes,
                            allreduce_order order, char *err, size_t errlen) {
    allreduce *ar = xcalloc(1, sizeof *ar);
    ar->grad = grad;
    ar->count = count;
    ar->order = order;
    ar->comm = MPI_COMM_NULL;
    int rc = MPI_Comm_rank(MPI_COMM_WORLD, &ar->world_rank);
    if (rc != MPI_SUCCESS) ar->world_rank = -1;
    /* Return codes instead of aborting, so every failure gets our one-line message. */
    if ((rc = MPI_Comm_dup(comm, &ar->comm)) != MPI_SUCCESS) {
        mpi_err(ar, rc, "MPI_Comm_dup", err, errlen);
        goto fail;
    }
    if ((rc = MPI_Comm_set_errhandler(ar->comm, MPI_ERRORS_RETURN)) != MPI_SUCCESS ||
        (rc = MPI_Comm_rank(ar->comm, &ar->rank)) != MPI_SUCCESS ||
        (rc = MPI_Comm_size(ar->comm, &ar->size)) != MPI_SUCCESS) {
        mpi_err(ar, rc, "communicator setup", err, errlen);
        goto fail;
    }
    if (count == 0 || !grad) {
        errf(err, errlen, "allreduce: rank %d: empty gradient buffer", ar->world_rank);
        goto fail;
    }
    ar->bucket_floats = bucket_bytes / sizeof(float);
    if (ar->bucket_floats == 0) ar->bucket_floats = 1;
    if (ar->bucket_floats > (size_t)INT32_MAX) ar->bucket_floats = (size_t)INT32_MAX; /* MPI int */
    size_t nb = (count + ar->bucket_floats - 1) / ar->bucket_floats;
    if (nb > (size_t)INT32_MAX / 2) {
        errf(err, errlen, "allreduce: rank %d: %zu buckets is too many (bucket_bytes=%zu)",
             ar->world_rank, nb, bucket_bytes);
        goto fail;
    }
    ar->nb = (int)nb;
    ar->ready = xcalloc(nb, sizeof *ar->ready);
    ar->req = xmalloc(nb * sizeof *ar->req);
    ar->idx = xmalloc(nb * sizeof *ar->idx);
    for (size_t i = 0; i < nb; i++) ar->req[i] = MPI_REQUEST_NULL;
    if (allreduce_begin(ar, err, errlen) != 0) goto fail;
    return ar;
fail:
    if (ar->comm != MPI_COMM_NULL) MPI_Comm_free(&ar->comm);
    free(ar->ready);
    free(ar->req);
    free(ar->idx);
    free(ar);
    return NULL;
}

void allreduce_free(allreduce *ar) {
    if (!ar) return;
    char err[MPI_MAX_ERROR_STRING + 128];
    int rc;
    if (ar->req && (rc = MPI_Waitall(ar->nb, ar->req, MPI_STATUSES_IGNORE)) != MPI_SUCCESS) {
        mpi_err(ar, rc, "MPI_Waitall (free)", err, sizeof err);
        log_warn("%s", err);
    }
    if (ar->comm != MPI_COMM_NULL && (rc = MPI_Comm_free(&ar->comm)) != MPI_SUCCESS) {
        mpi_err(ar, rc, "MPI_Comm_free", err, sizeof err);
        log_warn("%s", err);
    }
    free(ar->ready);
    free(ar->req);
    free(ar->idx);
    free(ar->spans);
    free(ar);
}

int allreduce_num_buckets(const allreduce *ar) {
    return ar->nb;
}

void allreduce_bucket_range(const allreduce *ar, int b, size_t *first, size_t *count) {
    size_t a = (size_t)b * ar->bucket_floats;
    size_t e = a + ar->bucket_floats < ar->count ? a + ar->bucket_floats : ar->count;
    *first = a;
    *count = e - a;
}

static int bucket_at(const allreduce *ar, int pos) {
    return ar->order == ALLREDUCE_ORDER_BACKWARD ? ar->nb - 1 - pos : pos;
}

static int in_flight(const allreduce *ar) {
    for (int b = 0; b < ar->nb; b++)
        if (ar->req[b] != MPI_REQUEST_NULL) return 1;
    return 0;
}

int allreduce_begin(allreduce *ar, char *err, size_t errlen) {
    if (in_flight(ar) || (ar->next > 0 && ar->next < ar->nb))
        return errf(err, errlen, "allreduce: rank %d: begin while a step is in flight",
                    ar->world_rank);
    memset(ar->ready, 0, (size_t)ar->nb * sizeof *ar->ready);
    ar->next = 0;
    ar->launched_early = 0;
    ar->t_first = ar->t_last_done = ar->scale_s = 0;
    ar->nspans = 0;
    return 0;
}

static int launch(allreduce *ar, int b, char *err, size_t errlen) {
    size_t first, n;
    allreduce_bucket_range(ar, b, &first, &n);
    if (ar->next == 0) ar->t_first = now_seconds();
    int rc = MPI_Iallreduce(MPI_IN_PLACE, ar->grad + first, (int)n, MPI_FLOAT, MPI_SUM, ar->comm,
                            &ar->req[b]);
    if (rc != MPI_SUCCESS) {
        char what[64];
        snprintf(what, sizeof what, "MPI_Iallreduce (bucket %d)", b);
        return mpi_err(ar, rc, what, err, errlen);
    }
    ar->next++;
    return 0;
}

/* Launch, in the fixed order, every bucket whose predecessors are launched and which is full. */
static int launch_ready(allreduce *ar, char *err, size_t errlen) {
    while (ar->next < ar->nb) {
        int b = bucket_at(ar, ar->next);
        size_t first, n;
        allreduce_bucket_range(ar, b, &first, &n);
        if (ar->ready[b] < n) break;
        if (launch(ar, b, err, errlen) != 0) return -1;
        ar->launched_early++;
    }
    return 0;
}

/* A reduced bucket holds the sum: divide it now, while the other buckets are still in flight.
 * Division (not multiplication by 1/size) is correctly rounded, so the average is exact whenever
 * the sum is. */
static void finish_bucket(allreduce *ar, int b) {
    double t0 = now_seconds();
    size_t first, n;
    allreduce_bucket_range(ar, b, &first, &n);
    float *g = ar->grad + first;
    const float size = (float)ar->size;
    if (ar->size > 1) {
#pragma omp parallel for num_threads(kernels_threads()) if (n > (1u << 18)) schedule(static)
        for (size_t i = 0; i < n; i++) g[i] /= size;
    }
    double t1 = now_seconds();
    ar->scale_s += t1 - t0;
    ar->t_last_done = t0;
}

/* Completes whatever finished (blocking: until at least one did), scaling each bucket. */
static int complete_some(allreduce *ar, int blocking, char *err, size_t errlen) {
    int outcount = 0;
    int rc = blocking ? MPI_Waitsome(ar->nb, ar->req, &outcount, ar->idx, MPI_STATUSES_IGNORE)
                      : MPI_Testsome(ar->nb, ar->req, &outcount, ar->idx, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS)
        return mpi_err(ar, rc, blocking ? "MPI_Waitsome" : "MPI_Testsome", err, errlen);
    if (outcount == MPI_UNDEFINED) return 0;
    for (int i = 0; i < outcount; i++) finish_bucket(ar, ar->idx[i]);
    return outcount;
}

int allreduce_progress(allreduce *ar, char *err, size_t errlen) {
    if (!in_flight(ar)) return 0;
    return complete_some(ar, 0, err, errlen) < 0 ? -1 : 0;
}

/* Adds [a, b) to the sorted, merged list of marked spans; -1 if any float was marked before. */
static int add_span(allreduce *ar, size_t a, size_t b) {
    int lo = 0, hi = ar->nspans; /* first span with spans[i].a >= a */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (ar->spans[mid].a < a)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo > 0 && ar->spans[lo - 1].b > a) return -1;
    if (lo < ar->nspans && ar->spans[lo].a < b) return -1;
    int join_prev = lo > 0 && ar->spans[lo - 1].b == a;
    int join_next = lo < ar->nspans && ar->spans[lo].a == b;
    if (join_prev && join_next) {
        ar->spans[lo - 1].b = ar->spans[lo].b;
        memmove(ar->spans + lo, ar->spans + lo + 1, (size_t)(ar->nspans - lo - 1) * sizeof(span));
        ar->nspans--;
    } else if (join_prev) {
        ar->spans[lo - 1].b = b;
    } else if (join_next) {
        ar->spans[lo].a = a;
    } else {
        if (ar->nspans == ar->capspans) {
            ar->capspans = ar->capspans ? 2 * ar->capspans : 64;
            ar->spans = xrealloc(ar->spans, (size_t)ar->capspans * sizeof(span));
        }
        memmove(ar->spans + lo + 1, ar->spans + lo, (size_t)(ar->nspans - lo) * sizeof(span));
        ar->spans[lo] = (span){a, b};
        ar->nspans++;
    }
    return 0;
}

int allreduce_mark_ready(allreduce *ar, size_t first, size_t count, char *err, size_t errlen) {
    if (count == 0) return 0;
    if (first > ar->count || count > ar->count - first)
        return errf(err, errlen,
                    "allreduce: rank %d: mark_ready [%zu, %zu) is outside the buffer of %zu floats",
                    ar->world_rank, first, first + count, ar->count);
    if (add_span(ar, first, first + count) != 0)
        return errf(err, errlen,
                    "allreduce: rank %d: mark_ready [%zu, %zu) overlaps a range "
                    "already marked this step",
                    ar->world_rank, first, first + count);
    size_t end = first + count;
    for (size_t b = first / ar->bucket_floats; b < (size_t)ar->nb; b++) {
        size_t ba = b * ar->bucket_floats, be = ba + ar->bucket_floats;
        if (ba >= end) break;
        size_t lo = first > ba ? first : ba, hi = end < be ? end : be;
        ar->ready[b] += hi - lo;
    }
    if (launch_ready(ar, err, errlen) != 0) return -1;
    return allreduce_progress(ar, err, errlen);
}

int allreduce_wait(allreduce *ar, allreduce_stats *stats, char *err, size_t errlen) {
    double t0 = now_seconds();
    while (ar->next < ar->nb)
        if (launch(ar, bucket_at(ar, ar->next), err, errlen) != 0) return -1;
    while (in_flight(ar))
        if (complete_some(ar, 1, err, errlen) < 0) return -1;
    double t1 = now_seconds();
    if (stats) {
        stats->comm_s = ar->t_last_done - ar->t_first;
        stats->exposed_s = t1 - t0;
        stats->scale_s = ar->scale_s;
        stats->buckets = ar->nb;
        stats->launched_early = ar->launched_early;
        stats->bytes = ar->count * sizeof(float);
    }
    /* Ready for the next step without an explicit begin. */
    return allreduce_begin(ar, err, errlen);
}
