/* Optimizers (SGD, AdamW, MuSGD), gradient-norm clipping and ModelEMA on flat buffers.
 * See optim.h for the exact update rules; the comments here say why a detail is as it is. */
#include "kernels/optim.h"

#include "common/log.h"

#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Below this many elements a tensor is updated by one thread: the fork costs more. */
#define PAR_MIN 32768

int optim_init(optimizer *o, optim_kind kind, size_t n, const optim_tensor *tensors, int ntensors,
               const optim_group *groups, int ngroups, char *err, size_t errlen) {
    memset(o, 0, sizeof *o);
    if (ngroups < 1 || ngroups > OPTIM_MAX_GROUPS)
        return errf(err, errlen, "optimizer: %d parameter groups (1..%d allowed)", ngroups,
                    OPTIM_MAX_GROUPS);
    for (int i = 0; i < ntensors; i++) {
        const optim_tensor *t = &tensors[i];
        if (t->offset > n || t->numel > n - t->offset)
            return errf(err, errlen, "optimizer: tensor %d range [%zu, +%zu) outside %zu floats", i,
                        t->offset, t->numel, n);
        if (t->group < 0 || t->group >= ngroups)
            return errf(err, errlen, "optimizer: tensor %d has group %d of %d", i, t->group,
                        ngroups);
        if (t->ndim < 1 || t->ndim > OPTIM_MAX_NDIM)
            return errf(err, errlen, "optimizer: tensor %d has ndim %d", i, t->ndim);
        size_t prod = 1;
        for (int d = 0; d < t->ndim; d++) prod *= (size_t)(t->shape[d] > 0 ? t->shape[d] : 0);
        if (prod != t->numel)
            return errf(err, errlen, "optimizer: tensor %d shape has %zu elements, numel %zu", i,
                        prod, t->numel);
    }
    o->kind = kind;
    o->n = n;
    o->ngroups = ngroups;
    memcpy(o->group, groups, (size_t)ngroups * sizeof *groups);
    o->ntensors = ntensors;
    o->tensors = xmalloc((size_t)(ntensors > 0 ? ntensors : 1) * sizeof *tensors);
    if (ntensors > 0) memcpy(o->tensors, tensors, (size_t)ntensors * sizeof *tensors);
    o->m1 = xcalloc(n ? n : 1, sizeof(float));
    o->m2 = kind == OPTIM_SGD ? NULL : xcalloc(n ? n : 1, sizeof(float));
    o->nesterov = 1;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->muon_scale = 0.2;
    o->sgd_scale = 1.0;
    o->ns_bf16 = 1;
    return 0;
}

void optim_adopt_state(optimizer *o, float *m1, float *m2) {
    if (!o->state_adopted) {
        free(o->m1);
        free(o->m2);
    }
    o->m1 = m1;
    o->m2 = m2;
    o->state_adopted = 1;
}

void optim_free(optimizer *o) {
    free(o->tensors);
    if (!o->state_adopted) {
        free(o->m1);
        free(o->m2);
    }
    free(o->work);
    memset(o, 0, sizeof *o);
}

/* torch.lerp's two-sided formula (it differs from a + w (b - a) in float when w >= 0.5). */
static inline float lerpf_torch(float a, float b, float w) {
    return fabsf(w) < 0.5f ? a + w * (b - a) : b - (b - a) * (1.0f - w);
}

/* torch.optim.SGD, dampening 0, buffer starting at zero (PyTorch clones g on the first step, which
 * gives the same value as mu*0 + g). */
static void sgd_range(float *p, const float *g, float *m, size_t n, const optim_group *gr,
                      int nesterov) {
    const float lr = (float)gr->lr, mu = (float)gr->momentum, wd = (float)gr->weight_decay;
    const float nlr = -lr;
    /* one branch-free loop per case so that each vectorises */
    if (mu == 0.0f) {
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float gi = wd != 0.0f ? g[i] + wd * p[i] : g[i];
            p[i] = p[i] + nlr * gi;
        }
    } else if (nesterov) {
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float gi = wd != 0.0f ? g[i] + wd * p[i] : g[i];
            float mi = m[i] * mu + gi;
            m[i] = mi;
            p[i] = p[i] + nlr * (gi + mu * mi);
        }
    } else {
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float gi = wd != 0.0f ? g[i] + wd * p[i] : g[i];
            float mi = m[i] * mu + gi;
            m[i] = mi;
            p[i] = p[i] + nlr * mi;
        }
    }
}

/* torch.optim.AdamW (single-tensor path, amsgrad off, maximize off), on one chunk. (The loop does
 * not vectorise: without -fno-math-errno GCC keeps sqrtf's errno path.) */
typedef struct {
    float decay, w1, b2f, w2, nstep, bc2s, eps;
} adamw_consts;

static void adamw_chunk(float *p, const float *g, float *m, float *v, size_t n,
                        const adamw_consts *k) {
    const float decay = k->decay, w1 = k->w1, b2f = k->b2f, w2 = k->w2, nstep = k->nstep;
    const float bc2s = k->bc2s, eps = k->eps;
    if (w1 < 0.5f) { /* torch.lerp's branch on the weight, hoisted */
#pragma omp simd
        for (size_t i = 0; i < n; i++) {
            float pi = p[i] * decay, gi = g[i];
            float mi = m[i] + w1 * (gi - m[i]);
            float vi = v[i] * b2f + (w2 * gi) * gi;
            m[i] = mi;
            v[i] = vi;
            p[i] = pi + (nstep * mi) / (sqrtf(vi) / bc2s + eps);
        }
    } else {
#pragma omp simd
        for (size_t i = 0; i < n; i++) {
            float pi = p[i] * decay, gi = g[i];
            float mi = gi - (gi - m[i]) * (1.0f - w1);
            float vi = v[i] * b2f + (w2 * gi) * gi;
            m[i] = mi;
            v[i] = vi;
            p[i] = pi + (nstep * mi) / (sqrtf(vi) / bc2s + eps);
        }
    }
}

#define ADAM_CHUNK 8192

static void adamw_range(float *p, const float *g, float *m, float *v, size_t n,
                        const optim_group *gr, double beta2, double eps, long step) {
    const double b1 = gr->momentum;
    const double bc1 = 1.0 - pow(b1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    const adamw_consts k = {.decay = (float)(1.0 - gr->lr * gr->weight_decay),
                            .w1 = (float)(1.0 - b1),
                            .b2f = (float)beta2,
                            .w2 = (float)(1.0 - beta2),
                            .nstep = (float)(-(gr->lr / bc1)),
                            .bc2s = (float)sqrt(bc2),
                            .eps = (float)eps};
    size_t nch = (n + ADAM_CHUNK - 1) / ADAM_CHUNK;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t c = 0; c < nch; c++) {
        size_t lo = c * ADAM_CHUNK, len = lo + ADAM_CHUNK <= n ? ADAM_CHUNK : n - lo;
        adamw_chunk(p + lo, g + lo, m + lo, v + lo, len, &k);
    }
}

/* ---- Newton-Schulz ------------------------------------------------------------------------- */

float optim_bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) { /* inf or nan: keep, quiet the nan */
        if (u & 0x007fffffu) u |= 0x00400000u;
        u &= 0xffff0000u;
    } else {
        u += 0x7fffu + ((u >> 16) & 1u);
        u &= 0xffff0000u;
    }
    memcpy(&x, &u, 4);
    return x;
}

static void round_bf16_n(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = optim_bf16_round(x[i]);
}

/* Row-major C[m][n] = A[m][k] * op(B), op(B) = B[k][n] or B^T with B[n][k]. */
static void gemm(int m, int n, int k, const float *a, const float *b, int b_trans, float *c) {
    dnnl_status_t st =
        dnnl_sgemm('N', b_trans ? 'T' : 'N', m, n, k, 1.0f, a, k, b, b_trans ? k : n, 0.0f, c, n);
    if (st != dnnl_success) FATAL("dnnl_sgemm(%d, %d, %d) failed with status %d", m, n, k, st);
}

size_t optim_ns5_work_floats(int rows, int cols) {
    size_t r = (size_t)(rows < cols ? rows : cols), c = (size_t)(rows < cols ? cols : rows);
    return 2 * r * c + 3 * r * r;
}

void optim_ns5(float *x, int rows, int cols, int bf16, float *work) {
    static const float a = 3.4445f, b = -4.7750f, c = 2.0315f;
    const int tr = rows > cols;
    const int r = tr ? cols : rows, k = tr ? rows : cols; /* iterate on r x k, r <= k */
    const size_t rk = (size_t)r * k, rr = (size_t)r * r;
    float *X = work, *BX = X + rk, *A = BX + rk, *cA = A + rr, *B = cA + rr;
    if (tr) {
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) X[(size_t)j * k + i] = x[(size_t)i * cols + j];
    } else {
        memcpy(X, x, rk * sizeof *X);
    }
    if (bf16) round_bf16_n(X, rk); /* G.bfloat16() */
    double ss = 0;
    for (size_t i = 0; i < rk; i++) ss += (double)X[i] * X[i];
    float nrm = (float)sqrt(ss);
    if (bf16)
        nrm = optim_bf16_round(optim_bf16_round(nrm) + 1e-7f);
    else
        nrm += 1e-7f;
    for (size_t i = 0; i < rk; i++) X[i] = X[i] / nrm;
    if (bf16) round_bf16_n(X, rk);
    for (int it = 0; it < 5; it++) {
        gemm(r, r, k, X, X, 1, A); /* A = X X^T */
        if (bf16) round_bf16_n(A, rr);
        /* Python's "b * A + c * A @ A" is b*A + ((c*A) @ A): * and @ bind equally, left first */
        for (size_t i = 0; i < rr; i++) cA[i] = c * A[i];
        if (bf16) round_bf16_n(cA, rr);
        gemm(r, r, r, cA, A, 0, B);
        if (bf16) round_bf16_n(B, rr);
        for (size_t i = 0; i < rr; i++) {
            float ba = b * A[i];
            if (bf16) ba = optim_bf16_round(ba);
            B[i] = ba + B[i];
        }
        if (bf16) round_bf16_n(B, rr);
        gemm(r, k, r, B, X, 0, BX); /* B X */
        if (bf16) round_bf16_n(BX, rk);
        for (size_t i = 0; i < rk; i++) {
            float ax = a * X[i];
            if (bf16) ax = optim_bf16_round(ax);
            X[i] = ax + BX[i];
        }
        if (bf16) round_bf16_n(X, rk);
    }
    if (tr) {
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) x[(size_t)i * cols + j] = X[(size_t)j * k + i];
    } else {
        memcpy(x, X, rk * sizeof *X);
    }
}

/* MuSGD on one tensor of a use_muon group: the Muon step, then Nesterov SGD on the new p. */
static void musgd_muon_tensor(optimizer *o, const optim_tensor *t, float *p, const float *g,
                              float *m1, float *m2, const optim_group *gr) {
    const size_t n = t->numel;
    const float mu = (float)gr->momentum, w = (float)(1.0 - gr->momentum);
    const int rows = t->shape[0], cols = (int)(n / (size_t)rows);
    size_t need = n + optim_ns5_work_floats(rows, cols);
    if (o->work_n < need) {
        free(o->work);
        o->work = xmalloc(need * sizeof(float));
        o->work_n = need;
    }
    float *u = o->work;
    for (size_t i = 0; i < n; i++) {
        float mi = lerpf_torch(m1[i], g[i], w); /* momentum.lerp_(grad, 1 - beta) */
        m1[i] = mi;
        u[i] = o->nesterov ? lerpf_torch(g[i], mi, mu) : mi; /* grad.lerp(momentum, beta) */
    }
    optim_ns5(u, rows, cols, o->ns_bf16, u + n);
    /* sqrt(max(1, size(-2)/size(-1))) of the GRADIENT's shape: kh/kw for a conv weight */
    double ratio = (double)t->shape[t->ndim - 2] / (double)t->shape[t->ndim - 1];
    float scale = (float)sqrt(ratio > 1.0 ? ratio : 1.0);
    const float alpha = (float)(-(gr->lr * o->muon_scale));
    for (size_t i = 0; i < n; i++) {
        float ui = u[i];
        if (scale != 1.0f) {
            ui *= scale;
            if (o->ns_bf16) ui = optim_bf16_round(ui);
        }
        p[i] = p[i] + alpha * ui;
    }
    optim_group sg = *gr;
    sg.lr = gr->lr * o->sgd_scale;
    sgd_range(p, g, m2, n, &sg, o->nesterov);
}

void optim_step(optimizer *o, float *params, const float *grads) {
    o->step++;
    for (int ti = 0; ti < o->ntensors; ti++) {
        const optim_tensor *t = &o->tensors[ti];
        const optim_group *gr = &o->group[t->group];
        float *p = params + t->offset;
        const float *g = grads + t->offset;
        float *m1 = o->m1 + t->offset;
        float *m2 = o->m2 ? o->m2 + t->offset : NULL;
        switch (o->kind) {
        case OPTIM_SGD:
            sgd_range(p, g, m1, t->numel, gr, o->nesterov);
            break;
        case OPTIM_ADAMW:
            adamw_range(p, g, m1, m2, t->numel, gr, o->beta2, o->eps, o->step);
            break;
        case OPTIM_MUSGD:
            if (gr->use_muon && t->ndim >= 2)
                musgd_muon_tensor(o, t, p, g, m1, m2, gr);
            else
                sgd_range(p, g, m1, t->numel, gr, o->nesterov);
            break;
        }
    }
}

/* ---- clipping ------------------------------------------------------------------------------ */

/* Fixed chunks summed in a fixed order: the norm does not depend on the thread count. */
#define CLIP_CHUNK 8192

double optim_clip_grad_norm(float *grads, size_t n, double max_norm) {
    size_t nch = (n + CLIP_CHUNK - 1) / CLIP_CHUNK;
    double *part = xcalloc(nch ? nch : 1, sizeof *part);
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t c = 0; c < nch; c++) {
        size_t lo = c * CLIP_CHUNK, hi = lo + CLIP_CHUNK < n ? lo + CLIP_CHUNK : n;
        double s = 0;
        for (size_t i = lo; i < hi; i++) s += (double)grads[i] * grads[i];
        part[c] = s;
    }
    double ss = 0;
    for (size_t c = 0; c < nch; c++) ss += part[c];
    free(part);
    double total = sqrt(ss);
    double coef = max_norm / (total + 1e-6);
    if (coef < 1.0) { /* also false for a NaN norm: grads are left as they are */
        const float cf = (float)coef;
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++) grads[i] *= cf;
    }
    return total;
}

/* ---- groups -------------------------------------------------------------------------------- */

optim_tag optim_tag_of(const char *fullname, int ndim, int in_norm_module, int use_muon) {
    if (use_muon == OPTIM_MUON_NDIM_2_4 ? ndim == 2 || ndim == 4 : use_muon && ndim >= 2)
        return PG_MUON;
    if (strstr(fullname, "bias")) return PG_BIAS;
    if (in_norm_module || strstr(fullname, "logit_scale")) return PG_BN;
    return PG_WEIGHT;
}

int optim_lr3x_match(const char *fullname) {
    return (strstr(fullname, "23") && strstr(fullname, "cv3")) ||
           strstr(fullname, "proto.semseg") != NULL;
}

int optim_lr3x_match_head(const char *fullname, int head_layer) {
    char a[48], b[48];
    snprintf(a, sizeof a, "model.%d.cv3.", head_layer);
    snprintf(b, sizeof b, "model.%d.one2one_cv3.", head_layer);
    return !strncmp(fullname, a, strlen(a)) || !strncmp(fullname, b, strlen(b)) ||
           strstr(fullname, "proto.semseg") || strstr(fullname, "SemanticSegment");
}

int optim_group_index(optim_kind kind, optim_tag tag, int lr3x) {
    if (kind != OPTIM_MUSGD) return tag == PG_MUON ? PG_WEIGHT : (int)tag;
    return 2 * (int)tag + (lr3x ? 0 : 1);
}

int optim_default_groups(optim_kind kind, double lr, double momentum, double decay,
                         optim_group out[OPTIM_MAX_GROUPS]) {
    static const optim_tag order[4] = {PG_WEIGHT, PG_BN, PG_BIAS, PG_MUON};
    int ntags = kind == OPTIM_MUSGD ? 4 : 3, ng = 0;
    for (int ti = 0; ti < ntags; ti++) {
        optim_tag tag = order[ti];
        optim_group g = {.tag = tag,
                         .momentum = momentum,
                         .weight_decay = (tag == PG_WEIGHT || tag == PG_MUON) ? decay : 0.0,
                         .use_muon = tag == PG_MUON};
        if (kind == OPTIM_MUSGD) {
            g.initial_lr = g.lr = 3.0 * lr;
            out[ng++] = g;
        }
        g.initial_lr = g.lr = lr;
        out[ng++] = g;
    }
    return ng;
}

long optim_auto_iterations(long n_train, int batch, int nbs, int epochs) {
    long div = batch > nbs ? batch : nbs;
    return (n_train + div - 1) / div * (long)epochs;
}

optim_kind optim_auto(long iterations, int nc, double *lr, double *momentum) {
    *momentum = 0.9;
    if (iterations > 10000) {
        *lr = 0.01;
        return OPTIM_MUSGD;
    }
    if (nc <= 0) nc = 10;
    /* Python round(x, 6): correctly rounded decimal, as printf does from the exact binary value */
    char buf[64];
    snprintf(buf, sizeof buf, "%.6f", 0.002 * 5 / (4 + nc));
    *lr = strtod(buf, NULL);
    return OPTIM_ADAMW;
}

/* ---- EMA ----------------------------------------------------------------------------------- */

void ema_init(model_ema *e) {
    e->updates = 0;
    e->decay = 0.9999;
    e->tau = 2000.0;
}

double ema_decay_at(const model_ema *e, long updates) {
    return e->decay * (1.0 - exp(-(double)updates / e->tau));
}

void ema_blend(float *ema, const float *model, size_t n, double d) {
    const float df = (float)d, od = (float)(1.0 - d);
    /* v *= d; v += (1 - d) * model: two roundings, as PyTorch does it */
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float v = ema[i] * df;
        float t = od * model[i];
        ema[i] = v + t;
    }
}

double ema_advance(model_ema *e) {
    e->updates++;
    return ema_decay_at(e, e->updates);
}

double ema_update(model_ema *e, int npairs, float *const *ema, const float *const *model,
                  const size_t *n) {
    double d = ema_advance(e);
    for (int i = 0; i < npairs; i++) ema_blend(ema[i], model[i], n[i], d);
    return d;
}
