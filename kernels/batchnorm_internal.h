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
/* The whole training forward: batch statistics (save_mean, save_invstd), running statistics (may
 * be NULL), then bn_normalise with the scale (float)(invstd * gamma). */
void bn_forward_train(int m, int c, const float *x, const float *gamma, const float *beta,
                      float eps, float momentum, float *running_mean, float *running_var,
                      float *save_mean, float *save_invstd, bool silu, float *y, bf16 *yb);
/* The whole eval forward: bn_normalise with the scale gamma / sqrt(running_var + eps). */
void bn_forward_infer(int m, int c, const float *x, const float *gamma, const float *beta,
                      const float *running_mean, const float *running_var, float eps, bool silu,
                      float *y, bf16 *yb);
/* From sdy = sum dy and sdyx = sum dy (x - mean): dgamma +=, dbeta += (may be NULL) and
 * k[0..3c) = (k_scale, k_mdy, k_xc) with dx = k_scale * (dy - k_mdy - (x - mean) * k_xc). */
void bn_backward_coefs(int m, int c, const float *gamma, const float *save_invstd,
                       const double *sdy, const double *sdyx, float *dgamma, float *dbeta,
                       float *k);
