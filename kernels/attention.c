/* Attention core of C2PSA/PSABlock. Per (image, head), with Q, K [hw][kd] and V [hw][hd] read in
 * place from the NHWC qkv tensor (row stride = all qkv channels):
 *   S = scale Q K^T, P = softmax over each row, O = P V.
 * Matmuls go through oneDNN's row-major dnnl_sgemm. The (image, head) pairs are spread over the
 * OpenMP threads and each pair runs sequentially (oneDNN does not thread inside a parallel region),
 * so the result does not depend on the thread count; a threaded sgemm would split its sums
 * differently for 1 and 2 threads. Backward:
 *   dV += P^T dO (+ the direct grad of v_out), dP = dO V^T, dS = P * (dP - rowsum(P * dP)),
 *   dQ += scale dS K, dK += scale dS^T Q. */
#include "kernels/attention.h"

#include "common/log.h"
#include "kernels/fast_exp.h"
#include "kernels/threads.h"

#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdlib.h>
#include <string.h>

/* C = alpha op(A) op(B) + beta C, row-major. A failure here is a bug (bad dims), not user input. */
static void sgemm(char ta, char tb, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c, int ldc) {
    dnnl_status_t st = dnnl_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    if (st != dnnl_success)
        FATAL("attention: dnnl_sgemm(%c%c, %d x %d x %d) failed with status %d", ta, tb, m, n, k,
              (int)st);
}

static void check_desc(const attention_desc *d) {
    if (d->n < 1 || d->hw < 1 || d->heads < 1 || d->kd < 1 || d->hd < 1)
        FATAL("attention: bad shape n=%d hw=%d heads=%d kd=%d hd=%d", d->n, d->hw, d->heads, d->kd,
              d->hd);
}

/* Row-wise softmax of s [rows][cols], in place. */
static void softmax_rows(int rows, int cols, float *s) {
    for (int i = 0; i < rows; i++) {
        float *r = s + (size_t)i * cols;
        float mx = r[0];
        for (int j = 1; j < cols; j++) mx = r[j] > mx ? r[j] : mx;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < cols; j++) {
            r[j] = exp_fast(r[j] - mx);
            sum += r[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < cols; j++) r[j] *= inv;
    }
}

void attention_forward(const attention_desc *d, const float *qkv, float *out, float *v_out,
                       float *probs) {
    check_desc(d);
    int hw = d->hw, kd = d->kd, hd = d->hd;
    int cq = d->heads * (2 * kd + hd); /* qkv row stride */
    int co = d->heads * hd;            /* out / v_out row stride */
#pragma omp parallel for num_threads(kernels_threads()) schedule(static) collapse(2)
    for (int b = 0; b < d->n; b++)
        for (int h = 0; h < d->heads; h++) {
            const float *q = qkv + (size_t)b * hw * cq + (size_t)h * (2 * kd + hd);
            const float *k = q + kd, *v = q + 2 * kd;
            float *p = probs + ((size_t)b * d->heads + h) * hw * hw;
            float *o = out + (size_t)b * hw * co + (size_t)h * hd;
            sgemm('N', 'T', hw, hw, kd, d->scale, q, cq, k, cq, 0.0f, p, hw);
            softmax_rows(hw, hw, p);
            sgemm('N', 'N', hw, hd, hw, 1.0f, p, hw, v, cq, 0.0f, o, co);
            if (v_out) {
                float *vo = v_out + (size_t)b * hw * co + (size_t)h * hd;
                for (int i = 0; i < hw; i++)
                    memcpy(vo + (size_t)i * co, v + (size_t)i * cq, sizeof(float) * hd);
            }
        }
}

/* ds = p * (dp - rowsum(p * dp)), in place in dp. */
static void softmax_backward_rows(int rows, int cols, const float *p, float *dp) {
    for (int i = 0; i < rows; i++) {
        const float *pr = p + (size_t)i * cols;
        float *dr = dp + (size_t)i * cols;
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int j = 0; j < cols; j++) dot += pr[j] * dr[j];
        for (int j = 0; j < cols; j++) dr[j] = pr[j] * (dr[j] - dot);
    }
}

void attention_backward(const attention_desc *d, const float *qkv, const float *probs,
                        const float *dout, const float *dv, float *dqkv) {
    check_desc(d);
    int hw = d->hw, kd = d->kd, hd = d->hd;
    int cq = d->heads * (2 * kd + hd), co = d->heads * hd;
#pragma omp parallel num_threads(kernels_threads())
    {
        float *ds = xmalloc(sizeof(float) * hw * hw); /* dP, then dS, of one (image, head) */
#pragma omp for schedule(static) collapse(2)
        for (int b = 0; b < d->n; b++)
            for (int h = 0; h < d->heads; h++) {
                size_t qoff = (size_t)b * hw * cq + (size_t)h * (2 * kd + hd);
                size_t ooff = (size_t)b * hw * co + (size_t)h * hd;
                const float *q = qkv + qoff, *k = q + kd, *v = q + 2 * kd;
                float *dq = dqkv + qoff, *dk = dq + kd, *dvq = dq + 2 * kd;
                const float *p = probs + ((size_t)b * d->heads + h) * hw * hw;
                const float *dor = dout + ooff;
                sgemm('T', 'N', hw, hd, hw, 1.0f, p, hw, dor, co, 1.0f, dvq, cq);
                if (dv)
                    for (int i = 0; i < hw; i++) {
                        const float *src = dv + ooff + (size_t)i * co;
                        float *dst = dvq + (size_t)i * cq;
                        for (int c = 0; c < hd; c++) dst[c] += src[c];
                    }
                sgemm('N', 'T', hw, hw, hd, 1.0f, dor, co, v, cq, 0.0f, ds, hw);
                softmax_backward_rows(hw, hw, p, ds);
                sgemm('N', 'N', hw, kd, hw, d->scale, ds, hw, k, cq, 1.0f, dq, cq);
                sgemm('T', 'N', hw, kd, hw, d->scale, ds, hw, q, cq, 1.0f, dk, cq);
            }
        free(ds);
    }
}
