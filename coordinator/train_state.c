#include "coordinator/train_state.h"

#include "common/atomic_file.h"
#include "common/log.h"
#include "common/stop_signal.h"
#include "common/timer.h"
#include "common/val_plots.h"
#include "common/val_record.h"
#include "coordinator/coco_json.h"
#include "coordinator/metrics.h"
#include "coordinator/progress.h"
#include "coordinator/rank_watch.h"
#include "coordinator/results_csv.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Ultralytics' rectangular val batches of 2 x batch images (the trainer's val loader). */
static int make_val_plan(train_state *st, char *err, size_t errlen) {
    if (st->vplan_made) return 0;
    int n = dataset_split_size(st->ds, SPLIT_VAL), bad = -1;
    int *h = xmalloc((size_t)(n + 1) * sizeof *h), *w = xmalloc((size_t)(n + 1) * sizeof *w);
    for (int i = 0; i < n; i++)
        if (dataset_image_size(st->ds, SPLIT_VAL, i, &h[i], &w[i]) != 0) h[i] = w[i] = 0;
    int rc = val_plan_make(&st->vplan, n, h, w, (int)st->args->imgsz, 32, 2 * (int)st->args->batch,
                           0.5, &bad);
    free(h);
    free(w);
    if (rc != 0)
        return errf(err, errlen, "%s: val image %d has no valid size", dataset_path(st->ds), bad);
    st->vplan_made = true;
    return 0;
}

static double unix_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void train_state_step(train_state *st, int epoch, int step, int steps, const step_report *r,
                      int workers, const double mean_loss[3], double images_per_s) {
    train_state_report_versions(st);
    for (int k = 0; k < 3; k++) st->lr[k] = r[0].lr[k];
    if (step == 0) st->ep_compute_s = st->ep_stall_s = st->ep_comm_s = 0, st->ep_steps = 0;
    for (int w = 0; w < workers; w++) {
        st->ep_compute_s += r[w].compute_s / workers;
        st->ep_stall_s += r[w].stall_s / workers;
        st->ep_comm_s += r[w].comm_exposed_s / workers;
    }
    st->ep_steps++;
    sink_step rec = {.epoch = epoch,
                     .epochs = (int)st->args->epochs,
                     .step = step,
                     .steps = steps,
                     .global_step = (int64_t)epoch * steps + step + 1,
                     .wall_time = unix_now(),
                     .images_per_s = images_per_s,
                     .workers = workers,
                     .loss_names = st->loss_names,
                     .reports = r};
    for (int k = 0; k < 3; k++) {
        rec.mean_loss[k] = mean_loss[k];
        rec.lr[k] = r[0].lr[k];
        for (int w = 0; w < workers; w++) rec.loss[k] += r[w].loss[k] / workers;
    }
    metric_sinks_step(st->sinks, &rec);
}

int32_t train_state_control(train_state *st, int epoch, int step) {
    if (epoch + 1 == st->test_save_epoch && step + 1 == st->test_save_step)
        st->save_requested = true; /* YOLO_TEST_SAVE_AT: a mid-epoch version at a known step */
    if (st->tel) {
        char err[512];
        if (telemetry_poll(st->tel, err, sizeof err) < 0) log_warn("telemetry: %s", err);
        if (telemetry_take_save(st->tel)) st->save_requested = true;
        if (telemetry_stop_requested(st->tel) && !st->stop_requested) {
            log_info("stop requested: saving a version and stopping after this step");
            st->stop_requested = true;
        }
    }
    if (stop_signal_first()) train_state_note_signal(st, stop_signal_first(), 0);
    if (st->stop_requested || st->stop_signal)
        return CTRL_STOP; /* a version that resumes exactly, no validation */
    if (st->save_requested) {
        st->save_requested = false;
        return CTRL_SAVE;
    }
    return CTRL_CONTINUE;
}

/* One worker's plot data (protocol.h, TAG_VAL_PLOTS), merged into acc. */
static void recv_plot_data(int rank, val_plot_data *acc) {
    val_plot_data d;
    val_plot_data_init(&d, acc->nc);
    int64_t nd = 0;
    const char *what = "validation plot data";
    rank_watch_recv(d.confusion, (acc->nc + 1) * (acc->nc + 1), MPI_INT64_T, rank, TAG_VAL_PLOTS,
                    what);
    rank_watch_recv(&nd, 1, MPI_INT64_T, rank, TAG_VAL_PLOTS, what);
    d.dets = xmalloc((size_t)(nd > 0 ? nd : 1) * sizeof *d.dets);
    d.ndets = d.cap = (size_t)nd;
    rank_watch_recv(d.dets, (int)(nd * (int64_t)sizeof *d.dets), MPI_BYTE, rank, TAG_VAL_PLOTS,
                    what);
    val_plot_data_merge(acc, &d);
    val_plot_data_free(&d);
}

static double ap_mean(const double *ap) {
    double s = 0;
    for (int t = 0; t < VAL_NIOU; t++) s += ap[t];
    return s / VAL_NIOU;
}

/* Sends every worker its whole rectangular batches: indices, then {count, h, w} per batch. */
static void send_val_plans(train_state *st, int epoch, int32_t plots) {
    const val_plan *vp = &st->vplan;
    int W = st->workers, nb = vp->nbatches;
    /* Test knob: everything on worker 0, to check that the split does not change the metrics. */
    bool one = getenv("YOLO_TEST_VAL_ON_ONE_WORKER") != NULL;
    for (int w = 0; w < W; w++) {
        int b0 = (int)((long)nb * w / W), b1 = (int)((long)nb * (w + 1) / W);
        if (one) b0 = 0, b1 = w == 0 ? nb : 0;
        int lo = b0 < nb ? vp->batches[b0].start : vp->n;
        int hi = b1 > b0 ? vp->batches[b1 - 1].start + vp->batches[b1 - 1].count : lo;
        val_header h = {.epoch = epoch, .count = hi - lo, .batches = b1 - b0, .plots = plots};
        int32_t *shapes = xmalloc((size_t)(3 * h.batches + 1) * sizeof *shapes);
        for (int b = b0; b < b1; b++) {
            shapes[3 * (b - b0)] = vp->batches[b].count;
            shapes[3 * (b - b0) + 1] = vp->batches[b].h;
            shapes[3 * (b - b0) + 2] = vp->batches[b].w;
        }
        CHECK_MPI(MPI_Send(&h, sizeof h, MPI_BYTE, w + 1, TAG_VAL_HEADER, MPI_COMM_WORLD));
        CHECK_MPI(
            MPI_Send(vp->order + lo, h.count, MPI_INT32_T, w + 1, TAG_VAL_PLAN, MPI_COMM_WORLD));
        CHECK_MPI(
            MPI_Send(shapes, 3 * h.batches, MPI_INT32_T, w + 1, TAG_VAL_PLAN, MPI_COMM_WORLD));
        free(shapes);
    }
}

/* Splits the val split over the workers, gathers their records and computes the metrics; with
 * plots (not NULL, initialised) also the confusion matrix and the predictions to draw (every
 * prediction when plots->all). */
static int validate(train_state *st, int epoch, val_metrics *m, double val_loss[3],
                    val_plot_data *plots, char *err, size_t errlen) {
    int nc = dataset_num_classes(st->ds), W = st->workers;
    const ul_behaviour *beh = ul_behaviour_of(st->args->ultralytics);
    int64_t *counts = xcalloc(2 * (size_t)nc, sizeof *counts),
            *wc = xmalloc(2 * (size_t)nc * sizeof *wc);
    val_record *all = NULL;
    size_t nall = 0;
    int rc = 0, images = 0, batches = 0;
    send_val_plans(st, epoch,
                   !plots       ? 0
                   : plots->all ? VAL_SEND_PLOTS | VAL_SEND_ALL_PREDICTIONS
                                : VAL_SEND_PLOTS);
    for (int w = 0; w < W; w++) {
        val_summary s;
        /* a share of a large val split takes as long as it takes: a heartbeat per batch */
        rank_watch_wait_progress(w + 1, TAG_VAL_SUMMARY, TAG_VAL_PROGRESS, "validation results");
        rank_watch_recv(&s, sizeof s, MPI_BYTE, w + 1, TAG_VAL_SUMMARY, "validation results");
        all = xrealloc(all, (nall + (size_t)s.records + 1) * sizeof *all);
        rank_watch_recv(all + nall, s.records * (int)sizeof *all, MPI_BYTE, w + 1, TAG_VAL_RECORDS,
                        "validation results");
        rank_watch_recv(wc, 2 * nc, MPI_INT64_T, w + 1, TAG_VAL_COUNTS, "validation results");
        if (plots) recv_plot_data(w + 1, plots);
        if (!s.ok) {
            rc = errf(err, errlen, "rank %d: validation failed: %s", w + 1, s.error);
            continue;
        }
        nall += (size_t)s.records;
        images += s.images;
        batches += s.batches;
        for (int c = 0; c < 2 * nc; c++) counts[c] += wc[c];
        for (int k = 0; k < 3; k++) val_loss[k] += s.loss_sum[k];
    }
    if (rc == 0) {
        /* Ultralytics: the batches' loss items summed, divided by the number of batches */
        for (int k = 0; k < 3; k++) val_loss[k] /= batches > 0 ? batches : 1;
        val_ap_rule rule =
            beh->ap_drop_after_last_recall ? VAL_AP_DROP_AFTER_LAST_RECALL : VAL_AP_TO_ONE;
        if (val_metrics_compute_with(rule, all, nall, counts, nc, m, err, errlen) != 0) rc = -1;
    }
    if (rc == 0) {
        progress_val_header();
        long inst = 0;
        for (int c = 0; c < nc; c++) inst += (long)counts[c];
        progress_val_row("all", images, (int)inst, m->precision, m->recall, m->map50, m->map50_95);
        for (int c = 0; c < nc && nc > 1; c++)
            if (counts[c] > 0)
                progress_val_row(dataset_class_name(st->ds, c), (int)counts[nc + c], (int)counts[c],
                                 m->p[c], m->r[c], m->ap[c * VAL_NIOU],
                                 ap_mean(m->ap + c * VAL_NIOU));
    }
    free(all);
    free(counts);
    free(wc);
    return rc;
}

/* predictions.json of this validation (save_json=True), as Ultralytics writes it after training;
 * a failure is a warning: the run goes on. */
static void write_predictions(train_state *st, const val_plot_data *pd) {
    char path[sizeof st->args->save_dir + 32], err[1024];
    snprintf(path, sizeof path, "%s/predictions.json", st->args->save_dir);
    if (coco_predictions_write(path, st->ds, SPLIT_VAL, pd->dets, pd->ndets, err, sizeof err))
        log_warn("save_json: %s", err);
    else
        log_info("saved %zu predictions to %s", pd->ndets, path);
}

/* Whether the run ends after this epoch: the last epoch, early stopping (Ultralytics'
 * EarlyStopping: no fitness improvement for `patience` epochs; 0 never stops), or the time budget
 * (Ultralytics re-estimates the epoch count from the mean epoch time, schedule included). */
static bool run_ends(train_state *st, int epoch, bool final) {
    train_args *a = st->args;
    if (final || epoch + 1 >= a->epochs) return true;
    if (a->val && train_prep_early_stop_due(&st->es, epoch, a->patience)) {
        log_info("stopping training early as no improvement was observed in the last %ld epochs; "
                 "best results at epoch %d",
                 a->patience, st->es.best_epoch + 1);
        return true;
    }
    if (a->time_hours > 0) {
        double el = now_seconds() - st->t_train;
        long e = (long)ceil(a->time_hours * 3600 / (el / (epoch + 1)));
        a->epochs = e > epoch + 1 ? e : epoch + 1;
        if (el >= a->time_hours * 3600 || epoch + 1 >= a->epochs) return true;
    }
    return false;
}

int train_state_end_epoch(train_state *st, int epoch, int steps, bool final, bool *finished,
                          char *err, size_t errlen) {
    const train_args *a = st->args;
    bool do_val = (a->val || final) && dataset_split_size(st->ds, SPLIT_VAL) > 0;
    val_metrics m;
    memset(&m, 0, sizeof m);
    double val_loss[3] = {0}, val_s = 0;
    /* Ultralytics draws the validation plots at the last epoch, and at any epoch early stopping
     * may end on (EarlyStopping.possible_stop: patience - 1 epochs without improvement) */
    bool possible_stop = a->patience > 0 && epoch > 0 && epoch - st->best_epoch >= a->patience - 1;
    bool plots = do_val && a->plots && (final || possible_stop);
    bool json = do_val && a->save_json && (final || possible_stop); /* predictions.json */
    val_plot_data pd;
    val_plot_data_init(&pd, dataset_num_classes(st->ds));
    pd.all = json;
    if (!do_val) {
        val_header h = {.epoch = epoch, .count = -1}; /* no validation this epoch */
        for (int w = 0; w < st->workers; w++)
            CHECK_MPI(MPI_Send(&h, sizeof h, MPI_BYTE, w + 1, TAG_VAL_HEADER, MPI_COMM_WORLD));
    } else {
        double t0 = now_seconds();
        if (make_val_plan(st, err, errlen) != 0) {
            /* the workers wait for a header: tell them there is nothing to validate */
            val_header h = {.epoch = epoch, .count = -1};
            for (int w = 0; w < st->workers; w++)
                CHECK_MPI(MPI_Send(&h, sizeof h, MPI_BYTE, w + 1, TAG_VAL_HEADER, MPI_COMM_WORLD));
            val_plot_data_free(&pd);
            return -1;
        }
        if (validate(st, epoch, &m, val_loss, plots || json ? &pd : NULL, err, errlen) != 0) {
            val_metrics_free(&m);
            val_plot_data_free(&pd);
            return -1;
        }
        val_s = now_seconds() - t0;
    }
    if (a->verbose)
        printf("epoch %d time (mean over workers): %d steps, compute %.1f s, loader stall %.1f s, "
               "exposed all-reduce %.1f s; validation %.1f s\n",
               epoch + 1, st->ep_steps, st->ep_compute_s, st->ep_stall_s, st->ep_comm_s, val_s);
    /* Ultralytics' time column: seconds since training started, taken after validation. */
    double elapsed = now_seconds() - st->t_train;
    double fitness =
        do_val ? m.fitness : -(st->train_loss[0] + st->train_loss[1] + st->train_loss[2]);
    /* Ultralytics writes best.pt whenever fitness equals the best so far after the update, so
     * a tie moves best to the later epoch */
    bool best = fitness >= st->best_fitness || epoch == 0;
    if (best) {
        st->best_fitness = fitness;
        st->best_epoch = epoch;
        st->best_map50 = m.map50;
        st->best_map50_95 = m.map50_95;
    }
    if (do_val) train_prep_early_stop_update(&st->es, epoch, fitness);
    st->last_map50 = m.map50;
    st->last_map50_95 = m.map50_95;
    epoch_row row = {.epoch = epoch + 1,
                     .time = elapsed,
                     .precision = m.precision,
                     .recall = m.recall,
                     .map50 = m.map50,
                     .map50_95 = m.map50_95,
                     .n_lr = 3,
                     .third_loss = st->loss_names[2]};
    for (int k = 0; k < 3; k++) {
        row.train[k] = st->train_loss[k];
        row.val[k] = val_loss[k];
        row.lr[k] = st->lr[k];
    }
    metric_sinks_epoch(st->sinks, &(sink_epoch){.row = &row,
                                                .epochs = (int)a->epochs,
                                                .fitness = fitness,
                                                .final = final,
                                                .wall_time = unix_now()});
    if (plots)
        metric_sinks_validation(st->sinks, &(sink_validation){.epoch = epoch,
                                                              .m = &m,
                                                              .nc = pd.nc,
                                                              .confusion = pd.confusion,
                                                              .ndets = pd.ndets,
                                                              .dets = pd.dets});
    if (json) write_predictions(st, &pd);
    val_plot_data_free(&pd);
    if (do_val) val_metrics_free(&m);
    train_state_add_row(st, &row, fitness);
    st->epochs_done = epoch + 1;
    *finished = run_ends(st, epoch, final);
    train_state_save_epoch(st, epoch, steps, best, *finished);
    return 0;
}

void train_state_finish(train_state *st, bool ok, double elapsed) {
    if (!ok) {
        printf("\ntraining failed after %d epoch(s); what was saved is in %s\n", st->epochs_done,
               st->args->save_dir);
        return;
    }
    if (st->epochs_done == 0) { /* stopped before the first epoch ended: nothing was saved */
        printf("\nno epoch completed; nothing saved in %s\n", st->args->save_dir);
        return;
    }
    printf("\n%d epochs completed in %.3f hours.\n", st->epochs_done, elapsed / 3600);
    printf("Results saved to %s (weights/: versions v*.h5, last.h5, best.h5; results.csv, "
           "args.yaml, train.log)\n",
           st->args->save_dir);
    /* Last line: the run directory and the best epoch by fitness (mAP50-95), for make demo. */
    printf("run directory %s: best epoch %d, mAP50 %.4f, mAP50-95 %.4f\n", st->args->save_dir,
           st->best_epoch + 1, st->best_map50, st->best_map50_95);
    fflush(stdout);
}
