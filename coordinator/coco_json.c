#include "coordinator/coco_json.h"

#include "common/atomic_file.h"
#include "common/log.h"
#include "dataio/loader.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Python's round(x, d) for the values at hand (half away from zero in binary is what round()
 * of the nearest double does for these magnitudes up to ties, which do not matter here) */
static double round_to(double x, int d) {
    double k = pow(10, d);
    return round(x * k) / k;
}

typedef struct {
    const val_plot_det *d;
    size_t order;
} keyed;

static int by_image(const void *pa, const void *pb) {
    const keyed *a = pa, *b = pb;
    if (a->d->image != b->d->image) return a->d->image < b->d->image ? -1 : 1;
    return (a->order > b->order) - (a->order < b->order);
}

int coco_predictions_write(const char *path, dataset *ds, split_id split, const val_plot_det *dets,
                           size_t n, char *err, size_t errlen) {
    keyed *k = xmalloc((n ? n : 1) * sizeof *k);
    for (size_t i = 0; i < n; i++) k[i] = (keyed){&dets[i], i};
    qsort(k, n, sizeof *k, by_image);
    cJSON *a = cJSON_CreateArray();
    int last = -1;
    char name[4096] = "", stem[4096] = "";
    bool numeric = false;
    for (size_t i = 0; i < n; i++) {
        const val_plot_det *d = k[i].d;
        if (d->image != last) {
            last = d->image;
            loader_io_lock(); /* HDF5: the checkpoint writer thread may be writing */
            int got = dataset_filename(ds, split, d->image, name, sizeof name);
            loader_io_unlock();
            if (got != 0 || !name[0]) snprintf(name, sizeof name, "%06d", d->image);
            const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
            memmove(name, base, strlen(base) + 1);
            snprintf(stem, sizeof stem, "%s", name);
            char *dot = strrchr(stem, '.');
            if (dot) *dot = 0;
            numeric = stem[0] != 0;
            for (const char *p = stem; *p; p++) numeric &= isdigit((unsigned char)*p) != 0;
        }
        cJSON *o = cJSON_CreateObject();
        if (numeric)
            cJSON_AddNumberToObject(o, "image_id", strtod(stem, NULL));
        else
            cJSON_AddStringToObject(o, "image_id", stem);
        cJSON_AddStringToObject(o, "file_name", name);
        cJSON_AddNumberToObject(o, "category_id", d->cls);
        double b[4] = {d->x1, d->y1, (double)d->x2 - d->x1, (double)d->y2 - d->y1};
        cJSON *bb = cJSON_AddArrayToObject(o, "bbox");
        for (int j = 0; j < 4; j++) cJSON_AddItemToArray(bb, cJSON_CreateNumber(round_to(b[j], 3)));
        cJSON_AddNumberToObject(o, "score", round_to(d->conf, 5));
        cJSON_AddItemToArray(a, o);
    }
    free(k);
    char *text = cJSON_Print(a);
    cJSON_Delete(a);
    if (!text) FATAL("cJSON_Print: out of memory");
    int rc = atomic_write_file(path, text, strlen(text), err, errlen);
    free(text);
    return rc;
}
