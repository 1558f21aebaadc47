#include "coordinator/train_state.h"

#include "common/atomic_file.h"
#include "common/log.h"
#include "common/val_record.h"
#include "coordinator/metrics.h"
#include "coordinator/progress.h"
#include "coordinator/results_csv.h"
#include "coordinator/weights_file.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int train_state_write_args(const train_args *a, char *err, size_t errlen) {
    char *buf = NULL, path[2200];
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return errf(err, errlen, "open_memstream failed");
    train_args_write_yaml(a, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/args.yaml", a->save_dir);
    int rc = atomic_write_file(path, buf, len, err, errlen);
    free(buf);
    return rc;
}

void train_state_init(train_state *st, train_args *a, dataset *ds, int workers) {
    *st = (train_state){.args = a, .ds = ds, .workers = workers, .best_fitness = -INFINITY};
}

void train_state_step(train_state *st, int epoch, int step, int steps, const step_report *r,
                      int workers, const double mean_loss[3], double images_per_s) {
    (void)epoch, (void)step, (void)steps, (void)workers, (void)mean_loss, (void)images_per_s;
    for (int k = 0; k < 3; k++) st->lr[k] = r[0].lr[k];
}

int32_t train_state_control(train_state *st) {
    if (st->stop_requested) return CTRL_STOP;
    return CTRL_CONTINUE;
}

static double ap_mean(const double *ap) {
    double s = 0;
    for (int t = 0; t < VAL_NIOU; t++) s += ap[t];
    return s / VAL_NIOU;
}

/* Splits the val split over the workers, gathers their records and computes the metrics. */
static int validate(train_state *st, int epoch, val_metrics *m, double val_loss[3], char *err,
                    size_t errlen) {
    int n = dataset_split_size(st->ds, SPLIT_VAL), nc = dataset_num_classes(st->ds), W = st->workers;
    int64_t *counts = xcalloc(2 * (size_t)nc, sizeof *counts), *wc = xmalloc(2 * (size_t)nc * sizeof *wc);
    val_record *all = NULL;
    size_t nall = 0;
    int rc = 0, images = 0;
    for (int w = 0; w < W; w++) {
        int lo = (int)((long)n * w / W), hi = (int)((long)n * (w + 1) / W);
        val_header h = {.epoch = epoch, .count = hi - lo};
        int32_t *idx = xmalloc((size_t)(h.count ? h.count : 1) * sizeof *idx);
        for (int i = 0; i < h.count; i++) idx[i] = lo + i;
        CHECK_MPI(MPI_Send(&h, sizeof h, MPI_BYTE, w + 1, TAG_VAL_HEADER, MPI_COMM_WORLD));
        CHECK_MPI(MPI_Send(idx, h.count, MPI_INT32_T, w + 1, TAG_VAL_PLAN, MPI_COMM_WORLD));
        free(idx);
    }
    for (int w = 0; w < W; w++) {
        val_summary s;
        CHECK_MPI(MPI_Recv(&s, sizeof s, MPI_BYTE, w + 1, TAG_VAL_SUMMARY, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
        all = xrealloc(all, (nall + (size_t)s.records + 1) * sizeof *all);
        CHECK_MPI(MPI_Recv(all + nall, s.records * (int)sizeof *all, MPI_BYTE, w + 1, TAG_VAL_RECORDS,
                           MPI_COMM_WORLD, MPI_STATUS_IGNORE));
        CHECK_MPI(MPI_Recv(wc, 2 * nc, MPI_INT64_T, w + 1, TAG_VAL_COUNTS, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
        if (!s.ok) {
            rc = errf(err, errlen, "rank %d: validation failed: %s", w + 1, s.error);
            continue;
        }
        nall += (size_t)s.records;
        images += s.images;
        for (int c = 0; c < 2 * nc; c++) counts[c] += wc[c];
        for (int k = 0; k < 3; k++) val_loss[k] += s.loss_sum[k];
    }
    if (rc == 0) {
        for (int k = 0; k < 3; k++) val_loss[k] /= images > 0 ? images : 1;
        if (val_metrics_compute(all, nall, counts, nc, m, err, errlen) != 0) rc = -1;
    }
    if (rc == 0) {
        progress_val_header();
        long inst = 0;
        for (int c = 0; c < nc; c++) inst += (long)counts[c];
        progress_val_row("all", images, (int)inst, m->precision, m->recall, m->map50, m->map50_95);
        for (int c = 0; c < nc && nc > 1; c++)
            if (counts[c] > 0)
                progress_val_row(dataset_class_name(st->ds, c), (int)counts[nc + c], (int)counts[c],
                                 m->p[c], m->r[c], m->ap[c * VAL_NIOU], ap_mean(m->ap + c * VAL_NIOU));
    }
    free(all);
    free(counts);
    free(wc);
    return rc;
}

/* Worker 0 sends the EMA state after every epoch; it becomes last (and best) weights. */
static int save_weights(train_state *st, int epoch, double fitness, bool best, char *err, size_t errlen) {
    model_state_header h;
    CHECK_MPI(MPI_Recv(&h, sizeof h, MPI_BYTE, 1, TAG_STATE_HEADER, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    tensor_desc *t = xmalloc((size_t)(h.n_tensors ? h.n_tensors : 1) * sizeof *t);
    float *data = xmalloc((size_t)(h.n_floats ? h.n_floats : 1) * sizeof *data);
    CHECK_MPI(MPI_Recv(t, (int)(h.n_tensors * (int64_t)sizeof *t), MPI_BYTE, 1, TAG_STATE_DATA,
                       MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    CHECK_MPI(MPI_Recv(data, (int)h.n_floats, MPI_FLOAT, 1, TAG_STATE_DATA, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    char path[2300];
    weights_meta meta = {.epoch = epoch, .fitness = fitness, .model = st->args->model,
                         .dataset_hash = dataset_hash(st->ds)};
    snprintf(path, sizeof path, "%s/weights/last.h5", st->args->save_dir);
    int rc = weights_write(path, &h, t, data, &meta, err, errlen);
    if (rc == 0 && best) {
        snprintf(path, sizeof path, "%s/weights/best.h5", st->args->save_dir);
        rc = weights_write(path, &h, t, data, &meta, err, errlen);
    }
    free(t);
    free(data);
    return rc;
}

int train_state_end_epoch(train_state *st, int epoch, bool final, double elapsed, char *err,
                          size_t errlen) {
    const train_args *a = st->args;
    bool do_val = (a->val || final) && dataset_split_size(st->ds, SPLIT_VAL) > 0;
    val_metrics m;
    memset(&m, 0, sizeof m);
    double val_loss[3] = {0};
    if (!do_val) {
        val_header h = {.epoch = epoch, .count = -1}; /* no validation this epoch */
        for (int w = 0; w < st->workers; w++)
            CHECK_MPI(MPI_Send(&h, sizeof h, MPI_BYTE, w + 1, TAG_VAL_HEADER, MPI_COMM_WORLD));
    } else {
        if (validate(st, epoch, &m, val_loss, err, errlen) != 0) {
            val_metrics_free(&m);
            return -1;
        }
    }
    double fitness = do_val ? m.fitness : -(st->train_loss[0] + st->train_loss[1] + st->train_loss[2]);
    bool best = fitness > st->best_fitness || epoch == 0;
    if (best) {
        st->best_fitness = fitness;
        st->best_epoch = epoch;
        st->best_map50 = m.map50;
        st->best_map50_95 = m.map50_95;
    }
    st->last_map50 = m.map50;
    st->last_map50_95 = m.map50_95;
    epoch_row row = {.epoch = epoch + 1, .time = elapsed, .precision = m.precision, .recall = m.recall,
                     .map50 = m.map50, .map50_95 = m.map50_95, .n_lr = 3};
    for (int k = 0; k < 3; k++) {
        row.train[k] = st->train_loss[k];
        row.val[k] = val_loss[k];
        row.lr[k] = st->lr[k];
    }
    if (do_val) val_metrics_free(&m);
    char path[2300];
    snprintf(path, sizeof path, "%s/results.csv", a->save_dir);
    if (results_csv_append(path, &row, err, errlen) != 0) return -1;
    st->epochs_done = epoch + 1;
    return save_weights(st, epoch, fitness, best, err, errlen);
}

void train_state_finish(train_state *st, bool ok, double elapsed) {
    if (!ok) {
        printf("\ntraining failed after %d epoch(s); what was saved is in %s\n", st->epochs_done,
               st->args->save_dir);
        return;
    }
    printf("\n%d epochs completed in %.3f hours.\n", st->epochs_done, elapsed / 3600);
    printf("Results saved to %s (weights/last.h5, weights/best.h5, results.csv, args.yaml)\n",
           st->args->save_dir);
    printf("best epoch %d: mAP50 %.4f, mAP50-95 %.4f\n", st->best_epoch + 1, st->best_map50,
           st->best_map50_95);
    fflush(stdout);
}

void train_state_free(train_state *st) { (void)st; }
