// The optimizer step (SGD / Nesterov, AdamW, MuSGD), the EMA blend and the global gradient-norm
// clip on the GPU, over the flat buffers. Twin: kernels/optim.c; per-element arithmetic in
// kernels/cuda/optim_hd.h.
//
// One fused pass updates every element that is not part of a Muon tensor: a per-element group
// map (uint8, built once per optimizer table and kept on the device) says which group's
// constants apply, and the constants of all groups travel as one kernel argument. MuSGD's Muon
// tensors then go one by one: momentum, Newton-Schulz on cuBLAS (fp32 GEMMs, every intermediate
// rounded to bf16 with ns_bf16 as the CPU does), the update, then the SGD part. The gradient norm
// never leaves the device: the clip reads it from device memory.
#include "kernels/cuda/ops.cuh"
#include "kernels/cuda/optim_hd.h"

#include <stdlib.h>
#include <string.h>
#include <utility>

struct optim_tables {
    optim_tensor *tensors; // a copy of the table these were built from (the key: an optimizer
    int ntensors;          // freed and made again at the same address may have another table)
    optim_kind kind;
    int use_muon[OPTIM_MAX_GROUPS];
    size_t n;
    uint8_t *map;              // device, n entries
    size_t muon_scratch_bytes; // the largest Muon tensor's needs
};

// ---- kernels -------------------------------------------------------------------------------

__global__ void optim_fused_k(optim_step_k k, size_t n, const uint8_t *map, float *p,
                              const float *g, float *m1, float *m2) {
    GRID_STRIDE(i, n) optim_fused_1(&k, map[i], p + i, g[i], m1 + i, m2 ? m2 + i : NULL);
}

__global__ void sgd_range_k(optim_gk k, int nesterov, size_t n, float *p, const float *g,
                            float *m) {
    GRID_STRIDE(i, n) sgd_1(&k, nesterov, p + i, g[i], m + i);
}

__global__ void ema_k(size_t n, float *ema, const float *model, float df, float od) {
    GRID_STRIDE(i, n) ema[i] = ema_1(ema[i], model[i], df, od);
}

// Partials of sum x^2: block b's threads, summed in thread order (fixed, so deterministic).
__global__ void sumsq_k(const float *x, size_t n, double *part) {
    __shared__ double t[CUDA_BLOCK];
    size_t threads = (size_t)gridDim.x * blockDim.x;
    t[threadIdx.x] = sumsq_thread(x, n, (size_t)blockIdx.x * blockDim.x + threadIdx.x, threads);
    __syncthreads();
    if (threadIdx.x == 0) part[blockIdx.x] = sum_in_order(t, blockDim.x);
}
// The partials' sum in order (one thread): the sum itself, or for the clip its square root, kept
// on the device as the last norm, and the factor clip_factor gives.
__global__ void sum_finish_k(const double *part, int nparts, double *sum) {
    *sum = sum_in_order(part, (size_t)nparts);
}
__global__ void clip_finish_k(const double *part, int nparts, double max_norm, double *norm,
                              float *factor) {
    double total = sqrt(sum_in_order(part, (size_t)nparts));
    *norm = total;
    *factor = clip_factor(total, max_norm);
}
__global__ void clip_apply_k(size_t n, float *g, const float *factor) {
    float f = *factor;
    if (f == 0.0f) return;
    GRID_STRIDE(i, n) g[i] *= f;
}

__global__ void muon_momentum_k(size_t n, float *m1, const float *g, float mu, float w,
                                int nesterov, float *u) {
    GRID_STRIDE(i, n) u[i] = muon_momentum_1(m1 + i, g[i], mu, w, nesterov);
}
__global__ void muon_apply_k(size_t n, float *p, const float *u, float scale, float alpha,
                             int bf16) {
    GRID_STRIDE(i, n) p[i] = muon_apply_1(p[i], u[i], scale, alpha, bf16);
}
// dst [cols][rows] = src [rows][cols]^T, optionally rounded to bf16
__global__ void transpose_k(int rows, int cols, const float *src, float *dst, int bf16) {
    GRID_STRIDE(i, (size_t)rows * cols) {
        size_t r = i / (size_t)cols, col = i % (size_t)cols;
        float v = src[i];
        dst[col * (size_t)rows + r] = bf16 ? bf16_round_hd(v) : v;
    }
}
__global__ void round_bf16_k(size_t n, float *x) {
    GRID_STRIDE(i, n) x[i] = bf16_round_hd(x[i]);
}
// x /= nrm, nrm from the device sum of squares as optim_ns5 forms it
__global__ void ns5_normalise_k(size_t n, float *x, const double *ss, int bf16) {
    float nrm = (float)sqrt(*ss);
    nrm = bf16 ? bf16_round_hd(bf16_round_hd(nrm) + 1e-7f) : nrm + 1e-7f;
    GRID_STRIDE(i, n) {
        float v = x[i] / nrm;
        x[i] = bf16 ? bf16_round_hd(v) : v;
    }
}
// y = s * x, rounded
__global__ void scale_round_k(size_t n, float s, const float *x, float *y, int bf16) {
    GRID_STRIDE(i, n) {
        float v = s * x[i];
        y[i] = bf16 ? bf16_round_hd(v) : v;
    }
}
// y = round(round(s * x) + y): "s*X + Y" with each result rounded
__global__ void axpy_round_k(size_t n, float s, const float *x, float *y, int bf16) {
    GRID_STRIDE(i, n) {
        float sx = s * x[i];
        if (bf16) sx = bf16_round_hd(sx);
        float v = sx + y[i];
        y[i] = bf16 ? bf16_round_hd(v) : v;
    }
}

// ---- helpers -------------------------------------------------------------------------------

enum { NORM_BLOCKS = 264 }; // fixed (the sum order does not depend on the device)

// Row-major C[m][n] = alpha op(A) op(B) + beta C through column-major cuBLAS (C^T = op(B)^T
// op(A)^T; a row-major matrix is its column-major transpose with the same leading dimension).
void cuda_gemm_rm(cuda_ctx *c, bool ta, bool tb, int m, int n, int k, float alpha, const float *a,
                  int lda, const float *b, int ldb, float beta, float *cm, int ldc) {
    CUBLAS_CHECK(cublasSgemm(c->cublas, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                             ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, ldb, a, lda, &beta,
                             cm, ldc));
}

static size_t align_up(size_t b) {
    return (b + 255) & ~(size_t)255;
}

// Scratch of one Muon tensor: u [n], X and BX [r k], A, cA, B [r r], the norm partials and sum.
static size_t muon_bytes(size_t n, int rows, int cols) {
    size_t r = (size_t)(rows < cols ? rows : cols), k = (size_t)(rows < cols ? cols : rows);
    return align_up(n * 4) + 2 * align_up(r * k * 4) + 3 * align_up(r * r * 4) +
           align_up(NORM_BLOCKS * 8) + align_up(8);
}

static optim_tables *tables_for(cuda_ctx *c, const optimizer *o) {
    optim_tables *t = c->optim;
    size_t tbytes = (size_t)o->ntensors * sizeof *o->tensors;
    int use_muon[OPTIM_MAX_GROUPS] = {0};
    for (int g = 0; g < o->ngroups; g++) use_muon[g] = o->group[g].use_muon;
    if (t && t->ntensors == o->ntensors && t->n == o->n && t->kind == o->kind &&
        !memcmp(t->use_muon, use_muon, sizeof use_muon) && !memcmp(t->tensors, o->tensors, tbytes))
        return t;
    cuda_release_optim(c);
    t = (optim_tables *)xcalloc(1, sizeof *t);
    t->tensors = (optim_tensor *)xmalloc(tbytes + 1);
    memcpy(t->tensors, o->tensors, tbytes);
    t->ntensors = o->ntensors;
    t->kind = o->kind;
    memcpy(t->use_muon, use_muon, sizeof use_muon);
    t->n = o->n;
    uint8_t *map = (uint8_t *)xmalloc(o->n ? o->n : 1);
    optim_fill_map(o, map);
    for (int i = 0; i < o->ntensors; i++) {
        const optim_tensor *ti = &o->tensors[i];
        if (optim_is_muon(o, ti)) {
            size_t b = muon_bytes(ti->numel, ti->shape[0], (int)(ti->numel / ti->shape[0]));
            if (b > t->muon_scratch_bytes) t->muon_scratch_bytes = b;
        }
    }
    CUDA_CHECK(cudaMalloc((void **)&t->map, o->n ? o->n : 1));
    CUDA_CHECK(cudaMemcpy(t->map, map, o->n, cudaMemcpyHostToDevice));
    free(map);
    c->optim = t;
    return t;
}

// optim_ns5 on the device, in place on x [rows][cols]; ws from muon_bytes (after u).
static void ns5(cuda_ctx *c, float *x, int rows, int cols, int bf16, char *ws) {
    const float a = 3.4445f, b = -4.7750f, cc = 2.0315f;
    const bool tr = rows > cols;
    const int r = tr ? cols : rows, k = tr ? rows : cols;
    const size_t rk = (size_t)r * k, rr = (size_t)r * r;
    float *X = (float *)ws, *BX = (float *)(ws + align_up(rk * 4));
    float *A = (float *)((char *)BX + align_up(rk * 4)),
          *cA = (float *)((char *)A + align_up(rr * 4));
    float *B = (float *)((char *)cA + align_up(rr * 4));
    double *part = (double *)((char *)B + align_up(rr * 4)),
           *ss = (double *)((char *)part + align_up(NORM_BLOCKS * 8));
    unsigned g_rk = cuda_blocks(c, rk), g_rr = cuda_blocks(c, rr);
    if (tr) {
        transpose_k<<<g_rk, CUDA_BLOCK, 0, c->stream>>>(rows, cols, x, X, bf16);
        CUDA_LAUNCHED("transpose_k");
    } else {
        CUDA_CHECK(cudaMemcpyAsync(X, x, rk * 4, cudaMemcpyDeviceToDevice, c->stream));
        if (bf16) round_bf16_k<<<g_rk, CUDA_BLOCK, 0, c->stream>>>(rk, X);
        CUDA_LAUNCHED("round_bf16_k");
    }
    sumsq_k<<<NORM_BLOCKS, CUDA_BLOCK, 0, c->stream>>>(X, rk, part); // ss = sum X^2
    CUDA_LAUNCHED("sumsq_k");
    sum_finish_k<<<1, 1, 0, c->stream>>>(part, NORM_BLOCKS, ss);
    CUDA_LAUNCHED("sum_finish_k");
    ns5_normalise_k<<<g_rk, CUDA_BLOCK, 0, c->stream>>>(rk, X, ss, bf16);
    CUDA_LAUNCHED("ns5_normalise_k");
    for (int it = 0; it < 5; it++) {
        cuda_gemm_rm(c, false, true, r, r, k, 1.0f, X, k, X, k, 0.0f, A, r); // A = X X^T
        if (bf16) round_bf16_k<<<g_rr, CUDA_BLOCK, 0, c->stream>>>(rr, A);
        scale_round_k<<<g_rr, CUDA_BLOCK, 0, c->stream>>>(rr, cc, A, cA, bf16);
        cuda_gemm_rm(c, false, false, r, r, r, 1.0f, cA, r, A, r, 0.0f, B, r); // B = cA A
        if (bf16) round_bf16_k<<<g_rr, CUDA_BLOCK, 0, c->stream>>>(rr, B);
        axpy_round_k<<<g_rr, CUDA_BLOCK, 0, c->stream>>>(rr, b, A, B, bf16);   // B = bA + B
        cuda_gemm_rm(c, false, false, r, k, r, 1.0f, B, r, X, k, 0.0f, BX, k); // BX = B X
        if (bf16) round_bf16_k<<<g_rk, CUDA_BLOCK, 0, c->stream>>>(rk, BX);
        axpy_round_k<<<g_rk, CUDA_BLOCK, 0, c->stream>>>(rk, a, X, BX, bf16); // BX = aX + BX
        std::swap(X, BX);
        CUDA_LAUNCHED("ns5 iteration");
    }
    if (tr) {
        transpose_k<<<g_rk, CUDA_BLOCK, 0, c->stream>>>(r, k, X, x, 0);
        CUDA_LAUNCHED("transpose_k");
    } else {
        CUDA_CHECK(cudaMemcpyAsync(x, X, rk * 4, cudaMemcpyDeviceToDevice, c->stream));
    }
}

static void muon_tensor(cuda_ctx *c, const optimizer *o, const optim_tensor *t, float *p,
                        const float *g, float *m1, float *m2, size_t scratch_bytes) {
    const size_t n = t->numel;
    const int rows = t->shape[0], cols = (int)(n / (size_t)rows);
    const muon_k k = optim_muon_consts(o, t);
    char *ws = (char *)cuda_scratch(c, scratch_bytes);
    float *u = (float *)ws;
    unsigned blocks = cuda_blocks(c, n);
    muon_momentum_k<<<blocks, CUDA_BLOCK, 0, c->stream>>>(n, m1, g, k.mu, k.w, o->nesterov, u);
    CUDA_LAUNCHED("muon_momentum_k");
    ns5(c, u, rows, cols, o->ns_bf16, ws + align_up(n * 4));
    muon_apply_k<<<blocks, CUDA_BLOCK, 0, c->stream>>>(n, p, u, k.scale, k.alpha, o->ns_bf16);
    CUDA_LAUNCHED("muon_apply_k");
    sgd_range_k<<<blocks, CUDA_BLOCK, 0, c->stream>>>(k.sgd, o->nesterov, n, p, g, m2);
    CUDA_LAUNCHED("sgd_range_k");
}

// ---- ops -----------------------------------------------------------------------------------

static void cu_optim_step(backend *be, optimizer *o, float *params, const float *grads) {
    cuda_ctx *c = cuda_enter(be, "optim_step");
    optim_tables *t = tables_for(c, o);
    o->step++;
    optim_step_k k = optim_step_consts(o);
    optim_fused_k<<<cuda_blocks(c, o->n), CUDA_BLOCK, 0, c->stream>>>(k, o->n, t->map, params,
                                                                      grads, o->m1, o->m2);
    CUDA_LAUNCHED("optim_fused_k");
    for (int i = 0; i < o->ntensors; i++) {
        const optim_tensor *ti = &o->tensors[i];
        if (!optim_is_muon(o, ti)) continue;
        muon_tensor(c, o, ti, params + ti->offset, grads + ti->offset, o->m1 + ti->offset,
                    o->m2 + ti->offset, t->muon_scratch_bytes);
    }
    cuda_leave(c);
}

static void cu_clip_grad_norm(backend *be, float *grads, size_t n, double max_norm) {
    cuda_ctx *c = cuda_enter(be, "clip_grad_norm");
    char *ws = (char *)cuda_scratch(c, align_up(NORM_BLOCKS * 8) + 16);
    float *factor = (float *)(ws + align_up(NORM_BLOCKS * 8));
    sumsq_k<<<NORM_BLOCKS, CUDA_BLOCK, 0, c->stream>>>(grads, n, (double *)ws);
    CUDA_LAUNCHED("sumsq_k");
    clip_finish_k<<<1, 1, 0, c->stream>>>((double *)ws, NORM_BLOCKS, max_norm, c->gnorm, factor);
    CUDA_LAUNCHED("clip_finish_k");
    clip_apply_k<<<cuda_blocks(c, n), CUDA_BLOCK, 0, c->stream>>>(n, grads, factor);
    CUDA_LAUNCHED("clip_apply_k");
    cuda_leave(c);
}

static void cu_ema_blend(backend *be, float *ema, const float *model, size_t n, double d) {
    cuda_ctx *c = cuda_enter(be, "ema_blend");
    ema_k<<<cuda_blocks(c, n), CUDA_BLOCK, 0, c->stream>>>(n, ema, model, (float)d,
                                                           (float)(1.0 - d));
    CUDA_LAUNCHED("ema_k");
    cuda_leave(c);
}

void cuda_release_optim(cuda_ctx *c) {
    if (!c->optim) return;
    CUDA_CHECK(cudaStreamSynchronize(c->stream)); // the map may still be read
    CUDA_CHECK(cudaFree(c->optim->map));
    free(c->optim->tensors);
    free(c->optim);
    c->optim = NULL;
}

void cuda_fill_optim(backend_i *f) {
    f->optim_step = cu_optim_step;
    f->clip_grad_norm = cu_clip_grad_norm;
    f->ema_blend = cu_ema_blend;
}
