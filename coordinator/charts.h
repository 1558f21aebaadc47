/* The charts of a run directory, drawn as Ultralytics 8.4.190 draws them (layout facts from its
 * plot_results, plot_pr_curve, plot_mc_curve, ConfusionMatrix.plot, plot_labels, plot_images),
 * on plot.h. Every function writes its file atomically and returns 0, or -1 with one line in err.
 *
 *   results.png                  chart_results: 2 x 5 panels, 2400 x 1200 px
 *   PR_curve.png                 chart_pr_curve: 2250 x 1500 px
 *   F1_curve.png, P_curve.png, R_curve.png   chart_mc_curve: 2250 x 1500 px
 *   confusion_matrix.png, confusion_matrix_normalized.png   chart_confusion: 3000 x 2250 px
 *   labels.jpg                   chart_labels: 1600 x 1600 px
 *   val_batchK_labels.jpg, val_batchK_pred.jpg   chart_mosaic: up to 1920 x 1920 px */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/val_record.h"
#include "coordinator/metrics.h"
#include "dataio/dataset.h"

#include <limits.h>

/* ---- results.png ----------------------------------------------------------------------------- */

/* Named columns and numeric rows, as results.csv holds them. */
typedef struct results_table {
    int ncol, nrow, caprow;
    char **names;
    double *v; /* [nrow][ncol] */
} results_table;

/* Appends one row; the first row fixes the columns (later rows are matched by name, missing
 * values are NaN). */
void results_table_add(results_table *t, int n, const char *const *names, const double *values);
/* Reads a results.csv (header + numeric rows) into an empty table. A missing file is an empty
 * table (0). -1 + err on a malformed file. */
int results_table_read_csv(const char *path, results_table *t, char *err, size_t errlen);
void results_table_free(results_table *t);

/* Panels, in Ultralytics' order: the first half of the loss columns (train), the first half of
 * the metric columns (P, R), the other losses (val), the other metrics (mAP50, mAP50-95); each the
 * values against the first column (epoch) with dots, and a dotted Gaussian-smoothed line. */
int chart_results(const results_table *t, const char *path, char *err, size_t errlen);
/* Ultralytics' _gaussian_filter1d: kernel radius int(4 sigma + 0.5), 'symmetric' edges. */
void chart_gaussian_smooth(const double *y, int n, double sigma, double *out);

/* ---- validation --------------------------------------------------------------------------------
 */

/* Per-class precision against recall (IoU 0.5 envelope) of the classes with ground truth, each
 * labelled "name AP50" when there are fewer than 21 of them (else grey, unlabelled), and their
 * mean in thick blue ("all classes mAP@0.5"). names[nc]. */
int chart_pr_curve(const val_metrics *m, const char *const *names, const char *path, char *err,
                   size_t errlen);

typedef enum { CHART_F1, CHART_PRECISION, CHART_RECALL } chart_metric;
/* One metric against confidence per class, and their mean smoothed (val_smooth_box, f = 0.1)
 * in thick blue, labelled "all classes <max> at <confidence>". */
int chart_mc_curve(const val_metrics *m, chart_metric which, const char *const *names,
                   const char *path, char *err, size_t errlen);

/* matrix[(nc + 1)][(nc + 1)]: [predicted][true], index nc is background. normalize: each column
 * divided by its sum (+1e-9); cells below 0.005 are left blank; values printed in cells when
 * there are fewer than 30 rows. */
int chart_confusion(const int64_t *matrix, int nc, const char *const *names, bool normalize,
                    const char *path, char *err, size_t errlen);

/* labels.jpg: instances per class (bars in class colours, counts on top, names below when
 * nc < 30), the first 500 boxes' outlines centred on a 1000 x 1000 canvas, and 50 x 50 2D
 * histograms of box centres (x, y) and sizes (width, height). boxes[n][4]: cx, cy, w, h
 * normalised. */
int chart_labels(const float *boxes, const int *cls, size_t n, int nc, const char *const *names,
                 const char *path, char *err, size_t errlen);

/* ---- image mosaics ------------------------------------------------------------------------------
 */

typedef struct chart_tile {
    const uint8_t *rgb; /* original image, RGB HWC */
    int w, h;
    const char *name; /* file name shown at the top left */
} chart_tile;

typedef struct chart_box {
    int tile, cls;
    float conf;           /* < 0: a label (no confidence shown) */
    float x1, y1, x2, y2; /* original-image pixels */
} chart_box;

/* Up to 16 tiles in a ceil(sqrt(n)) square grid, filled column by column as plot_images does,
 * each image fitted into its square tile (aspect kept, grey 114 bars), boxes in class colours with
 * "name" or "name conf" labels. The tile side is min(max_side, 1920 / grid). */
int chart_mosaic(const chart_tile *tiles, int ntiles, const chart_box *boxes, size_t nboxes,
                 const char *const *names, int nc, int max_side, const char *path, char *err,
                 size_t errlen);

/* One image at its own size with boxes (tile ignored) in class colours and "name 0.87" labels
 * (conf < 0: the name only), line width and text size as Ultralytics' Annotator picks them for
 * predict's saved images: lw = max(round((w + h) / 2 * 0.003), 2). PNG when path ends in .png,
 * else JPEG. */
int chart_annotated(const chart_tile *img, const chart_box *boxes, size_t nboxes,
                    const char *const *names, int nc, const char *path, char *err, size_t errlen);

/* ---- a run directory's charts from its dataset ------------------------------------------------
 */

typedef struct chart_run {
    char dir[PATH_MAX];
    dataset *ds; /* class names; labels; the plotted val images are read from it */
    int nc, imgsz;
    const char **names; /* [nc], the dataset's */
    split_id split;     /* whose images the validation mosaics show (SPLIT_VAL) */
} chart_run;

/* What the validation plots are drawn from. */
typedef struct chart_validation {
    const val_metrics *m;     /* with the per-class curves */
    const int64_t *confusion; /* [(nc + 1)][(nc + 1)], [predicted][true], nc = background */
    size_t ndets;
    const val_plot_det *dets; /* predictions on val images [0, VAL_PLOT_IMAGES), original px */
} chart_validation;

void chart_run_init(chart_run *r, const char *dir, dataset *ds, int imgsz);
void chart_run_free(chart_run *r);
/* dir/file into out; -1 + err when it does not fit. */
int chart_run_path(const chart_run *r, const char *file, char *out, size_t n, char *err,
                   size_t errlen);
/* labels.jpg from one split's labels. */
int chart_run_labels(const chart_run *r, split_id split, char *err, size_t errlen);
/* PR_curve.png, F1/P/R_curve.png (when a class has ground truth), confusion_matrix.png,
 * confusion_matrix_normalized.png, and val_batch{0,1,2}_labels.jpg / _pred.jpg of images
 * [16 k, 16 k + 16) of r->split at tile side min(imgsz, 1920 / grid). */
int chart_run_validation(const chart_run *r, const chart_validation *v, char *err, size_t errlen);
