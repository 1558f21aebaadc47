/* AVX2 + FMA versions of the pixel kernels, for CPUs without AVX-512 (Zen 3, ...): the same
 * arithmetic as the scalar definitions in pixels.c, lane by lane, so the bytes are identical
 * (tests compare them). The Makefile builds this file with -mavx2 -mfma -mno-avx512f on every
 * x86-64 machine, so it is the code an AVX2-only CPU runs even where the build machine has
 * AVX-512. Float expressions are written operation by operation; this file must not be built with
 * -ffast-math or FMA contraction (-std=c17 keeps GCC's contraction off). */
#include "dataio/pixels_simd.h"

#if PIXELS_HAVE_AVX2
#if !defined(__AVX2__) || !defined(__FMA__)
#error "dataio/pixels_avx2.c needs -mavx2 -mfma (the Makefile adds them on x86-64)"
#endif
#include "common/log.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

/* dword lanes [0, left) set */
static inline __m256i lanes_below(int left) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* ---- byte pairs -------------------------------------------------------------------------------
 */

/* Per block of 8 elements: a 32-byte window of the row holding both bytes of all 8, and two pshufb
 * index vectors (one for window bytes 0..15, one for 16..31, each zeroing what the other moves;
 * both 128-bit lanes hold the same 16 window bytes) that put them into dwords p0 | p1 << 16. A
 * block whose bytes span more (a zoom out past 1/4) is gathered, and one whose dword reads would
 * pass the readable limit is read byte by byte. */
enum { PAIRS_GATHER = -1, PAIRS_BYTES = -2 };
struct pixels_pairs_avx2 {
    int n, nblocks;
    int32_t *base;        /* [nblocks]: window start, or PAIRS_GATHER / PAIRS_BYTES */
    uint8_t *idx;         /* [nblocks][64] */
    int32_t *off0, *off1; /* [nblocks * 8]; lanes past n repeat their block's first element */
};

static void pairs_plan_block(pixels_pairs_avx2 *p, int k, int limit) {
    const int32_t *o0 = p->off0 + 8 * k, *o1 = p->off1 + 8 * k;
    int end = p->n - 8 * k < 8 ? p->n - 8 * k : 8, lo = o0[0], hi = o0[0];
    for (int j = 0; j < end; j++) {
        lo = o0[j] < lo ? o0[j] : lo, lo = o1[j] < lo ? o1[j] : lo;
        hi = o0[j] > hi ? o0[j] : hi, hi = o1[j] > hi ? o1[j] : hi;
    }
    int base = lo < limit - 32 ? lo : limit - 32;
    uint8_t *ix = p->idx + 64 * (size_t)k;
    memset(ix, 0x80, 64);
    if (base >= 0 && hi - base < 32) {
        p->base[k] = base;
        for (int j = 0; j < end; j++)
            for (int b = 0; b < 2; b++) { /* byte 0 of dword j is p0, byte 2 is p1 */
                int w = (b ? o1[j] : o0[j]) - base;
                ix[(w < 16 ? 0 : 32) + 4 * j + 2 * b] = (uint8_t)(w & 15);
            }
    } else {
        p->base[k] = hi + 4 <= limit ? PAIRS_GATHER : PAIRS_BYTES;
    }
}

pixels_pairs_avx2 *pixels_pairs_plan_avx2(const int32_t *off0, const int32_t *off1, int n,
                                          int limit) {
    pixels_pairs_avx2 *p = xcalloc(1, sizeof *p);
    p->n = n, p->nblocks = (n + 7) / 8;
    size_t nb = (size_t)(p->nblocks > 0 ? p->nblocks : 1);
    p->base = xmalloc(sizeof(int32_t) * nb);
    p->idx = xmalloc(64 * nb);
    p->off0 = xmalloc(sizeof(int32_t) * 16 * nb), p->off1 = p->off0 + 8 * nb;
    for (int i = 0; i < 8 * p->nblocks; i++) {
        int e = i < n ? i : i / 8 * 8;
        p->off0[i] = off0[e], p->off1[i] = off1 ? off1[e] : off0[e] + 3;
    }
    for (int k = 0; k < p->nblocks; k++) pairs_plan_block(p, k, limit);
    return p;
}

void pixels_pairs_free_avx2(pixels_pairs_avx2 *p) {
    if (!p) return;
    free(p->base), free(p->idx), free(p->off0), free(p);
}

/* Block k's 8 elements as dwords p0 | p1 << 16. */
static inline __m256i pairs_block(const pixels_pairs_avx2 *p, int k, const uint8_t *row) {
    int32_t b = p->base[k];
    if (b >= 0) {
        const __m256i *ix = (const __m256i *)(p->idx + 64 * (size_t)k);
        __m256i w0 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(row + b)));
        __m256i w1 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(row + b + 16)));
        return _mm256_or_si256(_mm256_shuffle_epi8(w0, _mm256_loadu_si256(ix)),
                               _mm256_shuffle_epi8(w1, _mm256_loadu_si256(ix + 1)));
    }
    const int32_t *o0 = p->off0 + 8 * k, *o1 = p->off1 + 8 * k;
    if (b == PAIRS_GATHER) {
        const __m256i lo8 = _mm256_set1_epi32(0xFF);
        __m256i a =
            _mm256_i32gather_epi32((const int *)row, _mm256_loadu_si256((const void *)o0), 1);
        __m256i c =
            _mm256_i32gather_epi32((const int *)row, _mm256_loadu_si256((const void *)o1), 1);
        return _mm256_or_si256(_mm256_and_si256(a, lo8),
                               _mm256_slli_epi32(_mm256_and_si256(c, lo8), 16));
    }
    int32_t v[8];
    for (int j = 0; j < 8; j++) v[j] = row[o0[j]] | row[o1[j]] << 16;
    return _mm256_loadu_si256((const void *)v);
}

/* ---- warp rows --------------------------------------------------------------------------------
 */

void pixels_warp_hrow_avx2(const pixels_pairs_avx2 *p, const uint8_t *row, const float *a,
                           float *H) {
    const __m256i lo16 = _mm256_set1_epi32(0xFFFF);
    for (int k = 0; k < p->nblocks; k++) {
        int i = 8 * k;
        __m256i pr = pairs_block(p, k, row);
        __m256 p0 = _mm256_cvtepi32_ps(_mm256_and_si256(pr, lo16));
        __m256 p1 = _mm256_cvtepi32_ps(_mm256_srli_epi32(pr, 16));
        if (p->n - i >= 8) {
            __m256 w = _mm256_loadu_ps(a + i);
            _mm256_storeu_ps(H + i, _mm256_fmadd_ps(w, _mm256_sub_ps(p1, p0), p0));
        } else {
            __m256i m = lanes_below(p->n - i);
            __m256 w = _mm256_maskload_ps(a + i, m);
            _mm256_maskstore_ps(H + i, m, _mm256_fmadd_ps(w, _mm256_sub_ps(p1, p0), p0));
        }
    }
}

/* fma(b, H1 - H0, H0) rounded half to even, for elements [0, min(left, 8)) */
static inline __m256i vblend8(const float *H0, const float *H1, __m256 vb, int left) {
    __m256 h0, h1;
    if (left >= 8) {
        h0 = _mm256_loadu_ps(H0), h1 = _mm256_loadu_ps(H1);
    } else {
        __m256i m = lanes_below(left);
        h0 = _mm256_maskload_ps(H0, m), h1 = _mm256_maskload_ps(H1, m);
    }
    return _mm256_cvtps_epi32(_mm256_fmadd_ps(vb, _mm256_sub_ps(h1, h0), h0));
}

void pixels_warp_vblend_avx2(const float *H0, const float *H1, float b, int n, uint8_t *out) {
    const __m256 vb = _mm256_set1_ps(b);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int i = 0; i < n; i += 32) {
        int left = n - i;
        __m256i q0 = vblend8(H0 + i, H1 + i, vb, left);
        __m256i q1 = vblend8(H0 + i + 8, H1 + i + 8, vb, left - 8);
        __m256i q2 = vblend8(H0 + i + 16, H1 + i + 16, vb, left - 16);
        __m256i q3 = vblend8(H0 + i + 24, H1 + i + 24, vb, left - 24);
        /* saturating packs: below 0 gives 0 and above 255 gives 255, as the scalar clamps */
        __m256i u8 = _mm256_packus_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
        u8 = _mm256_permutevar8x32_epi32(u8, order);
        if (left >= 32) {
            _mm256_storeu_si256((__m256i *)(out + i), u8);
        } else {
            uint8_t t[32];
            _mm256_storeu_si256((__m256i *)t, u8);
            memcpy(out + i, t, (size_t)left);
        }
    }
}

/* ---- resize -----------------------------------------------------------------------------------
 */

/* One source row along x into D = (p0 * a0 + p1 * a1) >> 4 as int16 (only D >> 4 is ever used),
 * 16 elements at a time (D is padded). w: per element a0 | a1 << 16 (0 past n). */
static void resize_hrow(const pixels_pairs_avx2 *p, const uint8_t *S, const int32_t *w,
                        int16_t *D) {
    for (int k = 0; k < p->nblocks; k += 2) {
        __m256i v0 =
            _mm256_madd_epi16(pairs_block(p, k, S), _mm256_loadu_si256((const void *)(w + 8 * k)));
        __m256i v1 = _mm256_setzero_si256();
        if (k + 1 < p->nblocks)
            v1 = _mm256_madd_epi16(pairs_block(p, k + 1, S),
                                   _mm256_loadu_si256((const void *)(w + 8 * k + 8)));
        __m256i d = _mm256_packs_epi32(_mm256_srai_epi32(v0, 4), _mm256_srai_epi32(v1, 4));
        _mm256_storeu_si256((__m256i *)(D + 8 * k), _mm256_permute4x64_epi64(d, 0xD8));
    }
}

/* ((D0 * b0) >> 16) + ((D1 * b1) >> 16) + 2 >> 2 in 16-bit lanes: D < 2^15, b <= 2048 */
static inline __m256i resize_v16(const int16_t *D0, const int16_t *D1, __m256i b0, __m256i b1) {
    __m256i d0 = _mm256_loadu_si256((const void *)D0), d1 = _mm256_loadu_si256((const void *)D1);
    __m256i v = _mm256_add_epi16(_mm256_mulhi_epi16(d0, b0), _mm256_mulhi_epi16(d1, b1));
    return _mm256_srai_epi16(_mm256_add_epi16(v, _mm256_set1_epi16(2)), 2);
}

void pixels_resize_avx2(const uint8_t *src, int sh, int sw, uint8_t *dst, size_t dstride, int dh,
                        int dw) {
    int n = 3 * dw, npad = (n + 31) & ~31;
    int *xi0 = xmalloc(sizeof(int) * 4 * (size_t)dw), *xi1 = xi0 + dw, *xa0 = xi1 + dw,
        *xa1 = xa0 + dw;
    int *yi0 = xmalloc(sizeof(int) * 4 * (size_t)dh), *yi1 = yi0 + dh, *ya0 = yi1 + dh,
        *ya1 = ya0 + dh;
    pixels_resize_coefs(dw, sw, xi0, xi1, xa0, xa1);
    pixels_resize_coefs(dh, sh, yi0, yi1, ya0, ya1);
    int32_t *off = xmalloc(sizeof(int32_t) * 2 * (size_t)n), *w = xcalloc((size_t)npad, 4);
    for (int i = 0; i < n; i++) {
        int x = i / 3, c = i % 3;
        off[i] = 3 * xi0[x] + c, off[n + i] = 3 * xi1[x] + c;
        w[i] = xa0[x] | xa1[x] << 16;
    }
    pixels_pairs_avx2 *plan = pixels_pairs_plan_avx2(off, off + n, n, 3 * sw);
    int16_t *rows = xcalloc(2 * (size_t)npad, sizeof(int16_t));
    int16_t *D[2] = {rows, rows + npad};
    int have[2] = {-1, -1};
    for (int y = 0; y < dh; y++) {
        int want[2] = {yi0[y], yi1[y]};
        PIXELS_ROWS_SHIFT(D, have, want[0]);
        for (int k = 0; k < 2; k++) {
            if (have[k] == want[k]) continue;
            resize_hrow(plan, src + (size_t)want[k] * sw * 3, w, D[k]);
            have[k] = want[k];
        }
        const __m256i b0 = _mm256_set1_epi16((short)ya0[y]), b1 = _mm256_set1_epi16((short)ya1[y]);
        uint8_t *d = dst + y * dstride;
        for (int i = 0; i < n; i += 32) {
            __m256i lo = resize_v16(D[0] + i, D[1] + i, b0, b1);
            __m256i hi = resize_v16(D[0] + i + 16, D[1] + i + 16, b0, b1);
            __m256i u8 = _mm256_permute4x64_epi64(_mm256_packus_epi16(lo, hi), 0xD8);
            if (n - i >= 32) {
                _mm256_storeu_si256((__m256i *)(d + i), u8);
            } else {
                uint8_t t[32];
                _mm256_storeu_si256((__m256i *)t, u8);
                memcpy(d + i, t, (size_t)(n - i));
            }
        }
    }
    pixels_pairs_free_avx2(plan);
    free(rows), free(w), free(off), free(xi0), free(yi0);
}

/* ---- HSV --------------------------------------------------------------------------------------
 */

/* Dword tables, made once per call: the load order of 8 pixels' 24 bytes (pixels 4..7 moved to
 * the high lane), each channel's bytes into dwords, and the output byte choice per hue sector. */
typedef struct hsv_consts {
    __m256i load_order, ch[3], sel, sel_base, compact, store_order;
} hsv_consts;

static hsv_consts hsv_consts_make(void) {
    hsv_consts k;
    k.load_order = _mm256_setr_epi32(0, 1, 2, 3, 3, 4, 5, 6);
    for (int c = 0; c < 3; c++) {
        uint8_t m[32];
        for (int i = 0; i < 32; i++) m[i] = i % 4 ? 0x80 : (uint8_t)(3 * (i % 16 / 4) + c);
        k.ch[c] = _mm256_loadu_si256((const void *)m);
    }
    /* the (r, g, b) bytes of o0 | o1 << 8 | om << 16 per sector (OpenCV's sector table, as in
     * pixels_avx512.c): 0 (o0, om, o1) 1 (om, o0, o1) 2 (o1, o0, om) 3 (o1, om, o0)
     * 4 (om, o1, o0) 5 (o0, o1, om); byte 3 zeroed */
    const int rgb[6][3] = {{0, 2, 1}, {2, 0, 1}, {1, 0, 2}, {1, 2, 0}, {2, 1, 0}, {0, 1, 2}};
    int32_t sel[8] = {0};
    for (int s = 0; s < 6; s++)
        sel[s] = (int32_t)(rgb[s][0] | rgb[s][1] << 8 | rgb[s][2] << 16 | 0x80u << 24);
    k.sel = _mm256_loadu_si256((const void *)sel);
    k.sel_base =
        _mm256_setr_epi32(0, 0x040404, 0x080808, 0x0C0C0C, 0, 0x040404, 0x080808, 0x0C0C0C);
    uint8_t m[32];
    for (int i = 0; i < 32; i++) m[i] = i % 16 < 12 ? (uint8_t)(i % 16 / 3 * 4 + i % 16 % 3) : 0x80;
    k.compact = _mm256_loadu_si256((const void *)m);
    k.store_order = _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 3, 7);
    return k;
}

/* OpenCV's integer RGB->HSV (S and H bytes) and the lookup tables, for 8 pixels in dwords. */
static inline __attribute__((always_inline)) void hsv_int8(const image_hsv_tables *t, __m256i R,
                                                           __m256i G, __m256i B, __m256i *hh,
                                                           __m256i *ls, __m256i *lv) {
    const __m256i half = _mm256_set1_epi32(1 << 11), lo8 = _mm256_set1_epi32(0xFF);
    __m256i v = _mm256_max_epi32(R, _mm256_max_epi32(G, B));
    __m256i d = _mm256_sub_epi32(v, _mm256_min_epi32(R, _mm256_min_epi32(G, B)));
    __m256i sv = _mm256_i32gather_epi32(t->sdiv_v, v, 4);
    __m256i hdiv = _mm256_i32gather_epi32(t->hdiv, d, 4);
    __m256i sdiv = _mm256_and_si256(sv, _mm256_set1_epi32((1 << 20) - 1));
    __m256i s = _mm256_srai_epi32(_mm256_add_epi32(_mm256_mullo_epi32(d, sdiv), half), 12);
    __m256i vr = _mm256_cmpeq_epi32(v, R), vg = _mm256_cmpeq_epi32(v, G);
    __m256i h = _mm256_add_epi32(_mm256_sub_epi32(R, G), _mm256_slli_epi32(d, 2));
    h = _mm256_blendv_epi8(h, _mm256_add_epi32(_mm256_sub_epi32(B, R), _mm256_slli_epi32(d, 1)),
                           vg);
    h = _mm256_blendv_epi8(h, _mm256_sub_epi32(G, B), vr);
    h = _mm256_srai_epi32(_mm256_add_epi32(_mm256_mullo_epi32(h, hdiv), half), 12);
    h = _mm256_add_epi32(
        h, _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), h), _mm256_set1_epi32(180)));
    /* byte tables read as dwords at byte offsets: the 3 bytes past index 255 are the next table
     * in image_hsv_tables */
    *hh = _mm256_and_si256(_mm256_i32gather_epi32((const int *)t->lut_h, h, 1), lo8);
    *ls = _mm256_and_si256(_mm256_i32gather_epi32((const int *)t->lut_s, s, 1), lo8);
    *lv = _mm256_srli_epi32(sv, 20);
}

/* HSV->RGB in float for 8 pixels: the output bytes o0 (v), o1 (v (1 - s)) and om (t2 in odd
 * sectors, t3 in even ones) as o0 | o1 << 8 | om << 16, and the sector. */
static inline __attribute__((always_inline)) __m256i hsv_float8(__m256i hh, __m256i ls, __m256i lv,
                                                                __m256i *sector) {
    const __m256 one = _mm256_set1_ps(1.f), six = _mm256_set1_ps(6.f);
    const __m256 inv255 = _mm256_set1_ps(1.f / 255.f), k255 = _mm256_set1_ps(255.f);
    __m256 hf = _mm256_mul_ps(_mm256_cvtepi32_ps(hh), _mm256_set1_ps(6.f / 180.f));
    hf = _mm256_sub_ps(hf, _mm256_and_ps(_mm256_cmp_ps(hf, six, _CMP_GE_OQ), six));
    *sector = _mm256_cvttps_epi32(hf); /* floor: hf >= 0 */
    hf = _mm256_sub_ps(hf, _mm256_cvtepi32_ps(*sector));
    __m256 sf = _mm256_mul_ps(_mm256_cvtepi32_ps(ls), inv255);
    __m256 vf = _mm256_mul_ps(_mm256_cvtepi32_ps(lv), inv255);
    __m256i odd = _mm256_slli_epi32(*sector, 31);
    __m256 x = _mm256_blendv_ps(_mm256_sub_ps(one, hf), hf, _mm256_castsi256_ps(odd));
    __m256 t1 = _mm256_mul_ps(vf, _mm256_sub_ps(one, sf));
    __m256 tm = _mm256_mul_ps(vf, _mm256_sub_ps(one, _mm256_mul_ps(sf, x)));
    /* truncation; the values are in [0, 255] (a tiny negative truncates to 0) */
    __m256i o0 = _mm256_cvttps_epi32(_mm256_mul_ps(vf, k255));
    __m256i o1 = _mm256_cvttps_epi32(_mm256_mul_ps(t1, k255));
    __m256i om = _mm256_cvttps_epi32(_mm256_mul_ps(tm, k255));
    return _mm256_or_si256(o0,
                           _mm256_or_si256(_mm256_slli_epi32(o1, 8), _mm256_slli_epi32(om, 16)));
}

/* 8 pixels from src (32 bytes readable) to dst (24 bytes written); src may be dst. */
static inline __attribute__((always_inline)) void
hsv8(const image_hsv_tables *t, const hsv_consts *k, const uint8_t *src, uint8_t *dst) {
    __m256i x = _mm256_permutevar8x32_epi32(_mm256_loadu_si256((const void *)src), k->load_order);
    __m256i hh, ls, lv, sector;
    hsv_int8(t, _mm256_shuffle_epi8(x, k->ch[0]), _mm256_shuffle_epi8(x, k->ch[1]),
             _mm256_shuffle_epi8(x, k->ch[2]), &hh, &ls, &lv);
    __m256i o = hsv_float8(hh, ls, lv, &sector);
    __m256i pick = _mm256_add_epi32(_mm256_permutevar8x32_epi32(k->sel, sector), k->sel_base);
    o = _mm256_shuffle_epi8(_mm256_shuffle_epi8(o, pick), k->compact);
    o = _mm256_permutevar8x32_epi32(o, k->store_order);
    _mm_storeu_si128((__m128i *)dst, _mm256_castsi256_si128(o));
    _mm_storel_epi64((__m128i *)(dst + 16), _mm256_extracti128_si256(o, 1));
}

void pixels_hsv_avx2(const image_hsv_tables *t, uint8_t *rgb, size_t npix) {
    const hsv_consts k = hsv_consts_make();
    size_t p = 0;
    for (; p + 11 <= npix; p += 8) hsv8(t, &k, rgb + 3 * p, rgb + 3 * p);
    if (p < npix) { /* at most 10 pixels, through a buffer that may be read past them */
        uint8_t buf[64] = {0};
        size_t left = npix - p;
        memcpy(buf, rgb + 3 * p, 3 * left);
        hsv8(t, &k, buf, buf);
        if (left > 8) hsv8(t, &k, buf + 24, buf + 24);
        memcpy(rgb + 3 * p, buf, 3 * left);
    }
}

#endif
typedef int pixels_avx2_unused;
