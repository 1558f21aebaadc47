/* Worker-side training setup: the optimizer's parameter groups from the model's tensors (as
 * Ultralytics' build_optimizer) and the schedule config from the arguments. */
#pragma once
#include <stddef.h>

#include "common/protocol.h"
#include "common/train_args.h"
#include "kernels/detloss.h"
#include "kernels/optim.h"
#include "kernels/schedule.h"
#include "worker/model.h"

/* Resolves optimizer=auto (Ultralytics' rule; forces warmup_bias_lr to 0 in *a), builds the
 * groups (weights with decay, BN weights, biases; MuSGD adds muon groups, membership per the
 * `ultralytics` release) with the weight decay scaled by batch*accumulate/nbs, and the schedule
 * config and accumulation of that release. n_train: images per epoch. *info: what was built,
 * for the coordinator's optimizer lines. The optimizer state (o->m1, o->m2) lives on the model's
 * backend, zeroed; free it with train_free_optimizer. */
int train_setup_optimizer(model *m, train_args *a, long n_train, optimizer *o, sched_cfg *sc,
                          int *accumulate, model_info *info, char *err, size_t errlen);
void train_free_optimizer(model *m, optimizer *o);

/* The loss settings of both branches (one2many / plain, and yolo26's one2one): the gains of the
 * arguments and the assigner of the `ultralytics` release. Training and validation share them. */
void train_setup_loss(const train_args *a, int nc, int reg_max, detloss_hyp *o2m, detloss_hyp *o2o);
