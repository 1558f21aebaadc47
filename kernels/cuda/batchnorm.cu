// Batch norm on the GPU: train (statistics, running update, normalisation), eval, backward. Twin:
// kernels/batchnorm.c; the arithmetic is kernels/cuda/batchnorm_hd.h. Per-channel sums are in
// double and deterministic: fixed chunks of rows, lanes added in lane order, chunks in chunk
// order (no atomics), so a run gives the same bits every time.
#include "kernels/cuda/batchnorm_hd.h"
#include "kernels/cuda/ops.cuh"

// part[k][0][ch], part[k][1][ch]: the two sums of chunk k (see bn_lane_sums).
__global__ void bn_sums_k(int m, int c, const float *a, const float *b, const float *shift,
                          bn_split s, double *part) {
    __shared__ double l1[BN_LANES][BN_CH_TILE], l2[BN_LANES][BN_CH_TILE];
    int tx = threadIdx.x, ty = threadIdx.y, ch = blockIdx.x * BN_CH_TILE + tx, k = blockIdx.y;
    size_t r0 = (size_t)k * s.rows_per_chunk, r1 = r0 + s.rows_per_chunk;
    if (r1 > (size_t)m) r1 = (size_t)m;
    double p1 = 0, p2 = 0;
    if (ch < c) bn_lane_sums(a, b, b ? shift[ch] : 0.0f, c, ch, r0, r1, ty, BN_LANES, &p1, &p2);
    l1[ty][tx] = p1;
    l2[ty][tx] = p2;
    __syncthreads();
    if (ty == 0 && ch < c) {
        double s1 = 0, s2 = 0;
        for (int l = 0; l < BN_LANES; l++) {
            s1 += l1[l][tx];
            s2 += l2[l][tx];
        }
        part[((size_t)k * 2) * c + ch] = s1;
        part[((size_t)k * 2 + 1) * c + ch] = s2;
    }
}

// Sum of the chunks' partials of channel ch, in chunk order.
__device__ static void chunk_total(const double *part, int chunks, int c, int ch, double *s1,
                                   double *s2) {
    double a = 0, b = 0;
    for (int k = 0; k < chunks; k++) {
        a += part[((size_t)k * 2) * c + ch];
        b += part[((size_t)k * 2 + 1) * c + ch];
    }
    *s1 = a;
    *s2 = b;
}

__global__ void bn_train_stats_k(int m, int c, const double *part, int chunks, const float *gamma,
                                 float eps, float momentum, float *running_mean, float *running_var,
                                 float *save_mean, float *save_invstd, float *scale) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    double s1, s2;
    chunk_total(part, chunks, c, ch, &s1, &s2);
    scale[ch] = bn_train_channel(
        s1, s2, m, gamma[ch], eps, momentum, running_mean ? running_mean + ch : NULL,
        running_var ? running_var + ch : NULL, save_mean + ch, save_invstd + ch);
}

__global__ void bn_eval_scale_k(int c, const float *gamma, const float *running_var, float eps,
                                float *scale) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch < c) scale[ch] = bn_eval_scale(gamma[ch], running_var[ch], eps);
}

__global__ void bn_norm_k(size_t total, int c, const float *x, const float *mean,
                          const float *scale, const float *beta, float *y) {
    GRID_STRIDE(i, total) {
        int ch = (int)(i % (size_t)c);
        y[i] = bn_norm_1(x[i], mean[ch], scale[ch], beta[ch]);
    }
}

__global__ void bn_bwd_stats_k(int m, int c, const double *part, int chunks, const float *gamma,
                               const float *save_invstd, float *dgamma, float *dbeta,
                               bn_bwd_k *kc) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    double sdy, sdyx;
    chunk_total(part, chunks, c, ch, &sdy, &sdyx);
    kc[ch] = bn_bwd_channel(sdy, sdyx, m, gamma[ch], save_invstd[ch], dgamma ? dgamma + ch : NULL,
                            dbeta ? dbeta + ch : NULL);
}

__global__ void bn_bwd_dx_k(size_t total, int c, const float *x, const float *mean, const float *dy,
                            const bn_bwd_k *kc, float *dx) {
    GRID_STRIDE(i, total) {
        int ch = (int)(i % (size_t)c);
        dx[i] += bn_bwd_1(kc[ch], x[i], mean[ch], dy[i]);
    }
}

// Scratch: the partials, then per-channel floats (aligned to 16 bytes).
static double *sums(cuda_ctx *c, int m, int ch, const float *a, const float *b, const float *shift,
                    size_t extra_bytes, bn_split *s, void **extra) {
    *s = bn_split_rows(m, ch, c->sm_count);
    size_t part_bytes = (size_t)s->chunks * 2 * ch * sizeof(double);
    char *base = (char *)cuda_scratch(c, part_bytes + extra_bytes + 16);
    *extra = base + ((part_bytes + 15) & ~(size_t)15);
    dim3 grid((unsigned)((ch + BN_CH_TILE - 1) / BN_CH_TILE), (unsigned)s->chunks);
    bn_sums_k<<<grid, dim3(BN_CH_TILE, BN_LANES), 0, c->stream>>>(m, ch, a, b, shift, *s,
                                                                  (double *)base);
    CUDA_LAUNCHED("bn_sums_k");
    return (double *)base;
}

static void check_shape(const char *op, int m, int c) {
    if (m < 1 || c < 1) FATAL("%s: bad shape m=%d c=%d", op, m, c);
}

static void cu_bn_forward_train(backend *be, int m, int ch, const float *x, const float *gamma,
                                const float *beta, float eps, float momentum, float *running_mean,
                                float *running_var, float *save_mean, float *save_invstd,
                                float *y) {
    cuda_ctx *c = cuda_enter(be, "batchnorm_forward_train");
    check_shape(c->op, m, ch);
    bn_split s;
    void *extra;
    double *part = sums(c, m, ch, x, NULL, NULL, (size_t)ch * sizeof(float), &s, &extra);
    float *scale = (float *)extra;
    bn_train_stats_k<<<(ch + 127) / 128, 128, 0, c->stream>>>(m, ch, part, s.chunks, gamma, eps,
                                                              momentum, running_mean, running_var,
                                                              save_mean, save_invstd, scale);
    CUDA_LAUNCHED("bn_train_stats_k");
    size_t total = (size_t)m * ch;
    bn_norm_k<<<cuda_blocks(c, total), CUDA_BLOCK, 0, c->stream>>>(total, ch, x, save_mean, scale,
                                                                   beta, y);
    CUDA_LAUNCHED("bn_norm_k");
    cuda_leave(c);
}

static void cu_bn_forward_eval(backend *be, int m, int ch, const float *x, const float *gamma,
                               const float *beta, const float *running_mean,
                               const float *running_var, float eps, float *y) {
    cuda_ctx *c = cuda_enter(be, "batchnorm_forward_eval");
    check_shape(c->op, m, ch);
    float *scale = (float *)cuda_scratch(c, (size_t)ch * sizeof(float));
    bn_eval_scale_k<<<(ch + 127) / 128, 128, 0, c->stream>>>(ch, gamma, running_var, eps, scale);
    CUDA_LAUNCHED("bn_eval_scale_k");
    size_t total = (size_t)m * ch;
    bn_norm_k<<<cuda_blocks(c, total), CUDA_BLOCK, 0, c->stream>>>(total, ch, x, running_mean,
                                                                   scale, beta, y);
    CUDA_LAUNCHED("bn_norm_k");
    cuda_leave(c);
}

static void cu_bn_backward(backend *be, int m, int ch, const float *x, const float *gamma,
                           const float *save_mean, const float *save_invstd, const float *dy,
                           float *dx, float *dgamma, float *dbeta) {
    cuda_ctx *c = cuda_enter(be, "batchnorm_backward");
    check_shape(c->op, m, ch);
    bn_split s;
    void *extra;
    double *part = sums(c, m, ch, dy, x, save_mean, (size_t)ch * sizeof(bn_bwd_k), &s, &extra);
    bn_bwd_k *kc = (bn_bwd_k *)extra;
    bn_bwd_stats_k<<<(ch + 127) / 128, 128, 0, c->stream>>>(m, ch, part, s.chunks, gamma,
                                                            save_invstd, dgamma, dbeta, kc);
    CUDA_LAUNCHED("bn_bwd_stats_k");
    if (dx) {
        size_t total = (size_t)m * ch;
        bn_bwd_dx_k<<<cuda_blocks(c, total), CUDA_BLOCK, 0, c->stream>>>(total, ch, x, save_mean,
                                                                         dy, kc, dx);
        CUDA_LAUNCHED("bn_bwd_dx_k");
    }
    cuda_leave(c);
}

__global__ void channel_sum_add_k(int c, const double *part, int chunks, float *acc) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    double s1, s2;
    chunk_total(part, chunks, c, ch, &s1, &s2);
    acc[ch] += (float)s1;
}

void cuda_channel_sum_add(cuda_ctx *c, int m, int ch, const float *a, float *acc) {
    bn_split s;
    void *extra;
    double *part = sums(c, m, ch, a, NULL, NULL, 0, &s, &extra);
    channel_sum_add_k<<<(ch + 127) / 128, 128, 0, c->stream>>>(ch, part, s.chunks, acc);
    CUDA_LAUNCHED("channel_sum_add_k");
}

void cuda_fill_batchnorm(backend_i *f) {
    f->batchnorm_forward_train = cu_bn_forward_train;
    f->batchnorm_forward_eval = cu_bn_forward_eval;
    f->batchnorm_backward = cu_bn_backward;
}
