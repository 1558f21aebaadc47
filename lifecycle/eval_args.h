/* The arguments every evaluation command shares (Ultralytics' names and defaults): which device,
 * image size, batch, confidence and IoU thresholds, max_det, YOLO26's head, loader threads, and
 * where outputs go (project/name). */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "common/kv.h"
#include "lifecycle/eval_model.h"
#include "lifecycle/eval_run.h"

/* The keys eval_args_parse reads, for a cli_spec's key list. */
#define EVAL_ARGS_KEYS                                                                             \
    "device,threads,imgsz,batch,conf,iou,max_det,nms,workers,project,name,exist_ok"

typedef struct eval_args {
    eval_device dev;
    long imgsz; /* 0: the version's training imgsz */
    long batch;
    double conf, iou;
    long max_det, workers;
    int nms; /* -1: the version's */
    const char *project, *name;
    bool exist_ok;
} eval_args;

/* Reads device, threads, imgsz, batch (default batch_def), conf (conf_def), iou, max_det, nms,
 * workers (loader threads), project, name (name_def), exist_ok. 0, or -1 with err naming the
 * key. */
int eval_args_parse(kv_args *a, long batch_def, double conf_def, const char *name_def,
                    eval_args *out, char *err, size_t errlen);
/* The run options for a loaded model: imgsz defaults to the version's and is rounded up to a
 * multiple of 32 (with a warning, as Ultralytics' check_imgsz). */
void eval_args_opts(const eval_args *e, const eval_model *em, bool plots, eval_opts *o);
/* The output folder project/name (name2, name3, ... unless exist_ok) into out. 0 or -1. */
int eval_args_out_dir(const eval_args *e, char *out, size_t n, char *err, size_t errlen);
