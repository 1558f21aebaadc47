/* Run under mpirun by tests/test_allreduce.c (the refusal, everywhere) and tests/test_gpu_train.c
 * (the reduction, where there are GPUs): the NCCL all-reduce (worker/allreduce_nccl.h).
 *
 * Always: allreduce_create_nccl refuses the CPU backend with one line naming the rank.
 * With a GPU per rank (backend of the local rank's GPU): each rank fills device gradients with
 * integer values (exact float sums), records the ready event after each "layer" as the trainer
 * does, marks layers in backward order, waits, and checks the average bit for bit, for three
 * steps and two bucket sizes; the compute stream's later work (a copy) sees the reduced values.
 * Prints "nccl_check: OK np=N gpu=G" on rank 0 (G: 1 when the GPU part ran, 0 when skipped with
 * the reason) and exits 0 when every rank passed. */
#include "common/log.h"
#include "kernels/backend_cuda.h"
#include "worker/allreduce_nccl.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rank, size, failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "nccl_check: rank %d: ", rank);                                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static float value(int r, size_t i, int step) {
    return (float)((long)((i * 7 + (size_t)r * 13 + (size_t)step * 5) % 1000) - 500);
}

static void refuses_cpu_backend(void) {
    char err[512] = "";
    float g[8];
    backend *cpu = backend_cpu_default();
    backend_event *ev = backend_event_create(cpu);
    allreduce *ar = allreduce_create_nccl(MPI_COMM_WORLD, cpu, ev, g, 8, 1 << 20,
                                          ALLREDUCE_ORDER_BACKWARD, err, sizeof err);
    CHECK(!ar, "the CPU backend was accepted");
    CHECK(strstr(err, "allreduce") && !strchr(err, '\n'), "one line naming it: %s", err);
    char want[32];
    snprintf(want, sizeof want, "rank %d", rank);
    CHECK(strstr(err, want) || strstr(err, "no CUDA"), "names the rank: %s", err);
    allreduce_free(ar);
    backend_event_destroy(cpu, ev);
}

static void reduces(backend *be, size_t count, size_t bucket_bytes) {
    char err[512];
    float *g = backend_alloc(be, count * sizeof *g), *h = malloc(count * sizeof *h);
    float *copy = backend_alloc(be, count * sizeof *g);
    backend_event *ready = backend_event_create(be);
    allreduce *ar = allreduce_create_nccl(MPI_COMM_WORLD, be, ready, g, count, bucket_bytes,
                                          ALLREDUCE_ORDER_BACKWARD, err, sizeof err);
    CHECK(ar, "create: %s", err);
    if (!ar) goto out;
    CHECK(!strcmp(allreduce_kind(ar), "nccl"), "kind %s", allreduce_kind(ar));
    for (int step = 0; step < 3; step++) {
        for (size_t i = 0; i < count; i++) h[i] = value(rank, i, step);
        CHECK(allreduce_begin(ar, err, sizeof err) == 0, "begin: %s", err);
        /* "layers" of 1000 floats from the end, as backward finishes them: the values are
         * enqueued on the compute stream, then the ready event, then the mark */
        for (size_t end = count; end > 0;) {
            size_t first = end > 1000 ? end - 1000 : 0;
            backend_to_device(be, g + first, h + first, (end - first) * sizeof *g);
            backend_event_record(be, ready);
            CHECK(allreduce_mark_ready(ar, first, end - first, err, sizeof err) == 0, "mark: %s",
                  err);
            end = first;
        }
        allreduce_stats st;
        CHECK(allreduce_wait(ar, &st, err, sizeof err) == 0, "wait: %s", err);
        CHECK(st.buckets == allreduce_num_buckets(ar) && st.bytes == count * sizeof(float),
              "stats: %d buckets, %zu bytes", st.buckets, st.bytes);
        CHECK(st.comm_s >= 0 && st.scale_s == 0, "times %g %g", st.comm_s, st.scale_s);
        backend_copy(be, copy, g, count * sizeof *g); /* compute stream, after the reduction */
        backend_to_host(be, h, copy, count * sizeof *h);
        size_t bad = 0;
        for (size_t i = 0; i < count; i++) {
            double sum = 0;
            for (int r = 0; r < size; r++) sum += value(r, i, step);
            bad += h[i] != (float)(sum / size);
        }
        CHECK(bad == 0, "step %d: %zu of %zu floats are not the average", step, bad, count);
    }
out:
    allreduce_free(ar);
    backend_event_destroy(be, ready);
    backend_free(be, g);
    backend_free(be, copy);
    free(h);
}

int main(void) {
    log_set_program("nccl_check");
    if (MPI_Init(NULL, NULL) != MPI_SUCCESS) return 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    refuses_cpu_backend();
    char why[256], err[512];
    int gpus = backend_cuda_device_count(why, sizeof why), all_have = gpus >= size, ran = 0;
    MPI_Allreduce(MPI_IN_PLACE, &all_have, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (all_have) {
        MPI_Comm node;
        int local = 0;
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
        MPI_Comm_rank(node, &local);
        MPI_Comm_free(&node);
        backend *be = backend_cuda_create(&(backend_cuda_opts){.device = local}, err, sizeof err);
        CHECK(be, "%s", err);
        if (be) {
            reduces(be, 250000, 1 << 20); /* several buckets of 1 MiB */
            reduces(be, 4321, 64);        /* many tiny buckets */
            backend_destroy(be);
            ran = 1;
        }
    } else if (rank == 0) {
        printf("nccl_check: GPU part skipped: %s (need %d GPUs)\n", gpus ? "too few GPUs" : why,
               size);
    }
    int total = 0;
    MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0 && total == 0) printf("nccl_check: OK np=%d gpu=%d\n", size, ran);
    MPI_Finalize();
    return total ? 1 : 0;
}
