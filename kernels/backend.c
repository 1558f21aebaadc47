/* Dispatch of the backend interface (kernels/backend.h) through each backend's function table,
 * the op names, and the checks that turn a missing entry into a message. */
#include "kernels/backend_impl.h"

#include "common/log.h"

#include <stdlib.h>

static const char *const op_names[] = {
    "conv2d_forward",
    "conv2d_backward_data",
    "conv2d_backward_filter",
    "batchnorm_forward_train",
    "batchnorm_forward_eval",
    "batchnorm_backward",
    "batchnorm_silu_forward_train",
    "batchnorm_silu_forward_eval",
    "batchnorm_silu_backward",
    "silu_forward",
    "silu_backward",
    "add",
    "accumulate",
    "scale",
    "concat_forward",
    "concat_backward",
    "slice_forward",
    "slice_backward",
    "upsample2x_forward",
    "upsample2x_backward",
    "maxpool_forward",
    "maxpool_backward",
    "attention_forward",
    "attention_backward",
    "detect_decode",
    "normalize_u8",
    "optim_step",
    "clip_grad_norm",
    "ema_blend",
    "detloss",
    "conv2d_backward_data_set",
    "to_bf16",
    "conv2d_forward_bf16",
    "conv2d_backward_bf16",
    "batchnorm_silu_backward_set",
    "nms",
    "batchnorm_silu_forward_train_bf16",
    "batchnorm_silu_forward_eval_bf16",
    "batchnorm_silu_backward_set_bf16",
    "optim_update",
};
_Static_assert(sizeof op_names / sizeof op_names[0] == BACKEND_OP_COUNT,
               "op_names needs one name per backend_op");

const char *backend_op_name(backend_op op) {
    return (unsigned)op < BACKEND_OP_COUNT ? op_names[op] : "?";
}

/* The entry that implements op (a switch without default: the compiler names a missing op). */
static bool has_op(const backend_i *f, backend_op op) {
    switch (op) {
    case BACKEND_OP_CONV2D_FORWARD:
        return f->conv2d_forward != NULL;
    case BACKEND_OP_CONV2D_BACKWARD_DATA:
        return f->conv2d_backward_data != NULL;
    case BACKEND_OP_CONV2D_BACKWARD_FILTER:
        return f->conv2d_backward_filter != NULL;
    case BACKEND_OP_BATCHNORM_FORWARD_TRAIN:
        return f->batchnorm_forward_train != NULL;
    case BACKEND_OP_BATCHNORM_FORWARD_EVAL:
        return f->batchnorm_forward_eval != NULL;
    case BACKEND_OP_BATCHNORM_BACKWARD:
        return f->batchnorm_backward != NULL;
    case BACKEND_OP_BATCHNORM_SILU_FORWARD_TRAIN:
        return f->batchnorm_silu_forward_train != NULL;
    case BACKEND_OP_BATCHNORM_SILU_FORWARD_EVAL:
        return f->batchnorm_silu_forward_eval != NULL;
    case BACKEND_OP_BATCHNORM_SILU_BACKWARD:
        return f->batchnorm_silu_backward != NULL;
    case BACKEND_OP_SILU_FORWARD:
        return f->silu_forward != NULL;
    case BACKEND_OP_SILU_BACKWARD:
        return f->silu_backward != NULL;
    case BACKEND_OP_ADD:
        return f->add != NULL;
    case BACKEND_OP_ACCUMULATE:
        return f->accumulate != NULL;
    case BACKEND_OP_SCALE:
        return f->scale != NULL;
    case BACKEND_OP_CONCAT_FORWARD:
        return f->concat_forward != NULL;
    case BACKEND_OP_CONCAT_BACKWARD:
        return f->concat_backward != NULL;
    case BACKEND_OP_SLICE_FORWARD:
        return f->slice_forward != NULL;
    case BACKEND_OP_SLICE_BACKWARD:
        return f->slice_backward != NULL;
    case BACKEND_OP_UPSAMPLE2X_FORWARD:
        return f->upsample2x_forward != NULL;
    case BACKEND_OP_UPSAMPLE2X_BACKWARD:
        return f->upsample2x_backward != NULL;
    case BACKEND_OP_MAXPOOL_FORWARD:
        return f->maxpool_forward != NULL;
    case BACKEND_OP_MAXPOOL_BACKWARD:
        return f->maxpool_backward != NULL;
    case BACKEND_OP_ATTENTION_FORWARD:
        return f->attention_forward != NULL;
    case BACKEND_OP_ATTENTION_BACKWARD:
        return f->attention_backward != NULL;
    case BACKEND_OP_DETECT_DECODE:
        return f->detect_decode != NULL;
    case BACKEND_OP_NORMALIZE_U8:
        return f->normalize_u8 != NULL;
    case BACKEND_OP_OPTIM_STEP:
        return f->optim_step != NULL;
    case BACKEND_OP_CLIP_GRAD_NORM:
        return f->clip_grad_norm != NULL;
    case BACKEND_OP_EMA_BLEND:
        return f->ema_blend != NULL;
    case BACKEND_OP_DETLOSS:
        return f->detloss != NULL;
    case BACKEND_OP_CONV2D_BACKWARD_DATA_SET:
        return f->conv2d_backward_data_set != NULL;
    case BACKEND_OP_TO_BF16:
        return f->to_bf16 != NULL;
    case BACKEND_OP_CONV2D_FORWARD_BF16:
        return f->conv2d_forward_bf16 != NULL;
    case BACKEND_OP_CONV2D_BACKWARD_BF16:
        return f->conv2d_backward_bf16 != NULL;
    case BACKEND_OP_BATCHNORM_SILU_BACKWARD_SET:
        return f->batchnorm_silu_backward_set != NULL;
    case BACKEND_OP_NMS:
        return f->nms != NULL;
    case BACKEND_OP_BATCHNORM_SILU_FORWARD_TRAIN_BF16:
        return f->batchnorm_silu_forward_train_bf16 != NULL;
    case BACKEND_OP_BATCHNORM_SILU_FORWARD_EVAL_BF16:
        return f->batchnorm_silu_forward_eval_bf16 != NULL;
    case BACKEND_OP_BATCHNORM_SILU_BACKWARD_SET_BF16:
        return f->batchnorm_silu_backward_set_bf16 != NULL;
    case BACKEND_OP_OPTIM_UPDATE: /* fused, or composed of the three ops (and zero) */
        return f->optim_update || (f->optim_step && f->clip_grad_norm && f->ema_blend);
    case BACKEND_OP_COUNT:
        break;
    }
    return false;
}

bool backend_supports(const backend *be, backend_op op) {
    return has_op(&be->iface, op);
}

backend *backend_register(backend *be) {
    const backend_i *f = &be->iface;
#define REQUIRED(fn)                                                                               \
    { f->fn != NULL, #fn }
    const struct {
        bool ok;
        const char *name;
    } req[] = {REQUIRED(destroy),      REQUIRED(alloc),
               REQUIRED(free),         REQUIRED(to_device),
               REQUIRED(to_host),      REQUIRED(copy),
               REQUIRED(copy_2d),      REQUIRED(zero),
               REQUIRED(synchronize),  REQUIRED(event_init),
               REQUIRED(event_fini),   REQUIRED(event_record),
               REQUIRED(event_wait),   REQUIRED(event_synchronize),
               REQUIRED(event_elapsed)};
#undef REQUIRED
    for (size_t i = 0; i < sizeof req / sizeof *req; i++)
        if (!req[i].ok) FATAL("backend %s: backend_i.%s is missing", be->name, req[i].name);
    bool conv = f->conv2d_forward || f->conv2d_backward_data || f->conv2d_backward_filter;
    if (conv && !f->conv2d_workspace_floats)
        FATAL("backend %s: conv2d ops without conv2d_workspace_floats", be->name);
    return be;
}

const char *backend_name(const backend *be) {
    return be->name;
}
bool backend_memory_is_host(const backend *be) {
    return be->host_memory;
}
void backend_destroy(backend *be) {
    if (be) be->iface.destroy(be);
}

int backend_device(const backend *be) {
    return be->iface.device ? be->iface.device(be) : -1;
}
void *backend_native_stream(const backend *be) {
    return be->iface.native_stream ? be->iface.native_stream(be) : NULL;
}
void *backend_event_native(const backend_event *ev) {
    return backend_device(ev->be) >= 0 ? ev->handle : NULL;
}

/* ---- memory, events ---- */

void *backend_alloc(backend *be, size_t bytes) {
    return be->iface.alloc(be, bytes);
}
void backend_free(backend *be, void *p) {
    if (p) be->iface.free(be, p);
}
void backend_to_device(backend *be, void *dst, const void *host_src, size_t bytes) {
    if (bytes) be->iface.to_device(be, dst, host_src, bytes);
}
void backend_to_host(backend *be, void *host_dst, const void *src, size_t bytes) {
    if (bytes) be->iface.to_host(be, host_dst, src, bytes);
}
void backend_copy(backend *be, void *dst, const void *src, size_t bytes) {
    if (bytes) be->iface.copy(be, dst, src, bytes);
}
void backend_copy_2d(backend *be, void *dst, size_t dst_pitch, const void *src, size_t src_pitch,
                     size_t width, size_t rows) {
    if (width && rows) be->iface.copy_2d(be, dst, dst_pitch, src, src_pitch, width, rows);
}
void backend_zero(backend *be, void *dst, size_t bytes) {
    if (bytes) be->iface.zero(be, dst, bytes);
}
void *backend_host_alloc(backend *be, size_t bytes) {
    return be->iface.host_alloc ? be->iface.host_alloc(be, bytes) : xmalloc(bytes ? bytes : 1);
}
void backend_host_free(backend *be, void *p) {
    if (!p) return;
    if (be->iface.host_free)
        be->iface.host_free(be, p);
    else
        free(p);
}
void backend_to_device_async(backend *be, void *dst, const void *host_src, size_t bytes,
                             backend_event *after, backend_event *done) {
    if (be->iface.to_device_async) {
        be->iface.to_device_async(be, dst, host_src, bytes, after, done);
        return;
    }
    backend_to_device(be, dst, host_src, bytes); /* one stream: after is already behind us */
    if (done) backend_event_record(be, done);
}
void backend_synchronize(backend *be) {
    be->iface.synchronize(be);
}
backend_event *backend_event_create(backend *be) {
    backend_event *ev = xcalloc(1, sizeof *ev);
    ev->be = be;
    be->iface.event_init(be, ev);
    return ev;
}
void backend_event_destroy(backend *be, backend_event *ev) {
    if (!ev) return;
    be->iface.event_fini(be, ev);
    free(ev);
}
void backend_event_record(backend *be, backend_event *ev) {
    be->iface.event_record(be, ev);
}
void backend_event_wait(backend *be, backend_event *ev) {
    be->iface.event_wait(be, ev);
}
void backend_event_synchronize(backend *be, backend_event *ev) {
    be->iface.event_synchronize(be, ev);
}
double backend_event_elapsed(backend *be, backend_event *start, backend_event *end) {
    return be->iface.event_elapsed(be, start, end);
}

/* ---- ops ---- */

static void unsupported(const backend *be, backend_op op) {
    FATAL("backend %s does not support op %s", be->name, backend_op_name(op));
}
/* Calls entry `fn` of be's table, or says that the backend does not have op `op`. */
#define DISPATCH(be, op, fn, ...)                                                                  \
    do {                                                                                           \
        if (!(be)->iface.fn) unsupported(be, op);                                                  \
        (be)->iface.fn(be, __VA_ARGS__);                                                           \
    } while (0)

size_t backend_conv2d_workspace_floats(backend *be, const conv2d_desc *d) {
    if (!be->iface.conv2d_workspace_floats) unsupported(be, BACKEND_OP_CONV2D_FORWARD);
    return be->iface.conv2d_workspace_floats(be, d);
}
void backend_conv2d_forward(backend *be, const conv2d_desc *d, const float *x, const float *w,
                            const float *bias, float *y, float *ws) {
    DISPATCH(be, BACKEND_OP_CONV2D_FORWARD, conv2d_forward, d, x, w, bias, y, ws);
}
void backend_conv2d_backward_data(backend *be, const conv2d_desc *d, const float *w,
                                  const float *dy, float *dx, float *ws) {
    DISPATCH(be, BACKEND_OP_CONV2D_BACKWARD_DATA, conv2d_backward_data, d, w, dy, dx, ws);
}
void backend_conv2d_backward_filter(backend *be, const conv2d_desc *d, const float *x,
                                    const float *dy, float *dw, float *dbias, float *ws) {
    DISPATCH(be, BACKEND_OP_CONV2D_BACKWARD_FILTER, conv2d_backward_filter, d, x, dy, dw, dbias,
             ws);
}
void backend_batchnorm_forward_train(backend *be, int m, int c, const float *x, const float *gamma,
                                     const float *beta, float eps, float momentum,
                                     float *running_mean, float *running_var, float *save_mean,
                                     float *save_invstd, float *y) {
    DISPATCH(be, BACKEND_OP_BATCHNORM_FORWARD_TRAIN, batchnorm_forward_train, m, c, x, gamma, beta,
             eps, momentum, running_mean, running_var, save_mean, save_invstd, y);
}
void backend_batchnorm_forward_eval(backend *be, int m, int c, const float *x, const float *gamma,
                                    const float *beta, const float *running_mean,
                                    const float *running_var, float eps, float *y) {
    DISPATCH(be, BACKEND_OP_BATCHNORM_FORWARD_EVAL, batchnorm_forward_eval, m, c, x, gamma, beta,
             running_mean, running_var, eps, y);
}
void backend_batchnorm_backward(backend *be, int m, int c, const float *x, const float *gamma,
                                const float *save_mean, const float *save_invstd, const float *dy,
                                float *dx, float *dgamma, float *dbeta) {
    DISPATCH(be, BACKEND_OP_BATCHNORM_BACKWARD, batchnorm_backward, m, c, x, gamma, save_mean,
             save_invstd, dy, dx, dgamma, dbeta);
}
void backend_batchnorm_silu_forward_train(backend *be, int m, int c, const float *x,
                                          const float *gamma, const float *beta, float eps,
                                          float momentum, float *running_mean, float *running_var,
                                          float *save_mean, float *save_invstd, float *y) {
    DISPATCH(be, BACKEND_OP_BATCHNORM_SILU_FORWARD_TRAIN, batchnorm_silu_forward_train, m, c, x,
             gamma, beta, eps, momentum, running_mean, running_var, save_mean, save_invstd, y);
}
void backend_batchnorm_silu_forward_eval(backend *be, int m, int c, const float *x,
                                         const float *gamma, const float *beta,
                                         const float *running_mean, const float *running_var,
                                         float eps, float *y) {
    DISPATCH(be, BACKEND_OP_BATCHNORM_SILU_FORWARD_EVAL, batchnorm_silu_forward_eval, m, c, x,
             gamma, beta, running_mean, running_var, eps, y);
}
void backend_batchnorm_silu_backward(backend *be, int m, int c, const float *x, const float *gamma,
                                     const float *beta, const float *save_mean,
                                     const float *save_invstd, const float *dy, float *dx,
                                     float *dgamma, float *dbeta) {
    DISPATCH(be, BACKEND_OP_BATCHNORM_SILU_BACKWARD, batchnorm_silu_backward, m, c, x, gamma, beta,
             save_mean, save_invstd, dy, dx, dgamma, dbeta);
}
void backend_silu_forward(backend *be, size_t n, const float *x, float *y) {
    DISPATCH(be, BACKEND_OP_SILU_FORWARD, silu_forward, n, x, y);
}
void backend_silu_backward(backend *be, size_t n, const float *x, const float *dy, float *dx) {
    DISPATCH(be, BACKEND_OP_SILU_BACKWARD, silu_backward, n, x, dy, dx);
}
void backend_add(backend *be, size_t n, const float *a, const float *b, float *y) {
    DISPATCH(be, BACKEND_OP_ADD, add, n, a, b, y);
}
void backend_accumulate(backend *be, size_t n, const float *x, float *y) {
    DISPATCH(be, BACKEND_OP_ACCUMULATE, accumulate, n, x, y);
}
void backend_scale(backend *be, size_t n, float s, float *y) {
    DISPATCH(be, BACKEND_OP_SCALE, scale, n, s, y);
}
void backend_concat_forward(backend *be, size_t m, int k, const float *const *xs, const int *cs,
                            float *y) {
    DISPATCH(be, BACKEND_OP_CONCAT_FORWARD, concat_forward, m, k, xs, cs, y);
}
void backend_concat_backward(backend *be, size_t m, int k, const int *cs, const float *dy,
                             float *const *dxs) {
    DISPATCH(be, BACKEND_OP_CONCAT_BACKWARD, concat_backward, m, k, cs, dy, dxs);
}
void backend_slice_forward(backend *be, size_t m, int cx, int off, int c, const float *x,
                           float *y) {
    DISPATCH(be, BACKEND_OP_SLICE_FORWARD, slice_forward, m, cx, off, c, x, y);
}
void backend_slice_backward(backend *be, size_t m, int cx, int off, int c, const float *dy,
                            float *dx) {
    DISPATCH(be, BACKEND_OP_SLICE_BACKWARD, slice_backward, m, cx, off, c, dy, dx);
}
void backend_upsample2x_forward(backend *be, int n, int h, int w, int c, const float *x, float *y) {
    DISPATCH(be, BACKEND_OP_UPSAMPLE2X_FORWARD, upsample2x_forward, n, h, w, c, x, y);
}
void backend_upsample2x_backward(backend *be, int n, int h, int w, int c, const float *dy,
                                 float *dx) {
    DISPATCH(be, BACKEND_OP_UPSAMPLE2X_BACKWARD, upsample2x_backward, n, h, w, c, dy, dx);
}
void backend_maxpool_forward(backend *be, int n, int h, int w, int c, int k, int stride, int pad,
                             const float *x, float *y, int32_t *argmax) {
    DISPATCH(be, BACKEND_OP_MAXPOOL_FORWARD, maxpool_forward, n, h, w, c, k, stride, pad, x, y,
             argmax);
}
void backend_maxpool_backward(backend *be, int n, int h, int w, int c, int k, int stride, int pad,
                              const float *dy, const int32_t *argmax, float *dx) {
    DISPATCH(be, BACKEND_OP_MAXPOOL_BACKWARD, maxpool_backward, n, h, w, c, k, stride, pad, dy,
             argmax, dx);
}
void backend_attention_forward(backend *be, const attention_desc *d, const float *qkv, float *out,
                               float *v_out, float *probs) {
    DISPATCH(be, BACKEND_OP_ATTENTION_FORWARD, attention_forward, d, qkv, out, v_out, probs);
}
void backend_attention_backward(backend *be, const attention_desc *d, const float *qkv,
                                const float *probs, const float *dout, const float *dv,
                                float *dqkv) {
    DISPATCH(be, BACKEND_OP_ATTENTION_BACKWARD, attention_backward, d, qkv, probs, dout, dv, dqkv);
}
void backend_detect_decode(backend *be, const detect_decode_desc *d, const float *logits,
                           const float *anchor_pts, const float *anchor_str, float *out) {
    DISPATCH(be, BACKEND_OP_DETECT_DECODE, detect_decode, d, logits, anchor_pts, anchor_str, out);
}
void backend_normalize_u8(backend *be, size_t n, const uint8_t *x, float s, float *y) {
    DISPATCH(be, BACKEND_OP_NORMALIZE_U8, normalize_u8, n, x, s, y);
}
void backend_optim_step(backend *be, optimizer *o, float *params, const float *grads) {
    DISPATCH(be, BACKEND_OP_OPTIM_STEP, optim_step, o, params, grads);
}
void backend_clip_grad_norm(backend *be, float *grads, size_t n, double max_norm) {
    DISPATCH(be, BACKEND_OP_CLIP_GRAD_NORM, clip_grad_norm, grads, n, max_norm);
}
void backend_ema_blend(backend *be, float *ema, const float *model, size_t n, double d) {
    DISPATCH(be, BACKEND_OP_EMA_BLEND, ema_blend, ema, model, n, d);
}
void backend_optim_update(backend *be, optimizer *o, float *params, float *grads, double max_norm,
                          float *ema, double d) {
    if (be->iface.optim_update) {
        be->iface.optim_update(be, o, params, grads, max_norm, ema, d);
        return;
    }
    if (!has_op(&be->iface, BACKEND_OP_OPTIM_UPDATE)) unsupported(be, BACKEND_OP_OPTIM_UPDATE);
    backend_clip_grad_norm(be, grads, o->n, max_norm);
    backend_optim_step(be, o, params, grads);
    backend_zero(be, grads, o->n * sizeof *grads);
    if (ema) backend_ema_blend(be, ema, params, o->n, d);
}
void backend_detloss(backend *be, const backend_detloss_desc *d, const float *const preds[2],
                     float *const dpreds[2], double *result) {
    DISPATCH(be, BACKEND_OP_DETLOSS, detloss, d, preds, dpreds, result);
}
void backend_conv2d_backward_data_set(backend *be, const conv2d_desc *d, const float *w,
                                      const float *dy, float *dx, float *ws) {
    if (!be->iface.conv2d_backward_data_set) { /* the same values through the accumulating op */
        backend_zero(be, dx, (size_t)d->n * d->h * d->w * d->cin * sizeof *dx);
        backend_conv2d_backward_data(be, d, w, dy, dx, ws);
        return;
    }
    DISPATCH(be, BACKEND_OP_CONV2D_BACKWARD_DATA_SET, conv2d_backward_data_set, d, w, dy, dx, ws);
}
void backend_to_bf16(backend *be, size_t n, const float *x, bf16 *y) {
    DISPATCH(be, BACKEND_OP_TO_BF16, to_bf16, n, x, y);
}
void backend_conv2d_forward_bf16(backend *be, const conv2d_desc *d, const bf16 *xb, const float *w,
                                 const float *bias, float *y, float *ws) {
    DISPATCH(be, BACKEND_OP_CONV2D_FORWARD_BF16, conv2d_forward_bf16, d, xb, w, bias, y, ws);
}
void backend_conv2d_backward_bf16(backend *be, const conv2d_desc *d, const bf16 *xb, const float *w,
                                  const bf16 *dyb, float *dx, bool dx_write, float *dw, float *ws) {
    DISPATCH(be, BACKEND_OP_CONV2D_BACKWARD_BF16, conv2d_backward_bf16, d, xb, w, dyb, dx, dx_write,
             dw, ws);
}
void backend_batchnorm_silu_backward_set(backend *be, int m, int c, const float *x,
                                         const float *gamma, const float *beta,
                                         const float *save_mean, const float *save_invstd,
                                         const float *dy, float *dx, float *dgamma, float *dbeta) {
    if (!be->iface.batchnorm_silu_backward_set) { /* the same values through the accumulating op */
        if (dx) backend_zero(be, dx, (size_t)m * c * sizeof *dx);
        backend_batchnorm_silu_backward(be, m, c, x, gamma, beta, save_mean, save_invstd, dy, dx,
                                        dgamma, dbeta);
        return;
    }
    DISPATCH(be, BACKEND_OP_BATCHNORM_SILU_BACKWARD_SET, batchnorm_silu_backward_set, m, c, x,
             gamma, beta, save_mean, save_invstd, dy, dx, dgamma, dbeta);
}
void backend_batchnorm_silu_forward_train_bf16(backend *be, int m, int c, const float *x,
                                               const float *gamma, const float *beta, float eps,
                                               float momentum, float *running_mean,
                                               float *running_var, float *save_mean,
                                               float *save_invstd, float *y, bf16 *yb) {
    DISPATCH(be, BACKEND_OP_BATCHNORM_SILU_FORWARD_TRAIN_BF16, batchnorm_silu_forward_train_bf16, m,
             c, x, gamma, beta, eps, momentum, running_mean, running_var, save_mean, save_invstd, y,
             yb);
}
void backend_batchnorm_silu_forward_eval_bf16(backend *be, int m, int c, const float *x,
                                              const float *gamma, const float *beta,
                                              const float *running_mean, const float *running_var,
                                              float eps, float *y, bf16 *yb) {
    DISPATCH(be, BACKEND_OP_BATCHNORM_SILU_FORWARD_EVAL_BF16, batchnorm_silu_forward_eval_bf16, m,
             c, x, gamma, beta, running_mean, running_var, eps, y, yb);
}
void backend_batchnorm_silu_backward_set_bf16(backend *be, int m, int c, const float *x,
                                              const float *gamma, const float *beta,
                                              const float *save_mean, const float *save_invstd,
                                              const float *dy, float *dx, bf16 *dxb, float *dgamma,
                                              float *dbeta) {
    DISPATCH(be, BACKEND_OP_BATCHNORM_SILU_BACKWARD_SET_BF16, batchnorm_silu_backward_set_bf16, m,
             c, x, gamma, beta, save_mean, save_invstd, dy, dx, dxb, dgamma, dbeta);
}
void backend_nms(backend *be, const backend_nms_desc *d, const float *pred, detection *dets,
                 int32_t *counts) {
    DISPATCH(be, BACKEND_OP_NMS, nms, d, pred, dets, counts);
}
