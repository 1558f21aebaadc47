/* Gradient all-reduce: one blocking MPI_Allreduce of the whole buffer (the baseline) against the
 * bucketed all-reduce, with and without simulated backward compute to hide it behind.
 * Run directly: it relaunches itself under `mpirun -np 2` (np=N as first argument to change).
 * Timings on a shared 2-core VM are noisy; best of several steps is shown. */
#include "common/log.h"
#include "common/timer.h"
#include "worker/allreduce_mpi.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STEPS 5
#define LAYERS 24

static int rank, size;

static void check(int rc, const char *what, const char *err) {
    if (rc != 0) {
        fprintf(stderr, "bench_allreduce: rank %d: %s: %s\n", rank, what, err);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
}

static void fill(float *g, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] = (float)((i + (size_t)rank) % 97);
}

/* Busy "compute" for s seconds (a backward layer). */
static void spin(double s) {
    double end = now_seconds() + s;
    while (now_seconds() < end) {
    }
}

static double max_over_ranks(double x) {
    double m = x;
    MPI_Allreduce(&x, &m, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return m;
}

static double baseline(float *g, size_t n) {
    double best = 1e30;
    for (int s = 0; s < STEPS; s++) {
        fill(g, n);
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = now_seconds();
        if (MPI_Allreduce(MPI_IN_PLACE, g, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) !=
            MPI_SUCCESS)
            check(-1, "MPI_Allreduce", "failed");
        for (size_t i = 0; i < n; i++) g[i] /= (float)size;
        double t = max_over_ranks(now_seconds() - t0);
        if (t < best) best = t;
    }
    return best;
}

/* One bucketed configuration; compute_s = total simulated backward time per step (0: none).
 * The step's communication cost is its time minus the compute actually spent (a busy-wait on a
 * shared VM overshoots when descheduled, so the requested time is not subtracted). */
static void bucketed(float *g, size_t n, size_t bucket_bytes, double compute_s, double base) {
    char err[512];
    allreduce *ar = allreduce_create_mpi(MPI_COMM_WORLD, g, n, bucket_bytes,
                                         ALLREDUCE_ORDER_BACKWARD, err, sizeof err);
    check(ar ? 0 : -1, "create", err);
    double best = 1e30;
    allreduce_stats bs = {0};
    for (int s = 0; s < STEPS; s++) {
        fill(g, n);
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = now_seconds(), spent = 0;
        /* Backward: layers from the last to the first, each marking its slice of the buffer. */
        size_t per = n / LAYERS;
        for (int l = LAYERS - 1; l >= 0; l--) {
            size_t first = (size_t)l * per, cnt = l == LAYERS - 1 ? n - first : per;
            if (compute_s > 0) {
                double ts = now_seconds();
                spin(compute_s / LAYERS);
                spent += now_seconds() - ts;
                check(allreduce_progress(ar, err, sizeof err), "progress", err);
            }
            check(allreduce_mark_ready(ar, first, cnt, err, sizeof err), "mark_ready", err);
        }
        allreduce_stats st;
        check(allreduce_wait(ar, &st, err, sizeof err), "wait", err);
        double cost = max_over_ranks(now_seconds() - t0 - spent);
        if (cost < best) best = cost, bs = st;
    }
    if (rank == 0) {
        printf("  bucket %5.2f MB x%-3d compute %.3fs: comm cost on the step %.4fs (blocking "
               "%.4fs, ratio %.2f)  comm %.4fs exposed %.4fs scale %.4fs\n",
               (double)bucket_bytes / (1 << 20), bs.buckets, compute_s, best, base, base / best,
               bs.comm_s, bs.exposed_s, bs.scale_s);
        fflush(stdout);
    }
    allreduce_free(ar);
}

int main(int argc, char **argv) {
    if (!getenv("OMPI_COMM_WORLD_SIZE")) { /* not under mpirun: relaunch */
        setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
        setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
        setenv("OMPI_MCA_btl", "self,vader", 0);
        setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 0);
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0) return 1;
        self[n] = 0;
        const char *np = argc > 1 ? argv[1] : "2";
        execlp("timeout", "timeout", "600", "mpirun", "-np", np, self, (char *)NULL);
        perror("bench_allreduce: exec mpirun");
        return 1;
    }
    allreduce_tune_malloc();
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    /* yolov8n has ~3.2 M parameters, yolov8s ~11.2 M. */
    const size_t counts[] = {3200000, 11200000};
    for (int c = 0; c < 2; c++) {
        size_t n = counts[c];
        float *g = malloc(n * sizeof *g);
        double base = baseline(g, n);
        if (rank == 0) {
            printf("allreduce np=%d, %zu floats (%.1f MB): blocking MPI_Allreduce+average %.4fs "
                   "(%.2f GB/s)\n",
                   size, n, n * 4.0 / 1e6, base, n * 4.0 / base / 1e9);
            fflush(stdout);
        }
        const size_t buckets[] = {1u << 20, 4u << 20, ALLREDUCE_DEFAULT_BUCKET_BYTES};
        for (int b = 0; b < 3; b++) bucketed(g, n, buckets[b], 0, base);
        for (int b = 0; b < 3; b++) bucketed(g, n, buckets[b], 3 * base, base);
        free(g);
    }
    MPI_Finalize();
    return 0;
}
