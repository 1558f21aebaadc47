/* The charts as a metric sink (plots=True): labels.jpg when the run opens, results.png redrawn
 * after every epoch, and after the last validation the PR / F1 / P / R curves, both confusion
 * matrices and the val_batch{0,1,2}_labels.jpg / _pred.jpg mosaics (charts.h). */
#include "common/log.h"
#include "coordinator/charts.h"
#include "coordinator/metric_sink.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct {
    chart_run run;
    results_table table; /* every epoch so far: results.png is redrawn from it */
} charts_sink;

static int charts_epoch(void *self, const sink_epoch *r, char *err, size_t errlen) {
    charts_sink *s = self;
    const char *names[RESULTS_MAX_COLUMNS];
    double v[RESULTS_MAX_COLUMNS];
    int n = results_csv_columns(r->row, names, v);
    results_table_add(&s->table, n, names, v);
    char path[PATH_MAX + 32];
    if (chart_run_path(&s->run, "results.png", path, sizeof path, err, errlen) != 0) return -1;
    return chart_results(&s->table, path, err, errlen);
}

static int charts_validation(void *self, const sink_validation *v, char *err, size_t errlen) {
    charts_sink *s = self;
    chart_validation cv = {
        .m = v->m, .confusion = v->confusion, .ndets = v->ndets, .dets = v->dets};
    return chart_run_validation(&s->run, &cv, err, errlen);
}

static int charts_close(void *self, bool ok, char *err, size_t errlen) {
    (void)ok, (void)err, (void)errlen;
    charts_sink *s = self;
    results_table_free(&s->table);
    chart_run_free(&s->run);
    free(s);
    return 0;
}

static const metric_sink_ops charts_ops = {.name = "charts",
                                           .epoch = charts_epoch,
                                           .validation = charts_validation,
                                           .close = charts_close};

int sink_charts_open(const sink_run *run, metric_sink *out, char *err, size_t errlen) {
    charts_sink *s = xcalloc(1, sizeof *s);
    chart_run_init(&s->run, run->save_dir, run->ds, (int)run->args->imgsz);
    /* a continued run (resume) keeps the epochs already in results.csv on its chart */
    char path[PATH_MAX + 32];
    int rc = chart_run_path(&s->run, "results.csv", path, sizeof path, err, errlen);
    if (rc == 0) rc = results_table_read_csv(path, &s->table, err, errlen);
    /* Ultralytics plots the training labels when training starts */
    if (rc == 0 && dataset_split_size(run->ds, SPLIT_TRAIN) > 0)
        rc = chart_run_labels(&s->run, SPLIT_TRAIN, err, errlen);
    if (rc != 0) {
        charts_close(s, false, NULL, 0);
        return -1;
    }
    *out = (metric_sink){.ops = &charts_ops, .self = s};
    return 0;
}
