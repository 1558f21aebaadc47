/* Image decode: the encoded bytes of a dataset sample (JPEG via TurboJPEG, PNG via libdeflate or
 * spng, or raw RGB) to RGB uint8 HWC, and the encoders the packer needs. Thread-safe: decoder
 * state is per thread. */
#pragma once
#include "dataio/dataset.h"

#include <stddef.h>
#include <stdint.h>

/* Decodes bytes[0..n) to a malloc'd RGB uint8 HWC buffer (*rgb, caller frees) of *h x *w.
 * min_h/min_w (0 = full size): for JPEG, TurboJPEG's DCT scaling picks the smallest scale factor
 * whose output is still >= min_h x min_w (so a loader that will resize down anyway decodes less);
 * PNG and raw always decode at full size. IMG_RAW_RGB carries no header: the caller passes the
 * size in *h and *w (in/out) and n must be h*w*3. Grayscale, palette, alpha and 16-bit inputs are
 * converted to 8-bit RGB. 0, or -1 with a one-line message in err (*rgb stays NULL). */
int image_decode(const uint8_t *bytes, size_t n, image_encoding enc, int min_h, int min_w,
                 uint8_t **rgb, int *h, int *w, char *err, size_t errlen);

/* Encodes RGB uint8 HWC (h x w) as JPEG (quality 1..100, no chroma subsampling: stored training
 * images keep their colour edges), as PNG (lossless), or copies it for IMG_RAW_RGB, into a
 * malloc'd buffer. 0, or -1 with err. */
int image_encode(const uint8_t *rgb, int h, int w, image_encoding enc, int quality, uint8_t **bytes,
                 size_t *n, char *err, size_t errlen);

/* Reads only the header: full height and width. For IMG_RAW_RGB it cannot know the size and
 * fails. 0 or -1 with err. */
int image_decode_size(const uint8_t *bytes, size_t n, image_encoding enc, int *h, int *w, char *err,
                      size_t errlen);

/* Guesses the encoding from the magic bytes: IMG_JPEG, IMG_PNG, or 0 when neither. */
int image_sniff_encoding(const uint8_t *bytes, size_t n);

/* "jpeg", "png", "raw_rgb", or "unknown". */
const char *image_encoding_name(int enc);
