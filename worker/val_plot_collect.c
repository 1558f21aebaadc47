#include "worker/val_plot_collect.h"

#include "common/log.h"

#include <stdlib.h>

void val_confusion_update(int64_t *matrix, int nc, const detection *det, int nd,
                          const float *gt_box, const int *gt_cls, int ngt, float conf_thres) {
    const int bg = nc, n = nc + 1;
    /* classes outside [0, nc) cannot be counted: they are skipped, as metrics.h skips them */
#define AT(p, t) matrix[(size_t)(p)*n + (t)]
#define OK(c) ((c) >= 0 && (c) < nc)
    if (nd == 0) {
        for (int g = 0; g < ngt; g++)
            if (OK(gt_cls[g])) AT(bg, gt_cls[g])++;
        return;
    }
    int *keep = xmalloc((size_t)nd * sizeof *keep), nk = 0;
    for (int p = 0; p < nd; p++)
        if (det[p].conf > conf_thres) keep[nk++] = p;
    int *gt_match = xmalloc((size_t)(ngt ? ngt : 1) * sizeof *gt_match);
    char *matched = xcalloc((size_t)(nk ? nk : 1), 1);
    float *iou = xmalloc((size_t)(ngt ? ngt : 1) * (size_t)(nk ? nk : 1) * sizeof *iou);
    for (int g = 0; g < ngt; g++) {
        gt_match[g] = -1;
        for (int k = 0; k < nk; k++) {
            const detection *d = &det[keep[k]];
            float pb[4] = {d->x1, d->y1, d->x2, d->y2};
            iou[(size_t)g * nk + k] = box_iou_xyxy(gt_box + 4 * g, pb);
        }
    }
    /* candidates by descending confidence, stable: detections arrive score-sorted, so their order
     * already is that; a stable pass keeps it when scores are not sorted */
    int *order = xmalloc((size_t)(nk ? nk : 1) * sizeof *order);
    for (int k = 0; k < nk; k++) order[k] = k;
    for (int i = 1; i < nk; i++) { /* insertion sort: stable, and usually already in order */
        int v = order[i], j = i;
        while (j > 0 && det[keep[order[j - 1]]].conf < det[keep[v]].conf) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = v;
    }
    for (int i = 0; i < nk; i++) {
        int k = order[i], best = -1;
        float bv = -1;
        for (int g = 0; g < ngt; g++)
            if (iou[(size_t)g * nk + k] > bv) bv = iou[(size_t)g * nk + k], best = g;
        if (best < 0 || !(bv > VAL_CONFUSION_IOU)) continue;
        gt_match[best] = k;
        for (int kk = 0; kk < nk; kk++) iou[(size_t)best * nk + kk] = 0; /* that gt is taken */
    }
    for (int g = 0; g < ngt; g++) {
        if (!OK(gt_cls[g])) continue;
        if (gt_match[g] >= 0) {
            int dc = det[keep[gt_match[g]]].cls;
            if (OK(dc)) AT(dc, gt_cls[g])++;
        } else {
            AT(bg, gt_cls[g])++;
        }
    }
    for (int g = 0; g < ngt; g++) /* a match of an out-of-range gt still claims its detection */
        if (gt_match[g] >= 0) matched[gt_match[g]] = 1;
    for (int k = 0; k < nk; k++)
        if (!matched[k] && OK(det[keep[k]].cls)) AT(det[keep[k]].cls, bg)++;
#undef AT
#undef OK
    free(order);
    free(iou);
    free(matched);
    free(gt_match);
    free(keep);
}

void val_plot_collect_image(val_plot_data *d, int index, const detection *det, int nd,
                            const float *gt_box, const int *gt_cls, int ngt,
                            const letterbox_info *lb, float conf_thres) {
    val_confusion_update(d->confusion, d->nc, det, nd, gt_box, gt_cls, ngt, conf_thres);
    if (!d->all && (index < 0 || index >= VAL_PLOT_IMAGES)) return;
    for (int p = 0; p < nd; p++) {
        if (!d->all && !(det[p].conf > VAL_PLOT_CONF)) continue;
        float b[4] = {det[p].x1, det[p].y1, det[p].x2, det[p].y2};
        letterbox_undo_box(lb, b, b);
        val_plot_det o = {.image = index,
                          .cls = det[p].cls,
                          .conf = det[p].conf,
                          .x1 = b[0],
                          .y1 = b[1],
                          .x2 = b[2],
                          .y2 = b[3]};
        val_plot_data_add_det(d, &o);
    }
}
