/* LR schedule, warmup and accumulation (see schedule.h). */
#include "kernels/schedule.h"

#include <math.h>

sched_cfg sched_defaults(int epochs, int batch) {
    return (sched_cfg){.epochs = epochs,
                       .lrf = 0.01,
                       .cos_lr = 0,
                       .momentum = 0.937,
                       .warmup_epochs = 3.0,
                       .warmup_momentum = 0.8,
                       .warmup_bias_lr = 0.1,
                       .nbs = 64,
                       .batch = batch};
}

long sched_round_half_even(double x) {
    double r = round(x); /* half away from zero */
    if (fabs(x - trunc(x)) == 0.5) r = 2.0 * round(x / 2.0);
    return (long)r;
}

double sched_lf(const sched_cfg *c, int epoch) {
    double e = epoch, E = c->epochs;
    if (c->cos_lr) {
        double s = (1.0 - cos(e * M_PI / E)) / 2.0;
        return (s > 0 ? s : 0) * (c->lrf - 1.0) + 1.0;
    }
    double s = 1.0 - e / E;
    return (s > 0 ? s : 0) * (1.0 - c->lrf) + c->lrf;
}

long sched_warmup_iters(const sched_cfg *c, long nb) {
    if (c->warmup_leaves_last_epoch) {
        /* warmup_epochs = min(warmup_epochs, max(epochs - 1, 0)); 0 iterations: no warmup */
        double last = c->epochs - 1 > 0 ? (double)(c->epochs - 1) : 0.0;
        double we = c->warmup_epochs < last ? c->warmup_epochs : last;
        long w = we > 0 ? sched_round_half_even(we * (double)nb) : 0;
        return w > 0 ? w : -1;
    }
    if (c->warmup_epochs <= 0) return -1;
    long w = sched_round_half_even(c->warmup_epochs * (double)nb);
    return w > 100 ? w : 100;
}

int sched_accumulate(const sched_cfg *c) {
    long a = sched_round_half_even((double)c->nbs / (double)c->batch);
    return a > 1 ? (int)a : 1;
}

int sched_accumulate_capped(const sched_cfg *c, int cap, long nb, int time_mode) {
    long a = sched_accumulate(c);
    if (cap && !time_mode && nb * c->epochs < a) a = nb * c->epochs;
    return a > 1 ? (int)a : 1;
}

double sched_weight_decay(const sched_cfg *c, double weight_decay, int accumulate) {
    return weight_decay * c->batch * accumulate / c->nbs;
}

double sched_interp(double x, double x0, double x1, double y0, double y1) {
    if (x < x0) return y0;
    if (x >= x1) return y1; /* numpy returns fp[-1] on an exact hit of the last point */
    double slope = (y1 - y0) / (x1 - x0);
    return slope * (x - x0) + y0;
}

int sched_apply(const sched_cfg *c, int epoch, long ni, long nw, int accumulate, optimizer *o) {
    double lf = sched_lf(c, epoch);
    int has_momentum = o->kind != OPTIM_ADAMW; /* Adam keeps betas, no "momentum" key */
    if (ni <= nw) {
        double x = (double)ni, x1 = (double)nw;
        double target =
            c->accumulate_target > 0 ? c->accumulate_target : (double)c->nbs / (double)c->batch;
        long a = sched_round_half_even(sched_interp(x, 0, x1, 1.0, target));
        accumulate = a > 1 ? (int)a : 1;
        for (int g = 0; g < o->ngroups; g++) {
            optim_group *gr = &o->group[g];
            double start = gr->tag == PG_BIAS ? c->warmup_bias_lr : 0.0;
            gr->lr = sched_interp(x, 0, x1, start, gr->initial_lr * lf);
            if (has_momentum)
                gr->momentum = sched_interp(x, 0, x1, c->warmup_momentum, c->momentum);
        }
    } else {
        for (int g = 0; g < o->ngroups; g++) o->group[g].lr = o->group[g].initial_lr * lf;
    }
    return accumulate;
}
