/* The op harness's cases: every op of kernels/backend.h on several shapes taken from the YOLO
 * models (1x1, 3x3 stride 1 and 2, the stem, depthwise, grouped, SPPF's pool, C2PSA's attention,
 * the heads' decode) plus sizes that are not multiples of a block. Each run function draws its
 * inputs from the env (the same numbers on both backends), runs the op, and takes every output. */
#include "tests/backend_ops.h"

#include "common/log.h"
#include "kernels/batchnorm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- convolutions: p = n h w cin cout k stride pad groups bias ---- */

static conv2d_desc conv_of(const bops_case *c) {
    return conv2d_make(c->p[0], c->p[1], c->p[2], c->p[3], c->p[4], c->p[5], c->p[6], c->p[7],
                       c->p[8]);
}
static size_t nx_of(const conv2d_desc *d) {
    return (size_t)d->n * d->h * d->w * d->cin;
}
static size_t ny_of(const conv2d_desc *d) {
    return (size_t)d->n * d->oh * d->ow * d->cout;
}
static size_t nw_of(const conv2d_desc *d) {
    return (size_t)d->cout * d->kh * d->kw * (d->cin / d->groups);
}
static float *conv_ws(bops_env *e, const conv2d_desc *d) {
    return bops_zeros(e, backend_conv2d_workspace_floats(e->be, d) + 1);
}

static void run_conv_forward(bops_env *e, const bops_case *c) {
    conv2d_desc d = conv_of(c);
    float *x = bops_in(e, nx_of(&d), -1, 1), *w = bops_in(e, nw_of(&d), -0.5, 0.5);
    float *b = c->p[9] ? bops_in(e, (size_t)d.cout, -1, 1) : NULL, *y = bops_zeros(e, ny_of(&d));
    backend_conv2d_forward(e->be, &d, x, w, b, y, conv_ws(e, &d));
    bops_take(e, "y", y, ny_of(&d));
}
static void run_conv_backward_data(bops_env *e, const bops_case *c) {
    conv2d_desc d = conv_of(c);
    float *w = bops_in(e, nw_of(&d), -0.5, 0.5), *dy = bops_in(e, ny_of(&d), -1, 1);
    float *dx = bops_in(e, nx_of(&d), -1, 1);
    backend_conv2d_backward_data(e->be, &d, w, dy, dx, conv_ws(e, &d));
    bops_take(e, "dx", dx, nx_of(&d));
}
static void run_conv_backward_filter(bops_env *e, const bops_case *c) {
    conv2d_desc d = conv_of(c);
    float *x = bops_in(e, nx_of(&d), -1, 1), *dy = bops_in(e, ny_of(&d), -1, 1);
    float *dw = bops_in(e, nw_of(&d), -1, 1);
    float *db = c->p[9] ? bops_in(e, (size_t)d.cout, -1, 1) : NULL;
    backend_conv2d_backward_filter(e->be, &d, x, dy, dw, db, conv_ws(e, &d));
    bops_take(e, "dw", dw, nw_of(&d));
    if (db) bops_take(e, "dbias", db, (size_t)d.cout);
}

/* The CPU training-path ops: backward-data that writes dx, and bf16 convolutions from bf16
 * inputs (converted by to_bf16 on the backend under test). bf16 outputs are taken as their float
 * values (bops_take_bf16; exact mode compares them bit for bit). */
static void run_conv_backward_data_set(bops_env *e, const bops_case *c) {
    conv2d_desc d = conv_of(c);
    float *w = bops_in(e, nw_of(&d), -0.5, 0.5), *dy = bops_in(e, ny_of(&d), -1, 1);
    float *dx = bops_in(e, nx_of(&d), -1, 1); /* overwritten */
    backend_conv2d_backward_data_set(e->be, &d, w, dy, dx, conv_ws(e, &d));
    bops_take(e, "dx", dx, nx_of(&d));
}
static bf16 *bf16_in(bops_env *e, size_t n, double lo, double hi) {
    float *x = bops_in(e, n, lo, hi);
    bf16 *xb = (bf16 *)bops_zeros(e, (n + 1) / 2);
    backend_to_bf16(e->be, n, x, xb);
    return xb;
}
static void run_to_bf16(bops_env *e, const bops_case *c) {
    size_t n = (size_t)c->p[0];
    bops_take_bf16(e, "y", bf16_in(e, n, -10, 10), n);
}
static void run_conv_forward_bf16(bops_env *e, const bops_case *c) {
    conv2d_desc d = conv_of(c);
    d.prec = CONV2D_BF16;
    bf16 *xb = bf16_in(e, nx_of(&d), -1, 1);
    float *w = bops_in(e, nw_of(&d), -0.5, 0.5), *y = bops_zeros(e, ny_of(&d));
    float *b = c->p[9] ? bops_in(e, (size_t)d.cout, -1, 1) : NULL;
    backend_conv2d_forward_bf16(e->be, &d, xb, w, b, y, conv_ws(e, &d));
    bops_take(e, "y", y, ny_of(&d));
}
static void run_conv_backward_bf16(bops_env *e, const bops_case *c) {
    conv2d_desc d = conv_of(c);
    d.prec = CONV2D_BF16;
    bf16 *xb = bf16_in(e, nx_of(&d), -1, 1), *dyb = bf16_in(e, ny_of(&d), -1, 1);
    float *w = bops_in(e, nw_of(&d), -0.5, 0.5), *dw = bops_in(e, nw_of(&d), -1, 1);
    float *dx = bops_in(e, nx_of(&d), -1, 1), *dx_set = bops_in(e, nx_of(&d), -1, 1);
    float *ws = conv_ws(e, &d);
    backend_conv2d_backward_bf16(e->be, &d, xb, w, dyb, dx, false, dw, ws);
    backend_conv2d_backward_bf16(e->be, &d, xb, w, dyb, dx_set, true, NULL, ws);
    bops_take(e, "dx", dx, nx_of(&d));
    bops_take(e, "dw", dw, nw_of(&d));
    bops_take(e, "dx (written)", dx_set, nx_of(&d));
}

/* ---- batch norm, and fused with SiLU (by the case's op): p = m c ---- */

static void run_bn_train(bops_env *e, const bops_case *c) {
    int m = c->p[0], ch = c->p[1];
    size_t n = (size_t)m * ch;
    float *x = bops_in(e, n, -2, 3), *g = bops_in(e, ch, 0.5, 1.5), *b = bops_in(e, ch, -1, 1);
    float *rm = bops_in(e, ch, -1, 1), *rv = bops_in(e, ch, 0.5, 2);
    float *sm = bops_zeros(e, ch), *si = bops_zeros(e, ch), *y = bops_zeros(e, n);
    if (c->op == BACKEND_OP_BATCHNORM_SILU_FORWARD_TRAIN)
        backend_batchnorm_silu_forward_train(e->be, m, ch, x, g, b, BN_EPS, BN_MOMENTUM, rm, rv, sm,
                                             si, y);
    else
        backend_batchnorm_forward_train(e->be, m, ch, x, g, b, BN_EPS, BN_MOMENTUM, rm, rv, sm, si,
                                        y);
    bops_take(e, "y", y, n);
    bops_take(e, "running_mean", rm, ch);
    bops_take(e, "running_var", rv, ch);
    bops_take(e, "save_mean", sm, ch);
    bops_take(e, "save_invstd", si, ch);
}
static void run_bn_eval(bops_env *e, const bops_case *c) {
    int m = c->p[0], ch = c->p[1];
    size_t n = (size_t)m * ch;
    float *x = bops_in(e, n, -2, 3), *g = bops_in(e, ch, 0.5, 1.5), *b = bops_in(e, ch, -1, 1);
    float *rm = bops_in(e, ch, -1, 1), *rv = bops_in(e, ch, 0.5, 2), *y = bops_zeros(e, n);
    if (c->op == BACKEND_OP_BATCHNORM_SILU_FORWARD_EVAL)
        backend_batchnorm_silu_forward_eval(e->be, m, ch, x, g, b, rm, rv, BN_EPS, y);
    else
        backend_batchnorm_forward_eval(e->be, m, ch, x, g, b, rm, rv, BN_EPS, y);
    bops_take(e, "y", y, n);
}
static void run_bn_backward(bops_env *e, const bops_case *c) {
    int m = c->p[0], ch = c->p[1];
    size_t n = (size_t)m * ch;
    float *x = bops_in(e, n, -2, 3), *g = bops_in(e, ch, 0.5, 1.5), *b = bops_in(e, ch, -1, 1);
    float *sm = bops_in(e, ch, -1, 1), *si = bops_in(e, ch, 0.5, 2), *dy = bops_in(e, n, -1, 1);
    float *dx = bops_in(e, n, -1, 1), *dg = bops_in(e, ch, -1, 1), *db = bops_in(e, ch, -1, 1);
    if (c->op == BACKEND_OP_BATCHNORM_SILU_BACKWARD)
        backend_batchnorm_silu_backward(e->be, m, ch, x, g, b, sm, si, dy, dx, dg, db);
    else if (c->op == BACKEND_OP_BATCHNORM_SILU_BACKWARD_SET) /* dx overwritten */
        backend_batchnorm_silu_backward_set(e->be, m, ch, x, g, b, sm, si, dy, dx, dg, db);
    else
        backend_batchnorm_backward(e->be, m, ch, x, g, sm, si, dy, dx, dg, db);
    bops_take(e, "dx", dx, n);
    bops_take(e, "dgamma", dg, ch);
    bops_take(e, "dbeta", db, ch);
}

/* The BN + SiLU ops with a bf16 copy (bf16 outputs taken as their values, as above): forward with
 * the float output and without it (y NULL), backward's bf16 dx (its float dx is scratch). */
static void run_bn_silu_train_bf16(bops_env *e, const bops_case *c) {
    int m = c->p[0], ch = c->p[1];
    size_t n = (size_t)m * ch, nb = (n + 1) / 2;
    float *x = bops_in(e, n, -2, 3), *g = bops_in(e, ch, 0.5, 1.5), *b = bops_in(e, ch, -1, 1);
    float *rm = bops_in(e, ch, -1, 1), *rv = bops_in(e, ch, 0.5, 2);
    float *sm = bops_zeros(e, ch), *si = bops_zeros(e, ch), *y = bops_zeros(e, n);
    bf16 *yb = (bf16 *)bops_zeros(e, nb), *yb_only = (bf16 *)bops_zeros(e, nb);
    backend_batchnorm_silu_forward_train_bf16(e->be, m, ch, x, g, b, BN_EPS, BN_MOMENTUM, rm, rv,
                                              sm, si, y, yb);
    bops_take(e, "y", y, n);
    bops_take_bf16(e, "yb", yb, n);
    bops_take(e, "running_mean", rm, ch);
    bops_take(e, "running_var", rv, ch);
    bops_take(e, "save_mean", sm, ch);
    bops_take(e, "save_invstd", si, ch);
    backend_batchnorm_silu_forward_train_bf16(e->be, m, ch, x, g, b, BN_EPS, BN_MOMENTUM, NULL,
                                              NULL, sm, si, NULL, yb_only);
    bops_take_bf16(e, "yb (no y)", yb_only, n);
}
static void run_bn_silu_eval_bf16(bops_env *e, const bops_case *c) {
    int m = c->p[0], ch = c->p[1];
    size_t n = (size_t)m * ch, nb = (n + 1) / 2;
    float *x = bops_in(e, n, -2, 3), *g = bops_in(e, ch, 0.5, 1.5), *b = bops_in(e, ch, -1, 1);
    float *rm = bops_in(e, ch, -1, 1), *rv = bops_in(e, ch, 0.5, 2), *y = bops_zeros(e, n);
    bf16 *yb = (bf16 *)bops_zeros(e, nb), *yb_only = (bf16 *)bops_zeros(e, nb);
    backend_batchnorm_silu_forward_eval_bf16(e->be, m, ch, x, g, b, rm, rv, BN_EPS, y, yb);
    backend_batchnorm_silu_forward_eval_bf16(e->be, m, ch, x, g, b, rm, rv, BN_EPS, NULL, yb_only);
    bops_take(e, "y", y, n);
    bops_take_bf16(e, "yb", yb, n);
    bops_take_bf16(e, "yb (no y)", yb_only, n);
}
static void run_bn_silu_backward_set_bf16(bops_env *e, const bops_case *c) {
    int m = c->p[0], ch = c->p[1];
    size_t n = (size_t)m * ch, nb = (n + 1) / 2;
    float *x = bops_in(e, n, -2, 3), *g = bops_in(e, ch, 0.5, 1.5), *b = bops_in(e, ch, -1, 1);
    float *sm = bops_in(e, ch, -1, 1), *si = bops_in(e, ch, 0.5, 2), *dy = bops_in(e, n, -1, 1);
    float *dx = bops_in(e, n, -1, 1), *dg = bops_in(e, ch, -1, 1), *db = bops_in(e, ch, -1, 1);
    bf16 *dxb = (bf16 *)bops_zeros(e, nb);
    backend_batchnorm_silu_backward_set_bf16(e->be, m, ch, x, g, b, sm, si, dy, dx, dxb, dg, db);
    bops_take_bf16(e, "dxb", dxb, n);
    bops_take(e, "dgamma", dg, ch);
    bops_take(e, "dbeta", db, ch);
}

/* ---- elementwise: p = n ---- */

static void run_silu_forward(bops_env *e, const bops_case *c) {
    size_t n = (size_t)c->p[0];
    float *x = bops_in(e, n, -10, 10), *y = bops_zeros(e, n);
    backend_silu_forward(e->be, n, x, y);
    bops_take(e, "y", y, n);
}
static void run_silu_backward(bops_env *e, const bops_case *c) {
    size_t n = (size_t)c->p[0];
    float *x = bops_in(e, n, -10, 10), *dy = bops_in(e, n, -1, 1), *dx = bops_in(e, n, -1, 1);
    backend_silu_backward(e->be, n, x, dy, dx);
    bops_take(e, "dx", dx, n);
}
static void run_add(bops_env *e, const bops_case *c) {
    size_t n = (size_t)c->p[0];
    float *a = bops_in(e, n, -1, 1), *b = bops_in(e, n, -1, 1), *y = bops_zeros(e, n);
    backend_add(e->be, n, a, b, y);
    backend_add(e->be, n, y, b, b); /* in place: y may be b */
    bops_take(e, "y", y, n);
    bops_take(e, "b", b, n);
}
static void run_accumulate(bops_env *e, const bops_case *c) {
    size_t n = (size_t)c->p[0];
    float *x = bops_in(e, n, -1, 1), *y = bops_in(e, n, -1, 1);
    backend_accumulate(e->be, n, x, y);
    bops_take(e, "y", y, n);
}
static void run_scale(bops_env *e, const bops_case *c) {
    size_t n = (size_t)c->p[0];
    float *y = bops_in(e, n, -1, 1);
    backend_scale(e->be, n, 0.37f, y);
    bops_take(e, "y", y, n);
}
static void run_normalize_u8(bops_env *e, const bops_case *c) {
    size_t n = (size_t)c->p[0];
    float *r = xmalloc(n * sizeof *r);
    uint8_t *h = xmalloc(n);
    bops_host_rand(e, r, n, 0, 256);
    for (size_t i = 0; i < n; i++) h[i] = (uint8_t)r[i];
    uint8_t *x = bops_bytes(e, n);
    backend_to_device(e->be, x, h, n);
    float *y = bops_zeros(e, n);
    backend_normalize_u8(e->be, n, x, 1.0f / 255.0f, y);
    bops_take(e, "y", y, n);
    free(r), free(h);
}

/* ---- layout: concat p = m k c0 c1 c2 skip; slice p = m cx off c; upsample p = n h w c ---- */

static void run_concat_forward(bops_env *e, const bops_case *c) {
    size_t m = (size_t)c->p[0];
    int k = c->p[1], ct = 0;
    const float *xs[3];
    for (int i = 0; i < k; i++) {
        xs[i] = bops_in(e, m * c->p[2 + i], -1, 1);
        ct += c->p[2 + i];
    }
    float *y = bops_zeros(e, m * ct);
    backend_concat_forward(e->be, m, k, xs, c->p + 2, y);
    bops_take(e, "y", y, m * ct);
}
static void run_concat_backward(bops_env *e, const bops_case *c) {
    size_t m = (size_t)c->p[0];
    int k = c->p[1], ct = 0;
    for (int i = 0; i < k; i++) ct += c->p[2 + i];
    float *dy = bops_in(e, m * ct, -1, 1), *dxs[3];
    for (int i = 0; i < k; i++) dxs[i] = i == c->p[5] ? NULL : bops_in(e, m * c->p[2 + i], -1, 1);
    backend_concat_backward(e->be, m, k, c->p + 2, dy, dxs);
    static const char *names[3] = {"dx0", "dx1", "dx2"};
    for (int i = 0; i < k; i++)
        if (dxs[i]) bops_take(e, names[i], dxs[i], m * c->p[2 + i]);
}
static void run_slice_forward(bops_env *e, const bops_case *c) {
    size_t m = (size_t)c->p[0];
    float *x = bops_in(e, m * c->p[1], -1, 1), *y = bops_zeros(e, m * c->p[3]);
    backend_slice_forward(e->be, m, c->p[1], c->p[2], c->p[3], x, y);
    bops_take(e, "y", y, m * c->p[3]);
}
static void run_slice_backward(bops_env *e, const bops_case *c) {
    size_t m = (size_t)c->p[0];
    float *dy = bops_in(e, m * c->p[3], -1, 1), *dx = bops_in(e, m * c->p[1], -1, 1);
    backend_slice_backward(e->be, m, c->p[1], c->p[2], c->p[3], dy, dx);
    bops_take(e, "dx", dx, m * c->p[1]);
}
static void run_upsample_forward(bops_env *e, const bops_case *c) {
    size_t n = (size_t)c->p[0] * c->p[1] * c->p[2] * c->p[3];
    float *x = bops_in(e, n, -1, 1), *y = bops_zeros(e, 4 * n);
    backend_upsample2x_forward(e->be, c->p[0], c->p[1], c->p[2], c->p[3], x, y);
    bops_take(e, "y", y, 4 * n);
}
static void run_upsample_backward(bops_env *e, const bops_case *c) {
    size_t n = (size_t)c->p[0] * c->p[1] * c->p[2] * c->p[3];
    float *dy = bops_in(e, 4 * n, -1, 1), *dx = bops_in(e, n, -1, 1);
    backend_upsample2x_backward(e->be, c->p[0], c->p[1], c->p[2], c->p[3], dy, dx);
    bops_take(e, "dx", dx, n);
}

/* ---- max pool: p = n h w c k stride pad; inputs on a coarse grid so that windows tie ---- */

static void pool_forward(bops_env *e, const bops_case *c, float **y, int32_t **am, size_t *nout) {
    const int *p = c->p;
    size_t nin = (size_t)p[0] * p[1] * p[2] * p[3];
    int oh = (p[1] + 2 * p[6] - p[4]) / p[5] + 1, ow = (p[2] + 2 * p[6] - p[4]) / p[5] + 1;
    *nout = (size_t)p[0] * oh * ow * p[3];
    float *h = xmalloc(nin * sizeof *h);
    bops_host_rand(e, h, nin, 0, 4);
    for (size_t i = 0; i < nin; i++) h[i] = (float)(int)h[i];
    float *x = bops_zeros(e, nin);
    backend_to_device(e->be, x, h, nin * sizeof *h);
    free(h);
    *y = bops_zeros(e, *nout);
    *am = bops_bytes(e, *nout * sizeof(int32_t));
    backend_maxpool_forward(e->be, p[0], p[1], p[2], p[3], p[4], p[5], p[6], x, *y, *am);
}
static void run_maxpool_forward(bops_env *e, const bops_case *c) {
    float *y;
    int32_t *am;
    size_t n;
    pool_forward(e, c, &y, &am, &n);
    bops_take(e, "y", y, n);
    bops_take_i32(e, "argmax", am, n);
}
static void run_maxpool_backward(bops_env *e, const bops_case *c) {
    const int *p = c->p;
    float *y;
    int32_t *am;
    size_t n, nin = (size_t)p[0] * p[1] * p[2] * p[3];
    pool_forward(e, c, &y, &am, &n);
    float *dy = bops_in(e, n, -1, 1), *dx = bops_in(e, nin, -1, 1);
    backend_maxpool_backward(e->be, p[0], p[1], p[2], p[3], p[4], p[5], p[6], dy, am, dx);
    bops_take(e, "dx", dx, nin);
}

/* ---- attention: p = n hw heads kd hd with_dv ---- */

static attention_desc attn_of(const bops_case *c) {
    attention_desc d = {
        .n = c->p[0], .hw = c->p[1], .heads = c->p[2], .kd = c->p[3], .hd = c->p[4]};
    d.scale = 1.0f / sqrtf((float)d.kd);
    return d;
}
static void run_attention_forward(bops_env *e, const bops_case *c) {
    attention_desc d = attn_of(c);
    size_t nq = (size_t)d.n * d.hw * d.heads * (2 * d.kd + d.hd);
    size_t no = (size_t)d.n * d.hw * d.heads * d.hd, np = (size_t)d.n * d.heads * d.hw * d.hw;
    float *qkv = bops_in(e, nq, -1, 1), *out = bops_zeros(e, no), *vo = bops_zeros(e, no);
    float *pr = bops_zeros(e, np);
    backend_attention_forward(e->be, &d, qkv, out, vo, pr);
    bops_take(e, "out", out, no);
    bops_take(e, "v_out", vo, no);
    bops_take(e, "probs", pr, np);
}
static void run_attention_backward(bops_env *e, const bops_case *c) {
    attention_desc d = attn_of(c);
    size_t nq = (size_t)d.n * d.hw * d.heads * (2 * d.kd + d.hd);
    size_t no = (size_t)d.n * d.hw * d.heads * d.hd, np = (size_t)d.n * d.heads * d.hw * d.hw;
    float *qkv = bops_in(e, nq, -1, 1), *pr = bops_in(e, np, 0, 2.0 / d.hw);
    float *dout = bops_in(e, no, -1, 1), *dv = c->p[5] ? bops_in(e, no, -1, 1) : NULL;
    float *dqkv = bops_in(e, nq, -1, 1);
    backend_attention_backward(e->be, &d, qkv, pr, dout, dv, dqkv);
    bops_take(e, "dqkv", dqkv, nq);
}

/* ---- decode: p = images anchors reg_max nc xyxy ---- */

static void run_detect_decode(bops_env *e, const bops_case *c) {
    detect_decode_desc d = {.rows = c->p[0] * c->p[1],
                            .anchors = c->p[1],
                            .reg_max = c->p[2],
                            .nc = c->p[3],
                            .ld = 4 * c->p[2] + c->p[3],
                            .xyxy = c->p[4]};
    float *l = bops_in(e, (size_t)d.rows * d.ld, -4, 4),
          *pts = bops_in(e, 2 * (size_t)d.anchors, 0, 40);
    float *str = bops_in(e, d.anchors, 8, 32), *out = bops_zeros(e, (size_t)d.rows * (4 + d.nc));
    backend_detect_decode(e->be, &d, l, pts, str, out);
    bops_take(e, "out", out, (size_t)d.rows * (4 + d.nc));
}

/* ---- the loss: p = images reg_max nc branches targets-per-image release190 ---- */

static void run_detloss(bops_env *e, const bops_case *c) {
    const int B = c->p[0], R = c->p[1], nc = c->p[2], nbr = c->p[3], per = c->p[4];
    const int hs[3] = {8, 4, 2}, A = 84, no = 4 * R + nc;
    const float ls[3] = {8, 16, 32};
    float anc[2 * 84], str[84], t[16 * 6], u[16 * 4];
    detloss_make_anchors(3, hs, hs, ls, anc, str);
    float *d_anc = bops_bytes(e, sizeof anc), *d_str = bops_bytes(e, sizeof str);
    backend_to_device(e->be, d_anc, anc, sizeof anc);
    backend_to_device(e->be, d_str, str, sizeof str);
    bops_host_rand(e, u, (size_t)B * per * 4, 0, 1);
    for (int i = 0; i < B * per; i++) { /* boxes of 3..30 px in a 64 px image */
        float *q = t + 6 * i, w = 0.05f + 0.4f * u[4 * i + 2], h = 0.05f + 0.4f * u[4 * i + 3];
        q[0] = (float)(i / per), q[1] = (float)(i % nc), q[4] = w, q[5] = h;
        q[2] = w / 2 + (1 - w) * u[4 * i], q[3] = h / 2 + (1 - h) * u[4 * i + 1];
    }
    static const float cw[4] = {0.6f, 1.4f, 1.0f, 1.2f};
    backend_detloss_desc d = {.branches = nbr,
                              .h = {detloss_hyp_default(nc, R), detloss_hyp_one2one(nc, R)},
                              .o2m = 0.7f,
                              .o2o = 0.3f,
                              .B = B,
                              .A = A,
                              .img_h = 64,
                              .img_w = 64,
                              .anchor_points = d_anc,
                              .strides = d_str,
                              .ntargets = B * per,
                              .targets = t,
                              .grad_scale = 2};
    for (int k = 0; k < 2; k++) {
        d.h[k].stal_min = c->p[5] ? 16 : 8;
        d.h[k].bce_torch2 = c->p[5];
        d.h[k].cls_weight = c->p[5] && nc <= 4 ? cw : NULL;
    }
    size_t n = (size_t)B * A * no;
    const float *preds[2] = {bops_in(e, n, -3, 3), bops_in(e, n, -3, 3)};
    float *dpreds[2] = {bops_in(e, n, -1, 1), bops_in(e, n, -1, 1)}; /* written: every element */
    double res[BACKEND_DETLOSS_RESULTS];
    for (int k = 0; k < BACKEND_DETLOSS_RESULTS; k++) res[k] = 0.25 * k; /* added to */
    double *d_res = bops_bytes(e, sizeof res);
    backend_to_device(e->be, d_res, res, sizeof res);
    backend_detloss(e->be, &d, preds, dpreds, d_res);
    for (int br = 0; br < nbr; br++) bops_take(e, br ? "dpreds one2one" : "dpreds", dpreds[br], n);
    backend_to_host(e->be, res, d_res, sizeof res);
    float r32[BACKEND_DETLOSS_RESULTS], *d_r32 = bops_zeros(e, BACKEND_DETLOSS_RESULTS);
    for (int k = 0; k < BACKEND_DETLOSS_RESULTS; k++) r32[k] = (float)res[k];
    backend_to_device(e->be, d_r32, r32, sizeof r32);
    bops_take(e, "results", d_r32, BACKEND_DETLOSS_RESULTS);
}

/* ---- optimizer, clip, EMA ---- */

/* The optimizer of the optimizer cases: a conv weight, a gap no tensor covers, BN weights, a linear
 * weight, biases; state in the backend's memory. */
static void optim_case_init(bops_env *e, optimizer *o, optim_kind kind, int nesterov) {
    optim_group gr[OPTIM_MAX_GROUPS];
    int ng = optim_default_groups(kind, 0.01, 0.9, 5e-4, gr);
    bool mu = kind == OPTIM_MUSGD;
    optim_tensor t[4] = {
        {.offset = 0, .numel = 1152, .ndim = 4, .shape = {16, 8, 3, 3}},
        {.offset = 1200, .numel = 37, .ndim = 1, .shape = {37}},
        {.offset = 1237, .numel = 512, .ndim = 2, .shape = {32, 16}},
        {.offset = 1749, .numel = 51, .ndim = 1, .shape = {51}},
    };
    t[0].group = optim_group_index(kind, mu ? PG_MUON : PG_WEIGHT, 0);
    t[1].group = optim_group_index(kind, PG_BN, 1);
    t[2].group = optim_group_index(kind, mu ? PG_MUON : PG_WEIGHT, 1);
    t[3].group = optim_group_index(kind, PG_BIAS, 0);
    const size_t n = 1800;
    char err[200];
    if (optim_init(o, kind, n, t, 4, gr, ng, err, sizeof err)) FATAL("op harness: %s", err);
    o->nesterov = nesterov;
    optim_adopt_state(o, bops_zeros(e, n), kind == OPTIM_SGD ? NULL : bops_zeros(e, n));
}

/* p = kind nesterov steps: 3 steps with fresh gradients. */
static void run_optim_step(bops_env *e, const bops_case *c) {
    optimizer o;
    optim_kind kind = (optim_kind)c->p[0];
    optim_case_init(e, &o, kind, c->p[1]);
    const size_t n = o.n;
    float *m1 = o.m1, *m2 = o.m2;
    float *p = bops_in(e, n, -1, 1);
    for (int s = 0; s < c->p[2]; s++) backend_optim_step(e->be, &o, p, bops_in(e, n, -1, 1));
    bops_take(e, "params", p, n);
    bops_take(e, "m1", m1, n);
    if (m2) bops_take(e, "m2", m2, n);
    optim_free(&o);
}
/* p = n max_norm */
static void run_clip_grad_norm(bops_env *e, const bops_case *c) {
    size_t n = (size_t)c->p[0];
    float *g = bops_in(e, n, -1, 1);
    backend_clip_grad_norm(e->be, g, n, (double)c->p[1]);
    bops_take(e, "grads", g, n);
}
/* p = kind nesterov steps max_norm: optim_update (clip, step, zero, EMA) with fresh gradients */
static void run_optim_update(bops_env *e, const bops_case *c) {
    optimizer o;
    optim_case_init(e, &o, (optim_kind)c->p[0], c->p[1]);
    const size_t n = o.n;
    float *p = bops_in(e, n, -1, 1), *ema = bops_in(e, n, -1, 1), *g = NULL;
    for (int s = 0; s < c->p[2]; s++) {
        g = bops_in(e, n, -1, 1);
        backend_optim_update(e->be, &o, p, g, (double)c->p[3], ema, 0.25 * (s + 1));
    }
    bops_take(e, "params", p, n);
    bops_take(e, "ema", ema, n);
    bops_take(e, "grads", g, n);
    bops_take(e, "m1", o.m1, n);
    if (o.m2) bops_take(e, "m2", o.m2, n);
    optim_free(&o);
}
static void run_ema_blend(bops_env *e, const bops_case *c) {
    size_t n = (size_t)c->p[0];
    float *ema = bops_in(e, n, -1, 1), *m = bops_in(e, n, -1, 1);
    backend_ema_blend(e->be, ema, m, n, 0.9987);
    bops_take(e, "ema", ema, n);
}

/* ---- the table ---- */

#define ADD(o, fn, lim, ...)                                                                       \
    do {                                                                                           \
        if (n < max) {                                                                             \
            bops_case *k = &cs[n++];                                                               \
            k->op = (o);                                                                           \
            k->run = (fn);                                                                         \
            k->limit_scale = (lim);                                                                \
            snprintf(k->shape, sizeof k->shape, __VA_ARGS__);                                      \
            memcpy(k->p, pv, sizeof k->p);                                                         \
        }                                                                                          \
    } while (0)

int bops_cases(bops_case *cs, int max) {
    int n = 0;
    /* n h w cin cout k s pad groups bias */
    static const int convs[][10] = {
        {2, 32, 32, 3, 16, 3, 2, 1, 1, 0},   /* the stem */
        {2, 16, 16, 16, 32, 3, 1, 1, 1, 0},  /* 3x3 */
        {2, 15, 13, 32, 64, 3, 2, 1, 1, 0},  /* 3x3 stride 2, odd sizes */
        {2, 10, 10, 48, 24, 1, 1, 0, 1, 1},  /* 1x1 with bias (a head's last conv) */
        {2, 12, 12, 32, 32, 3, 1, 1, 32, 0}, /* depthwise (DWConv) */
        {2, 11, 11, 24, 24, 5, 1, 2, 24, 1}, /* depthwise 5x5, bias */
        {1, 9, 9, 16, 16, 3, 2, 1, 16, 0},   /* depthwise stride 2 */
        {2, 8, 8, 32, 64, 3, 1, 1, 2, 0},    /* grouped, not depthwise */
    };
    for (size_t i = 0; i < sizeof convs / sizeof *convs; i++) {
        const int *pv = convs[i];
#define CONV_SHAPE                                                                                 \
    "n%d %dx%dx%d->%d k%d s%d p%d g%d%s", pv[0], pv[1], pv[2], pv[3], pv[4], pv[5], pv[6], pv[7],  \
        pv[8], pv[9] ? " bias" : ""
        ADD(BACKEND_OP_CONV2D_FORWARD, run_conv_forward, 0, CONV_SHAPE);
        ADD(BACKEND_OP_CONV2D_BACKWARD_DATA, run_conv_backward_data, 0, CONV_SHAPE);
        ADD(BACKEND_OP_CONV2D_BACKWARD_FILTER, run_conv_backward_filter, 0, CONV_SHAPE);
        ADD(BACKEND_OP_CONV2D_BACKWARD_DATA_SET, run_conv_backward_data_set, 0, CONV_SHAPE);
        /* bf16: every shape (the bf16 graph reads shadows in its depthwise convs too) */
        ADD(BACKEND_OP_CONV2D_FORWARD_BF16, run_conv_forward_bf16, 0, CONV_SHAPE);
        ADD(BACKEND_OP_CONV2D_BACKWARD_BF16, run_conv_backward_bf16, 0, CONV_SHAPE);
#undef CONV_SHAPE
    }
    static const int bns[][10] = {
        {1, 3}, {2 * 7 * 7, 16}, {2 * 20 * 20, 64}, {3 * 5 * 5, 40}, {2 * 4 * 4, 300}};
    for (size_t i = 0; i < sizeof bns / sizeof *bns; i++) {
        const int *pv = bns[i];
        ADD(BACKEND_OP_BATCHNORM_FORWARD_TRAIN, run_bn_train, 0, "m%d c%d", pv[0], pv[1]);
        ADD(BACKEND_OP_BATCHNORM_FORWARD_EVAL, run_bn_eval, 0, "m%d c%d", pv[0], pv[1]);
        ADD(BACKEND_OP_BATCHNORM_BACKWARD, run_bn_backward, 0, "m%d c%d", pv[0], pv[1]);
        ADD(BACKEND_OP_BATCHNORM_SILU_FORWARD_TRAIN, run_bn_train, 0, "m%d c%d", pv[0], pv[1]);
        ADD(BACKEND_OP_BATCHNORM_SILU_FORWARD_EVAL, run_bn_eval, 0, "m%d c%d", pv[0], pv[1]);
        ADD(BACKEND_OP_BATCHNORM_SILU_BACKWARD, run_bn_backward, 0, "m%d c%d", pv[0], pv[1]);
        ADD(BACKEND_OP_BATCHNORM_SILU_BACKWARD_SET, run_bn_backward, 0, "m%d c%d", pv[0], pv[1]);
        ADD(BACKEND_OP_BATCHNORM_SILU_FORWARD_TRAIN_BF16, run_bn_silu_train_bf16, 0, "m%d c%d",
            pv[0], pv[1]);
        ADD(BACKEND_OP_BATCHNORM_SILU_FORWARD_EVAL_BF16, run_bn_silu_eval_bf16, 0, "m%d c%d", pv[0],
            pv[1]);
        ADD(BACKEND_OP_BATCHNORM_SILU_BACKWARD_SET_BF16, run_bn_silu_backward_set_bf16, 0,
            "m%d c%d", pv[0], pv[1]);
    }
    static const int ns[][10] = {{1}, {1000}, {100003}};
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++) {
        const int *pv = ns[i];
        ADD(BACKEND_OP_SILU_FORWARD, run_silu_forward, 0, "n%d", pv[0]);
        ADD(BACKEND_OP_SILU_BACKWARD, run_silu_backward, 0, "n%d", pv[0]);
        ADD(BACKEND_OP_ADD, run_add, 0, "n%d", pv[0]);
        ADD(BACKEND_OP_ACCUMULATE, run_accumulate, 0, "n%d", pv[0]);
        ADD(BACKEND_OP_SCALE, run_scale, 0, "n%d", pv[0]);
        ADD(BACKEND_OP_NORMALIZE_U8, run_normalize_u8, 0, "n%d", pv[0]);
        ADD(BACKEND_OP_EMA_BLEND, run_ema_blend, 0, "n%d", pv[0]);
        ADD(BACKEND_OP_TO_BF16, run_to_bf16, 0, "n%d", pv[0]);
    }
    static const int concats[][10] = {{128, 2, 16, 16, 0, -1}, {75, 3, 8, 13, 24, 1}};
    for (size_t i = 0; i < sizeof concats / sizeof *concats; i++) {
        const int *pv = concats[i];
        ADD(BACKEND_OP_CONCAT_FORWARD, run_concat_forward, 0, "m%d k%d", pv[0], pv[1]);
        ADD(BACKEND_OP_CONCAT_BACKWARD, run_concat_backward, 0, "m%d k%d (dx%d NULL)", pv[0], pv[1],
            pv[5]);
    }
    static const int slices[][10] = {{128, 32, 16, 16}, {75, 24, 3, 13}};
    for (size_t i = 0; i < sizeof slices / sizeof *slices; i++) {
        const int *pv = slices[i];
        ADD(BACKEND_OP_SLICE_FORWARD, run_slice_forward, 0, "m%d cx%d off%d c%d", pv[0], pv[1],
            pv[2], pv[3]);
        ADD(BACKEND_OP_SLICE_BACKWARD, run_slice_backward, 0, "m%d cx%d off%d c%d", pv[0], pv[1],
            pv[2], pv[3]);
    }
    static const int ups[][10] = {{2, 5, 7, 16}, {1, 10, 10, 3}};
    for (size_t i = 0; i < sizeof ups / sizeof *ups; i++) {
        const int *pv = ups[i];
        ADD(BACKEND_OP_UPSAMPLE2X_FORWARD, run_upsample_forward, 0, "%dx%dx%dx%d", pv[0], pv[1],
            pv[2], pv[3]);
        ADD(BACKEND_OP_UPSAMPLE2X_BACKWARD, run_upsample_backward, 0, "%dx%dx%dx%d", pv[0], pv[1],
            pv[2], pv[3]);
    }
    static const int pools[][10] = {
        {2, 10, 10, 16, 5, 1, 2}, {2, 9, 7, 8, 3, 2, 1}, {1, 8, 8, 5, 2, 2, 0}};
    for (size_t i = 0; i < sizeof pools / sizeof *pools; i++) {
        const int *pv = pools[i];
        ADD(BACKEND_OP_MAXPOOL_FORWARD, run_maxpool_forward, 0, "%dx%dx%dx%d k%d s%d p%d", pv[0],
            pv[1], pv[2], pv[3], pv[4], pv[5], pv[6]);
        ADD(BACKEND_OP_MAXPOOL_BACKWARD, run_maxpool_backward, 0, "%dx%dx%dx%d k%d s%d p%d", pv[0],
            pv[1], pv[2], pv[3], pv[4], pv[5], pv[6]);
    }
    static const int attns[][10] = {
        {2, 16, 2, 8, 16, 1}, {1, 49, 1, 32, 64, 0}, {2, 25, 4, 16, 32, 1}};
    for (size_t i = 0; i < sizeof attns / sizeof *attns; i++) {
        const int *pv = attns[i];
        ADD(BACKEND_OP_ATTENTION_FORWARD, run_attention_forward, 0, "n%d hw%d heads%d kd%d hd%d",
            pv[0], pv[1], pv[2], pv[3], pv[4]);
        ADD(BACKEND_OP_ATTENTION_BACKWARD, run_attention_backward, 0,
            "n%d hw%d heads%d kd%d hd%d%s", pv[0], pv[1], pv[2], pv[3], pv[4], pv[5] ? " dv" : "");
    }
    static const int decs[][10] = {{2, 84, 16, 3, 0}, {2, 84, 1, 80, 1}};
    for (size_t i = 0; i < sizeof decs / sizeof *decs; i++) {
        const int *pv = decs[i];
        ADD(BACKEND_OP_DETECT_DECODE, run_detect_decode, 0, "%d x %d anchors reg_max%d nc%d%s",
            pv[0], pv[1], pv[2], pv[3], pv[4] ? " xyxy" : "");
    }
    /* the loss: v8 (reg_max 16) under 8.4.33, yolo26's E2E (reg_max 1) under 8.4.190 with
     * class weights, and a crowded image */
    static const int losses[][10] = {{2, 16, 3, 1, 3, 0}, {2, 1, 4, 2, 4, 1}, {1, 16, 2, 1, 12, 1}};
    for (size_t i = 0; i < sizeof losses / sizeof *losses; i++) {
        const int *pv = losses[i];
        ADD(BACKEND_OP_DETLOSS, run_detloss, 0, "%d x 84 anchors reg_max%d nc%d %s %d/img %s",
            pv[0], pv[1], pv[2], pv[3] == 2 ? "e2e" : "v8", pv[4], pv[5] ? "8.4.190" : "8.4.33");
    }
    /* MuSGD: NS5 rounds every intermediate to bf16, and a last-bit difference of cuBLAS's sum
     * order can move a value across a bf16 rounding boundary: a looser limit */
    static const int opts[][10] = {{OPTIM_SGD, 1, 3},
                                   {OPTIM_SGD, 0, 3},
                                   {OPTIM_ADAMW, 1, 3},
                                   {OPTIM_MUSGD, 1, 3},
                                   {OPTIM_MUSGD, 0, 2}};
    static const char *const kinds[] = {"SGD", "AdamW", "MuSGD"};
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) {
        const int *pv = opts[i];
        ADD(BACKEND_OP_OPTIM_STEP, run_optim_step, pv[0] == OPTIM_MUSGD ? 1e3 : 0,
            "%s nesterov%d %d steps", kinds[pv[0]], pv[1], pv[2]);
    }
    static const int updates[][10] = {
        {OPTIM_ADAMW, 1, 3, 5}, {OPTIM_SGD, 1, 2, 1000}, {OPTIM_MUSGD, 1, 2, 5}};
    for (size_t i = 0; i < sizeof updates / sizeof *updates; i++) {
        const int *pv = updates[i];
        ADD(BACKEND_OP_OPTIM_UPDATE, run_optim_update, pv[0] == OPTIM_MUSGD ? 1e3 : 0,
            "%s nesterov%d %d steps max_norm %d", kinds[pv[0]], pv[1], pv[2], pv[3]);
    }
    static const int clips[][10] = {{100003, 10}, {1000, 1000}};
    for (size_t i = 0; i < sizeof clips / sizeof *clips; i++) {
        const int *pv = clips[i];
        ADD(BACKEND_OP_CLIP_GRAD_NORM, run_clip_grad_norm, 0, "n%d max_norm %d", pv[0], pv[1]);
    }
    /* images anchors nc one2one agnostic multi_label max_det max_nms conf x 1000 */
    static const int nmss[][10] = {
        {2, 300, 3, 0, 0, 1, 300, 30000, 1},    /* NMS, multi-label, conf 0.001 */
        {2, 500, 80, 0, 0, 1, 100, 1000, 1},    /* 80 classes, more candidates than max_nms */
        {3, 200, 5, 0, 1, 0, 50, 30000, 250},   /* class-agnostic, one label per anchor */
        {2, 100, 2, 0, 0, 1, 300, 30000, 1000}, /* nothing above conf */
        {2, 300, 5, 1, 0, 0, 300, 0, 1},        /* yolo26 top-k, K = anchors */
        {2, 400, 3, 1, 1, 0, 50, 0, 100},       /* top-k, agnostic */
    };
    for (size_t i = 0; i < sizeof nmss / sizeof *nmss; i++) {
        const int *pv = nmss[i];
        ADD(BACKEND_OP_NMS, bops_run_nms, 0,
            "%d x %d anchors nc%d %s%s%s max_det%d max_nms%d conf%g", pv[0], pv[1], pv[2],
            pv[3] ? "top-k" : "nms", pv[4] ? " agnostic" : "", pv[5] ? " multi" : "", pv[6], pv[7],
            pv[8] / 1000.0);
    }
    if (n >= max) FATAL("op harness: more than %d cases", max);
    return n;
}
