/* The separable affine warp (no rotation or shear: Ultralytics' default augmentation), straight
 * from a described canvas: only the canvas rows the output reads are assembled, one at a time,
 * and each is interpolated along x once however many output rows use it. Same arithmetic, and
 * so the same bytes, as the per-pixel warp in pixels.c. */
#include "common/log.h"
#include "dataio/pixels_simd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The two row kernels at the level in force: planned once per warp for the vectorised ones. */
typedef struct row_kernels {
    pixels_level level;
    const int32_t *off;
    const float *a;
    int n;
#if PIXELS_HAVE_AVX512
    pixels_hrow_plan *p512;
#endif
#if PIXELS_HAVE_AVX2
    pixels_pairs_avx2 *p2;
#endif
} row_kernels;

/* limit: the bytes of a canvas row buffer that may be read */
static row_kernels rows_prepare(const int32_t *off, const float *a, int n, int limit) {
    row_kernels k = {.level = pixels_simd(), .off = off, .a = a, .n = n};
    (void)limit;
#if PIXELS_HAVE_AVX512
    if (k.level == PIXELS_AVX512) k.p512 = pixels_hrow_plan_avx512(off, a, n);
#endif
#if PIXELS_HAVE_AVX2
    if (k.level == PIXELS_AVX2) k.p2 = pixels_pairs_plan_avx2(off, NULL, n, limit);
#endif
    return k;
}

static void rows_done(row_kernels *k) {
#if PIXELS_HAVE_AVX512
    pixels_hrow_plan_free(k->p512);
#endif
#if PIXELS_HAVE_AVX2
    pixels_pairs_free_avx2(k->p2);
#endif
    (void)k;
}

/* H[i] = row[off[i]] + a[i] (row[off[i] + 3] - row[off[i]]) as one fma */
static void rows_h(const row_kernels *k, const uint8_t *row, float *H) {
#if PIXELS_HAVE_AVX512
    if (k->level == PIXELS_AVX512) {
        pixels_warp_hrow_avx512(k->p512, row, H);
        return;
    }
#endif
#if PIXELS_HAVE_AVX2
    if (k->level == PIXELS_AVX2) {
        pixels_warp_hrow_avx2(k->p2, row, k->a, H);
        return;
    }
#endif
    for (int i = 0; i < k->n; i++) {
        float p0 = row[k->off[i]], p1 = row[k->off[i] + 3];
        H[i] = fmaf(k->a[i], p1 - p0, p0);
    }
}

static void rows_v(const row_kernels *k, const float *H0, const float *H1, float b, uint8_t *out) {
#if PIXELS_HAVE_AVX512
    if (k->level == PIXELS_AVX512) {
        pixels_warp_vblend_avx512(H0, H1, b, k->n, out);
        return;
    }
#endif
#if PIXELS_HAVE_AVX2
    if (k->level == PIXELS_AVX2) {
        pixels_warp_vblend_avx2(H0, H1, b, k->n, out);
        return;
    }
#endif
    for (int i = 0; i < k->n; i++) out[i] = pixels_sat_u8(fmaf(b, H1[i] - H0[i], H0[i]));
}

/* Source coordinate -> (floor, fraction) as the per-pixel warp computes them; 0 when outside
 * (-1, n). */
static int split_coord(float s, int n, int *i0, float *frac) {
    if (!(s > -1.f && s < (float)n)) return 0;
    *i0 = (int)(s + 1.f) - 1;
    *frac = s - (float)*i0;
    return 1;
}

int pixels_warp_separable(const pixel_canvas *c, const double mi[3][3], uint8_t *dst, int oh,
                          int ow, int flip_lr, int flip_ud, const pixels_row_op *post) {
    const float m0 = (float)mi[0][0], m1 = (float)mi[0][1], m2 = (float)mi[0][2];
    const float m3 = (float)mi[1][0], m4 = (float)mi[1][1], m5 = (float)mi[1][2];
    /* The per-pixel warp computes sx = fma(m0, x, fma(m1, y, m2)), sy = fma(m3, x, fma(m4, y,
     * m5)); with m1 = m3 = 0 the inner products are zeros whose sign does not depend on the
     * other coordinate, so sx is a function of x alone and sy of y alone, bit for bit. */
    const float bx = fmaf(m1, 0.f, m2);
    const int n3 = 3 * ow;
    int32_t *off = xmalloc(sizeof(int32_t) * (size_t)n3);
    float *aw = xmalloc(sizeof(float) * (size_t)n3);
    int first = -1, last = -2, holes = 0;
    for (int X = 0; X < ow; X++) { /* output column X reads source column x */
        int x = flip_lr ? ow - 1 - X : X, x0;
        float a;
        if (!split_coord(fmaf(m0, (float)x, bx), c->w, &x0, &a)) continue;
        if (first < 0) first = X;
        holes |= last >= 0 && X != last + 1;
        last = X;
        for (int k = 0; k < 3; k++) off[3 * X + k] = 3 * (x0 + 1) + k, aw[3 * X + k] = a;
    }
    if (holes) {
        free(off), free(aw);
        return -1;
    }
    size_t rowb = (size_t)(c->w + 2) * 3;
    uint8_t *crow = xcalloc(rowb + 64, 1); /* vector loads read up to 64 bytes past an offset */
    int lo = 3 * first, n = first < 0 ? 0 : 3 * (last + 1) - lo;
    /* the extended canvas columns the valid output reads (each element reads 2 pixels) */
    int from = c->w + 2, to = 0;
    for (int i = lo; i < lo + n; i++) {
        from = off[i] / 3 < from ? off[i] / 3 : from;
        to = off[i] / 3 + 2 > to ? off[i] / 3 + 2 : to;
    }
    row_kernels rk = rows_prepare(off + lo, aw + lo, n, (int)rowb + 64);
    float *hbuf = xmalloc(sizeof(float) * 2 * (size_t)(n > 0 ? n : 1));
    float *H[2] = {hbuf, hbuf + n};
    int have[2] = {-2, -2}; /* canvas rows in H (-1 is a row of pad) */
    /* each output row is made and finished (post) while it is in cache */
    for (int y = 0; y < oh; y++) {
        uint8_t *obuf = dst + (size_t)(flip_ud ? oh - 1 - y : y) * n3;
        int y0;
        float b;
        if (n == 0 || !split_coord(fmaf(m3, 0.f, fmaf(m4, (float)y, m5)), c->h, &y0, &b)) {
            memset(obuf, PIXELS_PAD, (size_t)n3);
        } else {
            int want[2] = {y0, y0 + 1};
            PIXELS_ROWS_SHIFT(H, have, want[0]);
            for (int k = 0; k < 2; k++) {
                if (have[k] == want[k]) continue;
                pixels_canvas_row(c, want[k], crow, from, to);
                rows_h(&rk, crow, H[k]);
                have[k] = want[k];
            }
            memset(obuf, PIXELS_PAD, (size_t)lo);
            rows_v(&rk, H[0], H[1], b, obuf + lo);
            memset(obuf + lo + n, PIXELS_PAD, (size_t)(n3 - lo - n));
        }
        if (post) post->fn(post->ctx, obuf, ow);
    }
    rows_done(&rk);
    free(hbuf), free(crow), free(off), free(aw);
    return 0;
}
