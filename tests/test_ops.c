/* Kernel checks (suite ops): batch norm, SiLU, layout ops. Every op: forward against a double
 * reference, finite-difference gradient check in double, and accumulate semantics. */
#include "kernels/activation.h"
#include "kernels/batchnorm.h"
#include "kernels/tensor_ops.h"
#include "kernels/threads.h"
#include "tests/gradcheck.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FD_H 1e-5

/* ---- batch norm --------------------------------------------------------------------------- */

typedef struct {
    int m, c;
} bn_ctx;

/* in = [x (m*c) | gamma (c) | beta (c)] -> y (m*c), batch statistics, biased variance. */
static void bn_ref(const void *vctx, const double *in, double *y) {
    const bn_ctx *k = vctx;
    const double *x = in, *g = in + k->m * k->c, *b = g + k->c;
    for (int ch = 0; ch < k->c; ch++) {
        double mean = 0, var = 0;
        for (int r = 0; r < k->m; r++) mean += x[r * k->c + ch];
        mean /= k->m;
        for (int r = 0; r < k->m; r++) var += pow(x[r * k->c + ch] - mean, 2);
        var /= k->m;
        for (int r = 0; r < k->m; r++)
            y[r * k->c + ch] = (x[r * k->c + ch] - mean) / sqrt(var + 1e-3) * g[ch] + b[ch];
    }
}

Test(ops, batchnorm_train_forward_backward_fd) {
    bn_ctx k = {7, 3};
    int m = k.m, c = k.c, nin = m * c + 2 * c;
    float x[7 * 3], gb[6], y[7 * 3], dy[7 * 3], mean[3], invstd[3];
    fill_uniform(x, m * c, -1.5, 2.5, 1, 0);
    fill_uniform(gb, 2 * c, 0.5, 1.5, 1, 1);
    fill_uniform(dy, m * c, -1, 1, 1, 2);
    batchnorm_forward_train(m, c, x, gb, gb + c, BN_EPS, BN_MOMENTUM, NULL, NULL, mean, invstd, y);

    double in[7 * 3 + 6], yref[7 * 3], r[7 * 3], g[7 * 3 + 6];
    to_double(x, in, m * c);
    to_double(gb, in + m * c, 2 * c);
    to_double(dy, r, m * c);
    bn_ref(&k, in, yref);
    check_forward("bn y", y, yref, m * c);

    float dx[7 * 3] = {0}, dgb[6] = {0};
    batchnorm_backward(m, c, x, gb, mean, invstd, dy, dx, dgb, dgb + c);
    fd_gradient(bn_ref, &k, nin, in, m * c, r, FD_H, g);
    check_grad("bn dx", dx, g, m * c);
    check_grad("bn dgamma", dgb, g + m * c, c);
    check_grad("bn dbeta", dgb + c, g + m * c + c, c);

    float dx2[7 * 3] = {0}, dgb2[6] = {0};
    batchnorm_backward(m, c, x, gb, mean, invstd, dy, dx2, dgb2, dgb2 + c);
    batchnorm_backward(m, c, x, gb, mean, invstd, dy, dx2, dgb2, dgb2 + c);
    check_doubles("bn dx", dx, dx2, m * c);
    check_doubles("bn dgamma/dbeta", dgb, dgb2, 2 * c);
}

/* running = 0.97 running + 0.03 batch, with the UNBIASED variance; saved stats are the biased
 * ones (invstd = 1/sqrt(biased var + eps)). */
Test(ops, batchnorm_running_stats_unbiased_momentum) {
    int m = 5, c = 4;
    float x[20], gamma[4], beta[4], y[20], mean[4], invstd[4];
    float rm[4] = {0.5f, -1.0f, 0.0f, 2.0f}, rv[4] = {1.0f, 0.25f, 3.0f, 1.0f};
    fill_uniform(x, m * c, -2, 3, 2, 0);
    fill_uniform(gamma, c, 0.5, 1.5, 2, 1);
    fill_uniform(beta, c, -0.5, 0.5, 2, 2);
    float rm0[4], rv0[4];
    memcpy(rm0, rm, sizeof rm);
    memcpy(rv0, rv, sizeof rv);
    batchnorm_forward_train(m, c, x, gamma, beta, BN_EPS, BN_MOMENTUM, rm, rv, mean, invstd, y);
    cr_assert_float_eq(BN_MOMENTUM, 0.03f, 0);
    cr_assert_float_eq(BN_EPS, 1e-3f, 0);
    for (int ch = 0; ch < c; ch++) {
        double mu = 0, ss = 0;
        for (int r = 0; r < m; r++) mu += x[r * c + ch];
        mu /= m;
        for (int r = 0; r < m; r++) ss += pow(x[r * c + ch] - mu, 2);
        double want_rm = 0.97 * rm0[ch] + 0.03 * mu;
        double want_rv = 0.97 * rv0[ch] + 0.03 * ss / (m - 1);
        double biased_rv = 0.97 * rv0[ch] + 0.03 * ss / m;
        cr_assert(fabs(rm[ch] - want_rm) < 1e-6, "running_mean[%d] %g want %g", ch, rm[ch],
                  want_rm);
        cr_assert(fabs(rv[ch] - want_rv) < 1e-6, "running_var[%d] %g want %g (biased would be %g)",
                  ch, rv[ch], want_rv, biased_rv);
        cr_assert(fabs(mean[ch] - mu) < 1e-6);
        cr_assert(fabs(invstd[ch] - 1 / sqrt(ss / m + 1e-3)) < 1e-5 * invstd[ch],
                  "save_invstd uses the biased variance");
    }
    /* inference with the updated running stats */
    float yi[20];
    batchnorm_forward_infer(m, c, x, gamma, beta, rm, rv, BN_EPS, yi);
    double ref[20];
    for (int r = 0; r < m; r++)
        for (int ch = 0; ch < c; ch++)
            ref[r * c + ch] =
                (x[r * c + ch] - (double)rm[ch]) / sqrt((double)rv[ch] + 1e-3) * gamma[ch] +
                beta[ch];
    check_forward("bn infer", yi, ref, m * c);
}

/* Larger shape: several row chunks and threads. Forward and backward against the double formula,
 * and bitwise the same with 1 and 2 threads. */
Test(ops, batchnorm_large_threads_deterministic) {
    int m = 2 * 40 * 40, c = 16;
    size_t n = (size_t)m * c;
    float *x = malloc(n * sizeof(float)), *dy = malloc(n * sizeof(float));
    float *y1 = malloc(n * sizeof(float)), *y2 = malloc(n * sizeof(float));
    float *dx1 = calloc(n, sizeof(float)), *dx2 = calloc(n, sizeof(float));
    double *ref = malloc(n * sizeof(double)), *dref = malloc(n * sizeof(double));
    float gamma[16], beta[16], mean[16], invstd[16], m2[16], i2[16];
    float dg1[32] = {0}, dg2[32] = {0};
    fill_uniform(x, n, 3, 6, 3, 0); /* an offset mean, as after a conv with bias-like drift */
    fill_uniform(dy, n, -1, 1, 3, 1);
    fill_uniform(gamma, c, 0.5, 1.5, 3, 2);
    fill_uniform(beta, c, -1, 1, 3, 3);
    kernels_set_threads(1);
    batchnorm_forward_train(m, c, x, gamma, beta, BN_EPS, BN_MOMENTUM, NULL, NULL, mean, invstd,
                            y1);
    batchnorm_backward(m, c, x, gamma, mean, invstd, dy, dx1, dg1, dg1 + c);
    kernels_set_threads(2);
    batchnorm_forward_train(m, c, x, gamma, beta, BN_EPS, BN_MOMENTUM, NULL, NULL, m2, i2, y2);
    batchnorm_backward(m, c, x, gamma, m2, i2, dy, dx2, dg2, dg2 + c);
    kernels_set_threads(1);
    cr_assert(memcmp(y1, y2, n * sizeof(float)) == 0, "forward differs with 2 threads");
    cr_assert(memcmp(dx1, dx2, n * sizeof(float)) == 0, "backward differs with 2 threads");
    cr_assert(memcmp(dg1, dg2, sizeof dg1) == 0, "dgamma/dbeta differ with 2 threads");

    double dgref[32];
    for (int ch = 0; ch < c; ch++) {
        double mu = 0, var = 0, sdy = 0, sdyx = 0;
        for (int r = 0; r < m; r++) mu += x[(size_t)r * c + ch];
        mu /= m;
        for (int r = 0; r < m; r++) var += pow(x[(size_t)r * c + ch] - mu, 2);
        var /= m;
        double is = 1 / sqrt(var + 1e-3);
        for (int r = 0; r < m; r++) {
            size_t i = (size_t)r * c + ch;
            double xh = (x[i] - mu) * is;
            ref[i] = xh * gamma[ch] + beta[ch];
            sdy += dy[i];
            sdyx += dy[i] * xh;
        }
        for (int r = 0; r < m; r++) {
            size_t i = (size_t)r * c + ch;
            double xh = (x[i] - mu) * is;
            dref[i] = gamma[ch] * is * (dy[i] - sdy / m - xh * sdyx / m);
        }
        dgref[ch] = sdyx;
        dgref[c + ch] = sdy;
    }
    check_close("bn large y", y1, ref, n, 1e-5, 1e-5, 1);
    check_close("bn large dx", dx1, dref, n, 1e-4, 1e-6, 1e-3);
    check_close("bn large dgamma/dbeta", dg1, dgref, 2 * c, 1e-5, 1e-4, 1);
    free(x), free(dy), free(y1), free(y2), free(dx1), free(dx2), free(ref), free(dref);
}

/* ---- SiLU --------------------------------------------------------------------------------- */

static void silu_ref(const void *ctx, const double *in, double *out) {
    size_t n = *(const size_t *)ctx;
    for (size_t i = 0; i < n; i++) out[i] = in[i] / (1 + exp(-in[i]));
}

Test(ops, silu_forward_backward_fd) {
    size_t n = 40;
    float x[40], y[40], dy[40], dx[40] = {0}, dx2[40] = {0};
    fill_uniform(x, n, -6, 6, 4, 0);
    x[0] = -90.0f; /* far tails: no NaN/inf */
    x[1] = 90.0f;
    fill_uniform(dy, n, -1, 1, 4, 1);
    double in[40], ref[40], r[40], g[40];
    to_double(x, in, n);
    to_double(dy, r, n);
    silu_forward(n, x, y);
    silu_ref(&n, in, ref);
    check_close("silu y", y, ref, n, 1e-6, 1e-6, 1);
    silu_backward(n, x, dy, dx);
    fd_gradient(silu_ref, &n, n, in, n, r, FD_H, g);
    check_grad("silu dx", dx, g, n);
    silu_backward(n, x, dy, dx2);
    silu_backward(n, x, dy, dx2);
    check_doubles("silu dx", dx, dx2, n);
    float z[40];
    memcpy(z, x, sizeof z);
    silu_forward(n, z, z); /* in place */
    cr_assert(memcmp(z, y, sizeof z) == 0, "in-place SiLU differs");
}

/* ---- residual add and accumulate ----------------------------------------------------------- */

static void add_ref(const void *ctx, const double *in, double *out) {
    size_t n = *(const size_t *)ctx;
    for (size_t i = 0; i < n; i++) out[i] = in[i] + in[n + i];
}

Test(ops, add_and_accumulate_fd) {
    size_t n = 24;
    float ab[48], y[24], dy[24], dab[48] = {0};
    fill_uniform(ab, 2 * n, -2, 2, 5, 0);
    fill_uniform(dy, n, -1, 1, 5, 1);
    add_forward(n, ab, ab + n, y);
    double in[48], ref[24], r[24], g[48];
    to_double(ab, in, 2 * n);
    to_double(dy, r, n);
    add_ref(&n, in, ref);
    check_forward("add y", y, ref, n);
    /* backward of add is accumulate(dy) into both inputs */
    accumulate(n, dy, dab);
    accumulate(n, dy, dab + n);
    fd_gradient(add_ref, &n, 2 * n, in, n, r, FD_H, g);
    check_grad("add da,db", dab, g, 2 * n);
    float acc[48];
    memcpy(acc, dab, sizeof acc);
    accumulate(2 * n, dab, acc);
    check_doubles("accumulate", dab, acc, 2 * n);
    add_forward(n, ab, ab + n, ab); /* y may alias a */
    cr_assert(memcmp(ab, y, n * sizeof(float)) == 0);
}

/* ---- concat ------------------------------------------------------------------------------- */

typedef struct {
    size_t m;
    int k;
    const int *cs;
} cat_ctx;

static int sum_int(int k, const int *v) {
    int s = 0;
    for (int i = 0; i < k; i++) s += v[i];
    return s;
}

/* in = x0 | x1 | ... (each [m][cs[i]]) -> y [m][sum cs] */
static void concat_ref(const void *vctx, const double *in, double *y) {
    const cat_ctx *k = vctx;
    int ct = sum_int(k->k, k->cs);
    const double *xi = in;
    int off = 0;
    for (int i = 0; i < k->k; i++) {
        for (size_t r = 0; r < k->m; r++)
            for (int j = 0; j < k->cs[i]; j++) y[r * ct + off + j] = xi[r * k->cs[i] + j];
        xi += k->m * k->cs[i];
        off += k->cs[i];
    }
}

Test(ops, concat_forward_backward_fd) {
    int cs[3] = {2, 3, 1};
    cat_ctx k = {5, 3, cs};
    size_t m = k.m, ct = 6, n = m * ct;
    float xs[30], y[30], dy[30], dxs[30] = {0}, dxs2[30] = {0};
    fill_uniform(xs, n, -1, 1, 6, 0);
    fill_uniform(dy, n, -1, 1, 6, 1);
    const float *xp[3] = {xs, xs + m * 2, xs + m * 5};
    concat_forward(m, 3, xp, cs, y);
    double in[30], ref[30], r[30], g[30];
    to_double(xs, in, n);
    to_double(dy, r, n);
    concat_ref(&k, in, ref);
    check_forward("concat y", y, ref, n);
    float *dp[3] = {dxs, dxs + m * 2, dxs + m * 5};
    concat_backward(m, 3, cs, dy, dp);
    fd_gradient(concat_ref, &k, n, in, n, r, FD_H, g);
    check_grad("concat dx", dxs, g, n);
    float *dp2[3] = {dxs2, NULL, dxs2 + m * 5}; /* NULL skips an input */
    concat_backward(m, 3, cs, dy, dp2);
    concat_backward(m, 3, cs, dy, dp2);
    check_doubles("concat dx0", dxs, dxs2, m * 2);
    check_doubles("concat dx2", dxs + m * 5, dxs2 + m * 5, m);
    for (size_t i = m * 2; i < m * 5; i++) cr_assert(dxs2[i] == 0.0f, "NULL input was written");
}

/* ---- channel slice (C2f split) -------------------------------------------------------------- */

typedef struct {
    size_t m;
    int cx, off, c;
} slice_ctx;

static void slice_ref(const void *vctx, const double *x, double *y) {
    const slice_ctx *k = vctx;
    for (size_t r = 0; r < k->m; r++)
        for (int j = 0; j < k->c; j++) y[r * k->c + j] = x[r * k->cx + k->off + j];
}

Test(ops, slice_channels_forward_backward_fd) {
    slice_ctx k = {4, 7, 2, 3};
    size_t nx = k.m * k.cx, ny = k.m * k.c;
    float x[28], y[12], dy[12], dx[28] = {0}, dx2[28] = {0};
    fill_uniform(x, nx, -1, 1, 7, 0);
    fill_uniform(dy, ny, -1, 1, 7, 1);
    slice_channels_forward(k.m, k.cx, k.off, k.c, x, y);
    double in[28], ref[12], r[12], g[28];
    to_double(x, in, nx);
    to_double(dy, r, ny);
    slice_ref(&k, in, ref);
    check_forward("slice y", y, ref, ny);
    slice_channels_backward(k.m, k.cx, k.off, k.c, dy, dx);
    fd_gradient(slice_ref, &k, nx, in, ny, r, FD_H, g);
    check_grad("slice dx", dx, g, nx);
    slice_channels_backward(k.m, k.cx, k.off, k.c, dy, dx2);
    slice_channels_backward(k.m, k.cx, k.off, k.c, dy, dx2);
    check_doubles("slice dx", dx, dx2, nx);
}

/* ---- nearest 2x upsample ------------------------------------------------------------------- */

typedef struct {
    int n, h, w, c;
} up_ctx;

static void upsample_ref(const void *vctx, const double *x, double *y) {
    const up_ctx *k = vctx;
    for (int b = 0; b < k->n; b++)
        for (int oy = 0; oy < 2 * k->h; oy++)
            for (int ox = 0; ox < 2 * k->w; ox++)
                for (int ch = 0; ch < k->c; ch++)
                    y[((b * 2 * k->h + oy) * 2 * k->w + ox) * k->c + ch] =
                        x[((b * k->h + oy / 2) * k->w + ox / 2) * k->c + ch];
}

Test(ops, upsample2x_forward_backward_fd) {
    up_ctx k = {2, 3, 2, 3};
    size_t nx = 2 * 3 * 2 * 3, ny = nx * 4;
    float x[36], y[144], dy[144], dx[36] = {0}, dx2[36] = {0};
    fill_uniform(x, nx, -1, 1, 8, 0);
    fill_uniform(dy, ny, -1, 1, 8, 1);
    upsample2x_forward(k.n, k.h, k.w, k.c, x, y);
    double in[36], ref[144], r[144], g[36];
    to_double(x, in, nx);
    to_double(dy, r, ny);
    upsample_ref(&k, in, ref);
    check_forward("upsample y", y, ref, ny);
    upsample2x_backward(k.n, k.h, k.w, k.c, dy, dx);
    fd_gradient(upsample_ref, &k, nx, in, ny, r, FD_H, g);
    check_grad("upsample dx", dx, g, nx);
    upsample2x_backward(k.n, k.h, k.w, k.c, dy, dx2);
    upsample2x_backward(k.n, k.h, k.w, k.c, dy, dx2);
    check_doubles("upsample dx", dx, dx2, nx);
}

/* The parallel paths of the layout ops give the same bits as the serial ones. */
Test(ops, layout_ops_threads_deterministic) {
    int n = 2, h = 40, w = 40, c = 16;
    size_t nx = (size_t)n * h * w * c;
    float *x = malloc(nx * sizeof(float)), *dy = malloc(4 * nx * sizeof(float));
    float *y1 = malloc(4 * nx * sizeof(float)), *y2 = malloc(4 * nx * sizeof(float));
    float *d1 = calloc(nx, sizeof(float)), *d2 = calloc(nx, sizeof(float));
    fill_uniform(x, nx, -1, 1, 9, 0);
    fill_uniform(dy, 4 * nx, -1, 1, 9, 1);
    kernels_set_threads(1);
    upsample2x_forward(n, h, w, c, x, y1);
    upsample2x_backward(n, h, w, c, dy, d1);
    silu_backward(4 * nx, dy, dy, y1 + 0); /* exercises the parallel SiLU path too */
    kernels_set_threads(2);
    upsample2x_forward(n, h, w, c, x, y2);
    upsample2x_backward(n, h, w, c, dy, d2);
    silu_backward(4 * nx, dy, dy, y2 + 0);
    kernels_set_threads(1);
    cr_assert(memcmp(y1, y2, 4 * nx * sizeof(float)) == 0);
    cr_assert(memcmp(d1, d2, nx * sizeof(float)) == 0);
    free(x), free(dy), free(y1), free(y2), free(d1), free(d2);
}

/* ---- the vectorised exp behind SiLU, softmax and DFL ---------------------------------------- */

#include "kernels/fast_exp.h"

Test(ops, exp_fast_accuracy_and_extremes) {
    double worst = 0;
    for (int i = 0; i <= 200000; i++) {
        float x = -87.0f + 175.0f * (float)i / 200000;
        double rel = fabs(exp_fast(x) / exp((double)x) - 1);
        if (rel > worst) worst = rel;
    }
    cr_assert(worst < 5e-7, "exp_fast max relative error %g", worst);
    cr_log_info("exp_fast max relative error on [-87, 88]: %.2e", worst);
    float big = exp_fast(1000.0f), tiny = exp_fast(-1000.0f);
    cr_assert(isfinite(big) && big > 1e38f, "exp_fast(1000) = %g", big);
    cr_assert(tiny > 0 && tiny < 1e-37f, "exp_fast(-1000) = %g", tiny);
    cr_assert(isfinite(exp_fast(INFINITY)) && exp_fast(-INFINITY) >= 0);
    cr_assert(isnan(exp_fast(NAN)));
    float x[4] = {NAN, -INFINITY, INFINITY, -200.0f}, y[4], dx[4] = {0}, dy[4] = {1, 1, 1, 1};
    silu_forward(4, x, y);
    cr_assert(isnan(y[0]), "SiLU propagates NaN");
    /* +inf stays inf; -200 gives ~0 (exactly: -200 e^-200); -inf is not checked (PyTorch: NaN) */
    cr_assert(y[2] == INFINITY && y[3] <= 0.0f && y[3] > -1e-30f, "SiLU tails: %g %g", y[2], y[3]);
    silu_backward(4, x, dy, dx);
    cr_assert(isnan(dx[0]));
    cr_assert(fabsf(dx[3]) < 1e-30f, "silu'(-200) ~ 0, got %g", dx[3]);
}
