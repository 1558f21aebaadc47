/* The training arguments (shared by coordinator and workers: the config is broadcast as this
 * struct): Ultralytics' key names and defaults (default.yaml of 8.4), plus a few of our own for the
 * distributed engine. Parsed from key=value, validated (one line naming the key on a bad value),
 * written to args.yaml. */
#pragma once
#include <stdbool.h>
#include <stdio.h>

#include "common/kv.h"
#include "common/ultralytics_version.h"

typedef struct train_args {
    /* data and model */
    char data[1024], model[1024], project[1024], name[256], optimizer[32], device[32];
    char save_dir[2048];   /* resolved run directory */
    char cache[32];        /* "False" or "ram" (True means ram, as in Ultralytics) */
    char resume[1024];     /* "False", "True", "auto", a run folder or a version file */
    char pretrained[1024]; /* "True", "False", or a weights file / checkpoint version whose
                              weights start the run (coordinator/model_source.h) */
    long epochs, patience, batch, imgsz, save_period, seed, close_mosaic, nbs, max_det, workers;
    double time_hours, fraction, lr0, lrf, momentum, weight_decay, warmup_epochs, warmup_momentum,
        warmup_bias_lr, box, cls, dfl, hsv_h, hsv_s, hsv_v, degrees, translate, scale, shear,
        perspective, flipud, fliplr, mosaic, iou, conf;
    bool exist_ok, cos_lr, val, save, deterministic, single_cls, plots, verbose;
    bool save_json; /* the last validation's predictions as predictions.json (COCO format) */
    /* from Ultralytics 8.4.190 (args_8_4_190) */
    double cls_pw;     /* class weights (1/count)^cls_pw in the BCE; 0 = off */
    bool cls_remap;    /* fine-tuning: class rows of the head copied by class name */
    int nms;           /* -1 None, 0 False, 1 True: YOLO26 validation head (see trainer) */
    int channels_last; /* -1 None, 0, 1: memory layout; ours is NHWC whatever it says */
    char amp[8];       /* True/False (8.4.33), or fp16/bf16/fp32 (8.4.190): train_args_bf16 */
    /* ours */
    long micro_batch;    /* images per accumulation step on each worker; 0 = whole share */
    long threads;        /* kernel threads per worker; 0 = cores / workers */
    long loader_threads; /* decode+augment threads per worker */
    double bucket_mb;    /* gradient all-reduce bucket size */
    double stall_warn, stall_abort;
    long keep;              /* checkpoint versions kept (weights/v*.h5); 0 keeps all */
    char mlflow[1024];      /* MLflow tracking URI, "False" (off); "" = $MLFLOW_TRACKING_URI */
    ul_version ultralytics; /* ultralytics=: the release whose semantics are followed */
    long nc;                /* classes, from the dataset (not an argument) */
} train_args;

/* Defaults, then every key=value in args (unknown key, bad number, out-of-range value: -1 and one
 * line in err naming the key). Does not touch the filesystem except to check `data` exists. */
int train_args_parse(kv_args *args, train_args *out, char *err, size_t errlen);
/* Every resolved argument, Ultralytics' order, `key: value` lines (only the keys the chosen
 * release has), then ours; numbers exactly (parsing the text back gives the same values, which
 * is how a resumed run gets its arguments). */
void train_args_write_yaml(const train_args *a, FILE *f);
/* The same text in a malloc'd string. */
char *train_args_yaml_text(const train_args *a);
/* The keys a resumed run may change (resources, reporting, stopping rules); the others would make
 * it another run. */
bool train_args_resume_may_change(const char *key);
/* Training images used out of n by `fraction`: 8.4.33 round(n * f) (half to even) when f < 1;
 * 8.4.190 max(1, round(n * f)), or min(f, n) images when f is an integer > 1. At least 1. */
long train_args_train_images(const train_args *a, long n);
/* The GPUs device= names: 0 for cpu; n > 0 for a list (device=0,1 or cuda:N), the indices in
 * ids[0..min(n, max)); -1 for device=cuda (each worker takes the GPU of its local rank); -2 for
 * a value that is none of these (train_args_parse refuses it). */
int train_args_gpus(const train_args *a, int *ids, int max);
/* The YOLO26 validation head: true for the one-to-one head with top-k, false for one-to-many
 * with NMS (8.4.190: nms=False selects one-to-one; 8.4.33: always one-to-one). */
bool train_args_val_one2one(const train_args *a);
/* amp=bf16: bf16 convolutions asked for (amp=True may pick them too: worker/device.h). */
bool train_args_bf16(const train_args *a);
