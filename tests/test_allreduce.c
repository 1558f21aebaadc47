/* The bucketed gradient all-reduce needs several MPI ranks, which cannot live inside the Criterion
 * process: these tests run tests/mpi/allreduce_check.c (built next to this binary) under mpirun
 * and check that every rank got the exact average for every bucket size and mark order. */
#include "runs.h"

#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/testenv.h"

static void run_check(int np) {
    char out[16384], want[64];
    int rc = run_mpi_program("allreduce_check", np, out, sizeof out);
    cr_assert_eq(rc, 0, "mpirun -np %d failed:\n%s", np, out);
    snprintf(want, sizeof want, "allreduce_check: OK np=%d", np);
    cr_assert(strstr(out, want), "expected '%s' in:\n%s", want, out);
}

Test(allreduce, exact_average_np2, .timeout = 90) {
    run_check(2);
}

Test(allreduce, exact_average_np4, .timeout = 90) {
    run_check(4);
}

/* The NCCL implementation (where CUDA is built) refuses a backend without a GPU, on every rank,
 * with one line; the reduction itself is checked where there are GPUs (tests/test_gpu_train.c). */
Test(allreduce, nccl_refuses_a_backend_without_gpu, .timeout = 90) {
    char out[16384];
    int rc = run_mpi_program("nccl_check", 2, out, sizeof out);
    cr_assert_eq(rc, 0, "mpirun -np 2 nccl_check failed:\n%s", out);
    cr_assert(strstr(out, "nccl_check: OK np=2"), "%s", out);
}
