/* Batch norm fused with SiLU: the CPU reference, the two kernels one after the other (the fused
 * passes are the GPU's business; kernels/batchnorm_silu.h). */
#include "kernels/batchnorm_silu.h"

#include "common/log.h"
#include "kernels/activation.h"
#include "kernels/batchnorm.h"

#include <stdlib.h>

void batchnorm_silu_forward_train(int m, int c, const float *x, const float *gamma,
                                  const float *beta, float eps, float momentum, float *running_mean,
                                  float *running_var, float *save_mean, float *save_invstd,
                                  float *y) {
    batchnorm_forward_train(m, c, x, gamma, beta, eps, momentum, running_mean, running_var,
                            save_mean, save_invstd, y);
    silu_forward((size_t)m * c, y, y);
}

void batchnorm_silu_forward_infer(int m, int c, const float *x, const float *gamma,
                                  const float *beta, const float *running_mean,
                                  const float *running_var, float eps, float *y) {
    batchnorm_forward_infer(m, c, x, gamma, beta, running_mean, running_var, eps, y);
    silu_forward((size_t)m * c, y, y);
}

void batchnorm_silu_backward(int m, int c, const float *x, const float *gamma, const float *beta,
                             const float *save_mean, const float *save_invstd, const float *dy,
                             float *dx, float *dgamma, float *dbeta) {
    size_t n = (size_t)m * c;
    float *z = xmalloc(n * sizeof *z), *dz = xcalloc(n, sizeof *dz);
    float *scale = xmalloc((size_t)c * sizeof *scale);
    for (int ch = 0; ch < c; ch++) scale[ch] = batchnorm_silu_scale(gamma[ch], save_invstd[ch]);
    for (size_t r = 0; r < (size_t)m; r++)
        for (int ch = 0; ch < c; ch++) {
            size_t i = r * c + ch;
            z[i] = (x[i] - save_mean[ch]) * scale[ch] + beta[ch];
        }
    silu_backward(n, z, dy, dz);
    batchnorm_backward(m, c, x, gamma, save_mean, save_invstd, dz, dx, dgamma, dbeta);
    free(scale);
    free(dz);
    free(z);
}
