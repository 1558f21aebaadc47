#include "common/rng.h"
#include "dataio/augment.h"
#include "dataio/dataset_write.h"
#include "dataio/loader.h"
#include "dataio/pack.h"
#include "dataio/pixels.h"
#include "tests/oracle.h"
#include "dataio/synth.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/testenv.h"

/* In-memory sample source: raw RGB images of varying sizes with a few labels each; can fail a
 * read or a decode at one index, sleep in decode, and counts concurrent reads. */
typedef struct mem_source {
    int n;
    int fail_read, fail_decode;
    int decode_sleep_ms;
    atomic_int in_read, max_in_read;
} mem_source;

static void mem_image(int index, int *h, int *w) {
    *h = 40 + 7 * (index % 5);
    *w = 56 + 5 * (index % 3);
}

static int mem_read(void *ctx, int index, dataset_sample *out, char *err, size_t errlen) {
    mem_source *m = ctx;
    int now = atomic_fetch_add(&m->in_read, 1) + 1;
    int prev = atomic_load(&m->max_in_read);
    while (now > prev && !atomic_compare_exchange_weak(&m->max_in_read, &prev, now)) {
    }
    int rc = 0;
    if (index == m->fail_read) {
        snprintf(err, errlen, "injected read failure");
        rc = -1;
    } else {
        int h, w;
        mem_image(index, &h, &w);
        memset(out, 0, sizeof *out);
        out->index = index, out->height = h, out->width = w, out->encoding = IMG_RAW_RGB;
        out->nbytes = (size_t)h * w * 3;
        out->bytes = malloc(out->nbytes);
        rng r = rng_keyed(1234, 0, (uint64_t)index);
        for (size_t i = 0; i < out->nbytes; i++) out->bytes[i] = (uint8_t)rng_int(&r, 256);
        out->nboxes = 1 + index % 3;
        out->labels = malloc(sizeof(float) * 5 * out->nboxes);
        for (int k = 0; k < out->nboxes; k++) {
            float *l = out->labels + 5 * k;
            l[0] = (float)(k % 2), l[1] = 0.3f + 0.2f * k, l[2] = 0.5f, l[3] = 0.25f, l[4] = 0.4f;
        }
    }
    atomic_fetch_sub(&m->in_read, 1);
    return rc;
}

static int mem_decode(void *ctx, const dataset_sample *s, int min_h, int min_w, uint8_t **rgb,
                      int *h, int *w, char *err, size_t errlen) {
    mem_source *m = ctx;
    (void)min_h, (void)min_w;
    if (m->decode_sleep_ms) nanosleep(&(struct timespec){0, m->decode_sleep_ms * 1000000L}, NULL);
    if (s->index == m->fail_decode) {
        snprintf(err, errlen, "injected decode failure");
        return -1;
    }
    *rgb = malloc(s->nbytes);
    memcpy(*rgb, s->bytes, s->nbytes);
    *h = s->height, *w = s->width;
    return 0;
}

static void mem_free(void *ctx, dataset_sample *s) {
    (void)ctx;
    free(s->bytes);
    free(s->labels);
    s->bytes = NULL, s->labels = NULL;
}

static int mem_size(void *ctx, int index, int *h, int *w) {
    (void)ctx;
    mem_image(index, h, w);
    return 0;
}

static mem_source g_src[4]; /* one per concurrently alive loader in a test */

static sample_source mem_source_make(int k, int n) {
    mem_source *m = &g_src[k];
    memset(m, 0, sizeof *m);
    m->n = n, m->fail_read = m->fail_decode = -1;
    return (sample_source){.ctx = m,
                           .name = "mem.h5 [train]",
                           .size = n,
                           .read = mem_read,
                           .decode = mem_decode,
                           .free_sample = mem_free,
                           .image_size = mem_size};
}

static loader_config small_cfg(int nthreads) {
    loader_config c = loader_config_defaults();
    c.imgsz = 64, c.nthreads = nthreads, c.depth = 3, c.max_batch = 6;
    return c;
}

/* Runs 3 steps and returns all image bytes and labels concatenated. */
typedef struct run_out {
    uint8_t *img;
    size_t nimg;
    float *lab;
    size_t nlab;
} run_out;

static run_out run_steps(loader_config c, int epoch) {
    char err[512];
    loader *L = loader_create_source(mem_source_make(0, 20), &c, err, sizeof err);
    cr_assert(L, "%s", err);
    int steps[3][6] = {{0, 5, 9, 13, 2, 19}, {1, 1, 7, 3, 18, 4}, {11, 6, 8, 10, 12, 14}};
    for (int s = 0; s < 3; s++)
        cr_assert_eq(loader_submit(L, s, epoch, steps[s], 6, err, sizeof err), 0, "%s", err);
    run_out o = {0};
    size_t per = (size_t)6 * 64 * 64 * 3;
    o.img = malloc(3 * per);
    o.lab = malloc(sizeof(float) * 6 * 3 * 6 * 12);
    for (int s = 0; s < 3; s++) {
        loader_batch b;
        cr_assert_eq(loader_next(L, &b, err, sizeof err), 0, "%s", err);
        cr_assert_eq(b.step, s);
        cr_assert_eq(b.n, 6);
        cr_assert_eq(memcmp(b.indices, steps[s], sizeof steps[s]), 0);
        cr_assert(b.stall_s >= 0);
        memcpy(o.img + o.nimg, b.images, per);
        o.nimg += per;
        for (int i = 0; i < b.nlabels; i++) {
            cr_assert(b.labels[6 * i] >= 0 && b.labels[6 * i] < 6);
            if (i) cr_assert(b.labels[6 * i] >= b.labels[6 * (i - 1)], "labels in batch order");
        }
        memcpy(o.lab + o.nlab, b.labels, sizeof(float) * 6 * b.nlabels);
        o.nlab += 6 * (size_t)b.nlabels;
    }
    cr_assert(g_src[0].max_in_read <= 1, "reads must be serialised");
    loader_destroy(L);
    return o;
}

Test(loader, batches_identical_for_1_and_4_threads) {
    run_out a = run_steps(small_cfg(1), 0);
    loader_config c4 = small_cfg(4);
    c4.depth = 2;
    run_out b = run_steps(c4, 0);
    cr_assert_eq(a.nimg, b.nimg);
    cr_assert_eq(memcmp(a.img, b.img, a.nimg), 0, "images differ between 1 and 4 threads");
    cr_assert_eq(a.nlab, b.nlab);
    cr_assert(a.nlab > 0);
    cr_assert_eq(memcmp(a.lab, b.lab, sizeof(float) * a.nlab), 0);

    run_out e = run_steps(small_cfg(2), 1);
    cr_assert_neq(memcmp(a.img, e.img, a.nimg), 0, "another epoch must augment differently");
    loader_config cs = small_cfg(2);
    cs.seed = 1;
    run_out s = run_steps(cs, 0);
    cr_assert_neq(memcmp(a.img, s.img, a.nimg), 0, "another seed must augment differently");
    run_out *all[] = {&a, &b, &e, &s};
    for (int i = 0; i < 4; i++) free(all[i]->img), free(all[i]->lab);
}

/* Whole batches (load-time resize, mosaic or letterbox, warp, HSV, flips) at a vectorised level
 * against the scalar kernels, with mosaic on and off: identical bytes and labels. */
static void expect_batches_equal_scalar(pixels_level level) {
    char err[256];
    if (pixels_set_simd(level, err, sizeof err)) cr_skip_test("%s", err);
    for (int mosaic = 1; mosaic >= 0; mosaic--) {
        loader_config c = small_cfg(2);
        c.aug.mosaic = mosaic;
        cr_assert_eq(pixels_set_simd(level, err, sizeof err), 0);
        run_out v = run_steps(c, 3);
        cr_assert_eq(pixels_set_simd(PIXELS_SCALAR, err, sizeof err), 0);
        run_out s = run_steps(c, 3);
        cr_assert_eq(v.nimg, s.nimg);
        cr_assert_eq(memcmp(v.img, s.img, v.nimg), 0, "%s batch (mosaic %d) differs from scalar",
                     pixels_simd_name(level), mosaic);
        cr_assert_eq(v.nlab, s.nlab);
        cr_assert_eq(memcmp(v.lab, s.lab, sizeof(float) * v.nlab), 0);
        free(v.img), free(v.lab), free(s.img), free(s.lab);
    }
}

Test(loader, batches_identical_with_avx2_and_scalar_kernels) {
    expect_batches_equal_scalar(PIXELS_AVX2);
}

Test(loader, batches_identical_with_avx512_and_scalar_kernels) {
    expect_batches_equal_scalar(PIXELS_AVX512);
}

/* The loader must produce exactly what the augmentation functions produce for the same keys,
 * with mosaic partners drawn from the step's pool: the samples of this step and of the steps
 * before it in the same epoch. */
static void expect_same_as_augment(double mosaic) {
    char err[512];
    loader_config c = small_cfg(2);
    sample_source src = mem_source_make(0, 20);
    loader *L = loader_create_source(src, &c, err, sizeof err);
    cr_assert(L);
    loader_set_mosaic(L, mosaic);
    int first[3] = {5, 9, 1}, idx[2] = {3, 17}, pool[5] = {5, 9, 1, 3, 17};
    cr_assert_eq(loader_submit(L, 6, 4, first, 3, err, sizeof err), 0);
    cr_assert_eq(loader_submit(L, 7, 4, idx, 2, err, sizeof err), 0);
    loader_batch b;
    cr_assert_eq(loader_next(L, &b, err, sizeof err), 0, "%s", err);
    cr_assert_eq(loader_next(L, &b, err, sizeof err), 0, "%s", err);
    cr_assert_eq(b.step, 7);
    int drawn_from_first = 0;
    for (int k = 0; k < 2; k++) {
        augment_params p = c.aug;
        p.mosaic = mosaic;
        rng r = rng_keyed(c.seed, 4, (uint64_t)idx[k]);
        int parts[3], ids[4] = {idx[k]};
        int mos = augment_draw_mosaic(&r, &p, 5, parts);
        cr_assert_eq(mos, mosaic > 0);
        aug_image a[4];
        uint8_t *bufs[4] = {0};
        float labs[4][15];
        for (int i = 0; i < (mos ? 4 : 1); i++) {
            if (i) ids[i] = pool[parts[i - 1]], drawn_from_first += parts[i - 1] < 3;
            dataset_sample s;
            cr_assert_eq(mem_read(src.ctx, ids[i], &s, err, sizeof err), 0);
            int h, w;
            augment_load_size(s.height, s.width, 64, &h, &w);
            bufs[i] = malloc((size_t)h * w * 3);
            image_resize_bilinear(s.bytes, s.height, s.width, bufs[i], h, w);
            memcpy(labs[i], s.labels, sizeof(float) * 5 * s.nboxes);
            a[i] = (aug_image){bufs[i], h, w, labs[i], s.nboxes};
            mem_free(NULL, &s);
        }
        uint8_t want[64 * 64 * 3];
        float wl[60];
        int n = augment_train(&p, 64, &r, mos, a, want, wl);
        cr_assert_eq(memcmp(want, b.images + (size_t)k * 64 * 64 * 3, sizeof want), 0,
                     "sample %d differs from augment_train", k);
        int got = 0;
        for (int i = 0; i < b.nlabels; i++)
            if (b.labels[6 * i] == k) {
                cr_assert(got < n);
                cr_assert_eq(memcmp(b.labels + 6 * i + 1, wl + 5 * got, 5 * sizeof(float)), 0);
                got++;
            }
        cr_assert_eq(got, n);
        for (int i = 0; i < 4; i++) free(bufs[i]);
    }
    if (mosaic > 0) cr_assert_gt(drawn_from_first, 0, "the pool reaches back to the step before");
    loader_destroy(L);
}

Test(loader, matches_augment_with_mosaic) {
    expect_same_as_augment(1.0);
}
Test(loader, close_mosaic_matches_augment_without_mosaic) {
    expect_same_as_augment(0.0);
}

/* Runs steps 0..5 of one epoch (batches of 3 over 20 samples) and returns the images of steps
 * from..5 concatenated; steps before `from` are only noted (a resumed run) when note is set. */
static uint8_t *pool_run(loader_config c, int from, int note, size_t *nbytes) {
    char err[512];
    loader *L = loader_create_source(mem_source_make(0, 20), &c, err, sizeof err);
    cr_assert(L, "%s", err);
    int steps[6][3] = {{0, 5, 9}, {13, 2, 19}, {1, 7, 3}, {18, 4, 11}, {6, 8, 10}, {12, 14, 15}};
    for (int s = 0; s < 6; s++) {
        if (s < from) {
            if (note) cr_assert_eq(loader_note_step(L, steps[s], 3, err, sizeof err), 0, "%s", err);
            continue;
        }
        cr_assert_eq(loader_submit(L, s, 3, steps[s], 3, err, sizeof err), 0, "%s", err);
    }
    size_t per = (size_t)3 * 64 * 64 * 3;
    uint8_t *all = malloc((6 - from) * per);
    for (int s = from; s < 6; s++) {
        loader_batch b;
        cr_assert_eq(loader_next(L, &b, err, sizeof err), 0, "%s", err);
        memcpy(all + (s - from) * per, b.images, per);
    }
    loader_destroy(L);
    *nbytes = (6 - from) * per;
    return all;
}

/* A resumed run that notes the steps it skips produces the same batches as an uninterrupted
 * one; without the notes the pools (and so the mosaics) differ. cache=ram changes nothing. */
Test(loader, resume_with_noted_steps_and_cache_ram_give_the_same_batches) {
    loader_config c = small_cfg(2);
    c.max_batch = 3;
    size_t n_all, n_resumed, n_blind, n_ram;
    uint8_t *all = pool_run(c, 0, 0, &n_all);
    uint8_t *resumed = pool_run(c, 4, 1, &n_resumed);
    uint8_t *blind = pool_run(c, 4, 0, &n_blind);
    c.cache = LOADER_CACHE_RAM;
    c.nthreads = 3;
    uint8_t *ram = pool_run(c, 0, 0, &n_ram);
    cr_assert_eq(n_resumed, n_blind);
    cr_assert_eq(memcmp(resumed, all + (n_all - n_resumed), n_resumed), 0,
                 "steps 4 and 5 after noting 0..3 must equal the uninterrupted run's");
    cr_assert_neq(memcmp(blind, all + (n_all - n_blind), n_blind), 0,
                  "without the noted steps the mosaic pools differ");
    cr_assert_eq(n_ram, n_all);
    cr_assert_eq(memcmp(ram, all, n_all), 0, "cache=ram must not change a batch");
    free(all), free(resumed), free(blind), free(ram);
}

/* Global batches of 16 over 20 samples, 20 steps (pools reach 15 steps back), loaded by `parts`
 * loaders that each take one part of every batch (as workers do); returns all images in global
 * order. */
static uint8_t *parts_run(int parts, size_t *nbytes) {
    char err[512];
    enum { B = 16, STEPS = 20 };
    static int order[STEPS][B];
    for (int s = 0; s < STEPS; s++)
        for (int i = 0; i < B; i++) order[s][i] = (s * 7 + i * 13 + s * i) % 20;
    size_t per = (size_t)64 * 64 * 3;
    uint8_t *all = malloc(per * B * STEPS);
    int share = B / parts;
    for (int r = 0; r < parts; r++) {
        loader_config c = small_cfg(2);
        c.max_batch = share;
        loader *L = loader_create_source(mem_source_make(0, 20), &c, err, sizeof err);
        cr_assert(L, "%s", err);
        for (int s = 0; s < STEPS; s++)
            cr_assert_eq(
                loader_submit_part(L, s, 0, order[s], B, r * share, share, err, sizeof err), 0,
                "%s", err);
        for (int s = 0; s < STEPS; s++) {
            loader_batch b;
            cr_assert_eq(loader_next(L, &b, err, sizeof err), 0, "%s", err);
            memcpy(all + ((size_t)s * B + (size_t)r * share) * per, b.images, per * share);
        }
        loader_destroy(L);
    }
    *nbytes = per * B * STEPS;
    return all;
}

/* DESIGN.md section 5: 1, 2 or 8 workers train on the same global batches, mosaics included: the
 * pools are blocks of global positions. Parts of 8 keep their pools to themselves; parts of 2
 * decode the partners of their block that other parts own. */
Test(loader, mosaic_batches_identical_for_1_2_and_8_parts) {
    size_t n1, n2, n8;
    uint8_t *one = parts_run(1, &n1), *two = parts_run(2, &n2), *eight = parts_run(8, &n8);
    cr_assert(n1 == n2 && n1 == n8);
    cr_assert_eq(memcmp(one, two, n1), 0, "2 parts differ from the whole batch");
    cr_assert_eq(memcmp(one, eight, n1), 0, "8 parts differ from the whole batch");
    free(one), free(two), free(eight);
}

Test(loader, cache_ram_refuses_what_does_not_fit) {
    char err[512];
    loader_config c = small_cfg(1);
    c.cache = LOADER_CACHE_RAM;
    /* 20 images of at most 68 x 66 at imgsz 64: under 20 * 64 * 64 * 3 = 245760 bytes */
    c.cache_limit = 100000;
    cr_assert_null(loader_create_source(mem_source_make(0, 20), &c, err, sizeof err));
    cr_assert(strstr(err, "cache=ram") && strstr(err, "cache=False"), "%s", err);
    cr_assert_null(strchr(err, '\n'));
    c.cache_limit = 10000000;
    c.cache_sharers = 50;
    cr_assert_null(loader_create_source(mem_source_make(0, 20), &c, err, sizeof err),
                   "50 processes caching 0.2 MB each do not fit in 10 MB");
    c.cache_sharers = 1;
    loader *L = loader_create_source(mem_source_make(0, 20), &c, err, sizeof err);
    cr_assert(L, "%s", err);
    loader_destroy(L);
}

Test(loader, validation_letterbox_and_info) {
    char err[512];
    loader_config c = small_cfg(3);
    c.augment = 0;
    loader *L = loader_create_source(mem_source_make(0, 10), &c, err, sizeof err);
    cr_assert(L);
    int idx[3] = {4, 0, 8};
    cr_assert_eq(loader_submit(L, 0, 0, idx, 3, err, sizeof err), 0);
    loader_batch b;
    cr_assert_eq(loader_next(L, &b, err, sizeof err), 0, "%s", err);
    cr_assert(b.info);
    for (int k = 0; k < 3; k++) {
        dataset_sample s;
        cr_assert_eq(mem_read(&g_src[0], idx[k], &s, err, sizeof err), 0);
        aug_image a = {s.bytes, s.height, s.width, s.labels, s.nboxes};
        uint8_t want[64 * 64 * 3];
        float wl[15];
        letterbox_info info;
        int n = augment_val(&a, s.height, s.width, 64, want, wl, &info);
        cr_assert_eq(memcmp(want, b.images + (size_t)k * sizeof want, sizeof want), 0);
        cr_assert_eq(memcmp(&info, &b.info[k], sizeof info), 0);
        cr_assert(b.info[k].orig_h == s.height && b.info[k].orig_w == s.width);
        cr_assert_eq(n, s.nboxes, "validation keeps every box");
        mem_free(NULL, &s);
    }
    loader_destroy(L);
}

Test(loader, read_and_decode_errors_name_file_and_sample) {
    char err[512];
    loader_config c = small_cfg(2);
    sample_source src = mem_source_make(0, 20);
    g_src[0].fail_read = 5;
    g_src[0].fail_decode = 9;
    c.aug.mosaic = 0; /* partners could hit the failing indices */
    loader *L = loader_create_source(src, &c, err, sizeof err);
    cr_assert(L);
    int s0[2] = {1, 5}, s1[2] = {9, 2}, s2[2] = {3, 4};
    cr_assert_eq(loader_submit(L, 0, 0, s0, 2, err, sizeof err), 0);
    cr_assert_eq(loader_submit(L, 1, 0, s1, 2, err, sizeof err), 0);
    cr_assert_eq(loader_submit(L, 2, 0, s2, 2, err, sizeof err), 0);
    loader_batch b;
    cr_assert_eq(loader_next(L, &b, err, sizeof err), -1);
    cr_assert(strstr(err, "mem.h5") && strstr(err, "sample 5") && strstr(err, "read failure"), "%s",
              err);
    cr_assert_null(strchr(err, '\n'));
    cr_assert_eq(loader_next(L, &b, err, sizeof err), -1);
    cr_assert(strstr(err, "mem.h5") && strstr(err, "sample 9") && strstr(err, "decode failure"),
              "%s", err);
    cr_assert_eq(loader_next(L, &b, err, sizeof err), 0, "a later good step still loads: %s", err);
    cr_assert_eq(b.step, 2);
    loader_destroy(L);
}

Test(loader, usage_errors) {
    char err[512];
    loader_config c = small_cfg(1);
    loader *L = loader_create_source(mem_source_make(0, 10), &c, err, sizeof err);
    cr_assert(L);
    loader_batch b;
    cr_assert_eq(loader_next(L, &b, err, sizeof err), -1);
    cr_assert(strstr(err, "no step"), "%s", err);
    int bad[2] = {0, 10};
    cr_assert_eq(loader_submit(L, 0, 0, bad, 2, err, sizeof err), -1);
    cr_assert(strstr(err, "index 10"), "%s", err);
    cr_assert_eq(loader_submit(L, 0, 0, bad, 7, err, sizeof err), -1);
    cr_assert(strstr(err, "7 samples"), "%s", err);
    loader_destroy(L);
    c.imgsz = 63;
    cr_assert_null(loader_create_source(mem_source_make(0, 10), &c, err, sizeof err));
    cr_assert(strstr(err, "imgsz"), "%s", err);
}

Test(loader, stall_is_measured_and_shutdown_with_work_pending) {
    char err[512];
    loader_config c = small_cfg(1);
    c.aug.mosaic = 0;
    sample_source src = mem_source_make(0, 10);
    g_src[0].decode_sleep_ms = 20;
    loader *L = loader_create_source(src, &c, err, sizeof err);
    cr_assert(L);
    int idx[2] = {0, 1};
    for (int s = 0; s < 6; s++) cr_assert_eq(loader_submit(L, s, 0, idx, 2, err, sizeof err), 0);
    loader_batch b;
    cr_assert_eq(loader_next(L, &b, err, sizeof err), 0);
    /* one thread, two samples of >= 20 ms decode each: the consumer waited at least 20 ms */
    cr_assert(b.stall_s >= 0.02, "stall %g", b.stall_s);
    loader_destroy(L); /* 5 steps outstanding: must return without hanging */
}

/* ---- through a real dataset file --------------------------------------------------------- */

static void write_h5(const char *path) {
    char err[512];
    const char *names[3] = {"circle", "rectangle", "triangle"};
    dataset_writer *w = dataset_writer_create(path, 3, names, "test_loader", err, sizeof err);
    cr_assert(w, "%s", err);
    uint8_t rgb[96 * 96 * 3];
    float lab[SYNTH_MAX_OBJECTS * 5];
    cr_assert_eq(dataset_writer_begin_split(w, SPLIT_TRAIN, err, sizeof err), 0, "%s", err);
    for (int i = 0; i < 8; i++) {
        int nb = synth_image(3, SPLIT_TRAIN, i, 96, 3, rgb, lab);
        cr_assert_eq(dataset_writer_add(w, rgb, sizeof rgb, IMG_RAW_RGB, 96, 96, lab, nb, "synth",
                                        err, sizeof err),
                     0, "%s", err);
    }
    cr_assert_eq(dataset_writer_begin_split(w, SPLIT_VAL, err, sizeof err), 0, "%s", err);
    for (int i = 0; i < 3; i++) {
        int nb = synth_image(3, SPLIT_VAL, i, 96, 3, rgb, lab);
        cr_assert_eq(dataset_writer_add(w, rgb, sizeof rgb, IMG_RAW_RGB, 96, 96, lab, nb, "synth",
                                        err, sizeof err),
                     0, "%s", err);
    }
    uint8_t junk[64] = {0xFF, 0xD8, 0xFF, 0x01, 0x02}; /* a JPEG start, then garbage */
    cr_assert_eq(dataset_writer_add(w, junk, sizeof junk, IMG_JPEG, 50, 60, NULL, 0, "junk.jpg",
                                    err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(dataset_writer_finish(w, NULL, err, sizeof err), 0, "%s", err);
}

static uint8_t *h5_run(const char *path, int nthreads, size_t *nbytes) {
    char err[512];
    loader_config c = small_cfg(nthreads);
    c.max_batch = 4;
    loader *L = loader_create(path, SPLIT_TRAIN, &c, err, sizeof err);
    cr_assert(L, "%s", err);
    int s0[4] = {0, 3, 5, 7}, s1[4] = {6, 1, 2, 4};
    cr_assert_eq(loader_submit(L, 0, 2, s0, 4, err, sizeof err), 0);
    cr_assert_eq(loader_submit(L, 1, 2, s1, 4, err, sizeof err), 0);
    size_t per = (size_t)4 * 64 * 64 * 3;
    uint8_t *all = malloc(2 * per);
    for (int s = 0; s < 2; s++) {
        loader_batch b;
        cr_assert_eq(loader_next(L, &b, err, sizeof err), 0, "%s", err);
        cr_assert(b.nlabels > 0);
        memcpy(all + s * per, b.images, per);
    }
    loader_destroy(L);
    *nbytes = 2 * per;
    return all;
}

Test(loader, dataset_file_threads_validation_and_errors) {
    char dir[256], path[600], err[512];
    test_temp_dir(dir, sizeof dir, "loader");
    snprintf(path, sizeof path, "%s/synth.h5", dir);
    write_h5(path);
    size_t n1, n3;
    uint8_t *a = h5_run(path, 1, &n1), *b = h5_run(path, 3, &n3);
    cr_assert_eq(n1, n3);
    cr_assert_eq(memcmp(a, b, n1), 0, "dataset batches differ between 1 and 3 threads");

    /* a train and a val loader on the same file at once (one process-wide HDF5 lock) */
    loader_config ct = small_cfg(2), cv = small_cfg(2);
    ct.max_batch = 4, cv.augment = 0;
    loader *Lt = loader_create(path, SPLIT_TRAIN, &ct, err, sizeof err);
    loader *Lv = loader_create(path, SPLIT_VAL, &cv, err, sizeof err);
    cr_assert(Lt && Lv, "%s", err);
    int s0[4] = {0, 3, 5, 7}, s1[4] = {6, 1, 2, 4}, v[3] = {0, 1, 2};
    cr_assert_eq(loader_submit(Lt, 0, 2, s0, 4, err, sizeof err), 0);
    cr_assert_eq(loader_submit(Lt, 1, 2, s1, 4, err, sizeof err), 0);
    for (int i = 0; i < 4; i++) cr_assert_eq(loader_submit(Lv, i, 0, v, 3, err, sizeof err), 0);
    size_t per = n1 / 2;
    for (int i = 0; i < 4; i++) {
        loader_batch bv;
        cr_assert_eq(loader_next(Lv, &bv, err, sizeof err), 0, "%s", err);
        if (i < 2) {
            loader_batch bt;
            cr_assert_eq(loader_next(Lt, &bt, err, sizeof err), 0, "%s", err);
            cr_assert_eq(memcmp(bt.images, a + i * per, per), 0, "step %d differs", i);
        }
    }
    loader_destroy(Lt);
    loader_destroy(Lv);
    free(a), free(b);

    loader_config c = small_cfg(2);
    c.augment = 0;
    loader *L = loader_create(path, SPLIT_VAL, &c, err, sizeof err);
    cr_assert(L, "%s", err);
    int good[3] = {0, 1, 2}, bad[1] = {3};
    cr_assert_eq(loader_submit(L, 0, 0, good, 3, err, sizeof err), 0);
    cr_assert_eq(loader_submit(L, 1, 0, bad, 1, err, sizeof err), 0);
    loader_batch bt;
    cr_assert_eq(loader_next(L, &bt, err, sizeof err), 0, "%s", err);
    cr_assert(bt.info && bt.info[0].orig_h == 96 && bt.info[0].orig_w == 96);
    cr_assert_float_eq(bt.info[0].gain_x, 64.f / 96.f, 1e-6);
    cr_assert_eq(loader_next(L, &bt, err, sizeof err), -1);
    cr_assert(strstr(err, path) && strstr(err, "sample 3"), "%s", err);
    cr_assert_null(strchr(err, '\n'));
    loader_destroy(L);

    cr_assert_null(loader_create(path, SPLIT_TEST, &c, err, sizeof err));
    cr_assert(strstr(err, "test"), "%s", err);
    char missing[700];
    snprintf(missing, sizeof missing, "%s/missing.h5", dir);
    cr_assert_null(loader_create(missing, SPLIT_TRAIN, &c, err, sizeof err));
    cr_assert(strstr(err, "missing.h5"), "%s", err);
    unlink(path);
    rmdir(dir);
}

/* coco8's real JPEGs (DCT-scaled decode) through pack -> dataset -> loader. */
Test(loader, coco8_val_boxes_map_back_and_train_labels_are_sane) {
    const char *yaml = shared_path("data/coco8/coco8.yaml");
    cr_assert_not_null(yaml, "coco8 is part of the shared data");
    char dir[256], path[600], err[512];
    test_temp_dir(dir, sizeof dir, "loader-c8");
    snprintf(path, sizeof path, "%s/c8.h5", dir);
    pack_stats st;
    cr_assert_eq(pack_ultralytics(yaml, path, false, &st, err, sizeof err), 0, "%s", err);

    loader_config c = loader_config_defaults();
    c.imgsz = 320, c.nthreads = 2, c.max_batch = 4, c.augment = 0;
    loader *L = loader_create(path, SPLIT_VAL, &c, err, sizeof err);
    cr_assert(L, "%s", err);
    dataset *ds = dataset_open(path, err, sizeof err);
    cr_assert(ds, "%s", err);
    int idx[4] = {0, 1, 2, 3};
    cr_assert_eq(loader_submit(L, 0, 0, idx, 4, err, sizeof err), 0);
    loader_batch b;
    cr_assert_eq(loader_next(L, &b, err, sizeof err), 0, "%s", err);
    int k = 0;
    for (int i = 0; i < 4; i++) {
        const float *lab;
        int nb, h, w;
        cr_assert_eq(dataset_labels(ds, SPLIT_VAL, i, &lab, &nb), 0);
        cr_assert_eq(dataset_image_size(ds, SPLIT_VAL, i, &h, &w), 0);
        const letterbox_info *in = &b.info[i];
        cr_assert(in->orig_h == h && in->orig_w == w);
        /* long side fills imgsz; the pad is centred */
        float ow = w * in->gain_x, oh = h * in->gain_y;
        cr_assert(fabsf(fmaxf(ow, oh) - 320) < 1.f, "%g x %g", ow, oh);
        cr_assert(fabsf(2 * in->pad_x + ow - 320) <= 1.f && fabsf(2 * in->pad_y + oh - 320) <= 1.f);
        for (int j = 0; j < nb; j++, k++) {
            const float *g = lab + 5 * j, *o = b.labels + 6 * k;
            cr_assert_eq(o[0], (float)i);
            cr_assert_eq(o[1], g[0]);
            cr_assert_float_eq(o[2] * 320, g[1] * w * in->gain_x + in->pad_x, 1e-2);
            cr_assert_float_eq(o[3] * 320, g[2] * h * in->gain_y + in->pad_y, 1e-2);
            cr_assert_float_eq(o[4] * 320, g[3] * w * in->gain_x, 1e-2);
            cr_assert_float_eq(o[5] * 320, g[4] * h * in->gain_y, 1e-2);
        }
        /* a pad row of a landscape image is 114 */
        if (in->pad_y >= 1) cr_assert_eq(b.images[(size_t)i * 320 * 320 * 3], 114);
    }
    cr_assert_eq(k, b.nlabels, "validation keeps every box");
    dataset_close(ds);
    loader_destroy(L);

    c.augment = 1;
    L = loader_create(path, SPLIT_TRAIN, &c, err, sizeof err);
    cr_assert(L, "%s", err);
    cr_assert_eq(loader_submit(L, 0, 0, idx, 4, err, sizeof err), 0);
    cr_assert_eq(loader_next(L, &b, err, sizeof err), 0, "%s", err);
    cr_assert(b.nlabels > 0);
    for (int i = 0; i < b.nlabels; i++) {
        const float *o = b.labels + 6 * i;
        cr_assert(o[1] >= 0 && o[1] < 80 && o[1] == (float)(int)o[1]);
        cr_assert(o[4] * 320 > 2 && o[5] * 320 > 2, "candidate filter: boxes over 2 px");
        cr_assert(o[2] - o[4] / 2 >= -1e-5f && o[2] + o[4] / 2 <= 1 + 1e-5f, "clipped");
        cr_assert(o[3] - o[5] / 2 >= -1e-5f && o[3] + o[5] / 2 <= 1 + 1e-5f, "clipped");
    }
    loader_destroy(L);
    unlink(path);
    rmdir(dir);
}
