/* Validation on a worker: its share of the val split in Ultralytics' rectangular batches (each
 * image letterboxed into its batch's canvas, no augmentation), through the EMA model in eval
 * mode; post-processing (NMS on the one-to-many head, or yolo26's one-to-one head with top-k),
 * matching against the ground truth at the 10 IoU thresholds, and the val loss. The coordinator
 * gathers the match records of all workers and computes mAP (coordinator/metrics.h), so the result
 * does not depend on how the images were split. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/protocol.h"
#include "common/val_plots.h"
#include "common/val_record.h"
#include "dataio/loader.h"
#include "kernels/detloss.h"
#include "kernels/nms.h"
#include "worker/model.h"

/* Where the time of a validation went, summed over images (seconds): Ultralytics' speed line.
 * preprocess: the loader threads' read, decode and letterbox; inference: forward and decode
 * (until the boxes are in host memory); loss: the val loss; postprocess: NMS / top-k, matching
 * and plot data. */
typedef struct val_timing {
    double preprocess, inference, loss, postprocess;
    int images;
} val_timing;

/* Per image, after post-processing: its index (as submitted), its kept detections (canvas
 * pixels, score-sorted) and its letterbox (letterbox_undo_box maps a box back). */
typedef void (*val_image_fn)(void *ctx, int index, const detection *det, int nd,
                             const letterbox_info *lb);

typedef struct validator {
    model *m;   /* the EMA model */
    loader *ld; /* augment = 0, max_side >= the largest batch side */
    int chunk;  /* images per forward */
    int nc, imgsz;
    double *loss_res; /* backend memory, BACKEND_DETLOSS_RESULTS doubles: the val loss; NULL: none
                         (loss_sum stays 0) */
    const detloss_hyp *h_o2m, *h_o2o; /* the training loss settings (val loss) */
    bool one2one;                     /* end2end models: one-to-one head + top-k; else NMS */
    val_match_rule match;             /* the release's prediction matching */
    float conf, iou;
    int max_det;
    /* after each rectangular batch (NULL: nothing): the worker's heartbeat to the coordinator */
    void (*batch_done)(void *ctx);
    void *batch_ctx;
    val_image_fn on_image; /* optional: every image's detections (predict, save_json, drift) */
    void *on_image_ctx;
    val_timing *timing; /* optional: accumulates where the time went */
} validator;

/* One rectangular batch: `count` consecutive indices, letterboxed into h x w. */
typedef struct val_shape {
    int32_t count, h, w;
} val_shape;

/* Runs over idx[0..n) cut into the nb batches (their counts sum to n): fills the summary, *recs
 * (malloc'd, s->records entries) and counts [2*nc] (per-class instances, then images containing
 * the class), and plots (when not NULL: confusion matrix and predictions to draw,
 * worker/val_plot_collect.h). 0 or -1 with err. */
int validate_run(validator *v, int epoch, const int32_t *idx, int n, const val_shape *batches,
                 int nb, val_summary *s, val_record **recs, int64_t *counts, val_plot_data *plots,
                 char *err, size_t errlen);
