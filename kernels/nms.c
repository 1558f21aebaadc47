/* Validation NMS, end-to-end top-K and prediction matching (see nms.h). */
#include "kernels/nms.h"

#include "common/log.h"
#include "kernels/cuda/nms_hd.h" /* the box and overlap arithmetic, shared with the GPU's NMS */

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

nms_cfg nms_val_defaults(void) {
    return (nms_cfg){.conf_thres = 0.001f,
                     .iou_thres = 0.7,
                     .max_det = 300,
                     .max_nms = 30000,
                     .multi_label = 1,
                     .agnostic = 0,
                     .max_wh = 7680.0f};
}

/* (score, index) pairs sorted by score descending, index ascending: a stable descending sort. */
typedef struct {
    float s;
    int i;
} scored;

static int cmp_scored_desc(const void *pa, const void *pb) {
    const scored *a = pa, *b = pb;
    if (a->s > b->s) return -1;
    if (a->s < b->s) return 1;
    return (a->i > b->i) - (a->i < b->i);
}

float box_iou_xyxy(const float *a, const float *b) {
    float wx = fminf(a[2], b[2]) - fmaxf(a[0], b[0]);
    float wy = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
    wx = wx > 0 ? wx : 0;
    wy = wy > 0 ? wy : 0;
    float inter = wx * wy;
    float area_a = (a[2] - a[0]) * (a[3] - a[1]);
    float area_b = (b[2] - b[0]) * (b[3] - b[1]);
    return inter / (area_a + area_b - inter + 1e-7f);
}

typedef struct {
    float b[4]; /* xyxy */
    float conf;
    int cls;
} cand;

int nms_detect(const float *pred, int A, int nc, const nms_cfg *cfg, detection *out) {
    const int row = 4 + nc;
    const int multi = cfg->multi_label && nc > 1;
    const float ct = cfg->conf_thres;
    /* count candidates first so one allocation suffices */
    size_t n = 0;
    for (int a = 0; a < A; a++)
        n += (size_t)nms_row_count(pred + (size_t)a * row + 4, nc, ct, multi);
    if (n == 0) return 0;
    cand *cd = xmalloc(n * sizeof *cd);
    size_t k = 0;
    for (int a = 0; a < A; a++) {
        const float *r = pred + (size_t)a * row, *s = r + 4;
        int am = nms_argmax(s, nc);
        if (!(s[am] > ct)) continue;
        float b[4];
        nms_xyxy(r, b);
        if (multi) {
            for (int c = 0; c < nc; c++)
                if (s[c] > ct) cd[k++] = (cand){{b[0], b[1], b[2], b[3]}, s[c], c};
        } else {
            cd[k++] = (cand){{b[0], b[1], b[2], b[3]}, s[am], am};
        }
    }
    /* score order (torchvision sorts stably inside nms; the max_nms cut takes the best first) */
    scored *ord = xmalloc(n * sizeof *ord);
    for (size_t i = 0; i < n; i++) ord[i] = (scored){cd[i].conf, (int)i};
    qsort(ord, n, sizeof *ord, cmp_scored_desc);
    if (n > (size_t)cfg->max_nms) n = (size_t)cfg->max_nms;
    /* offset boxes as Ultralytics does (cls * max_wh added in float32) and their areas */
    float *ob = xmalloc(n * 5 * sizeof *ob);
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        const cand *c = &cd[ord[i].i];
        nms_offset_box(c->b, c->cls, cfg->max_wh, cfg->agnostic, ob + i * 5);
        for (int j = 0; j < 4; j++) {
            lo = fminf(lo, c->b[j]);
            hi = fmaxf(hi, c->b[j]);
        }
    }
    /* Boxes of different classes can only overlap when the raw coordinates span max_wh or more.
     * Otherwise visit only same-class successors: same result, far fewer IoUs. */
    int *nxt = xmalloc(n * sizeof *nxt);
    if (!cfg->agnostic && hi - lo < cfg->max_wh) {
        int ncls = 0;
        for (size_t i = 0; i < n; i++)
            if (cd[ord[i].i].cls + 1 > ncls) ncls = cd[ord[i].i].cls + 1;
        int *last = xmalloc((size_t)ncls * sizeof *last);
        for (int c = 0; c < ncls; c++) last[c] = -1;
        for (size_t i = n; i-- > 0;) {
            int c = cd[ord[i].i].cls;
            nxt[i] = last[c];
            last[c] = (int)i;
        }
        free(last);
    } else {
        for (size_t i = 0; i < n; i++) nxt[i] = i + 1 < n ? (int)(i + 1) : -1;
    }
    unsigned char *sup = xcalloc(n, 1);
    int kept = 0;
    for (size_t i = 0; i < n && kept < cfg->max_det; i++) {
        if (sup[i]) continue;
        const cand *c = &cd[ord[i].i];
        out[kept++] = (detection){c->b[0], c->b[1], c->b[2], c->b[3], c->conf, c->cls};
        const float *bi = ob + i * 5;
        for (int j = nxt[i]; j >= 0; j = nxt[j]) {
            if (sup[j]) continue;
            if (nms_suppresses(bi, ob + (size_t)j * 5, cfg->iou_thres)) sup[j] = 1;
        }
    }
    free(sup);
    free(nxt);
    free(ob);
    free(ord);
    free(cd);
    return kept;
}

int topk_detect(const float *pred, int A, int nc, const nms_cfg *cfg, detection *out) {
    const int row = 4 + nc;
    int K = cfg->max_det < A ? cfg->max_det : A;
    if (K <= 0) return 0;
    scored *am = xmalloc((size_t)A * sizeof *am);
    int *arg = xmalloc((size_t)A * sizeof *arg);
    for (int a = 0; a < A; a++) {
        const float *s = pred + (size_t)a * row + 4;
        int best = nms_argmax(s, nc);
        am[a] = (scored){s[best], a};
        arg[a] = best;
    }
    qsort(am, (size_t)A, sizeof *am, cmp_scored_desc);
    int n = 0;
    if (cfg->agnostic) {
        for (int k = 0; k < K; k++) {
            int a = am[k].i;
            const float *r = pred + (size_t)a * row;
            if (am[k].s > cfg->conf_thres)
                out[n++] = (detection){r[0], r[1], r[2], r[3], am[k].s, arg[a]};
        }
    } else {
        size_t kn = (size_t)K * nc;
        scored *fl = xmalloc(kn * sizeof *fl);
        for (int k = 0; k < K; k++) {
            const float *s = pred + (size_t)am[k].i * row + 4;
            for (int c = 0; c < nc; c++) fl[(size_t)k * nc + c] = (scored){s[c], k * nc + c};
        }
        qsort(fl, kn, sizeof *fl, cmp_scored_desc);
        for (int k = 0; k < K; k++) {
            int a = am[fl[k].i / nc].i, c = fl[k].i % nc;
            const float *r = pred + (size_t)a * row;
            if (fl[k].s > cfg->conf_thres)
                out[n++] = (detection){r[0], r[1], r[2], r[3], fl[k].s, c};
        }
        free(fl);
    }
    free(arg);
    free(am);
    return n;
}

/* [gt][pred] IoU, 0 across classes */
static float *class_iou(const detection *det, int n, const float *gt_box, const int *gt_cls,
                        int ngt) {
    float *iou = xmalloc((size_t)ngt * n * sizeof *iou);
    for (int g = 0; g < ngt; g++) {
        for (int p = 0; p < n; p++) {
            float pb[4] = {det[p].x1, det[p].y1, det[p].x2, det[p].y2};
            iou[(size_t)g * n + p] = gt_cls[g] == det[p].cls ? box_iou_xyxy(gt_box + 4 * g, pb) : 0;
        }
    }
    return iou;
}

/* 8.4.190: predictions in order claim, per threshold, their best unclaimed ground truth. */
static void match_greedy(const float *iou, int n, int ngt, val_record *rec) {
    unsigned char *claimed = xcalloc((size_t)ngt * VAL_NIOU, 1); /* [gt][t] */
    for (int p = 0; p < n; p++) {
        bool any = false; /* Ultralytics skips predictions without an IoU >= the lowest threshold */
        for (int g = 0; g < ngt && !any; g++) any = iou[(size_t)g * n + p] >= VAL_IOU_THRESHOLDS[0];
        if (!any) continue;
        for (int t = 0; t < VAL_NIOU; t++) {
            int k = 0;
            float best = -1;
            for (int g = 0; g < ngt; g++) {
                float a = claimed[(size_t)g * VAL_NIOU + t] ? 0.0f : iou[(size_t)g * n + p];
                if (a > best) best = a, k = g; /* first maximum, as argmax */
            }
            if (best >= VAL_IOU_THRESHOLDS[t]) {
                rec[p].tp |= 1u << t;
                claimed[(size_t)k * VAL_NIOU + t] = 1;
            }
        }
    }
    free(claimed);
}

void val_match(const detection *det, int n, const float *gt_box, const int *gt_cls, int ngt,
               val_record *rec) {
    val_match_with(VAL_MATCH_IOU_SORTED, det, n, gt_box, gt_cls, ngt, rec);
}

void val_match_with(val_match_rule rule, const detection *det, int n, const float *gt_box,
                    const int *gt_cls, int ngt, val_record *rec) {
    for (int p = 0; p < n; p++) rec[p] = (val_record){det[p].conf, det[p].cls, 0};
    if (n == 0 || ngt == 0) return;
    float *iou = class_iou(det, n, gt_box, gt_cls, ngt);
    if (rule == VAL_MATCH_GREEDY) {
        match_greedy(iou, n, ngt, rec);
        free(iou);
        return;
    }
    int *best = xmalloc((size_t)n * sizeof *best);     /* each prediction's best ground truth */
    int *taken = xmalloc((size_t)ngt * sizeof *taken); /* lowest prediction index per gt */
    for (int t = 0; t < VAL_NIOU; t++) {
        const float thr = VAL_IOU_THRESHOLDS[t];
        /* Equivalent to Ultralytics' sort + unique(pred) + unique(gt): per prediction, its
         * highest-IoU pair (equal IoUs: the higher gt index, as numpy's reversed stable argsort
         * orders them); per gt, the lowest prediction index among the pairs left. */
        for (int p = 0; p < n; p++) {
            best[p] = -1;
            float bv = 0;
            for (int g = 0; g < ngt; g++) {
                float v = iou[(size_t)g * n + p];
                if (v >= thr && (best[p] < 0 || v >= bv)) {
                    best[p] = g;
                    bv = v;
                }
            }
        }
        for (int g = 0; g < ngt; g++) taken[g] = 0;
        for (int p = 0; p < n; p++) {
            if (best[p] >= 0 && !taken[best[p]]) {
                taken[best[p]] = 1;
                rec[p].tp |= 1u << t;
            }
        }
    }
    free(taken);
    free(best);
    free(iou);
}
