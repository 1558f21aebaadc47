/* Row-major single-precision GEMM over oneDNN's dnnl_sgemm:
 *   C[m][n] = alpha * op(A)[m][k] * op(B)[k][n] + beta * C[m][n]
 * op(A) = A (A is [m][lda], lda >= k) or A^T (A is [k][lda], lda >= m); likewise B.
 * beta = 1 accumulates (what backward kernels want); beta = 0 ignores C's old contents (even NaN).
 * Threads: oneDNN's OpenMP, i.e. kernels_set_threads(). */
#pragma once
#include <stdbool.h>

void gemm_f32(bool trans_a, bool trans_b, long m, long n, long k, float alpha, const float *a,
              long lda, const float *b, long ldb, float beta, float *c, long ldc);
/* The library that runs gemm_f32 (for benchmark reports). */
const char *gemm_backend(void);
