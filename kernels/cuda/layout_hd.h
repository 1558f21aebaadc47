/* Index math of the layout ops (kernels/cuda/layout.cu) for the CUDA kernels and the CPU tests.
 * Twin: kernels/tensor_ops.c (NHWC tensors). */
#pragma once
#include "kernels/cuda/hd.h"

#include <stddef.h>

/* upsample2x_forward: the input element that output element o of [n][2h][2w][c] copies. */
YOLO_HD size_t upsample2x_src(size_t o, int h, int w, int c) {
    size_t ch = o % (size_t)c, t = o / (size_t)c;
    size_t ox = t % (size_t)(2 * w);
    t /= (size_t)(2 * w);
    size_t oy = t % (size_t)(2 * h), b = t / (size_t)(2 * h);
    return ((b * (size_t)h + oy / 2) * (size_t)w + ox / 2) * (size_t)c + ch;
}

/* upsample2x_backward: the term dx[i] += for input element i of [n][h][w][c]: the 2x2 block of
 * dy it was copied to, added as the CPU loop adds it. */
YOLO_HD float upsample2x_grad(const float *dy, size_t i, int h, int w, int c) {
    (void)h;
    size_t ch = i % (size_t)c, t = i / (size_t)c;
    size_t ix = t % (size_t)w, row = t / (size_t)w; /* row = image * h + iy */
    size_t orow = (size_t)2 * w * c;                /* floats per output row */
    const float *a = dy + row * 2 * orow + 2 * ix * (size_t)c + ch, *b = a + orow;
    return (a[0] + a[c]) + (b[0] + b[c]);
}

/* A strided 2-D view: element i of rows x width is row i / width, column i % width, at
 * row * ld + column. Concat and slice gradients accumulate between two such views. */
YOLO_HD size_t strided_at(size_t i, size_t width, size_t ld) {
    return (i / width) * ld + i % width;
}
