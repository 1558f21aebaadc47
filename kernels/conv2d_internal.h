/* Internal to the conv2d module (kernels/conv2d*.c); not for other modules. */
#pragma once
#include "kernels/bf16.h"
#include "kernels/conv2d.h"

#include <oneapi/dnnl/dnnl.h>
#include <stddef.h>
#include <stdint.h>

static inline size_t conv2d_round16(size_t floats) {
    return (floats + 15) & ~(size_t)15;
}
static inline size_t conv2d_rows_in(const conv2d_desc *d) {
    return (size_t)d->n * d->h * d->w;
}

/* The three ops of a convolution, each with its own implementation choice. */
enum { CONV_FWD, CONV_BWD_DATA, CONV_BWD_WEIGHTS, CONV_NOPS };

/* Depthwise (groups == cin == cout) direct loops, kernels/conv2d_depthwise.c. ws: 64-byte aligned,
 * conv2d_dw_ws_floats(d, threads) floats. Backward accumulates; dx or dw may be NULL. */
size_t conv2d_dw_ws_floats(const conv2d_desc *d, int threads);
void conv2d_dw_forward(const conv2d_desc *d, const float *x, const float *w, const float *bias,
                       float *y, float *ws);
void conv2d_dw_backward(const conv2d_desc *d, const float *x, const float *w, const float *dy,
                        float *dx, float *dw, float *ws);

/* oneDNN primitives, kernels/conv2d_onednn.c. The engine and stream belong to one conv2d_ctx and
 * are created by the first conv2d_dnn_create. */
typedef struct conv2d_dnn_env {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
} conv2d_dnn_env;
void conv2d_dnn_env_init(conv2d_dnn_env *env); /* creates them unless there */
void conv2d_dnn_env_free(conv2d_dnn_env *env);
/* A oneDNN call that must succeed (FATAL from common/log.h otherwise). */
#define DNN_CHECK(call)                                                                            \
    do {                                                                                           \
        dnnl_status_t st_ = (call);                                                                \
        if (st_ != dnnl_success) FATAL("%s failed: oneDNN status %d", #call, (int)st_);            \
    } while (0)
/* A memory object for md (no buffer: set per call), and the scratchpad of a primitive created
 * with dnnl_scratchpad_mode_user (NULL when it needs none; *floats its size, rounded to 16). */
dnnl_memory_t conv2d_dnn_mem(dnnl_engine_t engine, const dnnl_memory_desc_t *md);
dnnl_memory_t conv2d_dnn_scratch(dnnl_engine_t engine, const_dnnl_primitive_desc_t pd,
                                 size_t *floats);
typedef struct dnn_conv dnn_conv; /* the primitives of one shape */
/* NULL if oneDNN has no primitive for this shape. */
dnn_conv *conv2d_dnn_create(conv2d_dnn_env *env, const conv2d_desc *d);
void conv2d_dnn_free(dnn_conv *c);
/* Workspace floats of op (CONV_FWD, ...) and the name of oneDNN's implementation of it. */
size_t conv2d_dnn_ws_floats(const conv2d_desc *d, const dnn_conv *c, int op);
const char *conv2d_dnn_impl_name(const dnn_conv *c, int op);
/* x / dy are given as floats (converted per lane for a bf16 primitive) or, for CONV2D_BF16, as
 * bf16 (xb / dyb not NULL: used as they are). Backward: dw +=; dx += or, with dx_write, =. */
void conv2d_dnn_forward(const conv2d_desc *d, dnn_conv *c, const float *x, const bf16 *xb,
                        const float *w, const float *bias, float *y, float *ws);
void conv2d_dnn_backward(const conv2d_desc *d, dnn_conv *c, const float *x, const bf16 *xb,
                         const float *w, const float *dy, const bf16 *dyb, float *dx, int dx_write,
                         float *dw, float *ws);

/* 1x1 stride-1 CONV2D_BF16 convolutions (groups 1) on oneDNN's matmul primitive
 * (conv2d_matmul.c). NULL if oneDNN refuses. ws: conv2d_mm_ws_floats(d, m, op) floats, 64-byte
 * aligned. x / dy as floats (converted into ws) or as bf16 (xb / dyb not NULL). Forward writes
 * y (+ bias); backward-data dx += or, with dx_write, dx =; backward-weights dw +=. */
typedef struct conv2d_mm conv2d_mm;
conv2d_mm *conv2d_mm_create(conv2d_dnn_env *env, const conv2d_desc *d);
void conv2d_mm_free(conv2d_mm *m);
size_t conv2d_mm_ws_floats(const conv2d_desc *d, const conv2d_mm *m, int op);
const char *conv2d_mm_impl_name(const conv2d_mm *m, int op);
void conv2d_mm_forward(const conv2d_desc *d, conv2d_mm *m, const float *x, const bf16 *xb,
                       const float *w, const float *bias, float *y, float *ws);
void conv2d_mm_backward_data(const conv2d_desc *d, conv2d_mm *m, const float *w, const float *dy,
                             const bf16 *dyb, float *dx, int dx_write, float *ws);
void conv2d_mm_backward_weights(const conv2d_desc *d, conv2d_mm *m, const float *x, const bf16 *xb,
                                const float *dy, const bf16 *dyb, float *dw, float *ws);

/* Tests: the GEMM path's im2col buffer limit in floats of the default context (default 4 Mi; at
 * least one image per chunk). Clears its primitive table, since workspace sizes change. */
void conv2d_set_im2col_cap(size_t floats);
