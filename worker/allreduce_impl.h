/* For the all-reduce implementations only (worker/allreduce_mpi.c, allreduce_nccl.c): the
 * bucket bookkeeping shared by both (worker/allreduce.c) and the few operations each provides. */
#pragma once
#include "worker/allreduce.h"

#include <stdbool.h>

typedef struct allreduce_ops {
    const char *kind;
    /* Starts the reduction of bucket b, floats [first, first + n). */
    int (*launch)(allreduce *ar, int b, size_t first, size_t n, char *err, size_t errlen);
    /* Completes what has finished; blocking: waits until everything launched has. */
    int (*complete)(allreduce *ar, bool blocking, char *err, size_t errlen);
    bool (*in_flight)(const allreduce *ar);
    /* After a blocking complete: communication time of the step and scaling time (then reset
     * for the next step). */
    void (*step_times)(allreduce *ar, double *comm_s, double *scale_s);
    void (*destroy)(allreduce *ar); /* waits for pending work, frees impl */
} allreduce_ops;

/* Marked ranges of the current step, sorted and merged, so a float marked twice is caught. */
typedef struct allreduce_span {
    size_t a, b; /* [a, b) */
} allreduce_span;

struct allreduce {
    const allreduce_ops *ops;
    void *impl;
    int rank, size, world_rank; /* among the workers, their number, in MPI_COMM_WORLD */
    size_t count, bucket_floats;
    int nb;
    allreduce_order order;
    size_t *ready;      /* per bucket: floats marked so far this step */
    int next;           /* position in launch order of the next bucket to launch */
    int launched_early; /* launched before allreduce_wait this step */
    allreduce_span *spans;
    int nspans, capspans;
};

/* Fills the common part (buckets of bucket_bytes over count floats) and the marks; ops, impl,
 * rank, size and world_rank are the caller's. -1 with err for an empty buffer or too many
 * buckets. */
int allreduce_init_common(allreduce *ar, size_t count, size_t bucket_bytes, allreduce_order order,
                          char *err, size_t errlen);
void allreduce_free_common(allreduce *ar);

/* One line for a failed MPI call (rc its return code): "allreduce: rank R (worker W of N): what
 * failed: MPI's message"; returns -1. worker/allreduce_mpi.c. */
int allreduce_mpi_fail(const allreduce *ar, int rc, const char *what, char *err, size_t errlen);
