/* Validation on a worker: its share of the val split, letterboxed (no augmentation), through the
 * EMA model in eval mode; post-processing (NMS for v8/11, top-k for yolo26), matching against
 * the ground truth at the 10 IoU thresholds, and the val loss. The coordinator gathers the match
 * records of all workers and computes mAP (coordinator/metrics.h), so the result does not depend
 * on how the images were split. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/protocol.h"
#include "common/val_plots.h"
#include "common/val_record.h"
#include "dataio/loader.h"
#include "kernels/detloss.h"
#include "worker/model.h"

typedef struct validator {
    model *m;   /* the EMA model, planned for `chunk` images */
    loader *ld; /* augment = 0 */
    int chunk, nc, imgsz;
    detloss_ctx *loss;
    float conf, iou;
    int max_det;
} validator;

/* Runs over idx[0..n): fills the summary, *recs (malloc'd, s->records entries) and counts
 * [2*nc] (per-class instances, then images containing the class), and plots (when not NULL:
 * confusion matrix and predictions to draw, worker/val_plot_collect.h). 0 or -1 with err. */
int validate_run(validator *v, int epoch, const int32_t *idx, int n, val_summary *s,
                 val_record **recs, int64_t *counts, val_plot_data *plots, char *err,
                 size_t errlen);
