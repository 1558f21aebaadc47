/* Batch norm over [m][c] (NHWC flattened). Per-channel sums are accumulated in double over fixed
 * chunks of rows, and the chunk partials are added in chunk order, so the result does not depend
 * on the thread count (chunking is by row count, never by thread). */
#include "kernels/batchnorm.h"

#include "common/log.h"
#include "kernels/threads.h"

#include <math.h>
#include <stdlib.h>

/* Rows per partial sum: big enough to amortise the partial buffers, small enough to spread the
 * work of a 20x20 feature map over 2+ threads. */
#define BN_CHUNK_ROWS 256
/* Below this many elements a parallel region costs more than it saves. */
#define BN_PAR_MIN 32768

static int chunk_count(int m) {
    return (m + BN_CHUNK_ROWS - 1) / BN_CHUNK_ROWS;
}

/* s1[ch] = sum_r a[r][ch]; s2[ch] = sum_r a[r][ch] * b[r][ch], or sum of a^2 when b is NULL,
 * where b is shifted by shift[ch] (b - shift) when shift is non-NULL. Deterministic. */
static void channel_sums(int m, int c, const float *a, const float *b, const float *shift,
                         double *s1, double *s2) {
    int nchunk = chunk_count(m);
    double *part = xcalloc((size_t)nchunk * 2 * c, sizeof(double));
    long long work = (long long)m * c;
#pragma omp parallel for num_threads(kernels_threads()) schedule(static) if (work >= BN_PAR_MIN)
    for (int k = 0; k < nchunk; k++) {
        double *p1 = part + (size_t)k * 2 * c, *p2 = p1 + c;
        int r1 = (k + 1) * BN_CHUNK_ROWS < m ? (k + 1) * BN_CHUNK_ROWS : m;
        for (int r = k * BN_CHUNK_ROWS; r < r1; r++) {
            const float *ar = a + (size_t)r * c;
            if (!b) {
                for (int ch = 0; ch < c; ch++) {
                    double v = ar[ch];
                    p1[ch] += v;
                    p2[ch] += v * v;
                }
            } else {
                const float *br = b + (size_t)r * c;
                for (int ch = 0; ch < c; ch++) {
                    p1[ch] += ar[ch];
                    p2[ch] += (double)ar[ch] * ((double)br[ch] - shift[ch]);
                }
            }
        }
    }
    for (int ch = 0; ch < c; ch++) s1[ch] = s2[ch] = 0.0;
    for (int k = 0; k < nchunk; k++) {
        const double *p1 = part + (size_t)k * 2 * c, *p2 = p1 + c;
        for (int ch = 0; ch < c; ch++) {
            s1[ch] += p1[ch];
            s2[ch] += p2[ch];
        }
    }
    free(part);
}

/* y = (x - mean) * scale + beta per channel. */
static void normalise(int m, int c, const float *x, const float *mean, const float *scale,
                      const float *beta, float *y) {
    long long work = (long long)m * c;
#pragma omp parallel for num_threads(kernels_threads()) schedule(static) if (work >= BN_PAR_MIN)
    for (int r = 0; r < m; r++) {
        const float *xr = x + (size_t)r * c;
        float *yr = y + (size_t)r * c;
        for (int ch = 0; ch < c; ch++) yr[ch] = (xr[ch] - mean[ch]) * scale[ch] + beta[ch];
    }
}

void batchnorm_forward_train(int m, int c, const float *x, const float *gamma, const float *beta,
                             float eps, float momentum, float *running_mean, float *running_var,
                             float *save_mean, float *save_invstd, float *y) {
    if (m < 1 || c < 1) FATAL("batchnorm_forward_train: bad shape m=%d c=%d", m, c);
    double *s1 = xmalloc(sizeof(double) * 2 * c), *s2 = s1 + c;
    float *scale = xmalloc(sizeof(float) * c);
    channel_sums(m, c, x, NULL, NULL, s1, s2);
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
    normalise(m, c, x, save_mean, scale, beta, y);
    free(scale);
    free(s1);
}

void batchnorm_forward_infer(int m, int c, const float *x, const float *gamma, const float *beta,
                             const float *running_mean, const float *running_var, float eps,
                             float *y) {
    float *scale = xmalloc(sizeof(float) * c);
    for (int ch = 0; ch < c; ch++)
        scale[ch] = (float)(gamma[ch] / sqrt((double)running_var[ch] + eps));
    normalise(m, c, x, running_mean, scale, beta, y);
    free(scale);
}

/* With xhat = (x - mean) invstd and y = gamma xhat + beta:
 *   dbeta = sum dy, dgamma = sum dy xhat,
 *   dx = gamma invstd (dy - dbeta/m - xhat dgamma/m). */
void batchnorm_backward(int m, int c, const float *x, const float *gamma, const float *save_mean,
                        const float *save_invstd, const float *dy, float *dx, float *dgamma,
                        float *dbeta) {
    double *sdy = xmalloc(sizeof(double) * 2 * c), *sdyx = sdy + c;
    float *k_scale = xmalloc(sizeof(float) * 3 * c), *k_mdy = k_scale + c, *k_xc = k_mdy + c;
    channel_sums(m, c, dy, x, save_mean, sdy, sdyx); /* sdyx = sum dy (x - mean) */
    for (int ch = 0; ch < c; ch++) {
        double invstd = save_invstd[ch];
        double sum_dy_xhat = sdyx[ch] * invstd;
        if (dbeta) dbeta[ch] += (float)sdy[ch];
        if (dgamma) dgamma[ch] += (float)sum_dy_xhat;
        /* dx = k_scale * (dy - k_mdy - (x - mean) * k_xc) */
        k_scale[ch] = (float)(gamma[ch] * invstd);
        k_mdy[ch] = (float)(sdy[ch] / m);
        k_xc[ch] = (float)(sum_dy_xhat * invstd / m);
    }
    if (dx) {
        long long work = (long long)m * c;
#pragma omp parallel for num_threads(kernels_threads()) schedule(static) if (work >= BN_PAR_MIN)
        for (int r = 0; r < m; r++) {
            const float *xr = x + (size_t)r * c, *dyr = dy + (size_t)r * c;
            float *dxr = dx + (size_t)r * c;
            for (int ch = 0; ch < c; ch++)
                dxr[ch] +=
                    k_scale[ch] * (dyr[ch] - k_mdy[ch] - (xr[ch] - save_mean[ch]) * k_xc[ch]);
        }
    }
    free(k_scale);
    free(sdy);
}
