/* Batch norm fused with SiLU on the CPU (kernels/batchnorm_silu.h): the passes of batch norm
 * (kernels/batchnorm_internal.h, kernels/bn_sums.h) with SiLU's expressions inside, element by
 * element, so the results are the bits of batchnorm_* followed by silu_* without the intermediate
 * tensors. Backward: pass 1 sums dz = silu'(z) dy and dz (x - mean) with z recomputed; pass 2
 * accumulates dx, recomputing dz (the sigmoid again: dx may hold other gradients, so it has no room
 * for dz). The write variant (_set) stores dz into dx in pass 1 and pass 2 turns it into dx in
 * place: one sigmoid per element instead of two, and the model skips zeroing dx. The bf16 variants
 * (for bf16 convolutions reading y, or taking dx as their dy) convert each row chunk as it is
 * produced, instead of a separate conversion pass over the tensor. */
#include "kernels/batchnorm_silu.h"

#include "common/log.h"
#include "kernels/batchnorm_internal.h"
#include "kernels/bn_sums.h"
#include "kernels/threads.h"

#include <stdlib.h>

void batchnorm_silu_forward_train_bf16(int m, int c, const float *x, const float *gamma,
                                       const float *beta, float eps, float momentum,
                                       float *running_mean, float *running_var, float *save_mean,
                                       float *save_invstd, float *y, bf16 *yb) {
    bn_forward_train(m, c, x, gamma, beta, eps, momentum, running_mean, running_var, save_mean,
                     save_invstd, true, y, yb);
}

void batchnorm_silu_forward_train(int m, int c, const float *x, const float *gamma,
                                  const float *beta, float eps, float momentum, float *running_mean,
                                  float *running_var, float *save_mean, float *save_invstd,
                                  float *y) {
    batchnorm_silu_forward_train_bf16(m, c, x, gamma, beta, eps, momentum, running_mean,
                                      running_var, save_mean, save_invstd, y, NULL);
}

void batchnorm_silu_forward_infer_bf16(int m, int c, const float *x, const float *gamma,
                                       const float *beta, const float *running_mean,
                                       const float *running_var, float eps, float *y, bf16 *yb) {
    bn_forward_infer(m, c, x, gamma, beta, running_mean, running_var, eps, true, y, yb);
}

void batchnorm_silu_forward_infer(int m, int c, const float *x, const float *gamma,
                                  const float *beta, const float *running_mean,
                                  const float *running_var, float eps, float *y) {
    batchnorm_silu_forward_infer_bf16(m, c, x, gamma, beta, running_mean, running_var, eps, y,
                                      NULL);
}

/* dx += k_scale (dz - k_mdy - (x - mean) k_xc) with dz recomputed from x and dy. */
static void dx_accumulate(int m, int c, const float *x, const float *save_mean, const float *scale,
                          const float *beta, const float *k, const float *dy, float *dx) {
    const float *k_scale = k, *k_mdy = k + c, *k_xc = k + 2 * c;
    long long work = (long long)m * c;
#pragma omp parallel for num_threads(kernels_threads()) schedule(static) if (work >= BN_PAR_MIN)
    for (int r = 0; r < m; r++) {
        const float *xr = x + (size_t)r * c, *dyr = dy + (size_t)r * c;
        float *dxr = dx + (size_t)r * c;
#pragma omp simd
        for (int ch = 0; ch < c; ch++) {
            float z = (xr[ch] - save_mean[ch]) * scale[ch] + beta[ch];
            float g = bn_silu_dz(z, dyr[ch]);
            dxr[ch] += k_scale[ch] * (g - k_mdy[ch] - (xr[ch] - save_mean[ch]) * k_xc[ch]);
        }
    }
}

/* dx = the same term from the dz already stored in dx (pass 1), + 0.0f: the bits of adding the
 * term to a zeroed dx (-0 becomes +0). With dxb the term goes to dxb in bf16 instead (dx keeps
 * dz), converted in chunks of a row from a stack buffer: bf16_from_f32 of the float dx. */
#define DX_BF16_CHUNK 256

static inline void dx_write_row(int n, const float *xr, const float *mean, const float *k_scale,
                                const float *k_mdy, const float *k_xc, const float *dz,
                                float *out) {
#pragma omp simd
    for (int ch = 0; ch < n; ch++)
        out[ch] = k_scale[ch] * (dz[ch] - k_mdy[ch] - (xr[ch] - mean[ch]) * k_xc[ch]) + 0.0f;
}

static void dx_write(int m, int c, const float *x, const float *save_mean, const float *k,
                     float *dx, bf16 *dxb) {
    const float *k_scale = k, *k_mdy = k + c, *k_xc = k + 2 * c;
    long long work = (long long)m * c;
#pragma omp parallel for num_threads(kernels_threads()) schedule(static) if (work >= BN_PAR_MIN)
    for (int r = 0; r < m; r++) {
        const float *xr = x + (size_t)r * c;
        float *dxr = dx + (size_t)r * c;
        if (!dxb) {
            dx_write_row(c, xr, save_mean, k_scale, k_mdy, k_xc, dxr, dxr);
            continue;
        }
        float tmp[DX_BF16_CHUNK];
        for (int c0 = 0; c0 < c; c0 += DX_BF16_CHUNK) {
            int n = c - c0 < DX_BF16_CHUNK ? c - c0 : DX_BF16_CHUNK;
            dx_write_row(n, xr + c0, save_mean + c0, k_scale + c0, k_mdy + c0, k_xc + c0, dxr + c0,
                         tmp);
            bf16_from_f32_row((size_t)n, tmp, dxb + (size_t)r * c + c0);
        }
    }
}

static void backward(int m, int c, const float *x, const float *gamma, const float *beta,
                     const float *save_mean, const float *save_invstd, const float *dy, float *dx,
                     bool write, bf16 *dxb, float *dgamma, float *dbeta) {
    if (m < 1 || c < 1) FATAL("batchnorm_silu_backward: bad shape m=%d c=%d", m, c);
    float *scale = xmalloc(sizeof(float) * 4 * c), *k = scale + c;
    for (int ch = 0; ch < c; ch++) scale[ch] = batchnorm_silu_scale(gamma[ch], save_invstd[ch]);
    double *sdy = xmalloc(sizeof(double) * 2 * c), *sdyx = sdy + c;
    bn_channel_sums(&(bn_sums_in){.kind = BN_SUMS_DZ_SILU,
                                  .m = m,
                                  .c = c,
                                  .a = dy,
                                  .b = x,
                                  .mean = save_mean,
                                  .scale = scale,
                                  .beta = beta,
                                  .dz = write ? dx : NULL},
                    sdy, sdyx);
    bn_backward_coefs(m, c, gamma, save_invstd, sdy, sdyx, dgamma, dbeta, k);
    if (dx && write)
        dx_write(m, c, x, save_mean, k, dx, dxb);
    else if (dx)
        dx_accumulate(m, c, x, save_mean, scale, beta, k, dy, dx);
    free(sdy);
    free(scale);
}

void batchnorm_silu_backward(int m, int c, const float *x, const float *gamma, const float *beta,
                             const float *save_mean, const float *save_invstd, const float *dy,
                             float *dx, float *dgamma, float *dbeta) {
    backward(m, c, x, gamma, beta, save_mean, save_invstd, dy, dx, false, NULL, dgamma, dbeta);
}

void batchnorm_silu_backward_set(int m, int c, const float *x, const float *gamma,
                                 const float *beta, const float *save_mean,
                                 const float *save_invstd, const float *dy, float *dx,
                                 float *dgamma, float *dbeta) {
    backward(m, c, x, gamma, beta, save_mean, save_invstd, dy, dx, true, NULL, dgamma, dbeta);
}

void batchnorm_silu_backward_set_bf16(int m, int c, const float *x, const float *gamma,
                                      const float *beta, const float *save_mean,
                                      const float *save_invstd, const float *dy, float *dx,
                                      bf16 *dxb, float *dgamma, float *dbeta) {
    if (!dx || !dxb) FATAL("batchnorm_silu_backward_set_bf16: needs dx (scratch) and dxb");
    backward(m, c, x, gamma, beta, save_mean, save_invstd, dy, dx, true, dxb, dgamma, dbeta);
}
