/* Depthwise convolution (groups == cin == cout): direct loops over NHWC, vectorised over channels.
 * A GEMM per group would have N = 1. oneDNN's jit_dw kernels measured faster on this machine, so
 * conv2d uses these loops when oneDNN has no primitive for a shape, or when asked to
 * (CONV2D_DIRECT). The portable loops call fmaf because -std=c17 turns off FMA contraction.
 */
#include "kernels/conv2d_internal.h"

#include <math.h>
#include <omp.h>
#include <string.h>

size_t conv2d_dw_ws_floats(const conv2d_desc *d, int threads) {
    /* transposed weights + one partial dw per thread (the AVX2 dw loop) */
    return (size_t)(1 + (threads > 1 ? threads : 1)) *
           conv2d_round16((size_t)d->kh * d->kw * d->cin);
}

/* OHWI with I = 1 is [c][kh][kw]; the loops want [kh][kw][c] so channels are contiguous. */
static void dw_transpose_weights(const conv2d_desc *d, const float *w, float *wt) {
    int c = d->cout, kk = d->kh * d->kw;
    for (int ch = 0; ch < c; ch++)
        for (int t = 0; t < kk; t++) wt[(size_t)t * c + ch] = w[(size_t)ch * kk + t];
}

#if defined(__AVX2__) && defined(__FMA__)
/* AVX2 version: blocks of 8 channels held in one register across the taps (the portable loops
 * below load and store the output for every tap). The last block of a channel count that is not
 * a multiple of 8 uses masked loads and stores. */
#include <immintrin.h>

static inline __m256i lane_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline __m256 ldv(const float *p, int n, __m256i m) {
    return n == 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m);
}
static inline void stv(float *p, __m256 v, int n, __m256i m) {
    if (n == 8)
        _mm256_storeu_ps(p, v);
    else
        _mm256_maskstore_ps(p, m, v);
}
/* Output columns o with 0 <= o*S - P + k < len: [*lo, *hi). */
static inline void valid_range(int k, int S, int P, int len, int nout, int *lo, int *hi) {
    int a = P - k, b = len - 1 + P - k; /* need a <= o*S <= b */
    *lo = a > 0 ? (a + S - 1) / S : 0;
    *hi = b < 0 ? 0 : b / S + 1;
    if (*hi > nout) *hi = nout;
    if (*lo > *hi) *lo = *hi;
}

void conv2d_dw_forward(const conv2d_desc *d, const float *x, const float *w, const float *bias,
                       float *y, float *ws) {
    const int C = d->cin, S = d->stride, P = d->pad, KH = d->kh, KW = d->kw, H = d->h, W = d->w;
    const int OH = d->oh, OW = d->ow;
    float *wt = ws;
    dw_transpose_weights(d, w, wt);
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < d->n; n++)
        for (int oy = 0; oy < OH; oy++)
            for (int c0 = 0; c0 < C;) {
                float *yr = y + ((size_t)n * OH + oy) * OW * C + c0;
                if (C - c0 >= 32) { /* four independent FMA chains */
                    for (int ox = 0; ox < OW; ox++) {
                        __m256 a0, a1, a2, a3;
                        if (bias) {
                            a0 = _mm256_loadu_ps(bias + c0), a1 = _mm256_loadu_ps(bias + c0 + 8);
                            a2 = _mm256_loadu_ps(bias + c0 + 16);
                            a3 = _mm256_loadu_ps(bias + c0 + 24);
                        } else {
                            a0 = a1 = a2 = a3 = _mm256_setzero_ps();
                        }
                        for (int ki = 0; ki < KH; ki++) {
                            int iy = oy * S - P + ki;
                            if (iy < 0 || iy >= H) continue;
                            const float *xr = x + ((size_t)n * H + iy) * W * C + c0;
                            const float *wr = wt + (size_t)ki * KW * C + c0;
                            for (int kj = 0; kj < KW; kj++) {
                                int ix = ox * S - P + kj;
                                if (ix < 0 || ix >= W) continue;
                                const float *xp = xr + (size_t)ix * C, *wp = wr + (size_t)kj * C;
                                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xp), _mm256_loadu_ps(wp), a0);
                                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + 8),
                                                     _mm256_loadu_ps(wp + 8), a1);
                                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + 16),
                                                     _mm256_loadu_ps(wp + 16), a2);
                                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + 24),
                                                     _mm256_loadu_ps(wp + 24), a3);
                            }
                        }
                        float *yp = yr + (size_t)ox * C;
                        _mm256_storeu_ps(yp, a0), _mm256_storeu_ps(yp + 8, a1);
                        _mm256_storeu_ps(yp + 16, a2), _mm256_storeu_ps(yp + 24, a3);
                    }
                    c0 += 32;
                    continue;
                }
                int nl = C - c0 < 8 ? C - c0 : 8;
                __m256i m = lane_mask(nl);
                __m256 b = bias ? ldv(bias + c0, nl, m) : _mm256_setzero_ps();
                for (int ox = 0; ox < OW; ox++) {
                    __m256 acc = b;
                    for (int ki = 0; ki < KH; ki++) {
                        int iy = oy * S - P + ki;
                        if (iy < 0 || iy >= H) continue;
                        const float *xr = x + ((size_t)n * H + iy) * W * C + c0;
                        const float *wr = wt + (size_t)ki * KW * C + c0;
                        for (int kj = 0; kj < KW; kj++) {
                            int ix = ox * S - P + kj;
                            if (ix < 0 || ix >= W) continue;
                            acc = _mm256_fmadd_ps(ldv(xr + (size_t)ix * C, nl, m),
                                                  ldv(wr + (size_t)kj * C, nl, m), acc);
                        }
                    }
                    stv(yr + (size_t)ox * C, acc, nl, m);
                }
                c0 += nl;
            }
}

void conv2d_dw_backward(const conv2d_desc *d, const float *x, const float *w, const float *dy,
                        float *dx, float *dw, float *ws) {
    const int C = d->cin, S = d->stride, P = d->pad, KH = d->kh, KW = d->kw, H = d->h, W = d->w;
    const int OH = d->oh, OW = d->ow, kk = KH * KW;
    float *wt = ws, *dwt = ws + conv2d_round16((size_t)kk * C);
    if (dx) {
        dw_transpose_weights(d, w, wt);
#pragma omp parallel for collapse(2) schedule(static)
        for (int n = 0; n < d->n; n++)
            for (int iy = 0; iy < H; iy++)
                for (int c0 = 0; c0 < C;) {
                    float *dxr = dx + ((size_t)n * H + iy) * W * C + c0;
                    if (C - c0 >= 32) { /* four independent FMA chains */
                        for (int ix = 0; ix < W; ix++) {
                            float *dp = dxr + (size_t)ix * C;
                            __m256 a0 = _mm256_loadu_ps(dp), a1 = _mm256_loadu_ps(dp + 8);
                            __m256 a2 = _mm256_loadu_ps(dp + 16), a3 = _mm256_loadu_ps(dp + 24);
                            for (int ki = 0; ki < KH; ki++) {
                                int t = iy + P - ki;
                                if (t < 0 || t % S) continue;
                                int oy = t / S;
                                if (oy >= OH) continue;
                                const float *gr = dy + ((size_t)n * OH + oy) * OW * C + c0;
                                const float *wr = wt + (size_t)ki * KW * C + c0;
                                for (int kj = 0; kj < KW; kj++) {
                                    int u = ix + P - kj;
                                    if (u < 0 || u % S) continue;
                                    int ox = u / S;
                                    if (ox >= OW) continue;
                                    const float *gp = gr + (size_t)ox * C,
                                                *wp = wr + (size_t)kj * C;
                                    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(gp), _mm256_loadu_ps(wp),
                                                         a0);
                                    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(gp + 8),
                                                         _mm256_loadu_ps(wp + 8), a1);
                                    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(gp + 16),
                                                         _mm256_loadu_ps(wp + 16), a2);
                                    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(gp + 24),
                                                         _mm256_loadu_ps(wp + 24), a3);
                                }
                            }
                            _mm256_storeu_ps(dp, a0), _mm256_storeu_ps(dp + 8, a1);
                            _mm256_storeu_ps(dp + 16, a2), _mm256_storeu_ps(dp + 24, a3);
                        }
                        c0 += 32;
                        continue;
                    }
                    int nl = C - c0 < 8 ? C - c0 : 8;
                    __m256i m = lane_mask(nl);
                    for (int ix = 0; ix < W; ix++) {
                        __m256 acc = ldv(dxr + (size_t)ix * C, nl, m);
                        for (int ki = 0; ki < KH; ki++) {
                            int t = iy + P - ki;
                            if (t < 0 || t % S) continue;
                            int oy = t / S;
                            if (oy >= OH) continue;
                            const float *gr = dy + ((size_t)n * OH + oy) * OW * C + c0;
                            const float *wr = wt + (size_t)ki * KW * C + c0;
                            for (int kj = 0; kj < KW; kj++) {
                                int u = ix + P - kj;
                                if (u < 0 || u % S) continue;
                                int ox = u / S;
                                if (ox >= OW) continue;
                                acc = _mm256_fmadd_ps(ldv(gr + (size_t)ox * C, nl, m),
                                                      ldv(wr + (size_t)kj * C, nl, m), acc);
                            }
                        }
                        stv(dxr + (size_t)ix * C, acc, nl, m);
                    }
                    c0 += nl;
                }
    }
    if (dw) {
        /* Threads split the rows and keep their own partial dw (the rows of one thread stay in
         * cache for all channels); partials are summed in thread order, so results do not depend
         * on timing. */
        const size_t stride = conv2d_round16((size_t)kk * C);
        const int nt = omp_get_max_threads();
        memset(dwt, 0, sizeof(float) * stride * nt);
#pragma omp parallel
        {
            float *part = dwt + stride * omp_get_thread_num();
#pragma omp for collapse(2) schedule(static)
            for (int n = 0; n < d->n; n++)
                for (int oy = 0; oy < OH; oy++) {
                    const float *gr = dy + ((size_t)n * OH + oy) * OW * C;
                    for (int ki = 0; ki < KH; ki++) {
                        int iy = oy * S - P + ki;
                        if (iy < 0 || iy >= H) continue;
                        const float *xr = x + ((size_t)n * H + iy) * W * C;
                        for (int kj = 0; kj < KW; kj++) {
                            int lo, hi;
                            valid_range(kj, S, P, W, OW, &lo, &hi);
                            for (int c0 = 0; c0 < C; c0 += 8) {
                                int nl = C - c0 < 8 ? C - c0 : 8;
                                __m256i m = lane_mask(nl);
                                __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
                                int ox = lo;
                                for (; ox + 1 < hi; ox += 2) { /* two chains hide FMA latency */
                                    a0 = _mm256_fmadd_ps(
                                        ldv(gr + (size_t)ox * C + c0, nl, m),
                                        ldv(xr + (size_t)(ox * S - P + kj) * C + c0, nl, m), a0);
                                    a1 = _mm256_fmadd_ps(
                                        ldv(gr + (size_t)(ox + 1) * C + c0, nl, m),
                                        ldv(xr + (size_t)((ox + 1) * S - P + kj) * C + c0, nl, m),
                                        a1);
                                }
                                if (ox < hi)
                                    a0 = _mm256_fmadd_ps(
                                        ldv(gr + (size_t)ox * C + c0, nl, m),
                                        ldv(xr + (size_t)(ox * S - P + kj) * C + c0, nl, m), a0);
                                float *acc = part + ((size_t)ki * KW + kj) * C + c0;
                                stv(acc, _mm256_add_ps(ldv(acc, nl, m), _mm256_add_ps(a0, a1)), nl,
                                    m);
                            }
                        }
                    }
                }
        }
        for (int t = 0; t < nt; t++)
            for (int c = 0; c < C; c++)
                for (int k = 0; k < kk; k++)
                    dw[(size_t)c * kk + k] += dwt[stride * t + (size_t)k * C + c];
    }
}

#else /* portable loops, vectorised by the compiler over channels */
void conv2d_dw_forward(const conv2d_desc *d, const float *x, const float *w, const float *bias,
                       float *y, float *ws) {
    const int C = d->cin, S = d->stride, P = d->pad;
    float *wt = ws;
    dw_transpose_weights(d, w, wt);
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < d->n; n++)
        for (int oy = 0; oy < d->oh; oy++)
            for (int ox = 0; ox < d->ow; ox++) {
                float *yp = y + (((size_t)n * d->oh + oy) * d->ow + ox) * C;
                /* not `bias ? bias[c] : 0` in the loop: that becomes a masked load from NULL,
                 * which costs a microcode assist per vector on AMD */
                if (bias)
                    memcpy(yp, bias, sizeof(float) * C);
                else
                    memset(yp, 0, sizeof(float) * C);
                for (int ki = 0; ki < d->kh; ki++) {
                    int iy = oy * S - P + ki;
                    if (iy < 0 || iy >= d->h) continue;
                    for (int kj = 0; kj < d->kw; kj++) {
                        int ix = ox * S - P + kj;
                        if (ix < 0 || ix >= d->w) continue;
                        const float *xp = x + (((size_t)n * d->h + iy) * d->w + ix) * C;
                        const float *wp = wt + ((size_t)ki * d->kw + kj) * C;
#pragma omp simd
                        for (int c = 0; c < C; c++) yp[c] = fmaf(xp[c], wp[c], yp[c]);
                    }
                }
            }
}

/* dx gathered per input pixel (no races); dw per block of 16 channels (no races, no partials). */
void conv2d_dw_backward(const conv2d_desc *d, const float *x, const float *w, const float *dy,
                        float *dx, float *dw, float *ws) {
    const int C = d->cin, S = d->stride, P = d->pad, kk = d->kh * d->kw;
    float *wt = ws, *dwt = ws + conv2d_round16((size_t)kk * C);
    if (dx) {
        dw_transpose_weights(d, w, wt);
#pragma omp parallel for collapse(2) schedule(static)
        for (int n = 0; n < d->n; n++)
            for (int iy = 0; iy < d->h; iy++)
                for (int ix = 0; ix < d->w; ix++) {
                    float *dxp = dx + (((size_t)n * d->h + iy) * d->w + ix) * C;
                    for (int ki = 0; ki < d->kh; ki++) {
                        int t = iy + P - ki;
                        if (t < 0 || t % S) continue;
                        int oy = t / S;
                        if (oy >= d->oh) continue;
                        for (int kj = 0; kj < d->kw; kj++) {
                            int u = ix + P - kj;
                            if (u < 0 || u % S) continue;
                            int ox = u / S;
                            if (ox >= d->ow) continue;
                            const float *g = dy + (((size_t)n * d->oh + oy) * d->ow + ox) * C;
                            const float *wp = wt + ((size_t)ki * d->kw + kj) * C;
#pragma omp simd
                            for (int c = 0; c < C; c++) dxp[c] = fmaf(g[c], wp[c], dxp[c]);
                        }
                    }
                }
    }
    if (dw) {
        memset(dwt, 0, sizeof(float) * kk * C);
        int nblk = (C + 15) / 16;
#pragma omp parallel for schedule(static)
        for (int b = 0; b < nblk; b++) {
            int c0 = b * 16, c1 = c0 + 16 < C ? c0 + 16 : C;
            for (int n = 0; n < d->n; n++)
                for (int oy = 0; oy < d->oh; oy++)
                    for (int ox = 0; ox < d->ow; ox++) {
                        const float *g = dy + (((size_t)n * d->oh + oy) * d->ow + ox) * C;
                        for (int ki = 0; ki < d->kh; ki++) {
                            int iy = oy * S - P + ki;
                            if (iy < 0 || iy >= d->h) continue;
                            for (int kj = 0; kj < d->kw; kj++) {
                                int ix = ox * S - P + kj;
                                if (ix < 0 || ix >= d->w) continue;
                                const float *xp = x + (((size_t)n * d->h + iy) * d->w + ix) * C;
                                float *acc = dwt + ((size_t)ki * d->kw + kj) * C;
#pragma omp simd
                                for (int c = c0; c < c1; c++) acc[c] = fmaf(g[c], xp[c], acc[c]);
                            }
                        }
                    }
        }
        for (int c = 0; c < C; c++)
            for (int t = 0; t < kk; t++) dw[(size_t)c * kk + t] += dwt[(size_t)t * C + c];
    }
}
#endif
