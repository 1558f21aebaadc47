// Batch norm on the GPU: train (statistics, running update, normalisation), eval, backward, and
// the same fused with SiLU, also writing the bf16 copy that bf16 convolutions read (the _bf16 ops:
// a BACKEND_PRECISION_BF16 backend only, kernels/cuda/ops.cu). Twins: kernels/batchnorm.c,
// kernels/batchnorm_silu.c; the arithmetic is kernels/cuda/batchnorm_hd.h. Per-channel sums are in
// double and deterministic: fixed chunks of rows, lanes added in lane order, chunks in chunk order
// (no atomics), so a run gives the same bits every time.
#include "kernels/batchnorm_silu.h"
#include "kernels/cuda/batchnorm_hd.h"
#include "kernels/cuda/ops.cuh"

// The two sums of one lane, over a's channel (plain BN: a, or a and a (b - shift)).
struct plain_lanes {
    const float *a, *b, *shift;
    __device__ void operator()(int c, int ch, size_t r0, size_t r1, int lane, double *p1,
                               double *p2) const {
        bn_lane_sums(a, b, b ? shift[ch] : 0.0f, c, ch, r0, r1, lane, BN_LANES, p1, p2);
    }
};
// ... of the fused backward: dz and dz (x - mean), z recomputed.
struct silu_lanes {
    const float *x, *dy, *mean, *scale, *beta;
    __device__ void operator()(int c, int ch, size_t r0, size_t r1, int lane, double *p1,
                               double *p2) const {
        bn_silu_lane_sums(x, dy, mean[ch], scale[ch], beta[ch], c, ch, r0, r1, lane, BN_LANES, p1,
                          p2);
    }
};

// part[k][0][ch], part[k][1][ch]: the two sums of chunk k.
template <typename Lanes>
__global__ void bn_sums_k(int m, int c, Lanes f, bn_split s, double *part) {
    __shared__ double l1[BN_LANES][BN_CH_TILE], l2[BN_LANES][BN_CH_TILE];
    int tx = threadIdx.x, ty = threadIdx.y, ch = blockIdx.x * BN_CH_TILE + tx, k = blockIdx.y;
    size_t r0 = (size_t)k * s.rows_per_chunk, r1 = r0 + s.rows_per_chunk;
    if (r1 > (size_t)m) r1 = (size_t)m;
    double p1 = 0, p2 = 0;
    if (ch < c) f(c, ch, r0, r1, ty, &p1, &p2);
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

__global__ void bn_silu_scale_k(int c, const float *gamma, const float *save_invstd, float *scale) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch < c) scale[ch] = batchnorm_silu_scale(gamma[ch], save_invstd[ch]);
}

// y (may be NULL with yb) and yb = bf16(y) (may be NULL)
template <bool silu>
__global__ void bn_norm_k(size_t total, int c, const float *x, const float *mean,
                          const float *scale, const float *beta, float *y, bf16 *yb) {
    GRID_STRIDE(i, total) {
        int ch = (int)(i % (size_t)c);
        float v = silu ? bn_silu_fwd_1(x[i], mean[ch], scale[ch], beta[ch])
                       : bn_norm_1(x[i], mean[ch], scale[ch], beta[ch]);
        if (y) y[i] = v;
        if (yb) yb[i] = bf16_from_float(v);
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

// dx += ... or, with write, dx = ... + 0.0f (the bits of adding to a zeroed dx); with silu, dy is
// the gradient of silu(z) and dz is recomputed. With dxb (silu and write only): dxb = bf16(dx)
// instead, and dx is not touched.
template <bool silu, bool write>
__global__ void bn_bwd_dx_k(size_t total, int c, const float *x, const float *mean, const float *dy,
                            const bn_bwd_k *kc, const float *scale, const float *beta, float *dx,
                            bf16 *dxb) {
    GRID_STRIDE(i, total) {
        int ch = (int)(i % (size_t)c);
        if (silu && write) {
            float t = bn_silu_bwd_set_1(kc[ch], x[i], mean[ch], scale[ch], beta[ch], dy[i]);
            if (dxb)
                dxb[i] = bf16_from_float(t);
            else
                dx[i] = t;
            continue;
        }
        float g = silu ? silu_bwd_1(bn_norm_1(x[i], mean[ch], scale[ch], beta[ch]), dy[i]) : dy[i];
        float t = bn_bwd_1(kc[ch], x[i], mean[ch], g);
        dx[i] = write ? t + 0.0f : dx[i] + t;
    }
}

__global__ void channel_sum_add_k(int c, const double *part, int chunks, float *acc) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= c) return;
    double s1, s2;
    chunk_total(part, chunks, c, ch, &s1, &s2);
    acc[ch] += (float)s1;
}

// ---- host side -------------------------------------------------------------------------------

// One op's scratch: the partials of the split, then `per_channel` bytes per channel (aligned).
struct bn_work {
    bn_split s;
    double *part;
    char *per_channel;
};
static bn_work bn_scratch(cuda_ctx *c, int m, int ch, size_t per_channel) {
    bn_work w;
    w.s = bn_split_rows(m, ch, c->sm_count);
    size_t part_bytes = ((size_t)w.s.chunks * 2 * ch * sizeof(double) + 255) & ~(size_t)255;
    char *base = (char *)cuda_scratch(c, part_bytes + per_channel * ch + 16);
    w.part = (double *)base;
    w.per_channel = base + part_bytes;
    return w;
}

template <typename Lanes>
static void launch_sums(cuda_ctx *c, int m, int ch, Lanes f, const bn_work &w) {
    dim3 grid((unsigned)((ch + BN_CH_TILE - 1) / BN_CH_TILE), (unsigned)w.s.chunks);
    bn_sums_k<<<grid, dim3(BN_CH_TILE, BN_LANES), 0, c->stream>>>(m, ch, f, w.s, w.part);
    CUDA_LAUNCHED("bn_sums_k");
}

static unsigned ch_blocks(int ch) {
    return (unsigned)((ch + 127) / 128);
}

static void check_shape(const cuda_ctx *c, int m, int ch) {
    if (m < 1 || ch < 1) FATAL("%s on %s: bad shape m=%d c=%d", c->op, c->name, m, ch);
}
// y may be NULL only where the bf16 copy is written instead
static void check_outputs(const cuda_ctx *c, const float *y, const bf16 *yb) {
    if (!y && !yb) FATAL("%s on %s: no output (y and yb NULL)", c->op, c->name);
}

template <bool silu>
static void forward_train(backend *be, const char *op, int m, int ch, const float *x,
                          const float *gamma, const float *beta, float eps, float momentum,
                          float *running_mean, float *running_var, float *save_mean,
                          float *save_invstd, float *y, bf16 *yb = NULL) {
    cuda_ctx *c = cuda_enter(be, op);
    check_shape(c, m, ch);
    check_outputs(c, y, yb);
    bn_work w = bn_scratch(c, m, ch, sizeof(float));
    float *scale = (float *)w.per_channel;
    launch_sums(c, m, ch, plain_lanes{x, NULL, NULL}, w);
    bn_train_stats_k<<<ch_blocks(ch), 128, 0, c->stream>>>(m, ch, w.part, w.s.chunks, gamma, eps,
                                                           momentum, running_mean, running_var,
                                                           save_mean, save_invstd, scale);
    CUDA_LAUNCHED("bn_train_stats_k");
    size_t total = (size_t)m * ch;
    bn_norm_k<silu><<<cuda_blocks(c, total), CUDA_BLOCK, 0, c->stream>>>(total, ch, x, save_mean,
                                                                         scale, beta, y, yb);
    CUDA_LAUNCHED("bn_norm_k");
    cuda_leave(c);
}

template <bool silu>
static void forward_eval(backend *be, const char *op, int m, int ch, const float *x,
                         const float *gamma, const float *beta, const float *running_mean,
                         const float *running_var, float eps, float *y, bf16 *yb = NULL) {
    cuda_ctx *c = cuda_enter(be, op);
    check_shape(c, m, ch);
    check_outputs(c, y, yb);
    float *scale = (float *)cuda_scratch(c, (size_t)ch * sizeof(float));
    bn_eval_scale_k<<<ch_blocks(ch), 128, 0, c->stream>>>(ch, gamma, running_var, eps, scale);
    CUDA_LAUNCHED("bn_eval_scale_k");
    size_t total = (size_t)m * ch;
    bn_norm_k<silu><<<cuda_blocks(c, total), CUDA_BLOCK, 0, c->stream>>>(total, ch, x, running_mean,
                                                                         scale, beta, y, yb);
    CUDA_LAUNCHED("bn_norm_k");
    cuda_leave(c);
}

// beta is used (and read) only with silu; write: dx = (the _set ops); dxb: bf16(dx) instead of dx
// (silu and write only)
template <bool silu, bool write>
static void backward(backend *be, const char *op, int m, int ch, const float *x, const float *gamma,
                     const float *beta, const float *save_mean, const float *save_invstd,
                     const float *dy, float *dx, float *dgamma, float *dbeta, bf16 *dxb = NULL) {
    cuda_ctx *c = cuda_enter(be, op);
    check_shape(c, m, ch);
    size_t kbytes = (sizeof(bn_bwd_k) + 15) & ~(size_t)15;
    bn_work w = bn_scratch(c, m, ch, kbytes + sizeof(float));
    bn_bwd_k *kc = (bn_bwd_k *)w.per_channel;
    float *scale = (float *)(w.per_channel + kbytes * ch);
    if (silu) {
        bn_silu_scale_k<<<ch_blocks(ch), 128, 0, c->stream>>>(ch, gamma, save_invstd, scale);
        CUDA_LAUNCHED("bn_silu_scale_k");
        launch_sums(c, m, ch, silu_lanes{x, dy, save_mean, scale, beta}, w);
    } else {
        launch_sums(c, m, ch, plain_lanes{dy, x, save_mean}, w);
    }
    bn_bwd_stats_k<<<ch_blocks(ch), 128, 0, c->stream>>>(m, ch, w.part, w.s.chunks, gamma,
                                                         save_invstd, dgamma, dbeta, kc);
    CUDA_LAUNCHED("bn_bwd_stats_k");
    if (dx || dxb) {
        size_t total = (size_t)m * ch;
        bn_bwd_dx_k<silu, write><<<cuda_blocks(c, total), CUDA_BLOCK, 0, c->stream>>>(
            total, ch, x, save_mean, dy, kc, scale, beta, dx, dxb);
        CUDA_LAUNCHED("bn_bwd_dx_k");
    }
    cuda_leave(c);
}

static void cu_bn_forward_train(backend *be, int m, int ch, const float *x, const float *gamma,
                                const float *beta, float eps, float momentum, float *running_mean,
                                float *running_var, float *save_mean, float *save_invstd,
                                float *y) {
    forward_train<false>(be, "batchnorm_forward_train", m, ch, x, gamma, beta, eps, momentum,
                         running_mean, running_var, save_mean, save_invstd, y);
}
static void cu_bn_silu_forward_train(backend *be, int m, int ch, const float *x, const float *gamma,
                                     const float *beta, float eps, float momentum,
                                     float *running_mean, float *running_var, float *save_mean,
                                     float *save_invstd, float *y) {
    forward_train<true>(be, "batchnorm_silu_forward_train", m, ch, x, gamma, beta, eps, momentum,
                        running_mean, running_var, save_mean, save_invstd, y);
}
static void cu_bn_forward_eval(backend *be, int m, int ch, const float *x, const float *gamma,
                               const float *beta, const float *running_mean,
                               const float *running_var, float eps, float *y) {
    forward_eval<false>(be, "batchnorm_forward_eval", m, ch, x, gamma, beta, running_mean,
                        running_var, eps, y);
}
static void cu_bn_silu_forward_eval(backend *be, int m, int ch, const float *x, const float *gamma,
                                    const float *beta, const float *running_mean,
                                    const float *running_var, float eps, float *y) {
    forward_eval<true>(be, "batchnorm_silu_forward_eval", m, ch, x, gamma, beta, running_mean,
                       running_var, eps, y);
}
static void cu_bn_backward(backend *be, int m, int ch, const float *x, const float *gamma,
                           const float *save_mean, const float *save_invstd, const float *dy,
                           float *dx, float *dgamma, float *dbeta) {
    backward<false, false>(be, "batchnorm_backward", m, ch, x, gamma, NULL, save_mean, save_invstd,
                           dy, dx, dgamma, dbeta);
}
static void cu_bn_silu_backward(backend *be, int m, int ch, const float *x, const float *gamma,
                                const float *beta, const float *save_mean, const float *save_invstd,
                                const float *dy, float *dx, float *dgamma, float *dbeta) {
    backward<true, false>(be, "batchnorm_silu_backward", m, ch, x, gamma, beta, save_mean,
                          save_invstd, dy, dx, dgamma, dbeta);
}
static void cu_bn_silu_backward_set(backend *be, int m, int ch, const float *x, const float *gamma,
                                    const float *beta, const float *save_mean,
                                    const float *save_invstd, const float *dy, float *dx,
                                    float *dgamma, float *dbeta) {
    backward<true, true>(be, "batchnorm_silu_backward_set", m, ch, x, gamma, beta, save_mean,
                         save_invstd, dy, dx, dgamma, dbeta);
}

static void cu_bn_silu_forward_train_bf16(backend *be, int m, int ch, const float *x,
                                          const float *gamma, const float *beta, float eps,
                                          float momentum, float *running_mean, float *running_var,
                                          float *save_mean, float *save_invstd, float *y,
                                          bf16 *yb) {
    forward_train<true>(be, "batchnorm_silu_forward_train_bf16", m, ch, x, gamma, beta, eps,
                        momentum, running_mean, running_var, save_mean, save_invstd, y, yb);
}
static void cu_bn_silu_forward_eval_bf16(backend *be, int m, int ch, const float *x,
                                         const float *gamma, const float *beta,
                                         const float *running_mean, const float *running_var,
                                         float eps, float *y, bf16 *yb) {
    forward_eval<true>(be, "batchnorm_silu_forward_eval_bf16", m, ch, x, gamma, beta, running_mean,
                       running_var, eps, y, yb);
}
// dx is the CPU's float scratch (backend.h: left undefined): not touched here, but required as on
// the CPU, so that a caller's mistake shows on every backend
static void cu_bn_silu_backward_set_bf16(backend *be, int m, int ch, const float *x,
                                         const float *gamma, const float *beta,
                                         const float *save_mean, const float *save_invstd,
                                         const float *dy, float *dx, bf16 *dxb, float *dgamma,
                                         float *dbeta) {
    if (!dx || !dxb) FATAL("batchnorm_silu_backward_set_bf16: needs dx (scratch) and dxb");
    backward<true, true>(be, "batchnorm_silu_backward_set_bf16", m, ch, x, gamma, beta, save_mean,
                         save_invstd, dy, NULL, dgamma, dbeta, dxb);
}

void cuda_channel_sum_add(cuda_ctx *c, int m, int ch, const float *a, float *acc) {
    bn_work w = bn_scratch(c, m, ch, 0);
    launch_sums(c, m, ch, plain_lanes{a, NULL, NULL}, w);
    channel_sum_add_k<<<ch_blocks(ch), 128, 0, c->stream>>>(ch, w.part, w.s.chunks, acc);
    CUDA_LAUNCHED("channel_sum_add_k");
}

void cuda_fill_batchnorm(backend_i *f) {
    f->batchnorm_forward_train = cu_bn_forward_train;
    f->batchnorm_forward_eval = cu_bn_forward_eval;
    f->batchnorm_backward = cu_bn_backward;
    f->batchnorm_silu_forward_train = cu_bn_silu_forward_train;
    f->batchnorm_silu_forward_eval = cu_bn_silu_forward_eval;
    f->batchnorm_silu_backward = cu_bn_silu_backward;
    f->batchnorm_silu_backward_set = cu_bn_silu_backward_set;
    f->batchnorm_silu_forward_train_bf16 = cu_bn_silu_forward_train_bf16;
    f->batchnorm_silu_forward_eval_bf16 = cu_bn_silu_forward_eval_bf16;
    f->batchnorm_silu_backward_set_bf16 = cu_bn_silu_backward_set_bf16;
}
