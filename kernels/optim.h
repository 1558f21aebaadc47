/* Optimizers, gradient clipping and the model EMA, as Ultralytics 8.4 trains with them.
 *
 * Everything works on FLAT buffers: params[n], grads[n] and one state buffer of n floats per
 * optimizer moment. A table of tensors (offset, size, PyTorch shape, group id) says which ranges
 * belong to which parameter group; entries not covered by any tensor are never touched, which is
 * how frozen parameters (the `.dfl` conv) stay fixed.
 *
 * Update rules (PyTorch semantics, scalars computed in double and applied in float):
 *   SGD (nesterov, dampening 0):  g' = g + wd p;  m = mu m + g';  p -= lr (g' + mu m)
 *                                 (without nesterov: p -= lr m)
 *   AdamW (betas (mu, 0.999), eps 1e-8, amsgrad off; per-step count t):
 *                                 p *= 1 - lr wd;  m = lerp(m, g, 1-mu);  v = b2 v + (1-b2) g^2;
 *                                 p -= lr/(1-mu^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
 *   MuSGD (ultralytics/optim/muon.py), groups with use_muon (every tensor with ndim >= 2):
 *                                 m1 = lerp(m1, g, 1-mu);  u = lerp(g, m1, mu)  (nesterov)
 *                                 O = NS5(u viewed (shape[0], numel/shape[0])) * sqrt(max(1,
 * s[-2]/s[-1])) p -= 0.2 lr O;   then the SGD rule above with buffer m2 on the updated p (scaled
 * by 1.0 lr); other groups: the SGD rule. NS5: X = u/(|u|_F + 1e-7); transpose if rows > cols; 5
 * times A = X X^T, X = a X + (b A + c A A) X with (a, b, c) = (3.4445, -4.7750, 2.0315).
 * Ultralytics runs it in bfloat16; with ns_bf16 set (the default) every intermediate is rounded to
 * bf16 as PyTorch stores it.
 *
 * Memory layout: a 4-D conv weight may be stored OHWI (ours) or OIHW (PyTorch); NS5 of the
 * (out, rest) view commutes with a permutation of the columns, so either layout gives the same
 * update. The scale factor uses the PyTorch shape (kh/kw for 4-D: the quirk Ultralytics has).
 */
#pragma once
#include <stddef.h>

#define OPTIM_MAX_GROUPS 8
#define OPTIM_MAX_NDIM 4

typedef enum { OPTIM_SGD = 0, OPTIM_ADAMW = 1, OPTIM_MUSGD = 2 } optim_kind;

/* Ultralytics' param_group tags. Warmup starts the "bias" groups at warmup_bias_lr. */
typedef enum { PG_WEIGHT = 0, PG_BN = 1, PG_BIAS = 2, PG_MUON = 3 } optim_tag;

typedef struct {
    optim_tag tag;
    double initial_lr;   /* LR at construction: the base of the per-epoch lambda (schedule.h) */
    double lr;           /* LR of the next step (set by schedule.h every iteration) */
    double momentum;     /* SGD/MuSGD momentum, AdamW beta1 */
    double weight_decay; /* already scaled by batch*accumulate/nbs (schedule.h) */
    int use_muon;        /* MuSGD: Muon + SGD on this group */
} optim_group;

typedef struct {
    size_t offset, numel;      /* range in the flat buffers */
    int ndim;                  /* 1..4 */
    int shape[OPTIM_MAX_NDIM]; /* PyTorch shape (OIHW for conv weights) */
    int group;                 /* index into optimizer.group */
} optim_tensor;

typedef struct {
    optim_kind kind;
    int ngroups;
    optim_group group[OPTIM_MAX_GROUPS];
    int ntensors;
    optim_tensor *tensors; /* owned copy */
    size_t n;              /* floats in each flat buffer */
    /* State, n floats each, zero-initialised; names as in PyTorch's optimizer state_dict:
     * SGD: m1 = momentum_buffer. AdamW: m1 = exp_avg, m2 = exp_avg_sq.
     * MuSGD: m1 = momentum_buffer (Muon EMA on muon tensors, SGD buffer elsewhere),
     *        m2 = momentum_buffer_SGD (muon tensors only). m2 is NULL for SGD. */
    float *m1, *m2;
    long step;                    /* optimizer steps taken (AdamW bias correction; checkpoint it) */
    int nesterov;                 /* SGD/MuSGD, default 1 (Ultralytics) */
    double beta2, eps;            /* AdamW: 0.999, 1e-8 */
    double muon_scale, sgd_scale; /* MuSGD: 0.2, 1.0 */
    int ns_bf16;                  /* NS5 in emulated bfloat16 (default 1) */
    float *work;                  /* NS5 scratch */
    size_t work_n;
    int state_adopted; /* m1/m2 belong to the caller (optim_adopt_state) */
} optimizer;

/* Copies the tables; validates them (ranges inside n, group ids, shapes multiply to numel):
 * returns 0, or -1 with a message in err. Defaults as listed in the struct. */
int optim_init(optimizer *o, optim_kind kind, size_t n, const optim_tensor *tensors, int ntensors,
               const optim_group *groups, int ngroups, char *err, size_t errlen);
void optim_free(optimizer *o);
/* Moves the state into memory the caller owns (e.g. a backend's, kernels/backend.h), already
 * zero-filled: frees what optim_init allocated and uses m1 (and m2; NULL for SGD) instead.
 * optim_free then leaves them to the caller. */
void optim_adopt_state(optimizer *o, float *m1, float *m2);

/* One optimizer step over every tensor of the table: updates params and state. grads is read only
 * (clip it first with optim_clip_grad_norm). Uses the groups' current lr/momentum/weight_decay. */
void optim_step(optimizer *o, float *params, const float *grads);

/* Newton-Schulz orthogonalisation of a rows x cols row-major matrix, in place. bf16: round every
 * intermediate to bfloat16 (PyTorch bf16 matmuls accumulate in fp32). work: at least
 * optim_ns5_work_floats(rows, cols) floats. */
size_t optim_ns5_work_floats(int rows, int cols);
void optim_ns5(float *x, int rows, int cols, int bf16, float *work);
/* bfloat16 rounding (round to nearest even), as a float. */
float optim_bf16_round(float x);

/* torch.nn.utils.clip_grad_norm_ over one flat buffer: total = ||g||_2 (accumulated in double);
 * if max_norm / (total + 1e-6) < 1 every grad is multiplied by that factor. Returns total (before
 * clipping; non-finite when the gradients are). Ultralytics clips at 10.0 every optimizer step. */
double optim_clip_grad_norm(float *grads, size_t n, double max_norm);
#define OPTIM_CLIP_MAX_NORM 10.0

/* The whole update after backward, in one pass over memory: exactly
 *     optim_clip_grad_norm(grads, n, max_norm); optim_step(o, params, grads);
 *     memset(grads, 0, n floats); ema_blend(ema, params, n, ema_d)   (ema may be NULL: no blend)
 * (the same float operations on every element, so the same bits, for any thread count), but
 * after the norm each 8192-float piece of every buffer is read and written once while it is in
 * cache, and all pieces share one parallel region; Muon tensors (MuSGD) are updated whole, one
 * after another, as optim_step does. Returns the gradient norm (before clipping). */
double optim_update(optimizer *o, float *params, float *grads, double max_norm, float *ema,
                    double ema_d);

/* ---- building the groups as Ultralytics' build_optimizer does ---------------------------------
 * Tag of one parameter from its full state_dict name, its ndim and whether its module is a
 * normalisation layer: muon first, then "bias" in the name, then norm module or "logit_scale" in
 * the name -> bn, else weight. use_muon: 0 no Muon group (SGD, AdamW); OPTIM_MUON_NDIM_GE2
 * (MuSGD in 8.4.33: ndim >= 2); OPTIM_MUON_NDIM_2_4 (MuSGD in 8.4.190: ndim 2 or 4). */
enum { OPTIM_MUON_NDIM_GE2 = 1, OPTIM_MUON_NDIM_2_4 = 2 };
optim_tag optim_tag_of(const char *fullname, int ndim, int in_norm_module, int use_muon);
/* MuSGD's 3x-LR subgroup in 8.4.33: name contains both "23" and "cv3", or "proto.semseg". */
int optim_lr3x_match(const char *fullname);
/* ... and in 8.4.190: the parameters of the head's (model.<head_layer>) cv3 and one2one_cv3
 * modules, or a name containing "proto.semseg" or "SemanticSegment". */
int optim_lr3x_match_head(const char *fullname, int head_layer);
/* The groups for `kind` with base lr, momentum and (scaled) decay, in Ultralytics' order:
 * SGD/AdamW: [weight, bn, bias] (3 groups); MuSGD: [weight x3, weight, bn x3, bn, bias x3, bias,
 * muon x3, muon] (8 groups, the x3 ones at 3*lr). Returns the count. */
int optim_default_groups(optim_kind kind, double lr, double momentum, double decay,
                         optim_group out[OPTIM_MAX_GROUPS]);
/* Index into optim_default_groups' result for a tag (and the 3x flag, MuSGD only). */
int optim_group_index(optim_kind kind, optim_tag tag, int lr3x);

/* optimizer=auto (Ultralytics 8.4): iterations = ceil(n_train / max(batch, nbs)) * epochs;
 * > 10000: MuSGD, lr 0.01, momentum 0.9; else AdamW, lr round(0.002*5/(4+nc), 6), momentum 0.9.
 * The caller must also force warmup_bias_lr to 0 (Ultralytics does). nc <= 0 means "unknown"
 * and uses 10 as Ultralytics does. */
long optim_auto_iterations(long n_train, int batch, int nbs, int epochs);
optim_kind optim_auto(long iterations, int nc, double *lr, double *momentum);

/* ---- ModelEMA ---------------------------------------------------------------------------------
 * d = decay * (1 - exp(-updates / tau)), updates counting optimizer steps (incremented before d is
 * computed). Applied to every FLOAT state_dict entry: all parameters (frozen ones too) and the BN
 * running_mean/running_var buffers; never to integer buffers (num_batches_tracked). */
typedef struct {
    long updates;
    double decay, tau; /* 0.9999, 2000 */
} model_ema;

void ema_init(model_ema *e); /* updates 0, decay 0.9999, tau 2000 */
double ema_decay_at(const model_ema *e, long updates);
/* updates += 1; returns the d of that update (what ema_update blends with). */
double ema_advance(model_ema *e);
/* updates += 1; returns the d used. Each (ema, model) pair is a flat float buffer of n[i] floats,
 * e.g. {ema_params, params} and {ema_bn_buffers, bn_buffers}. ema = ema*d + (1-d)*model. */
double ema_update(model_ema *e, int npairs, float *const *ema, const float *const *model,
                  const size_t *n);
/* One pair, with a given d (no counter change). */
void ema_blend(float *ema, const float *model, size_t n, double d);
