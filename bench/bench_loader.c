/* Loader throughput: the training loader (loader_create on a dataset file, training augmentation)
 * over a shuffled order, batches taken as the trainer takes them.
 *
 *   bench_loader data=<file.h5> [imgsz=640] [mosaic=1] [images=512] [batch=16] [rounds=3]
 *                [threads=1] [cache=False|ram] [simd=scalar|avx2|avx512]
 * (simd: the pixel kernels to run, default the best the build targets; a level this CPU or build
 * lacks is refused) prints "simd <level>", "ours <best img/s> <img/s per round...>" (wall clock),
 * "ours_cpu ..." (images per CPU second of the process, all threads: steadier on a shared machine)
 * and "stages <name>=<ms of thread CPU time per image> ...": what bench/loader.sh (make
 * bench-loader) compares with Ultralytics on the same files.
 *
 * Without data= it writes a synthetic dataset (2000 PNGs of 256 px, about 150 KB each) to /tmp
 * and prints the bare HDF5 cost (CPU microseconds per image of dataset_read one at a time and of
 * dataset_read_many in groups, which are no cheaper), then at imgsz 320 and 640 images/s for 1
 * and 2 threads (thread scaling; wall clock and per CPU second), the CPU time per image spent
 * reading, how many reads went without the process-wide HDF5 lock (pread, dataio/heap_direct.h)
 * and how many under it, and the CPU time per image under it with its share of an image's CPU
 * time (the serial part: Amdahl's bound on threads is 1/share), with the load average. Numbers on a
 * shared machine are noisy: the best of several rounds is reported. */
#include "common/log.h"
#include "common/rng.h"
#include "common/timer.h"
#include "dataio/dataset_write.h"
#include "dataio/decode.h"
#include "dataio/loader.h"
#include "dataio/pixels.h"
#include "dataio/synth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct bench_cfg {
    const char *data;
    int imgsz, images, batch, rounds, threads;
    double mosaic;
    const char *cache;
} bench_cfg;

typedef struct bench_result {
    double best, rate[16];         /* images per wall second */
    double best_cpu, rate_cpu[16]; /* images per CPU second of the process (all its threads) */
    stage_times t;                 /* over the timed rounds */
    int timed_images;
    double cpu_s;            /* process CPU seconds over the timed rounds */
    loader_read_stats reads; /* over the timed rounds */
} bench_result;

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void run(const bench_cfg *b, bench_result *res) {
    char err[512];
    loader_config c = loader_config_defaults();
    c.imgsz = b->imgsz, c.nthreads = b->threads, c.depth = 4, c.max_batch = b->batch;
    c.aug.mosaic = b->mosaic;
    c.seed = 0;
    if (!strcmp(b->cache, "ram"))
        c.cache = LOADER_CACHE_RAM;
    else if (strcmp(b->cache, "False"))
        FATAL("bench_loader: cache=%s: expected False or ram", b->cache);
    loader *L = loader_create(b->data, SPLIT_TRAIN, &c, err, sizeof err);
    if (!L) FATAL("%s", err);
    int size = loader_size(L);
    int warm = 8, per_round = (b->images + b->batch - 1) / b->batch;
    int steps = warm + per_round * b->rounds;
    int total = steps * b->batch, *order = xmalloc(sizeof(int) * (size_t)total);
    for (int lo = 0, pass = 0; lo < total; lo += size, pass++) { /* a fresh shuffle per pass */
        int *p = order + lo, n = total - lo < size ? total - lo : size;
        int *perm = xmalloc(sizeof(int) * (size_t)size);
        rng r = rng_keyed(0, (uint64_t)pass, 0);
        for (int i = 0; i < size; i++) perm[i] = i;
        for (int i = size - 1; i > 0; i--) {
            int j = rng_int(&r, i + 1), t = perm[i];
            perm[i] = perm[j], perm[j] = t;
        }
        memcpy(p, perm, sizeof(int) * (size_t)n);
        free(perm);
    }
    for (int s = 0; s < steps; s++)
        if (loader_submit(L, s, 0, order + (size_t)s * b->batch, b->batch, err, sizeof err))
            FATAL("%s", err);
    loader_batch bt;
    for (int s = 0; s < warm; s++)
        if (loader_next(L, &bt, err, sizeof err)) FATAL("%s", err);
    stage_times t0, t1;
    loader_stage_times(L, &t0);
    loader_read_stats r0, r1;
    loader_read_stats_get(L, &r0);
    memset(res, 0, sizeof *res);
    for (int k = 0; k < b->rounds; k++) {
        double w0 = now_seconds(), c0 = cpu_seconds();
        int n = 0;
        for (int s = 0; s < per_round; s++) {
            if (loader_next(L, &bt, err, sizeof err)) FATAL("%s", err);
            n += bt.n;
        }
        res->rate[k] = n / (now_seconds() - w0);
        res->rate_cpu[k] = n / (cpu_seconds() - c0);
        res->cpu_s += cpu_seconds() - c0;
        if (res->rate[k] > res->best) res->best = res->rate[k];
        if (res->rate_cpu[k] > res->best_cpu) res->best_cpu = res->rate_cpu[k];
        res->timed_images += n;
    }
    loader_stage_times(L, &t1);
    loader_read_stats_get(L, &r1);
    res->reads = (loader_read_stats){r1.unlocked - r0.unlocked, r1.locked - r0.locked,
                                     r1.locked_s - r0.locked_s};
    for (int k = 0; k < STAGE_COUNT; k++) res->t.s[k] = t1.s[k] - t0.s[k];
    loader_destroy(L);
    free(order);
}

static void print_result(const bench_result *r, int rounds) {
    printf("ours %.1f", r->best);
    for (int k = 0; k < rounds; k++) printf(" %.1f", r->rate[k]);
    printf("\nours_cpu %.1f", r->best_cpu);
    for (int k = 0; k < rounds; k++) printf(" %.1f", r->rate_cpu[k]);
    printf("\nstages");
    for (int k = 0; k < STAGE_COUNT; k++)
        printf(" %s=%.3f", stage_name((aug_stage)k), 1e3 * r->t.s[k] / r->timed_images);
    printf("\n");
}

/* ---- no arguments: a small PNG set in /tmp, 1 vs 2 threads ---------------------------------- */

static void write_png_set(const char *path, int n, int side) {
    char err[512];
    const char *names[3] = {"circle", "rectangle", "triangle"};
    dataset_writer *w = dataset_writer_create(path, 3, names, "bench_loader", err, sizeof err);
    if (!w || dataset_writer_begin_split(w, SPLIT_TRAIN, err, sizeof err)) FATAL("%s", err);
    uint8_t *rgb = xmalloc((size_t)side * side * 3);
    float lab[SYNTH_MAX_OBJECTS * 5];
    for (int i = 0; i < n; i++) {
        int nb = synth_image(1, SPLIT_TRAIN, i, side, 3, rgb, lab);
        uint8_t *png;
        size_t np;
        if (image_encode(rgb, side, side, IMG_PNG, 0, &png, &np, err, sizeof err)) FATAL("%s", err);
        if (dataset_writer_add(w, png, np, IMG_PNG, side, side, lab, nb, "synth", err, sizeof err))
            FATAL("%s", err);
        free(png);
    }
    free(rgb);
    if (dataset_writer_finish(w, NULL, err, sizeof err)) FATAL("%s", err);
}

/* The bare HDF5 cost: microseconds per image of n random reads, one at a time and in groups. */
static void read_cost(const char *path, int n, int group) {
    char err[512];
    dataset *ds = dataset_open(path, err, sizeof err);
    if (!ds) FATAL("%s", err);
    int size = dataset_split_size(ds, SPLIT_TRAIN), *idx = xmalloc(sizeof(int) * (size_t)n);
    rng r = rng_keyed(7, 0, 0);
    for (int i = 0; i < n; i++) idx[i] = rng_int(&r, size);
    dataset_sample *s = xcalloc((size_t)group, sizeof *s);
    double best1 = 1e9, bestg = 1e9;
    for (int round = 0; round < 3; round++) {
        double c0 = cpu_seconds();
        for (int i = 0; i < n; i++) {
            if (dataset_read(ds, SPLIT_TRAIN, idx[i], s, err, sizeof err)) FATAL("%s", err);
            dataset_sample_free(s);
        }
        double c1 = cpu_seconds();
        for (int i = 0; i < n; i += group) {
            int m = n - i < group ? n - i : group;
            if (dataset_read_many(ds, SPLIT_TRAIN, idx + i, m, s, err, sizeof err))
                FATAL("%s", err);
            for (int k = 0; k < m; k++) dataset_sample_free(&s[k]);
        }
        double c2 = cpu_seconds();
        if (c1 - c0 < best1) best1 = c1 - c0;
        if (c2 - c1 < bestg) bestg = c2 - c1;
    }
    printf("HDF5 read, CPU us per image (best of 3 x %d random reads): one at a time %.1f, in "
           "groups of %d %.1f (grouped / single %.2f)\n",
           n, 1e6 * best1 / n, group, 1e6 * bestg / n, bestg / best1);
    free(s), free(idx);
    dataset_close(ds);
}

static void print_load(const char *when) {
    double l[3] = {0};
    if (getloadavg(l, 3) < 3) l[0] = l[1] = l[2] = -1;
    printf("load average %s: %.2f %.2f %.2f\n", when, l[0], l[1], l[2]);
}

static void scaling(void) {
    char path[256];
    snprintf(path, sizeof path, "/tmp/bench_loader_%d.h5", (int)getpid());
    /* more images than the mosaic buffer holds, so every sample is decoded */
    write_png_set(path, 2000, 256);
    printf("synthetic shapes, 2000 PNG images of 256 px, training augmentation, batch 16\n");
    print_load("at the start");
    read_cost(path, 2048, 16);
    read_cost(path, 2048, 64);
    for (int s = 320; s <= 640; s *= 2)
        for (int m = 1; m >= 0; m--) {
            bench_result r[2];
            double img_ms[2], lock_ms[2], read_ms[2];
            for (int t = 1; t <= 2; t++) {
                bench_cfg b = {path, s, 512, 16, 3, t, m, "False"};
                run(&b, &r[t - 1]);
                img_ms[t - 1] = 1e3 * r[t - 1].cpu_s / r[t - 1].timed_images;
                lock_ms[t - 1] = 1e3 * r[t - 1].reads.locked_s / r[t - 1].timed_images;
                read_ms[t - 1] = 1e3 * r[t - 1].t.s[STAGE_READ] / r[t - 1].timed_images;
            }
            printf("imgsz %d mosaic %d: 1 thread %.1f img/s, 2 threads %.1f img/s (x%.2f); per CPU "
                   "second %.1f and %.1f (x%.2f: the cost of sharing)\n",
                   s, m, r[0].best, r[1].best, r[1].best / r[0].best, r[0].best_cpu, r[1].best_cpu,
                   r[1].best_cpu / r[0].best_cpu);
            for (int t = 0; t < 2; t++) {
                char bound[64] = "none: no read took the lock";
                if (lock_ms[t] > 0)
                    snprintf(bound, sizeof bound, "%.0f threads", img_ms[t] / lock_ms[t]);
                printf("imgsz %d mosaic %d, %d thread(s): %.3f ms CPU per image, reading %.4f ms; "
                       "%lld reads without the HDF5 lock, %lld under it, %.4f ms per image under "
                       "it (%.2f%%; Amdahl bound %s)\n",
                       s, m, t + 1, img_ms[t], read_ms[t], (long long)r[t].reads.unlocked,
                       (long long)r[t].reads.locked, lock_ms[t], 100 * lock_ms[t] / img_ms[t],
                       bound);
            }
        }
    print_load("at the end");
    unlink(path);
}

int main(int argc, char **argv) {
    log_set_program("bench_loader");
    if (argc == 1) {
        scaling();
        return 0;
    }
    bench_cfg b = {NULL, 640, 512, 16, 3, 1, 1.0, "False"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = strchr(a, '=');
        if (!v) FATAL("bench_loader: expected key=value, got '%s'", a);
        v++;
        if (!strncmp(a, "data=", 5))
            b.data = v;
        else if (!strncmp(a, "imgsz=", 6))
            b.imgsz = atoi(v);
        else if (!strncmp(a, "mosaic=", 7))
            b.mosaic = atof(v);
        else if (!strncmp(a, "images=", 7))
            b.images = atoi(v);
        else if (!strncmp(a, "batch=", 6))
            b.batch = atoi(v);
        else if (!strncmp(a, "rounds=", 7))
            b.rounds = atoi(v);
        else if (!strncmp(a, "threads=", 8))
            b.threads = atoi(v);
        else if (!strncmp(a, "cache=", 6))
            b.cache = v;
        else if (!strncmp(a, "simd=", 5)) {
            char err[256];
            int level = pixels_simd_parse(v);
            if (level < 0)
                snprintf(err, sizeof err, "expected scalar, avx2 or avx512");
            else if (!pixels_set_simd((pixels_level)level, err, sizeof err))
                continue;
            fprintf(stderr, "bench_loader: simd=%s: %s\n", v, err); /* one line, exit 2 */
            return 2;
        } else
            FATAL("bench_loader: unknown argument '%s'", a);
    }
    if (!b.data || b.rounds < 1 || b.rounds > 16 || b.images < 1 || b.batch < 1)
        FATAL("bench_loader: need data=<file.h5>, rounds in 1..16, images and batch >= 1");
    bench_result r;
    printf("simd %s\n", pixels_simd_name(pixels_simd()));
    run(&b, &r);
    print_result(&r, b.rounds);
    return 0;
}
