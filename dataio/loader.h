/* Prefetching batch loader: the caller submits the sample indices of each step (its shard of the
 * global batch); N threads read (in parallel where the source can read without HDF5, else
 * serialised: HDF5 here is not thread-safe), decode and augment (in parallel) into a bounded ring
 * of batch buffers ahead of the consumer.
 *
 * Determinism: a sample's augmentation depends only on (seed, epoch, dataset index), the mosaic
 * probability in force when its step was submitted, and its mosaic pool: the samples at the same
 * 8 global batch positions (its block) in its step and the 15 steps submitted or noted before it,
 * up to 128 images (Ultralytics' buffer for batch 16). Partners are drawn from the pool with the
 * sample's RNG. Pools are defined on the global batches, so a batch is byte-identical for any
 * worker count (each worker submits its part of the global batch), thread count, ring depth or
 * cache; when a worker's part is a multiple of 8 positions its pools are its own samples. */
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
    /* May be NULL: the same read without the lock, called concurrently; 1 when it cannot for
     * this sample (the loader then calls read under the lock). */
    int (*read_unlocked)(void *ctx, int index, dataset_sample *out, char *err, size_t errlen);
    /* Called concurrently: decodes a sample to a malloc'd RGB HWC buffer, at least min_h x min_w
     * when the decoder can downscale while decoding (else full size). 0 or -1 with err. */
    int (*decode)(void *ctx, const dataset_sample *s, int min_h, int min_w, uint8_t **rgb, int *h,
                  int *w, char *err, size_t errlen);
    void (*free_sample)(void *ctx, dataset_sample *s);
    void (*close)(void *ctx); /* may be NULL; called by loader_destroy */
    /* May be NULL: original size of one image without decoding it (cache=ram sizes its memory
     * with it). Called before the loader's threads start. 0 or -1. */
    int (*image_size)(void *ctx, int index, int *h, int *w);
} sample_source;

typedef enum loader_cache {
    LOADER_CACHE_NONE, /* decoded images live in the mosaic buffer only */
    LOADER_CACHE_RAM,  /* every image stays in memory once decoded (at its load-time size) */
} loader_cache;

typedef struct loader_config {
    int imgsz;          /* output side, even (Ultralytics rounds it to a multiple of 32) */
    int augment;        /* 1: training pipeline (augment_train); 0: validation letterbox */
    augment_params aug; /* training parameters; aug.mosaic is the initial mosaic probability */
    uint64_t seed;
    int nthreads;  /* decode/augment threads, >= 1 */
    int depth;     /* batch buffers in the ring, >= 2 (one is held by the consumer) */
    int max_batch; /* the largest n loader_submit will get */
    loader_cache cache;
    /* cache=ram: processes on this machine that cache the same split (each needs the memory),
     * and the memory they may use in bytes (0: MemAvailable from /proc/meminfo). */
    int cache_sharers;
    size_t cache_limit;
    int max_side; /* validation: the largest side loader_submit_shape will get (0: imgsz) */
} loader_config;

/* Defaults: imgsz 640, augment 1, augment_defaults(), seed 0, 2 threads, depth 3, batch 16, no
 * cache (1 sharer, limit 0). */
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
 * empty split, cache=ram that does not fit: the memory needed is logged first either way). */
loader *loader_create(const char *dataset_path, split_id split, const loader_config *cfg, char *err,
                      size_t errlen);
/* Loader over any source; takes ownership of src (src.close runs at destroy, or on failure).
 * The first loader of a process raises glibc's mmap and trim thresholds (32 MB, 1 GB) so the
 * per-sample image buffers are reused rather than faulted in again each time. */
loader *loader_create_source(sample_source src, const loader_config *cfg, char *err, size_t errlen);

/* Queues one step: n sample indices (copied), the whole global batch. Steps come out of
 * loader_next in submission order. -1 with err for n out of [1, max_batch] or an index out of
 * [0, size). Never blocks. */
int loader_submit(loader *L, int64_t step, int epoch, const int *indices, int n, char *err,
                  size_t errlen);

/* A step of a global batch of bn samples (copied) of which this loader loads positions
 * [first, first + n): what a worker submits when the global batch is shared over workers. */
int loader_submit_part(loader *L, int64_t step, int epoch, const int *batch, int bn, int first,
                       int n, char *err, size_t errlen);

/* Records a global batch without loading it. A run that starts anywhere but at its very first
 * step (resume) notes the 15 global batches before its first one (from the previous epoch's plan
 * when the step is < 15) so that its mosaic pools, and so its batches, are those of an
 * uninterrupted run. -1 with err for a bad index. */
int loader_note_step(loader *L, const int *batch, int bn, char *err, size_t errlen);
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

/* Samples in the split (indices are in [0, size)). */
int loader_size(const loader *L);

/* Seconds spent so far per stage, summed over threads (see aug_stage). */
void loader_stage_times(loader *L, stage_times *out);

/* Sample reads so far: without the lock (source.read_unlocked) and under loader_io_lock(), with
 * the CPU seconds spent holding the lock for them: the loader's serial part. */
typedef struct loader_read_stats {
    int64_t unlocked, locked;
    double locked_s;
} loader_read_stats;
void loader_read_stats_get(loader *L, loader_read_stats *out);

/* Stops the threads (finishing the samples in hand) and frees everything. NULL is fine. */
void loader_destroy(loader *L);

/* The process-wide lock every loader holds around each sample read (HDF5 here is not
 * thread-safe, not even across files). Other code that calls HDF5 while a loader runs, e.g.
 * reading validation labels with dataset_labels, takes it too. */
void loader_io_lock(void);
void loader_io_unlock(void);
