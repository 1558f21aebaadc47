/* 2-D convolution, fp32. Activations NHWC. Weights OHWI: [cout][kh][kw][cin/groups]
 * (PyTorch's OIHW transposed (0,2,3,1)). Optional bias [cout]. Zero padding, dilation 1.
 * Any kernel size, stride, padding and groups (groups == cin == cout is depthwise).
 *
 * Backward ACCUMULATES: dx += ..., dw += ..., dbias += ... (any of them may be NULL to skip).
 * Accumulation lets a graph fan out and lets micro-batches add up without extra passes.
 *
 * State: a conv2d_ctx holds the implementation choice, the oneDNN engine and stream and the table
 * of primitives per shape. The CPU backend (kernels/backend.h) owns one; the plain conv2d_*
 * functions use a process-wide default context (tests and benchmarks). A context is not
 * thread-safe: one thread calls into it (each op uses OpenMP inside). */
#pragma once
#include <stddef.h>
#include <stdint.h>

/* Arithmetic of a convolution. CONV2D_BF16 (mixed precision, what amp=bf16 trains with): the
 * inputs of each op are rounded to bfloat16 (kernels/bf16.h: x and w in forward, dy and w in
 * backward-data, x and dy in backward-filter) and the products are summed in float; outputs, the
 * bias and its gradient, and the accumulation into dx / dw stay float. Its CPU reference is the
 * float convolution of the rounded inputs (they differ by the order of the float sums only). */
typedef enum conv2d_prec { CONV2D_FP32 = 0, CONV2D_BF16 = 1 } conv2d_prec;

typedef struct conv2d_desc {
    int n, h, w, cin; /* input */
    int cout, kh, kw, stride, pad, groups;
    int oh, ow;       /* output, derived by conv2d_make */
    conv2d_prec prec; /* CONV2D_FP32 from conv2d_make */
} conv2d_desc;

/* Implementation choice, per op (forward, backward-data, backward-weights). AUTO picks per shape
 * from measurements (kernels/conv2d.c: auto_path): oneDNN convolution primitives, im2col or plain
 * (1x1) dnnl_sgemm, falling back to GEMM / direct loops if oneDNN refuses a shape. GEMM and ONEDNN
 * force one family for every op; DIRECT forces our depthwise loops for depthwise shapes, MATMUL
 * oneDNN's matmul primitive for every op of 1x1 stride-1 bf16 convs (others as AUTO). For tests
 * and benchmarks. */
typedef enum conv2d_impl {
    CONV2D_AUTO,
    CONV2D_GEMM,
    CONV2D_ONEDNN,
    CONV2D_DIRECT,
    CONV2D_MATMUL
} conv2d_impl;

/* Square kernel k, PyTorch output size: oh = (h + 2 pad - k) / stride + 1. */
conv2d_desc conv2d_make(int n, int h, int w, int cin, int cout, int k, int stride, int pad,
                        int groups);
/* Elements of the input, output and weight tensors. */
static inline size_t conv2d_x_elems(const conv2d_desc *d) {
    return (size_t)d->n * d->h * d->w * d->cin;
}
static inline size_t conv2d_y_elems(const conv2d_desc *d) {
    return (size_t)d->n * d->oh * d->ow * d->cout;
}
static inline size_t conv2d_w_elems(const conv2d_desc *d) {
    return (size_t)d->cout * d->kh * d->kw * (d->cin / d->groups);
}
/* Multiply-adds of one forward pass (for FLOP counts: 2 x this). */
double conv2d_macs(const conv2d_desc *d);

/* ---- on a context ---- */
typedef struct conv2d_ctx conv2d_ctx;
conv2d_ctx *conv2d_ctx_create(conv2d_impl impl);
void conv2d_ctx_destroy(conv2d_ctx *c);
/* Scratch the caller must provide to the ops (floats; may be 0; need not be aligned). Depends on
 * the thread count: query it after kernels_set_threads(). */
size_t conv2d_ctx_workspace_floats(conv2d_ctx *c, const conv2d_desc *d);
void conv2d_ctx_forward(conv2d_ctx *c, const conv2d_desc *d, const float *x, const float *w,
                        const float *bias, float *y, float *ws);
/* The two halves of backward: dx += d/dx; dw += d/dw and dbias += sum of dy (dbias may be NULL).
 * Each gives the same bits as conv2d_backward does for that output. */
void conv2d_ctx_backward_data(conv2d_ctx *c, const conv2d_desc *d, const float *w, const float *dy,
                              float *dx, float *ws);
/* dx = d/dx: backward-data WRITING dx instead of adding to it (for a gradient this conv is the
 * first to produce; saves zeroing it and, on the oneDNN path, a pass over it). The same values as
 * conv2d_ctx_backward_data into a zeroed dx. */
void conv2d_ctx_backward_data_set(conv2d_ctx *c, const conv2d_desc *d, const float *w,
                                  const float *dy, float *dx, float *ws);
void conv2d_ctx_backward_filter(conv2d_ctx *c, const conv2d_desc *d, const float *x,
                                const float *dy, float *dw, float *dbias, float *ws);
/* CONV2D_BF16 convolutions whose x / dy are already bf16 (kernels/bf16.h; the model converts each
 * activation once, or its producer writes it): the values of conv2d_ctx_forward /
 * conv2d_ctx_backward_* on the floats they were rounded from. Backward: dw += (when dw), dx += or,
 * with dx_write, dx = (when dx); no bias gradient (take it from the float dy). */
void conv2d_ctx_forward_bf16(conv2d_ctx *c, const conv2d_desc *d, const uint16_t *xb,
                             const float *w, const float *bias, float *y, float *ws);
void conv2d_ctx_backward_bf16(conv2d_ctx *c, const conv2d_desc *d, const uint16_t *xb,
                              const float *w, const uint16_t *dyb, float *dx, int dx_write,
                              float *dw, float *ws);
/* Which implementation runs this shape, e.g. "onednn-brgconv", "im2col+dnnl_sgemm". */
const char *conv2d_ctx_path(conv2d_ctx *c, const conv2d_desc *d);
/* YOLO_CONV_IMPL=auto|gemm|onednn|direct|matmul (for debugging a model run), else fallback. A value
 * that is none of these warns and gives fallback. */
conv2d_impl conv2d_impl_from_env(conv2d_impl fallback);

/* ---- on the default context (its implementation starts as YOLO_CONV_IMPL, else AUTO) ---- */
conv2d_ctx *conv2d_default_ctx(void); /* conv2d_ctx_destroy leaves it alone */
size_t conv2d_workspace_floats(const conv2d_desc *d);
void conv2d_forward(const conv2d_desc *d, const float *x, const float *w, const float *bias,
                    float *y, float *ws);
void conv2d_backward(const conv2d_desc *d, const float *x, const float *w, const float *dy,
                     float *dx, float *dw, float *dbias, float *ws);
const char *conv2d_path(const conv2d_desc *d);
void conv2d_set_impl(conv2d_impl impl);
/* Frees the cached oneDNN primitives (optional; e.g. at exit or to compare creation costs). */
void conv2d_cache_clear(void);
