/* Validation match records: what a worker produces per prediction and sends to the coordinator,
 * which concatenates the records of all workers and computes mAP (coordinator/metrics.h).
 *
 * One record per kept detection of a validation image: its confidence, its predicted class and
 * whether it is a true positive at each of the 10 IoU thresholds 0.50:0.05:0.95 (bit t of `tp`
 * for threshold VAL_IOU_THRESHOLDS[t]). Per-class ground-truth counts travel separately (one int64
 * per class, summed over images and workers). Records carry no image index: the metrics depend on
 * the multiset of records only, never on how images were split across workers.
 */
#pragma once
#include <stdint.h>

#define VAL_NIOU 10

/* The thresholds as float32 values, as torch.linspace(0.5, 0.95, 10) produces them on its scalar
 * path (equal to the float nearest to 0.5 + 0.05 t). A match needs IoU >= threshold (in float). */
static const float VAL_IOU_THRESHOLDS[VAL_NIOU] = {0.5f,  0.55f, 0.6f,  0.65f, 0.7f,
                                                   0.75f, 0.8f,  0.85f, 0.9f,  0.95f};

typedef struct {
    float conf;  /* detection score */
    int32_t cls; /* predicted class */
    uint32_t tp; /* bit t: true positive at VAL_IOU_THRESHOLDS[t] */
} val_record;

/* Plots of the end-of-training validation (coordinator charts): predictions on the first
 * VAL_PLOT_IMAGES val images (three mosaics of 16, as Ultralytics' val_batch0..2), kept above
 * VAL_PLOT_CONF (plot_images' default threshold), boxes in original-image pixels (letterbox
 * undone, clipped to the image). */
#define VAL_PLOT_IMAGES 48
#define VAL_PLOT_CONF 0.25f

typedef struct {
    int32_t image; /* val split index */
    int32_t cls;
    float conf;
    float x1, y1, x2, y2;
} val_plot_det;
