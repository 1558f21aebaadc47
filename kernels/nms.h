/* Validation post-processing and matching, per image, as Ultralytics 8.4 validates:
 *
 * - yolov8/yolo11 (nms_detect): candidates are anchors whose best class score > conf; with
 *   multi_label (validation, nc > 1) every (anchor, class) pair with score > conf is a separate
 *   candidate, in (anchor, class) order; else one per anchor (max score, first argmax). More than
 *   max_nms candidates: keep the max_nms best by score. Then torchvision-style greedy NMS,
 * class-aware by adding cls * 7680 to the coordinates (0 when agnostic): visit by score descending
 * (stable), suppress later boxes with IoU > iou_thres. Keep the first max_det.
 * - yolo26 end-to-end (topk_detect): K = min(max_det, A); top-K anchors by their max class score,
 *   then top-K of those K x nc scores (an anchor may give several classes); then, as the validator
 *   does, keep score > conf (strict), at most max_det. No IoU suppression.
 * Ties in every sort go to the lower index (PyTorch leaves topk ties unspecified).
 *
 * - val_match (BaseValidator.match_predictions): IoU (float32, eps 1e-7 in the union) between every
 *   ground truth and prediction, zero where classes differ. Then, by release:
 *   8.4.33 (VAL_MATCH_IOU_SORTED): per threshold t independently: pairs with IoU >= t, sorted by
 *   IoU descending; each prediction keeps its best pair; then each ground truth keeps, of the pairs
 *   left, the one with the lowest prediction index (no re-sort: the Ultralytics quirk); those
 *   predictions are TP at t. Equal IoUs: the pair earlier in (gt, pred) row-major order wins
 *   (numpy's order there depends on its sort algorithm).
 *   8.4.190 (VAL_MATCH_GREEDY, COCO style): predictions in their order (descending confidence),
 *   each at each threshold claims the unclaimed ground truth of highest IoU (equal IoUs: the lower
 *   gt index, numpy's argmax) when that IoU >= t.
 *   Predictions must come score-sorted (as both post-processes return them).
 *
 * Boxes are xyxy pixels of the letterboxed network input (ground truth scaled to the same canvas).
 */
#pragma once
#include "common/val_record.h"

#include <stddef.h>

typedef struct {
    float x1, y1, x2, y2, conf;
    int cls;
} detection;

typedef struct {
    float conf_thres; /* 0.001 for validation */
    double iou_thres; /* 0.7 (torchvision compares the float IoU with it as a double) */
    int max_det;      /* 300 */
    int max_nms;      /* 30000 */
    int multi_label;  /* 1 for validation (ignored when nc == 1) */
    int agnostic;     /* 0 (single_cls / agnostic_nms) */
    float max_wh;     /* 7680: class offset */
} nms_cfg;

nms_cfg nms_val_defaults(void);

/* pred: A rows of (4 + nc) floats: cx, cy, w, h (pixels), then nc class scores (after sigmoid),
 * i.e. the transposed [4+nc, A] head output of one image. Writes at most cfg->max_det detections,
 * score-sorted, into out; returns the count. */
int nms_detect(const float *pred, int A, int nc, const nms_cfg *cfg, detection *out);

/* pred: A rows of (4 + nc) floats: x1, y1, x2, y2 (pixels), then nc sigmoid scores (the decoded
 * one2one branch). Writes at most min(max_det, A) detections with score > conf_thres (strict),
 * score-sorted; returns the count. cfg->agnostic: top-K anchors by max score, class = argmax. */
int topk_detect(const float *pred, int A, int nc, const nms_cfg *cfg, detection *out);

/* IoU of two xyxy boxes exactly as Ultralytics' box_iou computes it in float32 (eps 1e-7). */
float box_iou_xyxy(const float *a, const float *b);

typedef enum { VAL_MATCH_IOU_SORTED = 0, VAL_MATCH_GREEDY = 1 } val_match_rule;

/* Match n detections (score-sorted) of one image against its ngt ground truths (gt_box [ngt][4]
 * xyxy, gt_cls [ngt]); fills rec[n] (conf, cls, tp bits). No ground truth: all false positives.
 * val_match is the 8.4.33 rule. */
void val_match(const detection *det, int n, const float *gt_box, const int *gt_cls, int ngt,
               val_record *rec);
void val_match_with(val_match_rule rule, const detection *det, int n, const float *gt_box,
                    const int *gt_cls, int ngt, val_record *rec);
