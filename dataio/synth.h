/* The built-in synthetic detection dataset: filled circles, rectangles and triangles (class =
 * shape kind) of random colours and sizes on noisy backgrounds, with exact boxes. Every image is a
 * pure function of (seed, split, index), so any rank can regenerate any image. */
#pragma once
#include "dataio/dataset.h"

#include <stdint.h>

#define SYNTH_MAX_OBJECTS 6
#define SYNTH_MAX_CLASSES 3
#define SYNTH_MIN_IMGSZ 32

/* "circle", "rectangle", "triangle". */
const char *synth_class_name(int cls);

/* Draws one imgsz x imgsz image into rgb (imgsz*imgsz*3 bytes, RGB HWC) and its boxes into
 * labels ([SYNTH_MAX_OBJECTS][5]: class, cx, cy, w, h normalised). classes in 1..3 picks which
 * shapes appear. Objects do not overlap, so every box is the exact extent of its visible shape.
 * Returns the box count (1..6). */
int synth_image(uint64_t seed, split_id split, int index, int imgsz, int classes, uint8_t *rgb,
                float *labels);
