#include "tests/gradcheck.h"

#include "common/log.h"
#include "common/rng.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void fill_uniform(float *x, size_t n, double lo, double hi, unsigned seed, unsigned stream) {
    rng r = rng_keyed(seed, stream, 0);
    for (size_t i = 0; i < n; i++) x[i] = (float)rng_range(&r, lo, hi);
}

void to_double(const float *x, double *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = x[i];
}

static double weighted_sum(ref_forward_fn f, const void *ctx, const double *in, size_t nout,
                           const double *r, double *out) {
    f(ctx, in, out);
    double s = 0;
    for (size_t k = 0; k < nout; k++) s += out[k] * r[k];
    return s;
}

void fd_gradient(ref_forward_fn f, const void *ctx, size_t nin, const double *in, size_t nout,
                 const double *r, double h, double *g) {
    double *x = xmalloc(sizeof(double) * nin), *out = xmalloc(sizeof(double) * nout);
    memcpy(x, in, sizeof(double) * nin);
    for (size_t i = 0; i < nin; i++) {
        x[i] = in[i] + h;
        double lp = weighted_sum(f, ctx, x, nout, r, out);
        x[i] = in[i] - h;
        double lm = weighted_sum(f, ctx, x, nout, r, out);
        x[i] = in[i];
        g[i] = (lp - lm) / (2 * h);
    }
    free(x);
    free(out);
}

void check_close(const char *what, const float *ana, const double *num, size_t n, double rtol,
                 double atol, double min_scale) {
    double err = 0, scale = 0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)ana[i] - num[i]);
        if (e > err || isnan(e)) {
            err = isnan(e) ? INFINITY : e;
            worst = i;
        }
        if (fabs(num[i]) > scale) scale = fabs(num[i]);
    }
    cr_assert(scale >= min_scale, "%s: reference is trivially small (max %g)", what, scale);
    cr_assert(err <= rtol * scale + atol, "%s: max err %g at %zu (got %g, want %g), scale %g", what,
              err, worst, (double)ana[worst], num[worst], scale);
}

void check_grad(const char *what, const float *ana, const double *num, size_t n) {
    check_close(what, ana, num, n, 1e-3, 1e-5, 1e-3);
}

void check_forward(const char *what, const float *y, const double *ref, size_t n) {
    check_close(what, y, ref, n, 1e-5, 1e-6, 0.0);
}

void check_doubles(const char *what, const float *once, const float *twice, size_t n) {
    double mx = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(once[i]));
    cr_assert(mx > 0, "%s: gradient is all zero", what);
    for (size_t i = 0; i < n; i++)
        cr_assert(fabs(twice[i] - 2.0 * once[i]) <= 1e-6 * mx,
                  "%s: backward twice is not double at %zu (%g vs 2 x %g)", what, i,
                  (double)twice[i], (double)once[i]);
}
