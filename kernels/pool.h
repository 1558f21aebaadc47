/* Max pooling (SPPF: k 5, stride 1, pad 2; padding never wins, as PyTorch). NHWC.
 * argmax [n][oh][ow][c] stores the flat input index chosen, for backward (dx[argmax] += dy). */
#pragma once
#include <stdint.h>

void maxpool_forward(int n, int h, int w, int c, int k, int stride, int pad, const float *x,
                     float *y, int32_t *argmax);
void maxpool_backward(int n, int oh, int ow, int c, const float *dy, const int32_t *argmax,
                      float *dx);
