/* A YOLO detection model (yolov8 / yolo11 / yolo26 families) built from an Ultralytics model yaml,
 * with whole-model forward and backward on a backend (kernels/backend.h; docs/backend.md).
 *
 * How the trainer uses it:
 *
 *   backend *be = backend_cpu_create(&opts);
 *   model *m = model_create_on(be, "yolov8n.yaml", nc, seed, err, sizeof err);  // initialised
 *   model_plan(m, batch, imgsz, imgsz, err, sizeof err);  // activation arena for this shape
 *   model_zero_grad(m);
 *   model_forward_u8(m, images, true);          // host uint8 NHWC [B][H][W][3], 0..255
 *   // the loss on the backend: head outputs [B][A][4*reg_max + nc] logits in, d loss / d
 *   // output into model_head_grad (same layout), loss items added to `result` (device memory)
 *   backend_detloss(be, &desc, (const float *[]){model_output(m, 0), model_output(m, 1)},
 *                   (float *[]){model_head_grad(m, 0), model_head_grad(m, 1)}, result);
 *   model_backward_from_head_grads(m);          // ACCUMULATES into model_grads(m)
 *   ... all-reduce model_grads(m); backend_optim_step(be, &opt, model_params(m), model_grads(m))
 *
 * Host/device boundary. Everything the model holds (parameters, gradients, BN buffers,
 * activations, head outputs and their gradients, scratch) is memory of its backend, allocated
 * through it. The functions that return such memory say "backend memory": a host may read it only
 * when backend_memory_is_host() (the CPU backend, which the tests use), and otherwise hands it to
 * backend functions only. Data crosses at these points, and only here:
 *   in:  model_forward / model_forward_u8 (the image batch; model_forward_u8_device when the
 *        batch is already on the device), model_backward (d loss / d output),
 *        model_params_from_host / model_buffers_from_host (weights from a checkpoint);
 *   out: model_output_host (head outputs for the loss), model_decode (boxes for validation),
 *        model_params_to_host / model_buffers_to_host (weights to a checkpoint or a broadcast).
 * On a host-memory backend the "copies" of model_forward_u8, model_output_host and model_decode
 * are skipped (the data is read or written in place). Training runs the loss on the backend
 * (backend_detloss on model_output, writing model_head_grad) and calls
 * model_backward_from_head_grads(m): only the loss items come back to the host.
 *
 * Layout of the head outputs (per branch): A = sum over levels of H_l * W_l anchors, level-major
 * (stride 8, 16, 32), then row-major y * W + x inside a level; per anchor 4*reg_max box channels
 * (side-major: side * reg_max + bin, sides l, t, r, b) then nc class logits. This is Ultralytics'
 * cat(boxes, scores) transposed to [B][A][C]. Anchor points are (x + 0.5, y + 0.5) in grid units of
 * their level (model_anchor_points / model_anchor_strides), as kernels/detloss.h expects.
 *
 * Branches: MODEL_ONE2MANY is the normal head (cv2 / cv3). end2end models (yolo26) also have
 * MODEL_ONE2ONE (one2one_cv2 / one2one_cv3), which runs on DETACHED copies of the features: its
 * gradient reaches only its own parameters.
 *
 * Parameters live in one flat float buffer and gradients in another of the same layout; each
 * tensor is a view with its Ultralytics state_dict name and PyTorch shape, in state_dict order.
 * Conv weights are stored OHWI in memory (the PyTorch shape reported is OIHW). The frozen DFL
 * weight (0..15) is a parameter that is not trainable; its gradient stays 0. BN running_mean and
 * running_var are buffers (a third flat buffer); num_batches_tracked is one counter for the model
 * (a checkpoint writes it as "<bn>.num_batches_tracked" next to every "<bn>.running_mean").
 *
 * Threads: the backend's (backend_cpu_opts.threads). Memory: see model_plan / model_plan_eval.
 * A model is not thread-safe; separate models (e.g. the EMA copy) are independent, and may share
 * one backend (one stream: their work is ordered).
 */
#pragma once
#include "kernels/backend.h"
#include "worker/model_yaml.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct model model;

enum { MODEL_ONE2MANY = 0, MODEL_ONE2ONE = 1 };

/* Optimizer groups as Ultralytics' build_optimizer forms them. */
typedef enum {
    MODEL_WEIGHT,    /* conv weights: weight decay */
    MODEL_BN_WEIGHT, /* BN gamma: no decay */
    MODEL_BIAS,      /* BN beta and Conv2d biases: no decay */
    MODEL_BUFFER,    /* BN running stats (buffers, not parameters) */
} model_role;

typedef struct model_tensor {
    char name[80]; /* Ultralytics state_dict name, e.g. "model.22.cv2.0.2.bias" */
    int ndim;      /* 4 for conv weights, 1 otherwise */
    int shape[4];  /* PyTorch shape (OIHW for conv weights) */
    size_t offset; /* into model_params / model_grads (or model_buffers) */
    size_t numel;
    bool trainable; /* false only for the DFL weight */
    bool ohwi;      /* stored OHWI in memory (every 4-d tensor) */
    model_role role;
} model_tensor;

/* Copy between our memory layout and PyTorch's (OIHW for conv weights; 1-d tensors as is), for
 * checkpoints and weight exchange. */
void model_tensor_to_torch(const model_tensor *t, const float *ours, float *torch);
void model_tensor_from_torch(const model_tensor *t, const float *torch, float *ours);

/* yaml: as for model_yaml_load. nc > 0 overrides the yaml's nc. seed keys the initialisation
 * (Ultralytics' scheme: U(+-1/sqrt(fan_in)) conv weights and Conv2d biases, BN gamma 1 beta 0,
 * Detect box bias 2.0, class bias log(5 / nc / (640 / stride)^2)). NULL with a message on error.
 * The model lives on be (not owned: destroy it after the model); model_create uses
 * backend_cpu_default(). */
model *model_create_on(backend *be, const char *yaml, int nc, uint64_t seed, char *err,
                       size_t errlen);
model *model_create(const char *yaml, int nc, uint64_t seed, char *err, size_t errlen);
/* The general form: the yaml as a file spec, or as text (yaml_text, with yaml naming the file it
 * came from: its scale letter and messages), and Detect's class-branch width when it must differ
 * from the yaml rule max(ch[0], min(nc, 100)) (fine-tuning keeps the source's: worker/pretrained.h;
 * 0 for the rule). */
typedef struct model_spec {
    const char *yaml, *yaml_text;
    int nc, cls_width;
} model_spec;
model *model_create_spec(backend *be, const model_spec *spec, uint64_t seed, char *err,
                         size_t errlen);
void model_free(model *m);
const model_yaml *model_config(const model *m);
backend *model_backend(const model *m);

size_t model_num_params(const model *m);    /* every parameter, incl. the DFL weight */
size_t model_num_trainable(const model *m); /* Ultralytics' "gradients" */
size_t model_num_buffer_floats(const model *m);
/* The flat buffers (backend memory). */
float *model_params(model *m);
float *model_grads(model *m);
float *model_buffers(model *m);
/* Copies of the whole flat buffers to / from host memory (model_num_params or
 * model_num_buffer_floats floats): checkpoints, weight exchange, broadcasts. */
void model_params_to_host(const model *m, float *dst);
void model_params_from_host(model *m, const float *src);
void model_buffers_to_host(const model *m, float *dst);
void model_buffers_from_host(model *m, const float *src);
int model_num_param_tensors(const model *m);
const model_tensor *model_param_tensor(const model *m, int i);
int model_num_buffer_tensors(const model *m);
const model_tensor *model_buffer_tensor(const model *m, int i);
int model_find_param(const model *m, const char *name); /* index or -1 */
int model_find_buffer(const model *m, const char *name);
long long *model_num_batches_tracked(model *m);
void model_zero_grad(model *m);

/* Per-layer summary (for `worker info`): parameters of yaml layer i. */
size_t model_layer_params(const model *m, int layer);
/* Conv multiply-adds and Conv2d bias adds of one image at h x w (no arena needed). */
void model_conv_macs(const model *m, int h, int w, double *macs, double *bias_adds);

/* Plans the activation arena for batch x h x w (h, w multiples of 32). Replans when called
 * again with another shape (outputs, anchors and activations of the old plan are gone). Gradient
 * memory is allocated by the first model_backward after a plan, so an eval-only model (validation,
 * EMA) never holds it. 0, or -1 with a message. */
int model_plan(model *m, int batch, int h, int w, char *err, size_t errlen);
/* Activations and their gradients share memory when their lifetimes do not overlap, so after a
 * forward / backward only some are still there. keep = true (before model_plan) gives every slot
 * its own memory, for model_activation / model_activation_grad in tests and debugging. */
void model_keep_activation_grads(model *m, bool keep);
/* Arithmetic of every convolution (kernels/conv2d.h): CONV2D_FP32 (default) or CONV2D_BF16 (mixed
 * precision: inputs rounded to bfloat16, float sums; parameters, gradients, BN and everything
 * else stay float). Takes effect at the next model_plan / model_plan_eval. */
void model_set_conv_precision(model *m, conv2d_prec prec);
/* With CONV2D_BF16 (default on): the BN + SiLU ops write the bf16 copies their convolutions read,
 * and the bf16 dy of the convolution before them, instead of separate conversion passes (the same
 * bits; off: for comparisons and benchmarks). Takes effect at the next model_plan. */
void model_set_bf16_fusion(model *m, bool on);
/* An eval-only plan: activations share memory by lifetime (far less memory for validation);
 * only model_forward(..., false), outputs and decode are valid (no backward, no
 * model_activation). */
int model_plan_eval(model *m, int batch, int h, int w, char *err, size_t errlen);
size_t model_arena_bytes(const model *m); /* activations + gradients + scratch, as planned */
/* Bytes one image of h x w takes in a plan (activations, with train their gradients, scratch,
 * conv workspace, head outputs), computed without allocating the arena: memory grows linearly
 * with the batch, so this times the batch is what model_plan would allocate. Frees the current
 * plan. 0, or -1 with a message (a shape the model cannot take). */
int model_plan_bytes(model *m, int h, int w, bool train, size_t *bytes, char *err, size_t errlen);

/* Forward over NHWC float images [B][H][W][3] (host memory) of the planned shape. train: BN uses
 * batch statistics and updates the running buffers; eval: BN uses the buffers. */
void model_forward(model *m, const float *images, bool train);
/* The same from uint8 images [B][H][W][3] (host memory, 0..255), scaled by 1/255 on the backend:
 * what training and validation feed. */
void model_forward_u8(model *m, const uint8_t *images, bool train);
/* The same from uint8 images already in backend memory (model_input_bytes_u8 bytes, e.g. copied
 * ahead on the backend's copy stream by backend_to_device_async): no copy at all. */
void model_forward_u8_device(model *m, const uint8_t *images, bool train);
size_t model_input_bytes_u8(const model *m);           /* B * H * W * 3 at the planned shape */
int model_planned_batch(const model *m);               /* the batch of the last plan */
int model_num_branches(const model *m);                /* 2 for end2end models, else 1 */
int model_num_anchors(const model *m);                 /* A at the planned shape */
int model_out_channels(const model *m);                /* 4 * reg_max + nc */
const float *model_output(const model *m, int branch); /* [B][A][4*reg_max + nc], backend memory */
/* The same in host memory, after the forward has finished (the backend memory itself on a
 * host-memory backend, else a copy that stays valid until the next call or plan). */
const float *model_output_host(model *m, int branch);
/* Anchor centres [A][2] (grid units of their level) and strides [A], host memory. */
const float *model_anchor_points(const model *m);
const float *model_anchor_strides(const model *m);
/* The same in backend memory (what backend_detloss takes). */
const float *model_anchor_points_device(const model *m);
const float *model_anchor_strides_device(const model *m);

/* Backward from d loss / d outputs (host memory, same layout as model_output; NULL is a zero
 * gradient, and dout_one2one must be NULL for models without that branch). Needs a train-mode
 * forward just before. Parameter gradients ACCUMULATE into model_grads (call model_zero_grad
 * first). It copies the gradients into model_head_grad and runs model_backward_from_head_grads. */
void model_backward(model *m, const float *dout_one2many, const float *dout_one2one);
/* d loss / d output of a branch, [B][A][4*reg_max + nc] in backend memory (NULL for a branch
 * the model does not have), and the backward from what is in them. */
float *model_head_grad(model *m, int branch);
void model_backward_from_head_grads(model *m);

/* Called during model_backward each time the gradients [first, first + count) of the flat
 * gradient buffer are final for this backward (after the op owning those parameters ran; first,
 * before any op, for parameters no op touches, such as the frozen DFL weight). Every parameter
 * float is reported exactly once per backward. Parameters are laid out in forward order, so the
 * ranges come roughly from the end of the buffer towards its start. For overlapping the gradient
 * all-reduce with the rest of backward. fn NULL: no hook.
 * On an asynchronous backend the hook fires when the work producing the range has been ENQUEUED,
 * not when it is done: during the hook, model_grad_ready_event(m) has just been recorded after
 * that work, so a consumer on another stream (NCCL) waits on it (backend_event_wait) and a host
 * consumer synchronises on it (backend_event_synchronize). On the CPU backend the work is done. */
typedef void (*model_grad_ready_fn)(void *ctx, size_t first, size_t count);
void model_set_grad_ready_hook(model *m, model_grad_ready_fn fn, void *ctx);
backend_event *model_grad_ready_event(model *m);

/* d loss / d images (NHWC, as given to model_forward; backend memory) after model_backward; only
 * computed after model_want_input_grad(m, true) (training does not need it), else NULL. */
void model_want_input_grad(model *m, bool on);
const float *model_input_grad(const model *m);

/* Eval decode of a branch after a forward (on the backend): out [B][A][4 + nc] in host memory.
 * MODEL_ONE2MANY: cx, cy, w, h in pixels (for NMS); MODEL_ONE2ONE (end-to-end head): x1, y1, x2,
 * y2 in pixels; then sigmoid scores. DFL expectation when reg_max > 1, raw distances when 1. */
void model_decode(model *m, int branch, float *out);

/* Validation's post-processing of a branch after a forward, on the backend: model_decode's rows
 * (kept on the device), then backend_nms: nms_detect, or topk_detect for MODEL_ONE2ONE (kernels/
 * nms.h). Writes counts[b] and det[b * cfg->max_det + k], k < counts[b] (host memory, B =
 * model_batch's images); only the kept detections cross to the host. */
void model_detect(model *m, int branch, const nms_cfg *cfg, detection *det, int32_t *counts);

/* End-to-end post-process of yolo26 (Ultralytics' Detect.postprocess, no NMS): from decoded
 * [B][A][4 + nc] (x1, y1, x2, y2, scores), the k anchors with the highest max class score, then
 * the k best (anchor, class) pairs among those k * nc scores, sorted by score (ties: lower index
 * first). out [B][k][6] = x1, y1, x2, y2, score, class. k = min(max_det, A). */
void model_topk_e2e(int batch, int anchors, int nc, int k, const float *decoded, float *out);

/* Activation of a module by its Ultralytics name ("model.9.m#1", "model.2.cv1.bn", ...), NHWC,
 * after a forward (backend memory); NULL if unknown or without model_keep_activation_grads.
 * dims: n, h, w, c. */
const float *model_activation(const model *m, const char *name, int dims[4]);

/* Gradient of the loss w.r.t. that activation, after model_backward (same layout). */
const float *model_activation_grad(const model *m, const char *name, int dims[4]);

/* Time spent in convolutions vs everything else in the last forward + backward (seconds), from
 * backend events around each op (on an asynchronous backend this waits for them). */
void model_timing(const model *m, double *conv_s, double *other_s);
/* The same per op kind, "conv 0.412/0.934, bn 0.051/0.080, ..." (seconds forward/backward). */
const char *model_timing_text(const model *m, char *buf, size_t n);
