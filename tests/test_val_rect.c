/* Rectangular validation batches (suite `valrect`): the batch plan as Ultralytics'
 * set_rectangle makes it (coordinator/val_plan.h) and the loader's letterbox into a batch's
 * canvas (dataio/loader.h loader_submit_shape). */
#include "coordinator/val_plan.h"
#include "dataio/augment.h"
#include "dataio/loader.h"
#include "tests/mem_source.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 640-class sizes at imgsz 640, batch 2. Ratios h/w: three 480x640 (.75), a square, two 640x480
 * (1.33). Sorted: .75 .75 | .75 1 | 1.33 1.33:
 *   [.75, .75]: all < 1 -> shape [.75, 1] -> ceil(.75 * 640 / 32 + .5) * 32 = 512 by
 *               ceil(20 + .5) * 32 = 672
 *   [.75, 1]  : mixed -> [1, 1] -> 672 x 672 (pad .5 adds a stride even to a square batch)
 *   [1.33, 1.33]: all > 1 -> [1, 1 / 1.33] -> 672 x 512 */
Test(valrect, plan_shapes_by_hand) {
    int h[6] = {640, 480, 640, 480, 640, 480}, w[6] = {480, 640, 640, 640, 480, 640};
    val_plan p;
    cr_assert_eq(val_plan_make(&p, 6, h, w, 640, 32, 2, 0.5, NULL), 0);
    cr_assert_eq(p.nbatches, 3);
    int32_t want_order[6] = {1, 3, 5, 2, 0, 4}; /* equal ratios keep dataset order */
    for (int i = 0; i < 6; i++) cr_assert_eq(p.order[i], want_order[i], "order[%d]", i);
    val_batch want[3] = {{0, 2, 512, 672}, {2, 2, 672, 672}, {4, 2, 672, 512}};
    for (int b = 0; b < 3; b++) {
        cr_assert_eq(p.batches[b].start, want[b].start);
        cr_assert_eq(p.batches[b].count, want[b].count);
        cr_assert_eq(p.batches[b].h, want[b].h, "batch %d h %d", b, p.batches[b].h);
        cr_assert_eq(p.batches[b].w, want[b].w, "batch %d w %d", b, p.batches[b].w);
    }
    val_plan_free(&p);
    /* a last, short batch; and the rounding of a wide panorama (ratio .3) at imgsz 320:
     * ceil(.3 * 320 / 32 + .5) * 32 = ceil(3.5) * 32 = 128 */
    int h2[3] = {300, 300, 90}, w2[3] = {300, 300, 300};
    cr_assert_eq(val_plan_make(&p, 3, h2, w2, 320, 32, 2, 0.5, NULL), 0);
    cr_assert_eq(p.nbatches, 2);
    cr_assert_eq(p.order[0], 2);
    cr_assert_eq(p.batches[0].h, 352, "[.3, 1]: mixed with a square -> 352 x 352");
    cr_assert_eq(p.batches[0].w, 352);
    cr_assert_eq(p.batches[1].count, 1);
    val_plan_free(&p);
    int h3[1] = {90}, w3[1] = {300};
    cr_assert_eq(val_plan_make(&p, 1, h3, w3, 320, 32, 2, 0.5, NULL), 0);
    cr_assert_eq(p.batches[0].h, 128);
    cr_assert_eq(p.batches[0].w, 352);
    val_plan_free(&p);
    int bad = -1, h4[2] = {10, 0}, w4[2] = {10, 10};
    cr_assert_eq(val_plan_make(&p, 2, h4, w4, 320, 32, 2, 0.5, &bad), -1);
    cr_assert_eq(bad, 1, "names the image without a size");
}

/* One 30 x 40 (h x w) image: a left half of value 200, a right half of 50, and a box over the
 * left half. */
static void fill_one(int index, dataset_sample *out) {
    (void)index;
    out->height = 30, out->width = 40;
    out->bytes = malloc(30 * 40 * 3);
    for (int y = 0; y < 30; y++)
        for (int x = 0; x < 40; x++)
            for (int c = 0; c < 3; c++) out->bytes[(y * 40 + x) * 3 + c] = x < 20 ? 200 : 50;
    out->nboxes = 1;
    out->labels = malloc(5 * sizeof(float));
    float l[5] = {1, 0.25f, 0.5f, 0.5f, 1.0f};
    memcpy(out->labels, l, sizeof l);
}

/* imgsz 64: the 30 x 40 image loads at 48 x 64 (long side 64), then goes into a 64 x 96 canvas
 * without scaling: 16 columns of padding each side, 8 rows above and below. The box (left half,
 * full height) becomes x 16..48 of 96, y 8..56 of 64. */
Test(valrect, loader_letterboxes_into_the_batch_canvas) {
    char err[512];
    loader_config c = loader_config_defaults();
    c.imgsz = 64, c.augment = 0, c.nthreads = 1, c.depth = 2, c.max_batch = 2, c.max_side = 96;
    sample_source src = mem_source_of("mem", 2, fill_one);
    loader *L = loader_create_source(src, &c, err, sizeof err);
    cr_assert(L, "%s", err);
    int idx[2] = {0, 1};
    cr_assert_eq(loader_submit_shape(L, 0, 0, idx, 2, 64, 96, err, sizeof err), 0, "%s", err);
    cr_assert_eq(loader_submit(L, 1, 0, idx, 1, err, sizeof err), 0, "%s", err);
    cr_assert_eq(loader_submit_shape(L, 2, 0, idx, 1, 64, 98, err, sizeof err), -1,
                 "wider than max_side");
    cr_assert(strstr(err, "64x98"), "%s", err);
    loader_batch b;
    cr_assert_eq(loader_next(L, &b, err, sizeof err), 0, "%s", err);
    cr_assert_eq(b.h, 64);
    cr_assert_eq(b.w, 96);
    cr_assert_eq(b.n, 2);
    const uint8_t *im = b.images + (size_t)64 * 96 * 3; /* the second image */
    cr_assert_eq(im[0], 114, "padding corner");
    cr_assert_eq(im[(32 * 96 + 8) * 3], 114, "left padding");
    cr_assert_eq(im[(32 * 96 + 20) * 3], 200, "left half of the image");
    cr_assert_eq(im[(32 * 96 + 70) * 3], 50, "right half");
    cr_assert_eq(im[(4 * 96 + 40) * 3], 114, "top padding");
    cr_assert_eq(b.nlabels, 2);
    const float *l = b.labels + 6; /* image 1's box */
    cr_assert_eq(l[0], 1.0f);
    cr_assert_float_eq(l[2], 32.0f / 96, 1e-6, "cx %g", l[2]);
    cr_assert_float_eq(l[3], 0.5f, 1e-6);
    cr_assert_float_eq(l[4], 32.0f / 96, 1e-6);
    cr_assert_float_eq(l[5], 48.0f / 64, 1e-6);
    cr_assert_float_eq(b.info[1].pad_x, 16.0f, 0);
    cr_assert_float_eq(b.info[1].pad_y, 8.0f, 0);
    /* the same through augment_val_shape, and the square submission as before */
    dataset_sample s = {0};
    fill_one(0, &s);
    aug_image a = {s.bytes, s.height, s.width, s.labels, s.nboxes};
    uint8_t *want = malloc(64 * 96 * 3);
    float wl[5];
    cr_assert_eq(augment_val_shape(&a, 30, 40, 64, 64, 96, want, wl, NULL), 1);
    cr_assert_eq(memcmp(want, b.images, 64 * 96 * 3), 0);
    cr_assert_eq(loader_next(L, &b, err, sizeof err), 0, "%s", err);
    cr_assert(b.h == 64 && b.w == 64, "loader_submit stays imgsz x imgsz");
    uint8_t *sq = malloc(64 * 64 * 3);
    augment_val(&a, 30, 40, 64, sq, wl, NULL);
    cr_assert_eq(memcmp(sq, b.images, 64 * 64 * 3), 0);
    free(s.bytes);
    free(s.labels);
    free(want);
    free(sq);
    loader_destroy(L);
    /* training loaders take no shapes */
    c.augment = 1, c.max_side = 0;
    L = loader_create_source(mem_source_of("mem", 2, fill_one), &c, err, sizeof err);
    cr_assert(L, "%s", err);
    cr_assert_eq(loader_submit_shape(L, 0, 0, idx, 1, 64, 96, err, sizeof err), -1);
    loader_destroy(L);
}
