/* Batch-norm channel sums (bn_sums.h). The vector path (AVX-512, or AVX2 + FMA) keeps each block
 * of channels' sums in registers over a chunk's rows (one dependency chain per channel, in row
 * order, as the scalar loop), which is what makes it several times faster than summing into memory
 * row by row (the scalar loop: ~10x slower with the SiLU derivative, which it does not
 * vectorise). */
#include "kernels/bn_sums.h"

#include "common/log.h"
#include "kernels/fast_exp.h"
#include "kernels/threads.h"

#include <stdbool.h>
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
                if (in->dz) in->dz[(size_t)r * c + ch] = a;
            }
            p1[ch] += a;
            p2[ch] += (double)a * ((double)br[ch] - in->mean[ch]);
        }
    }
}

/* The vector path: VW float lanes, two double halves each, in AVX-512 (VW 16) or AVX2 + FMA
 * (VW 8) through the few operations below, so that one block loop serves both. */
#if defined(__AVX512F__)
#define VW 16
#define NV_MAX 4   /* 4 vectors: 16 accumulators of the 32 registers, whole cache lines of a row */
#define ROW_VECS 8 /* dz vectors computed before they are added (rows x NV, NV <= 2) */
typedef __m512 vf;
typedef __m512d vd;
typedef struct vmask {
    __mmask16 k;
    bool full;
} vmask;
static inline vmask v_mask(int n) {
    vmask m = {n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1), n >= 16};
    return m;
}
/* Full-width loads where all lanes are in range (masked loads of full vectors measured 2-3x
 * slower in these loops). */
static inline vf vf_load(vmask m, const float *p) {
    return m.full ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(m.k, p);
}
static inline void vf_store(vmask m, float *p, vf v) {
    if (m.full)
        _mm512_storeu_ps(p, v);
    else
        _mm512_mask_storeu_ps(p, m.k, v);
}
static inline vd vd_lo(vf v) {
    return _mm512_cvtps_pd(_mm512_castps512_ps256(v));
}
static inline vd vd_hi(vf v) {
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}
#define VF(op) _mm512_##op##_ps
#define VD(op) _mm512_##op##_pd
#define vf_set1 _mm512_set1_ps
#define vf_exp exp_fast16
static inline vf vf_neg(vf v) { /* the sign flipped, as the scalar negation */
    return _mm512_castsi512_ps(
        _mm512_xor_si512(_mm512_castps_si512(v), _mm512_set1_epi32((int)0x80000000u)));
}
#elif defined(__AVX2__) && defined(__FMA__)
#define VW 8
#define NV_MAX 2   /* 2 vectors: 8 accumulators of the 16 registers */
#define ROW_VECS 2 /* more spill: measured slower */
typedef __m256 vf;
typedef __m256d vd;
typedef struct vmask {
    __m256i k;
    bool full;
} vmask;
static inline vmask v_mask(int n) {
    vmask m = {_mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
               n >= 8};
    return m;
}
static inline vf vf_load(vmask m, const float *p) {
    return m.full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m.k);
}
static inline void vf_store(vmask m, float *p, vf v) {
    if (m.full)
        _mm256_storeu_ps(p, v);
    else
        _mm256_maskstore_ps(p, m.k, v);
}
static inline vd vd_lo(vf v) {
    return _mm256_cvtps_pd(_mm256_castps256_ps128(v));
}
static inline vd vd_hi(vf v) {
    return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
}
#define VF(op) _mm256_##op##_ps
#define VD(op) _mm256_##op##_pd
#define vf_set1 _mm256_set1_ps
#define vf_exp exp_fast8
static inline vf vf_neg(vf v) {
    return _mm256_castsi256_ps(
        _mm256_xor_si256(_mm256_castps_si256(v), _mm256_set1_epi32((int)0x80000000u)));
}
#endif

#ifdef VW
/* dz = dy * silu'(z) on VW lanes, the operations of the scalar path (bn_silu_dz) in its order. */
static inline vf dz_silu(vf dy, vf x, vf mean, vf scale, vf beta) {
    const vf one = vf_set1(1.0f);
    vf z = VF(add)(VF(mul)(VF(sub)(x, mean), scale), beta);
    vf s = VF(div)(one, VF(add)(one, vf_exp(vf_neg(z))));
    return VF(mul)(VF(mul)(dy, s), VF(add)(one, VF(mul)(z, VF(sub)(one, s))));
}

/* s1 += a, s2 += a (b - mean) on the two double halves of vector v. */
static inline __attribute__((always_inline)) void accumulate(vd *s1, vd *s2, int v, vf a, vf b,
                                                             const double *dm) {
    const int H = VW / 2;
    vd al = vd_lo(a), ah = vd_hi(a);
    s1[2 * v] = VD(add)(s1[2 * v], al);
    s1[2 * v + 1] = VD(add)(s1[2 * v + 1], ah);
    s2[2 * v] = VD(add)(s2[2 * v], VD(mul)(al, VD(sub)(vd_lo(b), VD(load)(dm + VW * v))));
    s2[2 * v + 1] =
        VD(add)(s2[2 * v + 1], VD(mul)(ah, VD(sub)(vd_hi(b), VD(load)(dm + VW * v + H))));
}

/* Channels [c0, c0 + VW NV) (masked past c) over rows [r0, r1): NV vectors of VW channels, their
 * 4 NV double accumulators in registers, one chain per channel in row order. The per-channel
 * constants and the partial sums go through padded arrays (L1), so the row loop needs no masks but
 * the loads' and stores' of the rows themselves. */
static inline __attribute__((always_inline)) void block_nv(const bn_sums_in *in, int r0, int r1,
                                                           int c0, double *p1, double *p2,
                                                           const int NV, const bn_sums_kind kind) {
    const int c = in->c, nc = c - c0 < VW * NV ? c - c0 : VW * NV;
    const float *pa = in->a + c0, *pb = in->b ? in->b + c0 : NULL;
    float *pz = kind == BN_SUMS_DZ_SILU && in->dz ? in->dz + c0 : NULL;
    enum { N = VW * NV_MAX };
    float cm[N] __attribute__((aligned(64))), cs[N] __attribute__((aligned(64)));
    float cb[N] __attribute__((aligned(64)));
    double dm[N] __attribute__((aligned(64))), a1[N] __attribute__((aligned(64)));
    double a2[N] __attribute__((aligned(64)));
    for (int j = 0; j < VW * NV; j++) {
        bool on = j < nc;
        cm[j] = on && kind != BN_SUMS_X ? in->mean[c0 + j] : 0.0f;
        dm[j] = cm[j];
        cs[j] = on && kind == BN_SUMS_DZ_SILU ? in->scale[c0 + j] : 0.0f;
        cb[j] = on && kind == BN_SUMS_DZ_SILU ? in->beta[c0 + j] : 0.0f;
        a1[j] = on ? p1[c0 + j] : 0.0;
        a2[j] = on ? p2[c0 + j] : 0.0;
    }
    vmask mk[NV_MAX];
    vd s1[2 * NV_MAX], s2[2 * NV_MAX];
    const int H = VW / 2; /* doubles per vd */
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
        mk[v] = v_mask(nc - VW * v);
        for (int h = 0; h < 2; h++) {
            s1[2 * v + h] = VD(load)(a1 + VW * v + H * h);
            s2[2 * v + h] = VD(load)(a2 + VW * v + H * h);
        }
    }
    int r = r0;
    /* dz of ROWS rows first (independent chains of ~30 operations: more of them in flight), then
     * added in row order */
    const int ROWS = NV <= 2 ? ROW_VECS / NV : 1; /* wider blocks: measured no better */
    for (; kind == BN_SUMS_DZ_SILU && r + ROWS <= r1; r += ROWS) {
        vf a[ROW_VECS][NV_MAX], b[ROW_VECS][NV_MAX];
#pragma GCC unroll 4
        for (int k = 0; k < ROWS; k++) {
            size_t o = (size_t)(r + k) * c;
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                b[k][v] = vf_load(mk[v], pb + o + VW * v);
                a[k][v] = dz_silu(vf_load(mk[v], pa + o + VW * v), b[k][v], VF(load)(cm + VW * v),
                                  VF(load)(cs + VW * v), VF(load)(cb + VW * v));
                if (pz) vf_store(mk[v], pz + o + VW * v, a[k][v]);
            }
        }
#pragma GCC unroll 4
        for (int k = 0; k < ROWS; k++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) accumulate(s1, s2, v, a[k][v], b[k][v], dm);
    }
    for (; r < r1; r++) {
        size_t o = (size_t)r * c;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            vf a = vf_load(mk[v], pa + o + VW * v);
            if (kind == BN_SUMS_X) {
                vd l = vd_lo(a), h = vd_hi(a);
                s1[2 * v] = VD(add)(s1[2 * v], l);
                s1[2 * v + 1] = VD(add)(s1[2 * v + 1], h);
                s2[2 * v] = VD(add)(s2[2 * v], VD(mul)(l, l));
                s2[2 * v + 1] = VD(add)(s2[2 * v + 1], VD(mul)(h, h));
                continue;
            }
            vf b = vf_load(mk[v], pb + o + VW * v);
            if (kind == BN_SUMS_DZ_SILU) {
                a = dz_silu(a, b, VF(load)(cm + VW * v), VF(load)(cs + VW * v),
                            VF(load)(cb + VW * v));
                if (pz) vf_store(mk[v], pz + o + VW * v, a);
            }
            accumulate(s1, s2, v, a, b, dm);
        }
    }
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++)
        for (int h = 0; h < 2; h++) {
            VD(store)(a1 + VW * v + H * h, s1[2 * v + h]);
            VD(store)(a2 + VW * v + H * h, s2[2 * v + h]);
        }
    for (int j = 0; j < nc; j++) p1[c0 + j] = a1[j], p2[c0 + j] = a2[j];
}

/* Blocks of up to VW NV_MAX channels of one kind (compile-time, so each loop is specialised). */
#define BLOCKS(KIND)                                                                               \
    for (int c0 = 0; c0 < in->c; c0 += VW * NV_MAX) {                                              \
        int nv = (in->c - c0 + VW - 1) / VW;                                                       \
        if (nv >= 4 && NV_MAX >= 4)                                                                \
            block_nv(in, r0, r1, c0, p1, p2, 4, KIND);                                             \
        else if (nv == 3 && NV_MAX >= 3)                                                           \
            block_nv(in, r0, r1, c0, p1, p2, 3, KIND);                                             \
        else if (nv >= 2)                                                                          \
            block_nv(in, r0, r1, c0, p1, p2, 2, KIND);                                             \
        else                                                                                       \
            block_nv(in, r0, r1, c0, p1, p2, 1, KIND);                                             \
    }
#endif

/* One chunk of rows, all channels. */
static void chunk_sums(const bn_sums_in *in, int r0, int r1, double *p1, double *p2) {
#ifdef VW
    switch (in->kind) {
    case BN_SUMS_X:
        BLOCKS(BN_SUMS_X);
        break;
    case BN_SUMS_DY_X:
        BLOCKS(BN_SUMS_DY_X);
        break;
    case BN_SUMS_DZ_SILU:
        BLOCKS(BN_SUMS_DZ_SILU);
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
