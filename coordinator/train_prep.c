#include "coordinator/train_prep.h"

#include "common/log.h"
#include "common/pyrepr.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int densest(dataset *ds, split_id s, long n) {
    int m = 0;
    for (long i = 0; i < n; i++) {
        const float *l;
        int k = 0;
        if (dataset_labels(ds, s, (int)i, &l, &k) == 0 && k > m) m = k;
    }
    return m;
}

long train_prep_max_det(train_args *a, dataset *ds, long n_train) {
    int tr = densest(ds, SPLIT_TRAIN, n_train);
    int va = densest(ds, SPLIT_VAL, dataset_split_size(ds, SPLIT_VAL));
    long observed = tr > va ? tr : va;
    if (!ul_behaviour_of(a->ultralytics)->max_det_raise || observed <= a->max_det) return observed;
    char msg[800];
    int k =
        snprintf(msg, sizeof msg,
                 "Dataset images contain up to %ld objects (train=%d, val=%d), but max_det=%ld. "
                 "This mismatch can cap recall and produce invalid validation metrics. Raising "
                 "it may increase validation cost but cannot increase model or export "
                 "capacity, which may cap recall.",
                 observed, tr, va, a->max_det);
    if (a->max_det == 300) { /* Ultralytics compares with the default, not with "was it given" */
        a->max_det = observed;
        snprintf(msg + k, sizeof msg - (size_t)k,
                 " Setting max_det=%ld to match the observed maximum.", observed);
    } else {
        snprintf(msg + k, sizeof msg - (size_t)k, " Keeping the user-specified max_det=%ld.",
                 a->max_det);
    }
    log_warn("%s", msg);
    return observed;
}

bool train_prep_class_weights(const train_args *a, dataset *ds, long n_train, float *w) {
    int nc = (int)a->nc;
    if (a->cls_pw == 0 || nc < 1) return false;
    float *cnt = xcalloc((size_t)nc, sizeof *cnt);
    bool any = false;
    for (long i = 0; i < n_train; i++) {
        const float *l;
        int k = 0;
        if (dataset_labels(ds, SPLIT_TRAIN, (int)i, &l, &k) != 0) continue;
        for (int j = 0; j < k; j++) {
            int c = (int)l[j * 5];
            if (c >= 0 && c < nc) cnt[c] += 1.0f, any = true;
        }
    }
    if (!any) {
        free(cnt);
        return false;
    }
    /* numpy in float32: (1 / count) ** cls_pw, absent classes the mean, then / mean */
    float sum = 0;
    int present = 0;
    for (int c = 0; c < nc; c++)
        if (cnt[c] > 0) {
            w[c] = powf(1.0f / cnt[c], (float)a->cls_pw);
            sum += w[c];
            present++;
        }
    float mean_present = sum / (float)present, total = 0;
    for (int c = 0; c < nc; c++) {
        if (cnt[c] <= 0) w[c] = mean_present;
        total += w[c];
    }
    float mean = total / (float)nc;
    char line[4096];
    size_t len = (size_t)snprintf(line, sizeof line, "Class weights: [");
    for (int c = 0; c < nc; c++) {
        w[c] /= mean;
        if (len < sizeof line - 16)
            len += (size_t)snprintf(line + len, sizeof line - len, "%s%.3f", c ? " " : "", w[c]);
    }
    if (len < sizeof line - 2) snprintf(line + len, sizeof line - len, "]");
    log_info("%s", line);
    free(cnt);
    return true;
}

bool train_prep_mosaic_closed(const train_args *a, long epoch, long epochs, bool closed) {
    if (closed) return true;
    if (a->close_mosaic <= 0) return false;
    if (ul_behaviour_of(a->ultralytics)->close_mosaic_from)
        return epoch >= epochs - a->close_mosaic;
    return epoch == epochs - a->close_mosaic;
}

void train_prep_print_optimizer(const train_args *a, const model_info *mi) {
    char lr0[40], mom0[40], lr[40], mom[40], dec[40];
    py_float_repr(a->lr0, lr0, sizeof lr0);
    py_float_repr(a->momentum, mom0, sizeof mom0);
    if (mi->auto_optimizer) {
        if (ul_behaviour_of(a->ultralytics)->args_8_4_190)
            printf("optimizer: 'optimizer=auto' found, ignoring 'lr0=%s' and determining best "
                   "'optimizer' and 'lr0' automatically... \n",
                   lr0);
        else
            printf("optimizer: 'optimizer=auto' found, ignoring 'lr0=%s' and 'momentum=%s' and "
                   "determining best 'optimizer', 'lr0' and 'momentum' automatically... \n",
                   lr0, mom0);
    }
    printf("optimizer: %s(lr=%s, momentum=%s) with parameter groups %d weight(decay=0.0), %d "
           "weight(decay=%s), %d bias(decay=0.0)\n",
           mi->optimizer, py_float_repr(mi->lr, lr, sizeof lr),
           py_float_repr(mi->momentum, mom, sizeof mom), mi->n_bn, mi->n_weight,
           py_float_repr(mi->decay, dec, sizeof dec), mi->n_bias);
    fflush(stdout);
}

const char *train_prep_third_loss(const train_args *a, const model_info *mi) {
    return mi->reg_max == 1 && ul_behaviour_of(a->ultralytics)->l1_loss_name ? "l1_loss"
                                                                             : "dfl_loss";
}

void train_prep_early_stop_update(early_stop *es, int epoch, double fitness) {
    if (fitness > es->best || es->best == 0) {
        es->best = fitness;
        es->best_epoch = epoch;
    }
}

bool train_prep_early_stop_due(const early_stop *es, int epoch, long patience) {
    return patience > 0 && epoch - es->best_epoch >= patience;
}
