/* Test helpers for kernel checks: random inputs, double-precision central differences of
 * L = sum(y * r) through a reference forward, and tolerance checks with Criterion asserts. */
#pragma once
#include <stddef.h>

/* Reference forward in double: in[nin] -> out[nout]. ctx carries the shapes. */
typedef void (*ref_forward_fn)(const void *ctx, const double *in, double *out);

/* Fills x[n] with uniform floats in [lo, hi), keyed by (seed, stream). */
void fill_uniform(float *x, size_t n, double lo, double hi, unsigned seed, unsigned stream);
/* float -> double copy */
void to_double(const float *x, double *y, size_t n);

/* g[i] = d/d in[i] of sum_k out[k] r[k], central differences with step h (in double). */
void fd_gradient(ref_forward_fn f, const void *ctx, size_t nin, const double *in, size_t nout,
                 const double *r, double h, double *g);

/* Asserts max|ana - num| <= rtol max|num| + atol, and max|num| >= min_scale (not trivially zero).
 */
void check_close(const char *what, const float *ana, const double *num, size_t n, double rtol,
                 double atol, double min_scale);
/* Gradient-check defaults: rtol 1e-3, atol 1e-5, the gradient must reach 1e-3. */
void check_grad(const char *what, const float *ana, const double *num, size_t n);
/* Forward check against a double reference: rtol 1e-5 of max|ref|, atol 1e-6. */
void check_forward(const char *what, const float *y, const double *ref, size_t n);
/* Accumulate semantics: twice[i] == 2 once[i] (up to float rounding) and once is not all zero. */
void check_doubles(const char *what, const float *once, const float *twice, size_t n);
