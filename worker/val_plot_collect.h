/* A worker's part of the validation plots: per image, the confusion matrix update and the
 * predictions to draw (common/val_plots.h). */
#pragma once
#include "common/val_plots.h"
#include "dataio/augment.h"
#include "kernels/nms.h"

#define VAL_CONFUSION_IOU 0.45f /* ConfusionMatrix.process_batch's matching threshold */

/* Ultralytics 8.4.190 ConfusionMatrix.process_batch for one image: detections with conf >
 * conf_thres (any class) claim, by descending confidence (ties: lower index first), the ground
 * truth of highest IoU (> 0.45, first on ties) not yet claimed; a claimed pair counts at
 * [predicted class][true class], an unclaimed ground truth at [background][true], an unclaimed
 * detection at [predicted][background]. With no detections at all (before the threshold) every
 * ground truth counts as missed. Boxes: xyxy, one pixel space for both. */
void val_confusion_update(int64_t *matrix, int nc, const detection *det, int nd,
                          const float *gt_box, const int *gt_cls, int ngt, float conf_thres);

/* One validation image (val index `index`, letterboxed as lb): confusion counts, and when index
 * < VAL_PLOT_IMAGES its predictions above VAL_PLOT_CONF mapped back to original pixels (with
 * d->all: every image's predictions). */
void val_plot_collect_image(val_plot_data *d, int index, const detection *det, int nd,
                            const float *gt_box, const int *gt_cls, int ngt,
                            const letterbox_info *lb, float conf_thres);
