/* Validation NMS and yolo26's top-k as the GPU computes them (kernels/cuda/nms.cu): the
 * per-element and per-pair functions, __host__ __device__. kernels/nms.c (the CPU, the reference)
 * uses the box and overlap functions; the CUDA kernels call all of them per thread; the CPU test
 * (tests/test_nms_hd.c) calls them in the kernels' order (lanes included) and requires the CPU's
 * kept detections bit for bit.
 *
 * The device algorithm, per image (nms_detect's order and ties):
 *   1. count   per anchor        how many candidates it gives (nms_row_count)
 *   2. scan    exclusive sum of the counts: each anchor's first slot (the CPU's candidate order)
 *   3. keys    per anchor        one 64-bit key per candidate (nms_row_keys)
 *   4. sort    per image         keys ascending (a radix sort). The key is (score descending,
 *                                anchor * nc + class ascending): the CPU's stable order by score.
 *                                Keys are unique, so every correct sort gives the same order.
 *   5. gather  per sorted slot   of the first max_nms: the class-offset box and its area
 *   6. sweep   one block         greedy: the next box not suppressed is kept; every lane then
 *                                suppresses its later boxes that overlap it > iou_thres
 *                                (nms_sweep_lane); until max_det are kept. A box's fate depends
 *                                only on the kept boxes before it, so the lanes' order is free.
 * topk_detect (the end-to-end head): anchors keyed by their best score, sorted; the first K
 * anchors' K x nc (score, slot) pairs keyed and sorted; the first K kept when > conf_thres
 * (topk_collect). */
#pragma once
#include "kernels/cuda/hd.h"
#include "kernels/nms.h"

#include <math.h>
#include <stdint.h>

/* Lanes (threads) of the sweep's block: one block per image. */
#define NMS_SWEEP_LANES 256

/* ---- sort keys: ascending key = score descending, then index ascending ---- */

/* 32 bits whose ascending order is the descending order of s (-0 and +0 are equal, as the CPU's
 * comparison says). Scores are never NaN here (sigmoids; candidates passed `> conf`). */
YOLO_HD uint32_t nms_score_desc_bits(float s) {
    uint32_t u = s == 0.0f ? 0u : hd_float_bits(s);
    uint32_t ascending = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ~ascending;
}
YOLO_HD uint64_t nms_key(float s, uint32_t index) {
    return (uint64_t)nms_score_desc_bits(s) << 32 | index;
}
YOLO_HD uint32_t nms_key_index(uint64_t key) {
    return (uint32_t)(key & 0xffffffffu);
}

/* ---- candidates (nms_detect) ---- */

/* The best class of a row's scores: the first maximum. */
YOLO_HD int nms_argmax(const float *s, int nc) {
    int am = 0;
    for (int c = 1; c < nc; c++)
        if (s[c] > s[am]) am = c;
    return am;
}

/* How many candidates an anchor's scores give: 0 unless its best score > ct; then, with multi
 * (multi-label), one per class with score > ct, else 1. */
YOLO_HD int nms_row_count(const float *s, int nc, float ct, int multi) {
    int am = nms_argmax(s, nc);
    if (!(s[am] > ct)) return 0;
    if (!multi) return 1;
    int n = 0;
    for (int c = 0; c < nc; c++) n += s[c] > ct;
    return n;
}

/* Anchor a's candidates' keys in (anchor, class) order (what the CPU appends); returns the count.
 * The index is a * nc + class. */
YOLO_HD int nms_row_keys(const float *s, int nc, float ct, int multi, int a, uint64_t *keys) {
    int am = nms_argmax(s, nc);
    if (!(s[am] > ct)) return 0;
    uint32_t base = (uint32_t)a * (uint32_t)nc;
    if (!multi) {
        keys[0] = nms_key(s[am], base + (uint32_t)am);
        return 1;
    }
    int n = 0;
    for (int c = 0; c < nc; c++)
        if (s[c] > ct) keys[n++] = nms_key(s[c], base + (uint32_t)c);
    return n;
}

/* The candidates that enter the sweep: the best max_nms (a negative max_nms caps nothing, as the
 * CPU's size_t comparison). */
YOLO_HD int nms_cap(int n, int max_nms) {
    return max_nms >= 0 && n > max_nms ? max_nms : n;
}

/* ---- boxes and overlaps ---- */

/* xyxy of a cx, cy, w, h row (Ultralytics' xywh2xyxy in float32). */
YOLO_HD void nms_xyxy(const float *r, float b[4]) {
    float dw = r[2] / 2, dh = r[3] / 2;
    b[0] = r[0] - dw;
    b[1] = r[1] - dh;
    b[2] = r[0] + dw;
    b[3] = r[1] + dh;
}

/* The box moved by cls * max_wh (Ultralytics' class-aware NMS, added in float32; 0 when
 * agnostic) in o[0..4), its area in o[4]. */
YOLO_HD void nms_offset_box(const float b[4], int cls, float max_wh, int agnostic, float o[5]) {
    float off = agnostic ? 0.0f : (float)cls * max_wh;
    for (int j = 0; j < 4; j++) o[j] = b[j] + off;
    o[4] = (o[2] - o[0]) * (o[3] - o[1]);
}

/* IoU of two offset boxes as torchvision's nms computes it (no eps). */
YOLO_HD float nms_overlap(const float *bi, const float *bj) {
    float w = fmaxf(0.0f, fminf(bi[2], bj[2]) - fmaxf(bi[0], bj[0]));
    float h = fmaxf(0.0f, fminf(bi[3], bj[3]) - fmaxf(bi[1], bj[1]));
    float inter = w * h;
    return inter / (bi[4] + bj[4] - inter);
}

/* Kept box bi suppresses bj (torchvision compares the float IoU with the threshold as a double). */
YOLO_HD int nms_suppresses(const float *bi, const float *bj, double iou_thres) {
    return (double)nms_overlap(bi, bj) > iou_thres;
}

/* ---- the sorted list of one image ---- */

/* The detection of candidate `index` (a * nc + class) of an image's rows (cx, cy, w, h, scores). */
YOLO_HD detection nms_candidate(const float *pred, int nc, uint32_t index) {
    const float *r = pred + (size_t)(index / (uint32_t)nc) * (size_t)(4 + nc);
    int c = (int)(index % (uint32_t)nc);
    float b[4];
    nms_xyxy(r, b);
    detection d = {b[0], b[1], b[2], b[3], r[4 + c], c};
    return d;
}

/* Step 5: the offset box (5 floats) of the candidate of sorted key `key`. */
YOLO_HD void nms_sorted_box(const float *pred, int nc, const nms_cfg *cfg, uint64_t key,
                            float o[5]) {
    detection d = nms_candidate(pred, nc, nms_key_index(key));
    float b[4] = {d.x1, d.y1, d.x2, d.y2};
    nms_offset_box(b, d.cls, cfg->max_wh, cfg->agnostic, o);
}

/* Step 6, one lane of `lanes` after sorted box i was kept: suppresses the boxes j = i + 1 + lane,
 * + lanes, ... < n (offset boxes ob[n][5]) that box i overlaps more than iou_thres. */
YOLO_HD void nms_sweep_lane(const float *ob, int n, int i, int lane, int lanes, double iou_thres,
                            uint8_t *sup) {
    const float *bi = ob + (size_t)i * 5;
    for (int j = i + 1 + lane; j < n; j += lanes)
        if (!sup[j] && nms_suppresses(bi, ob + (size_t)j * 5, iou_thres)) sup[j] = 1;
}

/* The first j >= from that is not suppressed, or n. */
YOLO_HD int nms_next_alive(const uint8_t *sup, int from, int n) {
    while (from < n && sup[from]) from++;
    return from;
}

/* ---- top-k (topk_detect: the end-to-end head, rows x1, y1, x2, y2, scores) ---- */

/* Anchor a's key: its best score (first maximum), index a. */
YOLO_HD uint64_t topk_anchor_key(const float *row, int nc, int a) {
    const float *s = row + 4;
    return nms_key(s[nms_argmax(s, nc)], (uint32_t)a);
}

/* Pair (k, c) of the K best anchors (anchor_keys sorted): its class score, index k * nc + c. */
YOLO_HD uint64_t topk_pair_key(const float *pred, int nc, const uint64_t *anchor_keys, int k,
                               int c) {
    const float *r = pred + (size_t)nms_key_index(anchor_keys[k]) * (size_t)(4 + nc);
    return nms_key(r[4 + c], (uint32_t)k * (uint32_t)nc + (uint32_t)c);
}

/* The image's detections from its sorted keys: the first K (anchors when agnostic, else pairs;
 * pair_keys NULL when agnostic) whose score > conf_thres, in order. Returns the count. */
YOLO_HD int topk_collect(const float *pred, int nc, const nms_cfg *cfg, int K,
                         const uint64_t *anchor_keys, const uint64_t *pair_keys, detection *out) {
    int n = 0;
    for (int k = 0; k < K; k++) {
        uint32_t q = nms_key_index(pair_keys ? pair_keys[k] : anchor_keys[k]);
        int a = (int)(pair_keys ? nms_key_index(anchor_keys[q / (uint32_t)nc]) : q);
        const float *r = pred + (size_t)a * (size_t)(4 + nc);
        int c = pair_keys ? (int)(q % (uint32_t)nc) : nms_argmax(r + 4, nc);
        float s = r[4 + c];
        if (s > cfg->conf_thres) {
            detection d = {r[0], r[1], r[2], r[3], s, c};
            out[n++] = d;
        }
    }
    return n;
}
