/* conv2d against a naive double-precision reference (every implementation), finite-difference
 * gradient checks, accumulate semantics. Also the gemm wrapper. */
#include "common/rng.h"
#include "kernels/conv2d.h"
#include "kernels/conv2d_internal.h"
#include "kernels/gemm.h"
#include "kernels/threads.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- naive reference, written straight from the definition ---------------------------------- */

static size_t x_size(const conv2d_desc *d) {
    return (size_t)d->n * d->h * d->w * d->cin;
}
static size_t y_size(const conv2d_desc *d) {
    return (size_t)d->n * d->oh * d->ow * d->cout;
}
static size_t w_size(const conv2d_desc *d) {
    return (size_t)d->cout * d->kh * d->kw * (d->cin / d->groups);
}

/* Calls f(xi, wi, yi) for every (input, weight, output) index triple that multiplies. */
#define CONV_FOR_EACH_TAP(d, BODY)                                                                 \
    do {                                                                                           \
        int cg_ = (d)->cin / (d)->groups, og_ = (d)->cout / (d)->groups;                           \
        for (int n = 0; n < (d)->n; n++)                                                           \
            for (int oy = 0; oy < (d)->oh; oy++)                                                   \
                for (int ox = 0; ox < (d)->ow; ox++)                                               \
                    for (int co = 0; co < (d)->cout; co++) {                                       \
                        int g_ = co / og_;                                                         \
                        size_t yi = (((size_t)n * (d)->oh + oy) * (d)->ow + ox) * (d)->cout + co;  \
                        for (int ki = 0; ki < (d)->kh; ki++)                                       \
                            for (int kj = 0; kj < (d)->kw; kj++) {                                 \
                                int iy = oy * (d)->stride - (d)->pad + ki;                         \
                                int ix = ox * (d)->stride - (d)->pad + kj;                         \
                                if (iy < 0 || iy >= (d)->h || ix < 0 || ix >= (d)->w) continue;    \
                                for (int c = 0; c < cg_; c++) {                                    \
                                    size_t xi =                                                    \
                                        (((size_t)n * (d)->h + iy) * (d)->w + ix) * (d)->cin +     \
                                        (size_t)g_ * cg_ + c;                                      \
                                    size_t wi =                                                    \
                                        (((size_t)co * (d)->kh + ki) * (d)->kw + kj) * cg_ + c;    \
                                    BODY;                                                          \
                                }                                                                  \
                            }                                                                      \
                    }                                                                              \
    } while (0)

static void ref_forward(const conv2d_desc *d, const double *x, const double *w, const double *b,
                        double *y) {
    for (size_t i = 0; i < y_size(d); i++) y[i] = b ? b[i % d->cout] : 0.0;
    CONV_FOR_EACH_TAP(d, y[yi] += x[xi] * w[wi]);
}

/* Accumulates, like the library. */
static void ref_backward(const conv2d_desc *d, const double *x, const double *w, const double *dy,
                         double *dx, double *dw, double *db) {
    CONV_FOR_EACH_TAP(d, {
        dx[xi] += dy[yi] * w[wi];
        dw[wi] += dy[yi] * x[xi];
    });
    for (size_t i = 0; i < y_size(d); i++) db[i % d->cout] += dy[i];
}

/* ---- helpers -------------------------------------------------------------------------------- */

static float *rand_f(size_t n, uint64_t key) {
    rng r = rng_keyed(1234, key, n);
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = (float)rng_range(&r, -1.0, 1.0);
    return p;
}
static double *to_d(const float *p, size_t n) {
    double *q = malloc(n * sizeof *q);
    for (size_t i = 0; i < n; i++) q[i] = p[i];
    return q;
}
/* max |a - ref| / max |ref| */
static double rel_err(const float *a, const double *ref, size_t n) {
    double e = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        double di = fabs((double)a[i] - ref[i]);
        if (!(di <= e)) e = di; /* NaN propagates */
        if (fabs(ref[i]) > m) m = fabs(ref[i]);
    }
    return m > 0 ? e / m : e;
}
static float *workspace(const conv2d_desc *d) {
    size_t n = conv2d_workspace_floats(d);
    /* deliberately not 64-byte aligned: the kernel aligns inside the slack it asked for */
    float *ws = malloc((n + 1) * sizeof(float));
    for (size_t i = 0; i < n + 1; i++) ws[i] = NAN; /* workspace contents must not matter */
    return ws;
}

typedef struct shape {
    int n, h, w, cin, cout, k, s, p, g;
} shape;

static const shape SHAPES[] = {
    {2, 7, 5, 8, 12, 1, 1, 0, 1},     /* 1x1 */
    {1, 9, 9, 8, 8, 1, 2, 0, 1},      /* 1x1 stride 2 */
    {2, 9, 11, 5, 7, 3, 1, 1, 1},     /* 3x3 s1, odd sizes */
    {2, 10, 9, 16, 32, 3, 2, 1, 1},   /* 3x3 s2 */
    {1, 13, 7, 3, 16, 3, 2, 1, 1},    /* stem-like, Cin 3 */
    {1, 12, 10, 6, 4, 5, 1, 2, 1},    /* k5 */
    {2, 12, 11, 4, 6, 5, 2, 0, 1},    /* k5 s2 p0: last input rows unused */
    {2, 8, 8, 8, 12, 3, 1, 1, 2},     /* groups 2 */
    {1, 6, 6, 8, 8, 1, 1, 0, 4},      /* 1x1 groups 4 */
    {2, 9, 8, 16, 16, 3, 1, 1, 16},   /* depthwise */
    {1, 10, 11, 24, 24, 3, 2, 1, 24}, /* depthwise s2 */
    {3, 8, 8, 20, 20, 5, 1, 2, 20},   /* depthwise k5, channel count not a multiple of 16 */
    {2, 7, 9, 40, 40, 3, 2, 1, 40},   /* depthwise: 32-channel blocks and a tail */
    {1, 6, 7, 32, 8, 3, 1, 1, 1},     /* AUTO mixes oneDNN (fwd, dx) and GEMM (dw) */
    {2, 7, 6, 64, 8, 3, 2, 1, 1},     /* AUTO: GEMM for strided, wide input */
};
#define NSHAPES (sizeof SHAPES / sizeof *SHAPES)

static conv2d_desc make(const shape *s) {
    return conv2d_make(s->n, s->h, s->w, s->cin, s->cout, s->k, s->s, s->p, s->g);
}

/* Forward with and without bias, backward into non-zero gradients: all against the reference. */
static void check_shape(const shape *s, conv2d_impl impl, uint64_t key) {
    conv2d_set_impl(impl);
    conv2d_desc d = make(s);
    size_t nx = x_size(&d), ny = y_size(&d), nw = w_size(&d);
    float *x = rand_f(nx, key), *w = rand_f(nw, key + 1), *b = rand_f(d.cout, key + 2);
    float *dy = rand_f(ny, key + 3), *dx = rand_f(nx, key + 4), *dw = rand_f(nw, key + 5);
    float *db = rand_f(d.cout, key + 6), *y = malloc(ny * sizeof *y);
    double *xd = to_d(x, nx), *wd = to_d(w, nw), *bd = to_d(b, d.cout), *dyd = to_d(dy, ny);
    double *dxd = to_d(dx, nx), *dwd = to_d(dw, nw), *dbd = to_d(db, d.cout);
    double *yd = malloc(ny * sizeof *yd);
    float *ws = workspace(&d);
    const char *path = conv2d_path(&d);
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        for (size_t i = 0; i < ny; i++) y[i] = NAN; /* forward must overwrite */
        conv2d_forward(&d, x, w, with_bias ? b : NULL, y, ws);
        ref_forward(&d, xd, wd, with_bias ? bd : NULL, yd);
        double e = rel_err(y, yd, ny);
        cr_assert(e < 1e-5, "forward shape %dx%dx%d->%d k%d s%d p%d g%d bias %d path %s: err %g",
                  s->h, s->w, s->cin, s->cout, s->k, s->s, s->p, s->g, with_bias, path, e);
    }
    conv2d_backward(&d, x, w, dy, dx, dw, db, ws);
    ref_backward(&d, xd, wd, dyd, dxd, dwd, dbd);
    double ex = rel_err(dx, dxd, nx), ew = rel_err(dw, dwd, nw), eb = rel_err(db, dbd, d.cout);
    cr_assert(ex < 1e-5 && ew < 1e-5 && eb < 1e-5,
              "backward shape %dx%dx%d->%d k%d s%d p%d g%d path %s: dx %g dw %g db %g", s->h, s->w,
              s->cin, s->cout, s->k, s->s, s->p, s->g, path, ex, ew, eb);
    /* NULL gradients are skipped, the others still accumulate */
    memcpy(dx, x, nx * sizeof *dx);
    conv2d_backward(&d, x, w, dy, dx, NULL, NULL, ws);
    for (size_t i = 0; i < nx; i++) dxd[i] = x[i];
    double *sink_w = calloc(nw, sizeof(double)), *sink_b = calloc(d.cout, sizeof(double));
    ref_backward(&d, xd, wd, dyd, dxd, sink_w, sink_b);
    cr_assert(rel_err(dx, dxd, nx) < 1e-5, "dx only, path %s", path);
    free(sink_w);
    free(sink_b);
    free(x), free(w), free(b), free(dy), free(dx), free(dw), free(db), free(y), free(ws);
    free(xd), free(wd), free(bd), free(dyd), free(dxd), free(dwd), free(dbd), free(yd);
}

static void check_all(conv2d_impl impl, int threads) {
    kernels_set_threads(threads);
    for (size_t i = 0; i < NSHAPES; i++) check_shape(&SHAPES[i], impl, 100 * i + impl);
    conv2d_set_impl(CONV2D_AUTO);
}

Test(conv, auto_matches_naive) {
    check_all(CONV2D_AUTO, 1);
}
Test(conv, auto_matches_naive_2_threads) {
    check_all(CONV2D_AUTO, 2);
}
Test(conv, gemm_path_matches_naive) {
    check_all(CONV2D_GEMM, 2);
}
Test(conv, onednn_path_matches_naive) {
    check_all(CONV2D_ONEDNN, 1);
}

Test(conv, gemm_path_one_image_per_chunk_matches_naive) {
    conv2d_set_im2col_cap(1); /* every batch split into single images */
    check_all(CONV2D_GEMM, 1);
    check_all(CONV2D_AUTO, 2);
}

Test(conv, direct_depthwise_matches_naive) {
    check_all(CONV2D_DIRECT, 2);
}

Test(conv, paths_reported) {
    kernels_set_threads(1);
    conv2d_desc dw = conv2d_make(1, 8, 8, 16, 16, 3, 1, 1, 16);
    conv2d_desc pw = conv2d_make(1, 8, 8, 16, 32, 1, 1, 0, 1);
    conv2d_desc c3 = conv2d_make(1, 8, 8, 16, 32, 3, 2, 1, 1);
    conv2d_desc mixed = conv2d_make(1, 8, 8, 32, 32, 3, 1, 1, 1);
    conv2d_desc wide = conv2d_make(1, 8, 8, 64, 32, 3, 2, 1, 1);
    cr_assert(strncmp(conv2d_path(&dw), "fwd:onednn/", 11) == 0, "%s", conv2d_path(&dw));
    cr_assert_str_eq(conv2d_path(&pw), "1x1 dnnl_sgemm");
    cr_assert(strncmp(conv2d_path(&c3), "fwd:onednn/", 11) == 0, "%s", conv2d_path(&c3));
    cr_assert(strstr(conv2d_path(&mixed), "dw:im2col+sgemm"), "%s", conv2d_path(&mixed));
    cr_assert_str_eq(conv2d_path(&wide), "im2col+dnnl_sgemm");
    cr_assert_eq(conv2d_workspace_floats(&pw), 0, "1x1 stride 1 needs no im2col");
    conv2d_set_impl(CONV2D_GEMM);
    cr_assert_str_eq(conv2d_path(&c3), "im2col+dnnl_sgemm");
    conv2d_set_impl(CONV2D_DIRECT);
    cr_assert_str_eq(conv2d_path(&dw), "depthwise-direct");
    conv2d_set_impl(CONV2D_ONEDNN);
    cr_assert(strstr(conv2d_path(&wide), "dw:onednn/"), "%s", conv2d_path(&wide));
    conv2d_set_impl(CONV2D_AUTO);
    cr_assert(strncmp(conv2d_path(&c3), "fwd:onednn/", 11) == 0);
    conv2d_cache_clear();
    cr_assert(strncmp(conv2d_path(&c3), "fwd:onednn/", 11) == 0, "rebuilt after clearing");
}

/* ---- finite differences in double ----------------------------------------------------------- */

/* L = sum(y * r); the analytic gradients come from the float backward with dy = r. */
static double loss(const conv2d_desc *d, const double *x, const double *w, const double *b,
                   const double *r, double *y) {
    ref_forward(d, x, w, b, y);
    double l = 0;
    for (size_t i = 0; i < y_size(d); i++) l += y[i] * r[i];
    return l;
}

/* Central difference of L along each entry of p (n entries); compares with g (float). */
static void fd_check(const conv2d_desc *d, double *x, double *w, double *b, const double *r,
                     double *p, size_t n, const float *g, const char *what) {
    double *y = malloc(y_size(d) * sizeof *y), h = 1e-3, worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        double keep = p[i];
        p[i] = keep + h;
        double lp = loss(d, x, w, b, r, y);
        p[i] = keep - h;
        double lm = loss(d, x, w, b, r, y);
        p[i] = keep;
        double fd = (lp - lm) / (2 * h);
        if (fabs(fd - g[i]) > worst) worst = fabs(fd - g[i]);
        if (fabs(fd) > scale) scale = fabs(fd);
    }
    cr_assert(scale > 0.1, "%s: gradient is not trivially zero", what);
    cr_assert(worst <= 1e-5 * scale + 1e-6, "%s: max |fd - analytic| = %g (scale %g), path %s",
              what, worst, scale, conv2d_path(d));
    free(y);
}

static void fd_shape(const shape *s, conv2d_impl impl) {
    conv2d_set_impl(impl);
    kernels_set_threads(1);
    conv2d_desc d = make(s);
    size_t nx = x_size(&d), ny = y_size(&d), nw = w_size(&d);
    float *x = rand_f(nx, 7), *w = rand_f(nw, 8), *b = rand_f(d.cout, 9), *r = rand_f(ny, 10);
    float *dx = calloc(nx, sizeof *dx), *dw = calloc(nw, sizeof *dw), *db = calloc(d.cout, 4);
    float *ws = workspace(&d);
    conv2d_backward(&d, x, w, r, dx, dw, db, ws);
    double *xd = to_d(x, nx), *wd = to_d(w, nw), *bd = to_d(b, d.cout), *rd = to_d(r, ny);
    fd_check(&d, xd, wd, bd, rd, xd, nx, dx, "dx");
    fd_check(&d, xd, wd, bd, rd, wd, nw, dw, "dw");
    fd_check(&d, xd, wd, bd, rd, bd, d.cout, db, "dbias");
    free(x), free(w), free(b), free(r), free(dx), free(dw), free(db), free(ws);
    free(xd), free(wd), free(bd), free(rd);
    conv2d_set_impl(CONV2D_AUTO);
}

Test(conv, finite_differences_3x3_s2_groups2) {
    const shape s = {2, 6, 5, 4, 6, 3, 2, 1, 2};
    fd_shape(&s, CONV2D_AUTO);
    fd_shape(&s, CONV2D_GEMM);
}
Test(conv, finite_differences_1x1) {
    const shape s = {2, 4, 3, 5, 3, 1, 1, 0, 1};
    fd_shape(&s, CONV2D_AUTO);
}
Test(conv, finite_differences_depthwise) {
    const shape s = {2, 5, 6, 3, 3, 3, 2, 1, 3};
    fd_shape(&s, CONV2D_AUTO);
    fd_shape(&s, CONV2D_DIRECT);
    const shape k5 = {1, 5, 5, 2, 2, 5, 1, 2, 2}, wide = {1, 4, 5, 36, 36, 3, 1, 1, 36};
    fd_shape(&k5, CONV2D_AUTO);
    fd_shape(&wide, CONV2D_DIRECT);
}
Test(conv, finite_differences_k5_p0) {
    const shape s = {1, 7, 6, 3, 4, 5, 2, 0, 1};
    fd_shape(&s, CONV2D_AUTO);
}

/* ---- accumulation ---------------------------------------------------------------------------- */

Test(conv, backward_twice_doubles_gradients) {
    kernels_set_threads(2);
    const shape shapes[] = {{2, 10, 9, 16, 32, 3, 2, 1, 1},
                            {2, 7, 5, 8, 12, 1, 1, 0, 1},
                            {2, 9, 8, 16, 16, 3, 1, 1, 16},
                            {2, 8, 8, 8, 12, 3, 1, 1, 2}};
    conv2d_impl impls[] = {CONV2D_AUTO, CONV2D_GEMM, CONV2D_ONEDNN, CONV2D_DIRECT};
    for (size_t si = 0; si < 4; si++)
        for (int ii = 0; ii < 4; ii++) {
            conv2d_set_impl(impls[ii]);
            conv2d_desc d = make(&shapes[si]);
            size_t nx = x_size(&d), ny = y_size(&d), nw = w_size(&d);
            float *x = rand_f(nx, 1), *w = rand_f(nw, 2), *dy = rand_f(ny, 3);
            float *dx1 = calloc(nx, 4), *dw1 = calloc(nw, 4), *db1 = calloc(d.cout, 4);
            float *dx2 = calloc(nx, 4), *dw2 = calloc(nw, 4), *db2 = calloc(d.cout, 4);
            float *ws = workspace(&d);
            conv2d_backward(&d, x, w, dy, dx1, dw1, db1, ws);
            conv2d_backward(&d, x, w, dy, dx2, dw2, db2, ws);
            conv2d_backward(&d, x, w, dy, dx2, dw2, db2, ws);
            for (size_t i = 0; i < nx; i++)
                cr_assert(fabsf(dx2[i] - 2 * dx1[i]) <= 1e-5f * (1 + fabsf(dx1[i])),
                          "dx[%zu] %g vs 2 x %g, path %s", i, dx2[i], dx1[i], conv2d_path(&d));
            for (size_t i = 0; i < nw; i++)
                cr_assert(fabsf(dw2[i] - 2 * dw1[i]) <= 1e-5f * (1 + fabsf(dw1[i])),
                          "dw[%zu] %g vs 2 x %g, path %s", i, dw2[i], dw1[i], conv2d_path(&d));
            for (int i = 0; i < d.cout; i++)
                cr_assert(fabsf(db2[i] - 2 * db1[i]) <= 1e-5f * (1 + fabsf(db1[i])), "db[%d]", i);
            free(x), free(w), free(dy), free(dx1), free(dw1), free(db1), free(dx2), free(dw2);
            free(db2), free(ws);
        }
    conv2d_set_impl(CONV2D_AUTO);
}

/* ---- gemm wrapper -----------------------------------------------------------------------------
 */

Test(gemm, all_transposes_beta0_and_beta1) {
    kernels_set_threads(2);
    const int M = 37, N = 29, K = 17, ld_pad = 3;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            long lda = (ta ? M : K) + ld_pad, ldb = (tb ? K : N) + ld_pad, ldc = N + ld_pad;
            float *a = rand_f((size_t)(ta ? K : M) * lda, 11),
                  *b = rand_f((size_t)(tb ? N : K) * ldb, 12);
            float *c = malloc((size_t)M * ldc * sizeof *c), *c0 = rand_f((size_t)M * ldc, 13);
            for (size_t i = 0; i < (size_t)M * ldc; i++) c[i] = NAN;
            gemm_f32(ta, tb, M, N, K, 0.5f, a, lda, b, ldb, 0.0f, c, ldc);
            for (int pass = 0; pass < 2; pass++) {
                double worst = 0;
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) {
                        double s = 0;
                        for (int k = 0; k < K; k++)
                            s += (double)(ta ? a[(size_t)k * lda + i] : a[(size_t)i * lda + k]) *
                                 (tb ? b[(size_t)j * ldb + k] : b[(size_t)k * ldb + j]);
                        double want = pass == 0 ? 0.5 * s : c0[(size_t)i * ldc + j] + 2.0 * s;
                        double e = fabs(c[(size_t)i * ldc + j] - want);
                        if (!(e <= worst)) worst = e;
                    }
                cr_assert(worst < 1e-5, "ta %d tb %d pass %d: max err %g", ta, tb, pass, worst);
                memcpy(c, c0, (size_t)M * ldc * sizeof *c);
                if (pass == 0) gemm_f32(ta, tb, M, N, K, 2.0f, a, lda, b, ldb, 1.0f, c, ldc);
            }
            free(a), free(b), free(c), free(c0);
        }
    cr_assert(strstr(gemm_backend(), "dnnl_sgemm") != NULL);
}
