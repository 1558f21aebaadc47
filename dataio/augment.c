#include "dataio/augment.h"

#include "common/log.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Inside the pipeline, labels are [n][5] = class, x1, y1, x2, y2 in pixels of the current image;
 * they become normalised cx, cy, w, h only at the end (as Ultralytics' Format does). */

augment_params augment_defaults(void) {
    return (augment_params){.mosaic = 1.0,
                            .degrees = 0.0,
                            .translate = 0.1,
                            .scale = 0.5,
                            .shear = 0.0,
                            .perspective = 0.0,
                            .flipud = 0.0,
                            .fliplr = 0.5,
                            .hsv_h = 0.015,
                            .hsv_s = 0.7,
                            .hsv_v = 0.4};
}

void augment_load_size(int h0, int w0, int imgsz, int *h, int *w) {
    int longest = h0 > w0 ? h0 : w0;
    if (longest == imgsz) {
        *h = h0, *w = w0;
        return;
    }
    double r = (double)imgsz / longest;
    int nh = (int)ceil(h0 * r), nw = (int)ceil(w0 * r);
    *h = nh < imgsz ? nh : imgsz;
    *w = nw < imgsz ? nw : imgsz;
    if (*h < 1) *h = 1;
    if (*w < 1) *w = 1;
}

/* Round half to even (as OpenCV's saturate_cast) without a libm call: adding 1.5 * 2^23 leaves
 * no fraction bits, so the FPU rounds in its default nearest-even mode. */
static inline uint8_t sat_u8(float v) {
    if (v <= 0.f) return 0;
    if (v >= 255.f) return 255;
    float t = v + 0x1.8p23f; /* exact without -ffast-math, which this file must not use */
    return (uint8_t)(int)(t - 0x1.8p23f);
}

/* Per output column (or row) of a linear resize: source index, its clamped neighbour, and the
 * two weights in 11-bit fixed point, as OpenCV computes them (float fraction, edge clamp). */
static void resize_coefs(int dn, int sn, int *i0, int *i1, int *a0, int *a1) {
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

/* Bilinear resize into a destination with its own row stride (bytes), so the letterbox can write
 * straight into its padded canvas. OpenCV's INTER_LINEAR for 8-bit images: 11-bit weights, a
 * horizontal pass into integers, then the vertical blend as its SIMD path does it,
 * (((D0 >> 4) * b0) >> 16) + (((D1 >> 4) * b1) >> 16) + 2 >> 2. Checked against cv2.resize 5.0:
 * identical for downscales, within 1 level on ~0.1% of pixels for upscales. */
static void resize_strided(const uint8_t *src, int sh, int sw, uint8_t *dst, size_t dstride, int dh,
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
    resize_coefs(dw, sw, xi0, xi1, xa0, xa1);
    resize_coefs(dh, sh, yi0, yi1, ya0, ya1);
    /* the two horizontally resized source rows in use; the lower one is reused as the next
     * upper one */
    int *rows = xmalloc(sizeof(int) * 2 * (size_t)dw * 3);
    int *D[2] = {rows, rows + (size_t)dw * 3}, have[2] = {-1, -1};
    for (int y = 0; y < dh; y++) {
        int want[2] = {yi0[y], yi1[y]};
        if (have[0] != want[0] && have[1] == want[0]) {
            int *t = D[0];
            D[0] = D[1], D[1] = t;
            have[0] = have[1], have[1] = -1;
        }
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

void image_resize_bilinear(const uint8_t *src, int sh, int sw, uint8_t *dst, int dh, int dw) {
    resize_strided(src, sh, sw, dst, (size_t)dw * 3, dh, dw);
}

/* OpenCV 5's 8-bit HSV->RGB truncates where 4.x rounded (checked against cv2 5.0). */
static inline uint8_t trunc_u8(float v) {
    if (v <= 0.f) return 0;
    if (v >= 255.f) return 255;
    return (uint8_t)(int)v;
}

/* ---- mosaic ------------------------------------------------------------------------------- */

int augment_draw_mosaic(rng *r, const augment_params *p, int pool_size, int partners[3]) {
    /* Ultralytics skips when U(0,1) > p; "<" keeps p = 0 exactly off. */
    if (!(rng_uniform(r) < p->mosaic)) return 0;
    for (int i = 0; i < 3; i++) partners[i] = rng_int(r, pool_size);
    return 1;
}

/* Adds an image's normalised labels as pixel xyxy shifted by (padw, padh). */
static int add_labels_px(const aug_image *im, float padw, float padh, float *lab, int n) {
    for (int i = 0; i < im->nlabels; i++) {
        const float *l = im->labels + 5 * i;
        float *o = lab + 5 * n++;
        o[0] = l[0];
        o[1] = (l[1] - l[3] / 2) * im->w + padw;
        o[2] = (l[2] - l[4] / 2) * im->h + padh;
        o[3] = (l[1] + l[3] / 2) * im->w + padw;
        o[4] = (l[2] + l[4] / 2) * im->h + padh;
    }
    return n;
}

static inline float clampf(float v, float lo, float hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

/* 4 images around a random centre on a 2s x 2s canvas of 114, one corner of each at the centre
 * (top-left, top-right, bottom-left, bottom-right); labels shifted, clipped to the canvas, and
 * zero-area boxes dropped. */
static int mosaic4(int s, rng *r, const aug_image *imgs, uint8_t *canvas, float *lab) {
    int S = 2 * s;
    memset(canvas, AUG_PAD_VALUE, (size_t)S * S * 3);
    int b = -((s + 1) / 2); /* Python's -s // 2 */
    int yc = (int)rng_range(r, -b, S + b);
    int xc = (int)rng_range(r, -b, S + b);
    int n = 0;
    for (int i = 0; i < 4; i++) {
        const aug_image *im = &imgs[i];
        int h = im->h, w = im->w;
        int x1a, y1a, x2a, y2a, x1b, y1b, x2b, y2b;
        if (i == 0) {
            x1a = xc - w > 0 ? xc - w : 0, y1a = yc - h > 0 ? yc - h : 0, x2a = xc, y2a = yc;
            x1b = w - (x2a - x1a), y1b = h - (y2a - y1a), x2b = w, y2b = h;
        } else if (i == 1) {
            x1a = xc, y1a = yc - h > 0 ? yc - h : 0, x2a = xc + w < S ? xc + w : S, y2a = yc;
            x1b = 0, y1b = h - (y2a - y1a), x2b = w < x2a - x1a ? w : x2a - x1a, y2b = h;
        } else if (i == 2) {
            x1a = xc - w > 0 ? xc - w : 0, y1a = yc, x2a = xc, y2a = yc + h < S ? yc + h : S;
            x1b = w - (x2a - x1a), y1b = 0, x2b = w, y2b = h < y2a - y1a ? h : y2a - y1a;
        } else {
            x1a = xc, y1a = yc, x2a = xc + w < S ? xc + w : S, y2a = yc + h < S ? yc + h : S;
            x1b = 0, y1b = 0, x2b = w < x2a - x1a ? w : x2a - x1a;
            y2b = h < y2a - y1a ? h : y2a - y1a;
        }
        int cw = x2b - x1b, chh = y2b - y1b;
        for (int y = 0; y < chh && cw > 0; y++)
            memcpy(canvas + ((size_t)(y1a + y) * S + x1a) * 3,
                   im->rgb + ((size_t)(y1b + y) * w + x1b) * 3, (size_t)cw * 3);
        n = add_labels_px(im, (float)(x1a - x1b), (float)(y1a - y1b), lab, n);
    }
    int kept = 0;
    for (int i = 0; i < n; i++) {
        float *l = lab + 5 * i;
        for (int k = 1; k <= 4; k++) l[k] = clampf(l[k], 0.f, (float)S);
        if ((l[3] - l[1]) * (l[4] - l[2]) > 0) memmove(lab + 5 * kept++, l, 5 * sizeof(float));
    }
    return kept;
}

/* ---- letterbox ---------------------------------------------------------------------------- */

/* Pixel-xyxy labels; returns count. */
static int letterbox_core(const aug_image *img, int oh, int ow, int scaleup, uint8_t *out,
                          float *lab, float *r_out, int *pad_x, int *pad_y) {
    double r = fmin((double)oh / img->h, (double)ow / img->w);
    if (!scaleup && r > 1.0) r = 1.0;
    int nw = (int)rint(img->w * r), nh = (int)rint(img->h * r); /* round half to even */
    if (nw < 1) nw = 1;
    if (nh < 1) nh = 1;
    double dw = (ow - nw) / 2.0, dh = (oh - nh) / 2.0;
    int top = (int)rint(dh - 0.1), left = (int)rint(dw - 0.1);
    memset(out, AUG_PAD_VALUE, (size_t)oh * ow * 3);
    resize_strided(img->rgb, img->h, img->w, out + ((size_t)top * ow + left) * 3, (size_t)ow * 3,
                   nh, nw);
    int n = 0;
    for (int i = 0; i < img->nlabels; i++) {
        const float *l = img->labels + 5 * i;
        float *o = lab + 5 * n++;
        o[0] = l[0];
        o[1] = (float)((l[1] - l[3] / 2) * img->w * r + left);
        o[2] = (float)((l[2] - l[4] / 2) * img->h * r + top);
        o[3] = (float)((l[1] + l[3] / 2) * img->w * r + left);
        o[4] = (float)((l[2] + l[4] / 2) * img->h * r + top);
    }
    if (r_out) *r_out = (float)r;
    if (pad_x) *pad_x = left;
    if (pad_y) *pad_y = top;
    return n;
}

/* Pixel xyxy -> normalised cx, cy, w, h, in place. */
static void normalise_labels(float *lab, int n, int h, int w) {
    for (int i = 0; i < n; i++) {
        float *l = lab + 5 * i;
        float x1 = l[1], y1 = l[2], x2 = l[3], y2 = l[4];
        l[1] = (x1 + x2) / 2 / w;
        l[2] = (y1 + y2) / 2 / h;
        l[3] = (x2 - x1) / w;
        l[4] = (y2 - y1) / h;
    }
}

int augment_letterbox(const aug_image *img, int out_h, int out_w, int scaleup, uint8_t *out,
                      float *out_labels, float *r_out, int *pad_x, int *pad_y) {
    int n = letterbox_core(img, out_h, out_w, scaleup, out, out_labels, r_out, pad_x, pad_y);
    normalise_labels(out_labels, n, out_h, out_w);
    return n;
}

int augment_val(const aug_image *img, int orig_h, int orig_w, int imgsz, uint8_t *out,
                float *out_labels, letterbox_info *info) {
    return augment_val_shape(img, orig_h, orig_w, imgsz, imgsz, imgsz, out, out_labels, info);
}

int augment_val_shape(const aug_image *img, int orig_h, int orig_w, int imgsz, int out_h, int out_w,
                      uint8_t *out, float *out_labels, letterbox_info *info) {
    int th, tw;
    augment_load_size(orig_h, orig_w, imgsz, &th, &tw);
    aug_image loaded = *img;
    uint8_t *tmp = NULL;
    if (th != img->h || tw != img->w) {
        tmp = xmalloc((size_t)th * tw * 3);
        image_resize_bilinear(img->rgb, img->h, img->w, tmp, th, tw);
        loaded.rgb = tmp, loaded.h = th, loaded.w = tw;
    }
    float r;
    int px, py;
    int n = augment_letterbox(&loaded, out_h, out_w, 0, out, out_labels, &r, &px, &py);
    free(tmp);
    if (info) {
        info->orig_h = orig_h, info->orig_w = orig_w;
        info->gain_x = (float)tw / orig_w * r;
        info->gain_y = (float)th / orig_h * r;
        info->pad_x = (float)px, info->pad_y = (float)py;
    }
    return n;
}

/* ---- random perspective ------------------------------------------------------------------- */

static void mat3_mul(double out[3][3], const double a[3][3], const double b[3][3]) {
    double t[3][3];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            t[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j];
    memcpy(out, t, sizeof(t));
}

static int mat3_inv(double o[3][3], const double m[3][3]) {
    double c00 = m[1][1] * m[2][2] - m[1][2] * m[2][1];
    double c01 = m[1][2] * m[2][0] - m[1][0] * m[2][2];
    double c02 = m[1][0] * m[2][1] - m[1][1] * m[2][0];
    double det = m[0][0] * c00 + m[0][1] * c01 + m[0][2] * c02;
    if (fabs(det) < 1e-300) return -1;
    double id = 1.0 / det;
    o[0][0] = c00 * id;
    o[0][1] = (m[0][2] * m[2][1] - m[0][1] * m[2][2]) * id;
    o[0][2] = (m[0][1] * m[1][2] - m[0][2] * m[1][1]) * id;
    o[1][0] = c01 * id;
    o[1][1] = (m[0][0] * m[2][2] - m[0][2] * m[2][0]) * id;
    o[1][2] = (m[0][2] * m[1][0] - m[0][0] * m[1][2]) * id;
    o[2][0] = c02 * id;
    o[2][1] = (m[0][1] * m[2][0] - m[0][0] * m[2][1]) * id;
    o[2][2] = (m[0][0] * m[1][1] - m[0][1] * m[1][0]) * id;
    return 0;
}

/* The inverse of an affine matrix as OpenCV's invertAffineTransform computes it (warpAffine
 * inverts its matrix this way), so the fixed-point map below rounds the same. */
static int affine_inverse(double o[3][3], const double m[3][3]) {
    double d = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    if (d == 0.0) return -1;
    d = 1.0 / d;
    double a11 = m[1][1] * d, a22 = m[0][0] * d, a12 = -m[0][1] * d, a21 = -m[1][0] * d;
    o[0][0] = a11, o[0][1] = a12, o[0][2] = -a11 * m[0][2] - a12 * m[1][2];
    o[1][0] = a21, o[1][1] = a22, o[1][2] = -a21 * m[0][2] - a22 * m[1][2];
    o[2][0] = o[2][1] = 0, o[2][2] = 1;
    return 0;
}

/* dst(x, y) = src(Minv (x, y, 1)), bilinear, neighbours outside the source read as 114 (OpenCV's
 * BORDER_CONSTANT). As OpenCV 5's warpAffine does it: source coordinates in float (fma), the
 * interpolation as two lerps along x then one along y, rounded to nearest even. Checked against
 * cv2.warpAffine 5.0: within 1 level, on about 0.01% of pixels. Perspective maps divide by w in
 * double. */
static void warp(const uint8_t *src, int sh, int sw, uint8_t *dst, int oh, int ow,
                 const double mi[3][3], int projective) {
    const float pad = AUG_PAD_VALUE;
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
                    d[0] = d[1] = d[2] = AUG_PAD_VALUE;
                    continue;
                }
                sx = (float)((mi[0][0] * x + mi[0][1] * y + mi[0][2]) / w);
                sy = (float)((mi[1][0] * x + mi[1][1] * y + mi[1][2]) / w);
            } else {
                sx = fmaf(m[0], (float)x, bx);
                sy = fmaf(m[3], (float)x, by);
            }
            if (!(sx > -1.f && sy > -1.f && sx < (float)sw && sy < (float)sh)) {
                d[0] = d[1] = d[2] = AUG_PAD_VALUE;
                continue;
            }
            int x0 = (int)(sx + 1.f) - 1, y0 = (int)(sy + 1.f) - 1; /* floor, as sx > -1 */
            float a = sx - (float)x0, b = sy - (float)y0;
            if (x0 >= 0 && y0 >= 0 && x0 + 1 < sw && y0 + 1 < sh) {
                const uint8_t *p = src + (size_t)y0 * stride + (size_t)x0 * 3, *q = p + stride;
                for (int k = 0; k < 3; k++) {
                    float v0 = fmaf(a, (float)(p[3 + k] - p[k]), (float)p[k]);
                    float v1 = fmaf(a, (float)(q[3 + k] - q[k]), (float)q[k]);
                    d[k] = sat_u8(fmaf(b, v1 - v0, v0));
                }
            } else {
                int in00 = x0 >= 0 && y0 >= 0, in01 = x0 + 1 < sw && y0 >= 0;
                int in10 = x0 >= 0 && y0 + 1 < sh, in11 = x0 + 1 < sw && y0 + 1 < sh;
                const uint8_t *p = src + (ptrdiff_t)y0 * (ptrdiff_t)stride + (ptrdiff_t)x0 * 3;
                for (int k = 0; k < 3; k++) {
                    float p00 = in00 ? p[k] : pad, p01 = in01 ? p[3 + k] : pad;
                    float p10 = in10 ? p[stride + k] : pad, p11 = in11 ? p[stride + 3 + k] : pad;
                    float v0 = fmaf(a, p01 - p00, p00), v1 = fmaf(a, p11 - p10, p10);
                    d[k] = sat_u8(fmaf(b, v1 - v0, v0));
                }
            }
        }
    }
}

int augment_box_candidate(const float box1[4], const float box2[4]) {
    const double eps = 1e-16;
    double w1 = box1[2] - box1[0], h1 = box1[3] - box1[1];
    double w2 = box2[2] - box2[0], h2 = box2[3] - box2[1];
    double ar = fmax(w2 / (h2 + eps), h2 / (w2 + eps));
    return w2 > 2 && h2 > 2 && w2 * h2 / (w1 * h1 + eps) > 0.1 && ar < 100;
}

/* Ultralytics' RandomPerspective: M = T S R P C, warp src (sh x sw) to (sh + 2 border) x
 * (sw + 2 border), boxes through the corners, clipped, candidate-filtered. Draw order: perspective
 * x, y, angle, scale, shear x, y, translate x, y. */
/* Warps src (sh x sw) into out (oh x ow) about src's centre. */
static int random_perspective(const augment_params *p, rng *r, const uint8_t *src, int sh, int sw,
                              int oh, int ow, uint8_t *out, float *lab, int n) {
    int resized = oh != sh || ow != sw;
    const double deg = M_PI / 180.0;
    double C[3][3] = {{1, 0, -sw / 2.0}, {0, 1, -sh / 2.0}, {0, 0, 1}};
    double P[3][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
    P[2][0] = rng_range(r, -p->perspective, p->perspective);
    P[2][1] = rng_range(r, -p->perspective, p->perspective);
    double a = rng_range(r, -p->degrees, p->degrees);
    double s = rng_range(r, 1 - p->scale, 1 + p->scale);
    double al = s * cos(a * deg), be = s * sin(a * deg); /* OpenCV getRotationMatrix2D */
    double R[3][3] = {{al, be, 0}, {-be, al, 0}, {0, 0, 1}};
    double S[3][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
    S[0][1] = tan(rng_range(r, -p->shear, p->shear) * deg);
    S[1][0] = tan(rng_range(r, -p->shear, p->shear) * deg);
    double T[3][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
    T[0][2] = rng_range(r, 0.5 - p->translate, 0.5 + p->translate) * ow;
    T[1][2] = rng_range(r, 0.5 - p->translate, 0.5 + p->translate) * oh;
    double M[3][3];
    mat3_mul(M, T, S);
    mat3_mul(M, M, R);
    mat3_mul(M, M, P);
    mat3_mul(M, M, C);
    int projective = p->perspective != 0.0;

    int identity = 1;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) identity &= M[i][j] == (i == j ? 1.0 : 0.0);
    double mi[3][3];
    int inv_ok = projective ? mat3_inv(mi, M) : affine_inverse(mi, M);
    if ((resized || !identity) && inv_ok == 0) {
        warp(src, sh, sw, out, oh, ow, mi, projective);
    } else if (!resized) {
        memcpy(out, src, (size_t)oh * ow * 3);
    } else { /* singular matrix: nothing maps; an empty image */
        memset(out, AUG_PAD_VALUE, (size_t)oh * ow * 3);
        return 0;
    }

    int kept = 0;
    for (int i = 0; i < n; i++) {
        const float *l = lab + 5 * i;
        double cx[4] = {l[1], l[3], l[1], l[3]}, cy[4] = {l[2], l[4], l[4], l[2]};
        double x1 = INFINITY, y1 = INFINITY, x2 = -INFINITY, y2 = -INFINITY;
        for (int k = 0; k < 4; k++) {
            double X = M[0][0] * cx[k] + M[0][1] * cy[k] + M[0][2];
            double Y = M[1][0] * cx[k] + M[1][1] * cy[k] + M[1][2];
            if (projective) {
                double W = M[2][0] * cx[k] + M[2][1] * cy[k] + M[2][2];
                X /= W, Y /= W;
            }
            x1 = fmin(x1, X), x2 = fmax(x2, X), y1 = fmin(y1, Y), y2 = fmax(y2, Y);
        }
        float box2[4] = {clampf((float)x1, 0, (float)ow), clampf((float)y1, 0, (float)oh),
                         clampf((float)x2, 0, (float)ow), clampf((float)y2, 0, (float)oh)};
        float box1[4] = {(float)(l[1] * s), (float)(l[2] * s), (float)(l[3] * s),
                         (float)(l[4] * s)};
        if (augment_box_candidate(box1, box2)) {
            float *o = lab + 5 * kept++;
            o[0] = l[0];
            memcpy(o + 1, box2, sizeof(box2));
        }
    }
    return kept;
}

/* ---- HSV ---------------------------------------------------------------------------------- */

void augment_hsv_apply(uint8_t *rgb, size_t npix, double r_h, double r_s, double r_v) {
    /* OpenCV's 8-bit tables: S = diff * round(255 * 2^12 / V) >> 12, H likewise with 180/6. */
    int sdiv[256], hdiv[256];
    sdiv[0] = hdiv[0] = 0;
    for (int i = 1; i < 256; i++) {
        sdiv[i] = (int)lrint((255 << 12) / (double)i);
        hdiv[i] = (int)lrint((180 << 12) / (6.0 * i));
    }
    uint8_t lut_h[256], lut_s[256], lut_v[256];
    for (int i = 0; i < 256; i++) {
        double hh = fmod(i + r_h * 180.0, 180.0);
        if (hh < 0) hh += 180.0;
        lut_h[i] = (uint8_t)hh; /* truncation, as numpy's astype(uint8) */
        lut_s[i] = (uint8_t)fmin(fmax(i * (r_s + 1), 0.0), 255.0);
        lut_v[i] = (uint8_t)fmin(fmax(i * (r_v + 1), 0.0), 255.0);
    }
    lut_s[0] = 0;
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
        int s = (diff * sdiv[v] + (1 << 11)) >> 12;
        int h = (vr & (G - B)) + (~vr & ((vg & (B - R + 2 * diff)) + (~vg & (R - G + 4 * diff))));
        h = (h * hdiv[diff] + (1 << 11)) >> 12;
        h += h < 0 ? 180 : 0;

        int hh = lut_h[h];
        float hf = hue_frac[hh], sf = lut_s[s] * (1.f / 255.f), vf = lut_v[v] * (1.f / 255.f);
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

/* ---- flips -------------------------------------------------------------------------------- */

void augment_fliplr(uint8_t *rgb, int h, int w, float *labels, int n) {
    for (int y = 0; y < h; y++) {
        uint8_t *row = rgb + (size_t)y * w * 3;
        for (int a = 0, b = w - 1; a < b; a++, b--)
            for (int k = 0; k < 3; k++) {
                uint8_t t = row[3 * a + k];
                row[3 * a + k] = row[3 * b + k];
                row[3 * b + k] = t;
            }
    }
    for (int i = 0; i < n; i++) labels[5 * i + 1] = 1.f - labels[5 * i + 1];
}

void augment_flipud(uint8_t *rgb, int h, int w, float *labels, int n) {
    size_t rowb = (size_t)w * 3;
    uint8_t *tmp = xmalloc(rowb);
    for (int a = 0, b = h - 1; a < b; a++, b--) {
        memcpy(tmp, rgb + a * rowb, rowb);
        memcpy(rgb + a * rowb, rgb + b * rowb, rowb);
        memcpy(rgb + b * rowb, tmp, rowb);
    }
    free(tmp);
    for (int i = 0; i < n; i++) labels[5 * i + 2] = 1.f - labels[5 * i + 2];
}

/* ---- the training pipeline ---------------------------------------------------------------- */

int augment_train(const augment_params *p, int imgsz, rng *r, int use_mosaic, const aug_image *imgs,
                  uint8_t *out, float *out_labels) {
    int s = imgsz, total = 0;
    if (s <= 0 || s % 2) FATAL("augment_train: imgsz %d must be even and positive", s);
    for (int i = 0; i < (use_mosaic ? 4 : 1); i++) total += imgs[i].nlabels;
    float *lab = xmalloc(sizeof(float) * 5 * (size_t)(total > 0 ? total : 1));
    int n;
    if (use_mosaic) { /* a 2s canvas warped into s x s (Ultralytics' border -s/2) */
        uint8_t *canvas = xmalloc((size_t)4 * s * s * 3);
        n = mosaic4(s, r, imgs, canvas, lab);
        n = random_perspective(p, r, canvas, 2 * s, 2 * s, s, s, out, lab, n);
        free(canvas);
    } else if (p->warp_from_centre) {
        /* 8.4.190: the load-size image itself, warped about its centre into s x s */
        const aug_image *im = &imgs[0];
        n = 0;
        for (int i = 0; i < im->nlabels; i++) {
            const float *l = im->labels + 5 * i;
            float *o = lab + 5 * n++;
            o[0] = l[0];
            o[1] = (l[1] - l[3] / 2) * (float)im->w;
            o[2] = (l[2] - l[4] / 2) * (float)im->h;
            o[3] = (l[1] + l[3] / 2) * (float)im->w;
            o[4] = (l[2] + l[4] / 2) * (float)im->h;
        }
        n = random_perspective(p, r, im->rgb, im->h, im->w, s, s, out, lab, n);
    } else {
        /* 8.4.33 letterboxes a non-mosaic training sample to imgsz (scale-up allowed), then warps
         * it (border 0): with an odd padding the image sits half a pixel off the centre. */
        uint8_t *canvas = xmalloc((size_t)s * s * 3);
        n = letterbox_core(&imgs[0], s, s, 1, canvas, lab, NULL, NULL, NULL);
        n = random_perspective(p, r, canvas, s, s, s, s, out, lab, n);
        free(canvas);
    }

    /* Three gains are drawn whatever their values (numpy draws them in Ultralytics). */
    double rh = rng_range(r, -1, 1) * p->hsv_h;
    double rs = rng_range(r, -1, 1) * p->hsv_s;
    double rv = rng_range(r, -1, 1) * p->hsv_v;
    if (p->hsv_h != 0 || p->hsv_s != 0 || p->hsv_v != 0)
        augment_hsv_apply(out, (size_t)s * s, rh, rs, rv);

    normalise_labels(lab, n, s, s);
    int ud = rng_uniform(r) < p->flipud;
    int lr = rng_uniform(r) < p->fliplr;
    if (ud) augment_flipud(out, s, s, lab, n);
    if (lr) augment_fliplr(out, s, s, lab, n);
    memcpy(out_labels, lab, sizeof(float) * 5 * (size_t)n);
    free(lab);
    return n;
}

void letterbox_undo_box(const letterbox_info *lb, const float in[4], float out[4]) {
    float W = (float)lb->orig_w, H = (float)lb->orig_h;
    float x1 = (in[0] - lb->pad_x) / lb->gain_x, y1 = (in[1] - lb->pad_y) / lb->gain_y;
    float x2 = (in[2] - lb->pad_x) / lb->gain_x, y2 = (in[3] - lb->pad_y) / lb->gain_y;
    out[0] = clampf(x1, 0, W), out[1] = clampf(y1, 0, H);
    out[2] = clampf(x2, 0, W), out[3] = clampf(y2, 0, H);
}
