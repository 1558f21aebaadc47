/* Optimizers (SGD, AdamW, MuSGD), gradient-norm clipping and ModelEMA on flat buffers.
 * See optim.h for the exact update rules; the comments here say why a detail is as it is. */
#include "kernels/optim.h"

#include "common/log.h"

#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdbool.h>
#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif
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
 * gives the same value as mu*0 + g), on one chunk, one thread. */
static void sgd_chunk(float *p, const float *g, float *m, size_t n, const optim_group *gr,
                      int nesterov) {
    const float lr = (float)gr->lr, mu = (float)gr->momentum, wd = (float)gr->weight_decay;
    const float nlr = -lr;
    /* one branch-free loop per case so that each vectorises */
    if (mu == 0.0f) {
#pragma omp simd
        for (size_t i = 0; i < n; i++) {
            float gi = wd != 0.0f ? g[i] + wd * p[i] : g[i];
            p[i] = p[i] + nlr * gi;
        }
    } else if (nesterov) {
#pragma omp simd
        for (size_t i = 0; i < n; i++) {
            float gi = wd != 0.0f ? g[i] + wd * p[i] : g[i];
            float mi = m[i] * mu + gi;
            m[i] = mi;
            p[i] = p[i] + nlr * (gi + mu * mi);
        }
    } else {
#pragma omp simd
        for (size_t i = 0; i < n; i++) {
            float gi = wd != 0.0f ? g[i] + wd * p[i] : g[i];
            float mi = m[i] * mu + gi;
            m[i] = mi;
            p[i] = p[i] + nlr * mi;
        }
    }
}

#define SGD_CHUNK 8192

static void sgd_range(float *p, const float *g, float *m, size_t n, const optim_group *gr,
                      int nesterov) {
    size_t nch = (n + SGD_CHUNK - 1) / SGD_CHUNK;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t c = 0; c < nch; c++) {
        size_t lo = c * SGD_CHUNK, len = lo + SGD_CHUNK <= n ? SGD_CHUNK : n - lo;
        sgd_chunk(p + lo, g + lo, m ? m + lo : NULL, len, gr, nesterov);
    }
}

/* torch.optim.AdamW (single-tensor path, amsgrad off, maximize off), on one chunk. */
typedef struct {
    float decay, w1, b2f, w2, nstep, bc2s, eps;
} adamw_consts;

/* The scalar loop does not vectorise (without -fno-math-errno GCC keeps sqrtf's errno path), so
 * the leading multiple of the vector width runs here: the scalar loop's expressions, operation for
 * operation, on GCC vectors (no contraction under -std=c17), with vsqrtps, which rounds as sqrtf
 * does: the same bits. Returns how many elements it did. */
#if defined(__AVX512F__) || defined(__AVX__)
#if defined(__AVX512F__)
typedef float vfloat __attribute__((vector_size(64)));
static inline vfloat vsqrt(vfloat x) {
    return (vfloat)_mm512_sqrt_ps((__m512)x);
}
#else
typedef float vfloat __attribute__((vector_size(32)));
static inline vfloat vsqrt(vfloat x) {
    return (vfloat)_mm256_sqrt_ps((__m256)x);
}
#endif
#define VW ((size_t)(sizeof(vfloat) / sizeof(float)))
static inline vfloat vload(const float *x) {
    vfloat v;
    memcpy(&v, x, sizeof v);
    return v;
}
static inline void vstore(float *x, vfloat v) {
    memcpy(x, &v, sizeof v);
}
static size_t adamw_vector(float *p, const float *g, float *m, float *v, size_t n,
                           const adamw_consts *k) {
    const float decay = k->decay, w1 = k->w1, b2f = k->b2f, w2 = k->w2, nstep = k->nstep;
    const float bc2s = k->bc2s, eps = k->eps, w1c = 1.0f - w1;
    const size_t nv = n / VW * VW;
    for (size_t i = 0; i < nv; i += VW) {
        vfloat pi = vload(p + i) * decay, gi = vload(g + i), mo = vload(m + i);
        vfloat mi;
        if (w1 < 0.5f) /* torch.lerp's two branches, as below */
            mi = mo + w1 * (gi - mo);
        else
            mi = gi - (gi - mo) * w1c;
        vfloat vi = vload(v + i) * b2f + (w2 * gi) * gi;
        vstore(m + i, mi);
        vstore(v + i, vi);
        vstore(p + i, pi + (nstep * mi) / (vsqrt(vi) / bc2s + eps));
    }
    return nv;
}
#else
static size_t adamw_vector(float *p, const float *g, float *m, float *v, size_t n,
                           const adamw_consts *k) {
    (void)p, (void)g, (void)m, (void)v, (void)n, (void)k;
    return 0;
}
#endif

static void adamw_chunk(float *p, const float *g, float *m, float *v, size_t n,
                        const adamw_consts *k) {
    const float decay = k->decay, w1 = k->w1, b2f = k->b2f, w2 = k->w2, nstep = k->nstep;
    const float bc2s = k->bc2s, eps = k->eps;
    const size_t done = adamw_vector(p, g, m, v, n, k);
    p += done, g += done, m += done, v += done, n -= done;
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

/* The step's scalars of one group (bias corrections of step t), computed in double. */
static adamw_consts adamw_consts_of(const optim_group *gr, double beta2, double eps, long step) {
    const double b1 = gr->momentum;
    const double bc1 = 1.0 - pow(b1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    return (adamw_consts){.decay = (float)(1.0 - gr->lr * gr->weight_decay),
                          .w1 = (float)(1.0 - b1),
                          .b2f = (float)beta2,
                          .w2 = (float)(1.0 - beta2),
                          .nstep = (float)(-(gr->lr / bc1)),
                          .bc2s = (float)sqrt(bc2),
                          .eps = (float)eps};
}

static void adamw_range(float *p, const float *g, float *m, float *v, size_t n,
                        const optim_group *gr, double beta2, double eps, long step) {
    const adamw_consts k = adamw_consts_of(gr, beta2, eps, step);
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

static double grad_norm(const float *grads, size_t n) {
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
    return sqrt(ss);
}

double optim_clip_grad_norm(float *grads, size_t n, double max_norm) {
    double total = grad_norm(grads, n);
    double coef = max_norm / (total + 1e-6);
    if (coef < 1.0) { /* also false for a NaN norm: grads are left as they are */
        const float cf = (float)coef;
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
        for (size_t i = 0; i < n; i++) grads[i] *= cf;
    }
    return total;
}

/* ---- the fused update ---------------------------------------------------------------------- */

/* v *= d; v += (1 - d) * model: two roundings, as PyTorch does it */
static inline float ema_one(float e, float m, float df, float od) {
    float v = e * df;
    float t = od * m;
    return v + t;
}

/* optim_update's unit of work: up to PIECE floats of one tensor (tensor >= 0) or of a range no
 * tensor covers (-1: frozen parameters, which only the EMA and the zeroing touch). */
#define PIECE 8192
typedef struct optim_piece {
    int tensor;
    size_t lo, len;
} optim_piece;

static bool is_muon(const optimizer *o, const optim_tensor *t) {
    return o->kind == OPTIM_MUSGD && o->group[t->group].use_muon && t->ndim >= 2;
}

typedef struct {
    size_t offset;
    int index;
} tensor_at;
static int by_offset(const void *a, const void *b) {
    const tensor_at *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

typedef struct {
    optim_piece *at;
    int n, cap;
} piece_list;

static void add_pieces(piece_list *l, int tensor, size_t lo, size_t hi) {
    for (size_t x = lo; x < hi; x += PIECE) {
        if (l->n == l->cap) {
            l->cap = 2 * l->cap + 64;
            l->at = xrealloc(l->at, (size_t)l->cap * sizeof *l->at);
        }
        l->at[l->n++] = (optim_piece){tensor, x, hi - x < PIECE ? hi - x : PIECE};
    }
}

/* The work list over [0, n) in offset order (a few hundred entries, built per call: microseconds);
 * Muon tensors are left out (updated whole). -1 when tensors overlap. */
static int build_pieces(const optimizer *o, piece_list *l) {
    int nt = o->ntensors, rc = 0;
    tensor_at *ta = xmalloc((size_t)(nt > 0 ? nt : 1) * sizeof *ta);
    for (int i = 0; i < nt; i++) ta[i] = (tensor_at){o->tensors[i].offset, i};
    qsort(ta, (size_t)nt, sizeof *ta, by_offset);
    size_t cur = 0;
    for (int k = 0; k < nt && rc == 0; k++) {
        const optim_tensor *t = &o->tensors[ta[k].index];
        if (t->offset < cur) { /* overlap: no element may be updated twice */
            rc = -1;
            break;
        }
        add_pieces(l, -1, cur, t->offset);
        if (!is_muon(o, t)) add_pieces(l, ta[k].index, t->offset, t->offset + t->numel);
        cur = t->offset + t->numel;
    }
    if (rc == 0) add_pieces(l, -1, cur, o->n);
    free(ta);
    return rc;
}

typedef struct {
    float *params, *grads, *ema;
    int clip;
    float cf, df, od;
    adamw_consts k[OPTIM_MAX_GROUPS];
} update_args;

/* EMA blend and zeroing of [lo, lo + n) once the parameters there are final. */
static void ema_and_zero(const update_args *u, size_t lo, size_t n) {
    if (u->ema) {
        float *e = u->ema + lo;
        const float *p = u->params + lo;
#pragma omp simd
        for (size_t i = 0; i < n; i++) e[i] = ema_one(e[i], p[i], u->df, u->od);
    }
    memset(u->grads + lo, 0, n * sizeof *u->grads);
}

static void clip_range(const update_args *u, size_t lo, size_t n) {
    if (!u->clip) return;
    float *g = u->grads + lo;
#pragma omp simd
    for (size_t i = 0; i < n; i++) g[i] *= u->cf;
}

static void update_piece(optimizer *o, const optim_piece *pc, const update_args *u) {
    if (pc->tensor >= 0) {
        const optim_tensor *t = &o->tensors[pc->tensor];
        const optim_group *gr = &o->group[t->group];
        float *p = u->params + pc->lo, *g = u->grads + pc->lo, *m1 = o->m1 + pc->lo;
        clip_range(u, pc->lo, pc->len);
        if (o->kind == OPTIM_ADAMW)
            adamw_chunk(p, g, m1, o->m2 + pc->lo, pc->len, &u->k[t->group]);
        else /* SGD, and MuSGD's groups without Muon */
            sgd_chunk(p, g, m1, pc->len, gr, o->nesterov);
    }
    ema_and_zero(u, pc->lo, pc->len);
}

double optim_update(optimizer *o, float *params, float *grads, double max_norm, float *ema,
                    double ema_d) {
    const size_t n = o->n;
    piece_list l = {0};
    if (build_pieces(o, &l) != 0) { /* overlapping tensors: the ops in turn, whole buffers */
        free(l.at);
        double total = optim_clip_grad_norm(grads, n, max_norm);
        optim_step(o, params, grads);
        memset(grads, 0, n * sizeof *grads);
        if (ema) ema_blend(ema, params, n, ema_d);
        return total;
    }
    double total = grad_norm(grads, n), coef = max_norm / (total + 1e-6);
    update_args u = {.params = params,
                     .grads = grads,
                     .ema = ema,
                     .clip = coef < 1.0, /* false for a NaN norm, as optim_clip_grad_norm */
                     .cf = (float)coef,
                     .df = (float)ema_d,
                     .od = (float)(1.0 - ema_d)};
    o->step++;
    if (o->kind == OPTIM_ADAMW)
        for (int g = 0; g < o->ngroups; g++)
            u.k[g] = adamw_consts_of(&o->group[g], o->beta2, o->eps, o->step);
    for (int ti = 0; ti < o->ntensors; ti++) { /* Muon: NS5 needs the whole tensor */
        const optim_tensor *t = &o->tensors[ti];
        if (!is_muon(o, t)) continue;
        clip_range(&u, t->offset, t->numel);
        musgd_muon_tensor(o, t, params + t->offset, grads + t->offset, o->m1 + t->offset,
                          o->m2 + t->offset, &o->group[t->group]);
        ema_and_zero(&u, t->offset, t->numel);
    }
    const int np = l.n;
#pragma omp parallel for schedule(dynamic, 4) if (n >= PAR_MIN)
    for (int k = 0; k < np; k++) update_piece(o, &l.at[k], &u);
    free(l.at);
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
/* (ema_one, the blend of one element, is defined above optim_update, which blends too) */

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
#pragma omp parallel for simd schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) ema[i] = ema_one(ema[i], model[i], df, od);
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
