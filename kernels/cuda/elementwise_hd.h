/* Per-element functions of the elementwise ops, for the CUDA kernels (kernels/cuda/elementwise.cu)
 * and the CPU tests. Twins: kernels/activation.c (SiLU), kernels/tensor_ops.c. Written with the
 * CPU loops' operations in the CPU loops' order, so that (without FMA contraction, which neither
 * build does) they give the CPU's bits. */
#pragma once
#include "kernels/cuda/hd.h"
#include "kernels/fast_exp.h"

#include <stddef.h>
#include <stdint.h>

/* silu_forward */
YOLO_HD float silu_fwd_1(float v) {
    return v / (1.0f + exp_fast(-v));
}
/* silu_backward: the term dx[i] += */
YOLO_HD float silu_bwd_1(float v, float dy) {
    float s = 1.0f / (1.0f + exp_fast(-v));
    return dy * s * (1.0f + v * (1.0f - s));
}
/* normalize_u8 */
YOLO_HD float normalize_u8_1(uint8_t x, float s) {
    return x * s;
}
