/* Internals shared by worker/model*.c: the compiled graph (a flat list of primitive ops over
 * tensor slots, run forward in order and backward in reverse on the model's backend) and the
 * parameter registry. Every float* / int32_t* buffer below is backend (device) memory unless its
 * comment says host. */
#pragma once
#include "kernels/attention.h"
#include "kernels/backend.h"
#include "kernels/conv2d.h"
#include "worker/model.h"

#include <stdint.h>

typedef enum {
    OP_CONV,     /* x -> y, weight (+ bias) */
    OP_BN,       /* x -> y */
    OP_SILU,     /* x -> y */
    OP_ADD,      /* x + x2 -> y */
    OP_CONCAT,   /* ins -> y */
    OP_SLICE,    /* x[..., off : off + c] -> y */
    OP_UPSAMPLE, /* x -> y (nearest 2x) */
    OP_MAXPOOL,  /* x -> y */
    OP_ATTN,     /* qkv x -> y (attention out), y2 (V) */
    OP_DETACH,   /* y = x, no gradient back */
    OP_OUTPUT,   /* level slot x -> the flat output of a branch */
    OP_BN_SILU,  /* x -> y = silu(bn(x)) (keep_grads models emit OP_BN + OP_SILU instead) */
    OP_TO_BF16,  /* x -> its bf16 shadow y (bf16 convolutions read it) */
    OP_KIND_COUNT
} op_kind;

/* "conv", "bn", ... (model_timing_text). */
const char *model_op_kind_name(op_kind k);

/* inputs of one op: C2f/C3k2 concatenate 2 + n parts, SPPF cv1 and its n pools */
#define OP_MAX_IN (2 + MODEL_MAX_REPEATS)

typedef struct slot {
    int n, h, w, c;
    size_t off;  /* floats into the activation arena */
    size_t goff; /* floats into the gradient arena (shared by slots whose gradients are never
                    live at the same time in backward, unless keep_grads) */
    int shadow;  /* the slot holding this one's bf16 copy for bf16 convolutions, or -1 */
    bool bf16;   /* a shadow: n*h*w*c2 bf16 values stored in c = ceil(c2 / 2) float columns; it
                    has no gradient */
    bool no_act; /* no activation memory: its writer (a BN + SiLU that also writes the shadow)
                    skips the float values, which nothing reads (model_fuse_bf16) */
} slot;

typedef struct op {
    op_kind kind;
    int x, x2, y, y2;
    int nin, ins[OP_MAX_IN];
    conv2d_desc cd;
    int pw, pb;            /* conv weight / bias params (-1: none) */
    int pg, pbeta, bm, bv; /* bn params and buffers */
    size_t save; /* bn save_mean/invstd (bn_silu: + scale), attention probs: scratch offset */
    int off;     /* slice */
    int k, stride, pad; /* maxpool */
    size_t argmax;      /* maxpool: int32 scratch offset */
    attention_desc ad;
    int branch, level; /* output */
    bool dx_write; /* conv, bn_silu: backward writes dx (the first to produce it: model_plan_grads)
                    */
    /* bf16 convolutions (model_set_conv_precision): a conv reads its input's shadow xb (-1: a
     * float conv), which an OP_TO_BF16 writes; its dy is converted into m->dyb in backward */
    int xb;
    /* bf16 fusions (model_fuse_bf16). BN + SiLU: yb, the shadow of y it also writes (-1: none;
     * then no OP_TO_BF16 for y), skip_y when it writes only the shadow; dx_bf16, its backward
     * writes bf16(dx) into m->dyb for the conv before it, which then has dyb_ready (no
     * conversion). */
    int yb;
    bool skip_y, dx_bf16, dyb_ready;
} op;

typedef struct act_name {
    char name[80];
    int slot;
} act_name;

struct model {
    model_yaml cfg;
    backend *be; /* not owned */
    /* parameters, gradients, buffers */
    model_tensor *params, *bufs;
    int nparams, nbufs, cap_params, cap_bufs;
    size_t nparam_floats, nbuf_floats, ntrainable;
    float *p, *g, *b;
    long long num_batches_tracked;
    size_t *layer_params; /* per yaml layer */
    /* graph at the planned shape */
    int batch, h, w;
    slot *slots;
    int nslots, cap_slots;
    op *ops;
    int nops, cap_ops;
    act_name *names;
    int nnames, cap_names;
    size_t arena_floats, scratch_floats, scratch_i32, conv_ws;
    size_t grad_floats;
    bool keep_grads;
    conv2d_prec conv_prec;        /* of every conv op (model_set_conv_precision) */
    bool bf16_unfused;            /* model_set_bf16_fusion(false): no model_fuse_bf16 */
    bf16 *dyb;                    /* a bf16 conv's dy, converted for its backward (train) */
    size_t dyb_elems;             /* its size: the largest bf16 conv output */
    int *zero_start, *zero_slots; /* host; CSR: slots whose gradient is zeroed before op i's
                                     backward */
    float *act, *dact, *scratch, *ws;
    int32_t *iscratch;
    uint8_t *img_u8; /* model_forward_u8's upload (device-memory backends only), or NULL */
    /* heads */
    int nlevels, strides[3], level_h[3], level_w[3], anchors;
    int no; /* 4 * reg_max + nc */
    float *out[2], *dout[2];
    float *out_host[2];                     /* host: model_output_host's copies (device memory) */
    float *anchor_pts, *anchor_str;         /* host */
    float *anchor_pts_dev, *anchor_str_dev; /* the same on the backend (for decode) */
    float *decoded;                         /* model_decode's output (device memory) */
    detection *det_dev;                     /* model_detect: [batch][det_room] kept detections */
    int32_t *det_counts_dev;                /* and [batch] their counts (device memory) */
    int det_room, det_images;               /* what they have room for */
    bool trained_forward, eval_only, want_input_grad;
    model_grad_ready_fn grad_hook; /* model_set_grad_ready_hook */
    void *grad_hook_ctx;
    /* Events around each op (host array of nops + 1): op i's forward runs between ev_fwd[i] and
     * ev_fwd[i + 1], its backward between ev_bwd[i + 1] and ev_bwd[i]. model_timing reads them. */
    backend_event **ev_fwd, **ev_bwd;
    bool timed_fwd, timed_bwd;
    backend_event *ev_ready; /* model_grad_ready_event */
};

/* Builds the graph for batch x h x w into m->slots/ops/names. With `create`, also registers the
 * parameters and buffers (the first build); afterwards it checks the same registry is produced.
 * Accumulates conv MACs. 0, or -1 with message. */
/* Lays out the gradient arena (slot goff, grad_floats, the zeroing lists) from the op list. */
void model_plan_grads(model *m);
/* Slots share activation memory by forward lifetime (sets slot off and arena_floats); with
 * train, slots that backward reads are kept to the end. */
void model_share_activations(model *m, bool train);

/* Frees the activation arena and head buffers (the parameters stay). */
void model_free_plan(model *m);

int model_build_graph(model *m, int batch, int h, int w, bool create, double *macs,
                      double *bias_adds, char *err, size_t errlen);
/* After the build of a bf16 graph on a backend with the BN + SiLU bf16 ops
 * (backend_batchnorm_silu_*_bf16): a BN + SiLU writes the shadow of its output (its OP_TO_BF16
 * removed), and not the float output when only bf16 convolutions read it; a BN + SiLU whose input
 * is a bf16 conv's output, read by nothing else, writes that conv's dy in bf16 into m->dyb. The
 * same bits as without (model_set_bf16_fusion). */
void model_fuse_bf16(model *m);
/* Slots an op reads in forward (a bf16 conv: its shadow), and those whose gradients its backward
 * accumulates or writes (model_grad_plan.c); in has room for OP_MAX_IN + 1. */
int model_op_reads(const op *o, int *in);
int model_op_inputs(const op *o, int *in);
