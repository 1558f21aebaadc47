/* The backend seam: every byte of tensor memory and every tensor op that the model interpreter
 * (worker/model*.c) and the trainer (worker/trainer.c, validate.c) use goes through one of these
 * functions, on a `backend`. Modelled on ggml's ggml-backend: an interface struct of function
 * pointers (kernels/backend_impl.h) per backend, an op enum with a names table, and "not
 * supported" as an answer. docs/backend.md has the whole picture.
 *
 * Memory. backend_alloc gives memory of the backend ("device memory"): on the CPU backend that is
 * host memory, on a GPU backend it is not, and only the backend's own functions may touch it.
 * An allocation plus an offset is again device memory (a view), so an op takes device pointers
 * and sizes exactly as the CPU kernels do. The host moves data across
 * with backend_to_device / backend_to_host; backend_memory_is_host says when a caller may skip
 * a copy and read device memory directly (ggml's buffer_is_host).
 *
 * Ordering. A backend has one stream: ops, copies within the device and zeroing run in the order
 * they are called, and may run after the call returns (asynchronous device). backend_to_host
 * returns when the bytes are in host memory (it waits for the work before it); backend_to_device
 * returns when the host buffer may be reused. Events mark a point in the stream, for timing and
 * for another stream (an all-reduce) to wait on. The CPU backend runs everything at once, so its
 * events are timestamps and waiting is a no-op, but callers must not rely on that.
 *
 * Ops. Each op below has the semantics of the CPU kernel named in its comment (its header says
 * exactly what it computes, including which outputs ACCUMULATE); backend_supports() says whether
 * a backend implements it, and calling one it does not implement ends the process with a message
 * naming the backend and the op. Arrays of device pointers (concat) and descriptors are host
 * memory. */
#pragma once
#include "kernels/attention.h"
#include "kernels/bf16.h"
#include "kernels/conv2d.h"
#include "kernels/detloss.h"
#include "kernels/dfl.h"
#include "kernels/nms.h"
#include "kernels/optim.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct backend backend;
typedef struct backend_event backend_event;

typedef enum backend_op {
    BACKEND_OP_CONV2D_FORWARD,
    BACKEND_OP_CONV2D_BACKWARD_DATA,
    BACKEND_OP_CONV2D_BACKWARD_FILTER,
    BACKEND_OP_BATCHNORM_FORWARD_TRAIN,
    BACKEND_OP_BATCHNORM_FORWARD_EVAL,
    BACKEND_OP_BATCHNORM_BACKWARD,
    BACKEND_OP_BATCHNORM_SILU_FORWARD_TRAIN,
    BACKEND_OP_BATCHNORM_SILU_FORWARD_EVAL,
    BACKEND_OP_BATCHNORM_SILU_BACKWARD,
    BACKEND_OP_SILU_FORWARD,
    BACKEND_OP_SILU_BACKWARD,
    BACKEND_OP_ADD,
    BACKEND_OP_ACCUMULATE,
    BACKEND_OP_SCALE,
    BACKEND_OP_CONCAT_FORWARD,
    BACKEND_OP_CONCAT_BACKWARD,
    BACKEND_OP_SLICE_FORWARD,
    BACKEND_OP_SLICE_BACKWARD,
    BACKEND_OP_UPSAMPLE2X_FORWARD,
    BACKEND_OP_UPSAMPLE2X_BACKWARD,
    BACKEND_OP_MAXPOOL_FORWARD,
    BACKEND_OP_MAXPOOL_BACKWARD,
    BACKEND_OP_ATTENTION_FORWARD,
    BACKEND_OP_ATTENTION_BACKWARD,
    BACKEND_OP_DETECT_DECODE,
    BACKEND_OP_NORMALIZE_U8,
    BACKEND_OP_OPTIM_STEP,
    BACKEND_OP_CLIP_GRAD_NORM,
    BACKEND_OP_EMA_BLEND,
    BACKEND_OP_DETLOSS,
    BACKEND_OP_CONV2D_BACKWARD_DATA_SET,
    BACKEND_OP_TO_BF16,
    BACKEND_OP_CONV2D_FORWARD_BF16,
    BACKEND_OP_CONV2D_BACKWARD_BF16,
    BACKEND_OP_BATCHNORM_SILU_BACKWARD_SET,
    BACKEND_OP_NMS,
    BACKEND_OP_BATCHNORM_SILU_FORWARD_TRAIN_BF16,
    BACKEND_OP_BATCHNORM_SILU_FORWARD_EVAL_BF16,
    BACKEND_OP_BATCHNORM_SILU_BACKWARD_SET_BF16,
    BACKEND_OP_OPTIM_UPDATE,
    BACKEND_OP_COUNT
} backend_op;

/* "conv2d_forward", ...; "?" outside the enum. */
const char *backend_op_name(backend_op op);
bool backend_supports(const backend *be, backend_op op);
const char *backend_name(const backend *be);
/* true: device memory is host memory (the host may read and write it directly). */
bool backend_memory_is_host(const backend *be);
void backend_destroy(backend *be);

/* ---- the CPU backend (kernels/backend_cpu.c): the fp32 reference, today's kernels ---- */
typedef struct backend_cpu_opts {
    int threads;           /* > 0: OpenMP threads of every op; 0: as kernels_set_threads() says */
    conv2d_impl conv_impl; /* its own convolution context with this choice */
    bool device_memory;    /* tests: report memory as NOT host memory, so callers take the copy
                              paths a GPU backend needs (the copies are then real memcpys) */
} backend_cpu_opts;
/* opts NULL: threads 0, conv_impl from YOLO_CONV_IMPL (else auto). */
backend *backend_cpu_create(const backend_cpu_opts *opts);
/* The process-wide CPU backend that model_create uses: threads as kernels_set_threads() says,
 * convolutions on the default conv2d context (conv2d_set_impl applies). backend_destroy leaves
 * it alone. */
backend *backend_cpu_default(void);

/* ---- interop: libraries that work on a GPU backend's device and stream (NCCL) ---- */
/* The CUDA device ordinal of the backend, or -1 (no device: the CPU backend). */
int backend_device(const backend *be);
/* The backend's stream (a cudaStream_t), or NULL on a backend without one. */
void *backend_native_stream(const backend *be);
/* An event's native handle (a cudaEvent_t on a GPU backend), or NULL. */
void *backend_event_native(const backend_event *ev);

/* ---- memory (bytes) ---- */
/* Never NULL: running out of memory ends the process, as xmalloc does. Contents undefined. */
void *backend_alloc(backend *be, size_t bytes);
void backend_free(backend *be, void *p); /* NULL is fine */
void backend_to_device(backend *be, void *dst, const void *host_src, size_t bytes);
void backend_to_host(backend *be, void *host_dst, const void *src, size_t bytes);
void backend_copy(backend *be, void *dst, const void *src, size_t bytes); /* device -> device */
/* rows rows of width bytes each, rows dst_pitch / src_pitch bytes apart (cudaMemcpy2D). */
void backend_copy_2d(backend *be, void *dst, size_t dst_pitch, const void *src, size_t src_pitch,
                     size_t width, size_t rows);
void backend_zero(backend *be, void *dst, size_t bytes);

/* ---- page-locked host memory and asynchronous uploads (the trainer's batch ring) ---- */
/* Host memory the backend uploads from fastest: page-locked on a GPU, plain malloc on the CPU.
 * Never NULL (out of memory ends the process). */
void *backend_host_alloc(backend *be, size_t bytes);
void backend_host_free(backend *be, void *p); /* NULL is fine */
/* host -> device on the backend's copy stream, so it overlaps the ops already enqueued: the copy
 * first waits for `after` (an event of this backend, or NULL), then `done` is recorded after it.
 * Work that reads dst must come after backend_event_wait(be, done); src must not change until
 * done is reached. src from backend_host_alloc makes the copy truly asynchronous. On a backend
 * without a copy stream (the CPU) this is backend_to_device, then done recorded. */
void backend_to_device_async(backend *be, void *dst, const void *host_src, size_t bytes,
                             backend_event *after, backend_event *done);

/* ---- synchronisation, events, timers ---- */
void backend_synchronize(backend *be); /* the host waits for everything enqueued */
backend_event *backend_event_create(backend *be);
void backend_event_destroy(backend *be, backend_event *ev);     /* NULL is fine */
void backend_event_record(backend *be, backend_event *ev);      /* marks this point of the stream */
void backend_event_wait(backend *be, backend_event *ev);        /* be's later work waits for ev (any
                                                                   stream); the host does not wait */
void backend_event_synchronize(backend *be, backend_event *ev); /* the host waits for ev */
/* Seconds between two recorded events (waits for `end`). */
double backend_event_elapsed(backend *be, backend_event *start, backend_event *end);

/* ---- ops (device pointers unless said otherwise) ---- */
/* Workspace floats the conv2d ops of this shape need (conv2d_workspace_floats); ws arguments
 * point to at least that many. */
size_t backend_conv2d_workspace_floats(backend *be, const conv2d_desc *d);
/* conv2d_forward */
void backend_conv2d_forward(backend *be, const conv2d_desc *d, const float *x, const float *w,
                            const float *bias, float *y, float *ws);
/* dx += (conv2d_backward's dx) */
void backend_conv2d_backward_data(backend *be, const conv2d_desc *d, const float *w,
                                  const float *dy, float *dx, float *ws);
/* dw += ..., dbias += ... (dbias may be NULL) */
void backend_conv2d_backward_filter(backend *be, const conv2d_desc *d, const float *x,
                                    const float *dy, float *dw, float *dbias, float *ws);
/* kernels/batchnorm.h */
void backend_batchnorm_forward_train(backend *be, int m, int c, const float *x, const float *gamma,
                                     const float *beta, float eps, float momentum,
                                     float *running_mean, float *running_var, float *save_mean,
                                     float *save_invstd, float *y);
void backend_batchnorm_forward_eval(backend *be, int m, int c, const float *x, const float *gamma,
                                    const float *beta, const float *running_mean,
                                    const float *running_var, float eps, float *y);
void backend_batchnorm_backward(backend *be, int m, int c, const float *x, const float *gamma,
                                const float *save_mean, const float *save_invstd, const float *dy,
                                float *dx, float *dgamma, float *dbeta);
/* kernels/batchnorm_silu.h: the same arguments as batch norm's; backward also takes beta */
void backend_batchnorm_silu_forward_train(backend *be, int m, int c, const float *x,
                                          const float *gamma, const float *beta, float eps,
                                          float momentum, float *running_mean, float *running_var,
                                          float *save_mean, float *save_invstd, float *y);
void backend_batchnorm_silu_forward_eval(backend *be, int m, int c, const float *x,
                                         const float *gamma, const float *beta,
                                         const float *running_mean, const float *running_var,
                                         float eps, float *y);
void backend_batchnorm_silu_backward(backend *be, int m, int c, const float *x, const float *gamma,
                                     const float *beta, const float *save_mean,
                                     const float *save_invstd, const float *dy, float *dx,
                                     float *dgamma, float *dbeta);
/* kernels/activation.h */
void backend_silu_forward(backend *be, size_t n, const float *x, float *y);
void backend_silu_backward(backend *be, size_t n, const float *x, const float *dy, float *dx);
/* kernels/tensor_ops.h: y = a + b (y may be a or b); y += x; y *= s */
void backend_add(backend *be, size_t n, const float *a, const float *b, float *y);
void backend_accumulate(backend *be, size_t n, const float *x, float *y);
void backend_scale(backend *be, size_t n, float s, float *y);
void backend_concat_forward(backend *be, size_t m, int k, const float *const *xs, const int *cs,
                            float *y);
void backend_concat_backward(backend *be, size_t m, int k, const int *cs, const float *dy,
                             float *const *dxs);
void backend_slice_forward(backend *be, size_t m, int cx, int off, int c, const float *x, float *y);
void backend_slice_backward(backend *be, size_t m, int cx, int off, int c, const float *dy,
                            float *dx);
void backend_upsample2x_forward(backend *be, int n, int h, int w, int c, const float *x, float *y);
void backend_upsample2x_backward(backend *be, int n, int h, int w, int c, const float *dy,
                                 float *dx);
/* kernels/pool.h */
void backend_maxpool_forward(backend *be, int n, int h, int w, int c, int k, int stride, int pad,
                             const float *x, float *y, int32_t *argmax);
/* The pooling's geometry (as forward's) lets a GPU gather each input's gradient in a fixed order
 * instead of scattering with atomics. */
void backend_maxpool_backward(backend *be, int n, int h, int w, int c, int k, int stride, int pad,
                              const float *dy, const int32_t *argmax, float *dx);
/* kernels/attention.h */
void backend_attention_forward(backend *be, const attention_desc *d, const float *qkv, float *out,
                               float *v_out, float *probs);
void backend_attention_backward(backend *be, const attention_desc *d, const float *qkv,
                                const float *probs, const float *dout, const float *dv,
                                float *dqkv);
/* kernels/dfl.h: DFL expectation, boxes in pixels, class sigmoids */
void backend_detect_decode(backend *be, const detect_decode_desc *d, const float *logits,
                           const float *anchor_pts, const float *anchor_str, float *out);
/* normalize_u8: y = x * s over n bytes (a uint8 NHWC image batch) */
void backend_normalize_u8(backend *be, size_t n, const uint8_t *x, float s, float *y);
/* kernels/optim.h on flat buffers. The optimizer's tables and scalars are host memory, its m1/m2
 * state device memory (optim_adopt_state). */
void backend_optim_step(backend *be, optimizer *o, float *params, const float *grads);
/* optim_clip_grad_norm (the norm itself is not returned: an asynchronous device keeps it) */
void backend_clip_grad_norm(backend *be, float *grads, size_t n, double max_norm);
/* ema_blend: ema = ema * d + (1 - d) * model */
void backend_ema_blend(backend *be, float *ema, const float *model, size_t n, double d);
/* optim_update: clip_grad_norm at max_norm, optim_step, zero the grads (o->n floats), ema_blend
 * of params into ema with d, in one pass where the backend fuses them (the CPU's optim_update),
 * else as those four ops in turn: a backend has it when it has them. */
void backend_optim_update(backend *be, optimizer *o, float *params, float *grads, double max_norm,
                          float *ema, double d);

/* ---- the detection loss (kernels/detloss.h) ---- */
/* What a backend_detloss call adds to its result (doubles, device memory): the loss items
 * (detloss_out.items), loss_sum and target_scores_raw of the reported branch (E2E: one2one), its
 * foreground anchors, and the total that backward differentiates (detloss_out.total). */
enum {
    BACKEND_DETLOSS_ITEMS = 0,      /* 3 */
    BACKEND_DETLOSS_LOSS_SUM = 3,   /* 3 */
    BACKEND_DETLOSS_TARGET_RAW = 6, /* 1 */
    BACKEND_DETLOSS_NUM_FG = 7,     /* 1 */
    BACKEND_DETLOSS_TOTAL = 8,      /* 1 */
    BACKEND_DETLOSS_RESULTS = 9
};
typedef struct backend_detloss_desc {
    int branches;     /* 1: v8DetectionLoss (detloss_branch); 2: yolo26 E2ELoss (detloss_e2e) */
    detloss_hyp h[2]; /* h[1]: the one2one branch; cls_weight (if set) host memory [nc] */
    float o2m, o2o;   /* E2E branch weights (detloss_e2e_weights); unused with 1 branch */
    int B, A;
    float img_h, img_w;                   /* input size in pixels */
    const float *anchor_points, *strides; /* device memory [A][2] (grid units), [A] */
    int ntargets;
    const float *targets; /* host memory [ntargets][6]: batch index, class, cx, cy, w, h */
    float grad_scale;     /* the written gradients are d total / d preds times this */
} backend_detloss_desc;
/* detloss_branch / detloss_e2e on head outputs preds[branch] ([B][A][4*reg_max + nc], device
 * memory): WRITES d total / d preds x grad_scale into dpreds[branch] (dpreds NULL or an entry
 * NULL: no gradient, e.g. validation) and ADDS the BACKEND_DETLOSS_* values to result[]. Read the
 * result with backend_to_host: that is the only copy to the host a training step needs. */
void backend_detloss(backend *be, const backend_detloss_desc *d, const float *const preds[2],
                     float *const dpreds[2], double *result);
/* ---- CPU training-path ops (kernels/conv2d.h, kernels/bf16.h; each has the semantics of its CPU
 * kernel). conv2d_backward_data_set falls back to zero + conv2d_backward_data on a backend without
 * it; the bf16 ops are what model_set_conv_precision(CONV2D_BF16) trains with on the CPU. ---- */
/* conv2d_backward_data_set (kernels/conv2d.h: conv2d_ctx_backward_data_set): dx =
 * (conv2d_backward's dx), WRITTEN rather than added, for a gradient this conv is the first to
 * produce (the model then does not zero it). The same values as conv2d_backward_data into a zeroed
 * dx. */
void backend_conv2d_backward_data_set(backend *be, const conv2d_desc *d, const float *w,
                                      const float *dy, float *dx, float *ws);
/* to_bf16 (kernels/bf16.h: bf16_from_f32): y[i] = bf16(x[i]), round to nearest even, denormals to
 * signed zero. */
void backend_to_bf16(backend *be, size_t n, const float *x, bf16 *y);
/* conv2d_forward_bf16 (kernels/conv2d.h: conv2d_ctx_forward_bf16): conv2d_forward of a CONV2D_BF16
 * desc whose input is already bf16 (xb = bf16(x)): the same values. */
void backend_conv2d_forward_bf16(backend *be, const conv2d_desc *d, const bf16 *xb, const float *w,
                                 const float *bias, float *y, float *ws);
/* conv2d_backward_bf16 (conv2d_ctx_backward_bf16): both halves of a CONV2D_BF16 backward from bf16
 * x and dy: dw += (when dw), dx += or, with dx_write, dx = (when dx); no bias gradient. */
void backend_conv2d_backward_bf16(backend *be, const conv2d_desc *d, const bf16 *xb, const float *w,
                                  const bf16 *dyb, float *dx, bool dx_write, float *dw, float *ws);
/* batchnorm_silu_backward_set (kernels/batchnorm_silu.h): batchnorm_silu_backward with dx WRITTEN
 * rather than added, for a gradient this op is the first to produce (the model then does not zero
 * it); the same values as batchnorm_silu_backward into a zeroed dx. Falls back to exactly that on a
 * backend without it. */
void backend_batchnorm_silu_backward_set(backend *be, int m, int c, const float *x,
                                         const float *gamma, const float *beta,
                                         const float *save_mean, const float *save_invstd,
                                         const float *dy, float *dx, float *dgamma, float *dbeta);
/* The BN + SiLU ops with a bf16 copy for the bf16 convolutions that read it (kernels/
 * batchnorm_silu.h: the _bf16 variants), instead of a to_bf16 pass after them. Forward: the float
 * op's outputs, and yb = bf16(y) (to_bf16's bits); y may be NULL (not written). Backward (_set):
 * dxb = bf16(dx) of batchnorm_silu_backward_set; dx is float scratch of m*c, left undefined. No
 * fallback: callers check backend_supports (the model keeps its to_bf16 ops without them). */
void backend_batchnorm_silu_forward_train_bf16(backend *be, int m, int c, const float *x,
                                               const float *gamma, const float *beta, float eps,
                                               float momentum, float *running_mean,
                                               float *running_var, float *save_mean,
                                               float *save_invstd, float *y, bf16 *yb);
void backend_batchnorm_silu_forward_eval_bf16(backend *be, int m, int c, const float *x,
                                              const float *gamma, const float *beta,
                                              const float *running_mean, const float *running_var,
                                              float eps, float *y, bf16 *yb);
void backend_batchnorm_silu_backward_set_bf16(backend *be, int m, int c, const float *x,
                                              const float *gamma, const float *beta,
                                              const float *save_mean, const float *save_invstd,
                                              const float *dy, float *dx, bf16 *dxb, float *dgamma,
                                              float *dbeta);

/* ---- validation post-processing (kernels/nms.h) ---- */
typedef struct backend_nms_desc {
    int images, anchors, nc;
    bool one2one; /* true: topk_detect on x1, y1, x2, y2 rows (yolo26's end-to-end head); false:
                     nms_detect on cx, cy, w, h rows */
    nms_cfg cfg;  /* cfg.max_det: the detections per image that dets has room for */
} backend_nms_desc;
/* Per image b of pred ([images][anchors][4 + nc] decoded rows, device memory, as model_decode
 * writes them): nms_detect or topk_detect. WRITES counts[b] and dets[b * cfg.max_det + k] for k <
 * counts[b] (device memory); the rest of dets is left as it was. The same detections, bit for
 * bit, on every backend. */
void backend_nms(backend *be, const backend_nms_desc *d, const float *pred, detection *dets,
                 int32_t *counts);
