#include "dataio/augment.h"

#include "common/log.h"
#include "common/timer.h"

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

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
 * zero-area boxes dropped. The canvas is described, not drawn (the warp reads the pieces). */
static int mosaic4(int s, rng *r, const aug_image *imgs, pixel_canvas *canvas, float *lab) {
    int S = 2 * s;
    canvas->h = canvas->w = S;
    canvas->npieces = 0;
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
        if (cw > 0 && chh > 0)
            canvas->piece[canvas->npieces++] = (canvas_piece){
                im->rgb + ((size_t)y1b * w + x1b) * 3, (size_t)w * 3, x1a, y1a, cw, chh};
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

/* Where a letterboxed image goes: scale r (capped at 1 unless scaleup), resized size and the
 * top-left offset; its labels as pixel xyxy into lab. Returns the label count. */
typedef struct letterbox_geom {
    double r;
    int nw, nh, top, left;
} letterbox_geom;

static int letterbox_place(const aug_image *img, int oh, int ow, int scaleup, letterbox_geom *g,
                           float *lab) {
    double r = fmin((double)oh / img->h, (double)ow / img->w);
    if (!scaleup && r > 1.0) r = 1.0;
    int nw = (int)rint(img->w * r), nh = (int)rint(img->h * r); /* round half to even */
    if (nw < 1) nw = 1;
    if (nh < 1) nh = 1;
    double dw = (ow - nw) / 2.0, dh = (oh - nh) / 2.0;
    int top = (int)rint(dh - 0.1), left = (int)rint(dw - 0.1);
    *g = (letterbox_geom){r, nw, nh, top, left};
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
    return n;
}

/* The letterbox drawn into out (oh x ow); pixel-xyxy labels; returns count. */
static int letterbox_core(const aug_image *img, int oh, int ow, int scaleup, uint8_t *out,
                          float *lab, float *r_out, int *pad_x, int *pad_y) {
    letterbox_geom g;
    int n = letterbox_place(img, oh, ow, scaleup, &g, lab);
    memset(out, AUG_PAD_VALUE, (size_t)oh * ow * 3);
    image_resize_into(img->rgb, img->h, img->w, out + ((size_t)g.top * ow + g.left) * 3,
                      (size_t)ow * 3, g.nh, g.nw);
    if (r_out) *r_out = (float)g.r;
    if (pad_x) *pad_x = g.left;
    if (pad_y) *pad_y = g.top;
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

int augment_box_candidate(const float box1[4], const float box2[4]) {
    const double eps = 1e-16;
    double w1 = box1[2] - box1[0], h1 = box1[3] - box1[1];
    double w2 = box2[2] - box2[0], h2 = box2[3] - box2[1];
    double ar = fmax(w2 / (h2 + eps), h2 / (w2 + eps));
    return w2 > 2 && h2 > 2 && w2 * h2 / (w1 * h1 + eps) > 0.1 && ar < 100;
}

/* Ultralytics' RandomPerspective, drawn: M = T S R P C for a src (sh x sw) warped into oh x ow
 * about src's centre (T by a fraction of the output size); *scale gets the scale gain. Draw
 * order: perspective x, y, angle, scale, shear x, y, translate x, y. */
static void perspective_matrix(const augment_params *p, rng *r, int sh, int sw, int oh, int ow,
                               double M[3][3], double *scale) {
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
    mat3_mul(M, T, S);
    mat3_mul(M, M, R);
    mat3_mul(M, M, P);
    mat3_mul(M, M, C);
    *scale = s;
}

/* The warp of RandomPerspective (the canvas into oh x ow), mirrored as the flips that follow it
 * would, each output row finished by post. Returns 0, or -1 for a singular matrix (out is then
 * empty). */
static int perspective_warp(const pixel_canvas *cv, int oh, int ow, const double M[3][3],
                            int projective, uint8_t *out, int flip_lr, int flip_ud,
                            const pixels_row_op *post) {
    int resized = oh != cv->h || ow != cv->w;
    int identity = 1;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) identity &= M[i][j] == (i == j ? 1.0 : 0.0);
    double mi[3][3];
    int inv_ok = projective ? mat3_inv(mi, M) : affine_inverse(mi, M);
    if ((resized || !identity) && inv_ok == 0) {
        image_warp(cv, mi, projective, out, oh, ow, flip_lr, flip_ud, post);
        return 0;
    }
    int rc = 0;
    if (!resized) {
        canvas_draw(cv, out);
        if (flip_ud) image_flip_ud(out, oh, ow);
        if (flip_lr) image_flip_lr(out, oh, ow);
    } else { /* singular matrix: nothing maps; an empty image */
        memset(out, AUG_PAD_VALUE, (size_t)oh * ow * 3);
        rc = -1;
    }
    for (int y = 0; post && y < oh; y++) post->fn(post->ctx, out + (size_t)y * ow * 3, ow);
    return rc;
}

/* The boxes of RandomPerspective: through the corners, clipped to the oh x ow output,
 * candidate-filtered against the originals times the scale s. Returns the count kept. */
static int perspective_boxes(const double M[3][3], double s, int projective, int oh, int ow,
                             float *lab, int n) {
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

/* ---- flips -------------------------------------------------------------------------------- */

void augment_fliplr(uint8_t *rgb, int h, int w, float *labels, int n) {
    image_flip_lr(rgb, h, w);
    for (int i = 0; i < n; i++) labels[5 * i + 1] = 1.f - labels[5 * i + 1];
}

void augment_flipud(uint8_t *rgb, int h, int w, float *labels, int n) {
    image_flip_ud(rgb, h, w);
    for (int i = 0; i < n; i++) labels[5 * i + 2] = 1.f - labels[5 * i + 2];
}

/* ---- the training pipeline ---------------------------------------------------------------- */

const char *stage_name(aug_stage s) {
    static const char *names[STAGE_COUNT] = {"read", "decode", "resize", "place", "warp",
                                             "hsv",  "flip",   "labels", "copy"};
    return (unsigned)s < STAGE_COUNT ? names[s] : "?";
}

/* This thread's CPU seconds: stage times are not inflated by waiting for a core. */
static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Adds the seconds since *t0 to stage st and restarts the clock. */
static void lap(stage_times *t, aug_stage st, double *t0) {
    if (!t) return;
    double now = cpu_seconds();
    t->s[st] += now - *t0;
    *t0 = now;
}

/* A cheap clock for splitting a stage whose parts interleave (warp and HSV, row by row). */
static inline uint64_t ticks(void) {
#if defined(__x86_64__)
    return __rdtsc();
#else
    return (uint64_t)(now_seconds() * 1e9);
#endif
}

typedef struct hsv_rows {
    image_hsv_tables tables;
    uint64_t ticks;
} hsv_rows;

static void hsv_row(void *ctx, uint8_t *row, int npix) {
    hsv_rows *h = ctx;
    uint64_t t0 = ticks();
    image_hsv_apply(&h->tables, row, (size_t)npix);
    h->ticks += ticks() - t0;
}

int augment_train(const augment_params *p, int imgsz, rng *r, int use_mosaic, const aug_image *imgs,
                  uint8_t *out, float *out_labels) {
    return augment_train_timed(p, imgsz, r, use_mosaic, imgs, out, out_labels, NULL);
}

int augment_train_timed(const augment_params *p, int imgsz, rng *r, int use_mosaic,
                        const aug_image *imgs, uint8_t *out, float *out_labels, stage_times *t) {
    int s = imgsz, total = 0;
    if (s <= 0 || s % 2) FATAL("augment_train: imgsz %d must be even and positive", s);
    double t0 = t ? cpu_seconds() : 0;
    for (int i = 0; i < (use_mosaic ? 4 : 1); i++) total += imgs[i].nlabels;
    float *lab = xmalloc(sizeof(float) * 5 * (size_t)(total > 0 ? total : 1));
    int n;
    pixel_canvas cv;
    uint8_t *resized = NULL;
    if (use_mosaic) { /* a 2s canvas warped into s x s (Ultralytics' border -s/2) */
        n = mosaic4(s, r, imgs, &cv, lab);
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
        cv = (pixel_canvas){im->h, im->w, 1, {{im->rgb, (size_t)im->w * 3, 0, 0, im->w, im->h}}};
    } else {
        /* 8.4.33 letterboxes a non-mosaic training sample to imgsz (scale-up allowed), then warps
         * it (border 0): with an odd padding the image sits half a pixel off the centre. At the
         * load-time size the letterbox only pads. */
        letterbox_geom g;
        n = letterbox_place(&imgs[0], s, s, 1, &g, lab);
        const uint8_t *px = imgs[0].rgb;
        if (g.nh != imgs[0].h || g.nw != imgs[0].w) {
            px = resized = xmalloc((size_t)g.nh * g.nw * 3);
            image_resize_bilinear(imgs[0].rgb, imgs[0].h, imgs[0].w, resized, g.nh, g.nw);
        }
        cv = (pixel_canvas){s, s, 1, {{px, (size_t)g.nw * 3, g.left, g.top, g.nw, g.nh}}};
    }
    lap(t, STAGE_PLACE, &t0);
    double M[3][3], scale;
    perspective_matrix(p, r, cv.h, cv.w, s, s, M, &scale);
    int projective = p->perspective != 0.0;
    /* Three gains are drawn whatever their values (numpy draws them in Ultralytics), then the
     * flips; pixels are warped and flipped in one pass, then HSV (per pixel, so in any order). */
    double rh = rng_range(r, -1, 1) * p->hsv_h;
    double rs = rng_range(r, -1, 1) * p->hsv_s;
    double rv = rng_range(r, -1, 1) * p->hsv_v;
    int ud = rng_uniform(r) < p->flipud;
    int lr = rng_uniform(r) < p->fliplr;
    hsv_rows hsv = {.ticks = 0};
    pixels_row_op post = {hsv_row, &hsv};
    int jitter = p->hsv_h != 0 || p->hsv_s != 0 || p->hsv_v != 0;
    if (jitter) image_hsv_prepare(&hsv.tables, rh, rs, rv);
    uint64_t w0 = ticks();
    if (perspective_warp(&cv, s, s, M, projective, out, lr, ud, jitter ? &post : NULL) != 0) n = 0;
    uint64_t wt = ticks() - w0;
    free(resized);
    /* HSV ran row by row inside the warp: split the stage's time by the ticks counted in it */
    if (t) {
        double now = cpu_seconds(), spent = now - t0, f = wt ? (double)hsv.ticks / (double)wt : 0;
        t->s[STAGE_HSV] += spent * f;
        t->s[STAGE_WARP] += spent * (1 - f);
        t0 = now;
    }
    n = perspective_boxes(M, scale, projective, s, s, lab, n);
    normalise_labels(lab, n, s, s);
    for (int i = 0; i < n; i++) {
        if (ud) lab[5 * i + 2] = 1.f - lab[5 * i + 2];
        if (lr) lab[5 * i + 1] = 1.f - lab[5 * i + 1];
    }
    memcpy(out_labels, lab, sizeof(float) * 5 * (size_t)n);
    free(lab);
    lap(t, STAGE_LABELS, &t0);
    return n;
}

void letterbox_undo_box(const letterbox_info *lb, const float in[4], float out[4]) {
    float W = (float)lb->orig_w, H = (float)lb->orig_h;
    float x1 = (in[0] - lb->pad_x) / lb->gain_x, y1 = (in[1] - lb->pad_y) / lb->gain_y;
    float x2 = (in[2] - lb->pad_x) / lb->gain_x, y2 = (in[3] - lb->pad_y) / lb->gain_y;
    out[0] = clampf(x1, 0, W), out[1] = clampf(y1, 0, H);
    out[2] = clampf(x2, 0, W), out[3] = clampf(y2, 0, H);
}
