#include "coordinator/results_csv.h"

#include "common/log.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

static double r5(double x) {
    return round(x * 1e5) / 1e5;
}

int results_csv_append(const char *path, const epoch_row *r, char *err, size_t errlen) {
    int fresh = access(path, F_OK) != 0;
    FILE *f = fopen(path, "a");
    if (!f) return errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    if (fresh) {
        const char *l3 = r->third_loss ? r->third_loss : "dfl_loss";
        fprintf(f,
                "epoch,time,train/box_loss,train/cls_loss,train/%s,metrics/precision(B),"
                "metrics/recall(B),metrics/mAP50(B),metrics/mAP50-95(B),val/box_loss,"
                "val/cls_loss,val/%s",
                l3, l3);
        for (int i = 0; i < r->n_lr; i++) fprintf(f, ",lr/pg%d", i);
        fprintf(f, "\n");
    }
    fprintf(f, "%d,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g", r->epoch, r5(r->time),
            r5(r->train[0]), r5(r->train[1]), r5(r->train[2]), r5(r->precision), r5(r->recall),
            r5(r->map50), r5(r->map50_95), r5(r->val[0]), r5(r->val[1]), r5(r->val[2]));
    for (int i = 0; i < r->n_lr; i++) fprintf(f, ",%.6g", r->lr[i]);
    fprintf(f, "\n");
    if (ferror(f) | (fclose(f) != 0))
        return errf(err, errlen, "%s: write failed: %s", path, strerror(errno));
    return 0;
}
