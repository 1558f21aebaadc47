// Max pooling on the GPU (SPPF). Twin: kernels/pool.c; per-element math in kernels/cuda/pool_hd.h.
// Backward gathers each input's gradient from the windows that hold it, in output order: no
// atomics, the CPU's bits, the same result every run.
#include "kernels/cuda/ops.cuh"
#include "kernels/cuda/pool_hd.h"

__global__ void maxpool_fwd_k(pool_geom g, size_t total, const float *x, float *y,
                              int32_t *argmax) {
    GRID_STRIDE(o, total) maxpool_fwd_1(&g, x, o, y + o, argmax + o);
}
__global__ void maxpool_bwd_k(pool_geom g, size_t total, const float *dy, const int32_t *argmax,
                              float *dx) {
    GRID_STRIDE(i, total) dx[i] = maxpool_bwd_1(&g, dy, argmax, i, dx[i]);
}

static pool_geom checked_geom(int n, int h, int w, int c, int k, int stride, int pad) {
    if (k < 1 || stride < 1 || pad < 0 || 2 * pad > k)
        FATAL("maxpool: bad k=%d stride=%d pad=%d (need pad <= k/2)", k, stride, pad);
    if ((double)n * h * w * c > INT32_MAX)
        FATAL("maxpool: input of %d x %d x %d x %d overflows the int32 argmax", n, h, w, c);
    return pool_geom_make(n, h, w, c, k, stride, pad);
}

static void cu_maxpool_forward(backend *be, int n, int h, int w, int ch, int k, int stride, int pad,
                               const float *x, float *y, int32_t *argmax) {
    cuda_ctx *c = cuda_enter(be, "maxpool_forward");
    pool_geom g = checked_geom(n, h, w, ch, k, stride, pad);
    size_t total = (size_t)n * g.oh * g.ow * ch;
    maxpool_fwd_k<<<cuda_blocks(c, total), CUDA_BLOCK, 0, c->stream>>>(g, total, x, y, argmax);
    CUDA_LAUNCHED("maxpool_fwd_k");
    cuda_leave(c);
}
static void cu_maxpool_backward(backend *be, int n, int h, int w, int ch, int k, int stride,
                                int pad, const float *dy, const int32_t *argmax, float *dx) {
    cuda_ctx *c = cuda_enter(be, "maxpool_backward");
    pool_geom g = checked_geom(n, h, w, ch, k, stride, pad);
    size_t total = (size_t)n * h * w * ch;
    maxpool_bwd_k<<<cuda_blocks(c, total), CUDA_BLOCK, 0, c->stream>>>(g, total, dy, argmax, dx);
    CUDA_LAUNCHED("maxpool_bwd_k");
    cuda_leave(c);
}

void cuda_fill_pool(backend_i *f) {
    f->maxpool_forward = cu_maxpool_forward;
    f->maxpool_backward = cu_maxpool_backward;
}
