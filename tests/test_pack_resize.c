/* Datasets stored at a training size (coordinator data pack ... imgsz=): what the loader makes of
 * them, and what the file records. */
#include "dataio/dataset.h"
#include "dataio/decode.h"
#include "dataio/loader.h"
#include "dataio/pack.h"
#include "tests/oracle.h"
#include "tests/testenv.h"

#include <criterion/criterion.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[512];

static const char *tpath(const char *name) {
    static char buf[4][600];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void setup(void) {
    test_temp_dir(dir, sizeof dir, "packsize");
    const char *yaml = shared_path("data/coco8/coco8.yaml");
    cr_assert_not_null(yaml, "coco8 is part of the shared data");
    pack_stats st;
    char err[512];
    cr_assert_eq(pack_ultralytics(yaml, tpath("c8.h5"), false, &st, err, sizeof err), 0, "%s", err);
}

static void teardown(void) {
    test_remove_dir(dir);
}

/* Two steps of train batches (mosaic on) and one of validation, concatenated. */
typedef struct batches {
    uint8_t *img;
    size_t n;
    float *lab;
    int nlab;
    letterbox_info info[4];
} batches;

static batches load(const char *path, int imgsz) {
    char err[512];
    batches o = {.img = malloc((size_t)12 * imgsz * imgsz * 3),
                 .lab = malloc(sizeof(float) * 6000)};
    for (int pass = 0; pass < 2; pass++) {
        loader_config c = loader_config_defaults();
        c.imgsz = imgsz, c.nthreads = 2, c.max_batch = 4, c.augment = pass == 0;
        loader *L = loader_create(path, pass == 0 ? SPLIT_TRAIN : SPLIT_VAL, &c, err, sizeof err);
        cr_assert(L, "%s", err);
        int s0[4] = {0, 3, 1, 2}, s1[4] = {2, 2, 0, 3};
        cr_assert_eq(loader_submit(L, 0, 5, s0, 4, err, sizeof err), 0, "%s", err);
        if (pass == 0) cr_assert_eq(loader_submit(L, 1, 5, s1, 4, err, sizeof err), 0, "%s", err);
        for (int s = 0; s < (pass == 0 ? 2 : 1); s++) {
            loader_batch b;
            cr_assert_eq(loader_next(L, &b, err, sizeof err), 0, "%s", err);
            size_t bytes = (size_t)b.n * imgsz * imgsz * 3;
            memcpy(o.img + o.n, b.images, bytes);
            o.n += bytes;
            memcpy(o.lab + 6 * o.nlab, b.labels, sizeof(float) * 6 * b.nlabels);
            o.nlab += b.nlabels;
            if (pass == 1) memcpy(o.info, b.info, sizeof o.info);
        }
        loader_destroy(L);
    }
    return o;
}

TestSuite(packsize, .init = setup, .fini = teardown, .timeout = 120);

Test(packsize, raw_at_the_training_size_gives_the_same_batches) {
    char err[512];
    pack_stats st;
    pack_store raw = {.imgsz = 64, .as = IMG_RAW_RGB, .quality = 95};
    cr_assert_eq(pack_resized(tpath("c8.h5"), tpath("raw64.h5"), &raw, &st, err, sizeof err), 0,
                 "%s", err);
    cr_assert_eq(st.images[SPLIT_TRAIN], 4);
    cr_assert_eq(st.images[SPLIT_VAL], 4);

    dataset *ds = dataset_open(tpath("raw64.h5"), err, sizeof err);
    cr_assert(ds, "%s", err);
    cr_assert_eq(dataset_stored_imgsz(ds), 64);
    cr_assert_str_eq(dataset_stored_as(ds), "raw_rgb");
    cr_assert(strstr(dataset_source(ds), "stored at 64 px"), "%s", dataset_source(ds));
    dataset_sample smp;
    cr_assert_eq(dataset_read(ds, SPLIT_TRAIN, 0, &smp, err, sizeof err), 0, "%s", err);
    cr_assert_eq(smp.height, 480, "the original size is kept");
    cr_assert(smp.stored_h == 48 && smp.stored_w == 64, "%dx%d", smp.stored_h, smp.stored_w);
    cr_assert_eq(smp.nbytes, (size_t)48 * 64 * 3);
    dataset_sample_free(&smp);
    dataset_close(ds);
    hid_t f = H5Fopen(tpath("raw64.h5"), H5F_ACC_RDONLY, H5P_DEFAULT);
    int ver = 0;
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    cr_assert_geq(H5Aread(a, H5T_NATIVE_INT, &ver), 0);
    H5Aclose(a);
    H5Fclose(f);
    cr_assert_eq(ver, 2, "resized images make a version 2 file");

    batches want = load(tpath("c8.h5"), 64), got = load(tpath("raw64.h5"), 64);
    cr_assert_eq(got.n, want.n);
    cr_assert_eq(memcmp(got.img, want.img, want.n), 0, "raw at imgsz: byte-identical batches");
    cr_assert_eq(got.nlab, want.nlab);
    cr_assert_eq(memcmp(got.lab, want.lab, sizeof(float) * 6 * want.nlab), 0);
    cr_assert_eq(memcmp(got.info, want.info, sizeof want.info), 0, "val maps to the originals");
    free(want.img), free(want.lab), free(got.img), free(got.lab);

    /* a smaller size from it is fine; a larger one would upscale */
    pack_store smaller = {.imgsz = 32, .as = IMG_PNG, .quality = 95};
    cr_assert_eq(pack_resized(tpath("raw64.h5"), tpath("png32.h5"), &smaller, &st, err, sizeof err),
                 0, "%s", err);
    pack_store larger = {.imgsz = 128, .as = IMG_RAW_RGB, .quality = 95};
    cr_assert_eq(pack_resized(tpath("raw64.h5"), tpath("x.h5"), &larger, &st, err, sizeof err), -1);
    cr_assert(strstr(err, "upscale"), "%s", err);
    cr_assert_neq(access(tpath("x.h5"), F_OK), 0, "nothing written");
    loader_config c = loader_config_defaults();
    c.imgsz = 128;
    cr_assert_null(loader_create(tpath("raw64.h5"), SPLIT_TRAIN, &c, err, sizeof err));
    cr_assert(strstr(err, "stored at 64 px") && strstr(err, "imgsz=128"), "%s", err);
}

Test(packsize, jpeg_storage_is_close_and_verifies) {
    char err[512], cmd[700];
    pack_stats st;
    pack_store jpg = {.imgsz = 64, .as = IMG_JPEG, .quality = 95};
    cr_assert_eq(pack_resized(tpath("c8.h5"), tpath("jpg64.h5"), &jpg, &st, err, sizeof err), 0,
                 "%s", err);
    batches want = load(tpath("c8.h5"), 64), got = load(tpath("jpg64.h5"), 64);
    cr_assert_eq(got.nlab, want.nlab, "labels do not depend on the pixels");
    cr_assert_eq(memcmp(got.lab, want.lab, sizeof(float) * 6 * want.nlab), 0);
    free(want.img), free(want.lab), free(got.img), free(got.lab);
    /* the stored pixels: JPEG q95 of the images the raw storage keeps exactly */
    pack_store raw = {.imgsz = 64, .as = IMG_RAW_RGB, .quality = 95};
    cr_assert_eq(pack_resized(tpath("c8.h5"), tpath("raw64.h5"), &raw, &st, err, sizeof err), 0,
                 "%s", err);
    dataset *dj = dataset_open(tpath("jpg64.h5"), err, sizeof err);
    dataset *dr = dataset_open(tpath("raw64.h5"), err, sizeof err);
    cr_assert(dj && dr, "%s", err);
    double sad = 0;
    size_t npx = 0;
    for (int i = 0; i < 4; i++) {
        dataset_sample a, b;
        cr_assert_eq(dataset_read(dj, SPLIT_TRAIN, i, &a, err, sizeof err), 0, "%s", err);
        cr_assert_eq(dataset_read(dr, SPLIT_TRAIN, i, &b, err, sizeof err), 0, "%s", err);
        cr_assert_eq(a.encoding, IMG_JPEG);
        uint8_t *rgb;
        int h = 0, w = 0;
        cr_assert_eq(
            image_decode(a.bytes, a.nbytes, a.encoding, 0, 0, &rgb, &h, &w, err, sizeof err), 0,
            "%s", err);
        cr_assert(h == b.stored_h && w == b.stored_w && b.nbytes == (size_t)h * w * 3);
        for (size_t k = 0; k < b.nbytes; k++) sad += abs((int)rgb[k] - (int)b.bytes[k]);
        npx += b.nbytes;
        free(rgb);
        dataset_sample_free(&a), dataset_sample_free(&b);
    }
    dataset_close(dj), dataset_close(dr);
    cr_log_info("JPEG q95 at 64 px: mean |diff| %.2f levels", sad / (double)npx);
    /* 4:4:4 q95 at 64 px: about 2.7 levels (4:2:0 would be 4.6) */
    cr_assert_lt(sad / (double)npx, 3.5, "JPEG q95 stays close: mean |diff| %.2f",
                 sad / (double)npx);
    cr_assert_gt(sad, 0.0, "and is not the raw pixels");
    const char *coord = bin_path("coordinator");
    snprintf(cmd, sizeof cmd, "'%s' data verify %s >/dev/null 2>&1", coord, tpath("jpg64.h5"));
    cr_assert_eq(system(cmd), 0, "data verify accepts a resized file");
    snprintf(cmd, sizeof cmd,
             "'%s' data pack data=%s out=%s imgsz=64 store=raw >/dev/null 2>&1 && "
             "'%s' data info %s | grep -q 'stored at 64 px'",
             coord, tpath("c8.h5"), tpath("cli.h5"), coord, tpath("cli.h5"));
    cr_assert_eq(system(cmd), 0, "the CLI packs a dataset file at a size and info says so");
    snprintf(cmd, sizeof cmd,
             "'%s' data pack data=%s out=%s store=raw >/dev/null 2>&1; test $? -eq 2", coord,
             tpath("c8.h5"), tpath("bad.h5"));
    cr_assert_eq(system(cmd), 0, "store= without imgsz= is a usage error");
}
