/* Gradient all-reduce among the workers (MPI on CPU), bucketed so communication overlaps the
 * backward pass.
 *
 * The gradients live in ONE flat float buffer. It is cut into contiguous buckets (ranges of the
 * buffer, bucket_bytes each, the last one shorter). As backward finishes a layer it calls
 * allreduce_mark_ready() on that layer's gradient range; a bucket whose floats are all marked is
 * launched at once with MPI_Iallreduce (in place, MPI_SUM). Each bucket is divided by the number
 * of workers as soon as its reduction is seen complete (in mark_ready/progress/wait), so after
 * allreduce_wait() every rank holds the average gradient.
 *
 * Call order: MPI requires every rank to start its collectives on a communicator in the same
 * order. Ranks finish layers at different times, so buckets are launched strictly in a FIXED
 * order (the "launch order" below), never in the order they became ready: a ready bucket waits
 * until every bucket before it in that order has been launched. Every rank launches every bucket
 * exactly once per step (allreduce_wait launches the rest), so all ranks issue the same sequence
 * of MPI_Iallreduce calls. The collectives run on a private duplicate of the communicator, so
 * they cannot interleave with other collectives of the caller.
 *
 * Launch order: backward produces the gradients of the LAST layers first, so by default buckets
 * are launched from the end of the buffer towards its start (ALLREDUCE_ORDER_BACKWARD). Marks that
 * arrive in another order are correct, only less overlapped.
 *
 * Not thread-safe: one thread calls mark/progress/wait. Errors (bad ranges, MPI failures) return
 * -1 with a one-line message naming the rank; after an MPI failure the step cannot be completed
 * (the caller aborts the job). */
#pragma once
#include <mpi.h>
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
    double scale_s; /* time dividing by the world size (each bucket as soon as it completes) */
    int buckets;    /* buckets reduced this step */
    int launched_early; /* of those, launched by mark_ready (before allreduce_wait) */
    size_t bytes;       /* bytes reduced per rank */
} allreduce_stats;

/* Raise glibc's mmap/trim thresholds (1 GiB) so MPI's temporary reduction buffers above 32 MiB
 * are reused instead of mmapped and page-faulted on every call (10x slower on our VMs, see
 * toolchain notes). Call first thing in main, BEFORE MPI_Init. 0 or -1 if mallopt refused. */
int allreduce_tune_malloc(void);

/* Collective over comm (it duplicates comm). grad: count floats, owned by the caller, must stay
 * valid. bucket_bytes is rounded down to whole floats (at least one). NULL + err on failure. */
allreduce *allreduce_create(MPI_Comm comm, float *grad, size_t count, size_t bucket_bytes,
                            allreduce_order order, char *err, size_t errlen);
/* Collective (frees the duplicated communicator). Pending requests are waited for first. */
void allreduce_free(allreduce *ar);

int allreduce_num_buckets(const allreduce *ar);
/* Range of bucket b (in buffer order, 0 = start of the buffer). */
void allreduce_bucket_range(const allreduce *ar, int b, size_t *first, size_t *count);

/* Starts a step: clears the ready marks. Must not be called while a step is in flight. */
int allreduce_begin(allreduce *ar, char *err, size_t errlen);
/* Floats [first, first+count) of the gradient are final for this step. Ranges may be marked in
 * any order but each float at most once per step (overlap is an error). Launches every bucket
 * that is now launchable in the fixed order, and drives progress of those in flight. */
int allreduce_mark_ready(allreduce *ar, size_t first, size_t count, char *err, size_t errlen);
/* Drives progress of in-flight reductions (Open MPI progresses non-blocking collectives only
 * inside MPI calls); cheap, call it between layers if marks are far apart. */
int allreduce_progress(allreduce *ar, char *err, size_t errlen);
/* Launches the buckets not launched yet (in order), waits for all and averages them; the next
 * step may start right after (marks are cleared). stats may be NULL. */
int allreduce_wait(allreduce *ar, allreduce_stats *stats, char *err, size_t errlen);
