/* Validation NMS, end-to-end top-K and match_predictions on hand-made boxes. */
#include "kernels/nms.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

/* one anchor row: cx, cy, w, h, scores... */
static void put(float *pred, int a, int nc, float cx, float cy, float w, float h, const float *s) {
    float *r = pred + (size_t)a * (4 + nc);
    r[0] = cx;
    r[1] = cy;
    r[2] = w;
    r[3] = h;
    for (int c = 0; c < nc; c++) r[4 + c] = s[c];
}

/* nc = 1, 20x20 boxes: A (50,50) .9; B (52,50) .8: inter 18*20 = 360, union 440, IoU .818 > .7 ->
 * suppressed; E (56,50) .6: IoU with A 14*20/520 = .538 -> kept; C (100,100) 10x10 .3 -> kept;
 * D .0005 <= conf .001 -> never a candidate; F exactly at conf .001 -> not > conf, dropped. */
Test(nms, suppresses_overlaps_and_filters_conf) {
    float pred[6 * 5];
    put(pred, 0, 1, 50, 50, 20, 20, (float[]){0.9f});
    put(pred, 1, 1, 52, 50, 20, 20, (float[]){0.8f});
    put(pred, 2, 1, 100, 100, 10, 10, (float[]){0.3f});
    put(pred, 3, 1, 200, 200, 10, 10, (float[]){0.0005f});
    put(pred, 4, 1, 56, 50, 20, 20, (float[]){0.6f});
    put(pred, 5, 1, 300, 300, 10, 10, (float[]){0.001f});
    nms_cfg cfg = nms_val_defaults();
    detection d[8];
    int n = nms_detect(pred, 6, 1, &cfg, d);
    cr_assert_eq(n, 3);
    cr_assert_float_eq(d[0].conf, 0.9f, 0);
    cr_assert_float_eq(d[0].x1, 40.0f, 0);
    cr_assert_float_eq(d[0].y1, 40.0f, 0);
    cr_assert_float_eq(d[0].x2, 60.0f, 0);
    cr_assert_float_eq(d[0].y2, 60.0f, 0);
    cr_assert_float_eq(d[1].conf, 0.6f, 0);
    cr_assert_float_eq(d[2].conf, 0.3f, 0);
    cr_assert_float_eq(d[2].x1, 95.0f, 0);
    /* a looser threshold keeps B too */
    cfg.iou_thres = 0.85;
    cr_assert_eq(nms_detect(pred, 6, 1, &cfg, d), 4);
    cr_assert_float_eq(d[1].conf, 0.8f, 0);
}

/* nc = 2. Anchor 0: class 0 .9 and class 1 .5 (multi-label: two detections, same box). Anchor 1
 * overlaps anchor 0 (IoU .818), class 1 .7, class 0 .0001: class-aware NMS keeps it (other class
 * than the .9 box) but suppresses anchor 0's class-1 copy (.5 < .7, same class, IoU .818). */
Test(nms, class_aware_multi_label_and_agnostic) {
    float pred[2 * 6];
    put(pred, 0, 2, 50, 50, 20, 20, (float[]){0.9f, 0.5f});
    put(pred, 1, 2, 52, 50, 20, 20, (float[]){0.0001f, 0.7f});
    nms_cfg cfg = nms_val_defaults();
    detection d[8];
    int n = nms_detect(pred, 2, 2, &cfg, d);
    cr_assert_eq(n, 2);
    cr_assert_eq(d[0].cls, 0);
    cr_assert_float_eq(d[0].conf, 0.9f, 0);
    cr_assert_eq(d[1].cls, 1);
    cr_assert_float_eq(d[1].conf, 0.7f, 0);
    cr_assert_float_eq(d[1].x1, 42.0f, 0);
    /* far apart, the class-1 copy of anchor 0 survives: multi-label gives 3 detections */
    put(pred, 1, 2, 152, 50, 20, 20, (float[]){0.0001f, 0.7f});
    n = nms_detect(pred, 2, 2, &cfg, d);
    cr_assert_eq(n, 3);
    cr_assert_eq(d[2].cls, 1);
    cr_assert_float_eq(d[2].conf, 0.5f, 0);
    cr_assert_float_eq(d[2].x1, 40.0f, 0);
    /* single label: one detection per anchor, its best class */
    cfg.multi_label = 0;
    cr_assert_eq(nms_detect(pred, 2, 2, &cfg, d), 2);
    /* agnostic: overlapping boxes of different classes suppress each other */
    put(pred, 1, 2, 52, 50, 20, 20, (float[]){0.0001f, 0.7f});
    cfg.multi_label = 1;
    cfg.agnostic = 1;
    n = nms_detect(pred, 2, 2, &cfg, d);
    cr_assert_eq(n, 1);
    cr_assert_eq(d[0].cls, 0);
}

/* 10 disjoint boxes with scores .1 .. 1.0 (anchor i has (i+1)/10). */
Test(nms, max_det_max_nms_and_order) {
    float pred[10 * 5];
    for (int i = 0; i < 10; i++)
        put(pred, i, 1, 30.0f * i + 10, 10, 10, 10, (float[]){(i + 1) / 10.0f});
    nms_cfg cfg = nms_val_defaults();
    detection d[10];
    cfg.max_det = 4;
    int n = nms_detect(pred, 10, 1, &cfg, d);
    cr_assert_eq(n, 4);
    for (int i = 0; i < 4; i++) {
        cr_assert_float_eq(d[i].conf, (10 - i) / 10.0f, 1e-7);
        cr_assert_float_eq(d[i].x1, 30.0f * (9 - i) + 5, 0);
    }
    cfg.max_det = 300;
    cfg.max_nms = 3; /* only the 3 best candidates enter NMS */
    n = nms_detect(pred, 10, 1, &cfg, d);
    cr_assert_eq(n, 3);
    cr_assert_float_eq(d[2].conf, 0.8f, 1e-7);
}

/* yolo26 top-K, A = 5, nc = 2, max_det 3. Anchor max scores: a0 .9, a1 .7, a2 .6, a4 .3, a3 .05 ->
 * anchors a0 a1 a2; their 6 scores a0:(.9 .85) a1:(.2 .7) a2:(.6 .1) -> top 3: (a0,c0,.9),
 * (a0,c1,.85), (a1,c1,.7): anchor 0 yields two classes and a2 (max .6) is left out. */
Test(nms, end_to_end_topk) {
    float pred[5 * 6];
    const float s[5][2] = {{0.9f, 0.85f}, {0.2f, 0.7f}, {0.6f, 0.1f}, {0.05f, 0.01f}, {0.3f, 0.3f}};
    for (int a = 0; a < 5; a++) {
        float *r = pred + a * 6;
        r[0] = 10.0f * a; /* xyxy already */
        r[1] = 0;
        r[2] = 10.0f * a + 5;
        r[3] = 5;
        r[4] = s[a][0];
        r[5] = s[a][1];
    }
    nms_cfg cfg = nms_val_defaults();
    cfg.max_det = 3;
    detection d[5];
    int n = topk_detect(pred, 5, 2, &cfg, d);
    cr_assert_eq(n, 3);
    cr_assert_eq(d[0].cls, 0);
    cr_assert_float_eq(d[0].conf, 0.9f, 0);
    cr_assert_float_eq(d[0].x1, 0.0f, 0);
    cr_assert_eq(d[1].cls, 1);
    cr_assert_float_eq(d[1].conf, 0.85f, 0);
    cr_assert_float_eq(d[1].x2, 5.0f, 0);
    cr_assert_eq(d[2].cls, 1);
    cr_assert_float_eq(d[2].x1, 10.0f, 0);
    /* conf filter is strict and comes after the top-K */
    cfg.conf_thres = 0.85f;
    cr_assert_eq(topk_detect(pred, 5, 2, &cfg, d), 1);
    /* agnostic: top-3 anchors by max score, class = argmax: a0 c0, a1 c1, a2 c0 */
    cfg.conf_thres = 0.001f;
    cfg.agnostic = 1;
    n = topk_detect(pred, 5, 2, &cfg, d);
    cr_assert_eq(n, 3);
    cr_assert_eq(d[2].cls, 0);
    cr_assert_float_eq(d[2].conf, 0.6f, 0);
    /* K = min(max_det, A) */
    cfg.agnostic = 0;
    cfg.max_det = 300;
    cr_assert_eq(topk_detect(pred, 5, 2, &cfg, d), 5);
}

static detection box(float x1, float y1, float x2, float y2, float conf, int cls) {
    return (detection){x1, y1, x2, y2, conf, cls};
}

/* Ground truth (class 0 unless said): G0 [0,0,10,10], G1 [5,0,15,10] (class 1), G2 [20,0,30,10],
 * G3 [21,0,31,10]. Predictions, score-sorted:
 *   P0 [1,0,11,10] c0 .95: IoU G0 90/110 = .818       -> TP at .50...80 (bits 0-6)
 *   P1 [0,0,10,10] c0 .90: IoU G0 1.0, but G0 goes to the lower index P0 wherever P0 matches
 *      (no re-sort by IoU: the Ultralytics rule)        -> TP only at .85 .90 .95 (bits 7-9)
 *   P2 [5,0,15,10] c0 .85: same box as G1 but class 1 is not class 0; IoU G0 .333 -> FP
 *   Q0 [21,0,31,10] c0 .80: IoU G3 1.0 (G2 .818)        -> TP at all 10 thresholds
 *   Q1 [21.2,0,31.2,10] c0 .70: best G3 (IoU 98/102 = .961), lost to Q0; not retried on G2
 *      (IoU 88/112 = .786) -> FP everywhere (COCOeval would match it to G2 up to .75)
 *   P3 [5,0,15,10] c1 .60: G1 exactly -> TP everywhere */
Test(nms, match_predictions_rule) {
    const float gt[4][4] = {{0, 0, 10, 10}, {5, 0, 15, 10}, {20, 0, 30, 10}, {21, 0, 31, 10}};
    const int gcls[4] = {0, 1, 0, 0};
    detection d[6] = {box(1, 0, 11, 10, 0.95f, 0),       box(0, 0, 10, 10, 0.9f, 0),
                      box(5, 0, 15, 10, 0.85f, 0),       box(21, 0, 31, 10, 0.8f, 0),
                      box(21.2f, 0, 31.2f, 10, 0.7f, 0), box(5, 0, 15, 10, 0.6f, 1)};
    val_record r[6];
    val_match(d, 6, &gt[0][0], gcls, 4, r);
    cr_assert_eq(r[0].tp, 0x07fu, "P0 %#x", r[0].tp);
    cr_assert_eq(r[1].tp, 0x380u, "P1 %#x", r[1].tp);
    cr_assert_eq(r[2].tp, 0u);
    cr_assert_eq(r[3].tp, 0x3ffu);
    cr_assert_eq(r[4].tp, 0u, "Q1 %#x", r[4].tp);
    cr_assert_eq(r[5].tp, 0x3ffu);
    cr_assert_float_eq(r[4].conf, 0.7f, 0);
    cr_assert_eq(r[5].cls, 1);
    cr_assert_float_eq(box_iou_xyxy(gt[0], (float[]){1, 0, 11, 10}), 90.0 / 110, 1e-6);
    /* no ground truth: all false positives */
    val_match(d, 6, NULL, NULL, 0, r);
    for (int i = 0; i < 6; i++) cr_assert_eq(r[i].tp, 0u);
}

/* Ultralytics' match_predictions spelled out literally (pairs with IoU >= t in row-major order,
 * stable ascending sort by IoU then reversed, first pair per prediction, re-ordered by prediction
 * index, first pair per gt), to check val_match's shortcut on random crowded scenes. */
typedef struct {
    int g, p;
    float v;
} pair;

static uint32_t literal_tp(const float *iou, int ngt, int n, int p_want) {
    uint32_t bits = 0;
    pair *pr = malloc((size_t)(ngt * n + 1) * sizeof *pr);
    for (int t = 0; t < VAL_NIOU; t++) {
        int k = 0;
        for (int g = 0; g < ngt; g++)
            for (int p = 0; p < n; p++)
                if (iou[g * n + p] >= VAL_IOU_THRESHOLDS[t]) pr[k++] = (pair){g, p, iou[g * n + p]};
        for (int i = 1; i < k; i++) { /* insertion sort: stable, ascending */
            pair x = pr[i];
            int j = i - 1;
            while (j >= 0 && pr[j].v > x.v) {
                pr[j + 1] = pr[j];
                j--;
            }
            pr[j + 1] = x;
        }
        for (int i = 0; i < k / 2; i++) { /* [::-1] */
            pair x = pr[i];
            pr[i] = pr[k - 1 - i];
            pr[k - 1 - i] = x;
        }
        int best_g_of_p = -1, taken_by_lower = 0;
        for (int i = 0; i < k; i++) /* unique over predictions: the first pair of p_want */
            if (pr[i].p == p_want) {
                best_g_of_p = pr[i].g;
                break;
            }
        if (best_g_of_p < 0) continue;
        for (int q = 0; q < p_want && !taken_by_lower; q++) /* lower p with the same first gt? */
            for (int i = 0; i < k; i++)
                if (pr[i].p == q) {
                    taken_by_lower = pr[i].g == best_g_of_p;
                    break;
                }
        if (!taken_by_lower) bits |= 1u << t;
    }
    free(pr);
    return bits;
}

Test(nms, match_equals_literal_algorithm_on_random_scenes) {
    srand(12345);
    for (int scene = 0; scene < 20; scene++) {
        enum { NG = 12, NP = 30 };
        float gt[NG][4];
        int gc[NG];
        detection d[NP];
        for (int g = 0; g < NG; g++) {
            float x = (float)(rand() % 40), y = (float)(rand() % 40), w = 10 + (float)(rand() % 20);
            gt[g][0] = x;
            gt[g][1] = y;
            gt[g][2] = x + w;
            gt[g][3] = y + w * 0.8f;
            gc[g] = rand() % 2;
        }
        for (int p = 0; p < NP; p++) {
            const float *b = gt[rand() % NG];
            float j = (float)(rand() % 9 - 4) * 0.5f, s = 1.0f + (float)(rand() % 5) * 0.05f;
            d[p] = box(b[0] + j, b[1] - j * 0.5f, b[0] + (b[2] - b[0]) * s + j, b[3] + j,
                       1.0f - (float)p / NP, rand() % 4 ? gc[rand() % NG] : rand() % 2);
        }
        float iou[NG * NP];
        for (int g = 0; g < NG; g++)
            for (int p = 0; p < NP; p++)
                iou[g * NP + p] =
                    gc[g] == d[p].cls
                        ? box_iou_xyxy(gt[g], (float[]){d[p].x1, d[p].y1, d[p].x2, d[p].y2})
                        : 0.0f;
        val_record r[NP];
        val_match(d, NP, &gt[0][0], gc, NG, r);
        int ntp = 0;
        for (int p = 0; p < NP; p++) {
            uint32_t want = literal_tp(iou, NG, NP, p);
            cr_assert_eq(r[p].tp, want, "scene %d pred %d: %#x, literal %#x", scene, p, r[p].tp,
                         want);
            ntp += r[p].tp != 0;
        }
        cr_assert(ntp > 0 && ntp < NP, "scene %d is not trivial (%d TP)", scene, ntp);
    }
}
