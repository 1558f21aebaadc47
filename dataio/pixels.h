/* The pixel kernels of the augmentation pipeline on RGB uint8 HWC images: OpenCV's 8-bit
 * INTER_LINEAR resize, its bilinear affine/perspective warp with a constant border, its 8-bit
 * HSV round trip with Ultralytics' lookup tables, and flips.
 *
 * Each kernel has a portable scalar version (the *_ref functions: the definition of the result)
 * and vectorised ones: AVX-512 (BW, VL, VBMI; built when the compiler targets it, as the
 * Makefile's -march=native does on such a CPU) and AVX2 + FMA (built on every x86-64 machine).
 * The plain names run the level in force (pixels_simd). All give identical bytes; tests check
 * it, and scripts/opencv_check compares them with OpenCV. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define PIXELS_PAD 114 /* Ultralytics' border and letterbox colour */

/* What the plain names run. The default is the best the build targets: AVX-512 when compiled
 * for it, else AVX2 when compiled for AVX2 + FMA (-march=native on such a CPU), else scalar. */
typedef enum pixels_level { PIXELS_SCALAR, PIXELS_AVX2, PIXELS_AVX512 } pixels_level;
pixels_level pixels_simd(void);
const char *pixels_simd_name(pixels_level level); /* "scalar", "avx2", "avx512" */
/* "scalar" | "avx2" | "avx512" -> level; -1 for anything else. */
int pixels_simd_parse(const char *name);
/* Forces a level for the whole process (tests, benchmarks; call it before any pixel work
 * starts): 0, or -1 with one line in err when this build has no kernels of that level or this
 * CPU lacks its instructions. */
int pixels_set_simd(pixels_level level, char *err, size_t errlen);

/* Bilinear resize as OpenCV's INTER_LINEAR does it for 8-bit images (half-pixel centres, edge
 * clamp, 11-bit fixed-point weights, its SIMD path's rounding). dst (dh x dw) has its own row
 * stride in bytes, so a letterbox can resize into its padded canvas; it must not alias src. */
void image_resize_into(const uint8_t *src, int sh, int sw, uint8_t *dst, size_t dstride, int dh,
                       int dw);
void image_resize_into_ref(const uint8_t *src, int sh, int sw, uint8_t *dst, size_t dstride, int dh,
                           int dw);
/* The same into a packed dh x dw image. */
void image_resize_bilinear(const uint8_t *src, int sh, int sw, uint8_t *dst, int dh, int dw);

/* A canvas described rather than drawn: h x w of PIXELS_PAD with up to 4 rectangles copied from
 * images (a mosaic, or one letterboxed image). Piece k covers canvas columns [x, x + w) and rows
 * [y, y + h); its pixels come from rgb (the piece's top-left pixel) with row stride `stride`
 * bytes. Pieces do not overlap. */
typedef struct canvas_piece {
    const uint8_t *rgb;
    size_t stride;
    int x, y, w, h;
} canvas_piece;
typedef struct pixel_canvas {
    int h, w, npieces;
    canvas_piece piece[4];
} pixel_canvas;

/* Draws the whole canvas into out (h x w x 3). */
void canvas_draw(const pixel_canvas *c, uint8_t *out);

/* Something done to each output row of a warp while it is in cache (the HSV jitter): npix
 * pixels in place. */
typedef struct pixels_row_op {
    void (*fn)(void *ctx, uint8_t *row, int npix);
    void *ctx;
} pixels_row_op;

/* dst(x, y) = canvas(Minv (x, y, 1)): bilinear, neighbours outside the canvas read as
 * PIXELS_PAD, as OpenCV 5's warpAffine (float source coordinates with fma, two lerps along x
 * then one along y, round half even) and warpPerspective (projective = 1: Minv's last row used,
 * coordinates divided in double) do it. mi is the inverse map (OpenCV inverts M with
 * invertAffineTransform's formulas for an affine warp). flip_lr / flip_ud mirror the output
 * (as a flip after the warp would, for free). post (may be NULL) runs on every output row.
 * An affine map without rotation or shear is separable: it never draws the canvas, and makes
 * dst row by row, each finished by post while in cache. Any other map draws the canvas into
 * scratch first. */
void image_warp(const pixel_canvas *c, const double mi[3][3], int projective, uint8_t *dst, int oh,
                int ow, int flip_lr, int flip_ud, const pixels_row_op *post);
void image_warp_ref(const pixel_canvas *c, const double mi[3][3], int projective, uint8_t *dst,
                    int oh, int ow, int flip_lr, int flip_ud, const pixels_row_op *post);

/* HSV jitter with given gains r (each already drawn, in [-gain, gain]): OpenCV's 8-bit RGB->HSV
 * (H in [0,180)), lookup tables H' = (H + r_h*180) mod 180, S' = clip(S*(1+r_s)) with S=0 kept,
 * V' = clip(V*(1+r_v)), back to RGB (OpenCV 5 truncates there). The tables for one set of gains
 * are made once (image_hsv_prepare) and applied to any number of pixels in place. */
typedef struct image_hsv_tables {
    int sdiv[256], hdiv[256]; /* OpenCV's fixed-point divisions */
    uint8_t lut_h[256], lut_s[256], lut_v[256];
    /* derived for the AVX-512 kernel: sdiv and hdiv split at bit 12 (the low part << 3), and
     * the max channel's output byte per value */
    uint8_t qh[256], qlL[256], qlH[256], dh[256], dlL[256], dlH[256], o0[256];
    /* for the AVX2 kernel: sdiv[v] | lut_v[v] << 20 (sdiv < 2^20), one gather for both */
    int32_t sdiv_v[256];
} image_hsv_tables;
void image_hsv_prepare(image_hsv_tables *t, double r_h, double r_s, double r_v);
void image_hsv_apply(const image_hsv_tables *t, uint8_t *rgb, size_t npix);
void image_hsv_apply_ref(const image_hsv_tables *t, uint8_t *rgb, size_t npix);
/* prepare + apply */
void image_hsv(uint8_t *rgb, size_t npix, double r_h, double r_s, double r_v);
void image_hsv_ref(uint8_t *rgb, size_t npix, double r_h, double r_s, double r_v);

/* Mirror an h x w image in place. */
void image_flip_lr(uint8_t *rgb, int h, int w);
void image_flip_ud(uint8_t *rgb, int h, int w);
