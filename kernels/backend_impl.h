/* For backend implementations only (kernels/backend_*.c, .cu): the interface a backend fills in.
 * Callers use kernels/backend.h. Like ggml's ggml-backend-impl.h: one struct of function
 * pointers, the public functions in backend.c dispatch through it.
 *
 * Required: every memory, synchronisation and event entry, and destroy (backend_register checks).
 * Ops: NULL means "not supported"; backend_supports() reports it and calling it is fatal with a
 * message. conv2d_workspace_floats is required exactly when a conv2d op is provided. Each op has
 * the semantics of the CPU kernel its backend.h comment names (accumulating outputs included). */
#pragma once
#include "kernels/backend.h"

typedef struct backend_i {
    void (*destroy)(backend *be);
    /* interop (optional: NULL on a backend without a device): backend_device,
     * backend_native_stream */
    int (*device)(const backend *be);
    void *(*native_stream)(const backend *be);
    /* memory */
    void *(*alloc)(backend *be, size_t bytes);
    void (*free)(backend *be, void *p);
    void (*to_device)(backend *be, void *dst, const void *src, size_t bytes);
    void (*to_host)(backend *be, void *dst, const void *src, size_t bytes);
    void (*copy)(backend *be, void *dst, const void *src, size_t bytes);
    void (*copy_2d)(backend *be, void *dst, size_t dst_pitch, const void *src, size_t src_pitch,
                    size_t width, size_t rows);
    void (*zero)(backend *be, void *dst, size_t bytes);
    /* optional (NULL: malloc / free, and a synchronous to_device): page-locked host memory and
     * uploads on a copy stream (backend_host_alloc, backend_to_device_async) */
    void *(*host_alloc)(backend *be, size_t bytes);
    void (*host_free)(backend *be, void *p);
    void (*to_device_async)(backend *be, void *dst, const void *src, size_t bytes,
                            backend_event *after, backend_event *done);
    /* synchronisation and events */
    void (*synchronize)(backend *be);
    void (*event_init)(backend *be, backend_event *ev); /* ev zeroed, ev->be set */
    void (*event_fini)(backend *be, backend_event *ev);
    void (*event_record)(backend *be, backend_event *ev);
    void (*event_wait)(backend *be, backend_event *ev);
    void (*event_synchronize)(backend *be, backend_event *ev);
    double (*event_elapsed)(backend *be, backend_event *start, backend_event *end);
    /* ops */
    size_t (*conv2d_workspace_floats)(backend *be, const conv2d_desc *d);
    void (*conv2d_forward)(backend *be, const conv2d_desc *d, const float *x, const float *w,
                           const float *bias, float *y, float *ws);
    void (*conv2d_backward_data)(backend *be, const conv2d_desc *d, const float *w, const float *dy,
                                 float *dx, float *ws);
    void (*conv2d_backward_filter)(backend *be, const conv2d_desc *d, const float *x,
                                   const float *dy, float *dw, float *dbias, float *ws);
    void (*batchnorm_forward_train)(backend *be, int m, int c, const float *x, const float *gamma,
                                    const float *beta, float eps, float momentum,
                                    float *running_mean, float *running_var, float *save_mean,
                                    float *save_invstd, float *y);
    void (*batchnorm_forward_eval)(backend *be, int m, int c, const float *x, const float *gamma,
                                   const float *beta, const float *running_mean,
                                   const float *running_var, float eps, float *y);
    void (*batchnorm_backward)(backend *be, int m, int c, const float *x, const float *gamma,
                               const float *save_mean, const float *save_invstd, const float *dy,
                               float *dx, float *dgamma, float *dbeta);
    void (*batchnorm_silu_forward_train)(backend *be, int m, int c, const float *x,
                                         const float *gamma, const float *beta, float eps,
                                         float momentum, float *running_mean, float *running_var,
                                         float *save_mean, float *save_invstd, float *y);
    void (*batchnorm_silu_forward_eval)(backend *be, int m, int c, const float *x,
                                        const float *gamma, const float *beta,
                                        const float *running_mean, const float *running_var,
                                        float eps, float *y);
    void (*batchnorm_silu_backward)(backend *be, int m, int c, const float *x, const float *gamma,
                                    const float *beta, const float *save_mean,
                                    const float *save_invstd, const float *dy, float *dx,
                                    float *dgamma, float *dbeta);
    void (*silu_forward)(backend *be, size_t n, const float *x, float *y);
    void (*silu_backward)(backend *be, size_t n, const float *x, const float *dy, float *dx);
    void (*add)(backend *be, size_t n, const float *a, const float *b, float *y);
    void (*accumulate)(backend *be, size_t n, const float *x, float *y);
    void (*scale)(backend *be, size_t n, float s, float *y);
    void (*concat_forward)(backend *be, size_t m, int k, const float *const *xs, const int *cs,
                           float *y);
    void (*concat_backward)(backend *be, size_t m, int k, const int *cs, const float *dy,
                            float *const *dxs);
    void (*slice_forward)(backend *be, size_t m, int cx, int off, int c, const float *x, float *y);
    void (*slice_backward)(backend *be, size_t m, int cx, int off, int c, const float *dy,
                           float *dx);
    void (*upsample2x_forward)(backend *be, int n, int h, int w, int c, const float *x, float *y);
    void (*upsample2x_backward)(backend *be, int n, int h, int w, int c, const float *dy,
                                float *dx);
    void (*maxpool_forward)(backend *be, int n, int h, int w, int c, int k, int stride, int pad,
                            const float *x, float *y, int32_t *argmax);
    void (*maxpool_backward)(backend *be, int n, int h, int w, int c, int k, int stride, int pad,
                             const float *dy, const int32_t *argmax, float *dx);
    void (*attention_forward)(backend *be, const attention_desc *d, const float *qkv, float *out,
                              float *v_out, float *probs);
    void (*attention_backward)(backend *be, const attention_desc *d, const float *qkv,
                               const float *probs, const float *dout, const float *dv, float *dqkv);
    void (*detect_decode)(backend *be, const detect_decode_desc *d, const float *logits,
                          const float *anchor_pts, const float *anchor_str, float *out);
    void (*normalize_u8)(backend *be, size_t n, const uint8_t *x, float s, float *y);
    void (*optim_step)(backend *be, optimizer *o, float *params, const float *grads);
    void (*clip_grad_norm)(backend *be, float *grads, size_t n, double max_norm);
    void (*ema_blend)(backend *be, float *ema, const float *model, size_t n, double d);
    /* optional: without it backend_optim_update runs clip_grad_norm, optim_step, zero, ema_blend */
    void (*optim_update)(backend *be, optimizer *o, float *params, float *grads, double max_norm,
                         float *ema, double d);
    void (*detloss)(backend *be, const backend_detloss_desc *d, const float *const preds[2],
                    float *const dpreds[2], double *result);
    void (*conv2d_backward_data_set)(backend *be, const conv2d_desc *d, const float *w,
                                     const float *dy, float *dx, float *ws);
    void (*to_bf16)(backend *be, size_t n, const float *x, bf16 *y);
    void (*conv2d_forward_bf16)(backend *be, const conv2d_desc *d, const bf16 *xb, const float *w,
                                const float *bias, float *y, float *ws);
    void (*conv2d_backward_bf16)(backend *be, const conv2d_desc *d, const bf16 *xb, const float *w,
                                 const bf16 *dyb, float *dx, bool dx_write, float *dw, float *ws);
    void (*batchnorm_silu_backward_set)(backend *be, int m, int c, const float *x,
                                        const float *gamma, const float *beta,
                                        const float *save_mean, const float *save_invstd,
                                        const float *dy, float *dx, float *dgamma, float *dbeta);
    void (*nms)(backend *be, const backend_nms_desc *d, const float *pred, detection *dets,
                int32_t *counts);
    void (*batchnorm_silu_forward_train_bf16)(backend *be, int m, int c, const float *x,
                                              const float *gamma, const float *beta, float eps,
                                              float momentum, float *running_mean,
                                              float *running_var, float *save_mean,
                                              float *save_invstd, float *y, bf16 *yb);
    void (*batchnorm_silu_forward_eval_bf16)(backend *be, int m, int c, const float *x,
                                             const float *gamma, const float *beta,
                                             const float *running_mean, const float *running_var,
                                             float eps, float *y, bf16 *yb);
    void (*batchnorm_silu_backward_set_bf16)(backend *be, int m, int c, const float *x,
                                             const float *gamma, const float *beta,
                                             const float *save_mean, const float *save_invstd,
                                             const float *dy, float *dx, bf16 *dxb, float *dgamma,
                                             float *dbeta);
} backend_i;

struct backend {
    backend_i iface;
    const char *name;
    bool host_memory; /* backend_memory_is_host */
    void *ctx;        /* the implementation's state */
};

/* One event; the fields are the implementation's (a timestamp on the CPU, a cudaEvent_t...). */
struct backend_event {
    backend *be;
    double t;
    void *handle;
};

/* Checks the required entries of a filled-in backend (fatal with the backend's name if one is
 * missing) and returns it. */
backend *backend_register(backend *be);
