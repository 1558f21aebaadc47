/* Batch norm fused with SiLU, the Conv-BN-SiLU unit's tail: y = silu(batchnorm(x)) without the
 * intermediate tensor. The CPU kernels (kernels/batchnorm_silu.c; what the model trains with and
 * the reference the op harness holds other backends to) fuse the passes and give the bits of
 * batchnorm_* followed by silu_* (tests/test_ops_fused.c checks it); kernels/cuda/batchnorm.cu
 * fuses them on the GPU.
 *
 * Forward train / eval: the outputs and statistics of batchnorm_forward_train / _infer, then SiLU.
 * Backward: recomputes z = batchnorm(x) from the saved statistics and gamma, beta (scale =
 * save_invstd * gamma: z can differ from the forward's in the last bit), dz = silu'(z) dy, and
 * accumulates dx, dgamma, dbeta as batchnorm_backward does with dz (any may be NULL). */
#pragma once
#include "kernels/bf16.h"
#include "kernels/cuda/hd.h"

void batchnorm_silu_forward_train(int m, int c, const float *x, const float *gamma,
                                  const float *beta, float eps, float momentum, float *running_mean,
                                  float *running_var, float *save_mean, float *save_invstd,
                                  float *y);
void batchnorm_silu_forward_infer(int m, int c, const float *x, const float *gamma,
                                  const float *beta, const float *running_mean,
                                  const float *running_var, float eps, float *y);
void batchnorm_silu_backward(int m, int c, const float *x, const float *gamma, const float *beta,
                             const float *save_mean, const float *save_invstd, const float *dy,
                             float *dx, float *dgamma, float *dbeta);
/* batchnorm_silu_backward with dx WRITTEN (=) rather than accumulated, for a gradient that this op
 * is the first to produce: the bits of batchnorm_silu_backward into a zeroed dx. */
void batchnorm_silu_backward_set(int m, int c, const float *x, const float *gamma,
                                 const float *beta, const float *save_mean,
                                 const float *save_invstd, const float *dy, float *dx,
                                 float *dgamma, float *dbeta);
/* bf16 variants, for bf16 convolutions that read the output (kernels/bf16.h): forward also writes
 * yb = bf16(y) in the same pass (bf16_from_f32's bits) and y may be NULL (not written); backward
 * (_set) writes bf16(dx) into dxb and uses dx as float scratch of m*c (left holding dz). */
void batchnorm_silu_forward_train_bf16(int m, int c, const float *x, const float *gamma,
                                       const float *beta, float eps, float momentum,
                                       float *running_mean, float *running_var, float *save_mean,
                                       float *save_invstd, float *y, bf16 *yb);
void batchnorm_silu_forward_infer_bf16(int m, int c, const float *x, const float *gamma,
                                       const float *beta, const float *running_mean,
                                       const float *running_var, float eps, float *y, bf16 *yb);
void batchnorm_silu_backward_set_bf16(int m, int c, const float *x, const float *gamma,
                                      const float *beta, const float *save_mean,
                                      const float *save_invstd, const float *dy, float *dx,
                                      bf16 *dxb, float *dgamma, float *dbeta);
/* The recomputation's per-channel scale (also the CUDA kernels'). */
YOLO_HD float batchnorm_silu_scale(float gamma, float save_invstd) {
    return (float)((double)save_invstd * gamma);
}
