#include "worker/head_loss.h"

void head_loss(model *m, const head_loss_args *a, double *result) {
    int nb = model_num_branches(m);
    backend_detloss_desc d = {.branches = nb,
                              .h = {*a->h_o2m, *a->h_o2o},
                              .o2m = a->o2m,
                              .o2o = a->o2o,
                              .B = model_planned_batch(m),
                              .A = model_num_anchors(m),
                              .img_h = (float)a->img_h,
                              .img_w = (float)a->img_w,
                              .anchor_points = model_anchor_points_device(m),
                              .strides = model_anchor_strides_device(m),
                              .ntargets = a->ntargets,
                              .targets = a->targets,
                              .grad_scale = a->grad_scale};
    const float *preds[2] = {model_output(m, MODEL_ONE2MANY), model_output(m, MODEL_ONE2ONE)};
    float *dpreds[2] = {model_head_grad(m, MODEL_ONE2MANY), model_head_grad(m, MODEL_ONE2ONE)};
    backend_detloss(model_backend(m), &d, preds, a->grad ? dpreds : NULL, result);
}
