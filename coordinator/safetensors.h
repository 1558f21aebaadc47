/* Writing the safetensors format (huggingface/safetensors): an 8-byte little-endian header
 * length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}} padded
 * with spaces to a multiple of 8 bytes, then every tensor's bytes back to back, in name order.
 * Readable by the `safetensors` Python package (torch, numpy), and so by PyTorch code. */
#pragma once
#include <stddef.h>

#include "coordinator/ckpt_file.h"

typedef struct safetensors_meta {
    const char *key, *value;
} safetensors_meta;

/* Writes t (name, dtype, shape, data; little-endian) and the metadata pairs to path atomically.
 * 0, or -1 with one line in err. */
int safetensors_write(const char *path, const ckpt_tensor *t, int n, const safetensors_meta *meta,
                      int nmeta, char *err, size_t errlen);
