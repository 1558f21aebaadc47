/* Run under mpirun by tests/test_allreduce.c: every rank fills the gradient with integer values
 * (so float sums are exact), marks "layers" ready in a rank-dependent order, and checks the
 * averaged result bit for bit, for several bucket sizes, launch orders and mark orders.
 * Prints "allreduce_check: OK ..." on rank 0 and exits 0 when every rank passed. */
#include "common/log.h"
#include "worker/allreduce_mpi.h"

#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rank, size;
static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "allreduce_check: rank %d: ", rank);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static uint64_t lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

/* Integer in [-500, 499], different per rank, index and step. */
static float value(int r, size_t i, int step) {
    return (float)((long)((i * 7 + (size_t)r * 13 + (size_t)step * 5) % 1000) - 500);
}

typedef enum { MARK_BACKWARD, MARK_FORWARD, MARK_SHUFFLED, MARK_NONE, MARK_HALF } mark_mode;
static const char *mark_names[] = {"backward", "forward", "shuffled", "none", "half"};

/* One configuration, two steps (the object is reused across steps). */
static void run_case(size_t count, size_t bucket_bytes, allreduce_order order, mark_mode mode) {
    char err[512];
    float *g = malloc(count * sizeof *g);
    allreduce *ar =
        allreduce_create_mpi(MPI_COMM_WORLD, g, count, bucket_bytes, order, err, sizeof err);
    CHECK(ar, "create failed: %s", err);
    if (!ar) {
        free(g);
        return;
    }
    /* "Layers": a partition of the buffer into chunks of 1..max floats (same on every rank). */
    size_t max_chunk = count / 7 + 1, nchunks = 0;
    size_t *cf = malloc((count + 1) * sizeof *cf), *cn = malloc((count + 1) * sizeof *cn);
    uint64_t s = 12345;
    for (size_t a = 0; a < count; nchunks++) {
        size_t n = 1 + lcg(&s) % max_chunk;
        if (n > count - a) n = count - a;
        cf[nchunks] = a, cn[nchunks] = n;
        a += n;
    }
    for (int step = 0; step < 2; step++) {
        for (size_t i = 0; i < count; i++) g[i] = value(rank, i, step);
        size_t *perm = malloc(nchunks * sizeof *perm);
        for (size_t k = 0; k < nchunks; k++) perm[k] = mode == MARK_BACKWARD ? nchunks - 1 - k : k;
        if (mode == MARK_SHUFFLED) { /* a different order on every rank and step */
            uint64_t r = 99 + (uint64_t)rank * 1000 + (uint64_t)step;
            for (size_t k = nchunks; k > 1; k--) {
                size_t j = lcg(&r) % k, t = perm[k - 1];
                perm[k - 1] = perm[j], perm[j] = t;
            }
        }
        size_t nmark = mode == MARK_NONE ? 0 : mode == MARK_HALF ? nchunks / 2 : nchunks;
        for (size_t k = 0; k < nmark; k++) {
            int rc = allreduce_mark_ready(ar, cf[perm[k]], cn[perm[k]], err, sizeof err);
            CHECK(rc == 0, "mark_ready failed: %s", err);
        }
        free(perm);
        allreduce_stats st;
        int rc = allreduce_wait(ar, &st, err, sizeof err);
        CHECK(rc == 0, "wait failed: %s", err);
        size_t bad = 0, first_bad = 0;
        for (size_t i = 0; i < count; i++) {
            float sum = 0;
            for (int r = 0; r < size; r++) sum += value(r, i, step); /* exact: small integers */
            float want = sum / (float)size;
            if (memcmp(&want, &g[i], sizeof want) != 0 && bad++ == 0) first_bad = i;
        }
        CHECK(bad == 0,
              "count=%zu bucket_bytes=%zu order=%d marks=%s step %d: %zu wrong values, first at "
              "%zu: got %g",
              count, bucket_bytes, (int)order, mark_names[mode], step, bad, first_bad,
              (double)g[first_bad]);
        CHECK(st.buckets == allreduce_num_buckets(ar) && st.bytes == count * sizeof(float),
              "stats: buckets %d bytes %zu", st.buckets, st.bytes);
        CHECK(st.comm_s >= 0 && st.exposed_s >= 0 && st.comm_s < 30, "stats: comm %g exposed %g",
              st.comm_s, st.exposed_s);
        if (mode != MARK_HALF && mode != MARK_NONE)
            CHECK(st.launched_early == st.buckets,
                  "all floats marked but only %d of %d buckets launched early (%s)",
                  st.launched_early, st.buckets, mark_names[mode]);
        if (mode == MARK_NONE) CHECK(st.launched_early == 0, "nothing marked, none early");
    }
    free(cf);
    free(cn);
    allreduce_free(ar);
    free(g);
}

/* Bucket ranges tile the buffer; bad marks are refused with a message naming the rank. */
static void check_ranges_and_errors(void) {
    char err[512];
    size_t count = 1000;
    float *g = calloc(count, sizeof *g);
    allreduce *ar = allreduce_create_mpi(MPI_COMM_WORLD, g, count, 4 * 300,
                                         ALLREDUCE_ORDER_BACKWARD, err, sizeof err);
    CHECK(ar && allreduce_num_buckets(ar) == 4, "1000 floats in buckets of 300: 4 buckets");
    size_t next = 0;
    for (int b = 0; b < allreduce_num_buckets(ar); b++) {
        size_t f, n;
        allreduce_bucket_range(ar, b, &f, &n);
        CHECK(f == next && n > 0, "bucket %d starts at %zu, expected %zu", b, f, next);
        next = f + n;
    }
    CHECK(next == count, "buckets cover %zu of %zu floats", next, count);
    CHECK(allreduce_mark_ready(ar, 990, 20, err, sizeof err) == -1 && strstr(err, "outside"),
          "range past the end refused: %s", err);
    char want[32];
    snprintf(want, sizeof want, "rank %d", rank);
    CHECK(strstr(err, want), "error names the rank: %s", err);
    CHECK(allreduce_mark_ready(ar, 100, 50, err, sizeof err) == 0, "%s", err);
    CHECK(allreduce_mark_ready(ar, 149, 2, err, sizeof err) == -1 && strstr(err, "overlaps"),
          "overlapping mark refused: %s", err);
    CHECK(allreduce_mark_ready(ar, 50, 60, err, sizeof err) == -1, "overlap from the left refused");
    CHECK(allreduce_mark_ready(ar, 150, 10, err, sizeof err) == 0, "adjacent mark accepted: %s",
          err);
    CHECK(allreduce_mark_ready(ar, 0, 100, err, sizeof err) == 0, "adjacent mark accepted: %s",
          err);
    CHECK(allreduce_wait(ar, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(allreduce_begin(ar, err, sizeof err) == 0, "%s", err);
    CHECK(allreduce_mark_ready(ar, 100, 50, err, sizeof err) == 0, "marks reset per step: %s", err);
    CHECK(allreduce_wait(ar, NULL, err, sizeof err) == 0, "%s", err);
    allreduce_free(ar);
    free(g);
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    int tuned = allreduce_tune_malloc(); /* before MPI_Init, as a worker main does */
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
        fprintf(stderr, "allreduce_check: MPI_Init failed\n");
        return 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
#ifndef __SANITIZE_ADDRESS__ /* ASan's allocator has no mallopt thresholds */
    CHECK(tuned == 0, "allreduce_tune_malloc: mallopt refused the thresholds");
#else
    (void)tuned;
#endif
    check_ranges_and_errors();
    const struct {
        size_t count, bucket_bytes;
    } sizes[] = {
        {1, 4},                                           /* one float */
        {257, 4},                                         /* one float per bucket: 257 buckets */
        {10007, 4 * 1000},                                /* 11 buckets, last short */
        {(1u << 20) + 5, 1u << 20},                       /* 5 buckets of 1 MiB */
        {(1u << 20) + 5, ALLREDUCE_DEFAULT_BUCKET_BYTES}, /* one bucket */
    };
    int cases = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++)
        for (int order = 0; order < 2; order++)
            for (int mode = 0; mode <= MARK_HALF; mode++) {
                run_case(sizes[k].count, sizes[k].bucket_bytes, (allreduce_order)order,
                         (mark_mode)mode);
                cases++;
            }
    int total = 0;
    MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) {
        if (total == 0)
            printf("allreduce_check: OK np=%d cases=%d\n", size, cases);
        else
            printf("allreduce_check: FAILED np=%d failures=%d\n", size, total);
    }
    MPI_Finalize();
    return total == 0 ? 0 : 1;
}
