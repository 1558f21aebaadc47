/* Internal to dataio/pixels*.c: what the scalar and the vectorised kernels share. */
#pragma once
#include "dataio/pixels.h"

#include <stddef.h>
#include <stdint.h>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) &&                      \
    defined(__AVX512VBMI__)
#define PIXELS_AVX512 1
#else
#define PIXELS_AVX512 0
#endif

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

#if PIXELS_AVX512
void pixels_resize_avx512(const uint8_t *src, int sh, int sw, uint8_t *dst, size_t dstride, int dh,
                          int dw);
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
