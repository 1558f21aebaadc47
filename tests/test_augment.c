#include "common/rng.h"
#include "dataio/augment.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint8_t *solid(int h, int w, uint8_t r, uint8_t g, uint8_t b) {
    uint8_t *im = malloc((size_t)h * w * 3);
    for (int i = 0; i < h * w; i++) im[3 * i] = r, im[3 * i + 1] = g, im[3 * i + 2] = b;
    return im;
}

static uint8_t *noise(int h, int w, uint64_t key, int maxv) {
    rng r = rng_keyed(key, 99, 0);
    uint8_t *im = malloc((size_t)h * w * 3);
    for (int i = 0; i < h * w * 3; i++) im[i] = (uint8_t)rng_int(&r, maxv + 1);
    return im;
}

Test(augment, defaults_match_ultralytics) {
    augment_params p = augment_defaults();
    cr_assert_eq(p.mosaic, 1.0);
    cr_assert_eq(p.degrees, 0.0);
    cr_assert_eq(p.translate, 0.1);
    cr_assert_eq(p.scale, 0.5);
    cr_assert_eq(p.shear, 0.0);
    cr_assert_eq(p.perspective, 0.0);
    cr_assert_eq(p.flipud, 0.0);
    cr_assert_eq(p.fliplr, 0.5);
    cr_assert_eq(p.hsv_h, 0.015);
    cr_assert_eq(p.hsv_s, 0.7);
    cr_assert_eq(p.hsv_v, 0.4);
}

Test(augment, load_size_keeps_aspect_with_ceil) {
    int h, w;
    augment_load_size(480, 640, 320, &h, &w);
    cr_assert(h == 240 && w == 320);
    augment_load_size(427, 640, 320, &h, &w); /* 213.5 -> ceil 214 */
    cr_assert(h == 214 && w == 320, "%dx%d", h, w);
    augment_load_size(50, 40, 320, &h, &w); /* small images are scaled up */
    cr_assert(h == 320 && w == 256, "%dx%d", h, w);
}

Test(augment, val_letterbox_sizes_pad_and_box_mapping) {
    /* 50 x 100 image of colour 200, imgsz 64: load size 32 x 64, pad 16 rows top and bottom. */
    uint8_t *im = solid(50, 100, 200, 200, 200);
    float lab[5] = {2, 0.5f, 0.5f, 0.2f, 0.4f};
    aug_image a = {im, 50, 100, lab, 1};
    uint8_t out[64 * 64 * 3];
    float ol[5];
    letterbox_info info;
    int n = augment_val(&a, 50, 100, 64, out, ol, &info);
    cr_assert_eq(n, 1);
    for (int y = 0; y < 64; y++) {
        uint8_t want = (y < 16 || y >= 48) ? 114 : 200;
        for (int x = 0; x < 64; x++)
            for (int k = 0; k < 3; k++)
                cr_assert_eq(out[(y * 64 + x) * 3 + k], want, "pixel (%d,%d)", y, x);
    }
    cr_assert_float_eq(info.gain_x, 0.64f, 1e-6);
    cr_assert_float_eq(info.gain_y, 0.64f, 1e-6);
    cr_assert(info.pad_x == 0 && info.pad_y == 16);
    cr_assert(info.orig_h == 50 && info.orig_w == 100);
    cr_assert_eq(ol[0], 2.f);
    cr_assert_float_eq(ol[1], 0.5f, 1e-6);
    cr_assert_float_eq(ol[2], 0.5f, 1e-6);
    cr_assert_float_eq(ol[3], 0.2f, 1e-6);
    cr_assert_float_eq(ol[4], 0.2f, 1e-6); /* 0.4 * 32 px / 64 */
    /* The original box's corner maps through gain and pad to the letterboxed box's corner. */
    float x1o = (0.5f - 0.1f) * 100, y1o = (0.5f - 0.2f) * 50;
    cr_assert_float_eq(x1o * info.gain_x + info.pad_x, (ol[1] - ol[3] / 2) * 64, 1e-3);
    cr_assert_float_eq(y1o * info.gain_y + info.pad_y, (ol[2] - ol[4] / 2) * 64, 1e-3);
    free(im);
}

Test(augment, letterbox_odd_padding_goes_right_and_no_upscale) {
    uint8_t *im = solid(10, 7, 9, 9, 9);
    aug_image a = {im, 10, 7, NULL, 0};
    uint8_t out[10 * 10 * 3];
    float r;
    int px, py;
    augment_letterbox(&a, 10, 10, 0, out, NULL, &r, &px, &py);
    cr_assert(r == 1.f && px == 1 && py == 0);
    for (int x = 0; x < 10; x++) cr_assert_eq(out[(5 * 10 + x) * 3], (x >= 1 && x < 8) ? 9 : 114);
    /* scaleup off keeps a small image small; on, it fills the long side */
    augment_letterbox(&a, 20, 20, 0, (uint8_t[20 * 20 * 3]){0}, NULL, &r, &px, &py);
    cr_assert(r == 1.f && px == 6 && py == 5, "r %g pad %d %d", r, px, py);
    uint8_t big[20 * 20 * 3];
    augment_letterbox(&a, 20, 20, 1, big, NULL, &r, &px, &py);
    cr_assert(r == 2.f && px == 3 && py == 0, "r %g pad %d %d", r, px, py);
    free(im);
}

Test(augment, flips_move_pixels_and_boxes) {
    int h = 8, w = 10;
    uint8_t *im = solid(h, w, 0, 0, 0);
    im[(2 * w + 3) * 3] = 255; /* red pixel at row 2, column 3 */
    float lab[5] = {1, (3 + 0.5f) / w, (2 + 0.5f) / h, 1.f / w, 1.f / h};
    augment_fliplr(im, h, w, lab, 1);
    cr_assert_eq(im[(2 * w + 6) * 3], 255);
    cr_assert_eq(im[(2 * w + 3) * 3], 0);
    cr_assert_float_eq(lab[1], (6 + 0.5f) / w, 1e-6);
    cr_assert_float_eq(lab[2], (2 + 0.5f) / h, 1e-6);
    augment_flipud(im, h, w, lab, 1);
    cr_assert_eq(im[(5 * w + 6) * 3], 255);
    cr_assert_float_eq(lab[2], (5 + 0.5f) / h, 1e-6);
    cr_assert_float_eq(lab[3], 1.f / w, 1e-6);
    cr_assert_float_eq(lab[4], 1.f / h, 1e-6);
    free(im);
}

Test(augment, hsv_leaves_grey_grey_and_shifts_hue) {
    uint8_t grey[256 * 3];
    for (int v = 0; v < 256; v++) grey[3 * v] = grey[3 * v + 1] = grey[3 * v + 2] = (uint8_t)v;
    image_hsv(grey, 256, 0.31, 0.5, 0.2);
    for (int v = 0; v < 256; v++) {
        cr_assert(grey[3 * v] == grey[3 * v + 1] && grey[3 * v] == grey[3 * v + 2], "grey %d", v);
        int want = (int)fmin(v * 1.2, 255); /* value LUT, truncated */
        cr_assert(abs(grey[3 * v] - want) <= 1, "v %d -> %d want %d", v, grey[3 * v], want);
    }
    /* pure red shifted by 60 of 180 hue units becomes pure green; blue by 60 becomes red */
    uint8_t px[6] = {255, 0, 0, 0, 0, 255};
    image_hsv(px, 2, 60.0 / 180.0, 0, 0);
    cr_assert(px[0] == 0 && px[1] == 255 && px[2] == 0, "%d %d %d", px[0], px[1], px[2]);
    cr_assert(px[3] == 255 && px[4] == 0 && px[5] == 0, "%d %d %d", px[3], px[4], px[5]);
    /* zero gains: the 8-bit HSV round trip is close to lossless */
    uint8_t *im = noise(16, 16, 5, 255), *orig = malloc(16 * 16 * 3);
    memcpy(orig, im, 16 * 16 * 3);
    image_hsv(im, 256, 0, 0, 0);
    for (int i = 0; i < 16 * 16 * 3; i++) cr_assert(abs(im[i] - orig[i]) <= 5, "%d", i);
    free(im);
    free(orig);
}

Test(augment, box_candidate_rules) {
    float orig[4] = {0, 0, 10, 10};
    cr_assert(augment_box_candidate(orig, (float[]){0, 0, 10, 10}));
    cr_assert(!augment_box_candidate(orig, (float[]){0, 0, 2, 10}), "w must exceed 2 px");
    cr_assert(augment_box_candidate(orig, (float[]){0, 0, 2.5f, 10}));
    cr_assert(!augment_box_candidate(orig, (float[]){0, 0, 3, 3}), "area ratio 0.09");
    cr_assert(augment_box_candidate(orig, (float[]){0, 0, 3.2f, 3.2f}), "area ratio 0.1024");
    float wide[4] = {0, 0, 1000, 3};
    cr_assert(!augment_box_candidate(wide, (float[]){0, 0, 400, 3.5f}));
    cr_assert(augment_box_candidate(wide, (float[]){0, 0, 300, 3.5f}), "ratio 86 < 100");
}

Test(augment, mosaic_draw_respects_probability_and_pool) {
    augment_params p = augment_defaults();
    int parts[3], fired = 0;
    for (int i = 0; i < 200; i++) {
        rng r = rng_keyed(1, 0, (uint64_t)i);
        fired += augment_draw_mosaic(&r, &p, 7, parts);
        for (int k = 0; k < 3; k++) cr_assert(parts[k] >= 0 && parts[k] < 7);
    }
    cr_assert_eq(fired, 200);
    p.mosaic = 0;
    for (int i = 0; i < 200; i++) {
        rng r = rng_keyed(1, 0, (uint64_t)i);
        cr_assert_eq(augment_draw_mosaic(&r, &p, 7, parts), 0);
    }
}

Test(augment, zero_params_without_mosaic_is_the_letterbox) {
    augment_params p = {0};
    uint8_t *im = noise(48, 64, 3, 255);
    float lab[5] = {0, 0.5f, 0.5f, 0.25f, 0.5f};
    aug_image a = {im, 48, 64, lab, 1};
    uint8_t got[64 * 64 * 3], want[64 * 64 * 3];
    float gl[5], wl[5];
    rng r = rng_keyed(0, 0, 0);
    int n = augment_train(&p, 64, &r, 0, &a, got, gl);
    augment_letterbox(&a, 64, 64, 1, want, wl, NULL, NULL, NULL);
    cr_assert_eq(n, 1);
    cr_assert_eq(memcmp(got, want, sizeof got), 0, "identity warp must not change pixels");
    for (int k = 0; k < 5; k++) cr_assert_float_eq(gl[k], wl[k], 1e-6);
    free(im);
}

Test(augment, train_is_a_function_of_the_rng_key) {
    augment_params p = augment_defaults();
    uint8_t *ims[4];
    float lab[4][5];
    aug_image a[4];
    for (int i = 0; i < 4; i++) {
        ims[i] = noise(48 + 8 * i, 64, (uint64_t)i, 255);
        float l[5] = {(float)i, 0.5f, 0.5f, 0.5f, 0.5f};
        memcpy(lab[i], l, sizeof l);
        a[i] = (aug_image){ims[i], 48 + 8 * i, 64, lab[i], 1};
    }
    static uint8_t o1[64 * 64 * 3], o2[64 * 64 * 3], o3[64 * 64 * 3];
    float l1[20], l2[20], l3[20];
    rng r1 = rng_keyed(0, 1, 5), r2 = rng_keyed(0, 1, 5), r3 = rng_keyed(0, 2, 5);
    int n1 = augment_train(&p, 64, &r1, 1, a, o1, l1);
    int n2 = augment_train(&p, 64, &r2, 1, a, o2, l2);
    int n3 = augment_train(&p, 64, &r3, 1, a, o3, l3);
    cr_assert_eq(n1, n2);
    cr_assert_eq(memcmp(o1, o2, sizeof o1), 0);
    cr_assert_eq(memcmp(l1, l2, sizeof(float) * 5 * n1), 0);
    cr_assert_neq(memcmp(o1, o3, sizeof o1), 0, "another epoch key must augment differently");
    (void)n3;
    for (int i = 0; i < 4; i++) free(ims[i]);
}

/* A magenta rectangle on dark noise; after augmentation (HSV off so the colour survives) every
 * surviving, unclipped label must coincide with the magenta pixels. */
static void check_geometry(int use_mosaic, double degrees, double shear, double perspective) {
    const int H = 120, W = 160, S = 128;
    uint8_t *src = noise(H, W, 11, 120);
    int rx0 = 40, ry0 = 30, rx1 = 120, ry1 = 94; /* [x0, x1) x [y0, y1) */
    for (int y = ry0; y < ry1; y++)
        for (int x = rx0; x < rx1; x++) {
            uint8_t *p = src + (y * W + x) * 3;
            p[0] = 250, p[1] = 10, p[2] = 250;
        }
    float lab[5] = {3, (rx0 + rx1) / 2.f / W, (ry0 + ry1) / 2.f / H, (float)(rx1 - rx0) / W,
                    (float)(ry1 - ry0) / H};
    int lh, lw;
    augment_load_size(H, W, S, &lh, &lw);
    uint8_t *loaded = malloc((size_t)lh * lw * 3);
    image_resize_bilinear(src, H, W, loaded, lh, lw);
    aug_image imgs[4] = {{loaded, lh, lw, lab, 1}};
    uint8_t *partner = noise(S, S, 12, 120);
    for (int i = 1; i < 4; i++) imgs[i] = (aug_image){partner, S, S, NULL, 0};

    augment_params p = augment_defaults();
    p.hsv_h = p.hsv_s = p.hsv_v = 0;
    p.flipud = 0.5;
    p.degrees = degrees;
    p.shear = shear;
    p.perspective = perspective;
    uint8_t *out = malloc((size_t)S * S * 3);
    int checked = 0;
    double worst = 1;
    for (int it = 0; it < 150; it++) {
        rng r = rng_keyed(7, (uint64_t)use_mosaic, (uint64_t)it);
        float ol[5];
        int n = augment_train(&p, S, &r, use_mosaic, imgs, out, ol);
        cr_assert(n <= 1);
        if (n == 0) continue;
        cr_assert_eq(ol[0], 3.f, "class survives");
        float x1 = (ol[1] - ol[3] / 2) * S, x2 = (ol[1] + ol[3] / 2) * S;
        float y1 = (ol[2] - ol[4] / 2) * S, y2 = (ol[2] + ol[4] / 2) * S;
        if (x1 < 0.5f || y1 < 0.5f || x2 > S - 0.5f || y2 > S - 0.5f) continue; /* clipped */
        if (x2 - x1 < 24 || y2 - y1 < 24) continue; /* too few pixels for a 0.9 IoU test */
        int mx0 = S, my0 = S, mx1 = -1, my1 = -1;
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                const uint8_t *q = out + (y * S + x) * 3;
                if (q[0] > 200 && q[1] < 60 && q[2] > 200) {
                    if (x < mx0) mx0 = x;
                    if (x > mx1) mx1 = x;
                    if (y < my0) my0 = y;
                    if (y > my1) my1 = y;
                }
            }
        cr_assert(mx1 >= 0, "it %d: label kept but no coloured pixel", it);
        float px0 = (float)mx0, px1 = mx1 + 1.f, py0 = (float)my0, py1 = my1 + 1.f;
        float iw = fminf(x2, px1) - fmaxf(x1, px0), ih = fminf(y2, py1) - fmaxf(y1, py0);
        float inter = iw > 0 && ih > 0 ? iw * ih : 0;
        float iou = inter / ((x2 - x1) * (y2 - y1) + (px1 - px0) * (py1 - py0) - inter);
        if (iou < worst) worst = iou;
        cr_assert(iou > 0.9f, "it %d: IoU %.3f label [%.1f %.1f %.1f %.1f] pixels [%g %g %g %g]",
                  it, iou, x1, y1, x2, y2, px0, py0, px1, py1);
        checked++;
    }
    cr_assert(checked >= 20, "only %d unclipped samples checked", checked);
    cr_log_info("geometry mosaic=%d degrees=%g: %d checked, worst IoU %.3f", use_mosaic, degrees,
                checked, worst);
    free(out);
    free(partner);
    free(loaded);
    free(src);
}

Test(augment, geometry_label_covers_rectangle_mosaic) {
    check_geometry(1, 0, 0, 0);
}
Test(augment, geometry_label_covers_rectangle_no_mosaic) {
    check_geometry(0, 0, 0, 0);
}
/* Rotation, shear and perspective: the label is the box of the warped corners, and so is the
 * extent of the warped rectangle's pixels. */
Test(augment, geometry_label_covers_rectangle_rotated_perspective) {
    check_geometry(1, 10, 3, 0.0005);
    check_geometry(0, 10, 3, 0.0005);
}
