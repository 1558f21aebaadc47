/* What the plots of a validation need beyond the match records (common/val_record.h): the
 * detection confusion matrix and the predictions on the first few val images. Each worker fills
 * one for its share (worker/val_plot_collect.h) and sends it; the coordinator merges them. Both
 * parts are sums or unions over images, so the result does not depend on the split. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/val_record.h"

typedef struct val_plot_data {
    int nc;
    int64_t *confusion; /* [(nc + 1)][(nc + 1)]: [predicted][true], index nc = background */
    val_plot_det *dets; /* on val images [0, VAL_PLOT_IMAGES) above VAL_PLOT_CONF, or with `all`
                         * every kept prediction of every image (save_json) */
    size_t ndets, cap;
    bool all;
} val_plot_data;

void val_plot_data_init(val_plot_data *d, int nc);
void val_plot_data_free(val_plot_data *d);
void val_plot_data_add_det(val_plot_data *d, const val_plot_det *det);
/* d += other (confusion counts summed, predictions appended). */
void val_plot_data_merge(val_plot_data *d, const val_plot_data *other);
