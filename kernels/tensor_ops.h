/* Layout ops on NHWC tensors. Backward functions accumulate (+=) into their outputs. */
#pragma once
#include <stddef.h>
#include <stdint.h>

/* y = a + b (residual add). Backward is da += dy, db += dy: use accumulate(). */
void add_forward(size_t n, const float *a, const float *b, float *y);
/* y += x */
void accumulate(size_t n, const float *x, float *y);
/* y *= s */
void scale_inplace(size_t n, float s, float *y);
/* y = x * s for bytes x: a uint8 image batch to floats (s = 1/255 gives 0..1). */
void normalize_u8(size_t n, const uint8_t *x, float s, float *y);

/* Channel concat of k tensors, each [m][cs[i]], into y [m][sum cs]. */
void concat_forward(size_t m, int k, const float *const *xs, const int *cs, float *y);
/* dxs[i] += the matching channel slice of dy (dxs[i] may be NULL to skip). */
void concat_backward(size_t m, int k, const int *cs, const float *dy, float *const *dxs);

/* Channel slice: y [m][c] = x[m][off : off + c] of x [m][cx]. Backward: dx[.., off:off+c] += dy. */
void slice_channels_forward(size_t m, int cx, int off, int c, const float *x, float *y);
void slice_channels_backward(size_t m, int cx, int off, int c, const float *dy, float *dx);

/* Nearest-neighbour 2x upsample: x [n][h][w][c] -> y [n][2h][2w][c]. Backward sums 4 -> 1. */
void upsample2x_forward(int n, int h, int w, int c, const float *x, float *y);
void upsample2x_backward(int n, int h, int w, int c, const float *dy, float *dx);
