/* The detection loss of a model's head outputs, on the model's backend (backend_detloss): the one
 * call training and validation make, for both head kinds (v8/v11: one branch; yolo26: E2E). */
#pragma once
#include "kernels/backend.h"
#include "kernels/detloss.h"
#include "worker/model.h"

#include <stdbool.h>

typedef struct head_loss_args {
    const detloss_hyp *h_o2m, *h_o2o; /* one2many (or the only branch), one2one */
    float o2m, o2o;                   /* E2E branch weights (detloss_e2e_weights) */
    int img_h, img_w;                 /* the planned input size */
    int ntargets;
    const float *targets; /* host memory [ntargets][6], batch index rebased to the planned batch */
    float grad_scale;     /* the head gradients are d loss / d outputs times this */
    bool grad;            /* write model_head_grad (training), or not (validation) */
} head_loss_args;

/* After a forward of m: the loss of its planned batch, the BACKEND_DETLOSS_* values ADDED to
 * result (backend memory, BACKEND_DETLOSS_RESULTS doubles). */
void head_loss(model *m, const head_loss_args *a, double *result);
