/* The optimizer, EMA and gradient-clipping arithmetic (kernels/cuda/optim.cu) for the CUDA kernels
 * and the CPU tests. Twin: kernels/optim.c, whose per-element operations these repeat in order
 * (scalars computed in double on the host, applied in float). */
#pragma once
#include "kernels/cuda/hd.h"
#include "kernels/optim.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Per-group float constants of one step, computed once on the host. */
typedef struct optim_gk {
    float nlr, mu, wd;                          /* SGD / MuSGD's SGD part */
    float decay, w1, b2f, w2, nstep, bc2s, eps; /* AdamW (adamw_range's constants) */
} optim_gk;

typedef struct optim_step_k {
    int kind, nesterov;
    optim_gk g[OPTIM_MAX_GROUPS];
} optim_step_k;

/* Group map values besides a group index: elements no tensor covers (never touched) and elements
 * of MuSGD's Muon tensors (updated per tensor). */
enum { OPTIM_MAP_NONE = 255, OPTIM_MAP_MUON = 254 };

YOLO_HD optim_gk optim_group_consts(const optim_group *gr, double beta2, double eps, long step) {
    optim_gk k;
    float lr = (float)gr->lr;
    k.nlr = -lr;
    k.mu = (float)gr->momentum;
    k.wd = (float)gr->weight_decay;
    double b1 = gr->momentum;
    double bc1 = 1.0 - pow(b1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    k.decay = (float)(1.0 - gr->lr * gr->weight_decay);
    k.w1 = (float)(1.0 - b1);
    k.b2f = (float)beta2;
    k.w2 = (float)(1.0 - beta2);
    k.nstep = (float)(-(gr->lr / bc1));
    k.bc2s = (float)sqrt(bc2);
    k.eps = (float)eps;
    return k;
}

/* torch.lerp's two-sided formula */
YOLO_HD float lerp_torch_hd(float a, float b, float w) {
    return fabsf(w) < 0.5f ? a + w * (b - a) : b - (b - a) * (1.0f - w);
}

/* sgd_range, one element (m untouched when momentum is 0) */
YOLO_HD void sgd_1(const optim_gk *k, int nesterov, float *p, float g, float *m) {
    float pi = *p;
    float gi = k->wd != 0.0f ? g + k->wd * pi : g;
    if (k->mu == 0.0f) {
        *p = pi + k->nlr * gi;
        return;
    }
    float mi = *m * k->mu + gi;
    *m = mi;
    *p = nesterov ? pi + k->nlr * (gi + k->mu * mi) : pi + k->nlr * mi;
}

/* adamw_chunk, one element */
YOLO_HD void adamw_1(const optim_gk *k, float *p, float g, float *m, float *v) {
    float pi = *p * k->decay, mo = *m;
    float mi = k->w1 < 0.5f ? mo + k->w1 * (g - mo) : g - (g - mo) * (1.0f - k->w1);
    float vi = *v * k->b2f + (k->w2 * g) * g;
    *m = mi;
    *v = vi;
    *p = pi + (k->nstep * mi) / (sqrtf(vi) / k->bc2s + k->eps);
}

/* One element of the fused pass: the update of its group (gi from the map), or nothing. */
YOLO_HD void optim_fused_1(const optim_step_k *k, unsigned gi, float *p, float g, float *m1,
                           float *m2) {
    if (gi >= OPTIM_MAP_MUON) return;
    if (k->kind == OPTIM_ADAMW)
        adamw_1(&k->g[gi], p, g, m1, m2);
    else
        sgd_1(&k->g[gi], k->nesterov, p, g, m1);
}

/* Host: the constants of the step about to be taken (o->step already counts it). */
static inline optim_step_k optim_step_consts(const optimizer *o) {
    optim_step_k k;
    memset(&k, 0, sizeof k);
    k.kind = o->kind;
    k.nesterov = o->nesterov;
    for (int i = 0; i < o->ngroups; i++)
        k.g[i] = optim_group_consts(&o->group[i], o->beta2, o->eps, o->step);
    return k;
}

/* Whether a tensor takes MuSGD's Muon path (optim_step's condition). */
YOLO_HD int optim_is_muon(const optimizer *o, const optim_tensor *t) {
    return o->kind == OPTIM_MUSGD && o->group[t->group].use_muon && t->ndim >= 2;
}

/* Host: the per-element group map of the fused pass, n entries. */
static inline void optim_fill_map(const optimizer *o, uint8_t *map) {
    memset(map, OPTIM_MAP_NONE, o->n);
    for (int i = 0; i < o->ntensors; i++) {
        const optim_tensor *t = &o->tensors[i];
        memset(map + t->offset, optim_is_muon(o, t) ? OPTIM_MAP_MUON : t->group, t->numel);
    }
}

/* ema_blend, one element: two roundings, as PyTorch */
YOLO_HD float ema_1(float e, float model, float df, float od) {
    float v = e * df;
    float t = od * model;
    return v + t;
}

/* optim_bf16_round: round to nearest even, inf kept, NaN quietened */
YOLO_HD float bf16_round_hd(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) {
        if (u & 0x007fffffu) u |= 0x00400000u;
        u &= 0xffff0000u;
    } else {
        u += 0x7fffu + ((u >> 16) & 1u);
        u &= 0xffff0000u;
    }
    memcpy(&x, &u, 4);
    return x;
}

/* MuSGD's Muon step, element i: momentum lerp and the (nesterov) update direction */
YOLO_HD float muon_momentum_1(float *m1, float g, float mu, float w, int nesterov) {
    float mi = lerp_torch_hd(*m1, g, w);
    *m1 = mi;
    return nesterov ? lerp_torch_hd(g, mi, mu) : mi;
}
/* ... and p += alpha * scale * O (rounded to bf16 after the scaling with ns_bf16) */
YOLO_HD float muon_apply_1(float p, float o, float scale, float alpha, int bf16) {
    if (scale != 1.0f) {
        o *= scale;
        if (bf16) o = bf16_round_hd(o);
    }
    return p + alpha * o;
}

/* Host: the constants of one Muon tensor's step (musgd_muon_tensor's): momentum and lerp weight,
 * the shape factor sqrt(max(1, s[-2]/s[-1])), the update's -lr muon_scale, and the SGD part's
 * group constants at lr sgd_scale. */
typedef struct muon_k {
    float mu, w, scale, alpha;
    optim_gk sgd;
} muon_k;
static inline muon_k optim_muon_consts(const optimizer *o, const optim_tensor *t) {
    const optim_group *gr = &o->group[t->group];
    muon_k k;
    k.mu = (float)gr->momentum;
    k.w = (float)(1.0 - gr->momentum);
    double ratio = (double)t->shape[t->ndim - 2] / (double)t->shape[t->ndim - 1];
    k.scale = (float)sqrt(ratio > 1.0 ? ratio : 1.0);
    k.alpha = (float)(-(gr->lr * o->muon_scale));
    optim_group sg = *gr;
    sg.lr = gr->lr * o->sgd_scale;
    k.sgd = optim_group_consts(&sg, o->beta2, o->eps, o->step);
    return k;
}

/* ---- the global gradient norm: fixed-order sums in double ---- */
/* Thread t of `threads` (over the whole grid): sum of g[i]^2 for i = t, t + threads, ... < n. */
YOLO_HD double sumsq_thread(const float *g, size_t n, size_t t, size_t threads) {
    double s = 0;
    for (size_t i = t; i < n; i += threads) s += (double)g[i] * g[i];
    return s;
}
/* v[0] + v[1] + ... in order */
YOLO_HD double sum_in_order(const double *v, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += v[i];
    return s;
}
/* optim_clip_grad_norm's factor: > 0 to scale by it, 0 to leave the gradients (also for a NaN
 * norm) */
YOLO_HD float clip_factor(double total, double max_norm) {
    double coef = max_norm / (total + 1e-6);
    return coef < 1.0 ? (float)coef : 0.0f;
}
