/* A run directory's dataset-driven charts: labels.jpg and the validation plots (curves,
 * confusion matrices, mosaics of val images), for the charts sink and the val command. */
#include "common/log.h"
#include "coordinator/charts.h"
#include "dataio/decode.h"
#include "dataio/loader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOSAIC_IMAGES 16 /* plot_images' max_subplots */

void chart_run_init(chart_run *r, const char *dir, dataset *ds, int imgsz) {
    *r = (chart_run){.ds = ds, .nc = dataset_num_classes(ds), .imgsz = imgsz, .split = SPLIT_VAL};
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    r->names = xcalloc((size_t)(r->nc > 0 ? r->nc : 1), sizeof *r->names);
    for (int c = 0; c < r->nc; c++) r->names[c] = dataset_class_name(ds, c);
}

void chart_run_free(chart_run *r) {
    free(r->names);
    r->names = NULL;
}

int chart_run_path(const chart_run *s, const char *file, char *out, size_t n, char *err,
                   size_t errlen) {
    if (snprintf(out, n, "%s/%s", s->dir, file) >= (int)n)
        return errf(err, errlen, "%s: path too long", s->dir);
    return 0;
}

int chart_run_labels(const chart_run *s, split_id split, char *err, size_t errlen) {
    int n = dataset_split_size(s->ds, split);
    size_t nb = (size_t)dataset_split_boxes(s->ds, split), k = 0;
    float *boxes = xmalloc((nb ? nb : 1) * 4 * sizeof *boxes);
    int *cls = xmalloc((nb ? nb : 1) * sizeof *cls);
    for (int i = 0; i < n; i++) {
        const float *l;
        int m;
        if (dataset_labels(s->ds, split, i, &l, &m) != 0) continue;
        for (int j = 0; j < m && k < nb; j++, k++) {
            cls[k] = (int)l[5 * j];
            memcpy(boxes + 4 * k, l + 5 * j + 1, 4 * sizeof *boxes);
        }
    }
    char path[PATH_MAX + 32];
    int rc = chart_run_path(s, "labels.jpg", path, sizeof path, err, errlen);
    if (rc == 0) rc = chart_labels(boxes, cls, k, s->nc, s->names, path, err, errlen);
    free(boxes);
    free(cls);
    return rc;
}

/* Mosaic k of the val images [16 k, 16 k + 16): ground truth, then predictions. */
static int draw_mosaics(const chart_run *s, int k, const chart_validation *v, char *err,
                        size_t errlen) {
    int lo = k * MOSAIC_IMAGES, n = dataset_split_size(s->ds, s->split) - lo;
    if (n > MOSAIC_IMAGES) n = MOSAIC_IMAGES;
    if (n <= 0) return 0;
    chart_tile tiles[MOSAIC_IMAGES] = {0};
    char names[MOSAIC_IMAGES][256];
    chart_box *gt = NULL, *pred = xmalloc((v->ndets ? v->ndets : 1) * sizeof *pred);
    size_t ngt = 0, npred = 0;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        dataset_sample smp;
        char file[256];
        /* HDF5 is not thread-safe here and the checkpoint writer thread may be writing a version
         * (the last validation comes while versions are still queued): take its lock */
        loader_io_lock();
        int got = dataset_read(s->ds, s->split, lo + i, &smp, err, errlen);
        if (got == 0 && dataset_filename(s->ds, s->split, lo + i, file, sizeof file) != 0)
            snprintf(file, sizeof file, "val %d", lo + i);
        loader_io_unlock();
        if (got != 0) {
            rc = -1;
            break;
        }
        uint8_t *rgb = NULL;
        int h = smp.height, w = smp.width;
        rc = image_decode(smp.bytes, smp.nbytes, smp.encoding, 0, 0, &rgb, &h, &w, err, errlen);
        if (rc == 0) {
            tiles[i] = (chart_tile){.rgb = rgb, .w = w, .h = h, .name = names[i]};
            const char *base = strrchr(file, '/'); /* plot_images shows the file's name */
            snprintf(names[i], sizeof names[i], "%s", base ? base + 1 : file);
            gt = xrealloc(gt, (ngt + (size_t)smp.nboxes + 1) * sizeof *gt);
            for (int j = 0; j < smp.nboxes; j++) {
                const float *l = smp.labels + 5 * j;
                gt[ngt++] = (chart_box){.tile = i,
                                        .cls = (int)l[0],
                                        .conf = -1,
                                        .x1 = (l[1] - l[3] / 2) * w,
                                        .y1 = (l[2] - l[4] / 2) * h,
                                        .x2 = (l[1] + l[3] / 2) * w,
                                        .y2 = (l[2] + l[4] / 2) * h};
            }
        }
        dataset_sample_free(&smp);
    }
    for (size_t j = 0; j < v->ndets; j++) {
        const val_plot_det *d = &v->dets[j];
        if (d->image >= lo && d->image < lo + n && d->conf > VAL_PLOT_CONF)
            pred[npred++] = (chart_box){d->image - lo, d->cls, d->conf, d->x1, d->y1, d->x2, d->y2};
    }
    char path[PATH_MAX + 32], file[64];
    if (rc == 0) {
        snprintf(file, sizeof file, "val_batch%d_labels.jpg", k);
        rc = chart_run_path(s, file, path, sizeof path, err, errlen);
    }
    if (rc == 0) rc = chart_mosaic(tiles, n, gt, ngt, s->names, s->nc, s->imgsz, path, err, errlen);
    if (rc == 0) {
        snprintf(file, sizeof file, "val_batch%d_pred.jpg", k);
        rc = chart_run_path(s, file, path, sizeof path, err, errlen);
    }
    if (rc == 0)
        rc = chart_mosaic(tiles, n, pred, npred, s->names, s->nc, s->imgsz, path, err, errlen);
    for (int i = 0; i < n; i++) free((void *)tiles[i].rgb);
    free(gt);
    free(pred);
    return rc;
}

int chart_run_validation(const chart_run *s, const chart_validation *v, char *err, size_t errlen) {
    char path[PATH_MAX + 32];
    int rc = 0;
    if (v->m->n_eval > 0) { /* curves exist only for classes with ground truth */
        static const struct {
            const char *file;
            int which; /* -1: PR */
        } curves[4] = {{"PR_curve.png", -1},
                       {"F1_curve.png", CHART_F1},
                       {"P_curve.png", CHART_PRECISION},
                       {"R_curve.png", CHART_RECALL}};
        for (int i = 0; i < 4 && rc == 0; i++) {
            rc = chart_run_path(s, curves[i].file, path, sizeof path, err, errlen);
            if (rc == 0)
                rc = curves[i].which < 0
                         ? chart_pr_curve(v->m, s->names, path, err, errlen)
                         : chart_mc_curve(v->m, curves[i].which, s->names, path, err, errlen);
        }
    }
    for (int norm = 1; norm >= 0 && rc == 0; norm--) {
        rc = chart_run_path(s, norm ? "confusion_matrix_normalized.png" : "confusion_matrix.png",
                            path, sizeof path, err, errlen);
        if (rc == 0) rc = chart_confusion(v->confusion, s->nc, s->names, norm, path, err, errlen);
    }
    for (int k = 0; k * MOSAIC_IMAGES < VAL_PLOT_IMAGES && rc == 0; k++)
        rc = draw_mosaics(s, k, v, err, errlen);
    return rc;
}
