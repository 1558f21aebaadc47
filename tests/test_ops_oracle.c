/* Kernel checks against the PyTorch oracle (suite ops): batch norm + SiLU of a whole layer, the
 * SPPF pool chain with its concat, and the C2PSA attention core, forward and backward. The small
 * 1x1 and depthwise convs around them are done here with plain loops. Tolerances follow the
 * oracle README, tightened (we see ~1e-7): forward 1e-4 of max|ref|, gradients 1e-3 of max|ref|. */
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/batchnorm.h"
#include "kernels/pool.h"
#include "kernels/tensor_ops.h"
#include "tests/oracle.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define V8 "yolov8n-nc3-64.h5"
#define Y26 "yolo26n-nc3-64.h5"

static const char *need(const char *file) {
    const char *p = oracle_path(file);
    cr_assert(p, "oracle file %s not found under ../shared/data/oracle", file);
    return p;
}

/* A dataset as is (params, buffers); asserts the element count when want > 0. */
static float *load(const char *file, const char *dset, size_t want) {
    size_t n = 0;
    float *v = oracle_read_f32(file, dset, &n, NULL, NULL);
    cr_assert(v, "%s: missing %s", file, dset);
    cr_assert(want == 0 || n == want, "%s: %s has %zu values, want %zu", file, dset, n, want);
    return v;
}

/* An NCHW activation as NHWC; *dims gets (n, c, h, w). */
static float *load_nhwc(const char *file, const char *dset, int dims[4]) {
    size_t n = 0, d[8];
    int nd = 0;
    float *v = oracle_read_f32(file, dset, &n, &nd, d);
    cr_assert(v && nd == 4, "%s: missing 4-d %s", file, dset);
    float *t = malloc(n * sizeof(float));
    nchw_to_nhwc(v, t, (int)d[0], (int)d[1], (int)d[2], (int)d[3]);
    free(v);
    for (int i = 0; i < 4; i++) dims[i] = (int)d[i];
    return t;
}

static void expect_close(const char *what, const float *got, const float *ref, size_t n,
                         double tol) {
    double r = rel_max_diff(got, ref, n);
    cr_assert(r <= tol, "%s: max|diff|/max|ref| = %g > %g", what, r, tol);
}

/* v8n model.0: conv output -> BN (train) -> SiLU, then back from the grad of the SiLU output. */
Test(ops, oracle_batchnorm_silu_layer0) {
    const char *f = need(V8);
    int d[4];
    float *x = load_nhwc(f, "/activations/model.0.conv", d);
    int c = d[1], m = d[0] * d[2] * d[3];
    size_t n = (size_t)m * c;
    float *gamma = load(f, "/params/model.0.bn.weight", c);
    float *beta = load(f, "/params/model.0.bn.bias", c);
    float *rm = load(f, "/buffers/model.0.bn.running_mean", c);
    float *rv = load(f, "/buffers/model.0.bn.running_var", c);
    float *bn_ref = load_nhwc(f, "/activations/model.0.bn", d);
    float *act_ref = load_nhwc(f, "/activations/model.0", d);
    float *g_act = load_nhwc(f, "/act_grads/model.0", d);
    float *g_x_ref = load_nhwc(f, "/act_grads/model.0.conv", d);
    float *rm_ref = load(f, "/bn_after/model.0.bn.running_mean", c);
    float *rv_ref = load(f, "/bn_after/model.0.bn.running_var", c);
    float *dg_ref = load(f, "/grads/model.0.bn.weight", c);
    float *db_ref = load(f, "/grads/model.0.bn.bias", c);

    float *y = malloc(n * sizeof(float)), *a = malloc(n * sizeof(float));
    float *dy = calloc(n, sizeof(float)), *dx = calloc(n, sizeof(float));
    float *mean = malloc(c * sizeof(float)), *invstd = malloc(c * sizeof(float));
    float *dgb = calloc(2 * c, sizeof(float));
    batchnorm_forward_train(m, c, x, gamma, beta, BN_EPS, BN_MOMENTUM, rm, rv, mean, invstd, y);
    expect_close("bn output", y, bn_ref, n, 1e-4);
    expect_close("running_mean", rm, rm_ref, c, 1e-4);
    expect_close("running_var", rv, rv_ref, c, 1e-4);
    silu_forward(n, y, a);
    expect_close("silu output", a, act_ref, n, 1e-4);
    silu_backward(n, y, g_act, dy);
    batchnorm_backward(m, c, x, gamma, mean, invstd, dy, dx, dgb, dgb + c);
    expect_close("d conv output", dx, g_x_ref, n, 1e-3);
    expect_close("d gamma", dgb, dg_ref, c, 1e-3);
    expect_close("d beta", dgb + c, db_ref, c, 1e-3);
    free(x), free(gamma), free(beta), free(rm), free(rv), free(bn_ref), free(act_ref), free(g_act);
    free(g_x_ref), free(rm_ref), free(rv_ref), free(dg_ref), free(db_ref), free(y), free(a);
    free(dy), free(dx), free(mean), free(invstd), free(dgb);
}

/* yolo26 qkv conv's BN: no activation, m = 8 rows, so the unbiased factor is 8/7. */
Test(ops, oracle_batchnorm_small_batch_running_var) {
    const char *f = need(Y26);
    const char *b = "model.10.m.0.attn.qkv";
    char p[256];
    int d[4];
    snprintf(p, sizeof p, "/activations/%s.conv", b);
    float *x = load_nhwc(f, p, d);
    int c = d[1], m = d[0] * d[2] * d[3];
    cr_assert_eq(m, 8);
    snprintf(p, sizeof p, "/params/%s.bn.weight", b);
    float *gamma = load(f, p, c);
    snprintf(p, sizeof p, "/params/%s.bn.bias", b);
    float *beta = load(f, p, c);
    snprintf(p, sizeof p, "/buffers/%s.bn.running_mean", b);
    float *rm = load(f, p, c);
    snprintf(p, sizeof p, "/buffers/%s.bn.running_var", b);
    float *rv = load(f, p, c);
    snprintf(p, sizeof p, "/bn_after/%s.bn.running_var", b);
    float *rv_ref = load(f, p, c);
    snprintf(p, sizeof p, "/activations/%s.bn", b);
    float *y_ref = load_nhwc(f, p, d);
    float *y = malloc((size_t)m * c * sizeof(float)), mean[256], invstd[256];
    cr_assert(c <= 256);
    batchnorm_forward_train(m, c, x, gamma, beta, BN_EPS, BN_MOMENTUM, rm, rv, mean, invstd, y);
    expect_close("qkv bn output", y, y_ref, (size_t)m * c, 1e-4);
    expect_close("qkv running_var (unbiased)", rv, rv_ref, c, 1e-4);
    free(x), free(gamma), free(beta), free(rm), free(rv), free(rv_ref), free(y_ref), free(y);
}

/* dx[r][i] += sum_o dy[r][o] w[o][i] for a 1x1 conv with weight [co][ci]. */
static void conv1x1_backward_input(int rows, int ci, int co, const float *w, const float *dy,
                                   float *dx) {
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < co; o++)
            for (int i = 0; i < ci; i++) dx[r * ci + i] += dy[r * co + o] * w[o * ci + i];
}

/* v8n SPPF: cv1 -> m -> m#1 -> m#2, concat of the four into cv2. Forward of each pool, and the
 * grads of cv1, m and m#1 as concat slice + pool backward of the next pool's grad. */
Test(ops, oracle_sppf_pool_chain) {
    const char *f = need(V8);
    const char *names[4] = {"model.9.cv1", "model.9.m", "model.9.m#1", "model.9.m#2"};
    int d[4];
    float *act[4], *grad[4];
    char p[128];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "/activations/%s", names[i]);
        act[i] = load_nhwc(f, p, d);
        snprintf(p, sizeof p, "/act_grads/%s", names[i]);
        grad[i] = load_nhwc(f, p, d);
    }
    int nb = d[0], c = d[1], h = d[2], w = d[3], rows = nb * h * w;
    size_t n = (size_t)rows * c;
    float *g_cv2 = load_nhwc(f, "/act_grads/model.9.cv2.conv", d);
    int co = d[1];
    float *wcv2 = load(f, "/params/model.9.cv2.conv.weight", (size_t)co * 4 * c);
    float *y = malloc(n * sizeof(float));
    int32_t *am[3];
    for (int i = 0; i < 3; i++) {
        am[i] = malloc(n * sizeof(int32_t));
        maxpool_forward(nb, h, w, c, 5, 1, 2, act[i], y, am[i]);
        expect_close(names[i + 1], y, act[i + 1], n, 1e-6);
    }
    /* grad of the concat [cv1 | m | m#1 | m#2] from cv2's 1x1 conv, split per input */
    float *g_cat = calloc(4 * n, sizeof(float)), *g_in[4];
    conv1x1_backward_input(rows, 4 * c, co, wcv2, g_cv2, g_cat);
    for (int i = 0; i < 4; i++) g_in[i] = calloc(n, sizeof(float));
    concat_backward(rows, 4, (int[]){c, c, c, c}, g_cat, g_in);
    expect_close("grad m#2 (concat only)", g_in[3], grad[3], n, 1e-3);
    for (int i = 2; i >= 0; i--) {
        maxpool_backward(nb, h, w, c, grad[i + 1], am[i], g_in[i]);
        expect_close(names[i], g_in[i], grad[i], n, 1e-3);
    }
    for (int i = 0; i < 4; i++) free(act[i]), free(grad[i]), free(g_in[i]);
    for (int i = 0; i < 3; i++) free(am[i]);
    free(g_cv2), free(wcv2), free(y), free(g_cat);
}

/* Depthwise 3x3, pad 1, weight [c][3][3], NHWC: forward y += and backward dx +=. */
static void dw3x3(int nb, int h, int w, int c, const float *wt, const float *x, float *y,
                  int backward) {
    for (int b = 0; b < nb; b++)
        for (int oy = 0; oy < h; oy++)
            for (int ox = 0; ox < w; ox++)
                for (int ky = 0; ky < 3; ky++)
                    for (int kx = 0; kx < 3; kx++) {
                        int iy = oy + ky - 1, ix = ox + kx - 1;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                        size_t o = (((size_t)b * h + oy) * w + ox) * c;
                        size_t i = (((size_t)b * h + iy) * w + ix) * c;
                        for (int ch = 0; ch < c; ch++) {
                            float k = wt[ch * 9 + ky * 3 + kx];
                            if (backward)
                                y[i + ch] += x[o + ch] * k; /* x = dy, y = dx */
                            else
                                y[o + ch] += x[i + ch] * k;
                        }
                    }
}

/* yolo26 model.10 C2PSA attention: out = proj(O + pe(V)). Checks O and V (through pe.conv and
 * proj.conv) and the grad of qkv from the grads of proj.conv and pe.conv outputs. */
Test(ops, oracle_c2psa_attention) {
    const char *f = need(Y26);
    int d[4];
    float *qkv = load_nhwc(f, "/activations/model.10.m.0.attn.qkv", d);
    int nb = d[0], cq = d[1], h = d[2], w = d[3], hw = h * w, rows = nb * hw;
    int dim = 128, heads = dim / 64, hd = dim / heads, kd = hd / 2;
    cr_assert_eq(cq, dim + 2 * kd * heads);
    attention_desc a = {nb, hw, heads, kd, hd, 1.0f / sqrtf((float)kd)};
    float *pe = load_nhwc(f, "/activations/model.10.m.0.attn.pe", d);
    float *pe_conv = load_nhwc(f, "/activations/model.10.m.0.attn.pe.conv", d);
    float *proj_conv = load_nhwc(f, "/activations/model.10.m.0.attn.proj.conv", d);
    float *g_proj = load_nhwc(f, "/act_grads/model.10.m.0.attn.proj.conv", d);
    float *g_pe_conv = load_nhwc(f, "/act_grads/model.10.m.0.attn.pe.conv", d);
    float *g_pe = load_nhwc(f, "/act_grads/model.10.m.0.attn.pe", d);
    float *g_qkv_ref = load_nhwc(f, "/act_grads/model.10.m.0.attn.qkv", d);
    float *wpe = load(f, "/params/model.10.m.0.attn.pe.conv.weight", (size_t)dim * 9);
    float *wproj = load(f, "/params/model.10.m.0.attn.proj.conv.weight", (size_t)dim * dim);
    size_t no = (size_t)rows * dim;
    float *out = malloc(no * sizeof(float)), *vout = malloc(no * sizeof(float));
    float *probs = malloc((size_t)nb * heads * hw * hw * sizeof(float));
    attention_forward(&a, qkv, out, vout, probs);

    float *t = calloc(no, sizeof(float));
    dw3x3(nb, h, w, dim, wpe, vout, t, 0);
    expect_close("pe.conv(V)", t, pe_conv, no, 1e-4);
    add_forward(no, out, pe, t); /* proj input = O + pe(V) */
    float *yp = calloc(no, sizeof(float));
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < dim; o++) {
            double s = 0;
            for (int i = 0; i < dim; i++) s += (double)wproj[o * dim + i] * t[r * dim + i];
            yp[r * dim + o] = (float)s;
        }
    expect_close("proj.conv(O + pe(V))", yp, proj_conv, no, 1e-4);

    /* backward: dO = proj input grad, dV = pe.conv input grad */
    float *g_o = calloc(no, sizeof(float)), *g_v = calloc(no, sizeof(float));
    conv1x1_backward_input(rows, dim, dim, wproj, g_proj, g_o);
    expect_close("grad of proj input (= grad of pe output)", g_o, g_pe, no, 1e-3);
    dw3x3(nb, h, w, dim, wpe, g_pe_conv, g_v, 1);
    float *g_qkv = calloc((size_t)rows * cq, sizeof(float));
    attention_backward(&a, qkv, probs, g_o, g_v, g_qkv);
    expect_close("grad of qkv", g_qkv, g_qkv_ref, (size_t)rows * cq, 1e-3);
    free(qkv), free(pe), free(pe_conv), free(proj_conv), free(g_proj), free(g_pe_conv), free(g_pe);
    free(g_qkv_ref), free(wpe), free(wproj), free(out), free(vout), free(probs), free(t), free(yp);
    free(g_o), free(g_v), free(g_qkv);
}
