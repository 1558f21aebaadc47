/* The dataset file (HDF5), write side, and the schema both sides share.
 *
 * Schema (DATASET_FORMAT_VERSION 1, and 2 for images stored resized):
 *   /                      attributes: format_version (int32), num_classes (int32),
 *                          sha256 (string, the content hash = dataset version id), source,
 *                          created (UTC ISO 8601), packer_version (strings); version 2 adds
 *                          stored_imgsz (int32) and stored_as (string, e.g. "jpeg q95"): each
 *                          image's bytes hold it at its load-time size for stored_imgsz
 *   /class_names           (nc,) variable-length UTF-8 strings
 *   /<split>/              split in {train, val, test}; attributes: num_images (int64),
 *                          num_boxes (int64), sha256 (string, this split's content hash)
 *     images               (N,) variable-length uint8: encoded bytes as given (JPEG, PNG) or raw
 * RGB encoding             (N,) uint8: image_encoding (1 jpeg, 2 png, 3 raw_rgb) height, width (N,)
 * int32: original size in pixels label_offsets        (N+1,) int64: image i's boxes are
 * labels[offsets[i] .. offsets[i+1]) labels               (M,5) float32: class, cx, cy, w, h
 * (normalised to [0,1]) filenames            (N,) variable-length strings: the source file of each
 * image
 *
 * Content hash: sha256 over the class count and names, then for each present split in the order
 * train, val, test: the split name and that split's hash. A split's hash is sha256 over, per image
 * in order: encoding (1 byte), height, width (int32 LE), byte count (uint64 LE), the bytes, box
 * count (uint64 LE), the boxes (float32 LE). File names and provenance are not hashed, so packing
 * the same content twice gives the same id. HDF5 1.10 cannot write variable-length data in
 * parallel: the writer is serial, one process. */
#pragma once
#include "common/sha256.h"
#include "dataio/dataset.h"

#include <stddef.h>
#include <stdint.h>

#define DATASET_PACKER_VERSION "yolo-cluster-packer 1"

typedef struct dataset_writer dataset_writer;

/* Creates a temporary file beside path (the final name appears only at dataset_writer_finish).
 * class_names: num_classes strings. source: free text (provenance). NULL + err on failure. */
dataset_writer *dataset_writer_create(const char *path, int num_classes,
                                      const char *const *class_names, const char *source, char *err,
                                      size_t errlen);
/* Starts a split; the previous split, if any, is finished. Each split at most once. */
int dataset_writer_begin_split(dataset_writer *w, split_id s, char *err, size_t errlen);
/* Appends one image with its boxes ([nboxes][5], class ids must be < num_classes) to the current
 * split. The bytes are written to the file at once; nothing of the image is kept in memory. */
int dataset_writer_add(dataset_writer *w, const uint8_t *bytes, size_t nbytes, image_encoding enc,
                       int height, int width, const float *labels, int nboxes, const char *filename,
                       char *err, size_t errlen);
/* Records that the images added are stored at their load-time size for imgsz, encoded as `as`
 * (provenance; the file becomes format version 2). Call before dataset_writer_finish. */
void dataset_writer_set_stored(dataset_writer *w, int imgsz, const char *as);
/* Finishes the last split, writes the hash and provenance, closes, and renames the file to its
 * final name. hash_hex (may be NULL) receives the content hash. Frees w, success or not; on
 * failure the temporary file is removed. */
int dataset_writer_finish(dataset_writer *w, char hash_hex[65], char *err, size_t errlen);
/* Gives up: closes and removes the temporary file, frees w. NULL is fine. */
void dataset_writer_abort(dataset_writer *w);

/* Content-hash pieces shared by the writer and by dataset_verify_hash (see the schema above). */
void dataset_hash_image(sha256_ctx *c, image_encoding enc, int height, int width,
                        const uint8_t *bytes, size_t nbytes, const float *labels, int nboxes);
void dataset_hash_file(char out_hex[65], int num_classes, const char *const *class_names,
                       const char split_hex[SPLIT_COUNT][65], const int present[SPLIT_COUNT]);
