/* The coordinator's side of a training run between steps: validation gathering and metrics,
 * results.csv, weights files (last/best), best fitness, control words, final summary. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "common/protocol.h"
#include "common/train_args.h"
#include "coordinator/metric_sink.h"
#include "coordinator/telemetry.h"
#include "coordinator/train_prep.h"
#include "coordinator/val_plan.h"
#include "dataio/dataset.h"

typedef struct train_state {
    train_args *args;
    dataset *ds;
    int workers;
    double best_fitness;
    int best_epoch; /* of best.h5: the last epoch whose fitness reached the best so far */
    early_stop es;  /* EarlyStopping's own best (train_prep.h) */
    double best_map50, best_map50_95;
    double train_loss[3]; /* epoch means, set by the caller before end_epoch */
    double lr[3];
    double last_map50, last_map50_95;
    int epochs_done;
    /* This epoch's per-step times summed (mean over workers): where the time went. */
    double ep_compute_s, ep_stall_s, ep_comm_s;
    int ep_steps;
    bool save_requested, stop_requested;
    telemetry *tel;            /* NULL: no telemetry (control requests are not served) */
    metric_sinks *sinks;       /* where step and epoch records go (results.csv, events, charts) */
    const char *loss_names[3]; /* box_loss, cls_loss, dfl_loss or l1_loss (train_prep.h) */
    val_plan vplan;            /* rectangular validation batches, made at the first validation */
    bool vplan_made;
} train_state;

int train_state_write_args(const train_args *a, char *err, size_t errlen);
void train_state_init(train_state *st, train_args *a, dataset *ds, int workers);
/* After each step's reports: remember lr, send the step record to the sinks. */
void train_state_step(train_state *st, int epoch, int step, int steps, const step_report *r,
                      int workers, const double mean_loss[3], double images_per_s);
/* The control word for the workers after this step: serves telemetry requests (save, stop). */
int32_t train_state_control(train_state *st);
/* After CTRL_SAVE: receives worker 0's state and writes weights/last.h5 (mid-epoch checkpoint). */
int train_state_save_now(train_state *st, int epoch, long step, char *err, size_t errlen);
/* Validation (when due), metrics, results.csv row (time: now - t_train, after validation),
 * last/best weights. */
int train_state_end_epoch(train_state *st, int epoch, bool final, double t_train, char *err,
                          size_t errlen);
void train_state_finish(train_state *st, bool ok, double elapsed);
/* Frees what init and validation allocated. */
void train_state_free(train_state *st);
