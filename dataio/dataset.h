/* The dataset file (HDF5), read side. Schema and writers: dataio/dataset_write.h; the schema is
 * documented in the README ("Dataset file"). Every reader opens the file read-only and reads
 * single samples by index; nothing here needs the whole split in memory except the labels. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Version 1: images as given. Version 2 adds the root attributes stored_imgsz and stored_as: every
 * image is stored at its load-time size for that imgsz (Ultralytics' long side to imgsz), while
 * height/width keep the original size. Readers read both; writers write 1 unless images were
 * stored resized. */
#define DATASET_FORMAT_VERSION 2
#define DATASET_FORMAT_VERSION_ORIGINAL 1
#define DATASET_MAX_CLASSES 1000000 /* num_classes a dataset file may have */

typedef enum split_id { SPLIT_TRAIN = 0, SPLIT_VAL = 1, SPLIT_TEST = 2, SPLIT_COUNT = 3 } split_id;
const char *split_name(split_id s); /* "train", "val", "test" */

typedef enum image_encoding {
    IMG_JPEG = 1,
    IMG_PNG = 2,
    IMG_RAW_RGB = 3, /* uint8 HWC RGB, height*width*3 bytes (synthetic data) */
} image_encoding;

typedef struct dataset dataset;

typedef struct dataset_sample {
    int index;
    int height, width;      /* original image size */
    int stored_h, stored_w; /* size of the stored image: the original, or its load-time size */
    image_encoding encoding;
    uint8_t *bytes; /* encoded image; owned by the sample */
    size_t nbytes;
    int nboxes;
    float *labels; /* [nboxes][5]: class, cx, cy, w, h (normalised to [0,1]); owned */
} dataset_sample;

/* Opens read-only. A missing file, a foreign or truncated file, or an unknown format version gives
 * -1/NULL with one line in err naming the file (no HDF5 error stack is printed). */
dataset *dataset_open(const char *path, char *err, size_t errlen);
void dataset_close(dataset *ds);

const char *dataset_path(const dataset *ds);
int dataset_num_classes(const dataset *ds);
const char *dataset_class_name(const dataset *ds, int cls);
const char *dataset_hash(const dataset *ds); /* sha256 hex over images and labels: the version id */
int dataset_split_size(const dataset *ds, split_id s); /* 0 when the split is absent */
bool dataset_has_split(const dataset *ds, split_id s);
int64_t dataset_split_boxes(const dataset *ds, split_id s);    /* total boxes in a split */
const char *dataset_split_hash(const dataset *ds, split_id s); /* "" when absent */
/* Provenance attributes ("" when absent): source, created (UTC ISO 8601), packer version. */
const char *dataset_source(const dataset *ds);
const char *dataset_created(const dataset *ds);
const char *dataset_packer_version(const dataset *ds);
/* Images stored at their load-time size for this imgsz (0: as given), and how ("raw_rgb",
 * "jpeg q95", "png"; "" when not resized). */
int dataset_stored_imgsz(const dataset *ds);
const char *dataset_stored_as(const dataset *ds);

/* One sample: encoded bytes, size, labels. 0 or -1 with err. Not thread-safe (HDF5 is built
 * without thread safety): callers with several threads serialise calls on one dataset. */
int dataset_read(dataset *ds, split_id s, int index, dataset_sample *out, char *err, size_t errlen);
/* dataset_read without HDF5 where the file allows it (dataio/heap_direct.h: the image bytes
 * read with pread), so it may run in several threads at once, with no lock, beside anything else
 * (dataset_close excepted). 0; 1 when it cannot (the layout is not known, or the bytes are not
 * where the file's tables say): the caller then calls dataset_read, serialised, which reports
 * what is wrong; -1 with err for an index out of range. */
int dataset_read_unlocked(dataset *ds, split_id s, int index, dataset_sample *out, char *err,
                          size_t errlen);
/* Several samples in one HDF5 read, so HDF5's cost per call is paid once for all of them:
 * out[i] is what dataset_read gives for indices[i] (any order, repeats allowed; each out[i] owns
 * its buffers). 0, or -1 with one line in err naming the file and the first sample that does not
 * read (out then holds nothing to free). Not thread-safe, as dataset_read. */
int dataset_read_many(dataset *ds, split_id s, const int *indices, int n, dataset_sample *out,
                      char *err, size_t errlen);
void dataset_sample_free(dataset_sample *smp);

/* Labels only (no image bytes), e.g. for validation ground truth. *labels is owned by the dataset
 * and stays valid until dataset_close. */
int dataset_labels(dataset *ds, split_id s, int index, const float **labels, int *nboxes);
/* Original size of one image, without reading its bytes. */
int dataset_image_size(dataset *ds, split_id s, int index, int *height, int *width);
/* Source file name of one image, into buf. 0 or -1. */
int dataset_filename(dataset *ds, split_id s, int index, char *buf, size_t n);
