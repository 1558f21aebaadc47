/* Depthwise convolution (groups == cin == cout; kernels/cuda/conv2d_depthwise.cu) per element, for
 * the CUDA kernels and the CPU tests. Twin: kernels/conv2d_depthwise.c (NHWC, weights [c][kh][kw],
 * taps in (ki, kj) order with fused multiply-adds, as the CPU's direct loops). */
#pragma once
#include "kernels/conv2d.h"
#include "kernels/cuda/hd.h"

#include <math.h>
#include <stddef.h>

enum { DW_MAX_TAPS = 49 }; /* our kernel's largest window (7x7); larger ones go to cuDNN */

/* Output element o of [n][oh][ow][c]. */
YOLO_HD float dw_fwd_1(const conv2d_desc *d, const float *x, const float *w, const float *bias,
                       size_t o) {
    const int C = d->cin;
    int ch = (int)(o % (size_t)C);
    size_t t = o / (size_t)C;
    int ox = (int)(t % (size_t)d->ow);
    t /= (size_t)d->ow;
    int oy = (int)(t % (size_t)d->oh), b = (int)(t / (size_t)d->oh);
    const float *wc = w + (size_t)ch * d->kh * d->kw;
    float acc = bias ? bias[ch] : 0.0f;
    for (int ki = 0; ki < d->kh; ki++) {
        int iy = oy * d->stride - d->pad + ki;
        if (iy < 0 || iy >= d->h) continue;
        for (int kj = 0; kj < d->kw; kj++) {
            int ix = ox * d->stride - d->pad + kj;
            if (ix < 0 || ix >= d->w) continue;
            acc = fmaf(x[(((size_t)b * d->h + iy) * d->w + ix) * C + ch], wc[ki * d->kw + kj], acc);
        }
    }
    return acc;
}

/* The term dx[i] += for input element i of [n][h][w][c]: every output whose window holds it. */
YOLO_HD float dw_bwd_data_1(const conv2d_desc *d, const float *w, const float *dy, size_t i) {
    const int C = d->cin, S = d->stride;
    int ch = (int)(i % (size_t)C);
    size_t t = i / (size_t)C;
    int ix = (int)(t % (size_t)d->w);
    t /= (size_t)d->w;
    int iy = (int)(t % (size_t)d->h), b = (int)(t / (size_t)d->h);
    const float *wc = w + (size_t)ch * d->kh * d->kw;
    float acc = 0.0f;
    for (int ki = 0; ki < d->kh; ki++) {
        int sy = iy + d->pad - ki; /* = oy * S */
        if (sy < 0 || sy % S) continue;
        int oy = sy / S;
        if (oy >= d->oh) continue;
        for (int kj = 0; kj < d->kw; kj++) {
            int sx = ix + d->pad - kj;
            if (sx < 0 || sx % S) continue;
            int ox = sx / S;
            if (ox >= d->ow) continue;
            acc = fmaf(dy[(((size_t)b * d->oh + oy) * d->ow + ox) * C + ch], wc[ki * d->kw + kj],
                       acc);
        }
    }
    return acc;
}

/* Weight and bias gradient sums of channel ch over output pixels [p0, p1) (pixel = (image, oy,
 * ox)): acc[t] += dy x for each tap t of the window, acc[kh kw] += dy. */
YOLO_HD void dw_filter_sums(const conv2d_desc *d, const float *x, const float *dy, int ch,
                            size_t p0, size_t p1, double *acc) {
    const int C = d->cin, KK = d->kh * d->kw;
    for (int t = 0; t <= KK; t++) acc[t] = 0;
    for (size_t p = p0; p < p1; p++) {
        int ox = (int)(p % (size_t)d->ow);
        size_t q = p / (size_t)d->ow;
        int oy = (int)(q % (size_t)d->oh), b = (int)(q / (size_t)d->oh);
        double g = dy[p * C + ch];
        acc[KK] += g;
        for (int ki = 0; ki < d->kh; ki++) {
            int iy = oy * d->stride - d->pad + ki;
            if (iy < 0 || iy >= d->h) continue;
            for (int kj = 0; kj < d->kw; kj++) {
                int ix = ox * d->stride - d->pad + kj;
                if (ix < 0 || ix >= d->w) continue;
                acc[ki * d->kw + kj] += g * x[(((size_t)b * d->h + iy) * d->w + ix) * C + ch];
            }
        }
    }
}

YOLO_HD int dw_is_depthwise(const conv2d_desc *d) {
    return d->groups > 1 && d->groups == d->cin && d->cin == d->cout;
}
