/* Messages between the coordinator (world rank 0) and the workers (ranks 1..N). Plain structs
 * sent as bytes: coordinator and workers are built from the same tree (MPMD of one build).
 *
 * Sequence:
 *   hello:  all <-> all  MPI_Allgather of rank_info (common/rank_info.h: pid, host, start time),
 *           before anything else: the coordinator names a dead or silent rank by it, and a
 *           worker watches its coordinator
 *   start:  coordinator -> all   MPI_Bcast of an int32 go (0: refused, said why; 2: nothing to
 *                                do), then of train_args (common/train_args.h) and job_info,
 *                                then of the model (job.model_text_len bytes: its name, a NUL,
 *                                its yaml text)
 *   setup:  all -> coordinator   MPI_Igather of setup_report (the coordinator's is ignored): each
 *                                worker builds its model, checks memory and opens its loaders;
 *           coordinator -> all   MPI_Bcast of an int32 start (0: a rank failed, or the run folder
 *                                could not be made: everyone exits, nothing was created)
 *           coordinator -> all   MPI_Bcast of run_prep, then nc floats of class weights when
 *                                run_prep says so (settled once train.log records them)
 *           worker 0 -> coordinator  model_info (what it built: loss names, optimizer groups)
 *   weights: (job.pretrained) coordinator -> all  MPI_Bcast of weights_header, its tensor_desc
 *           table, its floats and its class map (fine-tuning: worker/pretrained.h); worker 0 ->
 *           coordinator  pretrained_summary
 *   resume: (job.resume) coordinator -> all  MPI_Bcast of state_header, its tensor_desc table and
 *           its floats (a checkpoint's state); when header.grad_accum, then coordinator -> each
 *           (point to point, TAG_STATE_ACCUM) accum_header, tensor_desc table, floats: that rank's
 *           pending gradient sum (n_tensors 0: none)
 *   epoch:  coordinator -> each  epoch_header, then header.history x B int32 indices (the global
 *           batches just before this epoch: the previous epoch's last ones, which mosaic pools
 *           reach back to), then the epoch's global batches: header.steps x B, B = share x
 *           workers; worker r loads positions r * share .. (r + 1) * share - 1 of each (steps
 *           before header.first_step are not run: a resumed epoch)
 *   step:   each -> coordinator  step_report (also the heartbeat; it carries a stop signal the
 *           worker received, so a signal to any rank stops the job carefully)
 *           coordinator -> each  int32 control word (CTRL_*); after CTRL_SAVE and CTRL_STOP a
 *           state message follows (as below)
 *   val:    coordinator -> each  val_header, then its val indices and its rectangular batches
 *           (header.batches x int32 {count, h, w}); each -> coordinator  an int32 on
 *           TAG_VAL_PROGRESS after every batch (the heartbeat of a long validation), then
 *           val_summary, then its match records and per-class ground-truth counts, and when
 *           the header asks for plots the confusion matrix and the plotted predictions
 *   state:  worker 0 -> coordinator  state_header, tensor_desc table, floats (model, EMA and
 *           optimizer state); when header.grad_accum, then EVERY worker -> coordinator
 *           accum_header, tensor_desc table, floats (its pending gradient sum). Sent after every
 *           epoch's validation, and after CTRL_SAVE / CTRL_STOP.
 * This header is libc-only; CHECK_MPI expands only where <mpi.h> is included. */
#pragma once
#include <stdint.h>

/* 10: model_info carries the arithmetic the convolutions run in (precision) and why;
 * 9: the cluster's hello exchange of every rank, stop signals in step reports, validation
 * heartbeats (TAG_VAL_PROGRESS) and the setup reports gathered nonblocking, with main's 8;
 * 8: val_header.plots may ask for every prediction (VAL_SEND_ALL_PREDICTIONS, save_json);
 * 7: the model's yaml text follows job_info, pretrained weights after model_info (ckptcli);
 * 6: the epoch message carries the previous epoch's last global batches (epoch_header.history) */
#define PROTOCOL_VERSION 10

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
    TAG_STATE_ACCUM,
    TAG_MODEL_INFO,
    TAG_VAL_PLOTS,
    TAG_VAL_PROGRESS,
    TAG_PRETRAINED,
};

typedef enum control_word {
    CTRL_CONTINUE = 0,
    CTRL_SAVE = 1,      /* the state follows after this step (a mid-epoch version) */
    CTRL_END_EPOCH = 2, /* end this epoch after this step (validation, then the run ends: time=) */
    CTRL_ABORT = 3,     /* another rank failed: exit now */
    CTRL_STOP = 4,      /* the state follows, then leave the epoch without validating and wait for
                           the end (ctl stop, a stop signal: the version it writes resumes exactly) */
} control_word;

typedef struct job_info {
    int32_t protocol, nc, n_train, n_val, workers;
    int32_t resume;         /* 1: a checkpoint's state is broadcast before the first epoch */
    int32_t model_text_len; /* bytes of the model message (name, NUL, yaml text) */
    int32_t pretrained;     /* 1: pretrained weights are broadcast after model_info */
    /* the class-branch width (Detect's c3) of the weights the run starts from (pretrained or
     * resumed) and the head input widths it was built for; 0: the yaml rule */
    int32_t cls_width, head_ch[3];
    uint64_t dataset_size_hint;
} job_info;

/* A worker's verdict on its setup, before the coordinator creates anything. */
typedef struct setup_report {
    int32_t ok;
    char error[200]; /* when !ok: one line naming the problem */
} setup_report;

/* After the start word: Ultralytics' max_det check (train_prep_max_det) and the cls_pw class
 * weights, settled by the coordinator once the run folder and train.log exist. */
typedef struct run_prep {
    int64_t max_det;
    int32_t class_weights; /* 1: an MPI_Bcast of nc floats follows */
    int32_t pad;
} run_prep;

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
    /* the convolutions' arithmetic and why, one line (worker/device.h), which the coordinator
     * logs and records in every checkpoint (lineage/precision) */
    char precision[160];
} model_info;

typedef struct epoch_header {
    int32_t epoch, steps, share; /* share = images per worker per step */
    int32_t mosaic;              /* 0 once close_mosaic applies */
    int32_t epochs;              /* total epochs: changes when `time` re-estimates it */
    int32_t first_step;          /* > 0 when a resumed epoch starts in the middle */
    int32_t history;             /* global batches of the previous epoch sent first (<= 15) */
} epoch_header;

typedef struct step_report {
    int32_t epoch, step, worker, images, instances, ok;
    int32_t signal;        /* a stop signal this worker received (SIGINT, SIGTERM, SIGUSR1), 0 */
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

enum { VAL_SEND_PLOTS = 1, VAL_SEND_ALL_PREDICTIONS = 2 };

typedef struct val_header {
    int32_t epoch, count; /* val indices that follow (-1: no validation this epoch) */
    int32_t batches;      /* rectangular batches that follow the indices, 3 int32 each */
    int32_t plots;        /* VAL_SEND_PLOTS: also send the plot data (common/val_plots.h); with
                           * VAL_SEND_ALL_PREDICTIONS its predictions are every image's (save_json) */
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

/* Training state for a checkpoint, worker 0 -> coordinator (and back, on resume): n_tensors
 * tensor_desc, then n_floats floats. Tensors are in PyTorch layout (OIHW) and named by their path
 * in the checkpoint file: "model/<state_dict name>", "ema/<name>",
 * "optimizer/state/<parameter name>/<key>" (key as in PyTorch's optimizer state: momentum_buffer,
 * exp_avg, exp_avg_sq, momentum_buffer_SGD). The counters below are the rest of the state. */
#define STATE_MAX_GROUPS 8
#define STATE_NAME_MAX 192

typedef struct state_header {
    int64_t n_tensors, n_floats;
    int64_t iterations, last_opt_step, warmup_iters; /* ni, last optimizer step, nw */
    int64_t optimizer_steps, ema_updates;
    int64_t bn_batches_model, bn_batches_ema; /* num_batches_tracked */
    int32_t accumulate, e2e_updates;
    int32_t optimizer_kind, ngroups; /* kernels/optim.h optim_kind */
    int32_t grad_accum;              /* 1: gradients of an unfinished optimizer step are pending */
    int32_t world_size;
    int32_t group_tag[STATE_MAX_GROUPS], group_use_muon[STATE_MAX_GROUPS];
    double group_lr[STATE_MAX_GROUPS], group_initial_lr[STATE_MAX_GROUPS];
    double group_momentum[STATE_MAX_GROUPS], group_weight_decay[STATE_MAX_GROUPS];
} state_header;

/* Names of group_tag and optimizer_kind values (kernels/optim.h's PG_* and OPTIM_*; the worker
 * checks that the numbers agree). */
static inline const char *state_group_tag_name(int tag) {
    static const char *const names[] = {"weight", "bn", "bias", "muon"};
    return tag >= 0 && tag < 4 ? names[tag] : "?";
}
static inline const char *state_optimizer_name(int kind) {
    static const char *const names[] = {"SGD", "AdamW", "MuSGD"};
    return kind >= 0 && kind < 3 ? names[kind] : "?";
}

/* One rank's pending gradient sum: n_tensors tensor_desc "grad_accum/<parameter name>", floats. */
typedef struct accum_header {
    int64_t n_tensors, n_floats;
} accum_header;

/* Fine-tuning: pretrained weights (n_tensors tensor_desc, n_floats floats, then ncls int32: the
 * class map of cls_remap, or 0 entries). */
typedef struct weights_header {
    int64_t n_tensors, n_floats;
    int32_t ncls, pad;
} weights_header;

/* What the pretrained weights did to worker 0's model (printed and logged by the coordinator). */
typedef struct pretrained_summary {
    int32_t ok, transferred, total, remapped, n_not_loaded, cls_width, rule_width, pad;
    char not_loaded[1024];
    char error[256];
} pretrained_summary;

typedef struct tensor_desc {
    char name[STATE_NAME_MAX];
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
