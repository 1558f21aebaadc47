/* Internal to dataio/pixels*.c: what the scalar and the vectorised kernels share. */
#pragma once
#include "dataio/pixels.h"

#include <stddef.h>
#include <stdint.h>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) &&                      \
    defined(__AVX512VBMI__)
#define PIXELS_HAVE_AVX512 1
#else
#define PIXELS_HAVE_AVX512 0
#endif

/* dataio/pixels_avx2.c is built on every x86-64 machine, with AVX2 + FMA enabled for that file
 * only (the Makefile), and runs only where the CPU has them (pixels_set_simd checks). */
#if defined(__x86_64__)
#define PIXELS_HAVE_AVX2 1
#else
#define PIXELS_HAVE_AVX2 0
#endif

/* Round half to even (as OpenCV's saturate_cast) and saturate, without a libm call: adding
 * 1.5 * 2^23 leaves no fraction bits, so the FPU rounds in its default nearest-even mode (exact
 * without -ffast-math, which these files must not use). */
static inline uint8_t pixels_sat_u8(float v) {
    if (v <= 0.f) return 0;
    if (v >= 255.f) return 255;
    float t = v + 0x1.8p23f;
    return (uint8_t)(int)(t - 0x1.8p23f);
}

/* OpenCV's resize coefficients per output column (or row): source index, its clamped
 * neighbour, and the two 11-bit fixed-point weights. */
void pixels_resize_coefs(int dn, int sn, int *i0, int *i1, int *a0, int *a1);

/* Separable filters keep the two source rows of the last output row (pointers rows[0..1], their
 * row numbers have[0..1]; -2 when empty). When the next output row starts at the row held second,
 * the two swap so only the new second row is computed. */
#define PIXELS_ROWS_SHIFT(rows, have, first)                                                       \
    do {                                                                                           \
        if ((have)[0] != (first) && (have)[1] == (first)) {                                        \
            __typeof__((rows)[0]) swap_ = (rows)[0];                                               \
            (rows)[0] = (rows)[1], (rows)[1] = swap_;                                              \
            (have)[0] = (have)[1], (have)[1] = -2;                                                 \
        }                                                                                          \
    } while (0)

/* Canvas row y (-1 and h give rows of pad) with one pad pixel on each side ((w + 2) x 3 bytes),
 * only its extended columns [from, to) (canvas columns from - 1 .. to - 2) written. */
void pixels_canvas_row(const pixel_canvas *c, int y, uint8_t *row, int from, int to);

/* The warp for an affine map without rotation or shear (mi[0][1] and mi[1][0] zero as floats):
 * each output row reads two canvas rows, each column the same two canvas columns, so rows are
 * interpolated along x once and blended along y. -1 (nothing written) when the valid output
 * columns are not one interval, which an affine map cannot produce. */
int pixels_warp_separable(const pixel_canvas *c, const double mi[3][3], uint8_t *dst, int oh,
                          int ow, int flip_lr, int flip_ud, const pixels_row_op *post);

#if PIXELS_HAVE_AVX512
void pixels_hsv_avx512(const image_hsv_tables *t, uint8_t *rgb, size_t npix);
/* H[i] = fmaf(a[i], row[off[i] + 3] - row[off[i]], row[off[i]]) for i in [0, n), planned once
 * per warp (off and a must outlive the plan). row must be readable 64 bytes past each off[i]. */
typedef struct pixels_hrow_plan pixels_hrow_plan;
pixels_hrow_plan *pixels_hrow_plan_avx512(const int32_t *off, const float *a, int n);
void pixels_hrow_plan_free(pixels_hrow_plan *p);
void pixels_warp_hrow_avx512(const pixels_hrow_plan *p, const uint8_t *row, float *H);
/* out[i] = round_half_even(fmaf(b, H1[i] - H0[i], H0[i])) saturated to uint8. */
void pixels_warp_vblend_avx512(const float *H0, const float *H1, float b, int n, uint8_t *out);
#endif

#if PIXELS_HAVE_AVX2
void pixels_resize_avx2(const uint8_t *src, int sh, int sw, uint8_t *dst, size_t dstride, int dh,
                        int dw);
void pixels_hsv_avx2(const image_hsv_tables *t, uint8_t *rgb, size_t npix);
/* Per element i in [0, n): the bytes at off0[i] and off1[i] (off0[i] + 3 when off1 is NULL) of
 * a row whose first `limit` bytes may be read, planned once for many rows (off0 and off1 are
 * copied). */
typedef struct pixels_pairs_avx2 pixels_pairs_avx2;
pixels_pairs_avx2 *pixels_pairs_plan_avx2(const int32_t *off0, const int32_t *off1, int n,
                                          int limit);
void pixels_pairs_free_avx2(pixels_pairs_avx2 *p);
/* The warp's rows as the AVX-512 versions above: H[i] = fmaf(a[i], p1 - p0, p0) with the pair
 * (p0, p1) of element i, and the vertical blend. */
void pixels_warp_hrow_avx2(const pixels_pairs_avx2 *p, const uint8_t *row, const float *a,
                           float *H);
void pixels_warp_vblend_avx2(const float *H0, const float *H1, float b, int n, uint8_t *out);
#endif
