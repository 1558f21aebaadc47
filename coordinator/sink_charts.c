/* The charts as a metric sink (plots=True): labels.jpg when the run opens, results.png redrawn
 * after every epoch, and after the last validation the PR / F1 / P / R curves, both confusion
 * matrices and the val_batch{0,1,2}_labels.jpg / _pred.jpg mosaics (charts.h). */
#include "common/log.h"
#include "coordinator/charts.h"
#include "coordinator/metric_sink.h"
#include "dataio/decode.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOSAIC_IMAGES 16 /* plot_images' max_subplots */

typedef struct {
    char dir[PATH_MAX];
    results_table table; /* every epoch so far: results.png is redrawn from it */
    dataset *ds;
    int nc, imgsz;
    const char **names;
} charts_sink;

static int path_in(const charts_sink *s, const char *file, char *out, size_t n, char *err,
                   size_t errlen) {
    if (snprintf(out, n, "%s/%s", s->dir, file) >= (int)n)
        return errf(err, errlen, "%s: path too long", s->dir);
    return 0;
}

/* labels.jpg from the train split's labels (Ultralytics plots it when training starts). */
static int draw_labels(charts_sink *s, char *err, size_t errlen) {
    int n = dataset_split_size(s->ds, SPLIT_TRAIN);
    size_t nb = (size_t)dataset_split_boxes(s->ds, SPLIT_TRAIN), k = 0;
    float *boxes = xmalloc((nb ? nb : 1) * 4 * sizeof *boxes);
    int *cls = xmalloc((nb ? nb : 1) * sizeof *cls);
    for (int i = 0; i < n; i++) {
        const float *l;
        int m;
        if (dataset_labels(s->ds, SPLIT_TRAIN, i, &l, &m) != 0) continue;
        for (int j = 0; j < m && k < nb; j++, k++) {
            cls[k] = (int)l[5 * j];
            memcpy(boxes + 4 * k, l + 5 * j + 1, 4 * sizeof *boxes);
        }
    }
    char path[PATH_MAX + 32];
    int rc = path_in(s, "labels.jpg", path, sizeof path, err, errlen);
    if (rc == 0) rc = chart_labels(boxes, cls, k, s->nc, s->names, path, err, errlen);
    free(boxes);
    free(cls);
    return rc;
}

static int charts_epoch(void *self, const sink_epoch *r, char *err, size_t errlen) {
    charts_sink *s = self;
    const char *names[RESULTS_MAX_COLUMNS];
    double v[RESULTS_MAX_COLUMNS];
    int n = results_csv_columns(r->row, names, v);
    results_table_add(&s->table, n, names, v);
    char path[PATH_MAX + 32];
    if (path_in(s, "results.png", path, sizeof path, err, errlen) != 0) return -1;
    return chart_results(&s->table, path, err, errlen);
}

/* Mosaic k of the val images [16 k, 16 k + 16): ground truth, then predictions. */
static int draw_mosaics(charts_sink *s, int k, const sink_validation *v, char *err, size_t errlen) {
    int lo = k * MOSAIC_IMAGES, n = dataset_split_size(s->ds, SPLIT_VAL) - lo;
    if (n > MOSAIC_IMAGES) n = MOSAIC_IMAGES;
    if (n <= 0) return 0;
    chart_tile tiles[MOSAIC_IMAGES] = {0};
    char names[MOSAIC_IMAGES][256];
    chart_box *gt = NULL, *pred = xmalloc((v->ndets ? v->ndets : 1) * sizeof *pred);
    size_t ngt = 0, npred = 0;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        dataset_sample smp;
        if (dataset_read(s->ds, SPLIT_VAL, lo + i, &smp, err, errlen) != 0) {
            rc = -1;
            break;
        }
        uint8_t *rgb = NULL;
        int h = smp.height, w = smp.width;
        rc = image_decode(smp.bytes, smp.nbytes, smp.encoding, 0, 0, &rgb, &h, &w, err, errlen);
        if (rc == 0) {
            tiles[i] = (chart_tile){.rgb = rgb, .w = w, .h = h, .name = names[i]};
            char file[256];
            if (dataset_filename(s->ds, SPLIT_VAL, lo + i, file, sizeof file) != 0)
                snprintf(file, sizeof file, "val %d", lo + i);
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
        if (d->image >= lo && d->image < lo + n)
            pred[npred++] = (chart_box){d->image - lo, d->cls, d->conf, d->x1, d->y1, d->x2, d->y2};
    }
    char path[PATH_MAX + 32], file[64];
    if (rc == 0) {
        snprintf(file, sizeof file, "val_batch%d_labels.jpg", k);
        rc = path_in(s, file, path, sizeof path, err, errlen);
    }
    if (rc == 0) rc = chart_mosaic(tiles, n, gt, ngt, s->names, s->nc, s->imgsz, path, err, errlen);
    if (rc == 0) {
        snprintf(file, sizeof file, "val_batch%d_pred.jpg", k);
        rc = path_in(s, file, path, sizeof path, err, errlen);
    }
    if (rc == 0)
        rc = chart_mosaic(tiles, n, pred, npred, s->names, s->nc, s->imgsz, path, err, errlen);
    for (int i = 0; i < n; i++) free((void *)tiles[i].rgb);
    free(gt);
    free(pred);
    return rc;
}

static int charts_validation(void *self, const sink_validation *v, char *err, size_t errlen) {
    charts_sink *s = self;
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
            rc = path_in(s, curves[i].file, path, sizeof path, err, errlen);
            if (rc == 0)
                rc = curves[i].which < 0
                         ? chart_pr_curve(v->m, s->names, path, err, errlen)
                         : chart_mc_curve(v->m, curves[i].which, s->names, path, err, errlen);
        }
    }
    for (int norm = 1; norm >= 0 && rc == 0; norm--) {
        rc = path_in(s, norm ? "confusion_matrix_normalized.png" : "confusion_matrix.png", path,
                     sizeof path, err, errlen);
        if (rc == 0) rc = chart_confusion(v->confusion, v->nc, s->names, norm, path, err, errlen);
    }
    for (int k = 0; k * MOSAIC_IMAGES < VAL_PLOT_IMAGES && rc == 0; k++)
        rc = draw_mosaics(s, k, v, err, errlen);
    return rc;
}

static int charts_close(void *self, bool ok, char *err, size_t errlen) {
    (void)ok, (void)err, (void)errlen;
    charts_sink *s = self;
    results_table_free(&s->table);
    free(s->names);
    free(s);
    return 0;
}

static const metric_sink_ops charts_ops = {.name = "charts",
                                           .epoch = charts_epoch,
                                           .validation = charts_validation,
                                           .close = charts_close};

int sink_charts_open(const sink_run *run, metric_sink *out, char *err, size_t errlen) {
    charts_sink *s = xcalloc(1, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "%s", run->save_dir);
    s->ds = run->ds;
    s->nc = dataset_num_classes(run->ds);
    s->imgsz = (int)run->args->imgsz;
    s->names = xcalloc((size_t)(s->nc > 0 ? s->nc : 1), sizeof *s->names);
    for (int c = 0; c < s->nc; c++) s->names[c] = dataset_class_name(run->ds, c);
    /* a continued run (resume) keeps the epochs already in results.csv on its chart */
    char path[PATH_MAX + 32];
    int rc = path_in(s, "results.csv", path, sizeof path, err, errlen);
    if (rc == 0) rc = results_table_read_csv(path, &s->table, err, errlen);
    if (rc == 0 && dataset_split_size(run->ds, SPLIT_TRAIN) > 0) rc = draw_labels(s, err, errlen);
    if (rc != 0) {
        charts_close(s, false, NULL, 0);
        return -1;
    }
    *out = (metric_sink){.ops = &charts_ops, .self = s};
    return 0;
}
