/* Prefetching batch loader: the caller submits the sample indices of each step (its shard of the
 * global batch); N threads read (serialised: HDF5 here is not thread-safe), decode and augment
 * (in parallel) into a bounded ring of batch buffers ahead of the consumer.
 *
 * Determinism: a sample's augmentation depends only on (seed, epoch, dataset index) and the
 * mosaic probability in force when its step was submitted; mosaic partners are drawn from the
 * whole split with that same RNG. A batch is byte-identical for any thread count or ring depth. */
#pragma once
#include "dataio/augment.h"
#include "dataio/dataset.h"

#include <stddef.h>
#include <stdint.h>

/* Where samples come from; the dataset file by default (loader_create), anything in tests. */
typedef struct sample_source {
    void *ctx;
    const char *name; /* names the data in error messages, e.g. "coco8.h5 [train]" */
    int size;         /* samples in the split: indices and mosaic partners are in [0, size) */
    /* Called under loader_io_lock(), never concurrently: one sample's encoded bytes, original
     * size and labels. 0 or -1 with err. */
    int (*read)(void *ctx, int index, dataset_sample *out, char *err, size_t errlen);
    /* Called concurrently: decodes a sample to a malloc'd RGB HWC buffer, at least min_h x min_w
     * when the decoder can downscale while decoding (else full size). 0 or -1 with err. */
    int (*decode)(void *ctx, const dataset_sample *s, int min_h, int min_w, uint8_t **rgb, int *h,
                  int *w, char *err, size_t errlen);
    void (*free_sample)(void *ctx, dataset_sample *s);
    void (*close)(void *ctx); /* may be NULL; called by loader_destroy */
} sample_source;

typedef struct loader_config {
    int imgsz;          /* output side, even (Ultralytics rounds it to a multiple of 32) */
    int augment;        /* 1: training pipeline (augment_train); 0: validation letterbox */
    augment_params aug; /* training parameters; aug.mosaic is the initial mosaic probability */
    uint64_t seed;
    int nthreads;  /* decode/augment threads, >= 1 */
    int depth;     /* batch buffers in the ring, >= 2 (one is held by the consumer) */
    int max_batch; /* the largest n loader_submit will get */
    int max_side;  /* validation: the largest side loader_submit_shape will get (0: imgsz) */
} loader_config;

/* Defaults: imgsz 640, augment 1, augment_defaults(), seed 0, 2 threads, depth 3, batch 16. */
loader_config loader_config_defaults(void);

typedef struct loader_batch {
    int64_t step;
    int epoch;
    int n, imgsz;
    int h, w;           /* image size of this batch: imgsz x imgsz, or the submitted shape */
    const int *indices; /* [n] dataset indices, as submitted */
    uint8_t *images;    /* [n][h][w][3] RGB */
    int nlabels;
    float *labels;              /* [nlabels][6]: batch index, class, cx, cy, w, h (normalised) */
    const letterbox_info *info; /* [n] validation only (NULL when augmenting) */
    double stall_s;             /* seconds loader_next waited for this batch */
    double prep_s; /* seconds the loader threads spent on its samples (read, decode, transform),
                    * summed over samples: Ultralytics' "preprocess" time */
} loader_batch;

typedef struct loader loader;

/* Loader over a dataset file's split. NULL with one line in err (bad config, unreadable file,
 * empty split). */
loader *loader_create(const char *dataset_path, split_id split, const loader_config *cfg, char *err,
                      size_t errlen);
/* Loader over any source; takes ownership of src (src.close runs at destroy, or on failure). */
loader *loader_create_source(sample_source src, const loader_config *cfg, char *err, size_t errlen);

/* Queues one step: n sample indices (copied). Steps come out of loader_next in submission
 * order. -1 with err for n out of [1, max_batch] or an index out of [0, size). Never blocks. */
int loader_submit(loader *L, int64_t step, int epoch, const int *indices, int n, char *err,
                  size_t errlen);

/* Validation loaders (augment = 0) only: a step whose images are letterboxed into out_h x out_w
 * (even, at most max_side) instead of imgsz x imgsz: a rectangular validation batch. */
int loader_submit_shape(loader *L, int64_t step, int epoch, const int *indices, int n, int out_h,
                        int out_w, char *err, size_t errlen);

/* close_mosaic: the mosaic probability for steps submitted from now on (0 turns it off). */
void loader_set_mosaic(loader *L, double p);

/* Waits for the next submitted step's batch. The batch stays valid until the next loader_next
 * or loader_destroy. 0, or -1 with one line in err: a read or decode failure names the data
 * and the sample index; calling with no step outstanding is an error too. */
int loader_next(loader *L, loader_batch *out, char *err, size_t errlen);

/* Stops the threads (finishing the samples in hand) and frees everything. NULL is fine. */
void loader_destroy(loader *L);

/* The process-wide lock every loader holds around each sample read (HDF5 here is not
 * thread-safe, not even across files). Other code that calls HDF5 while a loader runs, e.g.
 * reading validation labels with dataset_labels, takes it too. */
void loader_io_lock(void);
void loader_io_unlock(void);
