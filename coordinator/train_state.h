/* The coordinator's side of a training run between steps: validation gathering and metrics,
 * results.csv, weights files (last/best), best fitness, control words, final summary. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "common/protocol.h"
#include "common/train_args.h"
#include "dataio/dataset.h"

typedef struct train_state {
    train_args *args;
    dataset *ds;
    int workers;
    double best_fitness;
    int best_epoch;
    double best_map50, best_map50_95;
    double train_loss[3]; /* epoch means, set by the caller before end_epoch */
    double lr[3];
    double last_map50, last_map50_95;
    int epochs_done;
    bool save_requested, stop_requested;
} train_state;

int train_state_write_args(const train_args *a, char *err, size_t errlen);
void train_state_init(train_state *st, train_args *a, dataset *ds, int workers);
/* After each step's reports: remember lr, pass telemetry on. */
void train_state_step(train_state *st, int epoch, int step, int steps, const step_report *r,
                      int workers, const double mean_loss[3], double images_per_s);
/* The control word for the workers after this step. */
int32_t train_state_control(train_state *st);
/* Validation (when due), metrics, results.csv row, last/best weights. */
int train_state_end_epoch(train_state *st, int epoch, bool final, double elapsed, char *err,
                          size_t errlen);
void train_state_finish(train_state *st, bool ok, double elapsed);
void train_state_free(train_state *st);
