/* Training augmentation as Ultralytics does it by default for detection (mosaic -> random
 * perspective -> HSV -> flips), and the validation letterbox. Images are RGB uint8 HWC in memory;
 * labels are [n][5] (class, cx, cy, w, h) normalised to the image they belong to.
 *
 * Randomness comes only from the rng passed in (the loader keys it by seed, epoch and sample
 * index), so the output is a pure function of (inputs, params, rng state). */
#pragma once
#include "common/rng.h"
#include "dataio/pixels.h"

#include <stddef.h>
#include <stdint.h>

#define AUG_PAD_VALUE PIXELS_PAD

/* Ultralytics' names and default values (cfg/default.yaml). */
typedef struct augment_params {
    double mosaic;              /* probability of a 4-image mosaic; 0 after close_mosaic */
    double degrees;             /* rotation, +- degrees */
    double translate;           /* translation, +- fraction of the output size */
    double scale;               /* scale gain, uniform in [1 - scale, 1 + scale] */
    double shear;               /* shear, +- degrees */
    double perspective;         /* perspective, +- (0 means a pure affine warp) */
    double flipud;              /* probability of a vertical flip */
    double fliplr;              /* probability of a horizontal flip */
    double hsv_h, hsv_s, hsv_v; /* HSV gains (fractions) */
    /* A sample without mosaic: 0 letterboxes it to imgsz, then warps (Ultralytics 8.4.33); 1
     * warps the load-size image about its centre straight into imgsz x imgsz (8.4.190). They
     * differ by half a pixel where the letterbox padding is odd. */
    int warp_from_centre;
} augment_params;

/* mosaic=1, degrees=0, translate=0.1, scale=0.5, shear=0, perspective=0, flipud=0, fliplr=0.5,
 * hsv_h=0.015, hsv_s=0.7, hsv_v=0.4. */
augment_params augment_defaults(void);

/* One input image with its labels ([nlabels][5], normalised). */
typedef struct aug_image {
    const uint8_t *rgb;
    int h, w;
    const float *labels;
    int nlabels;
} aug_image;

/* Load-time size (Ultralytics' load_image): long side to imgsz keeping the aspect ratio; each
 * side is min(ceil(side * imgsz / long_side), imgsz). Computed from the ORIGINAL size h0 x w0,
 * whatever size the decoder produced. Small images are scaled up. */
void augment_load_size(int h0, int w0, int imgsz, int *h, int *w);

/* Draws the mosaic decision (probability p->mosaic) and, when it fires, the 3 partner indices
 * uniform over [0, pool_size) (with replacement; the sample itself may come up). Returns 1 for
 * mosaic, 0 otherwise. Must be called first on a sample's rng, then augment_train on the same
 * rng. */
int augment_draw_mosaic(rng *r, const augment_params *p, int pool_size, int partners[3]);

/* The rest of the training pipeline for one sample. imgs: 4 images (main then the 3 partners)
 * when use_mosaic, else 1; each already at its load-time size. Writes out[imgsz][imgsz][3] and
 * the surviving labels into out_labels ([<= sum of nlabels][5], normalised to the output).
 * Returns the number of labels. */
int augment_train(const augment_params *p, int imgsz, rng *r, int use_mosaic, const aug_image *imgs,
                  uint8_t *out, float *out_labels);

/* Thread CPU seconds per pipeline stage, summed over samples (bench_loader prints them per
 * image). The loader fills read, decode, resize and copy; augment_train_timed the others. */
typedef enum aug_stage {
    STAGE_READ,   /* encoded bytes from the dataset file */
    STAGE_DECODE, /* JPEG/PNG to RGB */
    STAGE_RESIZE, /* to the load-time size */
    STAGE_PLACE,  /* describing the mosaic / letterbox canvas (the warp assembles its rows) */
    STAGE_WARP,   /* random perspective / affine warp, with canvas rows and flips folded in */
    STAGE_HSV,    /* run on each warped row; its share of the warp's time, by cycle counts */
    STAGE_FLIP,   /* 0: the flips are folded into the warp (listed so tables show it) */
    STAGE_LABELS, /* box transforms, clipping, candidate filter, normalisation, flips */
    STAGE_COPY,   /* assembling the batch (labels; images are written in place) */
    STAGE_COUNT
} aug_stage;
typedef struct stage_times {
    double s[STAGE_COUNT];
} stage_times;
const char *stage_name(aug_stage s); /* "read", "decode", ... */

/* augment_train, adding each stage's seconds to *t (NULL: no timing). */
int augment_train_timed(const augment_params *p, int imgsz, rng *r, int use_mosaic,
                        const aug_image *imgs, uint8_t *out, float *out_labels, stage_times *t);

/* Where a validation image went: x_out = x_orig * gain_x + pad_x (pixels), same for y. */
typedef struct letterbox_info {
    int orig_h, orig_w;
    float gain_x, gain_y;
    float pad_x, pad_y;
} letterbox_info;

/* A box x1, y1, x2, y2 in letterboxed pixels back to original-image pixels: x = (x' - pad) /
 * gain, then clipped to the image (Ultralytics' scale_boxes on the exact gain and padding the
 * letterbox used). in and out may alias. */
void letterbox_undo_box(const letterbox_info *lb, const float in[4], float out[4]);

/* Letterbox into out_h x out_w: resize by r = min(out_h/h, out_w/w) (capped at 1 unless scaleup)
 * to round-half-even sizes, pad with 114 centred (odd pixel bottom/right), map labels in place
 * of out_labels (normalised to the output). Returns the label count; *r_out, *pad_x, *pad_y get
 * the scale and the left/top padding. */
int augment_letterbox(const aug_image *img, int out_h, int out_w, int scaleup, uint8_t *out,
                      float *out_labels, float *r_out, int *pad_x, int *pad_y);

/* Validation transform of an image decoded at any size from an original orig_h x orig_w: resize
 * to the load-time size, then letterbox (no upscaling) to imgsz x imgsz. No randomness. Returns
 * the label count; info maps predictions back to the original image. */
int augment_val(const aug_image *img, int orig_h, int orig_w, int imgsz, uint8_t *out,
                float *out_labels, letterbox_info *info);
/* The same into an out_h x out_w canvas: a rectangular validation batch's shape (Ultralytics'
 * rect_shape); labels are normalised to that canvas. */
int augment_val_shape(const aug_image *img, int orig_h, int orig_w, int imgsz, int out_h, int out_w,
                      uint8_t *out, float *out_labels, letterbox_info *info);

/* The pieces, exposed for tests and reuse. */

/* Flips in place; labels ([n][5] normalised) follow. */
void augment_fliplr(uint8_t *rgb, int h, int w, float *labels, int n);
void augment_flipud(uint8_t *rgb, int h, int w, float *labels, int n);

/* Ultralytics' box candidate rule: box1 the original box scaled by the warp's scale, box2 the
 * warped and clipped one, both x1,y1,x2,y2 pixels. Keeps w2 > 2, h2 > 2, area2 / area1 > 0.1 and
 * max(w2/h2, h2/w2) < 100 (with eps 1e-16 in the divisions). */
int augment_box_candidate(const float box1[4], const float box2[4]);
