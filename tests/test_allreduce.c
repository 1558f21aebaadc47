/* The bucketed gradient all-reduce needs several MPI ranks, which cannot live inside the Criterion
 * process: these tests run tests/mpi/allreduce_check.c (built next to this binary) under mpirun
 * and check that every rank got the exact average for every bucket size and mark order. */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/testenv.h"

static void run_check(int np) {
    /* mpirun as root on a 2-core box (make test exports these too). */
    test_mpi_env();
    char prog[PATH_MAX + 64], cmd[PATH_MAX + 160];
    snprintf(prog, sizeof prog, "%s/mpi/allreduce_check", test_exe_dir());
    cr_assert(access(prog, X_OK) == 0, "%s not built (make all builds it)", prog);
    snprintf(cmd, sizeof cmd, "timeout 60 mpirun -np %d '%s' 2>&1", np, prog);
    FILE *p = popen(cmd, "r");
    cr_assert(p, "popen %s", cmd);
    char out[16384];
    size_t len = fread(out, 1, sizeof out - 1, p);
    out[len] = 0;
    int status = pclose(p);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "mpirun -np %d failed:\n%s", np, out);
    char want[64];
    snprintf(want, sizeof want, "allreduce_check: OK np=%d", np);
    cr_assert(strstr(out, want), "expected '%s' in:\n%s", want, out);
}

Test(allreduce, exact_average_np2, .timeout = 90) {
    run_check(2);
}

Test(allreduce, exact_average_np4, .timeout = 90) {
    run_check(4);
}
