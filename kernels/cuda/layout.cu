// Layout ops on the GPU: concat, slice, 2x upsample (NHWC). Twin: kernels/tensor_ops.c; index math
// in kernels/cuda/layout_hd.h. Forward concat and slice are pitched copies (cudaMemcpy2DAsync,
// the copy engine's strided mode), no kernel; their backward passes accumulate between strided
// views.
#include "kernels/cuda/layout_hd.h"
#include "kernels/cuda/ops.cuh"

// dst view [rows][width] (row pitch dld) += src view (row pitch sld), in floats.
__global__ void strided_acc_k(size_t rows, size_t width, const float *src, size_t sld, float *dst,
                              size_t dld) {
    GRID_STRIDE(i, rows * width) dst[strided_at(i, width, dld)] += src[strided_at(i, width, sld)];
}
__global__ void upsample_fwd_k(size_t total, int h, int w, int c, const float *x, float *y) {
    GRID_STRIDE(o, total) y[o] = x[upsample2x_src(o, h, w, c)];
}
__global__ void upsample_bwd_k(size_t total, int h, int w, int c, const float *dy, float *dx) {
    GRID_STRIDE(i, total) dx[i] += upsample2x_grad(dy, i, h, w, c);
}

static void strided_acc(cuda_ctx *c, size_t rows, size_t width, const float *src, size_t sld,
                        float *dst, size_t dld) {
    strided_acc_k<<<cuda_blocks(c, rows * width), CUDA_BLOCK, 0, c->stream>>>(rows, width, src, sld,
                                                                              dst, dld);
    CUDA_LAUNCHED("strided_acc_k");
}

static void copy_cols(cuda_ctx *c, size_t rows, size_t width, const float *src, size_t sld,
                      float *dst, size_t dld) {
    CUDA_CHECK(cudaMemcpy2DAsync(dst, dld * sizeof(float), src, sld * sizeof(float),
                                 width * sizeof(float), rows, cudaMemcpyDeviceToDevice, c->stream));
}

static size_t channel_total(int k, const int *cs) {
    size_t t = 0;
    for (int i = 0; i < k; i++) t += (size_t)cs[i];
    return t;
}

static void cu_concat_forward(backend *be, size_t m, int k, const float *const *xs, const int *cs,
                              float *y) {
    cuda_ctx *c = cuda_enter(be, "concat_forward");
    size_t ct = channel_total(k, cs), off = 0;
    for (int i = 0; i < k; i++) {
        if (m && cs[i]) copy_cols(c, m, (size_t)cs[i], xs[i], (size_t)cs[i], y + off, ct);
        off += (size_t)cs[i];
    }
    cuda_leave(c);
}
static void cu_concat_backward(backend *be, size_t m, int k, const int *cs, const float *dy,
                               float *const *dxs) {
    cuda_ctx *c = cuda_enter(be, "concat_backward");
    size_t ct = channel_total(k, cs), off = 0;
    for (int i = 0; i < k; i++) {
        if (dxs[i] && m && cs[i])
            strided_acc(c, m, (size_t)cs[i], dy + off, ct, dxs[i], (size_t)cs[i]);
        off += (size_t)cs[i];
    }
    cuda_leave(c);
}
static void cu_slice_forward(backend *be, size_t m, int cx, int off, int ch, const float *x,
                             float *y) {
    cuda_ctx *c = cuda_enter(be, "slice_forward");
    if (m && ch) copy_cols(c, m, (size_t)ch, x + off, (size_t)cx, y, (size_t)ch);
    cuda_leave(c);
}
static void cu_slice_backward(backend *be, size_t m, int cx, int off, int ch, const float *dy,
                              float *dx) {
    cuda_ctx *c = cuda_enter(be, "slice_backward");
    if (m && ch) strided_acc(c, m, (size_t)ch, dy, (size_t)ch, dx + off, (size_t)cx);
    cuda_leave(c);
}
static void cu_upsample_forward(backend *be, int n, int h, int w, int ch, const float *x,
                                float *y) {
    cuda_ctx *c = cuda_enter(be, "upsample2x_forward");
    size_t total = (size_t)n * h * w * ch * 4;
    upsample_fwd_k<<<cuda_blocks(c, total), CUDA_BLOCK, 0, c->stream>>>(total, h, w, ch, x, y);
    CUDA_LAUNCHED("upsample_fwd_k");
    cuda_leave(c);
}
static void cu_upsample_backward(backend *be, int n, int h, int w, int ch, const float *dy,
                                 float *dx) {
    cuda_ctx *c = cuda_enter(be, "upsample2x_backward");
    size_t total = (size_t)n * h * w * ch;
    upsample_bwd_k<<<cuda_blocks(c, total), CUDA_BLOCK, 0, c->stream>>>(total, h, w, ch, dy, dx);
    CUDA_LAUNCHED("upsample_bwd_k");
    cuda_leave(c);
}

void cuda_fill_layout(backend_i *f) {
    f->concat_forward = cu_concat_forward;
    f->concat_backward = cu_concat_backward;
    f->slice_forward = cu_slice_forward;
    f->slice_backward = cu_slice_backward;
    f->upsample2x_forward = cu_upsample_forward;
    f->upsample2x_backward = cu_upsample_backward;
}
