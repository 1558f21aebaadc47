/* The built-in synthetic detection dataset: filled circles, rectangles and triangles (class =
 * shape kind) of random colours and sizes on noisy backgrounds, with exact boxes. Every image is a
 * pure function of (seed, split, index), so any rank can regenerate any image. */
#pragma once
#include "dataio/dataset.h"

#include <stdint.h>

#define SYNTH_MAX_OBJECTS 6
#define SYNTH_MAX_CLASSES 3
#define SYNTH_MIN_IMGSZ 32

/* A shifted look, for drift tests and demos: data of the same generator that a model trained on
 * the default look has not seen. The default style draws exactly the default images. */
typedef enum synth_background {
    SYNTH_BG_PLAIN = 0, /* one colour plus noise (the default) */
    SYNTH_BG_STRIPES,   /* diagonal stripes of two colours plus noise */
} synth_background;

typedef struct synth_style {
    double brightness;           /* every pixel times this at the end (1: unchanged; 0.5 darker) */
    double object_scale;         /* object sizes times this (1: 8..40 % of the side) */
    synth_background background; /* what the objects sit on */
} synth_style;

synth_style synth_style_default(void); /* 1, 1, plain */
/* "plain", "stripes"; 0 and *out, or -1 for another name. */
int synth_background_parse(const char *name, synth_background *out);
const char *synth_background_name(synth_background b);

/* "circle", "rectangle", "triangle". */
const char *synth_class_name(int cls);

/* Draws one imgsz x imgsz image into rgb (imgsz*imgsz*3 bytes, RGB HWC) and its boxes into
 * labels ([SYNTH_MAX_OBJECTS][5]: class, cx, cy, w, h normalised). classes in 1..3 picks which
 * shapes appear. Objects do not overlap, so every box is the exact extent of its visible shape.
 * Returns the box count (1..6). */
int synth_image(uint64_t seed, split_id split, int index, int imgsz, int classes, uint8_t *rgb,
                float *labels);
/* The same in a style (NULL: the default). */
int synth_image_styled(uint64_t seed, split_id split, int index, int imgsz, int classes,
                       const synth_style *style, uint8_t *rgb, float *labels);
