/* Internal to the conv2d module (kernels/conv2d*.c); not for other modules. */
#pragma once
#include "kernels/conv2d.h"

#include <stddef.h>
#include <stdint.h>

static inline size_t conv2d_round16(size_t floats) {
    return (floats + 15) & ~(size_t)15;
}

/* Depthwise (groups == cin == cout) direct loops, kernels/conv2d_depthwise.c. ws: 64-byte aligned,
 * conv2d_dw_ws_floats(d, threads) floats. Backward accumulates; dx or dw may be NULL. */
size_t conv2d_dw_ws_floats(const conv2d_desc *d, int threads);
void conv2d_dw_forward(const conv2d_desc *d, const float *x, const float *w, const float *bias,
                       float *y, float *ws);
void conv2d_dw_backward(const conv2d_desc *d, const float *x, const float *w, const float *dy,
                        float *dx, float *dw, float *ws);

/* Tests: the GEMM path's im2col buffer limit in floats (default 4 Mi; at least one image per
 * chunk). Clears the primitive table, since workspace sizes change. */
void conv2d_set_im2col_cap(size_t floats);
