/* The worker's side of checkpoints: its training state as the flat message of common/protocol.h
 * (state_header, tensor_desc table, floats, PyTorch layout under checkpoint names), sent to the
 * coordinator, and restored from one on resume.
 *
 * The state: the model's parameters and BN buffers, the EMA model's, the optimizer's moments
 * (named by parameter), the step counters (iterations, last optimizer step, warmup length,
 * accumulate, optimizer steps, EMA updates, num_batches_tracked) and the parameter groups' lr,
 * momentum, initial_lr and weight decay. Every random draw is keyed by (seed, epoch, sample), so
 * with the data position (the coordinator's) this is everything a run needs to continue exactly.
 * Gradients summed for an optimizer step that has not happened yet (accumulate > 1) live on every
 * worker: each sends its own, and on resume gets its own back (or, with another number of
 * workers, rank 0 gets their sum: exact up to rounding).
 *
 * The model's tensors, the optimizer state and the gradient sum are backend memory: they cross
 * to the host and back only through model_{params,buffers}_{to,from}_host and
 * backend_to_host / backend_to_device (worker/model.h's boundary), so a device backend works
 * unchanged. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "kernels/optim.h"
#include "worker/model.h"

typedef struct snapshot_parts {
    model *m, *ema_m;
    optimizer *opt;
    model_ema *ema;
    long *iterations, *last_opt_step, *warmup_iters;
    int *accumulate, *e2e_updates;
    float **acc; /* pending gradient sum, our layout, model_num_params floats (lazily malloc'd) */
    bool *acc_live; /* *acc holds a sum */
    int world_size, wrank;
} snapshot_parts;

/* After CTRL_SAVE / CTRL_STOP and at every epoch end: worker 0 sends the state, then every
 * worker its pending gradient sum when there is one (to world rank 0). */
void snapshot_send(const snapshot_parts *p);

/* Resume: takes part in the coordinator's broadcast of a checkpoint's state (and receives this
 * rank's gradient sum), and restores it. 0, or -1 with one line in err naming the tensor or
 * counter that does not fit this model. */
int snapshot_receive(snapshot_parts *p, char *err, size_t errlen);
