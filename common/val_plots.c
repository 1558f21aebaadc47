#include "common/val_plots.h"

#include "common/log.h"

#include <stdlib.h>
#include <string.h>

void val_plot_data_init(val_plot_data *d, int nc) {
    *d = (val_plot_data){.nc = nc};
    d->confusion = xcalloc((size_t)(nc + 1) * (size_t)(nc + 1), sizeof *d->confusion);
}

void val_plot_data_free(val_plot_data *d) {
    free(d->confusion);
    free(d->dets);
    memset(d, 0, sizeof *d);
}

void val_plot_data_add_det(val_plot_data *d, const val_plot_det *det) {
    if (d->ndets == d->cap) {
        d->cap = 2 * d->cap + 64;
        d->dets = xrealloc(d->dets, d->cap * sizeof *d->dets);
    }
    d->dets[d->ndets++] = *det;
}

void val_plot_data_merge(val_plot_data *d, const val_plot_data *other) {
    size_t n = (size_t)(d->nc + 1) * (size_t)(d->nc + 1);
    for (size_t i = 0; i < n; i++) d->confusion[i] += other->confusion[i];
    for (size_t i = 0; i < other->ndets; i++) val_plot_data_add_det(d, &other->dets[i]);
}
