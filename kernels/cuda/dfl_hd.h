/* Detection-head decode (kernels/cuda/dfl.cu), one output row, for the CUDA kernel and the CPU
 * tests. Twin: kernels/dfl.c's detect_decode (DFL expectation with exp_fast, boxes in pixels,
 * class sigmoids with expf). */
#pragma once
#include "kernels/cuda/hd.h"
#include "kernels/dfl.h"
#include "kernels/fast_exp.h"

#include <math.h>
#include <stddef.h>

enum { DFL_MAX_BINS = 64 }; /* reg_max of the decode kernel (Ultralytics: 16, or 1) */

/* sum_b b softmax(l)[b], as dfl.c's side_softmax */
YOLO_HD float dfl_expect(int reg_max, const float *l) {
    float p[DFL_MAX_BINS];
    float mx = l[0];
    for (int b = 1; b < reg_max; b++) mx = l[b] > mx ? l[b] : mx;
    float sum = 0.0f;
    for (int b = 0; b < reg_max; b++) {
        p[b] = exp_fast(l[b] - mx);
        sum += p[b];
    }
    float inv = 1.0f / sum, e = 0.0f;
    for (int b = 0; b < reg_max; b++) e += (float)b * (p[b] * inv);
    return e;
}

YOLO_HD void detect_decode_row(const detect_decode_desc *d, const float *logits,
                               const float *anchor_pts, const float *anchor_str, size_t r,
                               float *out) {
    const int no = d->ld, nc = d->nc, rm = d->reg_max;
    const float *l = logits + r * (size_t)no;
    float ds[4];
    for (int k = 0; k < 4; k++) ds[k] = rm > 1 ? dfl_expect(rm, l + k * rm) : l[k];
    int a = (int)(r % (size_t)d->anchors);
    float ax = anchor_pts[2 * a], ay = anchor_pts[2 * a + 1], s = anchor_str[a];
    float x1 = ax - ds[0], y1 = ay - ds[1], x2 = ax + ds[2], y2 = ay + ds[3];
    float *q = out + r * (size_t)(4 + nc);
    if (d->xyxy) {
        q[0] = x1 * s, q[1] = y1 * s, q[2] = x2 * s, q[3] = y2 * s;
    } else {
        q[0] = (x1 + x2) * 0.5f * s, q[1] = (y1 + y2) * 0.5f * s;
        q[2] = (x2 - x1) * s, q[3] = (y2 - y1) * s;
    }
    const float *cl = l + 4 * rm;
    for (int c = 0; c < nc; c++) q[4 + c] = 1.0f / (1.0f + expf(-cl[c]));
}
