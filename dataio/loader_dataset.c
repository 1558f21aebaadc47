/* The loader's default sample source: one split of a dataset file (dataio/dataset.h), decoded
 * by dataio/decode.h. */
#include "common/log.h"
#include "dataio/dataset.h"
#include "dataio/decode.h"
#include "dataio/loader.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct split_source {
    dataset *ds;
    split_id split;
    char name[600];
} split_source;

static int ds_read(void *ctx, int index, dataset_sample *out, char *err, size_t errlen) {
    split_source *d = ctx;
    return dataset_read(d->ds, d->split, index, out, err, errlen);
}

/* The image bytes with pread where the file's layout allows (dataio/heap_direct.h), so loader
 * threads read in parallel; 1 sends the loader to ds_read under the HDF5 lock. */
static int ds_read_unlocked(void *ctx, int index, dataset_sample *out, char *err, size_t errlen) {
    split_source *d = ctx;
    return dataset_read_unlocked(d->ds, d->split, index, out, err, errlen);
}

static int ds_decode(void *ctx, const dataset_sample *s, int min_h, int min_w, uint8_t **rgb,
                     int *h, int *w, char *err, size_t errlen) {
    (void)ctx;
    *h = s->stored_h, *w = s->stored_w; /* raw images carry no header */
    if (image_decode(s->bytes, s->nbytes, s->encoding, min_h, min_w, rgb, h, w, err, errlen) != 0)
        return -1;
    return 0;
}

static int ds_image_size(void *ctx, int index, int *h, int *w) {
    split_source *d = ctx;
    return dataset_image_size(d->ds, d->split, index, h, w);
}

static void ds_free(void *ctx, dataset_sample *s) {
    (void)ctx;
    dataset_sample_free(s);
}

static void ds_close(void *ctx) {
    split_source *d = ctx;
    loader_io_lock(); /* other loaders may be reading */
    dataset_close(d->ds);
    loader_io_unlock();
    free(d);
}

loader *loader_create(const char *dataset_path, split_id split, const loader_config *cfg, char *err,
                      size_t errlen) {
    loader_io_lock(); /* other loaders may be reading */
    dataset *ds = dataset_open(dataset_path, err, errlen);
    int n = ds ? dataset_split_size(ds, split) : 0;
    int stored = ds ? dataset_stored_imgsz(ds) : 0;
    if (ds && n < 1) {
        errf(err, errlen, "%s: split '%s' is empty or absent", dataset_path, split_name(split));
        dataset_close(ds);
        ds = NULL;
    } else if (ds && stored && cfg->imgsz > stored) {
        errf(err, errlen,
             "%s: images are stored at %d px; imgsz=%d would upscale them (train at imgsz<=%d, "
             "or pack the source again at imgsz=%d)",
             dataset_path, stored, cfg->imgsz, stored, cfg->imgsz);
        dataset_close(ds);
        ds = NULL;
    }
    loader_io_unlock();
    if (!ds) return NULL;
    split_source *d = xcalloc(1, sizeof *d);
    d->ds = ds;
    d->split = split;
    snprintf(d->name, sizeof d->name, "%s [%s]", dataset_path, split_name(split));
    sample_source src = {.ctx = d,
                         .name = d->name,
                         .size = n,
                         .read = ds_read,
                         .read_unlocked = ds_read_unlocked,
                         .decode = ds_decode,
                         .free_sample = ds_free,
                         .close = ds_close,
                         .image_size = ds_image_size};
    return loader_create_source(src, cfg, err, errlen);
}
