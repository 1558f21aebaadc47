/* pack_resized: a dataset file with its images stored at a training size. */
#include "common/log.h"
#include "dataio/augment.h"
#include "dataio/dataset.h"
#include "dataio/decode.h"
#include "dataio/pack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One image: decoded (JPEG at the smallest DCT scale still covering the load-time size, as the
 * loader decodes), resized to the load-time size, encoded. */
static int store_image(const dataset_sample *smp, const pack_store *st, uint8_t **bytes, size_t *n,
                       image_encoding *enc, char *err, size_t errlen) {
    int th, tw, h = smp->stored_h, w = smp->stored_w;
    augment_load_size(smp->height, smp->width, st->imgsz, &th, &tw);
    uint8_t *rgb = NULL;
    if (image_decode(smp->bytes, smp->nbytes, smp->encoding, th, tw, &rgb, &h, &w, err, errlen))
        return -1;
    if (h != th || w != tw) {
        uint8_t *r = xmalloc((size_t)th * tw * 3);
        image_resize_bilinear(rgb, h, w, r, th, tw);
        free(rgb);
        rgb = r;
    }
    *enc = st->as ? (image_encoding)st->as : smp->encoding;
    int rc = image_encode(rgb, th, tw, *enc, st->quality, bytes, n, err, errlen);
    free(rgb);
    return rc;
}

static void describe(const pack_store *st, char *buf, size_t n) {
    if (st->as == IMG_JPEG)
        snprintf(buf, n, "jpeg q%d", st->quality);
    else if (st->as == IMG_PNG || st->as == IMG_RAW_RGB)
        snprintf(buf, n, "%s", image_encoding_name(st->as));
    else
        snprintf(buf, n, "source encoding (jpeg q%d, png, raw_rgb)", st->quality);
}

int pack_resized(const char *in, const char *out, const pack_store *store, pack_stats *st,
                 char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    if (store->imgsz < 32 || store->imgsz > 8192)
        return errf(err, errlen, "imgsz=%d: expected 32..8192", store->imgsz);
    if (store->as && store->as != IMG_JPEG && store->as != IMG_PNG && store->as != IMG_RAW_RGB)
        return errf(err, errlen, "unknown storage encoding %d", store->as);
    dataset *ds = dataset_open(in, err, errlen);
    if (!ds) return -1;
    int prev = dataset_stored_imgsz(ds);
    if (prev && prev < store->imgsz) {
        errf(err, errlen, "%s stores images at %d px; storing them at %d would upscale them", in,
             prev, store->imgsz);
        dataset_close(ds);
        return -1;
    }
    int nc = dataset_num_classes(ds);
    const char **names = xcalloc((size_t)nc, sizeof *names);
    for (int k = 0; k < nc; k++) names[k] = dataset_class_name(ds, k);
    char how[64], source[1600];
    describe(store, how, sizeof how);
    snprintf(source, sizeof source, "%s; stored at %d px as %s from %s", dataset_source(ds),
             store->imgsz, how, in);
    dataset_writer *w = dataset_writer_create(out, nc, names, source, err, errlen);
    free(names);
    int rc = w ? 0 : -1;
    for (int s = 0; rc == 0 && s < SPLIT_COUNT; s++) {
        if (!dataset_has_split(ds, (split_id)s)) continue;
        rc = dataset_writer_begin_split(w, (split_id)s, err, errlen);
        for (int i = 0; rc == 0 && i < dataset_split_size(ds, (split_id)s); i++) {
            dataset_sample smp;
            char name[1024] = "", e[400];
            if (dataset_read(ds, (split_id)s, i, &smp, err, errlen) != 0) {
                rc = -1;
                break;
            }
            dataset_filename(ds, (split_id)s, i, name, sizeof name);
            uint8_t *bytes = NULL;
            size_t n = 0;
            image_encoding enc;
            if (store_image(&smp, store, &bytes, &n, &enc, e, sizeof e) != 0)
                rc = errf(err, errlen, "%s: %s image %d (%s): %s", in, split_name((split_id)s), i,
                          name, e);
            else
                rc = dataset_writer_add(w, bytes, n, enc, smp.height, smp.width, smp.labels,
                                        smp.nboxes, name, err, errlen);
            if (rc == 0) st->images[s]++, st->boxes[s] += smp.nboxes;
            st->background += rc == 0 && smp.nboxes == 0;
            free(bytes);
            dataset_sample_free(&smp);
        }
    }
    dataset_close(ds);
    if (rc != 0) {
        dataset_writer_abort(w);
        return -1;
    }
    dataset_writer_set_stored(w, store->imgsz, how);
    return dataset_writer_finish(w, st->hash, err, errlen);
}
