/* Weights files: a model's weights for inference and fine-tuning, without training state. What
 * `ckpt export format=h5` writes (a version's EMA weights) and what scripts/ultralytics_import.py
 * writes from an Ultralytics .pt; `train model=<file>` and `pretrained=<file>` fine-tune from one.
 *
 * HDF5, one file:
 *   /@format = "yolo-cluster weights", /@format_version = 1, /@created (ISO 8601 UTC)
 *   /@source          what the weights came from ("runs/a:v0004 (content sha256 ...)", "Ultralytics
 *                     yolo11n.pt (sha256 ...)")
 *   /@model           the model as named when built ("yolov8n.yaml": its scale letter counts)
 *   /@model_yaml      the model yaml's text
 *   /@nc              number of classes; /@names  their names, a JSON array of strings
 *   /@dataset_sha256  the dataset the weights were trained on ("" when unknown)
 *   /@content_sha256  sha256 over the canonical listing below
 *   /model/<name>     float32 (int64 for num_batches_tracked) tensors under Ultralytics state_dict
 *                     names, PyTorch layout, each with a "sha256" attribute over its bytes
 * Canonical listing (easy to reproduce in any language): for each of format_version, created,
 * source, model, model_yaml, nc, names, dataset_sha256 (and, from format 2 on, imgsz) in that
 * order, "<key>=<len>:<text>\n" (nc, imgsz and format_version as decimal text), then for each
 * tensor in name order "tensor <name> <float32|int64> [<d0>,<d1>,...] <sha256>\n". */
#pragma once
#include <stddef.h>

#include "coordinator/ckpt_file.h"

#define CKPT_WEIGHTS_FORMAT "yolo-cluster weights"
/* 2: the training image size (imgsz), what val / predict use when not given one */
#define CKPT_WEIGHTS_FORMAT_VERSION 2

typedef struct ckpt_weights_info {
    int format_version;
    char created[32];
    char *source, *model, *model_yaml, *names; /* (heap) names: a JSON array */
    int nc;
    int imgsz; /* the training image size; 0: not recorded (format 1) */
    char dataset_sha256[65];
    char content_sha256[65]; /* reading: as stored; writing: filled in */
} ckpt_weights_info;

void ckpt_weights_info_free(ckpt_weights_info *w);

/* Writes path atomically; tensors under their names ("model/model.0.conv.weight"); fills each
 * tensor's sha256, info->created (when empty) and info->content_sha256. 0 or -1 with err. */
int ckpt_weights_write(const char *path, ckpt_weights_info *info, ckpt_tensor *t, int n, char *err,
                       size_t errlen);

typedef struct ckpt_weights ckpt_weights;

/* Opens a weights file (NULL with one line in err: not HDF5, truncated, another format, a newer
 * format version; a checkpoint version is named as such). */
ckpt_weights *ckpt_weights_open(const char *path, char *err, size_t errlen);
void ckpt_weights_close(ckpt_weights *w);
const ckpt_weights_info *ckpt_weights_meta(const ckpt_weights *w);
int ckpt_weights_num_tensors(const ckpt_weights *w);
const ckpt_tensor *ckpt_weights_tensor_at(const ckpt_weights *w, int i); /* sorted by name */
/* Reads tensor i and checks its sha256 (a mismatch names the tensor). */
int ckpt_weights_read_tensor(ckpt_weights *w, int i, void *out, char *err, size_t errlen);
/* Re-hashes every tensor and the listing; the number of problems, each through report. */
int ckpt_weights_verify(ckpt_weights *w, void (*report)(void *ctx, const char *line), void *ctx,
                        char *err, size_t errlen);
