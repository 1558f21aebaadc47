/* A model's weights as one set of named tensors: the EMA of a checkpoint version, or a weights
 * file (ckpt_weights.h). What `ckpt export` writes out and what fine-tuning (`train model=<file>`,
 * `pretrained=<file>`) loads. Loading verifies the whole file first (every tensor's sha256 and the
 * content hash): damaged weights are never exported or trained from. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "common/protocol.h"
#include "coordinator/ckpt_file.h"

typedef struct model_weights {
    ckpt_tensor *t; /* Ultralytics state_dict names ("model.0.conv.weight"); data malloc'd */
    int n;
    char *model;      /* as named when built ("yolov8n.yaml") */
    char *model_yaml; /* the yaml text */
    char *names;      /* class names, a JSON array of strings (placeholders "0", "1", ... when the
                         source does not record them) */
    int nc;
    int imgsz;               /* the training image size; 0 when the source does not record it */
    char dataset_sha256[65]; /* "" when unknown */
    char content_sha256[65]; /* of the source file */
    char source[4400];       /* "runs/a:v0003" or the file's path */
    bool from_checkpoint;    /* a checkpoint version (else a weights file) */
    int version;             /* its number when it is a run's version, else 0 */
    char run_dir[4200];      /* the run folder of that version, else the file's folder */
    char file_name[4200];    /* its file name ("v0003.h5", "yolo11n.h5") */
} model_weights;

/* path: a checkpoint version or a weights file. 0, or -1 with one line in err (also each problem
 * verification found, the first in err, all through report when given). */
int model_weights_load(const char *path, model_weights *w,
                       void (*report)(void *ctx, const char *line), void *ctx, char *err,
                       size_t errlen);
void model_weights_free(model_weights *w);
/* Which format path is: 0, a checkpoint version (*f holds it open, for the caller to close); 1, a
 * weights file (the checkpoint reader names one as such; *f is NULL); -1, neither (err says why:
 * the checkpoint reader's line). */
int model_weights_open_either(const char *path, ckpt_file **f, char *err, size_t errlen);

/* The training imgsz a checkpoint version (its args.yaml) or a weights file (format 2) records,
 * read from its metadata only (no tensor, no verification): > 0; 0 when it records none (a
 * format-1 weights file); -1 when the file is neither (or cannot be read). */
int model_weights_recorded_imgsz(const char *path);
/* The index of a tensor by name, or -1. */
int model_weights_find(const model_weights *w, const char *name);

/* The weights as the message a worker loads (worker/pretrained.h): one tensor_desc per tensor
 * (offsets in floats) and all values as floats (num_batches_tracked converted). *t and *data
 * malloc'd. */
void model_weights_pack(const model_weights *w, tensor_desc **t, float **data, int64_t *n_floats);

/* cls_remap (Ultralytics' _remap_cls_by_names): for each of this run's nc classes, the weights'
 * class row of the same name (case-insensitive, surrounding spaces ignored), -1 when none.
 * Returns the number of matched classes when the rows are to be remapped, 0 when not: either list
 * holds placeholder names ("0", "1", ...), nothing matches, or the names are the same in the same
 * order (a plain copy does it). map: nc entries. */
int model_weights_cls_map(const model_weights *w, const char *const *names, int nc, int *map);

/* The class branch's width (Detect's c3: the last class conv's input channels) and the head's
 * input widths (cv2.<i>.0's input channels) of the tensors t[n] named prefix + state_dict name
 * (prefix "" for model_weights, "ema/" in a checkpoint); 0 when not found. */
void model_head_widths(const ckpt_tensor *t, int n, const char *prefix, int *c3, int ch[3]);
