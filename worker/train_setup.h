/* Worker-side training setup: the optimizer's parameter groups from the model's tensors (as
 * Ultralytics' build_optimizer), the schedule config from the arguments, and the model state in
 * PyTorch layout for weights files. */
#pragma once
#include <stddef.h>

#include "common/protocol.h"
#include "common/train_args.h"
#include "kernels/optim.h"
#include "kernels/schedule.h"
#include "worker/model.h"

/* Resolves optimizer=auto (Ultralytics' rule; forces warmup_bias_lr to 0 in *a), builds the
 * groups (weights with decay, BN weights, biases; MuSGD adds muon groups) with the weight decay
 * scaled by batch*accumulate/nbs, and the schedule config. n_train: images per epoch. The
 * optimizer state (o->m1, o->m2) lives on the model's backend, zeroed; free with
 * train_free_optimizer. */
int train_setup_optimizer(model *m, train_args *a, long n_train, optimizer *o, sched_cfg *sc,
                          int *accumulate, char *err, size_t errlen);
void train_free_optimizer(model *m, optimizer *o);

/* The model's parameters (from params, e.g. the EMA copy) and BN buffers in PyTorch layout under
 * their state_dict names. *t and *data are malloc'd. */
void train_export_state(const model *m, const float *params, const float *buffers,
                        model_state_header *h, tensor_desc **t, float **data);
