/* Detection metrics from gathered match records (Ultralytics 8.4 ap_per_class / compute_ap).
 *
 * Input: the concatenation, in any order, of every worker's val_record list (common/val_record.h)
 * and the per-class ground-truth counts summed over all images. Records are sorted by confidence
 * descending with a total tie-break on their content (then class ascending, then tp bits
 * ascending: a false positive before a true positive at equal confidence, never flattering AP), so
 * the result depends only on the multiset of records, not on how images were split or gathered.
 *
 * Evaluated classes: those with ground truth (count > 0). Per class and IoU threshold:
 * cumulative TP/FP, recall = TP/(n_gt + 1e-16), precision = TP/(TP + FP); AP = trapezoid integral
 * of the precision envelope (running max from the right) interpolated linearly (numpy.interp) at
 * 101 recall points 0, 0.01, ..., 1. Sentinels by release (val_ap_rule): 8.4.33 (0, 1) before and
 * (1, 0) after, so the envelope falls linearly from the last recall to (1, 0); 8.4.190
 * (0, 1) before and (r_last, 0), (1, 0) after, so it drops to 0 right after the last recall.
 * Classes with ground truth but no prediction get AP 0. mAP50 / mAP75 / mAP50-95: means over
 * evaluated classes (and thresholds). P and R (IoU 0.5): per-class precision/recall interpolated on
 * 1000 confidences in [0,1] (P = 1, R = 0 above the class's highest score); F1 = 2PR/(P+R+1e-16);
 * its mean over classes is smoothed by a 101-tap box filter (edges padded with the end values) and
 * the first arg-max picks one global confidence; reported P and R are the class means at that
 * confidence. Fitness (model selection, early stopping) in 8.4 is mAP50-95 alone.
 */
#pragma once
#include "common/val_record.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int nc;     /* classes in the count array */
    int n_eval; /* classes with ground truth */
    double precision, recall, map50, map75, map50_95, fitness;
    double conf; /* the max-F1 confidence P and R were taken at */
    /* per class, index = class id (0 for classes without ground truth; see gt) */
    double *ap; /* [nc][VAL_NIOU] */
    double *p, *r, *f1;
    int64_t *gt; /* copy of the counts */
    /* Curves for plots (ap_per_class's p_curve, r_curve, f1_curve, prec_values): [nc][1000], zero
     * rows for classes without ground truth. p, r, f1 against confidence linspace(0, 1, 1000); pr:
     * the IoU-0.5 precision envelope at recall linspace(0, 1, 1000). */
    double *p_curve, *r_curve, *f1_curve, *pr_curve;
} val_metrics;

typedef enum { VAL_AP_TO_ONE = 0, VAL_AP_DROP_AFTER_LAST_RECALL = 1 } val_ap_rule;
#define VAL_CURVE_POINTS 1000

/* recs may be reordered (sorted in place). Records whose class is outside [0, nc) are ignored,
 * like predictions of classes without ground truth. Returns 0, or -1 with a message in err when a
 * count is negative. Free with val_metrics_free. val_metrics_compute is the 8.4.33 rule. */
int val_metrics_compute(val_record *recs, size_t n, const int64_t *gt_counts, int nc,
                        val_metrics *m, char *err, size_t errlen);
int val_metrics_compute_with(val_ap_rule rule, val_record *recs, size_t n, const int64_t *gt_counts,
                             int nc, val_metrics *m, char *err, size_t errlen);
void val_metrics_free(val_metrics *m);

/* compute_ap for one curve of n points (recall ascending, precision): the 101-point interpolated
 * envelope integrated by the trapezoid rule. Exposed for tests. */
double val_compute_ap(const double *recall, const double *precision, size_t n);
double val_compute_ap_with(val_ap_rule rule, const double *recall, const double *precision,
                           size_t n);
/* Ultralytics' smooth(y, f): a box filter of round(2 n f) // 2 + 1 taps over y padded with its end
 * values, n outputs. */
void val_smooth_box(const double *y, int n, double f, double *out);
/* numpy.interp(x, xp, fp, left, right) for one x; xp ascending, repeats allowed (the last of equal
 * xp values wins on an exact hit). */
double val_np_interp(double x, const double *xp, const double *fp, size_t n, double left,
                     double right);
