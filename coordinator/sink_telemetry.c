/* The PUB socket as a metric sink: one "step" event per step, one "epoch" event per epoch (the
 * event formats are telemetry.h's). */
#include "common/log.h"
#include "coordinator/metric_sink.h"
#include "coordinator/telemetry.h"

#include <math.h>
#include <stdlib.h>
/* The step event carries the slowest worker's times (the step waits for it) and every worker's. */
static int tel_step(void *self, const sink_step *r, char *err, size_t errlen) {
    static const char *const names[3] = {"box_loss", "cls_loss", "dfl_loss"};
    telemetry_worker_timing *wt = xcalloc((size_t)r->workers, sizeof *wt);
    telemetry_step e = {.epoch = r->epoch + 1,
                        .epochs = r->epochs,
                        .step = r->step + 1,
                        .steps = r->steps,
                        .nloss = 3,
                        .loss_names = r->loss_names ? r->loss_names : names,
                        .losses = r->mean_loss,
                        .images_per_s = r->images_per_s,
                        .lr = r->lr[0],
                        .eta_s = -1,
                        .nworkers = r->workers,
                        .workers = wt};
    for (int w = 0; w < r->workers; w++) {
        const step_report *p = &r->reports[w];
        wt[w] = (telemetry_worker_timing){.rank = w + 1,
                                          .compute_s = p->compute_s,
                                          .comm_s = p->comm_total_s,
                                          .comm_exposed_s = p->comm_exposed_s,
                                          .stall_s = p->stall_s};
        e.compute_s = fmax(e.compute_s, p->compute_s);
        e.comm_s = fmax(e.comm_s, p->comm_total_s);
        e.comm_exposed_s = fmax(e.comm_exposed_s, p->comm_exposed_s);
        e.loader_stall_s = fmax(e.loader_stall_s, p->stall_s);
    }
    int rc = telemetry_publish_step(self, &e);
    free(wt);
    return rc ? errf(err, errlen, "step event not sent") : 0;
}

/* The epoch event: results.csv's loss and metric columns (not epoch, time or lr) and fitness. */
static int tel_epoch(void *self, const sink_epoch *r, char *err, size_t errlen) {
    const char *names[RESULTS_MAX_COLUMNS + 1];
    double v[RESULTS_MAX_COLUMNS + 1];
    results_csv_columns(r->row, names, v);
    names[12] = "fitness", v[12] = r->fitness;
    if (telemetry_publish_epoch(self, r->row->epoch, r->epochs, 11, names + 2, v + 2) != 0)
        return errf(err, errlen, "epoch event not sent");
    return 0;
}

/* The socket is the coordinator's (control, warnings): closing the sink leaves it open. */
static int tel_close(void *self, bool ok, char *err, size_t errlen) {
    (void)self, (void)ok, (void)err, (void)errlen;
    return 0;
}

static const metric_sink_ops tel_ops = {
    .name = "telemetry", .step = tel_step, .epoch = tel_epoch, .close = tel_close};

metric_sink sink_telemetry(telemetry *tel) {
    return (metric_sink){.ops = &tel_ops, .self = tel};
}
