/* The pixel kernels that training runs (vectorised where the build targets AVX-512, separable
 * warps without drawing the canvas) against their scalar definitions: identical bytes. */
#include "common/rng.h"
#include "dataio/pixels.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint8_t *random_image(rng *r, int h, int w, int flat) {
    uint8_t *p = malloc((size_t)h * w * 3);
    for (size_t i = 0; i < (size_t)h * w * 3; i++) {
        int v = rng_int(r, 256);
        p[i] = (uint8_t)(flat ? v / 64 * 64 : v); /* flat: few colours, many greys and ties */
    }
    return p;
}

static void expect_same(const uint8_t *a, const uint8_t *b, size_t n, const char *what) {
    size_t first = n;
    for (size_t i = 0; i < n && first == n; i++)
        if (a[i] != b[i]) first = i;
    cr_assert_eq(first, n, "%s: byte %zu differs (%d vs %d)", what, first, first < n ? a[first] : 0,
                 first < n ? b[first] : 0);
}

Test(pixels, reports_which_kernels_run) {
    cr_log_info("pixel kernels: %s", pixels_simd() ? "AVX-512" : "scalar");
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) &&                      \
    defined(__AVX512VBMI__)
    cr_assert_eq(pixels_simd(), 1, "built for AVX-512: the vectorised kernels must run");
#else
    cr_assert_eq(pixels_simd(), 0);
#endif
}

Test(pixels, resize_equals_scalar_up_and_down) {
    rng r = rng_keyed(7, 0, 0);
    const int sizes[][4] = {{256, 256, 320, 320}, {256, 256, 640, 640}, {480, 640, 240, 320},
                            {427, 640, 320, 480}, {37, 53, 91, 17},     {5, 7, 3, 2},
                            {1, 9, 4, 33},        {64, 64, 63, 65}};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int sh = sizes[k][0], sw = sizes[k][1], dh = sizes[k][2], dw = sizes[k][3];
        uint8_t *src = random_image(&r, sh, sw, k % 2);
        size_t stride = (size_t)dw * 3 + 6; /* a strided destination, as the letterbox uses */
        uint8_t *a = calloc((size_t)dh * stride, 1), *b = calloc((size_t)dh * stride, 1);
        image_resize_into(src, sh, sw, a, stride, dh, dw);
        image_resize_into_ref(src, sh, sw, b, stride, dh, dw);
        char what[64];
        snprintf(what, sizeof what, "resize %dx%d -> %dx%d", sh, sw, dh, dw);
        expect_same(a, b, (size_t)dh * stride, what);
        free(src), free(a), free(b);
    }
}

/* An affine inverse map from output to canvas: scale, translation, and optionally rotation. */
static void inverse_map(double mi[3][3], double s, double tx, double ty, double rot) {
    double c = cos(rot) / s, n = sin(rot) / s;
    double m[3][3] = {{c, n, tx}, {-n, c, ty}, {0, 0, 1}};
    memcpy(mi, m, sizeof m);
}

Test(pixels, warp_equals_scalar_for_mosaics_letterboxes_and_flips) {
    rng r = rng_keyed(7, 1, 0);
    for (int trial = 0; trial < 24; trial++) {
        int s = trial % 3 == 0 ? 64 : trial % 3 == 1 ? 90 : 160;
        uint8_t *imgs[4];
        pixel_canvas c = {0};
        if (trial % 2) { /* a mosaic: 4 pieces around a centre of a 2s canvas */
            c.h = c.w = 2 * s;
            int xc = s / 2 + rng_int(&r, s), yc = s / 2 + rng_int(&r, s);
            int x[4] = {0, xc, 0, xc}, y[4] = {0, 0, yc, yc};
            int w[4] = {xc, 2 * s - xc, xc, 2 * s - xc}, h[4] = {yc, yc, 2 * s - yc, 2 * s - yc};
            for (int k = 0; k < 4; k++) {
                int iw = w[k] + rng_int(&r, 9), ih = h[k] + rng_int(&r, 9);
                imgs[k] = random_image(&r, ih, iw, trial % 4 == 1);
                c.piece[c.npieces++] = (canvas_piece){imgs[k] + 3 * (iw - w[k]),
                                                      (size_t)iw * 3,
                                                      x[k],
                                                      y[k],
                                                      w[k] - 3 * (k == 1),
                                                      h[k]};
            }
        } else { /* a letterbox: one image padded to a square */
            c.h = c.w = s;
            int ih = s / 2 + rng_int(&r, s / 2);
            imgs[0] = random_image(&r, ih, s, trial % 4 == 0);
            for (int k = 1; k < 4; k++) imgs[k] = NULL;
            c.piece[c.npieces++] = (canvas_piece){imgs[0], (size_t)s * 3, 0, (s - ih) / 2, s, ih};
        }
        int o = trial % 2 ? s : s;
        double mi[3][3];
        /* zooms out past 1/4 too: those blocks take the gather path */
        double scale = trial % 8 == 7 ? 0.12 : 0.5 + rng_uniform(&r),
               rot = trial % 6 == 5 ? 0.2 : 0.0;
        inverse_map(mi, scale, (rng_uniform(&r) - 0.3) * c.w, (rng_uniform(&r) - 0.3) * c.h, rot);
        int lr = trial & 1, ud = (trial >> 1) & 1;
        uint8_t *a = malloc((size_t)o * o * 3), *b = malloc((size_t)o * o * 3);
        image_warp(&c, mi, 0, a, o, o, lr, ud, NULL);
        image_warp_ref(&c, mi, 0, b, o, o, lr, ud, NULL);
        char what[96];
        snprintf(what, sizeof what, "warp trial %d (scale %.3f, rot %.1f, lr %d, ud %d)", trial,
                 scale, rot, lr, ud);
        expect_same(a, b, (size_t)o * o * 3, what);
        for (int k = 0; k < 4; k++) free(imgs[k]);
        free(a), free(b);
    }
}

Test(pixels, warp_identity_is_a_copy_and_outside_is_pad) {
    rng r = rng_keyed(7, 2, 0);
    uint8_t *img = random_image(&r, 20, 30, 0), out[20 * 30 * 3];
    pixel_canvas c = {20, 30, 1, {{img, 90, 0, 0, 30, 20}}};
    double id[3][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
    image_warp(&c, id, 0, out, 20, 30, 0, 0, NULL);
    expect_same(out, img, sizeof out, "identity warp");
    double away[3][3] = {{1, 0, 100}, {0, 1, 0}, {0, 0, 1}};
    image_warp(&c, away, 0, out, 20, 30, 0, 0, NULL);
    for (size_t i = 0; i < sizeof out; i++) cr_assert_eq(out[i], PIXELS_PAD);
    free(img);
}

Test(pixels, hsv_equals_scalar_for_any_gains_and_lengths) {
    rng r = rng_keyed(7, 3, 0);
    const double gains[][3] = {{0.01, 0.5, -0.3}, {-0.015, -0.7, 0.4}, {0.3, 0.2, 0.1},
                               {0.5, 1.0, 1.0},   {-0.5, -1.0, -1.0},  {0, 0, 0}};
    const size_t lengths[] = {1, 15, 16, 17, 255, 4096 + 7};
    for (size_t g = 0; g < sizeof gains / sizeof *gains; g++)
        for (size_t k = 0; k < sizeof lengths / sizeof *lengths; k++) {
            size_t n = lengths[k];
            uint8_t *a = random_image(&r, 1, (int)n, (g + k) % 2), *b = malloc(n * 3);
            memcpy(b, a, n * 3);
            image_hsv(a, n, gains[g][0], gains[g][1], gains[g][2]);
            image_hsv_ref(b, n, gains[g][0], gains[g][1], gains[g][2]);
            char what[64];
            snprintf(what, sizeof what, "hsv gains %zu, %zu pixels", g, n);
            expect_same(a, b, n * 3, what);
            free(a), free(b);
        }
    /* every colour of a 64-level cube, including all greys */
    size_t n = 64 * 64 * 64;
    uint8_t *a = malloc(n * 3), *b = malloc(n * 3);
    for (size_t i = 0; i < n; i++)
        a[3 * i] = (uint8_t)(i % 64 * 4 + 3), a[3 * i + 1] = (uint8_t)(i / 64 % 64 * 4),
              a[3 * i + 2] = (uint8_t)(i / 4096 * 4 + 1);
    memcpy(b, a, n * 3);
    image_hsv(a, n, 0.02, 0.6, -0.35);
    image_hsv_ref(b, n, 0.02, 0.6, -0.35);
    expect_same(a, b, n * 3, "hsv colour cube");
    free(a), free(b);
}
