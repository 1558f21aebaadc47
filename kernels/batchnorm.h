/* Batch normalisation over NHWC activations viewed as [m][c] (m = n*h*w).
 * Ultralytics' settings: eps 1e-3, momentum 0.03, PyTorch convention:
 * running = (1 - momentum) running + momentum batch_stat, with the UNBIASED batch variance for
 * running_var and the biased one for normalising. Backward accumulates (+=) into dx, dgamma, dbeta.
 */
#pragma once
#include "kernels/bf16.h"

#include <stdbool.h>

#define BN_EPS 1e-3f
#define BN_MOMENTUM 0.03f

/* running_mean/running_var may be NULL (no update). save_mean/save_invstd [c] are kept for
 * backward (save_invstd = 1/sqrt(biased var + eps)). In backward any of dx, dgamma, dbeta may be
 * NULL. Per-channel sums are in double over fixed row chunks: results do not depend on threads. */
void batchnorm_forward_train(int m, int c, const float *x, const float *gamma, const float *beta,
                             float eps, float momentum, float *running_mean, float *running_var,
                             float *save_mean, float *save_invstd, float *y);
void batchnorm_forward_infer(int m, int c, const float *x, const float *gamma, const float *beta,
                             const float *running_mean, const float *running_var, float eps,
                             float *y);
void batchnorm_backward(int m, int c, const float *x, const float *gamma, const float *save_mean,
                        const float *save_invstd, const float *dy, float *dx, float *dgamma,
                        float *dbeta);

/* ---- batch norm fused with SiLU (Ultralytics' Conv: conv -> BN -> SiLU) ----
 * y = silu(bn(x)) with exactly the arithmetic of batchnorm_forward_train (or _infer) followed by
 * silu_forward, element by element (the same bits), without the intermediate tensor.
 * save [3c]: save_mean, save_invstd (as batchnorm_forward_train) and the per-channel scale
 * (float)(invstd * gamma) that backward needs to recompute z = bn(x) exactly. z (may be NULL)
 * receives bn(x) (for inspection: model_activation's "<conv>.bn"); yb (may be NULL) receives
 * bf16(y) (kernels/bf16.h), the input a bf16 convolution reads. */
void bn_silu_forward_train(int m, int c, const float *x, const float *gamma, const float *beta,
                           float eps, float momentum, float *running_mean, float *running_var,
                           float *save, float *y, float *z, bf16 *yb);
void bn_silu_forward_infer(int m, int c, const float *x, const float *gamma, const float *beta,
                           const float *running_mean, const float *running_var, float eps, float *y,
                           bf16 *yb);
/* dy: gradient of y = silu(bn(x)); y: the forward's output (silu's sigmoid is recovered from it
 * as y / bn(x), one division instead of an exp: kernels/bn_sums.h, bn_silu_sigmoid). dx is
 * WRITTEN (=), not accumulated: x is a convolution's output that only this op reads, so nothing
 * else adds to its gradient and the caller need not zero it; dxb receives bf16(dx) instead of or
 * besides dx (the dy a bf16 convolution's backward reads; at least one of dx and dxb is given).
 * dgamma += d/dgamma, dbeta += d/dbeta (may be NULL). The result is batchnorm_backward of
 * silu_backward's dz, up to the sigmoid's few float ulps. dz (may be NULL) receives (=)
 * d loss / d bn(x), for inspection. save: the forward's. */
void bn_silu_backward(int m, int c, const float *x, const float *gamma, const float *beta,
                      const float *save, const float *y, const float *dy, float *dx, bf16 *dxb,
                      float *dgamma, float *dbeta, float *dz);
