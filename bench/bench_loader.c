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
 * Without data= it writes a synthetic dataset (2000 PNGs of 256 px) to /tmp and prints images/s
 * for 1 and 2 threads at imgsz 320 and 640 (thread scaling). Numbers on a shared machine are
 * noisy: the best of several rounds is reported. */
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
        if (res->rate[k] > res->best) res->best = res->rate[k];
        if (res->rate_cpu[k] > res->best_cpu) res->best_cpu = res->rate_cpu[k];
        res->timed_images += n;
    }
    loader_stage_times(L, &t1);
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

static void scaling(void) {
    char path[256];
    snprintf(path, sizeof path, "/tmp/bench_loader_%d.h5", (int)getpid());
    /* more images than the mosaic buffer holds, so every sample is decoded */
    write_png_set(path, 2000, 256);
    printf("synthetic shapes, 2000 PNG images of 256 px, training augmentation, batch 16\n");
    for (int s = 320; s <= 640; s *= 2)
        for (int m = 1; m >= 0; m--) {
            double rate[2], cpu[2];
            for (int t = 1; t <= 2; t++) {
                bench_cfg b = {path, s, 512, 16, 3, t, m, "False"};
                bench_result r;
                run(&b, &r);
                rate[t - 1] = r.best, cpu[t - 1] = r.best_cpu;
            }
            printf("imgsz %d mosaic %d: 1 thread %.1f img/s, 2 threads %.1f img/s (x%.2f); per CPU "
                   "second %.1f and %.1f (x%.2f: the cost of sharing)\n",
                   s, m, rate[0], rate[1], rate[1] / rate[0], cpu[0], cpu[1], cpu[1] / cpu[0]);
        }
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
