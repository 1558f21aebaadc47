/* Gradient all-reduce among the workers, bucketed so communication overlaps the backward pass.
 * One interface, two implementations: MPI on host memory (worker/allreduce_mpi.h, the CPU
 * backend) and NCCL on device memory (worker/allreduce_nccl.h, the CUDA backend). The
 * communicator stays inside: callers see buckets, marks and a wait.
 *
 * The gradients live in ONE flat float buffer. It is cut into contiguous buckets (ranges of the
 * buffer, bucket_bytes each, the last one shorter). As backward finishes a layer it calls
 * allreduce_mark_ready() on that layer's gradient range; a bucket whose floats are all marked is
 * launched at once. After allreduce_wait() every rank holds the average gradient (MPI: sum, then
 * each bucket divided by the number of workers as soon as it is complete; NCCL: ncclAvg).
 *
 * Call order: MPI and NCCL require every rank to start its collectives on a communicator in the
 * same order. Ranks finish layers at different times, so buckets are launched strictly in a FIXED
 * order (the "launch order" below), never in the order they became ready: a ready bucket waits
 * until every bucket before it in that order has been launched. Every rank launches every bucket
 * exactly once per step (allreduce_wait launches the rest), so all ranks issue the same sequence
 * of collectives. The collectives run on a private communicator, so they cannot interleave with
 * other collectives of the caller.
 *
 * Launch order: backward produces the gradients of the LAST layers first, so by default buckets
 * are launched from the end of the buffer towards its start (ALLREDUCE_ORDER_BACKWARD). Marks that
 * arrive in another order are correct, only less overlapped.
 *
 * Not thread-safe: one thread calls mark/progress/wait. Errors (bad ranges, MPI/NCCL/CUDA
 * failures, a peer that died) return -1 with a one-line message naming the rank; after a
 * communication failure the step cannot be completed (the caller aborts the job). */
#pragma once
#include <stddef.h>

#define ALLREDUCE_DEFAULT_BUCKET_BYTES ((size_t)25 << 20)

typedef enum allreduce_order {
    ALLREDUCE_ORDER_BACKWARD = 0, /* launch from the end of the buffer to its start (default) */
    ALLREDUCE_ORDER_FORWARD = 1,  /* launch from the start of the buffer to its end */
} allreduce_order;

typedef struct allreduce allreduce;

/* Per-step timing, filled by allreduce_wait. */
typedef struct allreduce_stats {
    double comm_s; /* from the first launch of the step to the completion of the last bucket */
    double
        exposed_s;  /* time spent blocked in allreduce_wait: communication NOT hidden by compute */
    double scale_s; /* time dividing by the world size (MPI: each bucket as soon as it completes) */
    int buckets;    /* buckets reduced this step */
    int launched_early; /* of those, launched by mark_ready (before allreduce_wait) */
    size_t bytes;       /* bytes reduced per rank */
} allreduce_stats;

/* "mpi" or "nccl". */
const char *allreduce_kind(const allreduce *ar);
/* Collective (frees the private communicator). Pending work is waited for first. */
void allreduce_free(allreduce *ar);

int allreduce_num_buckets(const allreduce *ar);
/* Range of bucket b (in buffer order, 0 = start of the buffer). */
void allreduce_bucket_range(const allreduce *ar, int b, size_t *first, size_t *count);

/* Starts a step: clears the ready marks. Must not be called while a step is in flight. */
int allreduce_begin(allreduce *ar, char *err, size_t errlen);
/* Floats [first, first+count) of the gradient are final for this step. Ranges may be marked in
 * any order but each float at most once per step (overlap is an error). Launches every bucket
 * that is now launchable in the fixed order, and drives progress of those in flight. NCCL: the
 * marked range is final once the ready event given at creation (recorded before this call) is
 * reached on the compute stream; the communication stream waits for it. */
int allreduce_mark_ready(allreduce *ar, size_t first, size_t count, char *err, size_t errlen);
/* Drives progress of in-flight reductions (Open MPI progresses non-blocking collectives only
 * inside MPI calls); cheap, call it between layers if marks are far apart. */
int allreduce_progress(allreduce *ar, char *err, size_t errlen);
/* Launches the buckets not launched yet (in order), waits for all and averages them; the next
 * step may start right after (marks are cleared). NCCL: the host waits (polling for a peer's
 * failure) and later work of the compute stream is ordered after the reduction. stats may be
 * NULL. */
int allreduce_wait(allreduce *ar, allreduce_stats *stats, char *err, size_t errlen);
