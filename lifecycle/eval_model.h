/* A model to evaluate: a checkpoint version's EMA weights or a weights file, found by reference
 * (coordinator/ckpt_ref.h: P/N, P/N:v3, P/N@production, a file), verified, built from the model
 * yaml text it records and loaded on a backend, with what the version says about how it was
 * trained (image size, batch, the Ultralytics release, YOLO26's validation head, the dataset).
 *
 * The evaluation commands (val, predict, gate, drift) run in their own process, bin/lifecycle,
 * which links the worker's model code: see docs/lifecycle.md for why not a worker rank. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "common/ultralytics_version.h"
#include "kernels/backend.h"
#include "worker/model.h"

typedef struct eval_model {
    char label[4400]; /* "runs/detect/a:v0003", or the file's path */
    char path[4200];  /* the file read (links followed) */
    bool from_checkpoint;
    int version;
    model *m; /* the EMA weights, eval only */
    backend *be;
    int nc;
    char **names;    /* [nc] class names (placeholders "0", "1", ... when not recorded) */
    char model[256]; /* model= as built ("yolov8n.yaml") */
    bool end2end;    /* has YOLO26's one-to-one head */
    /* from the version's args.yaml (defaults for a weights file: Ultralytics') */
    int imgsz, batch;
    ul_version ultralytics;
    int nms;            /* args' nms: -1 None, 0 False, 1 True (YOLO26's validation head) */
    char dataset[4200]; /* the training dataset file ("" unknown) */
    char dataset_sha256[65];
    bool has_metrics;       /* the version holds an end-of-epoch results.csv row */
    double map50, map50_95; /* that row's metrics/mAP50(B), metrics/mAP50-95(B) */
} eval_model;

typedef struct eval_device {
    const char *device; /* "cpu" (NULL: cpu), "cuda", "cuda:N" or "N": the CUDA backend */
    int threads;        /* 0: every core */
} eval_device;

/* ref: as ckpt_ref_resolve takes it; a run folder alone means its best version (as Ultralytics
 * validates best.pt). 0, or -1 with one line in err (bad reference, damaged file, a tensor that
 * does not fit the model). *out is freed with eval_model_free in either case. */
int eval_model_load(const char *ref, const eval_device *dev, eval_model *out, char *err,
                    size_t errlen);
void eval_model_free(eval_model *m);
/* Which head validation and prediction use: YOLO26's one-to-one head + top-k when the release
 * and nms say so (train_args_val_one2one's rule), else the one-to-many head + NMS. nms: -1 keeps
 * the version's setting. */
bool eval_model_one2one(const eval_model *m, int nms);
/* The backend for dev: 0, or -1 with err (an unknown or unavailable device). */
int eval_device_backend(const eval_device *dev, backend **out, char *err, size_t errlen);
