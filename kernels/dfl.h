/* Distribution Focal Loss decode (DFL): per anchor, 4 sides (l, t, r, b) of reg_max bins each;
 * channel = side*reg_max + bin. dist[side] = sum_b b * softmax(logits)[b], in grid units.
 * logits [rows][4*reg_max] with row stride ld (floats), dist [rows][4].
 * Backward accumulates into dlogits (same row stride). */
#pragma once

void dfl_forward(int rows, int reg_max, const float *logits, int ld, float *dist);
void dfl_backward(int rows, int reg_max, const float *logits, int ld, const float *ddist,
                  float *dlogits);
