/* Worker-side training setup: the optimizer's parameter groups from the model's tensors (as
 * Ultralytics' build_optimizer) and the schedule config from the arguments. */
#pragma once
#include <stddef.h>

#include "common/train_args.h"
#include "kernels/optim.h"
#include "kernels/schedule.h"
#include "worker/model.h"

/* Resolves optimizer=auto (Ultralytics' rule; forces warmup_bias_lr to 0 in *a), builds the
 * groups (weights with decay, BN weights, biases; MuSGD adds muon groups) with the weight decay
 * scaled by batch*accumulate/nbs, and the schedule config. n_train: images per epoch. */
int train_setup_optimizer(model *m, train_args *a, long n_train, optimizer *o, sched_cfg *sc,
                          int *accumulate, char *err, size_t errlen);
