/* Decoded images shared between loader threads, keyed by dataset index: the mosaic buffer (the
 * last steps' images, evicted least recently used first) and cache=ram (every image, never
 * evicted). An image is a pure function of its index, so what the cache holds changes only how
 * often an image is decoded, never what a batch contains.
 *
 * One thread loads an entry while others that want it wait; a thread never waits while it is
 * loading an entry itself (load first, then acquire others), so waits cannot form a cycle. */
#pragma once
#include <stddef.h>
#include <stdint.h>

/* A sample at its load-time size (or as decoded, for validation) with its own labels. */
typedef struct cached_image {
    uint8_t *rgb;
    int h, w, orig_h, orig_w;
    float *labels; /* [nlabels][5] */
    int nlabels;
} cached_image;

typedef struct image_cache image_cache;

/* size: indices are in [0, size). capacity: entries kept; 0 keeps every image (cache=ram). */
image_cache *image_cache_create(int size, int capacity);
void image_cache_destroy(image_cache *c);

/* The entry of index, pinned until image_cache_release. When nobody has it, returns it with
 * *must_load = 1: the caller fills *img and calls image_cache_loaded. When another thread is
 * loading it, waits. */
cached_image *image_cache_acquire(image_cache *c, int index, int *must_load);
/* After must_load: ok = 1 publishes the image (the entry owns img's buffers from now on);
 * ok = 0 drops the entry (waiting threads then load it themselves, and fail on their own). */
void image_cache_loaded(image_cache *c, cached_image *img, int ok);
void image_cache_release(image_cache *c, cached_image *img);

/* Images held and their pixel bytes (for reports and tests). */
void image_cache_usage(image_cache *c, int *images, size_t *bytes);
/* How many acquires found the image ready or being loaded (hits) and how many had to load. */
void image_cache_counts(image_cache *c, int64_t *hits, int64_t *loads);
