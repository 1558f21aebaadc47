/* The coordinator's side of a training run between steps: validation gathering and metrics,
 * results.csv, checkpoint versions (train_ckpt.c), best fitness, control words, final summary. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "common/protocol.h"
#include "common/train_args.h"
#include "coordinator/ckpt_file.h"
#include "coordinator/ckpt_writer.h"
#include "coordinator/resume.h"
#include "coordinator/results_csv.h"
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
    int best_epoch; /* of best.h5: the last epoch whose fitness reached the best so far; -1 */
    early_stop es;  /* EarlyStopping's own best (train_prep.h) */
    double best_map50, best_map50_95;
    double loss_sum[3];   /* this epoch's summed step losses (box, cls, dfl), mean over workers */
    double train_loss[3]; /* epoch means, set by the caller before end_epoch */
    double lr[3];
    double last_map50, last_map50_95;
    int epochs_done;
    double t_train; /* now_seconds() at the start of training (earlier on resume) */
    /* This epoch's per-step times summed (mean over workers): where the time went. */
    double ep_compute_s, ep_stall_s, ep_comm_s;
    int ep_steps;
    bool save_requested, stop_requested;
    int stop_signal, stop_signal_rank; /* the stop signal in force (0: none) and who received it */
    int last_version;                  /* the newest version written by this run (0: none yet) */
    char last_version_where[64];       /* "epoch 2 step 3 of 5", "end of epoch 2" */
    telemetry *tel;                    /* NULL: no telemetry (control requests are not served) */
    metric_sinks *sinks;       /* where step and epoch records go (results.csv, events, charts) */
    const char *loss_names[3]; /* box_loss, cls_loss, dfl_loss or l1_loss (train_prep.h) */
    val_plan vplan;            /* rectangular validation batches, made at the first validation */
    bool vplan_made;
    bool mosaic_off; /* close_mosaic took effect (it stays off) */
    /* checkpoints (train_ckpt.c) */
    ckpt_writer *writer;
    char *results_text; /* results.csv as written so far ("" before the first row) */
    bool has_row;       /* last_row is the latest results.csv row */
    epoch_row last_row;
    double last_fitness;
    char *model_yaml, *args_yaml; /* lineage */
    char *class_names;            /* the dataset's, a JSON array (lineage) */
    char *pretrained;             /* the weights file a fine-tuned run started from, or NULL */
    char pretrained_sha256[65];
    char precision[160];        /* what the convolutions run in and why (model_info, lineage) */
    int submitted, failed_last; /* versions submitted; the newest's write failed */
    int test_save_epoch, test_save_step, test_hold_version; /* YOLO_TEST_* knobs */
} train_state;

int train_state_write_args(const train_args *a, char *err, size_t errlen);
/* resumed: the version resumed from (NULL for a fresh run); restores the position counters,
 * best fitness, elapsed time and results.csv (its text up to that version), and starts the
 * checkpoint writer. 0 or -1 with err. */
struct model_source;
/* src: the model and starting weights (model_source.h): its yaml text is recorded, and a
 * fine-tuned run's first version names the weights file as lineage parent. */
int train_state_init(train_state *st, train_args *a, dataset *ds, int workers,
                     const ckpt_meta *resumed, const resume_plan *plan,
                     const struct model_source *src, char *err, size_t errlen);
/* Where training starts: epoch (0-based) and its first step (0 unless resumed mid-epoch). */
void train_state_start(const train_state *st, const ckpt_meta *resumed, int *epoch, int *step);
/* After each step's reports: remember lr, send the step record to the sinks, report finished
 * versions. */
void train_state_step(train_state *st, int epoch, int step, int steps, const step_report *r,
                      int workers, const double mean_loss[3], double images_per_s);
/* The control word for the workers after this step: serves telemetry requests (save, stop) and
 * stop signals (the coordinator's own, or one a worker reported: CTRL_STOP). */
int32_t train_state_control(train_state *st, int epoch, int step);
/* A stop signal received by `rank` (0: this process): from now on the run stops at the next step
 * boundary (said once, on the terminal and in train.log). */
void train_state_note_signal(train_state *st, int sig, int rank);
/* At an epoch boundary, with the previous epoch's version queued: true when a stop signal has
 * arrived, so the run stops here without another version. */
bool train_state_signal_at_boundary(train_state *st);
/* The end of a run a signal stopped: the line (terminal, train.log) and the "preempted" event;
 * returns EXIT_STOPPED_BY_SIGNAL. After the versions are flushed. */
int train_state_finish_stopped(train_state *st);
/* After CTRL_SAVE / CTRL_STOP at step `step` (0-based) of `steps`: receives the workers' state
 * and queues a version ("save" or "stop") for the writer. */
void train_state_save_now(train_state *st, const char *reason, int epoch, int step, int steps);
/* Validation (when due), metrics, results.csv row (time: now - t_train, after validation),
 * whether the run ends here (*finished: final, or early stopping, or the time budget, which may
 * also re-estimate args->epochs), and the epoch's version (best when fitness improved). */
int train_state_end_epoch(train_state *st, int epoch, int steps, bool final, bool *finished,
                          char *err, size_t errlen);
/* Waits for every version to be written and reports them; stops the writer. Returns 0, or -1
 * when the newest version could not be written (the reason was reported). */
int train_state_flush_versions(train_state *st);
void train_state_finish(train_state *st, bool ok, double elapsed);
/* train_ckpt.c, for train_state.c: a results.csv row kept in memory for the versions (the file
 * is the results.csv sink's), the epoch's version, finished versions reported on the terminal
 * and the telemetry socket. */
void train_state_add_row(train_state *st, const epoch_row *row, double fitness);
void train_state_save_epoch(train_state *st, int epoch, int steps, bool best, bool finished);
void train_state_report_versions(train_state *st);
void train_state_free(train_state *st);
