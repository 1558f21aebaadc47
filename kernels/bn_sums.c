/* Batch-norm channel sums (bn_sums.h). The AVX-512 path keeps each block of 16 channels' sums in
 * registers over a chunk's rows (one dependency chain per channel, in row order, as the scalar
 * loop), which is what makes it several times faster than summing into memory row by row. */
#include "kernels/bn_sums.h"

#include "common/log.h"
#include "kernels/fast_exp.h"
#include "kernels/threads.h"

#include <stdlib.h>

/* The reference order: per row, per channel. */
static void chunk_scalar(const bn_sums_in *in, int r0, int r1, double *p1, double *p2) {
    const int c = in->c;
    for (int r = r0; r < r1; r++) {
        const float *ar = in->a + (size_t)r * c, *br = in->b ? in->b + (size_t)r * c : NULL;
        for (int ch = 0; ch < c; ch++) {
            if (in->kind == BN_SUMS_X) {
                double v = ar[ch];
                p1[ch] += v;
                p2[ch] += v * v;
                continue;
            }
            float a = ar[ch];
            if (in->kind == BN_SUMS_DZ_SILU) {
                float z = (br[ch] - in->mean[ch]) * in->scale[ch] + in->beta[ch];
                a = bn_silu_dz(z, a);
            }
            p1[ch] += a;
            p2[ch] += (double)a * ((double)br[ch] - in->mean[ch]);
        }
    }
}

#ifdef __AVX512F__
static inline __m512d lo8(__m512 v) {
    return _mm512_cvtps_pd(_mm512_castps512_ps256(v));
}
static inline __m512d hi8(__m512 v) {
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}
/* Full-width loads where all 16 lanes are in range (masked loads of full vectors measured 2-3x
 * slower in these loops). */
static inline __m512 load16(__mmask16 mk, const float *p) {
    return mk == 0xffff ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(mk, p);
}
static inline __mmask16 lanes(int c, int c0) {
    int n = c - c0;
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* dz = dy * silu'(z) on 16 lanes, the operations of the scalar path (bn_silu_dz) in its order. */
static inline __m512 dz_silu16(__m512 dy, __m512 x, __m512 mean, __m512 scale, __m512 beta) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 z = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(x, mean), scale), beta);
    __m512 e =
        exp_fast16(_mm512_castsi512_ps(/* -z: the sign flipped, as the scalar negation */
                                       _mm512_xor_si512(_mm512_castps_si512(z),
                                                        _mm512_set1_epi32((int)0x80000000u))));
    __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, e));
    return _mm512_mul_ps(_mm512_mul_ps(dy, s),
                         _mm512_add_ps(one, _mm512_mul_ps(z, _mm512_sub_ps(one, s))));
}

/* Channels [c0, c0 + 16 NV) (masked past c) over rows [r0, r1): NV vectors of 16 channels, their
 * 4 NV double accumulators in registers, one chain per channel in row order. The per-channel
 * constants of the dz kind come from memory (L1) so that NV = 4 still fits the 32 registers. */
static inline __attribute__((always_inline)) void block_nv(const bn_sums_in *in, int r0, int r1,
                                                           int c0, double *p1, double *p2,
                                                           const int NV, const bn_sums_kind kind) {
    const int c = in->c;
    const float *pa = in->a + c0, *pb = in->b ? in->b + c0 : NULL;
    __mmask16 mk[4];
    __m512d s1[8], s2[8];
    /* the per-channel constants, padded to whole vectors */
    float cm[64] __attribute__((aligned(64))), cs[64] __attribute__((aligned(64)));
    float cb[64] __attribute__((aligned(64)));
    double dm[64] __attribute__((aligned(64)));
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
        int cv = c0 + 16 * v;
        mk[v] = lanes(c, cv);
        __mmask8 lo = (__mmask8)(mk[v] & 0xff), hi = (__mmask8)(mk[v] >> 8);
        s1[2 * v] = _mm512_maskz_loadu_pd(lo, p1 + cv);
        s1[2 * v + 1] = _mm512_maskz_loadu_pd(hi, p1 + cv + 8);
        s2[2 * v] = _mm512_maskz_loadu_pd(lo, p2 + cv);
        s2[2 * v + 1] = _mm512_maskz_loadu_pd(hi, p2 + cv + 8);
        __m512 mean =
            kind != BN_SUMS_X ? _mm512_maskz_loadu_ps(mk[v], in->mean + cv) : _mm512_setzero_ps();
        _mm512_store_ps(cm + 16 * v, mean);
        _mm512_store_pd(dm + 16 * v, lo8(mean));
        _mm512_store_pd(dm + 16 * v + 8, hi8(mean));
        if (kind == BN_SUMS_DZ_SILU) {
            _mm512_store_ps(cs + 16 * v, _mm512_maskz_loadu_ps(mk[v], in->scale + cv));
            _mm512_store_ps(cb + 16 * v, _mm512_maskz_loadu_ps(mk[v], in->beta + cv));
        }
    }
    for (int r = r0; r < r1; r++) {
        size_t o = (size_t)r * c;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            __m512 a = load16(mk[v], pa + o + 16 * v);
            if (kind == BN_SUMS_X) {
                __m512d l = lo8(a), h = hi8(a);
                s1[2 * v] = _mm512_add_pd(s1[2 * v], l);
                s1[2 * v + 1] = _mm512_add_pd(s1[2 * v + 1], h);
                s2[2 * v] = _mm512_add_pd(s2[2 * v], _mm512_mul_pd(l, l));
                s2[2 * v + 1] = _mm512_add_pd(s2[2 * v + 1], _mm512_mul_pd(h, h));
                continue;
            }
            __m512 b = load16(mk[v], pb + o + 16 * v);
            if (kind == BN_SUMS_DZ_SILU) {
                a = dz_silu16(a, b, _mm512_load_ps(cm + 16 * v), _mm512_load_ps(cs + 16 * v),
                              _mm512_load_ps(cb + 16 * v));
            }
            __m512d al = lo8(a), ah = hi8(a);
            s1[2 * v] = _mm512_add_pd(s1[2 * v], al);
            s1[2 * v + 1] = _mm512_add_pd(s1[2 * v + 1], ah);
            s2[2 * v] = _mm512_add_pd(
                s2[2 * v], _mm512_mul_pd(al, _mm512_sub_pd(lo8(b), _mm512_load_pd(dm + 16 * v))));
            s2[2 * v + 1] = _mm512_add_pd(
                s2[2 * v + 1],
                _mm512_mul_pd(ah, _mm512_sub_pd(hi8(b), _mm512_load_pd(dm + 16 * v + 8))));
        }
    }
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
        int cv = c0 + 16 * v;
        __mmask8 lo = (__mmask8)(mk[v] & 0xff), hi = (__mmask8)(mk[v] >> 8);
        _mm512_mask_storeu_pd(p1 + cv, lo, s1[2 * v]);
        _mm512_mask_storeu_pd(p1 + cv + 8, hi, s1[2 * v + 1]);
        _mm512_mask_storeu_pd(p2 + cv, lo, s2[2 * v]);
        _mm512_mask_storeu_pd(p2 + cv + 8, hi, s2[2 * v + 1]);
    }
}
#endif

/* Blocks of up to 16 NV_MAX channels of one kind (compile-time, so each loop is specialised). */
#define BLOCKS(KIND, NV_MAX)                                                                       \
    for (int c0 = 0; c0 < in->c; c0 += 16 * (NV_MAX)) {                                            \
        int nv = (in->c - c0 + 15) / 16;                                                           \
        if (nv >= 4 && (NV_MAX) >= 4)                                                              \
            block_nv(in, r0, r1, c0, p1, p2, 4, KIND);                                             \
        else if (nv == 3 && (NV_MAX) >= 3)                                                         \
            block_nv(in, r0, r1, c0, p1, p2, 3, KIND);                                             \
        else if (nv >= 2)                                                                          \
            block_nv(in, r0, r1, c0, p1, p2, 2, KIND);                                             \
        else                                                                                       \
            block_nv(in, r0, r1, c0, p1, p2, 1, KIND);                                             \
    }

/* One chunk: blocks of up to 64 channels (4 vectors: 16 accumulators, whole cache lines of a
 * row). */
static void chunk_sums(const bn_sums_in *in, int r0, int r1, double *p1, double *p2) {
#ifdef __AVX512F__
    switch (in->kind) {
    case BN_SUMS_X:
        BLOCKS(BN_SUMS_X, 4);
        break;
    case BN_SUMS_DY_X:
        BLOCKS(BN_SUMS_DY_X, 4);
        break;
    case BN_SUMS_DZ_SILU:
        BLOCKS(BN_SUMS_DZ_SILU, 4);
        break;
    }
#else
    chunk_scalar(in, r0, r1, p1, p2);
#endif
}

void bn_channel_sums(const bn_sums_in *in, double *s1, double *s2) {
    const int m = in->m, c = in->c;
    int nchunk = (m + BN_CHUNK_ROWS - 1) / BN_CHUNK_ROWS;
    double *part = xcalloc((size_t)nchunk * 2 * c, sizeof(double));
    long long work = (long long)m * c;
#pragma omp parallel for num_threads(kernels_threads()) schedule(static) if (work >= BN_PAR_MIN)
    for (int k = 0; k < nchunk; k++) {
        double *p1 = part + (size_t)k * 2 * c, *p2 = p1 + c;
        int r1 = (k + 1) * BN_CHUNK_ROWS < m ? (k + 1) * BN_CHUNK_ROWS : m;
        chunk_sums(in, k * BN_CHUNK_ROWS, r1, p1, p2);
    }
    for (int ch = 0; ch < c; ch++) s1[ch] = s2[ch] = 0.0;
    for (int k = 0; k < nchunk; k++) {
        const double *p1 = part + (size_t)k * 2 * c, *p2 = p1 + c;
        for (int ch = 0; ch < c; ch++) {
            s1[ch] += p1[ch];
            s2[ch] += p2[ch];
        }
    }
    free(part);
}

void bn_channel_sums_scalar(const bn_sums_in *in, double *s1, double *s2) {
    const int m = in->m, c = in->c;
    for (int ch = 0; ch < c; ch++) s1[ch] = s2[ch] = 0.0;
    double *p = xmalloc(2 * (size_t)c * sizeof *p);
    for (int r0 = 0; r0 < m; r0 += BN_CHUNK_ROWS) {
        for (int ch = 0; ch < 2 * c; ch++) p[ch] = 0.0;
        chunk_scalar(in, r0, r0 + BN_CHUNK_ROWS < m ? r0 + BN_CHUNK_ROWS : m, p, p + c);
        for (int ch = 0; ch < c; ch++) s1[ch] += p[ch], s2[ch] += p[c + ch];
    }
    free(p);
}
