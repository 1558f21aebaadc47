/* TensorBoard events as a metric sink. Per epoch (step = the 1-based epoch, as Ultralytics'
 * TensorBoard callback logs): every results.csv column but `epoch` itself, under the column's
 * name. Per optimizer step (step = global step): this step's loss items (mean over workers) and
 * learning rates, under "step/...". */
#include "common/log.h"
#include "coordinator/metric_sink.h"
#include "coordinator/tfevents.h"

#include <string.h>

static int tb_step(void *self, const sink_step *r, char *err, size_t errlen) {
    const char *tags[6] = {"step/box_loss", "step/cls_loss", "step/dfl_loss",
                           "step/lr/pg0",   "step/lr/pg1",   "step/lr/pg2"};
    if (r->loss_names && strcmp(r->loss_names[2], "l1_loss") == 0) tags[2] = "step/l1_loss";
    const double v[6] = {r->loss[0], r->loss[1], r->loss[2], r->lr[0], r->lr[1], r->lr[2]};
    return tfevents_write_scalars(self, r->wall_time, r->global_step, 6, tags, v, err, errlen);
}

static int tb_epoch(void *self, const sink_epoch *r, char *err, size_t errlen) {
    const char *names[RESULTS_MAX_COLUMNS];
    double v[RESULTS_MAX_COLUMNS];
    int n = results_csv_columns(r->row, names, v);
    return tfevents_write_scalars(self, r->wall_time, r->row->epoch, n - 1, names + 1, v + 1, err,
                                  errlen);
}

static int tb_close(void *self, bool ok, char *err, size_t errlen) {
    (void)ok;
    return tfevents_close(self, err, errlen);
}

static const metric_sink_ops tb_ops = {
    .name = "tensorboard", .step = tb_step, .epoch = tb_epoch, .close = tb_close};

int sink_tensorboard_open(const sink_run *run, metric_sink *out, char *err, size_t errlen) {
    tfevents *t = tfevents_open(run->save_dir, err, errlen);
    if (!t) return -1;
    *out = (metric_sink){.ops = &tb_ops, .self = t};
    return 0;
}
