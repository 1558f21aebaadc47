/* A minimal weights file (HDF5): one float32 dataset per tensor under its Ultralytics state_dict
 * name (PyTorch layout), root attributes for provenance. Full checkpoints (optimizer state,
 * lineage, versions) come with the checkpoint issue; this is what last/best hold until then. */
#pragma once
#include <stddef.h>

#include "common/protocol.h"

#define WEIGHTS_FORMAT_VERSION 1

typedef struct weights_meta {
    int epoch;
    double fitness;
    const char *model, *dataset_hash, *args_yaml;
} weights_meta;

/* Written atomically (temporary name, fsync, rename): a crash leaves the previous file intact. */
int weights_write(const char *path, const model_state_header *h, const tensor_desc *t,
                  const float *data, const weights_meta *meta, char *err, size_t errlen);
