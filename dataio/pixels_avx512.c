/* AVX-512 (BW, VL, VBMI) versions of the pixel kernels: the same arithmetic as the scalar
 * definitions in pixels.c, lane by lane, so the bytes are identical (tests compare them).
 * Float expressions are written operation by operation; this file must not be built with
 * -ffast-math or FMA contraction (-std=c17 keeps GCC's contraction off). */
#include "dataio/pixels_simd.h"

#if PIXELS_HAVE_AVX512
#include "common/log.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static inline __mmask16 tail16(int left) {
    return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
}

/* ---- warp rows --------------------------------------------------------------------------------
 */

/* Per block of 16 output elements: the lowest source offset, and each element's byte offset
 * from it, when all 16 (and their right neighbours, 3 bytes on) fit in one 64-byte window; a
 * block that does not (a zoom out past 1/4) is gathered. */
struct pixels_hrow_plan {
    int n, nblocks;
    const int32_t *off;
    const float *a;
    int32_t *base; /* [nblocks]; -1: gather this block */
    uint8_t *idx;  /* [nblocks][64] */
};

pixels_hrow_plan *pixels_hrow_plan_avx512(const int32_t *off, const float *a, int n) {
    pixels_hrow_plan *p = xcalloc(1, sizeof *p);
    p->n = n, p->off = off, p->a = a;
    p->nblocks = (n + 15) / 16;
    p->base = xmalloc(sizeof(int32_t) * (size_t)(p->nblocks > 0 ? p->nblocks : 1));
    p->idx = xcalloc((size_t)(p->nblocks > 0 ? p->nblocks : 1), 64);
    for (int k = 0; k < p->nblocks; k++) {
        int lo = off[16 * k], hi = off[16 * k], end = n - 16 * k < 16 ? n - 16 * k : 16;
        for (int j = 1; j < end; j++) {
            int o = off[16 * k + j];
            lo = o < lo ? o : lo, hi = o > hi ? o : hi;
        }
        p->base[k] = hi + 3 - lo < 64 ? lo : -1;
        for (int j = 0; j < end && p->base[k] >= 0; j++)
            p->idx[64 * k + j] = (uint8_t)(off[16 * k + j] - lo);
    }
    return p;
}

void pixels_hrow_plan_free(pixels_hrow_plan *p) {
    if (!p) return;
    free(p->base), free(p->idx), free(p);
}

void pixels_warp_hrow_avx512(const pixels_hrow_plan *p, const uint8_t *row, float *H) {
    const __m512i lo8 = _mm512_set1_epi32(0xFF), three = _mm512_set1_epi8(3);
    for (int k = 0; k < p->nblocks; k++) {
        int i = 16 * k;
        __mmask16 m = tail16(p->n - i);
        __m512 p0, p1;
        if (p->base[k] >= 0) {
            __m512i win = _mm512_loadu_si512(row + p->base[k]);
            __m512i ix = _mm512_loadu_si512(p->idx + 64 * k);
            __m128i b0 = _mm512_castsi512_si128(_mm512_permutexvar_epi8(ix, win));
            __m128i b1 =
                _mm512_castsi512_si128(_mm512_permutexvar_epi8(_mm512_add_epi8(ix, three), win));
            p0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b0));
            p1 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b1));
        } else {
            __m512i o = _mm512_maskz_loadu_epi32(m, p->off + i);
            /* one dword per element: byte 0 is the left neighbour, byte 3 the right one */
            __m512i d = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, o, row, 1);
            p0 = _mm512_cvtepi32_ps(_mm512_and_si512(d, lo8));
            p1 = _mm512_cvtepi32_ps(_mm512_srli_epi32(d, 24));
        }
        __m512 w = _mm512_maskz_loadu_ps(m, p->a + i);
        _mm512_mask_storeu_ps(H + i, m, _mm512_fmadd_ps(w, _mm512_sub_ps(p1, p0), p0));
    }
}

void pixels_warp_vblend_avx512(const float *H0, const float *H1, float b, int n, uint8_t *out) {
    const __m512 vb = _mm512_set1_ps(b);
    const __m512i zero = _mm512_setzero_si512();
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = tail16(n - i);
        __m512 h0 = _mm512_maskz_loadu_ps(m, H0 + i), h1 = _mm512_maskz_loadu_ps(m, H1 + i);
        __m512 v = _mm512_fmadd_ps(vb, _mm512_sub_ps(h1, h0), h0);
        __m512i q = _mm512_max_epi32(_mm512_cvtps_epi32(v), zero); /* round half even */
        _mm_mask_storeu_epi8(out + i, m, _mm512_cvtusepi32_epi8(q));
    }
}

/* ---- HSV --------------------------------------------------------------------------------------
 */

/* ---- HSV --------------------------------------------------------------------------------------
 */

/* A 256-entry byte table in four registers, looked up for 64 byte indices at once: two
 * 128-entry permutes, picked by bit 7 of the index. */
typedef struct byte_table {
    __m512i t[4];
} byte_table;

static inline byte_table byte_table_load(const uint8_t tab[256]) {
    byte_table b;
    for (int k = 0; k < 4; k++) b.t[k] = _mm512_loadu_si512(tab + 64 * k);
    return b;
}

static inline __m512i lookup(const byte_table *t, __m512i idx, __mmask64 hi) {
    __m512i lo = _mm512_permutex2var_epi8(t->t[0], idx, t->t[1]);
    return _mm512_mask_blend_epi8(hi, lo, _mm512_permutex2var_epi8(t->t[2], idx, t->t[3]));
}

/* Bytes 3i + c of a 192-byte block (a0, a1, a2) for i in [0, 64): the first permute reads
 * a0:a1 with the index's low 7 bits, the second a2 with its low 6 where 3i + c >= 128. */
static inline __m512i channel_plane(__m512i a0, __m512i a1, __m512i a2, __m512i idx,
                                    __mmask64 from_a2) {
    return _mm512_mask_permutexvar_epi8(_mm512_permutex2var_epi8(a0, idx, a1), from_a2, idx, a2);
}

/* The integer half of OpenCV's RGB->HSV in 16-bit lanes for 32 pixels (the unpacked low or high
 * bytes of each 128-bit lane; packus puts them back in order). With q = qh * 4096 + ql,
 * (d * q + 2048) >> 12 = d * qh + ((d * ql + 2048) >> 12), and the last term is
 * mulhrs(d, ql << 3) = (d * ql * 8 + 2^14) >> 15; products may wrap in 16 bits because the
 * results fit. */
typedef struct hsv_words {
    __m512i h, s;
} hsv_words;

static inline hsv_words hsv_int16(__m512i R, __m512i G, __m512i B, __m512i v, __m512i d, __m512i qh,
                                  __m512i ql3, __m512i dh, __m512i dl3) {
    __m512i s = _mm512_add_epi16(_mm512_mullo_epi16(d, qh), _mm512_mulhrs_epi16(d, ql3));
    __mmask32 vr = _mm512_cmpeq_epi16_mask(v, R), vg = _mm512_cmpeq_epi16_mask(v, G);
    __m512i h = _mm512_add_epi16(_mm512_sub_epi16(R, G), _mm512_slli_epi16(d, 2));
    h = _mm512_mask_blend_epi16(vg, h,
                                _mm512_add_epi16(_mm512_sub_epi16(B, R), _mm512_slli_epi16(d, 1)));
    h = _mm512_mask_blend_epi16(vr, h, _mm512_sub_epi16(G, B));
    h = _mm512_add_epi16(_mm512_mullo_epi16(h, dh), _mm512_mulhrs_epi16(h, dl3));
    h = _mm512_mask_add_epi16(h, _mm512_cmplt_epi16_mask(h, _mm512_setzero_si512()), h,
                              _mm512_set1_epi16(180));
    return (hsv_words){h, s};
}

static const uint8_t *channel_index(int c) {
    static uint8_t idx[3][64];
    static int ready;
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < 64; i++) idx[k][i] = (uint8_t)(3 * i + k);
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    return idx[c];
}

/* Output byte j of block k (0..2) is channel (64k + j) % 3 of pixel (64k + j) / 3: from R, G
 * (permutex2var, G indices offset by 64) and then B. */
static void interleave_index(int k, uint8_t rg[64], uint8_t *is_b) {
    for (int j = 0; j < 64; j++) {
        int e = 64 * k + j, c = e % 3, px = e / 3;
        rg[j] = (uint8_t)(c == 1 ? 64 + px : px);
        is_b[j] = c == 2;
    }
}

/* The float half of HSV->RGB for 16 pixels: hue, saturation and value bytes in; the t1 and
 * t2/t3 bytes and the sector out. */
static inline __attribute__((always_inline)) void
hsv_float_16(__m128i h16, __m128i s16, __m128i v16, __m128i *o1, __m128i *om, __m128i *sec) {
    const __m512 one = _mm512_set1_ps(1.f), six = _mm512_set1_ps(6.f);
    const __m512 hscale = _mm512_set1_ps(6.f / 180.f), inv255 = _mm512_set1_ps(1.f / 255.f);
    const __m512 k255 = _mm512_set1_ps(255.f);
    __m512 hf = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(h16)), hscale);
    hf = _mm512_mask_sub_ps(hf, _mm512_cmp_ps_mask(hf, six, _CMP_GE_OQ), hf, six);
    __m512i sector = _mm512_cvttps_epi32(hf); /* floor: hf >= 0 */
    hf = _mm512_sub_ps(hf, _mm512_cvtepi32_ps(sector));
    __m512 sf = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(s16)), inv255);
    __m512 vf = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v16)), inv255);
    __mmask16 odd = _mm512_test_epi32_mask(sector, _mm512_set1_epi32(1));
    __m512 x = _mm512_mask_blend_ps(odd, _mm512_sub_ps(one, hf), hf);
    __m512 t1 = _mm512_mul_ps(vf, _mm512_sub_ps(one, sf));
    __m512 tm = _mm512_mul_ps(vf, _mm512_sub_ps(one, _mm512_mul_ps(sf, x)));
    /* truncation; the values are >= 0 */
    *o1 = _mm512_cvtusepi32_epi8(_mm512_cvttps_epi32(_mm512_mul_ps(t1, k255)));
    *om = _mm512_cvtusepi32_epi8(_mm512_cvttps_epi32(_mm512_mul_ps(tm, k255)));
    *sec = _mm512_cvtepi32_epi8(sector);
}

/* Quarter q (a literal: the extract/insert intrinsics take an immediate, which clang checks
 * before inlining) of 64 pixels through hsv_float_16. */
#define HSV_FLOAT_QUARTER(q)                                                                       \
    do {                                                                                           \
        __m128i o1_, om_, sec_;                                                                    \
        hsv_float_16(_mm512_extracti32x4_epi32(hh, q), _mm512_extracti32x4_epi32(ls, q),           \
                     _mm512_extracti32x4_epi32(lv, q), &o1_, &om_, &sec_);                         \
        O1 = _mm512_inserti32x4(O1, o1_, q);                                                       \
        OM = _mm512_inserti32x4(OM, om_, q);                                                       \
        SEC = _mm512_inserti32x4(SEC, sec_, q);                                                    \
    } while (0)

void pixels_hsv_avx512(const image_hsv_tables *t, uint8_t *rgb, size_t npix) {
    const byte_table Tqh = byte_table_load(t->qh), TqlL = byte_table_load(t->qlL);
    const byte_table TqlH = byte_table_load(t->qlH), Tdh = byte_table_load(t->dh);
    const byte_table TdlL = byte_table_load(t->dlL), TdlH = byte_table_load(t->dlH);
    const byte_table To0 = byte_table_load(t->o0), Tlv = byte_table_load(t->lut_v);
    const byte_table Tlh = byte_table_load(t->lut_h), Tls = byte_table_load(t->lut_s);
    const __m512i iR = _mm512_loadu_si512(channel_index(0)),
                  iG = _mm512_loadu_si512(channel_index(1));
    const __m512i iB = _mm512_loadu_si512(channel_index(2));
    const __mmask64 fromR = ~((1ull << 43) - 1), fromG = fromR, fromB = ~((1ull << 42) - 1);
    __m512i oidx[3];
    __mmask64 ob[3];
    for (int k = 0; k < 3; k++) {
        uint8_t rg[64], isb[64];
        interleave_index(k, rg, isb);
        oidx[k] = _mm512_loadu_si512(rg);
        ob[k] = _mm512_cmpneq_epi8_mask(_mm512_loadu_si512(isb), _mm512_setzero_si512());
    }
    const __m512i zero = _mm512_setzero_si512();
    for (size_t p = 0; p < npix; p += 64) {
        size_t nb = 3 * (npix - p < 64 ? npix - p : 64);
        __mmask64 m[3];
        for (int k = 0; k < 3; k++) {
            size_t left = nb > 64 * (size_t)k ? nb - 64 * (size_t)k : 0;
            m[k] = left >= 64 ? ~0ull : (1ull << left) - 1;
        }
        uint8_t *px = rgb + 3 * p;
        __m512i a0 = _mm512_maskz_loadu_epi8(m[0], px), a1 = _mm512_maskz_loadu_epi8(m[1], px + 64);
        __m512i a2 = _mm512_maskz_loadu_epi8(m[2], px + 128);
        __m512i R = channel_plane(a0, a1, a2, iR, fromR), G = channel_plane(a0, a1, a2, iG, fromG);
        __m512i B = channel_plane(a0, a1, a2, iB, fromB);
        __m512i v = _mm512_max_epu8(R, _mm512_max_epu8(G, B));
        __m512i d = _mm512_sub_epi8(v, _mm512_min_epu8(R, _mm512_min_epu8(G, B)));
        __mmask64 vhi = _mm512_movepi8_mask(v), dhi = _mm512_movepi8_mask(d);
        __m512i lv = lookup(&Tlv, v, vhi), O0 = lookup(&To0, v, vhi), bqh = lookup(&Tqh, v, vhi);
        __m512i bqlL = lookup(&TqlL, v, vhi), bqlH = lookup(&TqlH, v, vhi);
        __m512i bdh = lookup(&Tdh, d, dhi), bdlL = lookup(&TdlL, d, dhi);
        __m512i bdlH = lookup(&TdlH, d, dhi);
        hsv_words lo = hsv_int16(_mm512_unpacklo_epi8(R, zero), _mm512_unpacklo_epi8(G, zero),
                                 _mm512_unpacklo_epi8(B, zero), _mm512_unpacklo_epi8(v, zero),
                                 _mm512_unpacklo_epi8(d, zero), _mm512_unpacklo_epi8(bqh, zero),
                                 _mm512_unpacklo_epi8(bqlL, bqlH), _mm512_unpacklo_epi8(bdh, zero),
                                 _mm512_unpacklo_epi8(bdlL, bdlH));
        hsv_words hi = hsv_int16(_mm512_unpackhi_epi8(R, zero), _mm512_unpackhi_epi8(G, zero),
                                 _mm512_unpackhi_epi8(B, zero), _mm512_unpackhi_epi8(v, zero),
                                 _mm512_unpackhi_epi8(d, zero), _mm512_unpackhi_epi8(bqh, zero),
                                 _mm512_unpackhi_epi8(bqlL, bqlH), _mm512_unpackhi_epi8(bdh, zero),
                                 _mm512_unpackhi_epi8(bdlL, bdlH));
        __m512i hb = _mm512_packus_epi16(lo.h, hi.h), sb = _mm512_packus_epi16(lo.s, hi.s);
        __m512i hh = lookup(&Tlh, hb, _mm512_movepi8_mask(hb));
        __m512i ls = lookup(&Tls, sb, _mm512_movepi8_mask(sb));
        /* the float half, 16 pixels at a time: OpenCV's sector table as (b, g, r) is
         * 0 (t1,t3,t0) 1 (t1,t0,t2) 2 (t3,t0,t1) 3 (t0,t2,t1) 4 (t0,t1,t3) 5 (t2,t1,t0) with
         * t0 = v, t1 = v (1 - s), t2 = v (1 - s f), t3 = v (1 - s (1 - f)): every pixel takes
         * t0, t1 and one of t2 (odd sectors) or t3 (even). With s = 0 all are v, which is
         * OpenCV's grey case. */
        __m512i O1 = zero, OM = zero, SEC = zero;
        HSV_FLOAT_QUARTER(0);
        HSV_FLOAT_QUARTER(1);
        HSV_FLOAT_QUARTER(2);
        HSV_FLOAT_QUARTER(3);
        __mmask64 s1 = _mm512_cmpeq_epi8_mask(SEC, _mm512_set1_epi8(1));
        __mmask64 s2 = _mm512_cmpeq_epi8_mask(SEC, _mm512_set1_epi8(2));
        __mmask64 s3 = _mm512_cmpeq_epi8_mask(SEC, _mm512_set1_epi8(3));
        __mmask64 s4 = _mm512_cmpeq_epi8_mask(SEC, _mm512_set1_epi8(4));
        __mmask64 s5 = _mm512_cmpeq_epi8_mask(SEC, _mm512_set1_epi8(5));
        /* r: t0 in sectors 0, 5; mid in 1, 4; t1 in 2, 3. g: mid 0, 3; t0 1, 2; t1 4, 5.
         * b: t1 0, 1; mid 2, 5; t0 3, 4. */
        __m512i r = _mm512_mask_blend_epi8(s1 | s4, _mm512_mask_blend_epi8(s2 | s3, O0, O1), OM);
        __m512i g = _mm512_mask_blend_epi8(s4 | s5, _mm512_mask_blend_epi8(s1 | s2, OM, O0), O1);
        __m512i b = _mm512_mask_blend_epi8(s3 | s4, _mm512_mask_blend_epi8(s2 | s5, O1, OM), O0);
        for (int k = 0; k < 3; k++) {
            __m512i o = _mm512_mask_permutexvar_epi8(_mm512_permutex2var_epi8(r, oidx[k], g), ob[k],
                                                     oidx[k], b);
            _mm512_mask_storeu_epi8(px + 64 * k, m[k], o);
        }
    }
}

#endif
typedef int pixels_avx512_unused;
