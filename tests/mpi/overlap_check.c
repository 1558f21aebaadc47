/* Run under mpirun by tests/test_distributed.c: the backward hook drives the bucketed all-reduce.
 * For yolov8n and yolo26n (two branches, detached one2one head), every rank runs forward and
 * backward on its own random images and output gradients, once without the hook (reference:
 * gradients then MPI_Allreduce'd and divided by the ranks), once with the hook passing each range
 * to allreduce_mark_ready. Checks: every gradient float is reported exactly once (mark_ready
 * refuses overlaps; the reported floats add up to the buffer), every bucket was launched from a
 * mark during backward (none left for allreduce_wait), and the averaged gradient equals the
 * reference bit for bit. Prints "overlap_check: OK np=N" on rank 0 and exits 0 when all passed. */
#include "common/log.h"
#include "worker/allreduce_mpi.h"
#include "worker/model.h"

#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rank, size, failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "overlap_check: rank %d: ", rank);                                     \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

typedef struct hook_ctx {
    allreduce *ar;
    size_t reported, calls;
    int errors;
    char err[512];
} hook_ctx;

static void on_ready(void *p, size_t first, size_t count) {
    hook_ctx *h = p;
    h->reported += count;
    h->calls++;
    if (allreduce_mark_ready(h->ar, first, count, h->err, sizeof h->err) != 0) h->errors++;
}

static float urand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xffffff) / 16777216.0f;
}

static void check_model(const char *yaml) {
    char err[512];
    model *m = model_create(yaml, 3, 1, err, sizeof err);
    if (!m) {
        CHECK(0, "%s", err);
        return;
    }
    const int B = 1, S = 64;
    CHECK(model_plan(m, B, S, S, err, sizeof err) == 0, "%s", err);
    size_t np = model_num_params(m), nimg = (size_t)B * S * S * 3;
    size_t nout = (size_t)B * model_num_anchors(m) * model_out_channels(m);
    float *img = xmalloc(nimg * sizeof *img), *dout[2], *ref = xmalloc(np * sizeof *ref);
    uint64_t seed = 1000 + (uint64_t)rank;
    for (size_t i = 0; i < nimg; i++) img[i] = urand(&seed);
    for (int b = 0; b < 2; b++) {
        dout[b] = xmalloc(nout * sizeof *dout[b]);
        for (size_t i = 0; i < nout; i++) dout[b][i] = urand(&seed) - 0.5f;
    }
    const float *d1 = model_num_branches(m) == 2 ? dout[1] : NULL;
    /* reference */
    model_zero_grad(m);
    model_forward(m, img, true);
    model_backward(m, dout[0], d1);
    memcpy(ref, model_grads(m), np * sizeof *ref);
    CHECK(MPI_Allreduce(MPI_IN_PLACE, ref, (int)np, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) ==
              MPI_SUCCESS,
          "MPI_Allreduce");
    for (size_t i = 0; i < np; i++) ref[i] /= (float)size;
    /* overlapped: 256 KiB buckets, so yolov8n's 12.6 MB make ~50 */
    hook_ctx h = {0};
    h.ar = allreduce_create_mpi(MPI_COMM_WORLD, model_grads(m), np, 256 << 10,
                                ALLREDUCE_ORDER_BACKWARD, err, sizeof err);
    CHECK(h.ar, "%s", err);
    if (h.ar) {
        model_zero_grad(m);
        model_forward(m, img, true);
        model_set_grad_ready_hook(m, on_ready, &h);
        model_backward(m, dout[0], d1);
        model_set_grad_ready_hook(m, NULL, NULL);
        allreduce_stats st;
        CHECK(allreduce_wait(h.ar, &st, err, sizeof err) == 0, "%s", err);
        CHECK(h.errors == 0, "%s: mark_ready refused a range: %s", yaml, h.err);
        CHECK(h.reported == np, "%s: hook reported %zu floats of %zu", yaml, h.reported, np);
        CHECK(st.buckets > 10 && st.launched_early == st.buckets,
              "%s: %d of %d buckets launched during backward", yaml, st.launched_early, st.buckets);
        size_t bad = 0;
        const float *g = model_grads(m);
        for (size_t i = 0; i < np; i++) bad += memcmp(&g[i], &ref[i], sizeof *g) != 0;
        CHECK(bad == 0, "%s: %zu gradient floats differ from the blocking all-reduce", yaml, bad);
        if (rank == 0)
            printf("overlap_check: %s: %zu hook calls, %d buckets, all launched during backward\n",
                   yaml, h.calls, st.buckets);
        allreduce_free(h.ar);
    }
    free(img);
    free(ref);
    free(dout[0]);
    free(dout[1]);
    model_free(m);
}

int main(void) {
    allreduce_tune_malloc();
    if (MPI_Init(NULL, NULL) != MPI_SUCCESS) return 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    check_model("yolov8n.yaml");
    check_model("yolo26n.yaml");
    int total = 0;
    MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0 && total == 0) printf("overlap_check: OK np=%d\n", size);
    MPI_Finalize();
    return total == 0 ? 0 : 1;
}
