/* Max pooling (kernels/cuda/pool.cu) per output and per input element, for the CUDA kernels and
 * the CPU tests. Twin: kernels/pool.c (NHWC, only in-bounds taps compete, ties keep the first tap
 * in (ky, kx) order, a NaN wins). */
#pragma once
#include "kernels/cuda/hd.h"

#include <stddef.h>
#include <stdint.h>

typedef struct pool_geom {
    int n, h, w, c, k, stride, pad, oh, ow;
} pool_geom;

YOLO_HD pool_geom pool_geom_make(int n, int h, int w, int c, int k, int stride, int pad) {
    pool_geom g = {
        n, h, w, c, k, stride, pad, (h + 2 * pad - k) / stride + 1, (w + 2 * pad - k) / stride + 1};
    return g;
}

/* Output element o of [n][oh][ow][c]: the maximum and its flat input index. */
YOLO_HD void maxpool_fwd_1(const pool_geom *g, const float *x, size_t o, float *y,
                           int32_t *argmax) {
    int ch = (int)(o % (size_t)g->c);
    size_t t = o / (size_t)g->c;
    int ox = (int)(t % (size_t)g->ow);
    t /= (size_t)g->ow;
    int oy = (int)(t % (size_t)g->oh), b = (int)(t / (size_t)g->oh);
    int y0 = oy * g->stride - g->pad, y1 = y0 + g->k, x0 = ox * g->stride - g->pad, x1 = x0 + g->k;
    if (y0 < 0) y0 = 0;
    if (y1 > g->h) y1 = g->h;
    if (x0 < 0) x0 = 0;
    if (x1 > g->w) x1 = g->w;
    int32_t best = (int32_t)((((size_t)b * g->h + y0) * g->w + x0) * g->c + ch);
    float m = x[best];
    for (int iy = y0; iy < y1; iy++)
        for (int ix = x0; ix < x1; ix++) {
            int32_t at = (int32_t)((((size_t)b * g->h + iy) * g->w + ix) * g->c + ch);
            float v = x[at];
            if (v > m || v != v) {
                m = v;
                best = at;
            }
        }
    *y = m;
    *argmax = best;
}

/* Input element i of [n][h][w][c]: dx[i] plus every dy whose argmax is i, added in output order
 * (the order of the CPU's scatter), so no atomics and the CPU's bits. */
YOLO_HD float maxpool_bwd_1(const pool_geom *g, const float *dy, const int32_t *argmax, size_t i,
                            float dx) {
    int ch = (int)(i % (size_t)g->c);
    size_t t = i / (size_t)g->c;
    int ix = (int)(t % (size_t)g->w);
    t /= (size_t)g->w;
    int iy = (int)(t % (size_t)g->h), b = (int)(t / (size_t)g->h);
    /* windows [o*stride - pad, o*stride - pad + k) that hold iy */
    int lo_y = iy + g->pad - g->k + 1, hi_y = iy + g->pad;
    int lo_x = ix + g->pad - g->k + 1, hi_x = ix + g->pad;
    int oy0 = lo_y > 0 ? (lo_y + g->stride - 1) / g->stride : 0, oy1 = hi_y / g->stride;
    int ox0 = lo_x > 0 ? (lo_x + g->stride - 1) / g->stride : 0, ox1 = hi_x / g->stride;
    if (oy1 > g->oh - 1) oy1 = g->oh - 1;
    if (ox1 > g->ow - 1) ox1 = g->ow - 1;
    for (int oy = oy0; oy <= oy1; oy++)
        for (int ox = ox0; ox <= ox1; ox++) {
            size_t p = (((size_t)b * g->oh + oy) * g->ow + ox) * g->c + ch;
            if ((size_t)argmax[p] == i) dx += dy[p];
        }
    return dx;
}
