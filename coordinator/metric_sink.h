/* Metrics leave the coordinator through one door (DESIGN.md section 2): every step and epoch
 * record, and the end-of-training validation, go to a list of sinks. A sink is a small module
 * with the same few functions (open, step, epoch, validation, close); the training loop calls the
 * list only, so a new sink (an experiment tracker over HTTP, say) touches no training code.
 *
 * A sink that fails (open or any call returns -1 with a message) is warned about once, on the
 * terminal, in train.log and on the PUB socket ("<sink>: <message>; <sink> is off for the rest
 * of this run"), and gets no more calls; training never stops for a sink. Calls come from the
 * coordinator's main thread, in order, one at a time. A sink that may block (a remote server)
 * should hand records to its own thread and return at once: the step call sits between two
 * training steps. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/protocol.h"
#include "common/train_args.h"
#include "common/val_record.h"
#include "coordinator/metrics.h"
#include "coordinator/results_csv.h"
#include "dataio/dataset.h"

/* What a sink may look at when it opens; valid until it is closed. */
typedef struct sink_run {
    const char *save_dir;
    const train_args *args; /* resolved arguments (args.yaml) */
    dataset *ds;            /* class names, hash, labels; a few val images for mosaics */
    int workers;
} sink_run;

/* After every optimizer step. */
typedef struct sink_step {
    int epoch, epochs;             /* 0-based epoch, planned epochs */
    int step, steps;               /* 0-based step within the epoch, steps per epoch */
    int64_t global_step;           /* 1-based: epoch * steps + step + 1 */
    double wall_time;              /* unix seconds */
    const char *const *loss_names; /* [3] box_loss, cls_loss, dfl_loss or l1_loss; NULL: those */
    double loss[3];                /* this step's box, cls, dfl loss items, mean over workers */
    double mean_loss[3];           /* running means over the epoch so far (the progress line's) */
    double lr[3];                  /* pg0, pg1, pg2 */
    double images_per_s;
    int workers;
    const step_report *reports; /* [workers] as received: timings per rank */
} sink_step;

/* After every epoch, once its results.csv row is known. */
typedef struct sink_epoch {
    const epoch_row *row; /* the results.csv row (results_csv_columns names its values) */
    int epochs;           /* planned epochs */
    double fitness;
    bool final;
    double wall_time;
} sink_epoch;

/* End-of-training validation with plots=True: what the plots of issue 10 are drawn from. */
typedef struct sink_validation {
    int epoch;                /* 0-based */
    const val_metrics *m;     /* includes the P/R/F1 and PR curves */
    int nc;                   /* classes */
    const int64_t *confusion; /* [(nc + 1)][(nc + 1)], [predicted][true], nc = background */
    size_t ndets;
    const val_plot_det *dets; /* predictions (conf > VAL_PLOT_CONF) on val images
                               * [0, VAL_PLOT_IMAGES), original pixels, any order; with save_json
                               * every prediction of every image (filter before drawing) */
} sink_validation;

/* A checkpoint version is on disk (reported after the background writer finished it). */
typedef struct sink_version {
    int version;        /* N of vN */
    const char *path;   /* <run>/weights/v0003.h5 */
    const char *reason; /* "epoch", "save", "stop" */
    int epoch, step;    /* 1-based epoch; step of that epoch (epoch-end versions: -1) */
    bool best;          /* best.h5 now points at it */
    int64_t bytes;
} sink_version;

/* A sink: functions and its state. Any function but close may be NULL (nothing to do). Each
 * returns 0, or -1 with one line in err; close frees the state whatever it returns. */
typedef struct metric_sink_ops {
    const char *name; /* for messages: "results.csv", "tensorboard", ... */
    int (*step)(void *self, const sink_step *r, char *err, size_t errlen);
    int (*epoch)(void *self, const sink_epoch *r, char *err, size_t errlen);
    int (*validation)(void *self, const sink_validation *v, char *err, size_t errlen);
    int (*version)(void *self, const sink_version *v, char *err, size_t errlen);
    int (*close)(void *self, bool ok, char *err, size_t errlen); /* ok: the run succeeded */
} metric_sink_ops;

typedef struct metric_sink {
    const metric_sink_ops *ops;
    void *self;
} metric_sink;

/* Every sink module has one open function of this shape. */
typedef int (*metric_sink_open_fn)(const sink_run *run, metric_sink *out, char *err, size_t errlen);

/* ---- the list -------------------------------------------------------------------------------- */

typedef struct metric_sinks metric_sinks;
/* Where warnings go besides stderr (and so train.log): the PUB socket in training. */
typedef void (*metric_sink_warn_fn)(void *ctx, const char *message);

metric_sinks *metric_sinks_new(metric_sink_warn_fn warn, void *warn_ctx);
/* Opens one sink and appends it; a failed open is warned about and leaves the sink out. */
void metric_sinks_open(metric_sinks *l, const char *name, metric_sink_open_fn open,
                       const sink_run *run);
void metric_sinks_add(metric_sinks *l, metric_sink s);
void metric_sinks_step(metric_sinks *l, const sink_step *r);
void metric_sinks_epoch(metric_sinks *l, const sink_epoch *r);
void metric_sinks_validation(metric_sinks *l, const sink_validation *v);
void metric_sinks_version(metric_sinks *l, const sink_version *v);
/* Closes every sink (warning about failures) and frees the list. NULL is fine. */
void metric_sinks_close(metric_sinks *l, bool ok);
/* Sinks still on (tests). */
int metric_sinks_active(const metric_sinks *l);

/* The training run's sinks, in this order: results.csv, the PUB socket (when tel is given),
 * TensorBoard events, with args->plots the charts (results.png each epoch, labels.jpg at open,
 * validation plots), and MLflow when a tracking server is given (mlflow=, or
 * MLFLOW_TRACKING_URI; sink_mlflow_uri). */
struct telemetry;
metric_sinks *metric_sinks_for_training(const sink_run *run, struct telemetry *tel);
/* The training list's warn function: a "warning" event on the PUB socket (tel may be NULL). */
void metric_sink_warn_telemetry(void *tel, const char *message);

/* ---- the sinks (one module each) ------------------------------------------------------------- */

int sink_results_csv_open(const sink_run *run, metric_sink *out, char *err, size_t errlen);
int sink_tensorboard_open(const sink_run *run, metric_sink *out, char *err, size_t errlen);
int sink_charts_open(const sink_run *run, metric_sink *out, char *err, size_t errlen);
/* An MLflow tracking server through its REST API (sink_mlflow.c, docs/tracking.md): experiment =
 * project (or MLFLOW_EXPERIMENT_NAME), run name = the run folder's name (or MLFLOW_RUN), params =
 * args.yaml, metrics = results.csv columns per epoch, tags = lineage, versions as references.
 * Requests go out from the sink's own thread; open does no network I/O. */
int sink_mlflow_open(const sink_run *run, metric_sink *out, char *err, size_t errlen);
/* The tracking URI in force: mlflow=<uri>, else $MLFLOW_TRACKING_URI; NULL when off (unset, or
 * mlflow=False). */
const char *sink_mlflow_uri(const train_args *a);
/* The PUB socket's step and epoch events (the socket itself stays the coordinator's: control
 * requests, checkpoint and warning events do not go through sinks). */
metric_sink sink_telemetry(struct telemetry *tel);
