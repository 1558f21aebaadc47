/* Batch norm (kernels/cuda/batchnorm.cu) in pieces that the CUDA kernels and the CPU tests share.
 * Twin: kernels/batchnorm.c, whose formulas these repeat operation for operation: per-channel sums
 * in double, mean / biased variance / invstd in double, PyTorch's running update with the
 * unbiased variance, the normalisation and the backward's three per-channel constants in float.
 *
 * The sums are split as the GPU splits them: the m rows are cut into `chunks` of `rows_per_chunk`
 * consecutive rows; inside a chunk, `lanes` threads each add every lanes-th row; the lanes of a
 * chunk are added in lane order, the chunks of a channel in chunk order. Only the order of the
 * double additions differs from the CPU's. */
#pragma once
#include "kernels/cuda/elementwise_hd.h"
#include "kernels/cuda/hd.h"

#include <math.h>
#include <stddef.h>

enum { BN_LANES = 8, BN_CH_TILE = 32 }; /* a block of the sums kernel: 32 channels x 8 lanes */

/* A launch's split of m rows: chunks of rows_per_chunk consecutive rows (the last may be short),
 * enough blocks of BN_CH_TILE x BN_LANES threads to fill sm_count SMs, chunks of >= 64 rows. */
typedef struct bn_split {
    size_t rows_per_chunk;
    int chunks;
} bn_split;
YOLO_HD bn_split bn_split_rows(int m, int c, int sm_count) {
    int tiles = (c + BN_CH_TILE - 1) / BN_CH_TILE;
    long want = (long)sm_count * 8 / tiles;
    long by_rows = (m + 63) / 64;
    long chunks = want < by_rows ? want : by_rows;
    if (chunks < 1) chunks = 1;
    bn_split s;
    s.rows_per_chunk = ((size_t)m + (size_t)chunks - 1) / (size_t)chunks;
    s.chunks = (int)(((size_t)m + s.rows_per_chunk - 1) / s.rows_per_chunk);
    return s;
}

/* Sum of a[r][ch] and of a[r][ch]^2 (b NULL) or a[r][ch] * (b[r][ch] - shift) over rows
 * r0 + lane, r0 + lane + lanes, ... < r1. */
YOLO_HD void bn_lane_sums(const float *a, const float *b, float shift, int c, int ch, size_t r0,
                          size_t r1, int lane, int lanes, double *s1, double *s2) {
    double p1 = 0, p2 = 0;
    for (size_t r = r0 + (size_t)lane; r < r1; r += (size_t)lanes) {
        double v = a[r * (size_t)c + (size_t)ch];
        p1 += v;
        p2 += b ? v * ((double)b[r * (size_t)c + (size_t)ch] - shift) : v * v;
    }
    *s1 = p1;
    *s2 = p2;
}

/* The statistics of one channel from its sums, as batchnorm_forward_train computes them; writes
 * save_mean, save_invstd, the running buffers (when not NULL) and returns the float scale
 * invstd * gamma. */
YOLO_HD float bn_train_channel(double s1, double s2, int m, float gamma, float eps, float momentum,
                               float *running_mean, float *running_var, float *save_mean,
                               float *save_invstd) {
    double mean = s1 / m;
    double var = s2 / m - mean * mean;
    if (var < 0) var = 0;
    double invstd = 1.0 / sqrt(var + eps);
    *save_mean = (float)mean;
    *save_invstd = (float)invstd;
    if (running_mean) *running_mean = (1 - momentum) * *running_mean + momentum * mean;
    if (running_var) {
        double unbiased = m > 1 ? var * m / (m - 1) : var;
        *running_var = (1 - momentum) * *running_var + momentum * unbiased;
    }
    return (float)(invstd * gamma);
}

/* batchnorm_forward_infer's per-channel scale. */
YOLO_HD float bn_eval_scale(float gamma, float running_var, float eps) {
    return (float)(gamma / sqrt((double)running_var + eps));
}

/* y = (x - mean) * scale + beta */
YOLO_HD float bn_norm_1(float x, float mean, float scale, float beta) {
    return (x - mean) * scale + beta;
}

/* batchnorm_backward's per-channel step from sdy = sum dy and sdyx = sum dy (x - mean):
 * accumulates dgamma, dbeta (when not NULL) and gives the three constants of dx. */
typedef struct bn_bwd_k {
    float scale, mdy, xc;
} bn_bwd_k;
YOLO_HD bn_bwd_k bn_bwd_channel(double sdy, double sdyx, int m, float gamma, float save_invstd,
                                float *dgamma, float *dbeta) {
    double invstd = save_invstd;
    double sum_dy_xhat = sdyx * invstd;
    if (dbeta) *dbeta += (float)sdy;
    if (dgamma) *dgamma += (float)sum_dy_xhat;
    bn_bwd_k k;
    k.scale = (float)(gamma * invstd);
    k.mdy = (float)(sdy / m);
    k.xc = (float)(sum_dy_xhat * invstd / m);
    return k;
}

/* the term dx += */
YOLO_HD float bn_bwd_1(bn_bwd_k k, float x, float mean, float dy) {
    return k.scale * (dy - k.mdy - (x - mean) * k.xc);
}

/* batchnorm_silu_forward_*: y = silu(bn_norm_1(x)) (the _bf16 variants store bf16_from_float(y)) */
YOLO_HD float bn_silu_fwd_1(float x, float mean, float scale, float beta) {
    return silu_fwd_1(bn_norm_1(x, mean, scale, beta));
}

/* batchnorm_silu_backward_set's dx of one element, dz = silu'(z) dy recomputed: the term written,
 * + 0.0f (the bits of adding it to a zeroed dx: -0 becomes +0); the _bf16 variant stores
 * bf16_from_float of it. */
YOLO_HD float bn_silu_bwd_set_1(bn_bwd_k k, float x, float mean, float scale, float beta,
                                float dy) {
    return bn_bwd_1(k, x, mean, silu_bwd_1(bn_norm_1(x, mean, scale, beta), dy)) + 0.0f;
}

/* batchnorm_silu_backward's sums at one lane: with z = bn_norm_1(x) and dz = silu'(z) dy,
 * s1 = sum dz, s2 = sum dz (x - mean). */
YOLO_HD void bn_silu_lane_sums(const float *x, const float *dy, float mean, float scale, float beta,
                               int c, int ch, size_t r0, size_t r1, int lane, int lanes, double *s1,
                               double *s2) {
    double p1 = 0, p2 = 0;
    for (size_t r = r0 + (size_t)lane; r < r1; r += (size_t)lanes) {
        size_t i = r * (size_t)c + (size_t)ch;
        double dz = silu_bwd_1(bn_norm_1(x[i], mean, scale, beta), dy[i]);
        p1 += dz;
        p2 += dz * ((double)x[i] - mean);
    }
    *s1 = p1;
    *s2 = p2;
}
