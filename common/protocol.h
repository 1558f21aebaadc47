/* Messages between the coordinator (world rank 0) and the workers (ranks 1..N). Plain structs
 * sent as bytes: coordinator and workers are built from the same tree (MPMD of one build).
 *
 * Sequence:
 *   start:  coordinator -> all   MPI_Bcast of train_args (common/train_args.h) and job_info;
 *           worker 0 -> coordinator  model_info (what it built: loss names, optimizer groups)
 *   epoch:  coordinator -> each  epoch_header, then the epoch's global batches: header.steps x
 *                                (header.share x workers) int32 indices; worker r loads positions
 *                                r * share .. (r + 1) * share - 1 of each
 *   step:   each -> coordinator  step_report (also the heartbeat)
 *           coordinator -> each  int32 control word (CTRL_*); after CTRL_SAVE worker 0 sends
 *                                its state (as below) and the coordinator writes last weights
 *   val:    coordinator -> each  val_header, then its val indices and its rectangular batches
 *           (header.batches x int32 {count, h, w}); each -> coordinator
 *           val_summary, then its match records and per-class ground-truth counts, and when
 *           the header asks for plots the confusion matrix and the plotted predictions
 *   state:  worker 0 -> coordinator  model_state_header, then the float buffers (params, EMA,
 *           BN buffers) for checkpoints
 * This header is libc-only; CHECK_MPI expands only where <mpi.h> is included. */
#pragma once
#include <stdint.h>

#define PROTOCOL_VERSION 3

enum msg_tag {
    TAG_EPOCH = 100,
    TAG_PLAN,
    TAG_REPORT,
    TAG_CONTROL,
    TAG_VAL_HEADER,
    TAG_VAL_PLAN,
    TAG_VAL_SUMMARY,
    TAG_VAL_RECORDS,
    TAG_VAL_COUNTS,
    TAG_STATE_HEADER,
    TAG_STATE_DATA,
    TAG_MODEL_INFO,
    TAG_VAL_PLOTS,
};

typedef enum control_word {
    CTRL_CONTINUE = 0,
    CTRL_SAVE = 1,  /* worker 0 sends its state (as after an epoch) after this step */
    CTRL_STOP = 2,  /* finish after this step */
    CTRL_ABORT = 3, /* another rank failed: exit now */
} control_word;

typedef struct job_info {
    int32_t protocol, nc, n_train, n_val, workers;
    int32_t class_weights; /* 1: an MPI_Bcast of nc floats (cls_pw class weights) follows */
    uint64_t dataset_size_hint;
} job_info;

/* Worker 0, after building its model and optimizer: the coordinator names the losses from it and
 * prints (and logs to train.log) the optimizer lines Ultralytics prints. */
typedef struct model_info {
    int32_t reg_max, branches;
    int32_t auto_optimizer; /* optimizer=auto was resolved to `optimizer` */
    char optimizer[16];     /* SGD, AdamW, MuSGD */
    double lr, momentum;    /* the base group's lr and momentum */
    double decay; /* weight decay of the decayed groups (scaled by batch*accumulate/nbs) */
    /* Ultralytics' counts: weights with decay (under MuSGD: the Muon group), BN weights, biases */
    int32_t n_weight, n_bn, n_bias;
    int32_t accumulate;   /* gradient accumulation after warmup */
    int64_t warmup_iters; /* -1: none */
} model_info;

typedef struct epoch_header {
    int32_t epoch, steps, share; /* share = images per worker per step */
    int32_t mosaic;              /* 0 once close_mosaic applies */
    int32_t epochs;              /* total epochs: changes when `time` re-estimates it */
} epoch_header;

typedef struct step_report {
    int32_t epoch, step, worker, images, instances, ok;
    float loss[3];         /* box, cls, dfl items of this worker's share */
    double compute_s;      /* forward + backward + optimizer */
    double comm_exposed_s; /* all-reduce time not hidden behind backward */
    double comm_total_s;
    double stall_s; /* waited for the loader */
    double lr[3];
    char error[200]; /* when !ok: one line naming the problem */
} step_report;

/* Validation runs in Ultralytics' rectangular batches of 2 x batch images (coordinator/val_plan.h);
 * the coordinator gives each worker whole batches, so the batches (hence the batch-level val loss
 * items, which Ultralytics averages) do not depend on the number of workers. A worker runs a
 * batch through the model VAL_CHUNK images at a time (eval mode: images are independent) and
 * computes its loss items over the whole batch. */
#define VAL_CHUNK 16

typedef struct val_header {
    int32_t epoch, count; /* val indices that follow (-1: no validation this epoch) */
    int32_t batches;      /* rectangular batches that follow the indices, 3 int32 each */
    int32_t plots;        /* 1: also send the plot data (common/val_plots.h) */
} val_header;

/* Followed by `records` val_record (common/val_record.h) and 2*nc int64: per-class ground-truth
 * instances, then per-class images containing that class. With val_header.plots, then on
 * TAG_VAL_PLOTS: (nc+1)^2 int64 confusion counts, one int64 n, n val_plot_det. */
typedef struct val_summary {
    int32_t images, records, ok;
    int32_t batches;    /* rectangular batches validated */
    double loss_sum[3]; /* the val loss items of each batch, summed over the batches */
    char error[200];
} val_summary;

/* Model state for a weights file: n_tensors tensor_desc, then n_floats floats. Tensors are in
 * PyTorch layout (OIHW) under their Ultralytics state_dict names: the EMA parameters followed by
 * the BN buffers (running_mean, running_var), as a checkpoint's `ema`/`model` holds them. */
typedef struct model_state_header {
    int64_t n_tensors, n_floats;
    int64_t ema_updates;
    int32_t epoch, pad;
} model_state_header;

typedef struct tensor_desc {
    char name[112];
    int32_t ndim;
    int32_t shape[4];
    int64_t offset; /* in floats, into the data that follows */
} tensor_desc;

#define CHECK_MPI(call)                                                                            \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != MPI_SUCCESS) {                                                                  \
            char s_[MPI_MAX_ERROR_STRING];                                                         \
            int l_ = 0;                                                                            \
            MPI_Error_string(rc_, s_, &l_);                                                        \
            FATAL("%s failed: %s", #call, s_);                                                     \
        }                                                                                          \
    } while (0)
