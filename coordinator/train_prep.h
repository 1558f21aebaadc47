/* What the coordinator settles from the data and the `ultralytics` release before and during
 * training, and the lines it prints from what worker 0 built (common/protocol.h model_info). */
#pragma once
#include <stdbool.h>

#include "common/protocol.h"
#include "common/train_args.h"
#include "dataio/dataset.h"

/* Ultralytics' _check_max_det (8.4.190, max_det_raise): the densest image among the first
 * n_train train images and the val split; when it has more labels than max_det, a warning, and
 * max_det becomes that count if it was left at the default 300. Returns the densest count. */
long train_prep_max_det(train_args *a, dataset *ds, long n_train);

/* cls_pw > 0 (8.4.190): class weights over the first n_train train images' labels,
 * (1 / count)^cls_pw, classes without labels get the mean of the others, normalised to mean 1,
 * into w[nc] (float32, as Ultralytics computes them), and printed. Returns false (w untouched)
 * when cls_pw is 0 or the images have no labels (Ultralytics keeps no weights then). */
bool train_prep_class_weights(const train_args *a, dataset *ds, long n_train, float *w);

/* close_mosaic: whether mosaic is off in `epoch` (0-based) given whether it was off already.
 * close_mosaic 0: never. 8.4.190 (close_mosaic_from): off from epoch max(0, epochs -
 * close_mosaic) on; 8.4.33: off from epoch == epochs - close_mosaic on, so never when
 * close_mosaic > epochs. Once off it stays off (the dataset's mosaic is cleared for good). */
bool train_prep_mosaic_closed(const train_args *a, long epoch, long epochs, bool closed);

/* Ultralytics' build_optimizer lines (with optimizer=auto, the resolution first), printed so that
 * train.log has them:
 *   optimizer: 'optimizer=auto' found, ignoring 'lr0=0.01' and determining best 'optimizer' and
 *   'lr0' automatically...
 *   optimizer: AdamW(lr=0.001429, momentum=0.9) with parameter groups 57 weight(decay=0.0), 64
 *   weight(decay=0.0005), 63 bias(decay=0.0)
 * (8.4.33's first line also names momentum). */
void train_prep_print_optimizer(const train_args *a, const model_info *mi);

/* The third loss's name: "l1_loss" for reg_max 1 in 8.4.190 (l1_loss_name), else "dfl_loss". */
const char *train_prep_third_loss(const train_args *a, const model_info *mi);

/* Ultralytics' EarlyStopping: a validated epoch becomes the best when its fitness is strictly
 * higher, or while the best is still 0 ("allow for early zero-fitness stage"); training stops
 * once epoch - best_epoch >= patience (patience 0: never). */
typedef struct early_stop {
    double best;    /* 0 at the start */
    int best_epoch; /* 0-based; -1 before any */
} early_stop;
void train_prep_early_stop_update(early_stop *es, int epoch, double fitness);
bool train_prep_early_stop_due(const early_stop *es, int epoch, long patience);
