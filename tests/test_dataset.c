/* Dataset file: writer/reader round trip, packers (Ultralytics yaml, COCO json, synthetic),
 * decode, the coordinator's data commands, and bad input. HDF5's own tools (h5ls, h5dump) read
 * what we write, as an outside client. */
#include "common/sha256.h"
#include "dataio/dataset.h"
#include "dataio/dataset_write.h"
#include "dataio/decode.h"
#include "dataio/pack.h"
#include "dataio/synth.h"
#include "tests/oracle.h"
#include "tests/testenv.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <hdf5.h>
#include <spng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* the built coordinator, through the environment of the commands run_cmd starts */
#define COORD "\"$COORD\""

static char tmpdir[256];

static void make_tmpdir(void) {
    test_temp_dir(tmpdir, sizeof tmpdir, "dataset");
    setenv("COORD", bin_path("coordinator"), 1);
}

static void remove_tmpdir(void) {
    test_remove_dir(tmpdir);
}

static char *tpath(const char *rel) {
    static char buf[8][512];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 512, "%s/%s", tmpdir, rel);
    return b;
}

static bool exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

static void mkdirs(const char *rel) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", tpath(rel));
    cr_assert_eq(system(cmd), 0);
}

static void write_png(const char *path, const uint8_t *rgb, int h, int w) {
    spng_ctx *c = spng_ctx_new(SPNG_CTX_ENCODER);
    FILE *f = fopen(path, "wb");
    cr_assert(c && f);
    spng_set_png_file(c, f);
    struct spng_ihdr ih = {0};
    ih.width = (uint32_t)w, ih.height = (uint32_t)h, ih.bit_depth = 8;
    ih.color_type = SPNG_COLOR_TYPE_TRUECOLOR;
    spng_set_ihdr(c, &ih);
    cr_assert_eq(spng_encode_image(c, rgb, (size_t)h * w * 3, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE),
                 0);
    spng_ctx_free(c);
    cr_assert_eq(fclose(f), 0);
}

/* A synthetic PNG (content varies with idx) at tmpdir/rel. */
static void write_test_png(const char *rel, int idx) {
    uint8_t rgb[48 * 40 * 3];
    for (int i = 0; i < 48 * 40 * 3; i++) rgb[i] = (uint8_t)(i * 7 + idx * 31);
    write_png(tpath(rel), rgb, 40, 48);
}

/* Runs a shell command in tmpdir (relative outputs land there), capturing stdout+stderr; returns
 * the exit code. */
static int run_cmd(const char *cmd, char *out, size_t outlen) {
    char full[2600];
    snprintf(full, sizeof full, "cd '%s' && %s", tmpdir, cmd);
    return test_run(full, out, outlen);
}

/* Leaves nothing under the final name and no temporary beside it. */
static void assert_no_output(const char *dir, const char *final) {
    cr_assert(!exists(final), "%s exists after a failed pack", final);
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        cr_assert(!strstr(e->d_name, ".tmp."), "temporary %s left behind", e->d_name);
    closedir(d);
}

/* A small Ultralytics dataset in tmpdir/ds: 2 train + 1 val PNG, names a, b, c. */
static void make_small_yolo(void) {
    mkdirs("ds/images/train"), mkdirs("ds/images/val"), mkdirs("ds/labels/train"),
        mkdirs("ds/labels/val");
    write_test_png("ds/images/train/a.png", 1);
    write_test_png("ds/images/train/b.png", 2);
    write_test_png("ds/images/val/c.png", 3);
    write_text(tpath("ds/labels/train/a.txt"), "0 0.5 0.5 0.2 0.2\n");
    write_text(tpath("ds/labels/train/b.txt"), "1 0.25 0.25 0.1 0.1\n2 0.75 0.5 0.3 0.4\n");
    write_text(tpath("ds/labels/val/c.txt"), "2 0.5 0.5 0.5 0.5\n");
    write_text(tpath("ds/data.yaml"), "train: images/train\nval: images/val\nnames: [a, b, c]\n");
}

TestSuite(dataset, .init = make_tmpdir, .fini = remove_tmpdir);

Test(dataset, synth_roundtrip_is_deterministic_and_exact) {
    int count[SPLIT_COUNT] = {6, 3, 0};
    pack_stats st, st2, st3;
    char err[512];
    cr_assert_eq(pack_synth(tpath("a.h5"), count, 64, 3, 7, &st, err, sizeof err), 0, "%s", err);
    cr_assert_eq(pack_synth(tpath("b.h5"), count, 64, 3, 7, &st2, err, sizeof err), 0);
    cr_assert_eq(pack_synth(tpath("c.h5"), count, 64, 3, 8, &st3, err, sizeof err), 0);
    cr_assert_str_eq(st.hash, st2.hash, "same seed, same content hash");
    cr_assert_str_neq(st.hash, st3.hash, "another seed, another hash");
    dataset *ds = dataset_open(tpath("a.h5"), err, sizeof err);
    cr_assert_not_null(ds, "%s", err);
    cr_assert_eq(dataset_num_classes(ds), 3);
    cr_assert_str_eq(dataset_class_name(ds, 2), "triangle");
    cr_assert_str_eq(dataset_hash(ds), st.hash);
    cr_assert_eq(dataset_split_size(ds, SPLIT_TRAIN), 6);
    cr_assert_eq(dataset_split_size(ds, SPLIT_VAL), 3);
    cr_assert_eq(dataset_split_size(ds, SPLIT_TEST), 0);
    uint8_t rgb[64 * 64 * 3];
    float lab[SYNTH_MAX_OBJECTS * 5];
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < count[s]; i++) {
            dataset_sample smp;
            cr_assert_eq(dataset_read(ds, (split_id)s, i, &smp, err, sizeof err), 0, "%s", err);
            int nb = synth_image(7, (split_id)s, i, 64, 3, rgb, lab);
            cr_assert(nb >= 1 && nb <= SYNTH_MAX_OBJECTS);
            cr_assert_eq(smp.encoding, IMG_RAW_RGB);
            cr_assert_eq(smp.height, 64);
            cr_assert_eq(smp.nbytes, sizeof rgb);
            cr_assert_eq(memcmp(smp.bytes, rgb, sizeof rgb), 0, "stored bytes = regenerated");
            cr_assert_eq(smp.nboxes, nb);
            cr_assert_eq(memcmp(smp.labels, lab, (size_t)nb * 5 * sizeof(float)), 0);
            for (int b = 0; b < nb; b++) {
                const float *l = lab + b * 5;
                cr_assert(l[3] >= 0.04f && l[3] <= 0.41f && l[4] >= 0.04f && l[4] <= 0.41f,
                          "shape size %g x %g", l[3], l[4]);
            }
            const float *l2;
            int n2;
            cr_assert_eq(dataset_labels(ds, (split_id)s, i, &l2, &n2), 0);
            cr_assert_eq(n2, nb);
            dataset_sample_free(&smp);
        }
    char name[64];
    cr_assert_eq(dataset_filename(ds, SPLIT_VAL, 2, name, sizeof name), 0);
    cr_assert_str_eq(name, "synth/val/000002");
    dataset_sample smp;
    cr_assert_eq(dataset_read(ds, SPLIT_VAL, 3, &smp, err, sizeof err), -1, "out of range");
    dataset_close(ds);
}

Test(dataset, synth_shapes_stand_out_from_background) {
    /* Every shape pixel differs from the background colour: compare the mean inside each
     * rectangle box with the image border mean (objects never touch all four borders). */
    uint8_t rgb[96 * 96 * 3];
    float lab[SYNTH_MAX_OBJECTS * 5];
    int rects = 0;
    for (int i = 0; i < 40; i++) {
        int nb = synth_image(1, SPLIT_TRAIN, i, 96, 3, rgb, lab);
        /* pixel (0,0) as the background colour (noise +-24: compare with a margin), unless a
         * shape covers it */
        double bg[3] = {0};
        for (int c = 0; c < 3; c++) bg[c] = rgb[c];
        bool covered = false;
        for (int b = 0; b < nb; b++)
            covered |= lab[b * 5 + 1] - lab[b * 5 + 3] / 2 < 0.02f &&
                       lab[b * 5 + 2] - lab[b * 5 + 4] / 2 < 0.02f;
        if (covered) continue;
        for (int b = 0; b < nb; b++) {
            const float *l = lab + b * 5;
            if (l[0] != 1) continue;
            int x0 = (int)((l[1] - l[3] / 2) * 96 + 0.5f),
                y0 = (int)((l[2] - l[4] / 2) * 96 + 0.5f);
            int x1 = (int)((l[1] + l[3] / 2) * 96 + 0.5f),
                y1 = (int)((l[2] + l[4] / 2) * 96 + 0.5f);
            double m[3] = {0};
            for (int y = y0; y < y1; y++)
                for (int x = x0; x < x1; x++)
                    for (int c = 0; c < 3; c++) m[c] += rgb[(y * 96 + x) * 3 + c];
            double d = 0, npx = (double)(x1 - x0) * (y1 - y0);
            for (int c = 0; c < 3; c++) d += fabs(m[c] / npx - bg[c]);
            cr_assert_gt(d, 200 - 3 * 24 - 30, "image %d: rect contrast %g", i, d);
            rects++;
        }
    }
    cr_assert_gt(rects, 5);
}

Test(dataset, h5ls_and_h5dump_read_the_file) {
    char cmd[1024], out[16384];
    snprintf(cmd, sizeof cmd, COORD " data synth out=%s train=5 val=2 imgsz=48 classes=2 seed=3",
             tpath("s.h5"));
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    snprintf(cmd, sizeof cmd, "h5ls -r %s", tpath("s.h5"));
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    const char *expect[] = {"/class_names",         "/train/images", "/train/labels",
                            "/train/label_offsets", "/train/height", "/train/filenames",
                            "/val/encoding",        "/val/width"};
    for (size_t i = 0; i < sizeof expect / sizeof *expect; i++)
        cr_assert(strstr(out, expect[i]), "h5ls lacks %s:\n%s", expect[i], out);
    cr_assert(strstr(out, "Dataset {6}"), "label_offsets is N+1 = 6:\n%s", out);
    snprintf(cmd, sizeof cmd, "h5dump -d /class_names %s", tpath("s.h5"));
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "\"circle\", \"rectangle\""), "%s", out);
    snprintf(cmd, sizeof cmd, "h5dump -A %s", tpath("s.h5"));
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "ATTRIBUTE \"format_version\""), "%s", out);
    cr_assert(strstr(out, "ATTRIBUTE \"sha256\""), "%s", out);
    cr_assert(strstr(out, "synth seed=3 imgsz=48 classes=2"), "%s", out);
    snprintf(cmd, sizeof cmd, "h5dump -d /val/labels %s", tpath("s.h5"));
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "H5T_IEEE_F32LE"), "%s", out);
    snprintf(cmd, sizeof cmd, COORD " data info %s", tpath("s.h5"));
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "train: 5 images") && strstr(out, "val: 2 images"), "%s", out);
    cr_assert(strstr(out, "height 48..48"), "%s", out);
    snprintf(cmd, sizeof cmd, COORD " data verify %s", tpath("s.h5"));
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "OK, 7 images decode"), "%s", out);
}

/* Parses one Ultralytics label file: 5 numbers a line. */
static int read_label_file(const char *path, float *out, int max) {
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    int n = 0;
    float v[5];
    while (fscanf(f, "%f %f %f %f %f", &v[0], &v[1], &v[2], &v[3], &v[4]) == 5 && n < max)
        memcpy(out + 5 * n++, v, sizeof v);
    fclose(f);
    return n;
}

Test(dataset, coco8_packs_with_exactly_its_label_files) {
    const char *yaml = shared_path("data/coco8/coco8.yaml");
    cr_assert_not_null(yaml, "coco8 is part of the shared data");
    pack_stats st;
    char err[512];
    cr_assert_eq(pack_ultralytics(yaml, tpath("c8.h5"), false, &st, err, sizeof err), 0, "%s", err);
    cr_assert_eq(st.images[SPLIT_TRAIN], 4);
    cr_assert_eq(st.images[SPLIT_VAL], 4);
    cr_assert_eq(st.clipped + st.background + st.duplicates + st.skipped, 0);
    dataset *ds = dataset_open(tpath("c8.h5"), err, sizeof err);
    cr_assert_not_null(ds, "%s", err);
    cr_assert_eq(dataset_num_classes(ds), 80);
    cr_assert_str_eq(dataset_class_name(ds, 0), "person");
    cr_assert_str_eq(dataset_class_name(ds, 79), "toothbrush");
    char root[512];
    snprintf(root, sizeof root, "%s", yaml);
    *strrchr(root, '/') = 0;
    int total = 0;
    for (int s = 0; s < 2; s++) {
        cr_assert_eq(dataset_split_size(ds, (split_id)s), 4);
        for (int i = 0; i < 4; i++) {
            char name[256], lp[1024];
            cr_assert_eq(dataset_filename(ds, (split_id)s, i, name, sizeof name), 0);
            cr_assert(!strncmp(name, "images/", 7), "%s", name);
            snprintf(lp, sizeof lp, "%s/labels/%s", root, name + 7);
            strcpy(strrchr(lp, '.'), ".txt");
            float want[64 * 5];
            int nw = read_label_file(lp, want, 64);
            dataset_sample smp;
            cr_assert_eq(dataset_read(ds, (split_id)s, i, &smp, err, sizeof err), 0, "%s", err);
            cr_assert_eq(smp.nboxes, nw, "%s", name);
            cr_assert_eq(memcmp(smp.labels, want, (size_t)nw * 5 * sizeof(float)), 0, "%s", name);
            cr_assert_eq(smp.encoding, IMG_JPEG);
            uint8_t *rgb;
            int h, w;
            cr_assert_eq(image_decode(smp.bytes, smp.nbytes, smp.encoding, 0, 0, &rgb, &h, &w, err,
                                      sizeof err),
                         0, "%s", err);
            cr_assert_eq(h, smp.height);
            cr_assert_eq(w, smp.width);
            free(rgb);
            total += nw;
            dataset_sample_free(&smp);
        }
    }
    cr_assert_eq(total, 30, "coco8 has 30 boxes");
    dataset_close(ds);
}

Test(dataset, decode_scales_jpeg_and_reads_png_exactly) {
    const char *jp = shared_path("data/coco8/images/train/000000000009.jpg");
    cr_assert_not_null(jp);
    uint8_t *b;
    size_t n;
    char err[256];
    cr_assert_eq(pack_read_file(jp, &b, &n, err, sizeof err), 0);
    cr_assert_eq(image_sniff_encoding(b, n), IMG_JPEG);
    int fh, fw, h, w;
    cr_assert_eq(image_decode_size(b, n, IMG_JPEG, &fh, &fw, err, sizeof err), 0);
    uint8_t *full, *half, *tiny;
    cr_assert_eq(image_decode(b, n, IMG_JPEG, 0, 0, &full, &h, &w, err, sizeof err), 0);
    cr_assert(h == fh && w == fw);
    cr_assert_eq(
        image_decode(b, n, IMG_JPEG, fh / 2 - 10, fw / 2 - 10, &half, &h, &w, err, sizeof err), 0);
    cr_assert(h >= fh / 2 - 10 && w >= fw / 2 - 10 && h < fh && w < fw, "%dx%d", w, h);
    cr_assert_eq(h, (fh + 1) / 2, "the 1/2 DCT scale is the smallest that fits");
    cr_assert_eq(image_decode(b, n, IMG_JPEG, 1, 1, &tiny, &h, &w, err, sizeof err), 0);
    cr_assert_eq(w, (fw + 7) / 8, "1/8 is the smallest scale");
    free(full), free(half), free(tiny);
    /* corrupt JPEG: a clear error, no crash */
    b[200] ^= 0xFF, b[201] = 0xD9;
    uint8_t *junk = NULL;
    int r = image_decode(b, 300, IMG_JPEG, 0, 0, &junk, &h, &w, err, sizeof err);
    if (r == 0) free(junk);
    uint8_t garbage[64] = {0xFF, 0xD8, 0xFF, 1, 2, 3};
    cr_assert_eq(
        image_decode(garbage, sizeof garbage, IMG_JPEG, 0, 0, &junk, &h, &w, err, sizeof err), -1);
    cr_assert(strstr(err, "jpeg"), "%s", err);
    free(b);
    /* PNG round trip is lossless */
    uint8_t rgb[48 * 40 * 3];
    for (int i = 0; i < 48 * 40 * 3; i++) rgb[i] = (uint8_t)(i * 7 + 31);
    write_png(tpath("p.png"), rgb, 40, 48);
    cr_assert_eq(pack_read_file(tpath("p.png"), &b, &n, err, sizeof err), 0);
    cr_assert_eq(image_sniff_encoding(b, n), IMG_PNG);
    uint8_t *dec;
    cr_assert_eq(image_decode(b, n, IMG_PNG, 10, 10, &dec, &h, &w, err, sizeof err), 0, "%s", err);
    cr_assert(h == 40 && w == 48);
    cr_assert_eq(memcmp(dec, rgb, sizeof rgb), 0);
    free(dec);
    cr_assert_eq(image_decode(b, n / 2, IMG_PNG, 0, 0, &dec, &h, &w, err, sizeof err), -1,
                 "truncated PNG fails");
    free(b);
    /* raw RGB needs its size from the caller */
    h = 40, w = 48;
    cr_assert_eq(image_decode(rgb, sizeof rgb, IMG_RAW_RGB, 0, 0, &dec, &h, &w, err, sizeof err),
                 0);
    free(dec);
    h = 41;
    cr_assert_eq(image_decode(rgb, sizeof rgb, IMG_RAW_RGB, 0, 0, &dec, &h, &w, err, sizeof err),
                 -1);
}

Test(dataset, coco_json_import) {
    const char *dir = shared_path("data/coco8/images/train");
    cr_assert_not_null(dir);
    /* 000000000009.jpg is 640x480, 000000000025.jpg 640x426; category ids with gaps */
    char json[4096];
    snprintf(json, sizeof json,
             "{\"images\": [{\"id\": 9, \"file_name\": \"000000000009.jpg\", \"width\": 640, "
             "\"height\": 480}, {\"id\": 25, \"file_name\": \"000000000025.jpg\", \"width\": 640, "
             "\"height\": 426}],"
             " \"annotations\": ["
             "{\"id\": 1, \"image_id\": 9, \"category_id\": 90, \"bbox\": [64, 48, 128, 96], "
             "\"iscrowd\": 0},"
             "{\"id\": 2, \"image_id\": 9, \"category_id\": 5, \"bbox\": [0, 0, 320, 240]},"
             "{\"id\": 3, \"image_id\": 9, \"category_id\": 5, \"bbox\": [10, 10, 50, 50], "
             "\"iscrowd\": 1},"
             "{\"id\": 4, \"image_id\": 9, \"category_id\": 1, \"bbox\": [600, 400, 80, 100]}],"
             " \"categories\": [{\"id\": 90, \"name\": \"toothbrush\"}, {\"id\": 1, \"name\": "
             "\"person\"}, {\"id\": 5, \"name\": \"airplane\"}]}");
    write_text(tpath("inst.json"), json);
    const char *js[SPLIT_COUNT] = {tpath("inst.json"), tpath("inst.json"), NULL};
    const char *im[SPLIT_COUNT] = {dir, dir, NULL};
    pack_stats st;
    char err[512];
    cr_assert_eq(pack_coco(js, im, tpath("coco.h5"), false, &st, err, sizeof err), 0, "%s", err);
    cr_assert_eq(st.crowd, 2, "one crowd box per split");
    cr_assert_eq(st.background, 2, "image 25 has no annotations, in both splits");
    cr_assert_eq(st.clipped, 2, "the last box extends past the image");
    cr_assert_eq(st.duplicates, 2, "val repeats train's images");
    dataset *ds = dataset_open(tpath("coco.h5"), err, sizeof err);
    cr_assert_not_null(ds, "%s", err);
    cr_assert_eq(dataset_num_classes(ds), 3);
    cr_assert_str_eq(dataset_class_name(ds, 0), "person");
    cr_assert_str_eq(dataset_class_name(ds, 1), "airplane");
    cr_assert_str_eq(dataset_class_name(ds, 2), "toothbrush");
    const float *l;
    int nb;
    cr_assert_eq(dataset_labels(ds, SPLIT_TRAIN, 0, &l, &nb), 0);
    cr_assert_eq(nb, 3);
    const float want0[5] = {2, 128.f / 640, 96.f / 480, 128.f / 640, 96.f / 480};
    const float want1[5] = {1, 0.25f, 0.25f, 0.5f, 0.5f};
    for (int k = 0; k < 5; k++) {
        cr_assert_float_eq(l[k], want0[k], 1e-6, "box 0 field %d: %g", k, l[k]);
        cr_assert_float_eq(l[5 + k], want1[k], 1e-6, "box 1 field %d: %g", k, l[5 + k]);
    }
    /* clipped: x 600..640, y 400..480 */
    cr_assert_float_eq(l[10], 0, 1e-6);
    cr_assert_float_eq(l[11], 620.f / 640, 1e-6);
    cr_assert_float_eq(l[13], 40.f / 640, 1e-6);
    cr_assert_float_eq(l[14], 80.f / 480, 1e-6);
    cr_assert_eq(dataset_labels(ds, SPLIT_TRAIN, 1, &l, &nb), 0);
    cr_assert_eq(nb, 0);
    int h, w;
    cr_assert_eq(dataset_image_size(ds, SPLIT_TRAIN, 1, &h, &w), 0);
    cr_assert(h == 426 && w == 640);
    dataset_close(ds);
    /* wrong image size in the json: an error naming the image, and no output */
    char *p = strstr(json, "\"height\": 426");
    memcpy(p, "\"height\": 427", 13);
    write_text(tpath("bad.json"), json);
    js[0] = tpath("bad.json"), js[1] = NULL;
    cr_assert_eq(pack_coco(js, im, tpath("bad.h5"), false, &st, err, sizeof err), -1);
    cr_assert(strstr(err, "000000000025.jpg") && strstr(err, "427"), "%s", err);
    assert_no_output(tmpdir, tpath("bad.h5"));
}

Test(dataset, label_with_wrong_field_count_names_file_and_line) {
    make_small_yolo();
    write_text(tpath("ds/labels/train/b.txt"), "1 0.25 0.25 0.1 0.1\n\n2 0.75 0.5 0.3\n");
    pack_stats st;
    char err[512];
    cr_assert_eq(
        pack_ultralytics(tpath("ds/data.yaml"), tpath("o.h5"), false, &st, err, sizeof err), -1);
    cr_assert(strstr(err, "labels/train/b.txt:3:") && strstr(err, "got 4"), "%s", err);
    assert_no_output(tmpdir, tpath("o.h5"));
}

Test(dataset, label_with_non_number_names_file_and_line) {
    make_small_yolo();
    write_text(tpath("ds/labels/train/a.txt"), "0 0.5 0.5x 0.2 0.2\n");
    pack_stats st;
    char err[512];
    cr_assert_eq(
        pack_ultralytics(tpath("ds/data.yaml"), tpath("o.h5"), false, &st, err, sizeof err), -1);
    cr_assert(strstr(err, "labels/train/a.txt:1:") && strstr(err, "0.5x"), "%s", err);
    assert_no_output(tmpdir, tpath("o.h5"));
}

Test(dataset, class_id_beyond_nc_names_file_line_and_nc) {
    make_small_yolo();
    write_text(tpath("ds/labels/val/c.txt"), "0 0.5 0.5 0.1 0.1\n3 0.5 0.5 0.5 0.5\n");
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd, COORD " data pack data=%s out=%s", tpath("ds/data.yaml"),
             tpath("o.h5"));
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 2, "bad input: %s", out);
    cr_assert(strstr(out, "labels/val/c.txt:2:") && strstr(out, "nc=3"), "%s", out);
    cr_assert(!strchr(strchr(out, '\n') + 1, '\n'), "one line: %s", out);
    assert_no_output(tmpdir, tpath("o.h5"));
}

Test(dataset, clipped_boxes_and_background_images_are_counted) {
    make_small_yolo();
    write_text(tpath("ds/labels/train/b.txt"),
               "1 0.95 0.5 0.2 0.2\n2 0.5 0.02 0.1 0.1\n0 0.5 0.5 0.1 0.1\n");
    cr_assert_eq(unlink(tpath("ds/labels/train/a.txt")), 0);
    pack_stats st;
    char err[512];
    cr_assert_eq(
        pack_ultralytics(tpath("ds/data.yaml"), tpath("o.h5"), false, &st, err, sizeof err), 0,
        "%s", err);
    cr_assert_eq(st.clipped, 2);
    cr_assert_eq(st.background, 1);
    cr_assert_eq(st.boxes[SPLIT_TRAIN], 3);
    dataset *ds = dataset_open(tpath("o.h5"), err, sizeof err);
    cr_assert_not_null(ds, "%s", err);
    const float *l;
    int nb;
    cr_assert_eq(dataset_labels(ds, SPLIT_TRAIN, 0, &l, &nb), 0);
    cr_assert_eq(nb, 0, "a.png has no label file: background");
    cr_assert_eq(dataset_labels(ds, SPLIT_TRAIN, 1, &l, &nb), 0);
    cr_assert_eq(nb, 3);
    cr_assert_float_eq(l[1], 0.925f, 1e-6, "x 0.85..1.0");
    cr_assert_float_eq(l[3], 0.15f, 1e-6);
    cr_assert_float_eq(l[7], 0.035f, 1e-6, "y 0..0.07");
    cr_assert_float_eq(l[9], 0.07f, 1e-6);
    cr_assert_float_eq(l[11], 0.5f, 0, "in-range boxes are untouched");
    dataset_close(ds);
}

Test(dataset, undecodable_image_is_an_error_or_skipped) {
    make_small_yolo();
    write_text(tpath("ds/images/train/broken.jpg"), "this is not a jpeg");
    pack_stats st;
    char err[512];
    cr_assert_eq(
        pack_ultralytics(tpath("ds/data.yaml"), tpath("o.h5"), false, &st, err, sizeof err), -1);
    cr_assert(strstr(err, "broken.jpg"), "%s", err);
    assert_no_output(tmpdir, tpath("o.h5"));
    /* a JPEG header on garbage is caught by the decode, not just the magic bytes */
    write_text(tpath("ds/images/train/broken.jpg"), "\xFF\xD8\xFF\xE0 truncated garbage");
    cr_assert_eq(
        pack_ultralytics(tpath("ds/data.yaml"), tpath("o.h5"), false, &st, err, sizeof err), -1);
    cr_assert(strstr(err, "broken.jpg") && strstr(err, "decode"), "%s", err);
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd, COORD " data pack data=%s out=%s skip_bad=True",
             tpath("ds/data.yaml"), tpath("o.h5"));
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "skipped") && strstr(out, "broken.jpg"), "listed: %s", out);
    cr_assert(strstr(out, "skipped images 1"), "%s", out);
    dataset *ds = dataset_open(tpath("o.h5"), err, sizeof err);
    cr_assert_not_null(ds, "%s", err);
    cr_assert_eq(dataset_split_size(ds, SPLIT_TRAIN), 2);
    dataset_close(ds);
}

Test(dataset, duplicate_images_are_warned_and_counted) {
    make_small_yolo();
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cp %s %s", tpath("ds/images/train/a.png"),
             tpath("ds/images/val/a_copy.png"));
    cr_assert_eq(system(cmd), 0);
    pack_stats st;
    char err[512];
    cr_assert_eq(
        pack_ultralytics(tpath("ds/data.yaml"), tpath("o.h5"), false, &st, err, sizeof err), 0,
        "%s", err);
    cr_assert_eq(st.duplicates, 1);
    cr_assert_eq(st.images[SPLIT_VAL], 2, "duplicates are kept");
    cr_assert_eq(st.background, 1, "a_copy has no labels");
}

Test(dataset, yaml_names_map_list_file_and_bad_yaml) {
    make_small_yolo();
    write_text(tpath("ds/val.txt"), "./images/val/c.png\nimages/train/a.png\n");
    write_text(tpath("ds/data.yaml"), "path: .\ntrain: [images/train]\nval: val.txt\n"
                                      "test: [images/val, images/train]\n"
                                      "names:\n  0: a\n  2: c\n  1: b\n");
    pack_stats st;
    char err[512];
    cr_assert_eq(
        pack_ultralytics(tpath("ds/data.yaml"), tpath("o.h5"), false, &st, err, sizeof err), 0,
        "%s", err);
    cr_assert_eq(st.images[SPLIT_VAL], 2);
    cr_assert_eq(st.images[SPLIT_TEST], 3);
    dataset *ds = dataset_open(tpath("o.h5"), err, sizeof err);
    cr_assert_not_null(ds);
    cr_assert_eq(dataset_split_size(ds, SPLIT_TEST), 3);
    char name[256];
    cr_assert_eq(dataset_filename(ds, SPLIT_TEST, 0, name, sizeof name), 0);
    cr_assert_str_eq(name, "images/train/a.png", "sorted by path, relative to the root");
    cr_assert_str_eq(dataset_class_name(ds, 1), "b");
    cr_assert_str_eq(dataset_class_name(ds, 2), "c");
    dataset_close(ds);
    write_text(tpath("ds/data.yaml"), "train: images/train\nval: [images/val\nnames: [a]\n");
    cr_assert_eq(
        pack_ultralytics(tpath("ds/data.yaml"), tpath("p.h5"), false, &st, err, sizeof err), -1);
    cr_assert(strstr(err, "data.yaml:"), "%s", err);
    write_text(tpath("ds/data.yaml"), "train: images/train\nval: nowhere\nnames: [a, b, c]\n");
    cr_assert_eq(
        pack_ultralytics(tpath("ds/data.yaml"), tpath("p.h5"), false, &st, err, sizeof err), -1);
    cr_assert(strstr(err, "nowhere") && strstr(err, "does not exist"), "%s", err);
    assert_no_output(tmpdir, tpath("p.h5"));
}

Test(dataset, truncated_foreign_and_future_files_give_one_line) {
    int count[SPLIT_COUNT] = {3, 1, 0};
    pack_stats st;
    char err[512];
    cr_assert_eq(pack_synth(tpath("s.h5"), count, 32, 3, 0, &st, err, sizeof err), 0);
    char cmd[1024], out[8192];
    snprintf(cmd, sizeof cmd, "head -c 3000 %s > %s", tpath("s.h5"), tpath("trunc.h5"));
    cr_assert_eq(system(cmd), 0);
    cr_assert_null(dataset_open(tpath("trunc.h5"), err, sizeof err));
    cr_assert(strstr(err, "trunc.h5") && strstr(err, "truncated"), "%s", err);
    write_text(tpath("text.h5"), "hello\n");
    cr_assert_null(dataset_open(tpath("text.h5"), err, sizeof err));
    cr_assert(strstr(err, "not an HDF5 file"), "%s", err);
    cr_assert_null(dataset_open(tpath("missing.h5"), err, sizeof err));
    cr_assert(strstr(err, "missing.h5"), "%s", err);
    /* a foreign HDF5 file, and one from a future format version */
    hid_t f = H5Fcreate(tpath("foreign.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    H5Fclose(f);
    cr_assert_null(dataset_open(tpath("foreign.h5"), err, sizeof err));
    cr_assert(strstr(err, "not a dataset file"), "%s", err);
    snprintf(cmd, sizeof cmd, "cp %s %s", tpath("s.h5"), tpath("future.h5"));
    cr_assert_eq(system(cmd), 0);
    f = H5Fopen(tpath("future.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    int v = DATASET_FORMAT_VERSION + 1;
    cr_assert_geq(H5Awrite(a, H5T_NATIVE_INT, &v), 0);
    H5Aclose(a), H5Fclose(f);
    cr_assert_null(dataset_open(tpath("future.h5"), err, sizeof err));
    char want[64];
    snprintf(want, sizeof want, "version %d is not supported", DATASET_FORMAT_VERSION + 1);
    cr_assert(strstr(err, want), "%s", err);
    /* the command line: one line on stderr, no HDF5 error stack */
    const char *bad[] = {"trunc.h5", "text.h5", "foreign.h5", "future.h5"};
    for (int i = 0; i < 4; i++) {
        snprintf(cmd, sizeof cmd, COORD " data verify %s", tpath(bad[i]));
        cr_assert_eq(run_cmd(cmd, out, sizeof out), 1, "%s", out);
        cr_assert(!strstr(out, "HDF5-DIAG") && !strstr(out, "#000"), "%s", out);
        char *nl = strchr(out, '\n');
        cr_assert(nl && nl[1] == 0, "exactly one line: %s", out);
    }
}

Test(dataset, verify_detects_tampered_labels) {
    int count[SPLIT_COUNT] = {3, 2, 0};
    pack_stats st;
    char err[512], cmd[1024], out[8192];
    cr_assert_eq(pack_synth(tpath("s.h5"), count, 32, 3, 0, &st, err, sizeof err), 0);
    snprintf(cmd, sizeof cmd, COORD " data verify %s", tpath("s.h5"));
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 0, "%s", out);
    hid_t f = H5Fopen(tpath("s.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "/val/labels", H5P_DEFAULT);
    size_t n;
    float *lab = oracle_read_f32(tpath("s.h5"), "/val/labels", &n, NULL, NULL);
    cr_assert_not_null(lab);
    lab[1] += 0.01f;
    cr_assert_geq(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, lab), 0);
    free(lab);
    H5Dclose(d), H5Fclose(f);
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "split val content hash mismatch"), "%s", out);
}

Test(dataset, cli_usage_errors_exit_2) {
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd, COORD " data synth out=%s train=2 val=1 imgsz=32 colour=red",
             tpath("x.h5"));
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "colour"), "%s", out);
    cr_assert_eq(run_cmd(COORD " data synth train=2", out, sizeof out), 2, "%s", out);
    cr_assert_eq(run_cmd(COORD " data pack out=x.h5", out, sizeof out), 2, "%s", out);
    snprintf(cmd, sizeof cmd, COORD " data pack data=a.yaml coco=b.json out=%s", tpath("x.h5"));
    cr_assert_eq(run_cmd(cmd, out, sizeof out), 2, "%s", out);
    cr_assert_eq(run_cmd(COORD " data synth out=x.h5 classes=4", out, sizeof out), 2, "%s", out);
    cr_assert_eq(run_cmd(COORD " data frobnicate", out, sizeof out), 2, "%s", out);
    cr_assert(!exists(tpath("x.h5")));
}

Test(dataset, writer_abort_and_failed_finish_leave_no_file) {
    const char *names[] = {"a"};
    char err[512];
    dataset_writer *w = dataset_writer_create(tpath("w.h5"), 1, names, "test", err, sizeof err);
    cr_assert_not_null(w, "%s", err);
    cr_assert_eq(dataset_writer_begin_split(w, SPLIT_TRAIN, err, sizeof err), 0);
    uint8_t px[12] = {0};
    float bad[5] = {1, 0.5f, 0.5f, 0.1f, 0.1f};
    cr_assert_eq(dataset_writer_add(w, px, 12, IMG_RAW_RGB, 2, 2, bad, 1, "x", err, sizeof err), -1,
                 "class 1 with one class");
    cr_assert(strstr(err, "class 1"), "%s", err);
    bad[0] = 0;
    cr_assert_eq(dataset_writer_add(w, px, 12, IMG_RAW_RGB, 2, 2, bad, 1, "x", err, sizeof err), 0);
    dataset_writer_abort(w);
    assert_no_output(tmpdir, tpath("w.h5"));
    /* the final name appears only at finish */
    w = dataset_writer_create(tpath("w.h5"), 1, names, "test", err, sizeof err);
    cr_assert_eq(dataset_writer_begin_split(w, SPLIT_TRAIN, err, sizeof err), 0);
    cr_assert_eq(dataset_writer_add(w, px, 12, IMG_RAW_RGB, 2, 2, bad, 1, "x", err, sizeof err), 0);
    cr_assert(!exists(tpath("w.h5")));
    char hex[65];
    cr_assert_eq(dataset_writer_finish(w, hex, err, sizeof err), 0, "%s", err);
    cr_assert(exists(tpath("w.h5")));
    dataset *ds = dataset_open(tpath("w.h5"), err, sizeof err);
    cr_assert_not_null(ds, "%s", err);
    cr_assert_str_eq(dataset_hash(ds), hex);
    cr_assert(!dataset_has_split(ds, SPLIT_VAL));
    dataset_close(ds);
}

/* Encodes a w x h PNG of the given colour type / bit depth from raw samples, then decodes it. */
static void png_case(uint8_t color_type, uint8_t depth, const void *px, size_t n, int h, int w,
                     uint8_t **rgb) {
    spng_ctx *c = spng_ctx_new(SPNG_CTX_ENCODER);
    cr_assert_not_null(c);
    spng_set_option(c, SPNG_ENCODE_TO_BUFFER, 1);
    struct spng_ihdr ih = {0};
    ih.width = (uint32_t)w, ih.height = (uint32_t)h, ih.bit_depth = depth;
    ih.color_type = color_type;
    cr_assert_eq(spng_set_ihdr(c, &ih), 0);
    if (color_type == SPNG_COLOR_TYPE_INDEXED) {
        struct spng_plte pl = {0};
        pl.n_entries = 2;
        pl.entries[0] = (struct spng_plte_entry){10, 20, 30, 255};
        pl.entries[1] = (struct spng_plte_entry){200, 100, 50, 255};
        cr_assert_eq(spng_set_plte(c, &pl), 0);
    }
    cr_assert_eq(spng_encode_image(c, px, n, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE), 0);
    size_t len;
    int e;
    uint8_t *png = spng_get_png_buffer(c, &len, &e);
    cr_assert_not_null(png, "spng error %d", e);
    spng_ctx_free(c);
    int dh, dw;
    char err[256];
    cr_assert_eq(image_decode(png, len, IMG_PNG, 0, 0, rgb, &dh, &dw, err, sizeof err), 0, "%s",
                 err);
    cr_assert(dh == h && dw == w);
    free(png);
}

Test(dataset, png_gray_alpha_palette_16bit_become_rgb8) {
    uint8_t gray[6] = {0, 50, 100, 150, 200, 250}, *rgb;
    png_case(SPNG_COLOR_TYPE_GRAYSCALE, 8, gray, 6, 2, 3, &rgb);
    for (int i = 0; i < 6; i++)
        cr_assert(rgb[i * 3] == gray[i] && rgb[i * 3 + 1] == gray[i] && rgb[i * 3 + 2] == gray[i]);
    free(rgb);
    uint8_t rgba[8] = {1, 2, 3, 0, 4, 5, 6, 255};
    png_case(SPNG_COLOR_TYPE_TRUECOLOR_ALPHA, 8, rgba, 8, 1, 2, &rgb);
    cr_assert(rgb[0] == 1 && rgb[2] == 3 && rgb[3] == 4 && rgb[5] == 6, "alpha dropped");
    free(rgb);
    uint8_t idx[4] = {0, 1, 1, 0};
    png_case(SPNG_COLOR_TYPE_INDEXED, 8, idx, 4, 2, 2, &rgb);
    cr_assert(rgb[0] == 10 && rgb[3] == 200 && rgb[4] == 100 && rgb[11] == 30);
    free(rgb);
    uint16_t g16[2] = {0x1234, 0xABCD}; /* SPNG_FMT_PNG takes 16-bit samples host-endian */
    png_case(SPNG_COLOR_TYPE_GRAYSCALE, 16, g16, 4, 1, 2, &rgb);
    cr_assert(rgb[0] == 0x12 && rgb[3] == 0xAB, "16-bit keeps the high byte: %d %d", rgb[0],
              rgb[3]);
    free(rgb);
}

/* The loader's own PNG path (8-bit gray, RGB, RGBA) against the pixels encoded: every filter
 * type, and images large enough for spng to write several IDAT chunks. */
Test(dataset, png_every_filter_and_several_chunks_decode_exactly) {
    const int filters[] = {SPNG_DISABLE_FILTERING,   SPNG_FILTER_CHOICE_SUB,
                           SPNG_FILTER_CHOICE_UP,    SPNG_FILTER_CHOICE_AVG,
                           SPNG_FILTER_CHOICE_PAETH, SPNG_FILTER_CHOICE_ALL};
    const struct {
        uint8_t type;
        int ch;
    } kinds[] = {{SPNG_COLOR_TYPE_TRUECOLOR, 3},
                 {SPNG_COLOR_TYPE_TRUECOLOR_ALPHA, 4},
                 {SPNG_COLOR_TYPE_GRAYSCALE, 1}};
    int h = 61, w = 97;
    uint8_t *px = malloc((size_t)h * w * 4);
    uint32_t x = 12345;
    for (int i = 0; i < h * w * 4; i++) {
        x = x * 1103515245u + 12345u;
        px[i] = (uint8_t)(i % 7 < 3 ? (int)(x >> 24) : (i / 5) % 251); /* noise, gradients */
    }
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++)
        for (size_t f = 0; f < sizeof filters / sizeof *filters; f++) {
            spng_ctx *c = spng_ctx_new(SPNG_CTX_ENCODER);
            spng_set_option(c, SPNG_ENCODE_TO_BUFFER, 1);
            spng_set_option(c, SPNG_FILTER_CHOICE, filters[f]);
            struct spng_ihdr ih = {0};
            ih.width = (uint32_t)w, ih.height = (uint32_t)h, ih.bit_depth = 8;
            ih.color_type = kinds[k].type;
            cr_assert_eq(spng_set_ihdr(c, &ih), 0);
            size_t n = (size_t)h * w * kinds[k].ch;
            cr_assert_eq(spng_encode_image(c, px, n, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE), 0);
            size_t len;
            int e;
            uint8_t *png = spng_get_png_buffer(c, &len, &e), *rgb;
            spng_ctx_free(c);
            int idat = 0;
            for (size_t p = 8; p + 8 <= len;) {
                uint32_t l =
                    (uint32_t)png[p] << 24 | png[p + 1] << 16 | png[p + 2] << 8 | png[p + 3];
                idat += !memcmp(png + p + 4, "IDAT", 4);
                p += 12 + (size_t)l;
            }
            if (k == 0 && f == 0) cr_assert_gt(idat, 1, "several IDAT chunks");
            int dh, dw;
            char err[256];
            cr_assert_eq(image_decode(png, len, IMG_PNG, 0, 0, &rgb, &dh, &dw, err, sizeof err), 0,
                         "%s", err);
            for (int i = 0; i < h * w; i++)
                for (int ch = 0; ch < 3; ch++) {
                    int want = px[(size_t)i * kinds[k].ch + (kinds[k].ch == 1 ? 0 : ch)];
                    cr_assert_eq(rgb[3 * i + ch], want, "kind %zu filter %zu pixel %d channel %d",
                                 k, f, i, ch);
                }
            free(rgb);
            free(png);
        }
    free(px);
}
