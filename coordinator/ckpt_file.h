/* One checkpoint version: an HDF5 file (weights/v0001.h5, v0002.h5, ...) holding the model, EMA
 * and optimizer tensors under Ultralytics state_dict names in PyTorch layout, the training
 * position, the metrics at that point and the lineage. docs/checkpoints.md lists every group,
 * dataset and attribute; this header is the one implementation that writes and reads them.
 *
 * Writing (ckpt_write): a temporary name beside the final one, fsync, rename, fsync of the
 * folder: a crash leaves no partial file under a version's name. Every tensor carries a sha256
 * of its bytes (attribute "sha256"); the root attribute "content_sha256" is a sha256 over a
 * canonical listing of every metadata field and every tensor's name, dtype, shape and sha256.
 *
 * Reading (ckpt_open, then ckpt_read_tensor / ckpt_verify): a truncated file, a file that is not
 * one of ours, or one written by a newer format is refused with a one-line reason; a tensor whose
 * bytes do not match its sha256 is named. Not thread-safe (HDF5 here is not): one thread at a
 * time uses this module, the checkpoint writer thread while a run trains. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coordinator/results_csv.h"

#define CKPT_FORMAT "yolo-cluster checkpoint"
#define CKPT_FORMAT_VERSION 1
#define CKPT_MAX_GROUPS 8
#define CKPT_NAME_MAX 192

typedef enum ckpt_dtype { CKPT_F32 = 0, CKPT_I64 = 1 } ckpt_dtype;

/* A tensor: a dataset at path `name` inside the file ("ema/model.0.conv.weight"). */
typedef struct ckpt_tensor {
    char name[CKPT_NAME_MAX];
    ckpt_dtype dtype;
    int ndim; /* 0 (scalar) .. 4 */
    int64_t shape[4];
    const void *data; /* writing: the caller's little-endian values; reading: unused */
    char sha256[65];  /* writing: filled in by ckpt_write; reading: as stored */
} ckpt_tensor;

int64_t ckpt_tensor_numel(const ckpt_tensor *t);
size_t ckpt_dtype_size(ckpt_dtype d);

typedef struct ckpt_param_group {
    char tag[16]; /* "weight", "bn", "bias", "muon" (Ultralytics' param_group names) */
    double lr, initial_lr, momentum, weight_decay;
    int use_muon;
} ckpt_param_group;

/* Everything but the tensors. Strings marked (heap) are malloc'd; ckpt_meta_free frees them. */
typedef struct ckpt_meta {
    /* root */
    int format_version;
    int version;      /* N of vN */
    char reason[16];  /* why it was written: "epoch", "save", "stop", "final" */
    char created[32]; /* ISO 8601 UTC */
    char content_sha256[65];
    /* /train: the position. epoch is 1-based; step = steps of that epoch done (of steps). */
    int epoch, epochs, step, steps;
    int epoch_complete; /* 1: that epoch was validated and its results.csv row written */
    int finished;       /* 1: the run ended here (all epochs, patience, or time) */
    int64_t images_seen, iterations, last_opt_step, warmup_iters;
    int accumulate, e2e_updates;
    double elapsed_s;         /* training seconds so far (results.csv's time base) */
    double epoch_loss_sum[3]; /* this epoch's summed step losses (box, cls, dfl) so far */
    double best_fitness;      /* -inf before the first validated epoch */
    int best_epoch;           /* 1-based; 0: none */
    double best_map50, best_map50_95;
    double early_stop_best; /* Ultralytics' EarlyStopping state (patience) */
    int early_stop_epoch;   /* 1-based; 0: none */
    int mosaic_closed;      /* close_mosaic took effect (it stays off) */
    /* /rng and /data: every random draw is keyed by (seed, epoch, sample index) */
    int64_t seed;
    int n_train, batch;
    double fraction;
    /* /ema, /optimizer; num_batches_tracked of the model and of the EMA (one counter each, also
     * written as the "<bn>.num_batches_tracked" datasets a PyTorch state_dict has) */
    int64_t ema_updates, bn_batches_model, bn_batches_ema;
    char optimizer[16]; /* "SGD", "AdamW", "MuSGD" */
    int64_t optimizer_steps;
    int ngroups;
    ckpt_param_group group[CKPT_MAX_GROUPS];
    int grad_accum_ranks; /* 0: no gradient accumulation pending; else ranks in /grad_accum */
    /* /metrics: the results.csv row at this point (the last completed epoch's) */
    bool has_row;
    epoch_row row;
    double fitness;
    char *results_csv; /* (heap) results.csv's text up to this version */
    /* /lineage */
    char parent_version[32]; /* "v0004", "" for the first */
    char *parent_run;        /* (heap) run folder of the parent, "" for none */
    char dataset_sha256[65];
    char *dataset;    /* (heap) the dataset file used */
    char *model;      /* (heap) model= as given ("yolov8n.yaml") */
    char *model_yaml; /* (heap) the model yaml text */
    char *args_yaml;  /* (heap) args.yaml text in force */
    char code_version[64];
    int world_size, micro_batch;
    char host[256];
    /* optional (absent in versions written before they existed; "" / NULL then) */
    char *class_names;          /* (heap) the dataset's class names, a JSON array of strings */
    char *pretrained;           /* (heap) the weights file a fine-tuned run started from */
    char pretrained_sha256[65]; /* that file's sha256 (of its bytes) */
    char precision[160];        /* the convolutions' arithmetic and why (protocol.h model_info) */
} ckpt_meta;

void ckpt_meta_free(ckpt_meta *m);
/* strdup-style setter for the (heap) fields: frees the old value. */
void ckpt_meta_set(char **field, const char *value);

/* Writes path atomically; fills each tensor's sha256 and meta->content_sha256 (and created when
 * empty, format_version). 0, or -1 with one line in err (disk full, read-only, ...): the
 * temporary file is removed and nothing under path changes. */
int ckpt_write(const char *path, ckpt_meta *meta, ckpt_tensor *t, int n, char *err, size_t errlen);

/* ---- reading ----------------------------------------------------------------------------------
 */
typedef struct ckpt_file ckpt_file;

/* Opens a version and reads its metadata and tensor list (no tensor data). NULL with one line in
 * err: "not found", "truncated or damaged HDF5 file", "not a yolo-cluster checkpoint ...",
 * "written by a newer format ...". */
ckpt_file *ckpt_open(const char *path, char *err, size_t errlen);
void ckpt_close(ckpt_file *f);
const char *ckpt_path(const ckpt_file *f);
const ckpt_meta *ckpt_file_meta(const ckpt_file *f);
int ckpt_num_tensors(const ckpt_file *f);
const ckpt_tensor *ckpt_tensor_at(const ckpt_file *f, int i); /* sorted by name */
int ckpt_find_tensor(const ckpt_file *f, const char *name);   /* index or -1 */
/* Reads tensor i (numel values of its dtype) into out and checks its sha256: -1 with a line
 * naming the tensor when it does not match. */
int ckpt_read_tensor(ckpt_file *f, int i, void *out, char *err, size_t errlen);
/* Re-hashes every tensor and the content listing. Returns the number of problems (0: intact);
 * each is reported as one line ("tensor ema/model.0.conv.weight: sha256 mismatch") through
 * report (may be NULL), and the first is also in err. */
int ckpt_verify(ckpt_file *f, void (*report)(void *ctx, const char *line), void *ctx, char *err,
                size_t errlen);
