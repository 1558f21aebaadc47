/* Learning-rate schedule, warmup, gradient accumulation and weight-decay scaling, as the
 * Ultralytics 8.4 trainer does them (8.4.33 or 8.4.190: the fields marked below select). Pure
 * functions (plus sched_apply, which only writes the optimizer's group lr/momentum fields).
 *
 * Per epoch e (0-based) of E, group LR = initial_lr * lf(e):
 *   linear: lf = max(1 - e/E, 0) (1 - lrf) + lrf        cosine: lf = max((1 - cos(pi e/E))/2, 0)
 * (lrf - 1) + 1 Warmup, per iteration, for ni <= nw (ni = i + nb*epoch, nb = batches per epoch per
 * rank; nw = max(round(warmup_epochs*nb), 100), or -1 when warmup_epochs <= 0): lr_g       =
 * interp(ni, [0, nw], [bias group ? warmup_bias_lr : 0, initial_lr_g * lf(epoch)]) momentum_g =
 * interp(ni, [0, nw], [warmup_momentum, momentum])   (SGD/MuSGD only, not AdamW) accumulate =
 * max(1, round(interp(ni, [0, nw], [1, accumulate_target]))) After warmup: lr_g = initial_lr_g *
 * lf(epoch), momentum is left as warmup left it (the quirk: it stays at args.momentum even when
 * optimizer=auto built the optimizer with 0.9), accumulate keeps its last value. Every round() here
 * is Python's: half to even. batch is the GLOBAL batch.
 */
#pragma once
#include "kernels/optim.h"

typedef struct {
    int epochs;             /* E */
    double lrf;             /* 0.01 */
    int cos_lr;             /* 0: linear */
    double momentum;        /* args.momentum, 0.937: warmup target */
    double warmup_epochs;   /* 3.0 */
    double warmup_momentum; /* 0.8 */
    double warmup_bias_lr;  /* 0.1; 0 under optimizer=auto */
    int nbs;                /* 64 */
    int batch;              /* global batch size */
    /* 8.4.190 (ul_behaviour.warmup_leaves_last_epoch): nw = round(min(warmup_epochs,
     * max(epochs - 1, 0)) * nb), no warmup when 0; else max(round(warmup_epochs * nb), 100). */
    int warmup_leaves_last_epoch;
    /* What warmup ramps accumulate to: 8.4.190 the rounded, capped accumulate
     * (sched_accumulate_capped); 8.4.33 nbs / batch unrounded. 0 means nbs / batch. */
    double accumulate_target;
} sched_cfg;

/* Ultralytics' defaults for everything but epochs and batch. */
sched_cfg sched_defaults(int epochs, int batch);

double sched_lf(const sched_cfg *c, int epoch);
/* Number of warmup iterations, -1 when there is no warmup. nb = batches per epoch (per rank). The
 * 8.4.190 rule depends on epochs: call it again when `time` re-estimates them. */
long sched_warmup_iters(const sched_cfg *c, long nb);
/* max(round(nbs / batch), 1): the weight-decay scale uses this value, before any cap */
int sched_accumulate(const sched_cfg *c);
/* 8.4.190: min(sched_accumulate, nb * epochs) unless time mode (epochs are re-estimated there);
 * with cap = 0 (8.4.33) sched_accumulate. */
int sched_accumulate_capped(const sched_cfg *c, int cap, long nb, int time_mode);

/* weight_decay * batch * accumulate / nbs */
double sched_weight_decay(const sched_cfg *c, double weight_decay, int accumulate);
/* numpy.interp with two points: y0 below x0, y1 at or above x1, else the straight line. */
double sched_interp(double x, double x0, double x1, double y0, double y1);
/* Python's round() to an integer: half to even. */
long sched_round_half_even(double x);

/* Sets every group's lr (and momentum, for optimizers that have one) for global iteration ni of
 * `epoch`, with nw from sched_warmup_iters. Returns the accumulate for this iteration: the warmup
 * value while ni <= nw, else `accumulate` unchanged. */
int sched_apply(const sched_cfg *c, int epoch, long ni, long nw, int accumulate, optimizer *o);

/* The optimizer steps after the backward of iteration ni when ni - last_opt_step >= accumulate;
 * last_opt_step starts at -1 and is never reset between epochs, so the first step comes at
 * ni = accumulate - 1. Gradients are summed over those iterations, never divided. */
static inline int sched_should_step(long ni, long last_opt_step, int accumulate) {
    return ni - last_opt_step >= accumulate;
}
