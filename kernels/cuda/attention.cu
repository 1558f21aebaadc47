// The attention core of C2PSA / PSABlock on the GPU. Twin: kernels/attention.c. The matrix
// products of all (image, head) pairs go to cuBLAS as one batched fp32 GEMM each, on pointer
// arrays built on the device (kernels/cuda/attention_hd.h's offsets); the softmax and its
// backward are one warp per row, with exp_fast as the CPU.
#include "kernels/cuda/attention_hd.h"
#include "kernels/cuda/ops.cuh"
#include "kernels/fast_exp.h"

enum {
    ATTN_Q,
    ATTN_K,
    ATTN_V,
    ATTN_P,
    ATTN_O,
    ATTN_DQ,
    ATTN_DK,
    ATTN_DV,
    ATTN_DO,
    ATTN_DS,
    ATTN_NPTR
};

struct attn_bases {
    const float *qkv, *probs, *out, *dout, *ds;
    float *dqkv;
};

// ptr[which][bh]: the start of each operand for pair bh (NULL bases give unused entries).
__global__ void attn_ptrs_k(attention_desc d, attn_bases b, const float **ptr) {
    int nbh = d.n * d.heads;
    for (int bh = blockIdx.x * blockDim.x + threadIdx.x; bh < nbh; bh += gridDim.x * blockDim.x) {
        attn_at a = attn_offsets(&d, bh);
        const float **p = ptr;
        p[ATTN_Q * nbh + bh] = b.qkv + a.q;
        p[ATTN_K * nbh + bh] = b.qkv + a.k;
        p[ATTN_V * nbh + bh] = b.qkv + a.v;
        p[ATTN_P * nbh + bh] = b.probs + a.p;
        p[ATTN_O * nbh + bh] = b.out + a.o;
        p[ATTN_DQ * nbh + bh] = b.dqkv ? b.dqkv + a.q : NULL;
        p[ATTN_DK * nbh + bh] = b.dqkv ? b.dqkv + a.k : NULL;
        p[ATTN_DV * nbh + bh] = b.dqkv ? b.dqkv + a.v : NULL;
        p[ATTN_DO * nbh + bh] = b.dout ? b.dout + a.o : NULL;
        p[ATTN_DS * nbh + bh] = b.ds ? b.ds + a.p : NULL;
    }
}

__device__ static float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ static float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Rows of s [rows][cols] softmaxed in place, one warp per row.
__global__ void softmax_rows_k(size_t rows, int cols, float *s) {
    size_t warp = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (warp >= rows) return;
    float *r = s + warp * (size_t)cols;
    float mx = -INFINITY;
    for (int j = lane; j < cols; j += 32) mx = fmaxf(mx, r[j]);
    mx = warp_max(mx);
    float sum = 0;
    for (int j = lane; j < cols; j += 32) {
        float e = exp_fast(r[j] - mx);
        r[j] = e;
        sum += e;
    }
    float inv = 1.0f / warp_sum(sum);
    for (int j = lane; j < cols; j += 32) r[j] *= inv;
}

// ds = p * (ds - rowsum(p * ds)), one warp per row.
__global__ void softmax_bwd_rows_k(size_t rows, int cols, const float *p, float *ds) {
    size_t warp = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (warp >= rows) return;
    const float *pr = p + warp * (size_t)cols;
    float *dr = ds + warp * (size_t)cols;
    float dot = 0;
    for (int j = lane; j < cols; j += 32) dot += pr[j] * dr[j];
    dot = warp_sum(dot);
    for (int j = lane; j < cols; j += 32) dr[j] = pr[j] * (dr[j] - dot);
}

// v_out <- v (forward), dqkv's v += dv (backward)
__global__ void v_copy_k(attention_desc d, size_t total, const float *qkv, float *v_out) {
    GRID_STRIDE(e, total) v_out[e] = qkv[attn_v_src(&d, e)];
}
__global__ void v_grad_k(attention_desc d, size_t total, const float *dv, float *dqkv) {
    GRID_STRIDE(e, total) dqkv[attn_v_src(&d, e)] += dv[e];
}

// Row-major batched C = alpha op(A) op(B) + beta C (see cuda_gemm_rm).
static void gemm_batched(cuda_ctx *c, bool ta, bool tb, int m, int n, int k, float alpha,
                         const float *const *a, int lda, const float *const *b, int ldb, float beta,
                         float *const *cm, int ldc, int batch) {
    CUBLAS_CHECK(cublasSgemmBatched(c->cublas, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                    ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, ldb, a, lda,
                                    &beta, cm, ldc, batch));
}

static void check_desc(const cuda_ctx *c, const attention_desc *d) {
    if (d->n < 1 || d->hw < 1 || d->heads < 1 || d->kd < 1 || d->hd < 1)
        FATAL("attention on %s: bad shape n=%d hw=%d heads=%d kd=%d hd=%d", c->name, d->n, d->hw,
              d->heads, d->kd, d->hd);
}

// The pointer arrays (and, for backward, room for dS after them) in scratch.
static const float **build_ptrs(cuda_ctx *c, const attention_desc *d, attn_bases b,
                                size_t ds_floats, float **ds) {
    int nbh = d->n * d->heads;
    size_t ptr_bytes = ((size_t)ATTN_NPTR * nbh * sizeof(float *) + 255) & ~(size_t)255;
    char *s = (char *)cuda_scratch(c, ptr_bytes + ds_floats * sizeof(float));
    if (ds) *ds = (float *)(s + ptr_bytes);
    b.ds = ds ? *ds : NULL;
    attn_ptrs_k<<<(nbh + 127) / 128, 128, 0, c->stream>>>(*d, b, (const float **)s);
    CUDA_LAUNCHED("attn_ptrs_k");
    return (const float **)s;
}

static void cu_attention_forward(backend *be, const attention_desc *d, const float *qkv, float *out,
                                 float *v_out, float *probs) {
    cuda_ctx *c = cuda_enter(be, "attention_forward");
    check_desc(c, d);
    const int hw = d->hw, kd = d->kd, hd = d->hd, nbh = d->n * d->heads;
    const int cq = d->heads * (2 * kd + hd), co = d->heads * hd;
    attn_bases b = {qkv, probs, out, NULL, NULL, NULL};
    const float **p = build_ptrs(c, d, b, 0, NULL);
    float *const *pw = (float *const *)p;
    // S = scale Q K^T -> probs
    gemm_batched(c, false, true, hw, hw, kd, d->scale, p + ATTN_Q * nbh, cq, p + ATTN_K * nbh, cq,
                 0.0f, pw + ATTN_P * nbh, hw, nbh);
    size_t rows = (size_t)nbh * hw;
    softmax_rows_k<<<(unsigned)((rows * 32 + 255) / 256), 256, 0, c->stream>>>(rows, hw, probs);
    CUDA_LAUNCHED("softmax_rows_k");
    // O = P V
    gemm_batched(c, false, false, hw, hd, hw, 1.0f, p + ATTN_P * nbh, hw, p + ATTN_V * nbh, cq,
                 0.0f, pw + ATTN_O * nbh, co, nbh);
    if (v_out) {
        size_t total = (size_t)d->n * hw * co;
        v_copy_k<<<cuda_blocks(c, total), CUDA_BLOCK, 0, c->stream>>>(*d, total, qkv, v_out);
        CUDA_LAUNCHED("v_copy_k");
    }
    cuda_leave(c);
}

static void cu_attention_backward(backend *be, const attention_desc *d, const float *qkv,
                                  const float *probs, const float *dout, const float *dv,
                                  float *dqkv) {
    cuda_ctx *c = cuda_enter(be, "attention_backward");
    check_desc(c, d);
    const int hw = d->hw, kd = d->kd, hd = d->hd, nbh = d->n * d->heads;
    const int cq = d->heads * (2 * kd + hd), co = d->heads * hd;
    attn_bases b = {qkv, probs, NULL, dout, NULL, dqkv};
    float *ds;
    const float **p = build_ptrs(c, d, b, (size_t)nbh * hw * hw, &ds);
    float *const *pw = (float *const *)p;
    // dV += P^T dO (+ dv)
    gemm_batched(c, true, false, hw, hd, hw, 1.0f, p + ATTN_P * nbh, hw, p + ATTN_DO * nbh, co,
                 1.0f, pw + ATTN_DV * nbh, cq, nbh);
    if (dv) {
        size_t total = (size_t)d->n * hw * co;
        v_grad_k<<<cuda_blocks(c, total), CUDA_BLOCK, 0, c->stream>>>(*d, total, dv, dqkv);
        CUDA_LAUNCHED("v_grad_k");
    }
    // dS = dO V^T, then through the softmax
    gemm_batched(c, false, true, hw, hw, hd, 1.0f, p + ATTN_DO * nbh, co, p + ATTN_V * nbh, cq,
                 0.0f, pw + ATTN_DS * nbh, hw, nbh);
    size_t rows = (size_t)nbh * hw;
    softmax_bwd_rows_k<<<(unsigned)((rows * 32 + 255) / 256), 256, 0, c->stream>>>(rows, hw, probs,
                                                                                   ds);
    CUDA_LAUNCHED("softmax_bwd_rows_k");
    // dQ += scale dS K; dK += scale dS^T Q
    gemm_batched(c, false, false, hw, kd, hw, d->scale, p + ATTN_DS * nbh, hw, p + ATTN_K * nbh, cq,
                 1.0f, pw + ATTN_DQ * nbh, cq, nbh);
    gemm_batched(c, true, false, hw, kd, hw, d->scale, p + ATTN_DS * nbh, hw, p + ATTN_Q * nbh, cq,
                 1.0f, pw + ATTN_DK * nbh, cq, nbh);
    cuda_leave(c);
}

void cuda_fill_attention(backend_i *f) {
    f->attention_forward = cu_attention_forward;
    f->attention_backward = cu_attention_backward;
}
