/* The detection loss as the GPU computes it (kernels/cuda/detloss.cu): the data layout of one
 * branch on the device and the body of each kernel for one index, as __host__ __device__
 * functions over kernels/detloss_math.h. The CUDA kernels call these bodies per thread; the CPU
 * test (tests/test_detloss_hd.c) calls them in plain loops and checks the result against the
 * CPU reference (kernels/detloss.c), so the device algorithm is checked without a GPU. What only a
 * GPU checks: the launch shapes, the block-wide top-k merge and the block reductions.
 *
 * The algorithm (per branch; targets preprocessed on the host by detloss_preprocess_targets):
 *   1. decode      per (b, a)      predicted boxes in pixels
 *   2. candidates  per (b, j)      for every anchor: candidate test, overlap, metric; top-k by
 *                                  metric (dl_topk_before order); pos = candidate at the top-k
 *   3. conflicts   per (b, a)      an anchor claimed by several GTs goes to the max-overlap one
 *   4. topk2       per (b, j)      (one2one only) keep the top-topk2 positives by metric
 *   5. assign      per (b, a)      the anchor's GT (first positive j) or -1; T_j, U_j = max
 *                                  metric / overlap over a GT's positives (float max: exact in any
 *                                  order)
 *   6. scores      per (b, a)      target score t U_j / (T_j + eps); sum over anchors -> tss
 *   7. cls         per (b, a, ch)  BCE of every class logit and its gradient; box channels of the
 *                                  gradient zeroed
 *   8. box         per (b, a)      foreground anchors: CIoU + DFL / L1 and their gradient
 *   9. items       once            the loss items from the sums
 * Only one class of a foreground anchor has a nonzero target score (its GT's), so the target
 * scores are kept as one float per anchor instead of [B][A][nc]. */
#pragma once
#include "kernels/detloss_math.h"

#include <stdint.h>

/* Largest topk / topk2 the device top-k handles (Ultralytics uses 10, 7 and 1). */
#define DL_DEV_MAX_TOPK 16

typedef struct dl_dev {
    detloss_hyp h;    /* cls_weight, when set, points to device memory */
    float gw[3];      /* branch weights of (box, cls, dfl) (E2E: o2m or o2o, else 1) */
    float grad_scale; /* the written gradient is multiplied by this */
    int B, A, M, no;  /* no = 4 reg_max + nc */
    float img_h, img_w;
    const float *preds;   /* [B][A][no] head output */
    const float *anc;     /* [A][2] anchor centres, grid units */
    const float *str;     /* [A] strides */
    const float *gt_lab;  /* [B][M] class */
    const float *gt_box;  /* [B][M][4] xyxy pixels */
    const float *gt_mask; /* [B][M] */
    float *dpreds;        /* [B][A][no] gradient, or NULL */
    /* scratch */
    float *pd_box;  /* [B][A][4] predicted boxes, pixels */
    float *metric;  /* [B][M][A] */
    float *overlap; /* [B][M][A] */
    uint8_t *in_gt; /* [B][M][A] candidate of a real GT */
    uint8_t *pos;   /* [B][M][A] positive */
    int *gt_of;     /* [B][A] the anchor's GT, -1 for background */
    float *tscore;  /* [B][A] target score of the anchor's class (0 for background) */
    uint32_t *tu;   /* [B][M][2] bits of T_j, U_j (non-negative floats: integer max = float max) */
    const float *tss; /* [1] max(sum of target scores, 1) (written by step 6's reduction) */
} dl_dev;

YOLO_HD size_t dl_bma(const dl_dev *d, int b, int j, int a) {
    return ((size_t)b * d->M + j) * d->A + a;
}

/* 1. decode: anchor (b, a)'s predicted box in pixels (as detloss_branch: grid units, then times
 * the stride). */
YOLO_HD void dl_k_decode(const dl_dev *d, size_t ba) {
    int a = (int)(ba % d->A);
    float dist[4];
    dl_anchor_dist(d->h.reg_max, d->preds + ba * d->no, dist);
    const float *ap = d->anc + 2 * a;
    float st = d->str[a];
    float *o = d->pd_box + ba * 4;
    o[0] = (ap[0] - dist[0]) * st;
    o[1] = (ap[1] - dist[1]) * st;
    o[2] = (ap[0] + dist[2]) * st;
    o[3] = (ap[1] + dist[3]) * st;
}

/* GT j of image b is real (not padding). */
YOLO_HD int dl_real(const dl_dev *d, int b, int j) {
    size_t bj = (size_t)b * d->M + j;
    return dl_gt_real(d->gt_mask[bj], d->gt_lab[bj], d->h.nc);
}

/* 2a. candidate test, overlap and metric of GT (b, j) and anchor a; pos cleared. Returns the
 * metric (what the top-k ranks). box: the GT's widened box (dl_stal_box). */
YOLO_HD float dl_k_metric(const dl_dev *d, int b, int j, int a, int real, const float box[4]) {
    size_t i = dl_bma(d, b, j, a);
    const float *gb = d->gt_box + ((size_t)b * d->M + j) * 4;
    float st = d->str[a];
    int in = dl_in_box(box, d->anc[2 * a] * st, d->anc[2 * a + 1] * st, d->h.eps);
    int cand = in && real;
    float s = 0;
    if (cand) {
        int c = (int)d->gt_lab[(size_t)b * d->M + j];
        s = dl_sigmoid(d->preds[((size_t)b * d->A + a) * d->no + 4 * d->h.reg_max + c]);
    }
    float u, m = dl_align_metric(&d->h, cand, s, gb, d->pd_box + ((size_t)b * d->A + a) * 4, &u);
    d->in_gt[i] = (uint8_t)in;
    d->overlap[i] = u;
    d->metric[i] = m;
    d->pos[i] = 0;
    return m;
}

/* 2b. after the top-k of GT (b, j): its k best anchors idx[0..k) become positive when they are
 * candidates (only for a real GT). */
YOLO_HD void dl_k_pos_from_topk(const dl_dev *d, int b, int j, const int *idx, int k) {
    for (int i = 0; i < k; i++) {
        size_t q = dl_bma(d, b, j, idx[i]);
        d->pos[q] = d->in_gt[q];
    }
}

/* 3. conflicts of anchor (b, a): claimed by several GTs, it goes to the GT of maximum overlap
 * (the first on ties), even one that did not claim it (Ultralytics' argmax over all GTs). */
YOLO_HD void dl_k_conflicts(const dl_dev *d, int b, int a) {
    int n = 0;
    for (int j = 0; j < d->M; j++) n += d->pos[dl_bma(d, b, j, a)];
    if (n <= 1) return;
    int best = 0;
    for (int j = 1; j < d->M; j++)
        if (d->overlap[dl_bma(d, b, j, a)] > d->overlap[dl_bma(d, b, best, a)]) best = j;
    for (int j = 0; j < d->M; j++) d->pos[dl_bma(d, b, j, a)] = (uint8_t)(j == best);
}

/* 4. what the second top-k ranks: the metric of a positive, 0 elsewhere. */
YOLO_HD float dl_k_topk2_value(const dl_dev *d, int b, int j, int a) {
    size_t i = dl_bma(d, b, j, a);
    return d->metric[i] * (float)d->pos[i];
}

/* 4b. anchor a stays positive for GT (b, j) only if it is among the kept idx[0..k). */
YOLO_HD void dl_k_topk2_keep(const dl_dev *d, int b, int j, int a, const int *idx, int k) {
    int keep = 0;
    for (int i = 0; i < k; i++) keep |= idx[i] == a;
    if (!keep) d->pos[dl_bma(d, b, j, a)] = 0;
}

/* 5. the GT of anchor (b, a): the first positive j, or -1. Writes gt_of; returns the GT so the
 * caller can raise T_j and U_j (tu, zeroed before) to this anchor's metric and overlap. */
YOLO_HD int dl_k_assign(const dl_dev *d, size_t ba) {
    int b = (int)(ba / d->A), a = (int)(ba % d->A), gi = -1;
    for (int j = 0; j < d->M && gi < 0; j++)
        if (d->pos[dl_bma(d, b, j, a)]) gi = j;
    d->gt_of[ba] = gi;
    return gi;
}

/* 6. target score of anchor (b, a) (after every assign): t U_j / (T_j + eps), at least 0. */
YOLO_HD float dl_k_score(const dl_dev *d, size_t ba) {
    int gi = d->gt_of[ba];
    float t = 0;
    if (gi >= 0) {
        int b = (int)(ba / d->A), a = (int)(ba % d->A);
        const uint32_t *tu = d->tu + ((size_t)b * d->M + gi) * 2;
        float s = dl_target_score(d->metric[dl_bma(d, b, gi, a)], hd_bits_float(tu[1]),
                                  hd_bits_float(tu[0]), d->h.eps);
        t = s > 0 ? s : 0;
    }
    d->tscore[ba] = t;
    return t;
}

YOLO_HD dl_coefs dl_dev_coefs(const dl_dev *d) {
    return dl_make_coefs(&d->h, d->gw, d->B, *d->tss, d->img_h, d->img_w);
}

/* 7. channel ch of anchor (b, a): a class logit's BCE (returned) and gradient; a box channel's
 * gradient zeroed (step 8 writes the foreground ones). */
YOLO_HD double dl_k_cls(const dl_dev *d, const dl_coefs *k, size_t ba, int ch) {
    int R4 = 4 * d->h.reg_max;
    size_t i = ba * d->no + ch;
    if (ch < R4) {
        if (d->dpreds) d->dpreds[i] = 0;
        return 0;
    }
    int c = ch - R4, gi = d->gt_of[ba];
    float y = 0;
    if (gi >= 0) {
        int b = (int)(ba / d->A);
        if ((int)d->gt_lab[(size_t)b * d->M + gi] == c) y = d->tscore[ba];
    }
    float g, l = dl_cls_elem(k, d->h.bce_torch2, d->preds[i], y,
                             d->h.cls_weight ? d->h.cls_weight + c : 0, d->dpreds ? &g : 0);
    if (d->dpreds) d->dpreds[i] = g * d->grad_scale;
    return l;
}

/* 8. box and DFL / L1 loss of anchor (b, a) when it is foreground (returns 1, else 0), its
 * gradient into the box channels. */
YOLO_HD int dl_k_box(const dl_dev *d, const dl_coefs *k, size_t ba, double *liou, double *ldfl) {
    *liou = *ldfl = 0;
    int gi = d->gt_of[ba];
    if (gi < 0) return 0;
    int b = (int)(ba / d->A), a = (int)(ba % d->A), R4 = 4 * d->h.reg_max;
    float *dbox = d->dpreds ? d->dpreds + ba * d->no : 0;
    dl_fg_anchor_loss(d->h.reg_max, k, d->preds + ba * d->no, d->anc + 2 * a, d->str[a],
                      d->tscore[ba], d->gt_box + ((size_t)b * d->M + gi) * 4, dbox, liou, ldfl);
    if (dbox && d->grad_scale != 1.0f)
        for (int c = 0; c < R4; c++) dbox[c] *= d->grad_scale;
    return 1;
}

/* The sums of one branch (step 6 to 8), reduced over the batch. */
typedef struct dl_sums {
    double cls, box, dfl, tsum;
    double fg;
} dl_sums;

/* Results of a backend_detloss call, accumulated (+=) in `result` (BACKEND_DETLOSS_RESULTS
 * doubles): items, loss_sum and target_scores_raw of the reported branch (E2E: one2one), the
 * foreground count, and the total of what backward differentiates. */
YOLO_HD void dl_finish(const detloss_hyp *hy, const dl_sums *s, int B, float vec[3], float items[3],
                       double loss_sum[3]) {
    float tss = (float)s->tsum;
    if (tss < 1) tss = 1;
    loss_sum[0] = s->fg > 0 ? s->box : 0;
    loss_sum[1] = s->cls;
    loss_sum[2] = s->fg > 0 ? s->dfl : 0;
    dl_items(hy, loss_sum, tss, items);
    for (int i = 0; i < 3; i++) vec[i] = items[i] * (float)B;
}
