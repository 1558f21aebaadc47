/* Ultralytics 8.4.33 detection loss, CPU reference: TaskAlignedAssigner, CIoU, DFL / L1, BCE, E2E.
 * Float32 arithmetic in PyTorch's order of operations where a value feeds a comparison (the
 * assigner) or the reported loss; sums are accumulated in double. See detloss.h. */
#include "kernels/detloss.h"
#include "kernels/detloss_math.h"
#include "kernels/threads.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* below this many (anchor x channel) values a parallel region costs more than it saves */
#define DETLOSS_PAR_MIN 65536

detloss_hyp detloss_hyp_default(int nc, int reg_max) {
    detloss_hyp h = {.nc = nc,
                     .reg_max = reg_max,
                     .box = 7.5f,
                     .cls = 0.5f,
                     .dfl = 1.5f,
                     .topk = 10,
                     .topk2 = 10,
                     .alpha = 0.5f,
                     .beta = 6.0f,
                     .eps = 1e-9f,
                     .stal_min = 8.0f,
                     .stal_size = 16.0f};
    return h;
}

detloss_hyp detloss_hyp_one2one(int nc, int reg_max) {
    detloss_hyp h = detloss_hyp_default(nc, reg_max);
    h.topk = 7;
    h.topk2 = 1;
    return h;
}

int detloss_make_anchors(int nl, const int *hs, const int *ws, const float *level_strides,
                         float *points, float *strides) {
    int a = 0;
    for (int l = 0; l < nl; l++)
        for (int y = 0; y < hs[l]; y++)
            for (int x = 0; x < ws[l]; x++, a++) {
                if (points) {
                    points[2 * a] = (float)x + 0.5f;
                    points[2 * a + 1] = (float)y + 0.5f;
                }
                if (strides) strides[a] = level_strides[l];
            }
    return a;
}

static int total_anchors(int nl, const int *hw) {
    int A = 0;
    for (int l = 0; l < nl; l++) A += hw[l];
    return A;
}

void detloss_concat_levels(int B, int nl, const int *hw, int no, const float *const *levels,
                           float *preds) {
    const int A = total_anchors(nl, hw);
    for (int b = 0; b < B; b++)
        for (int l = 0, a0 = 0; l < nl; a0 += hw[l], l++)
            memcpy(preds + ((size_t)b * A + a0) * no, levels[l] + (size_t)b * hw[l] * no,
                   (size_t)hw[l] * no * sizeof(float));
}

void detloss_split_levels(int B, int nl, const int *hw, int no, const float *dpreds,
                          float *const *dlevels) {
    const int A = total_anchors(nl, hw);
    for (int b = 0; b < B; b++)
        for (int l = 0, a0 = 0; l < nl; a0 += hw[l], l++) {
            if (!dlevels[l]) continue;
            const float *src = dpreds + ((size_t)b * A + a0) * no;
            float *dst = dlevels[l] + (size_t)b * hw[l] * no;
            for (size_t i = 0; i < (size_t)hw[l] * no; i++) dst[i] += src[i];
        }
}

void detloss_e2e_weights(int updates, int epochs, float *o2m, float *o2o) {
    /* E2ELoss.decay, in double as Python computes it; the tensors then see float32 scalars. */
    double denom = epochs - 1 > 1 ? (double)(epochs - 1) : 1.0;
    double f = 1.0 - (double)updates / denom;
    if (f < 0) f = 0;
    double m = f * (0.8 - 0.1) + 0.1, o = 1.0 - m;
    *o2m = (float)m;
    *o2o = (float)(o > 0 ? o : 0);
    if (updates == 0) { /* E2ELoss.__init__ values, before any update() */
        *o2m = DETLOSS_E2E_O2M_INIT;
        *o2o = DETLOSS_E2E_O2O_INIT;
    }
}

/* ---- targets and decode ------------------------------------------------------------------------
 */

int detloss_max_gt(int ntargets, const float *targets, int B) {
    int best = 0;
    for (int b = 0; b < B; b++) {
        int n = 0;
        for (int i = 0; i < ntargets; i++) n += (int)targets[6 * i] == b;
        if (n > best) best = n;
    }
    return best;
}

void detloss_preprocess_targets(int ntargets, const float *targets, int B, int M, float img_h,
                                float img_w, float *labels, float *bboxes, float *mask) {
    memset(labels, 0, (size_t)B * M * sizeof *labels);
    memset(bboxes, 0, (size_t)B * M * 4 * sizeof *bboxes);
    memset(mask, 0, (size_t)B * M * sizeof *mask);
    for (int b = 0; b < B; b++) {
        int n = 0;
        for (int i = 0; i < ntargets && n < M; i++) {
            const float *t = targets + 6 * i;
            if ((int)t[0] != b) continue;
            float cx = t[2] * img_w, cy = t[3] * img_h, w = t[4] * img_w, h = t[5] * img_h;
            float dw = w / 2, dh = h / 2;
            float *o = bboxes + ((size_t)b * M + n) * 4;
            o[0] = cx - dw;
            o[1] = cy - dh;
            o[2] = cx + dw;
            o[3] = cy + dh;
            labels[(size_t)b * M + n] = t[1];
            n++;
        }
    }
    for (size_t i = 0; i < (size_t)B * M; i++) {
        const float *o = bboxes + 4 * i;
        mask[i] = (o[0] + o[1] + o[2] + o[3]) > 0.0f ? 1.0f : 0.0f;
    }
}

void detloss_decode(const detloss_hyp *h, int B, int A, const float *preds,
                    const float *anchor_points, float *boxes) {
    int no = 4 * h->reg_max + h->nc;
#pragma omp parallel for num_threads(kernels_threads())                                            \
    schedule(static) if ((size_t)B * A * no >= DETLOSS_PAR_MIN)
    for (int b = 0; b < B; b++)
        for (int a = 0; a < A; a++) {
            float d[4];
            dl_anchor_dist(h->reg_max, preds + ((size_t)b * A + a) * no, d);
            const float *ap = anchor_points + 2 * a;
            float *o = boxes + ((size_t)b * A + a) * 4;
            o[0] = ap[0] - d[0];
            o[1] = ap[1] - d[1];
            o[2] = ap[0] + d[2];
            o[3] = ap[1] + d[3];
        }
}

/* ---- CIoU (bbox_iou(..., xywh=False, CIoU=True)) ------------------------------------------------
 */

float detloss_ciou(const float b1[4], const float b2[4], float alpha_fixed, float *alpha_used,
                   float grad[4]) {
    return dl_ciou(b1, b2, alpha_fixed, alpha_used, grad);
}

/* ---- TaskAlignedAssigner ------------------------------------------------------------------ */

size_t detloss_tal_workspace(int B, int A, int M) {
    (void)B; /* images are assigned one after another, sharing the scratch */
    size_t mA = (size_t)(M > 0 ? M : 1) * A;
    return mA * (2 * sizeof(float) + 2) + (size_t)(3 * A + 2) * sizeof(float) + (size_t)M + 1;
}

/* Indices of the k largest v[0..n) into idx (k <= n), ties to the lower index. */
static void topk_indices(int n, const float *v, int k, int *idx, float *val) {
    int cnt = 0;
    for (int a = 0; a < n; a++) dl_topk_insert(k, &cnt, val, idx, v[a], a);
}

void detloss_tal_assign(const detloss_hyp *h, int B, int A, int M, const float *pd_scores,
                        const float *pd_bboxes, const float *anc_points, const float *gt_labels,
                        const float *gt_bboxes, const float *mask_gt, const detloss_assign *out,
                        void *workspace) {
    const int nc = h->nc;
    const int topk = h->topk < A ? h->topk : A;
    const int topk2 = h->topk2 < A ? h->topk2 : A;
    size_t mA = (size_t)M * A;
    float *metric = workspace;     /* [M][A] align metric s^alpha u^beta (0 off candidates) */
    float *overlaps = metric + mA; /* [M][A] CIoU(gt, pred) clamped >= 0 (0 off candidates) */
    float *tmp = overlaps + mA;    /* [A] */
    int *kidx = (int *)(tmp + A);  /* [topk] */
    float *kval = (float *)(kidx + (topk > topk2 ? topk : topk2) + 1);
    uint8_t *in_gt = (uint8_t *)(kval + (topk > topk2 ? topk : topk2) + 1); /* [M][A] */
    uint8_t *pos = in_gt + mA;                                              /* [M][A] */
    uint8_t *valid = pos + mA;                                              /* [M] */

    for (int b = 0; b < B; b++) {
        const float *ps = pd_scores + (size_t)b * A * nc, *pb = pd_bboxes + (size_t)b * A * 4;
        const float *gl = gt_labels + (size_t)b * M, *gb = gt_bboxes + (size_t)b * M * 4;
        const float *mg_in = mask_gt + (size_t)b * M;
        /* a GT is real when mask_gt says so and its class is in range (else it is padding) */
        uint8_t *mg = valid;
        for (int j = 0; j < M; j++) mg[j] = (uint8_t)dl_gt_real(mg_in[j], gl[j], nc);
        /* 1. candidates: anchor centre strictly inside the (STAL-widened) GT */
        for (int j = 0; j < M; j++) {
            float box[4];
            dl_stal_box(h, gb + 4 * j, mg[j] != 0, box);
            for (int a = 0; a < A; a++)
                in_gt[(size_t)j * A + a] =
                    (uint8_t)dl_in_box(box, anc_points[2 * a], anc_points[2 * a + 1], h->eps);
        }
        /* 2. alignment metric on candidates of real GTs */
        for (int j = 0; j < M; j++) {
            int c = (int)gl[j];
            for (int a = 0; a < A; a++) {
                size_t ja = (size_t)j * A + a;
                int cand = in_gt[ja] && mg[j] != 0;
                metric[ja] = dl_align_metric(h, cand, cand ? ps[(size_t)a * nc + c] : 0, gb + 4 * j,
                                             pb + 4 * a, &overlaps[ja]);
            }
        }
        /* 3. top-k over all anchors, then AND candidates and mask_gt */
        memset(pos, 0, mA);
        for (int j = 0; j < M; j++) {
            if (mg[j] == 0) continue;
            topk_indices(A, metric + (size_t)j * A, topk, kidx, kval);
            for (int i = 0; i < topk; i++) {
                size_t ja = (size_t)j * A + kidx[i];
                pos[ja] = in_gt[ja];
            }
        }
        /* 4. an anchor claimed by several GTs goes to the max-overlap GT (first on ties) */
        for (int a = 0; a < A; a++) {
            int n = 0;
            for (int j = 0; j < M; j++) n += pos[(size_t)j * A + a];
            if (n <= 1) continue;
            int best = 0;
            for (int j = 1; j < M; j++)
                if (overlaps[(size_t)j * A + a] > overlaps[(size_t)best * A + a]) best = j;
            for (int j = 0; j < M; j++) pos[(size_t)j * A + a] = j == best;
        }
        /* 5. optional second pass: per GT keep its top-topk2 positives by metric */
        if (topk2 != topk) {
            for (int j = 0; j < M; j++) {
                uint8_t *pj = pos + (size_t)j * A;
                for (int a = 0; a < A; a++) tmp[a] = metric[(size_t)j * A + a] * (float)pj[a];
                topk_indices(A, tmp, topk2, kidx, kval);
                for (int a = 0; a < A; a++) {
                    int keep = 0;
                    for (int i = 0; i < topk2; i++) keep |= kidx[i] == a;
                    if (!keep) pj[a] = 0;
                }
            }
        }
        /* 6./7. targets and normalised scores t * U_j / (T_j + eps) */
        for (int a = 0; a < A; a++) {
            int gi = 0, fg = 0;
            for (int j = 0; j < M; j++)
                if (pos[(size_t)j * A + a]) {
                    gi = j;
                    fg = 1;
                    break;
                }
            size_t ba = (size_t)b * A + a;
            out->target_gt_idx[ba] = gi;
            out->fg_mask[ba] = (uint8_t)fg;
            int lab = M > 0 ? (int)(long)gl[gi] : 0;
            out->target_labels[ba] = lab < 0 ? 0 : lab;
            for (int i = 0; i < 4; i++) out->target_bboxes[ba * 4 + i] = M > 0 ? gb[4 * gi + i] : 0;
            for (int c = 0; c < nc; c++) out->target_scores[ba * nc + c] = 0;
        }
        for (int j = 0; j < M; j++) {
            float T = 0, U = 0;
            for (int a = 0; a < A; a++) {
                size_t ja = (size_t)j * A + a;
                float p = (float)pos[ja];
                float t = metric[ja] * p, u = overlaps[ja] * p;
                if (t > T) T = t;
                if (u > U) U = u;
            }
            for (int a = 0; a < A; a++) {
                size_t ja = (size_t)j * A + a;
                if (!pos[ja]) continue;
                size_t ba = (size_t)b * A + a;
                float t = dl_target_score(metric[ja], U, T, h->eps);
                int lab = out->target_labels[ba];
                if (lab >= nc) continue; /* not reachable: positives come from valid GTs */
                float *ts = out->target_scores + ba * nc + lab;
                if (t > *ts) *ts = t;
            }
        }
    }
}

/* ---- loss with a fixed assignment --------------------------------------------------------------
 */

/* One image's sums (cls, box, dfl) and foreground count; writes its slice of dpreds. */
static void image_loss(const detloss_hyp *h, int b, int A, const float *preds,
                       const float *anchor_points, const float *strides, const detloss_assign *as,
                       const dl_coefs *k, float *dpreds, double sums[3], int *num_fg) {
    const int R = h->reg_max, nc = h->nc, no = 4 * R + nc;
    double lcls = 0, liou = 0, ldfl = 0;
    int nfg = 0;
    for (size_t ba = (size_t)b * A; ba < (size_t)(b + 1) * A; ba++) {
        /* classification: BCE over every anchor and class */
        const float *x = preds + ba * no + 4 * R;
        const float *y = as->target_scores + ba * nc;
        float *dx = dpreds ? dpreds + ba * no + 4 * R : NULL;
        for (int c = 0; c < nc; c++)
            lcls += dl_cls_elem(k, h->bce_torch2, x[c], y[c],
                                h->cls_weight ? h->cls_weight + c : NULL, dx ? dx + c : NULL);
        if (!as->fg_mask[ba]) continue;

        /* box (CIoU) and DFL / L1 on foreground anchors */
        nfg++;
        int a = (int)(ba % A);
        const float *ts = as->target_scores + ba * nc;
        float w = 0;
        for (int c = 0; c < nc; c++) w += ts[c];
        double li, ld;
        dl_fg_anchor_loss(R, k, preds + ba * no, anchor_points + 2 * a, strides[a], w,
                          as->target_bboxes + ba * 4, dpreds ? dpreds + ba * no : NULL, &li, &ld);
        liou += li;
        ldfl += ld;
    }
    sums[0] = lcls, sums[1] = liou, sums[2] = ldfl;
    *num_fg = nfg;
}

int detloss_from_assign(const detloss_hyp *h, int B, int A, const float *preds,
                        const float *anchor_points, const float *strides, float img_h, float img_w,
                        const detloss_assign *as, const float *gw, float *dpreds,
                        detloss_out *out) {
    const int R = h->reg_max, nc = h->nc, no = 4 * R + nc;
    if (R < 1 || R > DETLOSS_MAX_REG_MAX || nc < 1) return -1;
    float w3[3] = {1, 1, 1};
    if (gw) memcpy(w3, gw, sizeof w3);
    double tsum = 0;
    for (size_t i = 0; i < (size_t)B * A * nc; i++) tsum += as->target_scores[i];
    float tss = (float)tsum;
    if (tss < 1) tss = 1;
    if (dpreds) memset(dpreds, 0, (size_t)B * A * no * sizeof *dpreds);
    dl_coefs k = dl_make_coefs(h, w3, B, tss, img_h, img_w);
    /* images in parallel; partial sums added in image order, so the result does not depend on
     * the thread count */
    enum { CHUNK = 64 };
    double sums[3] = {0, 0, 0};
    int nfg = 0;
    for (int b0 = 0; b0 < B; b0 += CHUNK) {
        int nb = B - b0 < CHUNK ? B - b0 : CHUNK;
        double part[CHUNK][3];
        int pfg[CHUNK];
#pragma omp parallel for num_threads(kernels_threads())                                            \
    schedule(static) if ((size_t)nb * A * no >= DETLOSS_PAR_MIN)
        for (int i = 0; i < nb; i++)
            image_loss(h, b0 + i, A, preds, anchor_points, strides, as, &k, dpreds, part[i],
                       &pfg[i]);
        for (int i = 0; i < nb; i++) {
            for (int j = 0; j < 3; j++) sums[j] += part[i][j];
            nfg += pfg[i];
        }
    }
    float items[3] = {0, 0, 0};
    items[1] = ((float)sums[0] / tss) * h->cls;
    if (nfg) {
        items[0] = ((float)sums[1] / tss) * h->box;
        items[2] = ((float)sums[2] / tss) * h->dfl;
    }
    for (int i = 0; i < 3; i++) {
        out->items[i] = items[i];
        out->vec[i] = items[i] * (float)B;
    }
    out->total = out->vec[0] + out->vec[1] + out->vec[2];
    out->target_scores_sum = tss;
    out->num_fg = nfg;
    out->loss_sum[0] = nfg ? sums[1] : 0;
    out->loss_sum[1] = sums[0];
    out->loss_sum[2] = nfg ? sums[2] : 0;
    out->target_scores_raw = tsum;
    return 0;
}

/* ---- context, branch, E2E ----------------------------------------------------------------------
 */

enum {
    S_LABELS,
    S_BBOXES,
    S_MASK,
    S_BOXES,
    S_SCORES,
    S_ANC,
    S_TLAB,
    S_TBOX,
    S_TSC,
    S_FG,
    S_GTI,
    S_WS,
    S_COUNT
};

struct detloss_ctx {
    void *buf[S_COUNT];
    size_t cap[S_COUNT];
    detloss_assign as;
    int B, A, M;
};

detloss_ctx *detloss_create(void) {
    return calloc(1, sizeof(detloss_ctx));
}

void detloss_destroy(detloss_ctx *ctx) {
    if (!ctx) return;
    for (int i = 0; i < S_COUNT; i++) free(ctx->buf[i]);
    free(ctx);
}

const detloss_assign *detloss_last_assign(const detloss_ctx *ctx, int *B, int *A, int *M) {
    if (B) *B = ctx->B;
    if (A) *A = ctx->A;
    if (M) *M = ctx->M;
    return &ctx->as;
}

/* Scratch slot of at least `bytes`; NULL when out of memory. */
static void *slot(detloss_ctx *c, int s, size_t bytes) {
    if (bytes == 0) bytes = 16;
    if (c->cap[s] < bytes) {
        void *p = realloc(c->buf[s], bytes);
        if (!p) return NULL;
        c->buf[s] = p;
        c->cap[s] = bytes;
    }
    return c->buf[s];
}

int detloss_branch(detloss_ctx *ctx, const detloss_hyp *h, int B, int A, const float *preds,
                   const float *anchor_points, const float *strides, int ntargets,
                   const float *targets, float img_h, float img_w, const float *gw, float *dpreds,
                   detloss_out *out) {
    const int nc = h->nc, no = 4 * h->reg_max + nc;
    if (h->reg_max < 1 || h->reg_max > DETLOSS_MAX_REG_MAX || h->nc < 1) return -1;
    const int M = detloss_max_gt(ntargets, targets, B);
    const size_t BA = (size_t)B * A, BM = (size_t)B * (M > 0 ? M : 1);
    float *labels = slot(ctx, S_LABELS, BM * sizeof(float));
    float *bboxes = slot(ctx, S_BBOXES, BM * 4 * sizeof(float));
    float *mask = slot(ctx, S_MASK, BM * sizeof(float));
    float *boxes = slot(ctx, S_BOXES, BA * 4 * sizeof(float));
    float *scores = slot(ctx, S_SCORES, BA * nc * sizeof(float));
    float *anc = slot(ctx, S_ANC, (size_t)A * 2 * sizeof(float));
    detloss_assign as = {
        .target_labels = slot(ctx, S_TLAB, BA * sizeof(int)),
        .target_bboxes = slot(ctx, S_TBOX, BA * 4 * sizeof(float)),
        .target_scores = slot(ctx, S_TSC, BA * nc * sizeof(float)),
        .fg_mask = slot(ctx, S_FG, BA),
        .target_gt_idx = slot(ctx, S_GTI, BA * sizeof(int)),
    };
    void *ws = slot(ctx, S_WS, detloss_tal_workspace(B, A, M));
    if (!labels || !bboxes || !mask || !boxes || !scores || !anc || !as.target_labels ||
        !as.target_bboxes || !as.target_scores || !as.fg_mask || !as.target_gt_idx || !ws)
        return -1;
    ctx->as = as;
    ctx->B = B;
    ctx->A = A;
    ctx->M = M;
    detloss_preprocess_targets(ntargets, targets, B, M, img_h, img_w, labels, bboxes, mask);
    /* the assigner sees detached sigmoid scores, boxes and anchors in pixels */
    detloss_decode(h, B, A, preds, anchor_points, boxes);
#pragma omp parallel for num_threads(kernels_threads())                                            \
    schedule(static) if (BA * no >= DETLOSS_PAR_MIN)
    for (size_t ba = 0; ba < BA; ba++) {
        float st = strides[ba % A];
        for (int i = 0; i < 4; i++) boxes[ba * 4 + i] *= st;
        for (int c = 0; c < nc; c++)
            scores[ba * nc + c] = 1.0f / (1.0f + expf(-preds[ba * no + 4 * h->reg_max + c]));
    }
    for (int a = 0; a < A; a++) {
        anc[2 * a] = anchor_points[2 * a] * strides[a];
        anc[2 * a + 1] = anchor_points[2 * a + 1] * strides[a];
    }
    detloss_tal_assign(h, B, A, M, scores, boxes, anc, labels, bboxes, mask, &as, ws);
    return detloss_from_assign(h, B, A, preds, anchor_points, strides, img_h, img_w, &as, gw,
                               dpreds, out);
}

int detloss_e2e(detloss_ctx *ctx, const detloss_hyp *h_o2m, const detloss_hyp *h_o2o, float o2m,
                float o2o, int B, int A, const float *preds_o2m, const float *preds_o2o,
                const float *anchor_points, const float *strides, int ntargets,
                const float *targets, float img_h, float img_w, float *dpreds_o2m,
                float *dpreds_o2o, detloss_out *out, detloss_out br[2]) {
    detloss_out r[2];
    float g0[3] = {o2m, o2m, o2m}, g1[3] = {o2o, o2o, o2o};
    if (detloss_branch(ctx, h_o2m, B, A, preds_o2m, anchor_points, strides, ntargets, targets,
                       img_h, img_w, g0, dpreds_o2m, &r[0]) ||
        detloss_branch(ctx, h_o2o, B, A, preds_o2o, anchor_points, strides, ntargets, targets,
                       img_h, img_w, g1, dpreds_o2o, &r[1]))
        return -1;
    for (int i = 0; i < 3; i++) {
        out->vec[i] = r[0].vec[i] * o2m + r[1].vec[i] * o2o;
        out->items[i] = r[1].items[i];
    }
    out->total = out->vec[0] + out->vec[1] + out->vec[2];
    out->target_scores_sum = r[1].target_scores_sum;
    memcpy(out->loss_sum, r[1].loss_sum, sizeof out->loss_sum);
    out->target_scores_raw = r[1].target_scores_raw;
    out->num_fg = r[1].num_fg;
    if (br) {
        br[0] = r[0];
        br[1] = r[1];
    }
    return 0;
}
