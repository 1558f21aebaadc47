/* The pixel kernels at every level (scalar, AVX2, AVX-512; a level this machine lacks is reported
 * skipped) against their scalar definitions, and separable warps without a drawn canvas against
 * the per-pixel warp of a drawn one: identical bytes. */
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

/* Runs the rest of the test at `level`, or reports it skipped with the reason. */
static void use_level(pixels_level level) {
    char err[256];
    if (pixels_set_simd(level, err, sizeof err)) cr_skip_test("%s", err);
    cr_assert_eq(pixels_simd(), level);
}

Test(pixels, reports_which_kernels_run) {
    cr_log_info("pixel kernels: %s", pixels_simd_name(pixels_simd()));
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) &&                      \
    defined(__AVX512VBMI__)
    cr_assert_eq(pixels_simd(), PIXELS_AVX512, "built for AVX-512: its kernels must run");
#elif defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
    cr_assert_eq(pixels_simd(), PIXELS_AVX2, "built for AVX2 + FMA: its kernels must run");
#else
    cr_assert_eq(pixels_simd(), PIXELS_SCALAR);
#endif
}

Test(pixels, levels_by_name_and_refusals) {
    for (int l = PIXELS_SCALAR; l <= PIXELS_AVX512; l++)
        cr_assert_eq(pixels_simd_parse(pixels_simd_name((pixels_level)l)), l);
    cr_assert_eq(pixels_simd_parse("avx"), -1);
    char err[256] = "";
    cr_assert_eq(pixels_set_simd((pixels_level)7, err, sizeof err), -1);
    cr_assert(strstr(err, "no such level"), "%s", err);
    cr_assert_eq(pixels_set_simd(PIXELS_SCALAR, err, sizeof err), 0, "scalar always runs");
    cr_assert_eq(pixels_simd(), PIXELS_SCALAR);
    /* a level this CPU lacks is refused with one line naming it, and the level stays */
#if defined(__x86_64__)
    int has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    cr_assert_eq(pixels_set_simd(PIXELS_AVX2, err, sizeof err), has2 ? 0 : -1, "%s", err);
    if (!has2) cr_assert(strstr(err, "avx2") && !strchr(err, '\n'), "%s", err);
#else
    cr_assert_eq(pixels_set_simd(PIXELS_AVX2, err, sizeof err), -1);
    cr_assert(strstr(err, "x86-64"), "%s", err);
#endif
}

static void check_resize(void) {
    rng r = rng_keyed(7, 0, 0);
    /* sh, sw, dh, dw: up and down, odd widths, widths under one vector, zooms out past 1/4
     * (gathered blocks) and to the right edge (bytewise blocks), then random sizes */
    int sizes[64][4] = {{256, 256, 320, 320}, {256, 256, 640, 640}, {480, 640, 240, 320},
                        {427, 640, 320, 480}, {37, 53, 91, 17},     {5, 7, 3, 2},
                        {1, 9, 4, 33},        {64, 64, 63, 65},     {9, 3, 17, 1},
                        {30, 530, 20, 41},    {12, 200, 7, 11},     {3, 12, 5, 10},
                        {2, 1, 2, 5},         {40, 40, 40, 39},     {33, 11, 9, 640}};
    int nfixed = 15;
    for (int k = nfixed; k < 64; k++)
        for (int j = 0; j < 4; j++) sizes[k][j] = 1 + rng_int(&r, j % 2 ? 220 : 70);
    for (int k = 0; k < 64; k++) {
        int sh = sizes[k][0], sw = sizes[k][1], dh = sizes[k][2], dw = sizes[k][3];
        uint8_t *src = random_image(&r, sh, sw, k % 2);
        size_t stride = (size_t)dw * 3 + 6; /* a strided destination, as the letterbox uses */
        uint8_t *a = calloc((size_t)dh * stride, 1), *b = calloc((size_t)dh * stride, 1);
        image_resize_into(src, sh, sw, a, stride, dh, dw);
        image_resize_into_ref(src, sh, sw, b, stride, dh, dw);
        char what[80];
        snprintf(what, sizeof what, "%s resize %dx%d -> %dx%d", pixels_simd_name(pixels_simd()), sh,
                 sw, dh, dw);
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

/* The warp (separable where the map has no rotation or shear, per pixel otherwise) against
 * image_warp_ref, which draws the canvas and warps per pixel with the scalar code. */
static void check_warp(void) {
    rng r = rng_keyed(7, 1, 0);
    for (int trial = 0; trial < 48; trial++) {
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
        /* output sizes: the canvas side, odd, and under one vector */
        const int ows[6] = {s, s - 1, 5, 13, 3 * s / 2 + 1, 1};
        int oh = trial % 7 == 3 ? 9 : s, ow = ows[trial / 2 % 6];
        double mi[3][3];
        /* zooms out past 1/4 too: those blocks take the gather path */
        double scale = trial % 8 == 7 ? 0.12 : 0.5 + rng_uniform(&r),
               rot = trial % 6 == 5 ? 0.2 : 0.0;
        inverse_map(mi, scale, (rng_uniform(&r) - 0.3) * c.w, (rng_uniform(&r) - 0.3) * c.h, rot);
        int lr = trial & 1, ud = (trial >> 1) & 1;
        int projective = trial % 12 == 11;
        if (projective) mi[2][0] = 1e-4, mi[2][1] = -2e-4;
        uint8_t *a = malloc((size_t)oh * ow * 3), *b = malloc((size_t)oh * ow * 3);
        image_warp(&c, mi, projective, a, oh, ow, lr, ud, NULL);
        image_warp_ref(&c, mi, projective, b, oh, ow, lr, ud, NULL);
        char what[128];
        snprintf(what, sizeof what, "%s warp trial %d (%dx%d, scale %.3f, rot %.1f, lr %d, ud %d)",
                 pixels_simd_name(pixels_simd()), trial, oh, ow, scale, rot, lr, ud);
        expect_same(a, b, (size_t)oh * ow * 3, what);
        for (int k = 0; k < 4; k++) free(imgs[k]);
        free(a), free(b);
    }
}

static void check_warp_identity(void) {
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

static void check_hsv(void) {
    rng r = rng_keyed(7, 3, 0);
    const double gains[][3] = {{0.01, 0.5, -0.3}, {-0.015, -0.7, 0.4}, {0.3, 0.2, 0.1},
                               {0.5, 1.0, 1.0},   {-0.5, -1.0, -1.0},  {0, 0, 0},
                               {1.0, -1.0, 1.0},  {-1.0, 1.0, -0.99},  {0.999, 0.99, 0.5}};
    const size_t lengths[] = {1, 2, 3, 7, 8, 9, 10, 11, 12, 15, 16, 17, 31, 33, 255, 4096 + 7};
    for (size_t g = 0; g < sizeof gains / sizeof *gains; g++)
        for (size_t k = 0; k < sizeof lengths / sizeof *lengths; k++) {
            size_t n = lengths[k];
            uint8_t *a = random_image(&r, 1, (int)n, (g + k) % 2), *b = malloc(n * 3);
            memcpy(b, a, n * 3);
            image_hsv(a, n, gains[g][0], gains[g][1], gains[g][2]);
            image_hsv_ref(b, n, gains[g][0], gains[g][1], gains[g][2]);
            char what[64];
            snprintf(what, sizeof what, "%s hsv gains %zu, %zu pixels",
                     pixels_simd_name(pixels_simd()), g, n);
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

/* Each kernel at each level against the scalar definitions (the scalar level too: its warp is
 * the separable one, without a drawn canvas). */
#define LEVEL_TESTS(suite, level)                                                                  \
    Test(suite, resize_equals_scalar) {                                                            \
        use_level(level);                                                                          \
        check_resize();                                                                            \
    }                                                                                              \
    Test(suite, warp_equals_scalar_for_mosaics_letterboxes_flips_and_sizes) {                      \
        use_level(level);                                                                          \
        check_warp();                                                                              \
    }                                                                                              \
    Test(suite, warp_identity_is_a_copy_and_outside_is_pad) {                                      \
        use_level(level);                                                                          \
        check_warp_identity();                                                                     \
    }                                                                                              \
    Test(suite, hsv_equals_scalar_for_any_gains_and_lengths) {                                     \
        use_level(level);                                                                          \
        check_hsv();                                                                               \
    }

LEVEL_TESTS(pixels_scalar, PIXELS_SCALAR)
LEVEL_TESTS(pixels_avx2, PIXELS_AVX2)
LEVEL_TESTS(pixels_avx512, PIXELS_AVX512)
