#include "coordinator/results_csv.h"

#include "common/log.h"
#include "coordinator/metric_sink.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static double r5(double x) {
    return round(x * 1e5) / 1e5;
}

int results_csv_columns(const epoch_row *r, const char **names, double *values) {
    static const char *const fixed[12] = {"epoch",
                                          "time",
                                          "train/box_loss",
                                          "train/cls_loss",
                                          "train/dfl_loss",
                                          "metrics/precision(B)",
                                          "metrics/recall(B)",
                                          "metrics/mAP50(B)",
                                          "metrics/mAP50-95(B)",
                                          "val/box_loss",
                                          "val/cls_loss",
                                          "val/dfl_loss"};
    static const char *const lr[8] = {"lr/pg0", "lr/pg1", "lr/pg2", "lr/pg3",
                                      "lr/pg4", "lr/pg5", "lr/pg6", "lr/pg7"};
    const double v[12] = {r->epoch,  r->time,  r->train[0], r->train[1], r->train[2], r->precision,
                          r->recall, r->map50, r->map50_95, r->val[0],   r->val[1],   r->val[2]};
    int n = 0;
    for (int i = 0; i < 12; i++, n++) names[n] = fixed[i], values[n] = v[i];
    if (r->third_loss && strcmp(r->third_loss, "l1_loss") == 0) /* reg_max 1 (8.4.190) */
        names[4] = "train/l1_loss", names[11] = "val/l1_loss";
    for (int i = 0; i < r->n_lr && i < 8; i++, n++) names[n] = lr[i], values[n] = r->lr[i];
    return n;
}

void results_csv_header(const epoch_row *r, FILE *f) {
    const char *names[RESULTS_MAX_COLUMNS];
    double v[RESULTS_MAX_COLUMNS];
    int n = results_csv_columns(r, names, v);
    for (int i = 0; i < n; i++) fprintf(f, "%s%s", names[i], i + 1 < n ? "," : "\n");
}

void results_csv_row(const epoch_row *r, FILE *f) {
    const char *names[RESULTS_MAX_COLUMNS];
    double v[RESULTS_MAX_COLUMNS];
    int n = results_csv_columns(r, names, v);
    /* epoch as an integer, time and the 10 losses and metrics rounded, learning rates as they are
     */
    fprintf(f, "%d", r->epoch);
    for (int i = 1; i < n; i++) fprintf(f, ",%.6g", i < 12 ? r5(v[i]) : v[i]);
    fprintf(f, "\n");
}

int results_csv_append(const char *path, const epoch_row *r, char *err, size_t errlen) {
    int fresh = access(path, F_OK) != 0;
    FILE *f = fopen(path, "a");
    if (!f) return errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    if (fresh) results_csv_header(r, f);
    results_csv_row(r, f);
    if (ferror(f) | (fclose(f) != 0))
        return errf(err, errlen, "%s: write failed: %s", path, strerror(errno));
    return 0;
}

/* ---- as a metric sink ------------------------------------------------------------------------ */

typedef struct {
    char path[PATH_MAX];
} csv_sink;

static int csv_epoch(void *self, const sink_epoch *r, char *err, size_t errlen) {
    return results_csv_append(((csv_sink *)self)->path, r->row, err, errlen);
}

static int csv_close(void *self, bool ok, char *err, size_t errlen) {
    (void)ok, (void)err, (void)errlen;
    free(self);
    return 0;
}

static const metric_sink_ops csv_ops = {
    .name = "results.csv", .epoch = csv_epoch, .close = csv_close};

int sink_results_csv_open(const sink_run *run, metric_sink *out, char *err, size_t errlen) {
    csv_sink *s = xcalloc(1, sizeof *s);
    if (snprintf(s->path, sizeof s->path, "%s/results.csv", run->save_dir) >= (int)sizeof s->path) {
        free(s);
        return errf(err, errlen, "%s: path too long", run->save_dir);
    }
    *out = (metric_sink){.ops = &csv_ops, .self = s};
    return 0;
}
