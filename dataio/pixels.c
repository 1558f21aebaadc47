/* The scalar kernels (the definitions) and the dispatch to the vectorised ones
 * (dataio/pixels_avx512.c, dataio/pixels_avx2.c). */
#include "dataio/pixels.h"

#include "common/log.h"
#include "dataio/pixels_simd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the level in force -----------------------------------------------------------------------
 */

#if PIXELS_HAVE_AVX512
#define PIXELS_DEFAULT PIXELS_AVX512
#elif PIXELS_HAVE_AVX2 && defined(__AVX2__) && defined(__FMA__)
#define PIXELS_DEFAULT PIXELS_AVX2
#else
#define PIXELS_DEFAULT PIXELS_SCALAR
#endif

static pixels_level g_level = PIXELS_DEFAULT;

pixels_level pixels_simd(void) {
    return g_level;
}

const char *pixels_simd_name(pixels_level level) {
    return level == PIXELS_AVX512 ? "avx512" : level == PIXELS_AVX2 ? "avx2" : "scalar";
}

int pixels_simd_parse(const char *name) {
    for (int l = PIXELS_SCALAR; l <= PIXELS_AVX512; l++)
        if (!strcmp(name, pixels_simd_name((pixels_level)l))) return l;
    return -1;
}

int pixels_set_simd(pixels_level level, char *err, size_t errlen) {
    const char *lacks = NULL;
    if (level == PIXELS_AVX512) {
#if PIXELS_HAVE_AVX512
        if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
            !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512vbmi"))
            lacks = "this CPU lacks AVX-512 F/BW/VL/VBMI";
#else
        lacks = "this build does not target AVX-512 (the Makefile's -march=native on a CPU "
                "without AVX-512 F/BW/VL/VBMI)";
#endif
    } else if (level == PIXELS_AVX2) {
#if PIXELS_HAVE_AVX2
        if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
            lacks = "this CPU lacks AVX2 + FMA";
#else
        lacks = "the AVX2 kernels are built on x86-64 only";
#endif
    } else if (level != PIXELS_SCALAR) {
        lacks = "no such level";
    }
    if (lacks) {
        snprintf(err, errlen, "pixel kernels %s: %s", pixels_simd_name(level), lacks);
        return -1;
    }
    g_level = level;
    return 0;
}

/* OpenCV 5's 8-bit HSV->RGB truncates where 4.x rounded (checked against cv2 5.0). */
static inline uint8_t trunc_u8(float v) {
    if (v <= 0.f) return 0;
    if (v >= 255.f) return 255;
    return (uint8_t)(int)v;
}

/* ---- resize -----------------------------------------------------------------------------------
 */

void pixels_resize_coefs(int dn, int sn, int *i0, int *i1, int *a0, int *a1) {
    double scale = 1.0 / ((double)dn / sn);
    for (int d = 0; d < dn; d++) {
        float f = (float)((d + 0.5) * scale - 0.5);
        int i = (int)floorf(f);
        f -= (float)i;
        if (i < 0) i = 0, f = 0.f;
        if (i >= sn - 1) i = sn - 1, f = 0.f;
        i0[d] = i;
        i1[d] = i + 1 < sn ? i + 1 : i;
        a0[d] = (int)lrintf((1.f - f) * 2048.f);
        a1[d] = (int)lrintf(f * 2048.f);
    }
}

/* A horizontal pass into integers, then the vertical blend as OpenCV's SIMD path does it,
 * (((D0 >> 4) * b0) >> 16) + (((D1 >> 4) * b1) >> 16) + 2 >> 2. Checked against cv2.resize
 * 5.0: identical for downscales, within 1 level on ~0.1% of pixels for upscales. */
void image_resize_into_ref(const uint8_t *src, int sh, int sw, uint8_t *dst, size_t dstride, int dh,
                           int dw) {
    if (sh == dh && sw == dw) {
        for (int y = 0; y < dh; y++)
            memcpy(dst + y * dstride, src + (size_t)y * sw * 3, (size_t)sw * 3);
        return;
    }
    int *xi0 = xmalloc(sizeof(int) * 4 * (size_t)dw), *xi1 = xi0 + dw, *xa0 = xi1 + dw,
        *xa1 = xa0 + dw;
    int *yi0 = xmalloc(sizeof(int) * 4 * (size_t)dh), *yi1 = yi0 + dh, *ya0 = yi1 + dh,
        *ya1 = ya0 + dh;
    pixels_resize_coefs(dw, sw, xi0, xi1, xa0, xa1);
    pixels_resize_coefs(dh, sh, yi0, yi1, ya0, ya1);
    /* the two horizontally resized source rows in use; the lower one is reused as the next
     * upper one */
    int *rows = xmalloc(sizeof(int) * 2 * (size_t)dw * 3);
    int *D[2] = {rows, rows + (size_t)dw * 3}, have[2] = {-1, -1};
    for (int y = 0; y < dh; y++) {
        int want[2] = {yi0[y], yi1[y]};
        PIXELS_ROWS_SHIFT(D, have, want[0]);
        for (int k = 0; k < 2; k++) {
            if (have[k] == want[k]) continue;
            const uint8_t *S = src + (size_t)want[k] * sw * 3;
            int *o = D[k];
            for (int x = 0; x < dw; x++) {
                const uint8_t *p = S + xi0[x] * 3, *q = S + xi1[x] * 3;
                for (int c = 0; c < 3; c++) o[3 * x + c] = p[c] * xa0[x] + q[c] * xa1[x];
            }
            have[k] = want[k];
        }
        int b0 = ya0[y], b1 = ya1[y];
        uint8_t *d = dst + y * dstride;
        for (int i = 0; i < dw * 3; i++) {
            int v = ((((D[0][i] >> 4) * b0) >> 16) + (((D[1][i] >> 4) * b1) >> 16) + 2) >> 2;
            d[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    free(rows);
    free(xi0);
    free(yi0);
}

void image_resize_into(const uint8_t *src, int sh, int sw, uint8_t *dst, size_t dstride, int dh,
                       int dw) {
    if (sh != dh || sw != dw) {
#if PIXELS_HAVE_AVX2
        /* the AVX-512 level too: the AVX2 kernel's shuffles from one window beat a 16-lane gather
         * per block (0.25 against 0.38-0.41 ms per 640 image on the Zen 4, make bench-loader-simd)
         */
        if (g_level == PIXELS_AVX2 || g_level == PIXELS_AVX512) {
            pixels_resize_avx2(src, sh, sw, dst, dstride, dh, dw);
            return;
        }
#endif
    }
    image_resize_into_ref(src, sh, sw, dst, dstride, dh, dw);
}

void image_resize_bilinear(const uint8_t *src, int sh, int sw, uint8_t *dst, int dh, int dw) {
    image_resize_into(src, sh, sw, dst, (size_t)dw * 3, dh, dw);
}

/* ---- canvas -----------------------------------------------------------------------------------
 */

void canvas_draw(const pixel_canvas *c, uint8_t *out) {
    memset(out, PIXELS_PAD, (size_t)c->h * c->w * 3);
    for (int k = 0; k < c->npieces; k++) {
        const canvas_piece *p = &c->piece[k];
        for (int y = 0; y < p->h; y++)
            memcpy(out + ((size_t)(p->y + y) * c->w + p->x) * 3, p->rgb + (size_t)y * p->stride,
                   (size_t)p->w * 3);
    }
}

void pixels_canvas_row(const pixel_canvas *c, int y, uint8_t *row, int from, int to) {
    /* the pieces on this row, left to right (at most 4), and pad in the gaps */
    const canvas_piece *on[4];
    int n = 0;
    for (int k = 0; y >= 0 && y < c->h && k < c->npieces; k++) {
        const canvas_piece *p = &c->piece[k];
        if (y < p->y || y >= p->y + p->h) continue;
        int i = n++;
        for (; i > 0 && on[i - 1]->x > p->x; i--) on[i] = on[i - 1];
        on[i] = p;
    }
    int x = from; /* in extended columns: canvas column x - 1 */
    for (int i = 0; i < n && x < to; i++) {
        int a = on[i]->x + 1, b = a + on[i]->w;
        if (b <= x) continue;
        if (a > x) {
            int e = a < to ? a : to;
            memset(row + (size_t)x * 3, PIXELS_PAD, (size_t)(e - x) * 3);
            x = e;
        }
        int e = b < to ? b : to;
        if (e > x)
            memcpy(row + (size_t)x * 3,
                   on[i]->rgb + (size_t)(y - on[i]->y) * on[i]->stride + (size_t)(x - a) * 3,
                   (size_t)(e - x) * 3);
        x = e > x ? e : x;
    }
    if (x < to) memset(row + (size_t)x * 3, PIXELS_PAD, (size_t)(to - x) * 3);
}

/* ---- warp -------------------------------------------------------------------------------------
 */

/* The per-pixel warp of a drawn canvas (sh x sw). */
static void warp_drawn(const uint8_t *src, int sh, int sw, uint8_t *dst, int oh, int ow,
                       const double mi[3][3], int projective) {
    const float pad = PIXELS_PAD;
    const float m[6] = {(float)mi[0][0], (float)mi[0][1], (float)mi[0][2],
                        (float)mi[1][0], (float)mi[1][1], (float)mi[1][2]};
    const size_t stride = (size_t)sw * 3;
    for (int y = 0; y < oh; y++) {
        uint8_t *d = dst + (size_t)y * ow * 3;
        const float bx = fmaf(m[1], (float)y, m[2]), by = fmaf(m[4], (float)y, m[5]);
        for (int x = 0; x < ow; x++, d += 3) {
            float sx, sy;
            if (projective) {
                double w = mi[2][0] * x + mi[2][1] * y + mi[2][2];
                if (w == 0.0) {
                    d[0] = d[1] = d[2] = PIXELS_PAD;
                    continue;
                }
                sx = (float)((mi[0][0] * x + mi[0][1] * y + mi[0][2]) / w);
                sy = (float)((mi[1][0] * x + mi[1][1] * y + mi[1][2]) / w);
            } else {
                sx = fmaf(m[0], (float)x, bx);
                sy = fmaf(m[3], (float)x, by);
            }
            if (!(sx > -1.f && sy > -1.f && sx < (float)sw && sy < (float)sh)) {
                d[0] = d[1] = d[2] = PIXELS_PAD;
                continue;
            }
            int x0 = (int)(sx + 1.f) - 1, y0 = (int)(sy + 1.f) - 1; /* floor, as sx > -1 */
            float a = sx - (float)x0, b = sy - (float)y0;
            if (x0 >= 0 && y0 >= 0 && x0 + 1 < sw && y0 + 1 < sh) {
                const uint8_t *p = src + (size_t)y0 * stride + (size_t)x0 * 3, *q = p + stride;
                for (int k = 0; k < 3; k++) {
                    float v0 = fmaf(a, (float)(p[3 + k] - p[k]), (float)p[k]);
                    float v1 = fmaf(a, (float)(q[3 + k] - q[k]), (float)q[k]);
                    d[k] = pixels_sat_u8(fmaf(b, v1 - v0, v0));
                }
            } else {
                int in00 = x0 >= 0 && y0 >= 0, in01 = x0 + 1 < sw && y0 >= 0;
                int in10 = x0 >= 0 && y0 + 1 < sh, in11 = x0 + 1 < sw && y0 + 1 < sh;
                const uint8_t *p = src + (ptrdiff_t)y0 * (ptrdiff_t)stride + (ptrdiff_t)x0 * 3;
                for (int k = 0; k < 3; k++) {
                    float p00 = in00 ? p[k] : pad, p01 = in01 ? p[3 + k] : pad;
                    float p10 = in10 ? p[stride + k] : pad, p11 = in11 ? p[stride + 3 + k] : pad;
                    float v0 = fmaf(a, p01 - p00, p00), v1 = fmaf(a, p11 - p10, p10);
                    d[k] = pixels_sat_u8(fmaf(b, v1 - v0, v0));
                }
            }
        }
    }
}

void image_warp_ref(const pixel_canvas *c, const double mi[3][3], int projective, uint8_t *dst,
                    int oh, int ow, int flip_lr, int flip_ud, const pixels_row_op *post) {
    uint8_t *drawn = xmalloc((size_t)c->h * c->w * 3);
    canvas_draw(c, drawn);
    warp_drawn(drawn, c->h, c->w, dst, oh, ow, mi, projective);
    free(drawn);
    if (flip_ud) image_flip_ud(dst, oh, ow);
    if (flip_lr) image_flip_lr(dst, oh, ow);
    for (int y = 0; post && y < oh; y++) post->fn(post->ctx, dst + (size_t)y * ow * 3, ow);
}

void image_warp(const pixel_canvas *c, const double mi[3][3], int projective, uint8_t *dst, int oh,
                int ow, int flip_lr, int flip_ud, const pixels_row_op *post) {
    const float m01 = (float)mi[0][1], m10 = (float)mi[1][0];
    if (!projective && m01 == 0.f && m10 == 0.f &&
        pixels_warp_separable(c, mi, dst, oh, ow, flip_lr, flip_ud, post) == 0)
        return;
    image_warp_ref(c, mi, projective, dst, oh, ow, flip_lr, flip_ud, post);
}

/* ---- HSV --------------------------------------------------------------------------------------
 */

void image_hsv_prepare(image_hsv_tables *t, double r_h, double r_s, double r_v) {
    /* OpenCV's 8-bit tables: S = diff * round(255 * 2^12 / V) >> 12, H likewise with 180/6. */
    t->sdiv[0] = t->hdiv[0] = 0;
    for (int i = 1; i < 256; i++) {
        t->sdiv[i] = (int)lrint((255 << 12) / (double)i);
        t->hdiv[i] = (int)lrint((180 << 12) / (6.0 * i));
    }
    for (int i = 0; i < 256; i++) {
        double hh = fmod(i + r_h * 180.0, 180.0);
        if (hh < 0) hh += 180.0;
        t->lut_h[i] = (uint8_t)hh; /* truncation, as numpy's astype(uint8) */
        t->lut_s[i] = (uint8_t)fmin(fmax(i * (r_s + 1), 0.0), 255.0);
        t->lut_v[i] = (uint8_t)fmin(fmax(i * (r_v + 1), 0.0), 255.0);
    }
    t->lut_s[0] = 0;
    for (int i = 0; i < 256; i++) {
        int ql3 = (t->sdiv[i] & 4095) << 3, dl3 = (t->hdiv[i] & 4095) << 3;
        t->qh[i] = (uint8_t)(t->sdiv[i] >> 12), t->qlL[i] = (uint8_t)ql3;
        t->qlH[i] = (uint8_t)(ql3 >> 8);
        t->dh[i] = (uint8_t)(t->hdiv[i] >> 12), t->dlL[i] = (uint8_t)dl3;
        t->dlH[i] = (uint8_t)(dl3 >> 8);
        t->o0[i] = trunc_u8(t->lut_v[i] * (1.f / 255.f) * 255.f);
        t->sdiv_v[i] = t->sdiv[i] | t->lut_v[i] << 20;
    }
}

void image_hsv_apply_ref(const image_hsv_tables *t, uint8_t *rgb, size_t npix) {
    /* OpenCV's HSV->RGB per hue value: h*6/180 in float, wrapped into [0,6), split into sector
     * and fraction. Hue LUT values are < 180 but a float modulo can give exactly 180. */
    float hue_frac[256];
    uint8_t hue_sector[256];
    for (int i = 0; i < 256; i++) {
        float hf = i * (6.f / 180.f);
        while (hf >= 6.f) hf -= 6.f;
        int sector = (int)floorf(hf);
        hf -= sector;
        if ((unsigned)sector >= 6u) sector = 0, hf = 0.f;
        hue_frac[i] = hf;
        hue_sector[i] = (uint8_t)sector;
    }
    int lastR = -1, lastG = -1, lastB = -1;
    uint8_t last[3] = {0, 0, 0};
    for (size_t i = 0; i < npix; i++) {
        uint8_t *px = rgb + 3 * i;
        int R = px[0], G = px[1], B = px[2];
        if (R == lastR && G == lastG && B == lastB) { /* runs of one colour: pads, flat areas */
            px[0] = last[0], px[1] = last[1], px[2] = last[2];
            continue;
        }
        lastR = R, lastG = G, lastB = B;
        int v = R > G ? R : G;
        v = v > B ? v : B;
        int vmin = R < G ? R : G;
        vmin = vmin < B ? vmin : B;
        int diff = v - vmin;
        int vr = v == R ? -1 : 0, vg = v == G ? -1 : 0;
        int s = (diff * t->sdiv[v] + (1 << 11)) >> 12;
        int h = (vr & (G - B)) + (~vr & ((vg & (B - R + 2 * diff)) + (~vg & (R - G + 4 * diff))));
        h = (h * t->hdiv[diff] + (1 << 11)) >> 12;
        h += h < 0 ? 180 : 0;

        int hh = t->lut_h[h];
        float hf = hue_frac[hh], sf = t->lut_s[s] * (1.f / 255.f);
        float vf = t->lut_v[v] * (1.f / 255.f);
        float r, g, b;
        if (sf == 0.f) {
            b = g = r = vf;
        } else {
            float t0 = vf, t1 = vf * (1.f - sf), t2 = vf * (1.f - sf * hf);
            float t3 = vf * (1.f - sf * (1.f - hf));
            switch (hue_sector[hh]) { /* OpenCV's sector table, as (b, g, r) */
            case 0:
                b = t1, g = t3, r = t0;
                break;
            case 1:
                b = t1, g = t0, r = t2;
                break;
            case 2:
                b = t3, g = t0, r = t1;
                break;
            case 3:
                b = t0, g = t2, r = t1;
                break;
            case 4:
                b = t0, g = t1, r = t3;
                break;
            default:
                b = t2, g = t1, r = t0;
                break;
            }
        }
        px[0] = last[0] = trunc_u8(r * 255.f);
        px[1] = last[1] = trunc_u8(g * 255.f);
        px[2] = last[2] = trunc_u8(b * 255.f);
    }
}

void image_hsv_apply(const image_hsv_tables *t, uint8_t *rgb, size_t npix) {
#if PIXELS_HAVE_AVX512
    if (g_level == PIXELS_AVX512) {
        pixels_hsv_avx512(t, rgb, npix);
        return;
    }
#endif
#if PIXELS_HAVE_AVX2
    if (g_level == PIXELS_AVX2) {
        pixels_hsv_avx2(t, rgb, npix);
        return;
    }
#endif
    image_hsv_apply_ref(t, rgb, npix);
}

void image_hsv(uint8_t *rgb, size_t npix, double r_h, double r_s, double r_v) {
    image_hsv_tables t;
    image_hsv_prepare(&t, r_h, r_s, r_v);
    image_hsv_apply(&t, rgb, npix);
}

void image_hsv_ref(uint8_t *rgb, size_t npix, double r_h, double r_s, double r_v) {
    image_hsv_tables t;
    image_hsv_prepare(&t, r_h, r_s, r_v);
    image_hsv_apply_ref(&t, rgb, npix);
}

/* ---- flips ------------------------------------------------------------------------------------
 */

void image_flip_lr(uint8_t *rgb, int h, int w) {
    for (int y = 0; y < h; y++) {
        uint8_t *row = rgb + (size_t)y * w * 3;
        for (int a = 0, b = w - 1; a < b; a++, b--)
            for (int k = 0; k < 3; k++) {
                uint8_t t = row[3 * a + k];
                row[3 * a + k] = row[3 * b + k];
                row[3 * b + k] = t;
            }
    }
}

void image_flip_ud(uint8_t *rgb, int h, int w) {
    size_t rowb = (size_t)w * 3;
    uint8_t *tmp = xmalloc(rowb);
    for (int a = 0, b = h - 1; a < b; a++, b--) {
        memcpy(tmp, rgb + a * rowb, rowb);
        memcpy(rgb + a * rowb, rgb + b * rowb, rowb);
        memcpy(rgb + b * rowb, tmp, rowb);
    }
    free(tmp);
}
