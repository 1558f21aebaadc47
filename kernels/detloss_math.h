/* The per-element mathematics of the detection loss (kernels/detloss.h), written once for the CPU
 * reference (kernels/detloss.c) and the CUDA loss (kernels/cuda/detloss*.cu): CIoU with its
 * gradient, the DFL side softmax, the BCE of one logit, the assigner's candidate test, metric and
 * top-k order, the normalised target score, and one foreground anchor's box + DFL / L1 loss with
 * its gradient. Plain C17 that nvcc also compiles as __host__ __device__ (YOLO_HD,
 * kernels/cuda/hd.h), so the CPU tests exercise exactly the arithmetic the GPU runs
 * (tests/test_detloss_hd.c).
 *
 * Everything here is float32 in PyTorch's order of operations where a value feeds a comparison or
 * the reported loss; the gradient of CIoU is formed in double, as the CPU reference always did. */
#pragma once
#include "kernels/cuda/hd.h"
#include "kernels/detloss.h"

#include <math.h>
#include <stdint.h>

#define DL_CIOU_EPS 1e-7f
#define DL_DFL_CLAMP_MARGIN 0.01f

/* min/max with PyTorch's gradient rule: the chosen argument gets 1, a tie splits 1/2, 1/2. */
YOLO_HD float dl_gmin(float a, float b, float *ga) {
    *ga = a < b ? 1.0f : (a == b ? 0.5f : 0.0f);
    return a < b ? a : b;
}
YOLO_HD float dl_gmax(float a, float b, float *ga) {
    *ga = a > b ? 1.0f : (a == b ? 0.5f : 0.0f);
    return a > b ? a : b;
}

/* CIoU of boxes b1, b2 (xyxy) as bbox_iou(b1, b2, xywh=False, CIoU=True). If g is non-NULL it
 * receives d CIoU / d b1 (alpha held constant, as Ultralytics computes it under no_grad).
 * alpha_fixed >= 0 replaces the computed alpha; alpha_used (may be NULL) receives the alpha. */
YOLO_HD float dl_ciou(const float *b1, const float *b2, float alpha_fixed, float *alpha_used,
                      float *g) {
    const float eps = DL_CIOU_EPS;
    float w1 = b1[2] - b1[0], h1 = b1[3] - b1[1] + eps;
    float w2 = b2[2] - b2[0], h2 = b2[3] - b2[1] + eps;
    float gx2, gx1, gy2, gy1; /* d(min/max)/d(b1 coordinate) */
    float ix2 = dl_gmin(b1[2], b2[2], &gx2), ix1 = dl_gmax(b1[0], b2[0], &gx1);
    float iy2 = dl_gmin(b1[3], b2[3], &gy2), iy1 = dl_gmax(b1[1], b2[1], &gy1);
    float iw_raw = ix2 - ix1, ih_raw = iy2 - iy1;
    float iw = iw_raw > 0 ? iw_raw : 0, ih = ih_raw > 0 ? ih_raw : 0;
    float inter = iw * ih;
    float uni = w1 * h1 + w2 * h2 - inter + eps;
    float iou = inter / uni;
    float cx2g, cx1g, cy2g, cy1g;
    float cw = dl_gmax(b1[2], b2[2], &cx2g) - dl_gmin(b1[0], b2[0], &cx1g);
    float ch = dl_gmax(b1[3], b2[3], &cy2g) - dl_gmin(b1[1], b2[1], &cy1g);
    float c2 = cw * cw + ch * ch + eps;
    float dx = b2[0] + b2[2] - b1[0] - b1[2], dy = b2[1] + b2[3] - b1[1] - b1[3];
    float rho2 = (dx * dx + dy * dy) / 4;
    const float k = (float)(4.0 / (3.14159265358979323846 * 3.14159265358979323846));
    float at = atanf(w2 / h2) - atanf(w1 / h1);
    float v = k * (at * at);
    float alpha = alpha_fixed >= 0 ? alpha_fixed : v / (v - iou + (float)(1.0 + 1e-7));
    float out = iou - (rho2 / c2 + v * alpha);
    if (alpha_used) *alpha_used = alpha;
    if (!g) return out;

    /* iou = inter / uni */
    double diou_dinter = (double)(uni + inter) / ((double)uni * uni);
    double diou_da1 = -(double)inter / ((double)uni * uni); /* a1 = w1*h1 */
    /* clamp_(0) lets the gradient through where the raw value is >= 0 */
    double mw = iw_raw >= 0 ? 1 : 0, mh = ih_raw >= 0 ? 1 : 0;
    double dinter[4] = {-ih * mw * gx1, -iw * mh * gy1, ih * mw * gx2, iw * mh * gy2};
    double da1[4] = {-h1, -w1, h1, w1};
    /* rho2 / c2 */
    double drho2[4] = {-dx / 2.0, -dy / 2.0, -dx / 2.0, -dy / 2.0};
    double dc2[4] = {-2.0 * cw * cx1g, -2.0 * ch * cy1g, 2.0 * cw * cx2g, 2.0 * ch * cy2g};
    /* v = k (atan(w2/h2) - atan(w1/h1))^2; d atan(w1/h1) = (dw1 h1 - w1 dh1) / (h1^2 + w1^2) */
    double den = (double)h1 * h1 + (double)w1 * w1;
    double dv_dw1 = -2.0 * k * at * h1 / den, dv_dh1 = 2.0 * k * at * w1 / den;
    double dv[4] = {-dv_dw1, -dv_dh1, dv_dw1, dv_dh1};
    for (int i = 0; i < 4; i++) {
        double diou = diou_dinter * dinter[i] + diou_da1 * da1[i];
        double dterm = drho2[i] / c2 - (double)rho2 / ((double)c2 * c2) * dc2[i];
        g[i] = (float)(diou - dterm - alpha * dv[i]);
    }
    return out;
}

/* Softmax of one side's R logits into p (R floats); returns the expectation sum_j j p_j. */
YOLO_HD float dl_dfl_side(int R, const float *z, float *p) {
    float mx = z[0];
    for (int j = 1; j < R; j++) mx = z[j] > mx ? z[j] : mx;
    float s = 0;
    for (int j = 0; j < R; j++) {
        p[j] = expf(z[j] - mx);
        s += p[j];
    }
    float d = 0;
    for (int j = 0; j < R; j++) {
        p[j] /= s;
        d += p[j] * (float)j;
    }
    return d;
}

/* Distances (l,t,r,b) in grid units of one anchor's box channels. */
YOLO_HD void dl_anchor_dist(int R, const float *pa, float dist[4]) {
    if (R == 1) {
        for (int s = 0; s < 4; s++) dist[s] = pa[s];
        return;
    }
    float p[DETLOSS_MAX_REG_MAX];
    for (int s = 0; s < 4; s++) dist[s] = dl_dfl_side(R, pa + s * R, p);
}

/* PyTorch's binary_cross_entropy_with_logits of one element. torch2 = 0: torch 1.13's
 * (1 - y) x + m + log(1 + exp(-|x|)), m = max(-x, 0); torch2 = 1: torch 2.x's
 * (1 - y) x - log_sigmoid(x), log_sigmoid(x) = min(x, 0) - log1p(exp(-|x|)), which cancels for
 * very negative logits (that rounding is what the 8.4.190 oracle holds). *sig = sigmoid(x). */
YOLO_HD float dl_bce_logits(float x, float y, int torch2, float *sig) {
    float e = expf(-fabsf(x)); /* exp(-|x|) */
    *sig = x >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
    if (torch2) {
        float ls = (x < 0 ? x : 0.0f) - log1pf(e);
        return (1 - y) * x - ls;
    }
    float mx = x < 0 ? -x : 0;
    return (1 - y) * x + mx + logf(1.0f + e);
}

YOLO_HD float dl_sigmoid(float x) {
    return 1.0f / (1.0f + expf(-x));
}

/* s^alpha * u^beta of the assigner, with the exponents Ultralytics uses exactly. */
YOLO_HD float dl_pow_exp(float x, float e) {
    return e == 0.5f ? sqrtf(x) : (e == 1.0f ? x : powf(x, e));
}

/* A GT box (xyxy pixels) as the candidate test sees it: a real GT's side below stal_min becomes
 * stal_size (8.4.33: 8 -> 16 px; 8.4.190: 16 -> 16 px), about the same centre. */
YOLO_HD void dl_stal_box(const detloss_hyp *h, const float *g, int real, float out[4]) {
    float cx = (g[0] + g[2]) / 2, cy = (g[1] + g[3]) / 2;
    float w = g[2] - g[0], hh = g[3] - g[1];
    if (real) {
        if (w < h->stal_min) w = h->stal_size;
        if (hh < h->stal_min) hh = h->stal_size;
    }
    out[0] = cx - w / 2;
    out[1] = cy - hh / 2;
    out[2] = cx + w / 2;
    out[3] = cy + hh / 2;
}

/* Anchor centre (pixels) strictly inside the widened box: min distance to its sides > eps. */
YOLO_HD int dl_in_box(const float box[4], float ax, float ay, float eps) {
    float d = ax - box[0], e;
    if ((e = ay - box[1]) < d) d = e;
    if ((e = box[2] - ax) < d) d = e;
    if ((e = box[3] - ay) < d) d = e;
    return d > eps;
}

/* A GT row is real when mask_gt says so and its class is in [0, nc) (else it is padding). */
YOLO_HD int dl_gt_real(float mask, float label, int nc) {
    return mask != 0 && label >= 0 && (int)label < nc;
}

/* Alignment metric and overlap of GT j with one anchor: for a candidate of a real GT, u =
 * max(CIoU(gt, pred), 0) and the metric s^alpha u^beta (s the predicted score of the GT's class);
 * else both 0. */
YOLO_HD float dl_align_metric(const detloss_hyp *h, int candidate, float score, const float *gt_box,
                              const float *pd_box, float *overlap) {
    float s = 0, u = 0;
    if (candidate) {
        s = score;
        u = dl_ciou(gt_box, pd_box, -1.0f, 0, 0);
        if (!(u > 0)) u = 0;
    }
    *overlap = u;
    return dl_pow_exp(s, h->alpha) * dl_pow_exp(u, h->beta);
}

/* The order of torch.topk as used here: larger value first, the lower index on ties. */
YOLO_HD int dl_topk_before(float va, int ia, float vb, int ib) {
    return va > vb || (va == vb && ia < ib);
}

/* Inserts (x, a) into the list val/idx of *cnt <= k entries sorted by dl_topk_before, keeping
 * the k first. Scanning a in increasing order gives the CPU reference's top-k exactly. */
YOLO_HD void dl_topk_insert(int k, int *cnt, float *val, int *idx, float x, int a) {
    if (*cnt == k && !dl_topk_before(x, a, val[k - 1], idx[k - 1])) return;
    int pos = *cnt < k ? (*cnt)++ : k - 1;
    while (pos > 0 && dl_topk_before(x, a, val[pos - 1], idx[pos - 1])) {
        val[pos] = val[pos - 1];
        idx[pos] = idx[pos - 1];
        pos--;
    }
    val[pos] = x;
    idx[pos] = a;
}

/* Normalised target score of a positive anchor: metric * U_j / (T_j + eps). */
YOLO_HD float dl_target_score(float metric, float U, float T, float eps) {
    return metric * U / (T + eps);
}

/* Gains of the loss terms for the gradient: gain_j * weight_j * B / max(target score sum, 1). */
typedef struct dl_coefs {
    float gcls, gbox, gdfl, tclamp, img_h, img_w;
} dl_coefs;

/* Loss of one class logit and, when dx is not NULL, its gradient: BCE(x, y) (times *cw, the cls_pw
 * class weight, when cw is not NULL); *dx = gcls * (sigmoid(x) - y) [* *cw]. */
YOLO_HD float dl_cls_elem(const dl_coefs *k, int torch2, float x, float y, const float *cw,
                          float *dx) {
    float sg, l = dl_bce_logits(x, y, torch2, &sg);
    if (cw) {
        if (dx) *dx = k->gcls * ((sg - y) * *cw);
        return l * *cw;
    }
    if (dx) *dx = k->gcls * (sg - y);
    return l;
}

/* Box (CIoU) and DFL / L1 loss of one foreground anchor, weighted by its target score sum w:
 * *liou = (1 - CIoU) w, *ldfl = (mean over sides of the DFL / L1 term) w. pa: the anchor's box
 * channels (4R), ap its centre (grid units), st its stride, tb_px the target box (xyxy pixels).
 * dbox (may be NULL): d loss / d box channels (4R floats, written). */
YOLO_HD void dl_fg_anchor_loss(int R, const dl_coefs *k, const float *pa, const float *ap, float st,
                               float w, const float *tb_px, float *dbox, double *liou,
                               double *ldfl) {
    float p[4][DETLOSS_MAX_REG_MAX], dist[4];
    for (int s = 0; s < 4; s++) dist[s] = R == 1 ? pa[s] : dl_dfl_side(R, pa + s * R, p[s]);
    float pbox[4] = {ap[0] - dist[0], ap[1] - dist[1], ap[0] + dist[2], ap[1] + dist[3]};
    float tb[4];
    for (int i = 0; i < 4; i++) tb[i] = tb_px[i] / st;
    float g[4];
    float ci = dl_ciou(pbox, tb, -1.0f, 0, dbox ? g : 0);
    *liou = (1.0f - ci) * w;
    /* d loss / d distance: x1 = ax - l, y1 = ay - t, x2 = ax + r, y2 = ay + b */
    float ddist[4] = {0, 0, 0, 0};
    if (dbox) {
        float cb = -k->gbox * w;
        ddist[0] = -cb * g[0];
        ddist[1] = -cb * g[1];
        ddist[2] = cb * g[2];
        ddist[3] = cb * g[3];
    }
    float tl4[4] = {ap[0] - tb[0], ap[1] - tb[1], tb[2] - ap[0], tb[3] - ap[1]};
    float side_sum = 0;
    if (R > 1) {
        /* DFL: two-bin cross-entropy around the clamped target distance */
        for (int s = 0; s < 4; s++) {
            float t = tl4[s] < 0 ? 0 : (tl4[s] > k->tclamp ? k->tclamp : tl4[s]);
            int il = (int)t, ir = il + 1;
            float wl = (float)ir - t, wr = 1 - wl;
            const float *z = pa + s * R;
            float mx = z[0];
            for (int j = 1; j < R; j++) mx = z[j] > mx ? z[j] : mx;
            double se = 0;
            for (int j = 0; j < R; j++) se += exp((double)z[j] - mx);
            float lse = mx + (float)log(se);
            side_sum += (lse - z[il]) * wl + (lse - z[ir]) * wr;
            if (dbox) {
                float cd = k->gdfl * w / 4;
                float *dz = dbox + s * R;
                for (int j = 0; j < R; j++) {
                    float d = p[s][j] * (wl + wr) - (j == il ? wl : 0) - (j == ir ? wr : 0);
                    dz[j] = cd * d + ddist[s] * p[s][j] * ((float)j - dist[s]);
                }
            }
        }
    } else {
        /* reg_max 1: L1 on ltrb distances scaled to pixels and normalised by image size */
        for (int s = 0; s < 4; s++) {
            float dim = (s & 1) ? k->img_h : k->img_w;
            float tgt = tl4[s] * st / dim, pd = dist[s] * st / dim;
            float diff = pd - tgt;
            side_sum += fabsf(diff);
            if (dbox) {
                float sg = diff > 0 ? 1.0f : (diff < 0 ? -1.0f : 0.0f);
                dbox[s] = k->gdfl * w / 4 * sg * st / dim + ddist[s];
            }
        }
    }
    *ldfl = side_sum / 4 * w;
}

/* The coefficients of detloss_from_assign: gains times branch weights gw (NULL: 1) times B over
 * the clamped target score sum tss. */
YOLO_HD dl_coefs dl_make_coefs(const detloss_hyp *h, const float *gw, int B, float tss, float img_h,
                               float img_w) {
    float w0 = gw ? gw[0] : 1.0f, w1 = gw ? gw[1] : 1.0f, w2 = gw ? gw[2] : 1.0f;
    dl_coefs k;
    k.gcls = w1 * h->cls * (float)B / tss;
    k.gbox = w0 * h->box * (float)B / tss;
    k.gdfl = w2 * h->dfl * (float)B / tss;
    k.tclamp = (float)((double)(h->reg_max - 1) - DL_DFL_CLAMP_MARGIN);
    k.img_h = img_h;
    k.img_w = img_w;
    return k;
}

/* detloss_out.items from the sums (cls, box, dfl as loss_sum holds them: box/dfl already 0 when
 * no anchor is foreground) and the clamped target score sum. */
YOLO_HD void dl_items(const detloss_hyp *h, const double sums[3], float tss, float items[3]) {
    items[0] = ((float)sums[0] / tss) * h->box;
    items[1] = ((float)sums[1] / tss) * h->cls;
    items[2] = ((float)sums[2] / tss) * h->dfl;
}
