/* Packers: build a dataset file from an Ultralytics dataset yaml with images/ and labels/
 * folders, from COCO instances json files, or from the synthetic generator. Each writes through
 * dataset_writer (temporary name, renamed at the end), so a failed pack leaves no output file.
 * Warnings (clipped boxes, background images, duplicates, skipped images) go to log_warn and are
 * counted in pack_stats. */
#pragma once
#include "dataio/dataset_write.h"
#include "dataio/synth.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct pack_stats {
    int64_t images[SPLIT_COUNT], boxes[SPLIT_COUNT];
    int64_t background; /* images without any box (no label file, empty file, no annotation) */
    int64_t clipped;    /* boxes that extended past the image and were clipped */
    int64_t dropped;    /* boxes with no area left (after clipping, or w/h <= 0 in COCO) */
    int64_t crowd;      /* COCO iscrowd annotations kept out of the labels */
    int64_t duplicates; /* images whose bytes equal an earlier image's (kept, warned) */
    int64_t skipped;    /* images that did not decode, skipped because skip_bad was set */
    char hash[65];      /* content hash of the written file */
} pack_stats;

/* data=<dataset.yaml>: `path` (root; absent = the yaml's folder, relative = relative to it),
 * `train`/`val`/`test` (folder, list file, or a list of those, relative to the root), `names`
 * (list or {id: name} map), optional `nc`. Label file of an image: its path with the last
 * /images/ replaced by /labels/ and the extension by .txt. */
int pack_ultralytics(const char *yaml_path, const char *out, bool skip_bad, pack_stats *st,
                     char *err, size_t errlen);

/* A fingerprint of what pack_ultralytics would read: the packer version, the yaml's bytes, and for
 * every image (and its label file, present or not) its path, size and modification time. Cheap
 * (stat calls, no image reads): the pack cache re-packs when it changes. */
int pack_ultralytics_fingerprint(const char *yaml_path, char hex[65], char *err, size_t errlen);

/* COCO instances json per split (NULL = split absent; train required) with its image folder.
 * Category ids map, in increasing id order, to classes 0..K-1 named by the categories. All splits
 * must list the same categories. */
int pack_coco(const char *const json[SPLIT_COUNT], const char *const images_dir[SPLIT_COUNT],
              const char *out, bool skip_bad, pack_stats *st, char *err, size_t errlen);

/* count[s] synthetic images per split (0 = absent), raw RGB imgsz x imgsz, classes in 1..3. */
int pack_synth(const char *out, const int count[SPLIT_COUNT], int imgsz, int classes, uint64_t seed,
               pack_stats *st, char *err, size_t errlen);
/* The same in a style (synth.h; NULL: the default); a non-default style is named in the source
 * attribute. */
int pack_synth_styled(const char *out, const int count[SPLIT_COUNT], int imgsz, int classes,
                      uint64_t seed, const synth_style *style, pack_stats *st, char *err,
                      size_t errlen);

/* ---- shared by the packers (pack.c) ---- */
typedef struct pack_ctx pack_ctx;
pack_ctx *pack_ctx_new(pack_stats *st, bool skip_bad);
void pack_ctx_free(pack_ctx *c);
pack_stats *pack_ctx_stats(pack_ctx *c);
/* Reads and checks one image file: the encoding comes from its magic bytes, the whole file must
 * decode. 0: ok (*bytes malloc'd); 1: bad image skipped (skip_bad; logged and counted);
 * -1: error naming the file. Warns about and counts an image whose bytes were seen before. */
int pack_load_image(pack_ctx *c, const char *path, uint8_t **bytes, size_t *n, image_encoding *enc,
                    int *h, int *w, char *err, size_t errlen);
/* Clips a normalised cx,cy,w,h box to the image; counts and (once per pack) reports clipping,
 * naming where. Returns false when nothing of the box is left (counted as dropped). */
bool pack_clip_box(pack_ctx *c, float *box4, const char *where);
/* One label file's text (class cx cy w h per line, NUL-terminated; modified in place) into *lab
 * (grown as needed; *nb boxes, clipped). 0, or -1 with "path:line: ..." in err. */
int pack_parse_label_text(pack_ctx *c, char *text, const char *path, int nc, float **lab, int *cap,
                          int *nb, char *err, size_t errlen);
/* The parse half of pack_coco for one json given as text (tests, fuzzing): categories, images and
 * annotations checked, boxes normalised and clipped, counted into c's stats. 0 or -1 + err. */
int pack_coco_check_text(pack_ctx *c, const char *text, size_t n, const char *name, char *err,
                         size_t errlen);
/* Whole file into a malloc'd buffer (NUL-terminated beyond n). 0 or -1 + err naming the file. */
int pack_read_file(const char *path, uint8_t **data, size_t *n, char *err, size_t errlen);

/* How pack_resized stores images: at their load-time size for imgsz (Ultralytics' long side to
 * imgsz, the size the loader resizes to), encoded as `as` (IMG_JPEG with quality, IMG_PNG,
 * IMG_RAW_RGB), or with as = 0 each in its source's encoding (JPEG at quality, PNG, raw). */
typedef struct pack_store {
    int imgsz;
    int as;
    int quality;
} pack_store;

/* Copies the dataset file `in` to `out` with every image stored resized (format version 2, the
 * resize recorded in the stored_imgsz / stored_as attributes; labels, original sizes, file names
 * and class names unchanged). Training at imgsz = store->imgsz then skips the decode-time resize,
 * and raw storage skips decoding. An image is resized the way the loader resizes it, so raw
 * storage gives the loader byte-identical batches. `in` may itself be stored resized, at an imgsz
 * >= store->imgsz. */
int pack_resized(const char *in, const char *out, const pack_store *store, pack_stats *st,
                 char *err, size_t errlen);
