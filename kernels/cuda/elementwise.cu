// Elementwise ops on the GPU: SiLU, add, accumulate, scale, uint8 normalisation, the bf16 copy.
// Twins: kernels/activation.c, kernels/tensor_ops.c and kernels/bf16.c; the arithmetic is
// kernels/cuda/elementwise_hd.h and kernels/bf16.h's bf16_from_float, which the CPU tests check
// against the twins.
#include "kernels/cuda/elementwise_hd.h"
#include "kernels/cuda/ops.cuh"

__global__ void silu_fwd_k(size_t n, const float *x, float *y) {
    GRID_STRIDE(i, n) y[i] = silu_fwd_1(x[i]);
}
__global__ void silu_bwd_k(size_t n, const float *x, const float *dy, float *dx) {
    GRID_STRIDE(i, n) dx[i] += silu_bwd_1(x[i], dy[i]);
}
__global__ void add_k(size_t n, const float *a, const float *b, float *y) {
    GRID_STRIDE(i, n) y[i] = a[i] + b[i];
}
__global__ void accumulate_k(size_t n, const float *x, float *y) {
    GRID_STRIDE(i, n) y[i] += x[i];
}
__global__ void scale_k(size_t n, float s, float *y) {
    GRID_STRIDE(i, n) y[i] *= s;
}
__global__ void to_bf16_k(size_t n, const float *x, bf16 *y) {
    GRID_STRIDE(i, n) y[i] = bf16_from_float(x[i]);
}
__global__ void normalize_u8_k(size_t n, const uint8_t *x, float s, float *y) {
    GRID_STRIDE(i, n) y[i] = normalize_u8_1(x[i], s);
}

static void cu_silu_forward(backend *be, size_t n, const float *x, float *y) {
    cuda_ctx *c = cuda_enter(be, "silu_forward");
    silu_fwd_k<<<cuda_blocks(c, n), CUDA_BLOCK, 0, c->stream>>>(n, x, y);
    CUDA_LAUNCHED("silu_fwd_k");
    cuda_leave(c);
}
static void cu_silu_backward(backend *be, size_t n, const float *x, const float *dy, float *dx) {
    cuda_ctx *c = cuda_enter(be, "silu_backward");
    silu_bwd_k<<<cuda_blocks(c, n), CUDA_BLOCK, 0, c->stream>>>(n, x, dy, dx);
    CUDA_LAUNCHED("silu_bwd_k");
    cuda_leave(c);
}
static void cu_add(backend *be, size_t n, const float *a, const float *b, float *y) {
    cuda_ctx *c = cuda_enter(be, "add");
    add_k<<<cuda_blocks(c, n), CUDA_BLOCK, 0, c->stream>>>(n, a, b, y);
    CUDA_LAUNCHED("add_k");
    cuda_leave(c);
}
void cuda_accumulate(cuda_ctx *c, size_t n, const float *x, float *y) {
    accumulate_k<<<cuda_blocks(c, n), CUDA_BLOCK, 0, c->stream>>>(n, x, y);
    CUDA_LAUNCHED("accumulate_k");
}
static void cu_accumulate(backend *be, size_t n, const float *x, float *y) {
    cuda_ctx *c = cuda_enter(be, "accumulate");
    cuda_accumulate(c, n, x, y);
    cuda_leave(c);
}
static void cu_scale(backend *be, size_t n, float s, float *y) {
    cuda_ctx *c = cuda_enter(be, "scale");
    scale_k<<<cuda_blocks(c, n), CUDA_BLOCK, 0, c->stream>>>(n, s, y);
    CUDA_LAUNCHED("scale_k");
    cuda_leave(c);
}
void cuda_to_bf16(cuda_ctx *c, size_t n, const float *x, bf16 *y) {
    to_bf16_k<<<cuda_blocks(c, n), CUDA_BLOCK, 0, c->stream>>>(n, x, y);
    CUDA_LAUNCHED("to_bf16_k");
}
static void cu_to_bf16(backend *be, size_t n, const float *x, bf16 *y) {
    cuda_ctx *c = cuda_enter(be, "to_bf16");
    cuda_to_bf16(c, n, x, y);
    cuda_leave(c);
}
static void cu_normalize_u8(backend *be, size_t n, const uint8_t *x, float s, float *y) {
    cuda_ctx *c = cuda_enter(be, "normalize_u8");
    normalize_u8_k<<<cuda_blocks(c, n), CUDA_BLOCK, 0, c->stream>>>(n, x, s, y);
    CUDA_LAUNCHED("normalize_u8_k");
    cuda_leave(c);
}

void cuda_fill_elementwise(backend_i *f) {
    f->silu_forward = cu_silu_forward;
    f->silu_backward = cu_silu_backward;
    f->add = cu_add;
    f->accumulate = cu_accumulate;
    f->scale = cu_scale;
    f->normalize_u8 = cu_normalize_u8;
    f->to_bf16 = cu_to_bf16; // cleared by cuda_ops_fill below bf16 precision
}
