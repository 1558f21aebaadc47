/* Distribution Focal Loss decode (DFL): per anchor, 4 sides (l, t, r, b) of reg_max bins each;
 * channel = side*reg_max + bin. dist[side] = sum_b b * softmax(logits)[b], in grid units.
 * logits [rows][4*reg_max] with row stride ld (floats), dist [rows][4].
 * Backward accumulates into dlogits (same row stride). */
#pragma once

void dfl_forward(int rows, int reg_max, const float *logits, int ld, float *dist);
void dfl_backward(int rows, int reg_max, const float *logits, int ld, const float *ddist,
                  float *dlogits);

/* Eval decode of detection-head outputs, as Ultralytics' Detect._inference: per row (image-major,
 * anchor a = row % anchors) the DFL expectation (reg_max > 1) or the raw distances (reg_max 1),
 * ltrb around the anchor centre, times the anchor's stride: cx, cy, w, h in pixels, or x1, y1,
 * x2, y2 with xyxy (end2end models); then the sigmoid of the nc class logits.
 * logits [rows][ld] (4*reg_max box channels, then nc class logits), anchor_pts [anchors][2],
 * anchor_str [anchors], out [rows][4 + nc]. */
typedef struct detect_decode_desc {
    int rows, anchors, reg_max, nc, ld;
    int xyxy;
} detect_decode_desc;
void detect_decode(const detect_decode_desc *d, const float *logits, const float *anchor_pts,
                   const float *anchor_str, float *out);
