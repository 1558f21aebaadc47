/* Test helper: an in-memory sample source of raw RGB images for loader and validation tests.
 * fill(index, out) makes one sample: size, malloc'd bytes (h * w * 3) and labels ([n][5]). */
#pragma once
#include "dataio/loader.h"

typedef void (*mem_fill_fn)(int index, dataset_sample *out);
sample_source mem_source_of(const char *name, int size, mem_fill_fn fill);
