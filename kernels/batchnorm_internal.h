/* Internal to kernels/ (batchnorm.c, batchnorm_silu.c): the passes of batch norm that the plain
 * and the SiLU-fused ops share, so that both run the same float expressions. */
#pragma once
#include "kernels/bf16.h"

#include <stdbool.h>

/* y = z = (x - mean) * scale + beta per channel, or y = silu(z) (kernels/activation.c's
 * expression) with `silu`; with yb also yb = bf16(y) (bf16_from_f32's bits), and then y may be
 * NULL (not written). */
void bn_normalise(int m, int c, const float *x, const float *mean, const float *scale,
                  const float *beta, bool silu, float *y, bf16 *yb);
/* Batch statistics (save_mean, save_invstd), running statistics (may be NULL) and the per-channel
 * scale (float)(invstd * gamma) that normalises. */
void bn_train_stats(int m, int c, const float *x, const float *gamma, float eps, float momentum,
                    float *running_mean, float *running_var, float *save_mean, float *save_invstd,
                    float *scale);
/* The eval scale gamma / sqrt(running_var + eps). */
void bn_infer_scale(int c, const float *gamma, const float *running_var, float eps, float *scale);
/* From sdy = sum dy and sdyx = sum dy (x - mean): dgamma +=, dbeta += (may be NULL) and
 * k[0..3c) = (k_scale, k_mdy, k_xc) with dx = k_scale * (dy - k_mdy - (x - mean) * k_xc). */
void bn_backward_coefs(int m, int c, const float *gamma, const float *save_invstd,
                       const double *sdy, const double *sdyx, float *dgamma, float *dbeta,
                       float *k);
