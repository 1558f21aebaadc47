/* The core of Ultralytics' Attention (C2PSA / PSABlock) between the qkv conv and pe/proj.
 * qkv is NHWC [n][hw][heads * (2 kd + hd)]: channel head*(2kd+hd) + j holds row j of that head,
 * q = rows [0,kd), k = [kd,2kd), v = [2kd, 2kd+hd).
 * Forward: S = scale q^T k per head (i query pixel, j key pixel), P = softmax_j S,
 * out[i][head*hd + c] = sum_j v[c][j] P[i][j]; also writes v_out[i][head*hd + c] = v[c][i]
 * (the V tensor the pe conv reads; v_out may be NULL). probs [n][heads][hw][hw] is saved for
 * backward.
 * Backward accumulates into dqkv from dout (grad of out) and dv (grad of v_out; may be NULL). */
#pragma once

typedef struct attention_desc {
    int n, hw, heads, kd, hd;
    float scale; /* kd^-0.5 */
} attention_desc;

void attention_forward(const attention_desc *d, const float *qkv, float *out, float *v_out,
                       float *probs);
void attention_backward(const attention_desc *d, const float *qkv, const float *probs,
                        const float *dout, const float *dv, float *dqkv);
