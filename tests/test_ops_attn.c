/* Kernel checks (suite ops): max pool, attention core, DFL. Forward against double references,
 * finite-difference gradients in double, accumulate semantics, layout and padding semantics. */
#include "kernels/attention.h"
#include "kernels/dfl.h"
#include "kernels/pool.h"
#include "kernels/threads.h"
#include "tests/gradcheck.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FD_H 1e-5

/* ---- max pool ------------------------------------------------------------------------------- */

typedef struct {
    int n, h, w, c, k, s, p, oh, ow;
} pool_ctx;

static pool_ctx pool_make(int n, int h, int w, int c, int k, int s, int p) {
    pool_ctx q = {n, h, w, c, k, s, p, (h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1};
    return q;
}

/* Max over in-bounds taps only. */
static void pool_ref(const void *vctx, const double *x, double *y) {
    const pool_ctx *q = vctx;
    for (int b = 0; b < q->n; b++)
        for (int oy = 0; oy < q->oh; oy++)
            for (int ox = 0; ox < q->ow; ox++)
                for (int ch = 0; ch < q->c; ch++) {
                    double best = -INFINITY;
                    for (int ky = 0; ky < q->k; ky++)
                        for (int kx = 0; kx < q->k; kx++) {
                            int iy = oy * q->s - q->p + ky, ix = ox * q->s - q->p + kx;
                            if (iy < 0 || iy >= q->h || ix < 0 || ix >= q->w) continue;
                            best = fmax(best, x[((b * q->h + iy) * q->w + ix) * q->c + ch]);
                        }
                    y[((b * q->oh + oy) * q->ow + ox) * q->c + ch] = best;
                }
}

/* Distinct values spaced far beyond the FD step, shuffled: no ties, so max is differentiable. */
static void fill_distinct(float *x, size_t n, unsigned seed) {
    float *v = malloc(n * sizeof(float));
    fill_uniform(v, n, 0, 1, seed, 99);
    for (size_t i = 0; i < n; i++) {
        size_t rank = 0;
        for (size_t j = 0; j < n; j++) rank += v[j] < v[i] || (v[j] == v[i] && j < i);
        x[i] = (float)(0.01 * rank - 0.6);
    }
    free(v);
}

static void pool_case(pool_ctx q, unsigned seed) {
    size_t nx = (size_t)q.n * q.h * q.w * q.c, ny = (size_t)q.n * q.oh * q.ow * q.c;
    float *x = malloc(nx * sizeof(float)), *y = malloc(ny * sizeof(float));
    float *dy = malloc(ny * sizeof(float)), *dx = calloc(nx, sizeof(float));
    float *dx2 = calloc(nx, sizeof(float));
    int32_t *am = malloc(ny * sizeof(int32_t));
    double *in = malloc(nx * sizeof(double)), *ref = malloc(ny * sizeof(double));
    double *r = malloc(ny * sizeof(double)), *g = malloc(nx * sizeof(double));
    fill_distinct(x, nx, seed);
    fill_uniform(dy, ny, -1, 1, seed, 1);
    maxpool_forward(q.n, q.h, q.w, q.c, q.k, q.s, q.p, x, y, am);
    to_double(x, in, nx);
    to_double(dy, r, ny);
    pool_ref(&q, in, ref);
    check_forward("maxpool y", y, ref, ny);
    for (size_t i = 0; i < ny; i++) {
        cr_assert(am[i] >= 0 && (size_t)am[i] < nx, "argmax out of range");
        cr_assert(x[am[i]] == y[i], "argmax does not point at the max");
        cr_assert(am[i] % q.c == (int32_t)(i % q.c), "argmax in another channel");
    }
    maxpool_backward(q.n, q.oh, q.ow, q.c, dy, am, dx);
    fd_gradient(pool_ref, &q, nx, in, ny, r, FD_H, g);
    check_grad("maxpool dx", dx, g, nx);
    maxpool_backward(q.n, q.oh, q.ow, q.c, dy, am, dx2);
    maxpool_backward(q.n, q.oh, q.ow, q.c, dy, am, dx2);
    check_doubles("maxpool dx", dx, dx2, nx);
    free(x), free(y), free(dy), free(dx), free(dx2), free(am), free(in), free(ref), free(r),
        free(g);
}

Test(ops, maxpool_sppf_forward_backward_fd) {
    pool_case(pool_make(2, 5, 6, 3, 5, 1, 2), 10); /* SPPF: k5 s1 p2 */
    pool_case(pool_make(1, 5, 4, 2, 3, 2, 1), 11); /* strided, padded */
}

/* Padding never wins: with all inputs negative, zero padding would have given 0 at the borders. */
Test(ops, maxpool_padding_never_wins) {
    int h = 3, w = 3, c = 2;
    float x[18], y[18];
    int32_t am[18];
    for (int i = 0; i < 18; i++) x[i] = -1.0f - i;
    maxpool_forward(1, h, w, c, 5, 1, 2, x, y, am);
    /* a 3x3 map under a 5x5 window: every output sees the whole map; max is pixel 0 */
    for (int p = 0; p < 9; p++)
        for (int ch = 0; ch < c; ch++) {
            cr_assert(y[p * c + ch] == x[ch], "y=%g at %d", y[p * c + ch], p);
            cr_assert(am[p * c + ch] == ch);
        }
    /* -inf everywhere: the output is -inf (not 0) and the argmax is still an in-bounds tap */
    for (int i = 0; i < 18; i++) x[i] = -INFINITY;
    maxpool_forward(1, h, w, c, 5, 1, 2, x, y, am);
    for (int i = 0; i < 18; i++) {
        cr_assert(isinf(y[i]) && y[i] < 0);
        cr_assert(am[i] >= 0 && am[i] < 18 && am[i] % c == i % c);
    }
    /* ties keep the first tap in scan order (PyTorch) */
    for (int i = 0; i < 18; i++) x[i] = 1.0f;
    maxpool_forward(1, h, w, c, 5, 1, 2, x, y, am);
    for (int i = 0; i < 18; i++) cr_assert(am[i] == i % c, "tie at %d picked %d", i, am[i]);
}

/* ---- attention ------------------------------------------------------------------------------ */

/* Independent double reference, written from the architecture note: per head, q[d][i] is qkv
 * channel head*(2kd+hd) + d of pixel i, k the next kd rows, v the next hd. Outputs out | v_out. */
static void attn_ref(const void *vctx, const double *qkv, double *res) {
    const attention_desc *a = vctx;
    int hw = a->hw, kd = a->kd, hd = a->hd, C = a->heads * (2 * kd + hd), co = a->heads * hd;
    double *out = res, *vout = res + (size_t)a->n * hw * co;
    double *p = malloc(sizeof(double) * hw);
    for (int b = 0; b < a->n; b++)
        for (int h = 0; h < a->heads; h++) {
            int base = h * (2 * kd + hd);
#define QKV(row, pix) qkv[((size_t)b * hw + (pix)) * C + base + (row)]
            for (int i = 0; i < hw; i++) {
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < hw; j++) {
                    double s = 0;
                    for (int d = 0; d < kd; d++) s += QKV(d, i) * QKV(kd + d, j);
                    p[j] = a->scale * s;
                    mx = fmax(mx, p[j]);
                }
                for (int j = 0; j < hw; j++) sum += p[j] = exp(p[j] - mx);
                for (int c = 0; c < hd; c++) {
                    double o = 0;
                    for (int j = 0; j < hw; j++) o += QKV(2 * kd + c, j) * p[j] / sum;
                    out[((size_t)b * hw + i) * co + h * hd + c] = o;
                    vout[((size_t)b * hw + i) * co + h * hd + c] = QKV(2 * kd + c, i);
                }
            }
#undef QKV
        }
    free(p);
}

Test(ops, attention_forward_backward_fd) {
    attention_desc a = {2, 5, 2, 3, 4, 0};
    a.scale = 1.0f / sqrtf((float)a.kd);
    int C = a.heads * (2 * a.kd + a.hd), co = a.heads * a.hd;
    size_t nq = (size_t)a.n * a.hw * C, no = (size_t)a.n * a.hw * co;
    size_t np = (size_t)a.n * a.heads * a.hw * a.hw;
    float *qkv = malloc(nq * sizeof(float)), *res = malloc(2 * no * sizeof(float));
    float *probs = malloc(np * sizeof(float)), *dres = malloc(2 * no * sizeof(float));
    float *dq = calloc(nq, sizeof(float)), *dq2 = calloc(nq, sizeof(float));
    float *dq3 = calloc(nq, sizeof(float));
    double *in = malloc(nq * sizeof(double)), *ref = malloc(2 * no * sizeof(double));
    double *r = malloc(2 * no * sizeof(double)), *g = malloc(nq * sizeof(double));
    fill_uniform(qkv, nq, -1.5, 1.5, 20, 0);
    fill_uniform(dres, 2 * no, -1, 1, 20, 1);
    attention_forward(&a, qkv, res, res + no, probs);
    to_double(qkv, in, nq);
    to_double(dres, r, 2 * no);
    attn_ref(&a, in, ref);
    check_forward("attention out|v_out", res, ref, 2 * no);
    for (size_t row = 0; row < np / a.hw; row++) {
        double s = 0;
        for (int j = 0; j < a.hw; j++) s += probs[row * a.hw + j];
        cr_assert(fabs(s - 1) < 1e-5, "probs row %zu sums to %g", row, s);
    }
    attention_backward(&a, qkv, probs, dres, dres + no, dq);
    fd_gradient(attn_ref, &a, nq, in, 2 * no, r, FD_H, g);
    check_grad("attention dqkv", dq, g, nq);
    attention_backward(&a, qkv, probs, dres, dres + no, dq2);
    attention_backward(&a, qkv, probs, dres, dres + no, dq2);
    check_doubles("attention dqkv", dq, dq2, nq);
    /* dv == NULL: the same as a zero grad for v_out */
    attention_backward(&a, qkv, probs, dres, NULL, dq3);
    for (size_t i = 0; i < 2 * no; i++) r[i] = i < no ? dres[i] : 0.0;
    fd_gradient(attn_ref, &a, nq, in, 2 * no, r, FD_H, g);
    check_grad("attention dqkv (dv NULL)", dq3, g, nq);
    free(qkv), free(res), free(probs), free(dres), free(dq), free(dq2), free(dq3), free(in),
        free(ref), free(r), free(g);
}

/* The channel layout with hand-made values: per head, q | k | v blocks of kd, kd, hd channels;
 * out and v_out channel head*hd + c. */
Test(ops, attention_channel_layout) {
    attention_desc a = {1, 3, 2, 2, 3, 0.5f};
    int C = 2 * (2 * 2 + 3); /* 14: head 0 = channels 0..6, head 1 = 7..13 */
    float qkv[3 * 14], out[3 * 6], vout[3 * 6], probs[2 * 9];
    for (int i = 0; i < 3; i++)
        for (int ch = 0; ch < C; ch++) {
            int h = ch / 7, j = ch % 7;
            float v;
            if (j < 2)
                v = h == 0 ? 0.0f : (float)(i == 2) * 4.0f; /* q */
            else if (j < 4)
                v = h == 0 ? 0.0f : (float)(i == 2) * 4.0f; /* k */
            else
                v = (float)(100 * h + 10 * (j - 4) + i); /* v */
            qkv[i * C + ch] = v;
        }
    attention_forward(&a, qkv, out, vout, probs);
    for (int i = 0; i < 3; i++)
        for (int h = 0; h < 2; h++)
            for (int c = 0; c < 3; c++)
                cr_assert(vout[i * 6 + h * 3 + c] == (float)(100 * h + 10 * c + i), "v_out[%d][%d]",
                          i, h * 3 + c);
    /* head 0: q = k = 0, so P is uniform and out = mean over pixels of v = 10c + 1 */
    for (int i = 0; i < 3; i++)
        for (int c = 0; c < 3; c++) {
            cr_assert(fabsf(out[i * 6 + c] - (10 * c + 1)) < 1e-4, "head 0 out");
            cr_assert(fabsf(probs[i * 3 + c] - 1.0f / 3) < 1e-6);
        }
    /* head 1: only pixel 2 has q, k (= 4 in both rows): query 2 scores key 2 with 0.5 * 32 = 16,
     * so it picks v of pixel 2 almost surely; queries 0, 1 see all-zero scores (uniform). */
    for (int c = 0; c < 3; c++) {
        float want2 = 100 + 10 * c + 2, want0 = 100 + 10 * c + 1;
        cr_assert(fabsf(out[2 * 6 + 3 + c] - want2) < 1e-4, "head 1 query 2: %g vs %g",
                  out[2 * 6 + 3 + c], want2);
        cr_assert(fabsf(out[0 * 6 + 3 + c] - want0) < 1e-4);
    }
    cr_assert(probs[9 + 2 * 3 + 2] > 0.999f, "probs [n][head][i][j] layout");
}

/* ---- DFL ------------------------------------------------------------------------------------ */

typedef struct {
    int rows, reg_max, ld;
} dfl_ctx;

static void dfl_ref(const void *vctx, const double *l, double *dist) {
    const dfl_ctx *k = vctx;
    for (int r = 0; r < k->rows; r++)
        for (int s = 0; s < 4; s++) {
            const double *x = l + (size_t)r * k->ld + s * k->reg_max;
            double sum = 0, e = 0;
            for (int b = 0; b < k->reg_max; b++) sum += exp(x[b]);
            for (int b = 0; b < k->reg_max; b++) e += b * exp(x[b]) / sum;
            dist[r * 4 + s] = e;
        }
}

Test(ops, dfl_forward_backward_fd) {
    dfl_ctx k = {3, 16, 4 * 16 + 5}; /* 5 class channels after the box logits */
    size_t n = (size_t)k.rows * k.ld, nd = (size_t)k.rows * 4;
    float l[3 * 69], dist[12], dd[12], dl[3 * 69], dl2[3 * 69];
    fill_uniform(l, n, -3, 3, 30, 0);
    l[5] = 40.0f; /* a large logit: the softmax must stay finite */
    fill_uniform(dd, nd, -1, 1, 30, 1);
    dfl_forward(k.rows, k.reg_max, l, k.ld, dist);
    double in[3 * 69], ref[12], r[12], g[3 * 69];
    to_double(l, in, n);
    to_double(dd, r, nd);
    dfl_ref(&k, in, ref);
    check_close("dfl dist", dist, ref, nd, 1e-6, 1e-5, 1);
    cr_assert(fabsf(dist[0] - 5.0f) < 1e-3, "a dominant bin 5 gives distance 5");
    for (size_t i = 0; i < n; i++) dl[i] = dl2[i] = 7.0f; /* sentinel: class channels untouched */
    dfl_backward(k.rows, k.reg_max, l, k.ld, dd, dl);
    for (size_t i = 0; i < n; i++) dl[i] -= 7.0f;
    fd_gradient(dfl_ref, &k, n, in, nd, r, FD_H, g);
    check_grad("dfl dlogits", dl, g, n);
    for (int rr = 0; rr < k.rows; rr++)
        for (int j = 64; j < k.ld; j++) cr_assert(dl[rr * k.ld + j] == 0.0f, "class channel hit");
    dfl_backward(k.rows, k.reg_max, l, k.ld, dd, dl2);
    dfl_backward(k.rows, k.reg_max, l, k.ld, dd, dl2);
    for (size_t i = 0; i < n; i++) dl2[i] -= 7.0f;
    check_doubles("dfl dlogits", dl, dl2, n);
}

/* Attention, pool and DFL give the same bits with 1 and 2 threads (sizes past the serial cutoffs).
 */
Test(ops, pool_attention_dfl_threads_deterministic) {
    int n = 2, h = 20, w = 20, c = 32;
    size_t nx = (size_t)n * h * w * c;
    attention_desc a = {2, 100, 2, 8, 16, 0};
    a.scale = 1.0f / sqrtf(8.0f);
    size_t nq = (size_t)2 * 100 * 2 * 32, no = (size_t)2 * 100 * 32, np = (size_t)2 * 2 * 100 * 100;
    int rows = 2000;
    size_t nl = (size_t)rows * 64;
    size_t tot = 2 * nx + nq + 2 * no + np + nl + rows * 4;
    float *buf[2];
    int32_t *am = malloc(nx * sizeof(int32_t));
    float *x = malloc(nx * sizeof(float)), *qkv = malloc(nq * sizeof(float));
    float *dout = malloc(no * sizeof(float)), *l = malloc(nl * sizeof(float));
    fill_uniform(x, nx, -1, 1, 40, 0);
    fill_uniform(qkv, nq, -1, 1, 40, 1);
    fill_uniform(dout, no, -1, 1, 40, 2);
    fill_uniform(l, nl, -2, 2, 40, 3);
    for (int t = 0; t < 2; t++) {
        kernels_set_threads(t + 1);
        float *b = buf[t] = calloc(tot, sizeof(float));
        float *y = b, *dx = y + nx, *dq = dx + nx, *out = dq + nq, *vout = out + no;
        float *probs = vout + no, *dl = probs + np, *dist = dl + nl;
        maxpool_forward(n, h, w, c, 5, 1, 2, x, y, am);
        maxpool_backward(n, h, w, c, y, am, dx);
        attention_forward(&a, qkv, out, vout, probs);
        attention_backward(&a, qkv, probs, dout, vout, dq);
        dfl_forward(rows, 16, l, 64, dist);
        dfl_backward(rows, 16, l, 64, dist, dl);
    }
    kernels_set_threads(1);
    const char *names[] = {"y", "dx", "dqkv", "out", "v_out", "probs", "dlogits", "dist"};
    size_t sz[] = {nx, nx, nq, no, no, np, nl, (size_t)rows * 4}, off = 0;
    for (int i = 0; i < 8; off += sz[i++])
        cr_assert(memcmp(buf[0] + off, buf[1] + off, sz[i] * sizeof(float)) == 0,
                  "%s differs between 1 and 2 threads", names[i]);
    free(buf[0]), free(buf[1]), free(am), free(x), free(qkv), free(dout), free(l);
}
