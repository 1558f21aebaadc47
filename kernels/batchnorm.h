/* Batch normalisation over NHWC activations viewed as [m][c] (m = n*h*w).
 * Ultralytics' settings: eps 1e-3, momentum 0.03, PyTorch convention:
 * running = (1 - momentum) running + momentum batch_stat, with the UNBIASED batch variance for
 * running_var and the biased one for normalising. Backward accumulates (+=) into dx, dgamma, dbeta.
 */
#pragma once

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
