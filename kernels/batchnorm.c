/* Batch norm over [m][c] (NHWC flattened). Per-channel sums are accumulated in double over fixed
 * chunks of rows, and the chunk partials are added in chunk order, so the result does not depend
 * on the thread count (chunking is by row count, never by thread): kernels/bn_sums.h. The passes
 * are shared with the fused BN + SiLU (kernels/batchnorm_silu.c: batchnorm_internal.h). */
#include "kernels/batchnorm.h"

#include "common/log.h"
#include "kernels/batchnorm_internal.h"
#include "kernels/bn_sums.h"
#include "kernels/fast_exp.h"
#include "kernels/threads.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One row segment of n channels from channel offset c0 (mean, scale, beta are per channel). */
static inline void normalise_row(int n, const float *xr, const float *mean, const float *scale,
                                 const float *beta, bool silu, float *yr) {
    if (!silu) {
#pragma omp simd
        for (int ch = 0; ch < n; ch++) yr[ch] = (xr[ch] - mean[ch]) * scale[ch] + beta[ch];
        return;
    }
#pragma omp simd
    for (int ch = 0; ch < n; ch++) {
        float z = (xr[ch] - mean[ch]) * scale[ch] + beta[ch];
        yr[ch] = z / (1.0f + exp_fast(-z));
    }
}

/* With yb, each row is converted in chunks while it is in L1 (from y, or from a stack buffer
 * when y is NULL): the float values are those of the plain pass, so the bits of bf16_from_f32. */
#define BN_BF16_CHUNK 256

void bn_normalise(int m, int c, const float *x, const float *mean, const float *scale,
                  const float *beta, bool silu, float *y, bf16 *yb) {
    long long work = (long long)m * c;
#pragma omp parallel for num_threads(kernels_threads()) schedule(static) if (work >= BN_PAR_MIN)
    for (int r = 0; r < m; r++) {
        const float *xr = x + (size_t)r * c;
        float *yr = y ? y + (size_t)r * c : NULL;
        if (!yb) {
            normalise_row(c, xr, mean, scale, beta, silu, yr);
            continue;
        }
        float tmp[BN_BF16_CHUNK];
        for (int c0 = 0; c0 < c; c0 += BN_BF16_CHUNK) {
            int n = c - c0 < BN_BF16_CHUNK ? c - c0 : BN_BF16_CHUNK;
            float *out = yr ? yr + c0 : tmp;
            normalise_row(n, xr + c0, mean + c0, scale + c0, beta + c0, silu, out);
            bf16_from_f32_row((size_t)n, out, yb + (size_t)r * c + c0);
        }
    }
}

/* Batch statistics, running statistics (may be NULL) and the scale (float)(invstd * gamma). */
static void bn_train_stats(int m, int c, const float *x, const float *gamma, float eps,
                           float momentum, float *running_mean, float *running_var,
                           float *save_mean, float *save_invstd, float *scale) {
    if (m < 1 || c < 1) FATAL("batchnorm_forward_train: bad shape m=%d c=%d", m, c);
    double *s1 = xmalloc(sizeof(double) * 2 * c), *s2 = s1 + c;
    bn_channel_sums(&(bn_sums_in){.kind = BN_SUMS_X, .m = m, .c = c, .a = x}, s1, s2);
    for (int ch = 0; ch < c; ch++) {
        double mean = s1[ch] / m;
        double var = s2[ch] / m - mean * mean; /* biased: used to normalise */
        if (var < 0) var = 0;
        double invstd = 1.0 / sqrt(var + eps);
        save_mean[ch] = (float)mean;
        save_invstd[ch] = (float)invstd;
        scale[ch] = (float)(invstd * gamma[ch]);
        if (running_mean) running_mean[ch] = (1 - momentum) * running_mean[ch] + momentum * mean;
        if (running_var) {
            /* PyTorch: the running variance takes the unbiased estimate (m / (m - 1)). With
             * m == 1 PyTorch refuses to train; we keep the biased value (0) instead. */
            double unbiased = m > 1 ? var * m / (m - 1) : var;
            running_var[ch] = (1 - momentum) * running_var[ch] + momentum * unbiased;
        }
    }
    free(s1);
}

void bn_forward_train(int m, int c, const float *x, const float *gamma, const float *beta,
                      float eps, float momentum, float *running_mean, float *running_var,
                      float *save_mean, float *save_invstd, bool silu, float *y, bf16 *yb) {
    float *scale = xmalloc(sizeof(float) * c);
    bn_train_stats(m, c, x, gamma, eps, momentum, running_mean, running_var, save_mean, save_invstd,
                   scale);
    bn_normalise(m, c, x, save_mean, scale, beta, silu, y, yb);
    free(scale);
}

void batchnorm_forward_train(int m, int c, const float *x, const float *gamma, const float *beta,
                             float eps, float momentum, float *running_mean, float *running_var,
                             float *save_mean, float *save_invstd, float *y) {
    bn_forward_train(m, c, x, gamma, beta, eps, momentum, running_mean, running_var, save_mean,
                     save_invstd, false, y, NULL);
}

/* The eval scale gamma / sqrt(running_var + eps). */
static void bn_infer_scale(int c, const float *gamma, const float *running_var, float eps,
                           float *scale) {
    for (int ch = 0; ch < c; ch++)
        scale[ch] = (float)(gamma[ch] / sqrt((double)running_var[ch] + eps));
}

void bn_forward_infer(int m, int c, const float *x, const float *gamma, const float *beta,
                      const float *running_mean, const float *running_var, float eps, bool silu,
                      float *y, bf16 *yb) {
    float *scale = xmalloc(sizeof(float) * c);
    bn_infer_scale(c, gamma, running_var, eps, scale);
    bn_normalise(m, c, x, running_mean, scale, beta, silu, y, yb);
    free(scale);
}

void batchnorm_forward_infer(int m, int c, const float *x, const float *gamma, const float *beta,
                             const float *running_mean, const float *running_var, float eps,
                             float *y) {
    bn_forward_infer(m, c, x, gamma, beta, running_mean, running_var, eps, false, y, NULL);
}

/* With xhat = (x - mean) invstd and y = gamma xhat + beta:
 *   dbeta = sum dy, dgamma = sum dy xhat,
 *   dx = gamma invstd (dy - dbeta/m - xhat dgamma/m).
 * From the sums sdy = sum dy, sdyx = sum dy (x - mean): the gradients of gamma and beta, and
 * k[0..3c) = (k_scale, k_mdy, k_xc) with dx = k_scale * (dy - k_mdy - (x - mean) * k_xc). */
void bn_backward_coefs(int m, int c, const float *gamma, const float *save_invstd,
                       const double *sdy, const double *sdyx, float *dgamma, float *dbeta,
                       float *k) {
    float *k_scale = k, *k_mdy = k + c, *k_xc = k + 2 * c;
    for (int ch = 0; ch < c; ch++) {
        double invstd = save_invstd[ch];
        double sum_dy_xhat = sdyx[ch] * invstd;
        if (dbeta) dbeta[ch] += (float)sdy[ch];
        if (dgamma) dgamma[ch] += (float)sum_dy_xhat;
        k_scale[ch] = (float)(gamma[ch] * invstd);
        k_mdy[ch] = (float)(sdy[ch] / m);
        k_xc[ch] = (float)(sum_dy_xhat * invstd / m);
    }
}

void batchnorm_backward(int m, int c, const float *x, const float *gamma, const float *save_mean,
                        const float *save_invstd, const float *dy, float *dx, float *dgamma,
                        float *dbeta) {
    double *sdy = xmalloc(sizeof(double) * 2 * c), *sdyx = sdy + c;
    float *k = xmalloc(sizeof(float) * 3 * c);
    bn_channel_sums(
        &(bn_sums_in){.kind = BN_SUMS_DY_X, .m = m, .c = c, .a = dy, .b = x, .mean = save_mean},
        sdy, sdyx);
    bn_backward_coefs(m, c, gamma, save_invstd, sdy, sdyx, dgamma, dbeta, k);
    const float *k_scale = k, *k_mdy = k + c, *k_xc = k + 2 * c;
    if (dx) {
        long long work = (long long)m * c;
#pragma omp parallel for num_threads(kernels_threads()) schedule(static) if (work >= BN_PAR_MIN)
        for (int r = 0; r < m; r++) {
            const float *xr = x + (size_t)r * c, *dyr = dy + (size_t)r * c;
            float *dxr = dx + (size_t)r * c;
#pragma omp simd
            for (int ch = 0; ch < c; ch++)
                dxr[ch] +=
                    k_scale[ch] * (dyr[ch] - k_mdy[ch] - (xr[ch] - save_mean[ch]) * k_xc[ch]);
        }
    }
    free(k);
    free(sdy);
}
