/* Running a model over images: a dataset split (h5, or a dataset yaml packed through the pack
 * cache) or image files (one file or a folder), through the worker's validation code
 * (worker/validate.h) so that the numbers and boxes are those of validation during training.
 *
 * Canvases. A dataset split is cut into Ultralytics' rectangular validation batches
 * (coordinator/val_plan.h: sorted by aspect ratio, `batch` images per batch, pad 0.5), as `yolo
 * val` does (rect=True) and as training validates (batch = 2 x the training batch): with that
 * batch the boxes are exactly those of end-of-training validation. Image files are predicted one
 * at a time, each letterboxed into its own smallest canvas of multiples of 32 (Ultralytics'
 * LetterBox(auto=True) for predict). Both resize to the load size first (long side to imgsz,
 * Ultralytics' load_image); boxes are mapped back with the exact gain and padding used. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/val_plots.h"
#include "coordinator/metrics.h"
#include "dataio/dataset.h"
#include "dataio/image_files.h"
#include "lifecycle/eval_model.h"
#include "worker/validate.h"

typedef struct eval_source {
    char spec[4200]; /* as given */
    char path[4200]; /* the dataset file (a yaml resolved through the pack cache), or "" */
    dataset *ds;     /* NULL for image files */
    split_id split;
    image_files files; /* when ds is NULL */
    int n;             /* images */
} eval_source;

/* spec: a dataset file (.h5), a dataset yaml (packed on first use, as train does), an image file
 * or a folder of images; split: for datasets ("val" when NULL). 0, or -1 with err; free with
 * eval_source_close. */
int eval_source_open(const char *spec, const char *split, eval_source *s, char *err, size_t errlen);
void eval_source_close(eval_source *s);
bool eval_source_labelled(const eval_source *s); /* a dataset split (ground truth known) */
/* Image i's file name as the source knows it (the packed file's name, or the file's path). */
void eval_source_name(const eval_source *s, int i, char *out, size_t n);
/* Image i's original size. 0 or -1 with err. */
int eval_source_size(eval_source *s, int i, int *h, int *w, char *err, size_t errlen);
/* Image i decoded (RGB, malloc'd). 0 or -1 with err. */
int eval_source_image(eval_source *s, int i, uint8_t **rgb, int *h, int *w, char *err,
                      size_t errlen);

typedef struct eval_opts {
    int imgsz, batch; /* batch: images per rectangular batch (dataset splits) */
    float conf, iou;
    int max_det;
    int nms;    /* -1: the version's; YOLO26's head choice (eval_model_one2one) */
    bool plots; /* confusion matrix and the predictions the mosaics show */
    int loader_threads;
} eval_opts;

/* One kept detection in original-image pixels. */
typedef struct eval_det {
    int32_t cls;
    float conf;
    float xyxy[4];
} eval_det;

typedef struct eval_result {
    int n;           /* images */
    eval_det **dets; /* [n] per image, score-sorted (conf > opts.conf) */
    int *ndets;      /* [n] */
    bool labelled;   /* metrics below are set */
    val_metrics m;
    int64_t *counts; /* [2 nc]: instances per class, then images holding the class */
    int64_t instances;
    val_plot_data plots; /* when opts.plots */
    val_timing timing;
    double wall_s;
    int last_h, last_w; /* the last canvas (the speed line's shape) */
} eval_result;

/* The canvas an image file of h0 x w0 is predicted in: its load size (long side to imgsz),
 * each side rounded up to a multiple of 32 (Ultralytics' LetterBox(auto=True)). */
void eval_predict_canvas(int h0, int w0, int imgsz, int *h, int *w);

/* 0, or -1 with err (a damaged image names its file; nothing is half-filled: free either way). */
int eval_run(eval_model *em, eval_source *src, const eval_opts *o, eval_result *r, char *err,
             size_t errlen);
void eval_result_free(eval_result *r);

/* "Speed: 0.3ms preprocess, 12.1ms inference, 0.0ms loss, 0.4ms postprocess per image" (loss
 * only with_loss, as val prints it; predict prints no loss) and the images/s line. */
void eval_print_speed(const eval_result *r, bool with_loss, int batch);
