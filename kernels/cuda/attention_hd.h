/* Index math of the attention core (kernels/cuda/attention.cu) for the CUDA kernels and the CPU
 * tests. Twin: kernels/attention.c (qkv NHWC [n][hw][heads (2 kd + hd)], out / v_out
 * [n][hw][heads hd], probs [n][heads][hw][hw]). */
#pragma once
#include "kernels/attention.h"
#include "kernels/cuda/hd.h"

#include <stddef.h>

/* Where (image, head) number bh = image * heads + head starts, in floats. */
typedef struct attn_at {
    size_t q, k, v; /* in qkv (and dqkv) */
    size_t o;       /* in out, v_out, dout, dv */
    size_t p;       /* in probs */
} attn_at;
YOLO_HD attn_at attn_offsets(const attention_desc *d, int bh) {
    int b = bh / d->heads, h = bh % d->heads;
    size_t cq = (size_t)d->heads * (2 * d->kd + d->hd), co = (size_t)d->heads * d->hd;
    attn_at a;
    a.q = (size_t)b * d->hw * cq + (size_t)h * (2 * d->kd + d->hd);
    a.k = a.q + (size_t)d->kd;
    a.v = a.q + 2 * (size_t)d->kd;
    a.o = (size_t)b * d->hw * co + (size_t)h * d->hd;
    a.p = (size_t)bh * d->hw * d->hw;
    return a;
}

/* Element e of the v_out tensor [n][hw][heads hd]: the qkv element it copies (v of that head).
 * The same pair maps dv onto dqkv in backward. */
YOLO_HD size_t attn_v_src(const attention_desc *d, size_t e) {
    size_t co = (size_t)d->heads * d->hd, cq = (size_t)d->heads * (2 * d->kd + d->hd);
    size_t row = e / co, ch = e % co; /* row = image * hw + pixel */
    size_t h = ch / (size_t)d->hd, c = ch % (size_t)d->hd;
    return row * cq + h * (size_t)(2 * d->kd + d->hd) + 2 * (size_t)d->kd + c;
}
