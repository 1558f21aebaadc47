/* The CPU backend: the fp32 reference. Memory is host memory (malloc), every op is the CPU
 * kernel of kernels/ that its backend.h comment names, run at once on the calling thread (OpenMP
 * inside), so the stream is the program order and an event is a timestamp.
 *
 * Its context holds what used to be module-wide state of the kernels: the thread count (applied
 * to kernels_set_threads() on entry to every op, which is how the reference kernels are told) and
 * the convolution context (implementation choice, oneDNN engine, stream and primitive table). */
#include "kernels/backend_impl.h"

#include "common/log.h"
#include "common/timer.h"
#include "kernels/activation.h"
#include "kernels/batchnorm.h"
#include "kernels/batchnorm_silu.h"
#include "kernels/bf16.h"
#include "kernels/pool.h"
#include "kernels/tensor_ops.h"
#include "kernels/threads.h"

#include <stdlib.h>
#include <string.h>

typedef struct cpu_ctx {
    int threads; /* 0: leave kernels_threads() as the process set it */
    conv2d_ctx *conv;
    detloss_ctx *loss; /* the loss's scratch, made on first use */
} cpu_ctx;

static cpu_ctx *ctx_of(const backend *be) {
    return be->ctx;
}

/* Every op starts here: the kernels read their thread count from kernels_threads(). */
static void enter(backend *be) {
    const cpu_ctx *c = ctx_of(be);
    if (c->threads > 0 && kernels_threads() != c->threads) kernels_set_threads(c->threads);
}

/* ---- memory ---- */

static void *cpu_alloc(backend *be, size_t bytes) {
    (void)be;
    return xmalloc(bytes ? bytes : 1);
}
static void cpu_free(backend *be, void *p) {
    (void)be;
    free(p);
}
static void cpu_copy(backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (dst != src) memcpy(dst, src, bytes);
}
static void cpu_copy_2d(backend *be, void *dst, size_t dst_pitch, const void *src, size_t src_pitch,
                        size_t width, size_t rows) {
    (void)be;
    for (size_t r = 0; r < rows; r++)
        memcpy((char *)dst + r * dst_pitch, (const char *)src + r * src_pitch, width);
}
static void cpu_zero(backend *be, void *dst, size_t bytes) {
    (void)be;
    memset(dst, 0, bytes);
}

/* ---- synchronisation and events: everything has run when a call returns ---- */

static void cpu_nop(backend *be) {
    (void)be;
}
static void cpu_event_nop(backend *be, backend_event *ev) {
    (void)be;
    (void)ev;
}
static void cpu_event_record(backend *be, backend_event *ev) {
    (void)be;
    ev->t = now_seconds();
}
static double cpu_event_elapsed(backend *be, backend_event *start, backend_event *end) {
    (void)be;
    return end->t - start->t;
}

/* ---- ops ---- */

static size_t cpu_conv2d_workspace_floats(backend *be, const conv2d_desc *d) {
    enter(be);
    return conv2d_ctx_workspace_floats(ctx_of(be)->conv, d);
}
static void cpu_conv2d_forward(backend *be, const conv2d_desc *d, const float *x, const float *w,
                               const float *bias, float *y, float *ws) {
    enter(be);
    conv2d_ctx_forward(ctx_of(be)->conv, d, x, w, bias, y, ws);
}
static void cpu_conv2d_backward_data(backend *be, const conv2d_desc *d, const float *w,
                                     const float *dy, float *dx, float *ws) {
    enter(be);
    conv2d_ctx_backward_data(ctx_of(be)->conv, d, w, dy, dx, ws);
}
static void cpu_conv2d_backward_data_set(backend *be, const conv2d_desc *d, const float *w,
                                         const float *dy, float *dx, float *ws) {
    enter(be);
    conv2d_ctx_backward_data_set(ctx_of(be)->conv, d, w, dy, dx, ws);
}
static void cpu_conv2d_backward_filter(backend *be, const conv2d_desc *d, const float *x,
                                       const float *dy, float *dw, float *dbias, float *ws) {
    enter(be);
    conv2d_ctx_backward_filter(ctx_of(be)->conv, d, x, dy, dw, dbias, ws);
}
static void cpu_bn_forward_train(backend *be, int m, int c, const float *x, const float *gamma,
                                 const float *beta, float eps, float momentum, float *running_mean,
                                 float *running_var, float *save_mean, float *save_invstd,
                                 float *y) {
    enter(be);
    batchnorm_forward_train(m, c, x, gamma, beta, eps, momentum, running_mean, running_var,
                            save_mean, save_invstd, y);
}
static void cpu_bn_forward_eval(backend *be, int m, int c, const float *x, const float *gamma,
                                const float *beta, const float *running_mean,
                                const float *running_var, float eps, float *y) {
    enter(be);
    batchnorm_forward_infer(m, c, x, gamma, beta, running_mean, running_var, eps, y);
}
static void cpu_bn_backward(backend *be, int m, int c, const float *x, const float *gamma,
                            const float *save_mean, const float *save_invstd, const float *dy,
                            float *dx, float *dgamma, float *dbeta) {
    enter(be);
    batchnorm_backward(m, c, x, gamma, save_mean, save_invstd, dy, dx, dgamma, dbeta);
}
static void cpu_bn_silu_forward_train(backend *be, int m, int c, const float *x, const float *gamma,
                                      const float *beta, float eps, float momentum,
                                      float *running_mean, float *running_var, float *save_mean,
                                      float *save_invstd, float *y) {
    enter(be);
    batchnorm_silu_forward_train(m, c, x, gamma, beta, eps, momentum, running_mean, running_var,
                                 save_mean, save_invstd, y);
}
static void cpu_bn_silu_forward_eval(backend *be, int m, int c, const float *x, const float *gamma,
                                     const float *beta, const float *running_mean,
                                     const float *running_var, float eps, float *y) {
    enter(be);
    batchnorm_silu_forward_infer(m, c, x, gamma, beta, running_mean, running_var, eps, y);
}
static void cpu_bn_silu_backward(backend *be, int m, int c, const float *x, const float *gamma,
                                 const float *beta, const float *save_mean,
                                 const float *save_invstd, const float *dy, float *dx,
                                 float *dgamma, float *dbeta) {
    enter(be);
    batchnorm_silu_backward(m, c, x, gamma, beta, save_mean, save_invstd, dy, dx, dgamma, dbeta);
}
static void cpu_bn_silu_backward_set(backend *be, int m, int c, const float *x, const float *gamma,
                                     const float *beta, const float *save_mean,
                                     const float *save_invstd, const float *dy, float *dx,
                                     float *dgamma, float *dbeta) {
    enter(be);
    batchnorm_silu_backward_set(m, c, x, gamma, beta, save_mean, save_invstd, dy, dx, dgamma,
                                dbeta);
}
static void cpu_bn_silu_forward_train_bf16(backend *be, int m, int c, const float *x,
                                           const float *gamma, const float *beta, float eps,
                                           float momentum, float *running_mean, float *running_var,
                                           float *save_mean, float *save_invstd, float *y,
                                           bf16 *yb) {
    enter(be);
    batchnorm_silu_forward_train_bf16(m, c, x, gamma, beta, eps, momentum, running_mean,
                                      running_var, save_mean, save_invstd, y, yb);
}
static void cpu_bn_silu_forward_eval_bf16(backend *be, int m, int c, const float *x,
                                          const float *gamma, const float *beta,
                                          const float *running_mean, const float *running_var,
                                          float eps, float *y, bf16 *yb) {
    enter(be);
    batchnorm_silu_forward_infer_bf16(m, c, x, gamma, beta, running_mean, running_var, eps, y, yb);
}
static void cpu_bn_silu_backward_set_bf16(backend *be, int m, int c, const float *x,
                                          const float *gamma, const float *beta,
                                          const float *save_mean, const float *save_invstd,
                                          const float *dy, float *dx, bf16 *dxb, float *dgamma,
                                          float *dbeta) {
    enter(be);
    batchnorm_silu_backward_set_bf16(m, c, x, gamma, beta, save_mean, save_invstd, dy, dx, dxb,
                                     dgamma, dbeta);
}
static void cpu_to_bf16(backend *be, size_t n, const float *x, bf16 *y) {
    enter(be);
    bf16_from_f32(n, x, y);
}
static void cpu_conv2d_forward_bf16(backend *be, const conv2d_desc *d, const bf16 *xb,
                                    const float *w, const float *bias, float *y, float *ws) {
    enter(be);
    conv2d_ctx_forward_bf16(ctx_of(be)->conv, d, xb, w, bias, y, ws);
}
static void cpu_conv2d_backward_bf16(backend *be, const conv2d_desc *d, const bf16 *xb,
                                     const float *w, const bf16 *dyb, float *dx, bool dx_write,
                                     float *dw, float *ws) {
    enter(be);
    conv2d_ctx_backward_bf16(ctx_of(be)->conv, d, xb, w, dyb, dx, dx_write, dw, ws);
}
static void cpu_silu_forward(backend *be, size_t n, const float *x, float *y) {
    enter(be);
    silu_forward(n, x, y);
}
static void cpu_silu_backward(backend *be, size_t n, const float *x, const float *dy, float *dx) {
    enter(be);
    silu_backward(n, x, dy, dx);
}
static void cpu_add(backend *be, size_t n, const float *a, const float *b, float *y) {
    enter(be);
    add_forward(n, a, b, y);
}
static void cpu_accumulate(backend *be, size_t n, const float *x, float *y) {
    enter(be);
    accumulate(n, x, y);
}
static void cpu_scale(backend *be, size_t n, float s, float *y) {
    enter(be);
    scale_inplace(n, s, y);
}
static void cpu_concat_forward(backend *be, size_t m, int k, const float *const *xs, const int *cs,
                               float *y) {
    enter(be);
    concat_forward(m, k, xs, cs, y);
}
static void cpu_concat_backward(backend *be, size_t m, int k, const int *cs, const float *dy,
                                float *const *dxs) {
    enter(be);
    concat_backward(m, k, cs, dy, dxs);
}
static void cpu_slice_forward(backend *be, size_t m, int cx, int off, int c, const float *x,
                              float *y) {
    enter(be);
    slice_channels_forward(m, cx, off, c, x, y);
}
static void cpu_slice_backward(backend *be, size_t m, int cx, int off, int c, const float *dy,
                               float *dx) {
    enter(be);
    slice_channels_backward(m, cx, off, c, dy, dx);
}
static void cpu_upsample_forward(backend *be, int n, int h, int w, int c, const float *x,
                                 float *y) {
    enter(be);
    upsample2x_forward(n, h, w, c, x, y);
}
static void cpu_upsample_backward(backend *be, int n, int h, int w, int c, const float *dy,
                                  float *dx) {
    enter(be);
    upsample2x_backward(n, h, w, c, dy, dx);
}
static void cpu_maxpool_forward(backend *be, int n, int h, int w, int c, int k, int stride, int pad,
                                const float *x, float *y, int32_t *argmax) {
    enter(be);
    maxpool_forward(n, h, w, c, k, stride, pad, x, y, argmax);
}
static void cpu_maxpool_backward(backend *be, int n, int h, int w, int c, int k, int stride,
                                 int pad, const float *dy, const int32_t *argmax, float *dx) {
    enter(be);
    maxpool_backward(n, (h + 2 * pad - k) / stride + 1, (w + 2 * pad - k) / stride + 1, c, dy,
                     argmax, dx);
}
static void cpu_attention_forward(backend *be, const attention_desc *d, const float *qkv,
                                  float *out, float *v_out, float *probs) {
    enter(be);
    attention_forward(d, qkv, out, v_out, probs);
}
static void cpu_attention_backward(backend *be, const attention_desc *d, const float *qkv,
                                   const float *probs, const float *dout, const float *dv,
                                   float *dqkv) {
    enter(be);
    attention_backward(d, qkv, probs, dout, dv, dqkv);
}
static void cpu_detect_decode(backend *be, const detect_decode_desc *d, const float *logits,
                              const float *anchor_pts, const float *anchor_str, float *out) {
    enter(be);
    detect_decode(d, logits, anchor_pts, anchor_str, out);
}
static void cpu_normalize_u8(backend *be, size_t n, const uint8_t *x, float s, float *y) {
    enter(be);
    normalize_u8(n, x, s, y);
}
static void cpu_optim_step(backend *be, optimizer *o, float *params, const float *grads) {
    enter(be);
    optim_step(o, params, grads);
}
static void cpu_clip_grad_norm(backend *be, float *grads, size_t n, double max_norm) {
    enter(be);
    optim_clip_grad_norm(grads, n, max_norm);
}
static void cpu_ema_blend(backend *be, float *ema, const float *model, size_t n, double d) {
    enter(be);
    ema_blend(ema, model, n, d);
}
static void cpu_optim_update(backend *be, optimizer *o, float *params, float *grads,
                             double max_norm, float *ema, double d) {
    enter(be);
    optim_update(o, params, grads, max_norm, ema, d);
}
/* The CPU loss (kernels/detloss.h) reads the head outputs and writes the gradients in place: the
 * CPU backend's memory is host memory, also in device-memory mode. */
static void cpu_detloss(backend *be, const backend_detloss_desc *d, const float *const preds[2],
                        float *const dpreds[2], double *result) {
    enter(be);
    cpu_ctx *c = ctx_of(be);
    if (!c->loss) c->loss = detloss_create();
    float *g[2] = {dpreds ? dpreds[0] : NULL, dpreds && d->branches == 2 ? dpreds[1] : NULL};
    detloss_out o;
    int rc =
        d->branches == 2
            ? detloss_e2e(c->loss, &d->h[0], &d->h[1], d->o2m, d->o2o, d->B, d->A, preds[0],
                          preds[1], d->anchor_points, d->strides, d->ntargets, d->targets, d->img_h,
                          d->img_w, g[0], g[1], &o, NULL)
            : detloss_branch(c->loss, &d->h[0], d->B, d->A, preds[0], d->anchor_points, d->strides,
                             d->ntargets, d->targets, d->img_h, d->img_w, NULL, g[0], &o);
    if (rc)
        FATAL("backend %s: detloss refused reg_max %d, nc %d (or out of memory)", be->name,
              d->h[0].reg_max, d->h[0].nc);
    size_t n = (size_t)d->B * d->A * (4 * (size_t)d->h[0].reg_max + (size_t)d->h[0].nc);
    for (int br = 0; br < 2; br++)
        if (g[br] && d->grad_scale != 1.0f) scale_inplace(n, d->grad_scale, g[br]);
    for (int k = 0; k < 3; k++) {
        result[BACKEND_DETLOSS_ITEMS + k] += o.items[k];
        result[BACKEND_DETLOSS_LOSS_SUM + k] += o.loss_sum[k];
    }
    result[BACKEND_DETLOSS_TARGET_RAW] += o.target_scores_raw;
    result[BACKEND_DETLOSS_NUM_FG] += o.num_fg;
    result[BACKEND_DETLOSS_TOTAL] += o.total;
}
/* kernels/nms.c, image by image: the CPU backend's memory is host memory. */
static void cpu_nms(backend *be, const backend_nms_desc *d, const float *pred, detection *dets,
                    int32_t *counts) {
    enter(be);
    size_t per_image = (size_t)d->anchors * (size_t)(4 + d->nc);
    for (int b = 0; b < d->images; b++) {
        const float *p = pred + (size_t)b * per_image;
        detection *o = dets + (size_t)b * (size_t)(d->cfg.max_det > 0 ? d->cfg.max_det : 0);
        counts[b] = d->one2one ? topk_detect(p, d->anchors, d->nc, &d->cfg, o)
                               : nms_detect(p, d->anchors, d->nc, &d->cfg, o);
    }
}

static const backend_i cpu_iface = {
    .destroy = NULL, /* set per instance: the default backend is never destroyed */
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .copy = cpu_copy,
    .copy_2d = cpu_copy_2d,
    .zero = cpu_zero,
    .synchronize = cpu_nop,
    .event_init = cpu_event_nop,
    .event_fini = cpu_event_nop,
    .event_record = cpu_event_record,
    .event_wait = cpu_event_nop,
    .event_synchronize = cpu_event_nop,
    .event_elapsed = cpu_event_elapsed,
    .conv2d_workspace_floats = cpu_conv2d_workspace_floats,
    .conv2d_forward = cpu_conv2d_forward,
    .conv2d_backward_data = cpu_conv2d_backward_data,
    .conv2d_backward_filter = cpu_conv2d_backward_filter,
    .batchnorm_forward_train = cpu_bn_forward_train,
    .batchnorm_forward_eval = cpu_bn_forward_eval,
    .batchnorm_backward = cpu_bn_backward,
    .batchnorm_silu_forward_train = cpu_bn_silu_forward_train,
    .batchnorm_silu_forward_eval = cpu_bn_silu_forward_eval,
    .batchnorm_silu_backward = cpu_bn_silu_backward,
    .silu_forward = cpu_silu_forward,
    .silu_backward = cpu_silu_backward,
    .add = cpu_add,
    .accumulate = cpu_accumulate,
    .scale = cpu_scale,
    .concat_forward = cpu_concat_forward,
    .concat_backward = cpu_concat_backward,
    .slice_forward = cpu_slice_forward,
    .slice_backward = cpu_slice_backward,
    .upsample2x_forward = cpu_upsample_forward,
    .upsample2x_backward = cpu_upsample_backward,
    .maxpool_forward = cpu_maxpool_forward,
    .maxpool_backward = cpu_maxpool_backward,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .detect_decode = cpu_detect_decode,
    .normalize_u8 = cpu_normalize_u8,
    .optim_step = cpu_optim_step,
    .optim_update = cpu_optim_update,
    .clip_grad_norm = cpu_clip_grad_norm,
    .ema_blend = cpu_ema_blend,
    .detloss = cpu_detloss,
    .conv2d_backward_data_set = cpu_conv2d_backward_data_set,
    .to_bf16 = cpu_to_bf16,
    .conv2d_forward_bf16 = cpu_conv2d_forward_bf16,
    .conv2d_backward_bf16 = cpu_conv2d_backward_bf16,
    .batchnorm_silu_backward_set = cpu_bn_silu_backward_set,
    .nms = cpu_nms,
    .batchnorm_silu_forward_train_bf16 = cpu_bn_silu_forward_train_bf16,
    .batchnorm_silu_forward_eval_bf16 = cpu_bn_silu_forward_eval_bf16,
    .batchnorm_silu_backward_set_bf16 = cpu_bn_silu_backward_set_bf16,
};

static void cpu_destroy(backend *be) {
    cpu_ctx *c = ctx_of(be);
    conv2d_ctx_destroy(c->conv);
    detloss_destroy(c->loss);
    free(c);
    free(be);
}

static void cpu_destroy_default(backend *be) {
    (void)be;
}

backend *backend_cpu_create(const backend_cpu_opts *opts) {
    backend_cpu_opts o = {.conv_impl = conv2d_impl_from_env(CONV2D_AUTO)};
    if (opts) o = *opts;
    if (o.threads < 0) FATAL("backend_cpu_create: threads %d", o.threads);
    cpu_ctx *c = xcalloc(1, sizeof *c);
    c->threads = o.threads;
    c->conv = conv2d_ctx_create(o.conv_impl);
    backend *be = xcalloc(1, sizeof *be);
    be->iface = cpu_iface;
    be->iface.destroy = cpu_destroy;
    be->name = o.device_memory ? "cpu (device-memory mode)" : "cpu";
    be->host_memory = !o.device_memory;
    be->ctx = c;
    return backend_register(be);
}

backend *backend_cpu_default(void) {
    static cpu_ctx c;
    static backend be;
    if (!be.ctx) { /* first use; models are created from one thread */
        c.conv = conv2d_default_ctx();
        be.iface = cpu_iface;
        be.iface.destroy = cpu_destroy_default;
        be.name = "cpu";
        be.host_memory = true;
        be.ctx = &c;
        backend_register(&be);
    }
    return &be;
}
