/* Reading a dataset file's images: dataset_read_many (several images in one HDF5 call, which
 * bench_loader measures against single reads) against dataset_read, bad indices and a corrupt
 * image, and the loader over a dataset file giving the same batches for any thread count and
 * cache. */
#include "common/rng.h"
#include "dataio/dataset.h"
#include "dataio/dataset_write.h"
#include "dataio/loader.h"
#include "dataio/synth.h"
#include "tests/testenv.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* past several chunks of 64 heap references, and past the 256 images one pass of the 4 KB
 * conversion buffer holds */
enum { NIMG = 300 };

static const uint8_t MARKER[16] = "read-many-marker";

/* NIMG raw RGB images of sides 40..64 (each over 4 KiB, so each has a global heap collection of
 * its own; tiny: sides 4..12, many images per collection), labelled by synth. Image `marked`
 * starts with MARKER (-1: none). */
static void write_set_sized(const char *path, int marked, int tiny) {
    char err[512];
    const char *names[3] = {"circle", "rectangle", "triangle"};
    dataset_writer *w = dataset_writer_create(path, 3, names, "test_loader_read", err, sizeof err);
    cr_assert(w, "%s", err);
    cr_assert_eq(dataset_writer_begin_split(w, SPLIT_TRAIN, err, sizeof err), 0, "%s", err);
    uint8_t *rgb = malloc(64 * 64 * 3);
    float lab[SYNTH_MAX_OBJECTS * 5];
    for (int i = 0; i < NIMG; i++) {
        int side = tiny ? 4 + i % 9 : 40 + 4 * (i % 7);
        int nb = synth_image(5, SPLIT_TRAIN, i, side, 3, rgb, lab);
        if (i == marked) memcpy(rgb, MARKER, sizeof MARKER);
        cr_assert_eq(dataset_writer_add(w, rgb, (size_t)side * side * 3, IMG_RAW_RGB, side, side,
                                        lab, nb, "synth", err, sizeof err),
                     0, "%s", err);
    }
    free(rgb);
    cr_assert_eq(dataset_writer_finish(w, NULL, err, sizeof err), 0, "%s", err);
}

static void write_set(const char *path, int marked) {
    write_set_sized(path, marked, 0);
}

static void expect_same_sample(const dataset_sample *a, const dataset_sample *b) {
    cr_assert_eq(a->index, b->index);
    cr_assert(a->height == b->height && a->width == b->width);
    cr_assert(a->stored_h == b->stored_h && a->stored_w == b->stored_w);
    cr_assert_eq(a->encoding, b->encoding);
    cr_assert_eq(a->nbytes, b->nbytes, "sample %d: %zu bytes, %zu alone", a->index, a->nbytes,
                 b->nbytes);
    cr_assert_eq(memcmp(a->bytes, b->bytes, a->nbytes), 0, "sample %d: bytes differ", a->index);
    cr_assert_eq(a->nboxes, b->nboxes);
    cr_assert_eq(memcmp(a->labels, b->labels, sizeof(float) * 5 * (size_t)a->nboxes), 0);
}

Test(loader_read, read_many_gives_what_single_reads_give) {
    char dir[256], path[600], err[512];
    test_temp_dir(dir, sizeof dir, "readmany");
    snprintf(path, sizeof path, "%s/set.h5", dir);
    write_set(path, -1);
    dataset *ds = dataset_open(path, err, sizeof err);
    cr_assert(ds, "%s", err);
    dataset_sample *one = calloc(NIMG, sizeof *one), got[80];
    for (int i = 0; i < NIMG; i++)
        cr_assert_eq(dataset_read(ds, SPLIT_TRAIN, i, &one[i], err, sizeof err), 0, "%s", err);
    for (int i = 0; i < NIMG; i++) { /* without HDF5 (pread), as the loader's threads read */
        dataset_sample u;
        cr_assert_eq(dataset_read_unlocked(ds, SPLIT_TRAIN, i, &u, err, sizeof err), 0,
                     "image %d must read without HDF5", i);
        expect_same_sample(&u, &one[i]);
        dataset_sample_free(&u);
    }
    rng r = rng_keyed(11, 0, 0);
    for (int trial = 0; trial < 40; trial++) {
        int n = 1 + rng_int(&r, 80), idx[80];
        for (int i = 0; i < n; i++) idx[i] = rng_int(&r, NIMG);
        if (trial % 2) idx[rng_int(&r, n)] = NIMG - 1;       /* the last index */
        if (n > 2 && trial % 3 == 0) idx[n - 1] = idx[0];    /* a repeat */
        if (trial == 0) n = 3, idx[0] = idx[1] = idx[2] = 7; /* all the same */
        cr_assert_eq(dataset_read_many(ds, SPLIT_TRAIN, idx, n, got, err, sizeof err), 0, "%s",
                     err);
        for (int i = 0; i < n; i++) {
            cr_assert_eq(got[i].index, idx[i], "trial %d: out[%d] is not indices[%d]", trial, i, i);
            expect_same_sample(&got[i], &one[idx[i]]);
        }
        for (int i = 0; i < n; i++) /* repeats own separate buffers: freeing each once is fine */
            for (int k = 0; k < i; k++) cr_assert(got[i].bytes != got[k].bytes);
        for (int i = 0; i < n; i++) dataset_sample_free(&got[i]);
    }
    int all[NIMG];
    for (int i = 0; i < NIMG; i++) all[i] = NIMG - 1 - i; /* every image, in reverse */
    dataset_sample *every = calloc(NIMG, sizeof *every);
    cr_assert_eq(dataset_read_many(ds, SPLIT_TRAIN, all, NIMG, every, err, sizeof err), 0, "%s",
                 err);
    for (int i = 0; i < NIMG; i++) {
        expect_same_sample(&every[i], &one[all[i]]);
        dataset_sample_free(&every[i]);
        dataset_sample_free(&one[all[i]]);
    }
    free(every), free(one);
    dataset_close(ds);
    test_remove_dir(dir);
}

/* The offset of the global heap collection holding the marked image's bytes ("GCOL" before it). */
static long marked_collection(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    uint8_t *buf = malloc((size_t)size);
    rewind(f);
    cr_assert_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    long at = -1, gcol = -1;
    for (long i = 0; i + 16 <= size && at < 0; i++) {
        if (!memcmp(buf + i, "GCOL", 4)) gcol = i;
        if (!memcmp(buf + i, MARKER, sizeof MARKER)) at = i;
    }
    free(buf);
    cr_assert(at > 0 && gcol >= 0, "marker or collection not found");
    return gcol;
}

static void expect_one_line(const char *err, const char *path, const char *what) {
    cr_assert(strstr(err, path) && strstr(err, what), "%s", err);
    cr_assert_null(strchr(err, '\n'), "%s", err);
    cr_assert_null(strstr(err, "HDF5-DIAG"), "%s", err);
}

/* Images small enough to share heap collections: read without HDF5 by walking a collection. */
Test(loader_read, unlocked_reads_of_images_sharing_a_heap_collection) {
    char dir[256], path[600], err[512];
    test_temp_dir(dir, sizeof dir, "readmany-tiny");
    snprintf(path, sizeof path, "%s/tiny.h5", dir);
    write_set_sized(path, -1, 1);
    dataset *ds = dataset_open(path, err, sizeof err);
    cr_assert(ds, "%s", err);
    for (int i = NIMG - 1; i >= 0; i--) {
        dataset_sample a, u;
        cr_assert_eq(dataset_read(ds, SPLIT_TRAIN, i, &a, err, sizeof err), 0, "%s", err);
        cr_assert_eq(dataset_read_unlocked(ds, SPLIT_TRAIN, i, &u, err, sizeof err), 0,
                     "image %d must read without HDF5", i);
        expect_same_sample(&u, &a);
        dataset_sample_free(&a), dataset_sample_free(&u);
    }
    dataset_sample u;
    cr_assert_eq(dataset_read_unlocked(ds, SPLIT_TRAIN, NIMG, &u, err, sizeof err), -1);
    expect_one_line(err, path, "no sample 300");
    dataset_close(ds);
    test_remove_dir(dir);
}

Test(loader_read, bad_index_and_corrupt_image_give_one_line) {
    char dir[256], path[600], err[512];
    test_temp_dir(dir, sizeof dir, "readmany-bad");
    snprintf(path, sizeof path, "%s/set.h5", dir);
    enum { BAD = 77 };
    write_set(path, BAD);
    dataset *ds = dataset_open(path, err, sizeof err);
    cr_assert(ds, "%s", err);
    dataset_sample got[4];
    int out_of_range[3] = {0, NIMG, 5}, negative[2] = {-1, 3};
    cr_assert_eq(dataset_read_many(ds, SPLIT_TRAIN, out_of_range, 3, got, err, sizeof err), -1);
    expect_one_line(err, path, "no sample 300 in split train (size 300)");
    cr_assert_eq(dataset_read_many(ds, SPLIT_TRAIN, negative, 2, got, err, sizeof err), -1);
    expect_one_line(err, path, "no sample -1");
    cr_assert_eq(dataset_read_many(ds, SPLIT_VAL, negative + 1, 1, got, err, sizeof err), -1);
    expect_one_line(err, path, "split val (size 0)");
    cr_assert_eq(dataset_read_many(ds, SPLIT_TRAIN, negative, 0, got, err, sizeof err), -1);
    expect_one_line(err, path, "read of 0 samples");
    dataset_close(ds);

    /* the collection holding image BAD's bytes loses its signature */
    long at = marked_collection(path);
    FILE *f = fopen(path, "r+b");
    cr_assert(f && fseek(f, at, SEEK_SET) == 0 && fwrite("XXXX", 1, 4, f) == 4);
    fclose(f);
    ds = dataset_open(path, err, sizeof err);
    cr_assert(ds, "%s", err);
    int with_bad[4] = {3, 140, BAD, 20}, without[3] = {3, 140, 20};
    /* without HDF5 the bad collection is noticed and left to HDF5 (1), the others read */
    cr_assert_eq(dataset_read_unlocked(ds, SPLIT_TRAIN, BAD, got, err, sizeof err), 1);
    cr_assert_eq(dataset_read_unlocked(ds, SPLIT_TRAIN, BAD + 1, got, err, sizeof err), 0);
    dataset_sample_free(got);
    cr_assert_eq(dataset_read_many(ds, SPLIT_TRAIN, with_bad, 4, got, err, sizeof err), -1);
    expect_one_line(err, path, "train image 77: HDF5 read failed");
    cr_assert_eq(dataset_read_many(ds, SPLIT_TRAIN, without, 3, got, err, sizeof err), 0, "%s",
                 err);
    for (int i = 0; i < 3; i++) dataset_sample_free(&got[i]);
    dataset_close(ds);

    /* the loader: the step with the bad image fails naming it, the steps around it load */
    loader_config c = loader_config_defaults();
    c.imgsz = 64, c.nthreads = 2, c.max_batch = 4;
    c.aug.mosaic = 0; /* no partners: only the step holding the bad image reads it */
    loader *L = loader_create(path, SPLIT_TRAIN, &c, err, sizeof err);
    cr_assert(L, "%s", err);
    int steps[3][4] = {{1, 2, 3, 4}, {5, BAD, 6, 7}, {8, 9, 10, 11}};
    for (int s = 0; s < 3; s++) cr_assert_eq(loader_submit(L, s, 0, steps[s], 4, err, 512), 0);
    loader_batch b;
    cr_assert_eq(loader_next(L, &b, err, sizeof err), 0, "%s", err);
    cr_assert_eq(loader_next(L, &b, err, sizeof err), -1);
    expect_one_line(err, path, "sample 77");
    cr_assert_eq(loader_next(L, &b, err, sizeof err), 0, "%s", err);
    loader_read_stats st;
    loader_read_stats_get(L, &st);
    /* steps 0 and 2 read without the lock; step 1 stops at its failure */
    cr_assert(st.locked == 1 && st.unlocked >= 8,
              "the bad image alone goes through HDF5: %lld without the lock, %lld under it",
              (long long)st.unlocked, (long long)st.locked);
    loader_destroy(L);
    test_remove_dir(dir);
}

enum { STEPS = 24, B = 8 };

/* STEPS batches of B from the dataset file (repeats inside a batch, the last image, most images
 * used, mosaic on); all image and label bytes concatenated into *out. */
static size_t run_loader(const char *path, int nthreads, loader_cache cache, uint8_t **out) {
    char err[512];
    loader_config c = loader_config_defaults();
    c.imgsz = 64, c.nthreads = nthreads, c.max_batch = B, c.cache = cache, c.depth = 3;
    loader *L = loader_create(path, SPLIT_TRAIN, &c, err, sizeof err);
    cr_assert(L, "%s", err);
    for (int s = 0; s < STEPS; s++) {
        int idx[B];
        for (int i = 0; i < B; i++) idx[i] = (s * 37 + i * 11 + (i == 5 ? 0 : s * i)) % NIMG;
        idx[B - 1] = s % 3 ? idx[0] : NIMG - 1; /* a repeat in the batch, or the last image */
        cr_assert_eq(loader_submit(L, s, 1, idx, B, err, sizeof err), 0, "%s", err);
    }
    size_t per = (size_t)B * 64 * 64 * 3, cap = STEPS * (per + 6 * 64 * B * sizeof(float)), n = 0;
    *out = malloc(cap);
    for (int s = 0; s < STEPS; s++) {
        loader_batch b;
        cr_assert_eq(loader_next(L, &b, err, sizeof err), 0, "%s", err);
        cr_assert_gt(b.nlabels, 0);
        size_t lb = sizeof(float) * 6 * (size_t)b.nlabels;
        cr_assert(n + per + lb <= cap);
        memcpy(*out + n, b.images, per), n += per;
        memcpy(*out + n, b.labels, lb), n += lb;
    }
    loader_read_stats st;
    loader_read_stats_get(L, &st);
    cr_assert(st.unlocked > 0 && st.locked == 0 && st.locked_s == 0,
              "every read without the HDF5 lock: %lld without, %lld under it",
              (long long)st.unlocked, (long long)st.locked);
    loader_destroy(L);
    return n;
}

/* Through the dataset file's reader (threads reading the bytes in parallel with pread): the same
 * batches for 1, 2 and 4 threads, with and without cache=ram, and no read under the HDF5 lock. */
Test(loader_read, dataset_batches_identical_for_1_2_4_threads_and_cache_ram) {
    char dir[256], path[600];
    test_temp_dir(dir, sizeof dir, "readmany-loader");
    snprintf(path, sizeof path, "%s/set.h5", dir);
    write_set(path, -1);
    uint8_t *want;
    size_t nwant = run_loader(path, 1, LOADER_CACHE_NONE, &want);
    int threads[3] = {1, 2, 4};
    for (int t = 0; t < 3; t++)
        for (int cache = 0; cache < 2; cache++) {
            if (t == 0 && cache == 0) continue;
            uint8_t *got;
            size_t n =
                run_loader(path, threads[t], cache ? LOADER_CACHE_RAM : LOADER_CACHE_NONE, &got);
            cr_assert_eq(n, nwant);
            cr_assert_eq(memcmp(got, want, n), 0, "%d threads, cache=%s: batches differ",
                         threads[t], cache ? "ram" : "none");
            free(got);
        }
    free(want);
    test_remove_dir(dir);
}
