/* The memory one training worker needs, estimated before anything large is allocated, and what
 * the machine has: a batch or image size that cannot fit is refused with the numbers instead of
 * failing (or being killed) half way into the first step. */
#pragma once
#include <stddef.h>

#include "worker/model.h"

typedef struct mem_budget {
    double model;     /* parameters, gradients, BN buffers, the EMA copy, accumulation buffer */
    double optimizer; /* optimizer state (two moments: the largest of SGD, AdamW, MuSGD) */
    double train_act; /* training arena of one micro-batch (activations, their gradients) */
    double val_act;   /* eval arena of one validation chunk */
    double loss;      /* assigner and loss scratch (grows with anchors x classes) */
    double loader;    /* prefetched uint8 batches and the float input of a micro-batch */
    double total;     /* bytes */
} mem_budget;

/* share: images per worker per step; micro: images per forward. Frees m's plan (it uses
 * model_plan_bytes). 0, or -1 with a message (a shape the model cannot take). */
int mem_budget_train(model *m, int share, int micro, int imgsz, mem_budget *b, char *err,
                     size_t errlen);
/* Bytes still available to this process: MemAvailable (/proc/meminfo), capped by a cgroup v2
 * memory.max; 0 when unknown. */
double mem_available(void);
/* 0 when `workers` workers of this budget fit in `available` (0: unknown, not checked); else -1
 * with one line giving what is needed and what there is. */
int mem_budget_check(const mem_budget *b, int workers, double available, int imgsz, int batch,
                     char *err, size_t errlen);
