/* The training arguments (shared by coordinator and workers: the config is broadcast as this
 * struct): Ultralytics' key names and defaults (default.yaml of 8.4), plus a few of our own for the
 * distributed engine. Parsed from key=value, validated (one line naming the key on a bad value),
 * written to args.yaml. */
#pragma once
#include <stdbool.h>
#include <stdio.h>

#include "common/kv.h"

typedef struct train_args {
    /* data and model */
    char data[1024], model[1024], project[1024], name[256], optimizer[32], device[32];
    char save_dir[2048]; /* resolved run directory */
    char cache[32];      /* "False" or "ram" (True means ram, as in Ultralytics) */
    long epochs, patience, batch, imgsz, save_period, seed, close_mosaic, nbs, max_det, workers;
    double time_hours, fraction, lr0, lrf, momentum, weight_decay, warmup_epochs, warmup_momentum,
        warmup_bias_lr, box, cls, dfl, hsv_h, hsv_s, hsv_v, degrees, translate, scale, shear,
        perspective, flipud, fliplr, mosaic, iou, conf;
    bool exist_ok, cos_lr, val, save, deterministic, single_cls, plots, verbose;
    /* ours */
    long micro_batch;    /* images per accumulation step on each worker; 0 = whole share */
    long threads;        /* kernel threads per worker; 0 = cores / workers */
    long loader_threads; /* decode+augment threads per worker */
    double bucket_mb;    /* gradient all-reduce bucket size */
    double stall_warn, stall_abort;
    long nc; /* classes, from the dataset (not an argument) */
} train_args;

/* Defaults, then every key=value in args (unknown key, bad number, out-of-range value: -1 and one
 * line in err naming the key). Does not touch the filesystem except to check `data` exists. */
int train_args_parse(kv_args *args, train_args *out, char *err, size_t errlen);
/* Every resolved argument, Ultralytics' order, `key: value` lines. */
void train_args_write_yaml(const train_args *a, FILE *f);
