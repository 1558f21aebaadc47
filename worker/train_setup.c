#include "worker/train_setup.h"

#include "common/log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *kind_name(optim_kind k) {
    return k == OPTIM_SGD ? "SGD" : k == OPTIM_ADAMW ? "AdamW" : "MuSGD";
}

/* The schedule config and the accumulation of the chosen release. */
static void setup_schedule(const train_args *a, long n_train, sched_cfg *sc, int *accumulate) {
    const ul_behaviour *beh = ul_behaviour_of(a->ultralytics);
    *sc = sched_defaults((int)a->epochs, (int)a->batch);
    sc->lrf = a->lrf;
    sc->cos_lr = a->cos_lr;
    sc->momentum = a->momentum;
    sc->warmup_epochs = a->warmup_epochs;
    sc->warmup_momentum = a->warmup_momentum;
    sc->warmup_bias_lr = a->warmup_bias_lr;
    sc->nbs = (int)a->nbs;
    sc->warmup_leaves_last_epoch = beh->warmup_leaves_last_epoch;
    long nb = (n_train + a->batch - 1) / a->batch; /* steps per epoch (the shard plan's) */
    *accumulate = sched_accumulate_capped(sc, beh->accumulate_capped, nb, a->time_hours > 0);
    sc->accumulate_target = beh->accumulate_capped ? *accumulate : 0;
}

int train_setup_optimizer(model *m, train_args *a, long n_train, optimizer *o, sched_cfg *sc,
                          int *accumulate, model_info *info, char *err, size_t errlen) {
    const ul_behaviour *beh = ul_behaviour_of(a->ultralytics);
    optim_kind kind;
    double lr = a->lr0, momentum = a->momentum;
    bool is_auto = !strcmp(a->optimizer, "auto");
    if (is_auto) {
        long it = optim_auto_iterations(n_train, (int)a->batch, (int)a->nbs, (int)a->epochs);
        kind = optim_auto(it, (int)a->nc, &lr, &momentum);
        a->warmup_bias_lr = 0.0; /* Ultralytics forces this under auto */
    } else {
        kind = !strcmp(a->optimizer, "SGD")     ? OPTIM_SGD
               : !strcmp(a->optimizer, "AdamW") ? OPTIM_ADAMW
                                                : OPTIM_MUSGD;
    }
    setup_schedule(a, n_train, sc, accumulate);
    /* weight decay scales with the accumulation before 8.4.190's cap (Ultralytics' order) */
    double wd = sched_weight_decay(sc, a->weight_decay, sched_accumulate(sc));
    optim_group groups[OPTIM_MAX_GROUPS];
    int ng = optim_default_groups(kind, lr, momentum, wd, groups);
    int nt = model_num_param_tensors(m), k = 0;
    int muon = kind != OPTIM_MUSGD      ? 0
               : beh->musgd_head_groups ? OPTIM_MUON_NDIM_2_4
                                        : OPTIM_MUON_NDIM_GE2;
    int head = model_config(m)->nlayers - 1, count[4] = {0};
    optim_tensor *ts = xcalloc((size_t)nt, sizeof *ts);
    for (int i = 0; i < nt; i++) {
        const model_tensor *t = model_param_tensor(m, i);
        int in_norm = strstr(t->name, ".bn.") != NULL;
        optim_tag tag = optim_tag_of(t->name, t->ndim, in_norm, muon);
        count[tag]++;                /* Ultralytics' groups hold the frozen DFL weight too */
        if (!t->trainable) continue; /* ... which never has a gradient */
        optim_tensor *o_t = &ts[k++];
        o_t->offset = t->offset;
        o_t->numel = t->numel;
        o_t->ndim = t->ndim;
        memcpy(o_t->shape, t->shape, sizeof o_t->shape);
        int lr3x =
            kind == OPTIM_MUSGD && (beh->musgd_head_groups ? optim_lr3x_match_head(t->name, head)
                                                           : optim_lr3x_match(t->name));
        o_t->group = optim_group_index(kind, tag, lr3x);
    }
    int rc = optim_init(o, kind, model_num_params(m), ts, k, groups, ng, err, errlen);
    free(ts);
    if (rc == 0) { /* the state next to the parameters it updates */
        backend *be = model_backend(m);
        size_t bytes = (o->n ? o->n : 1) * sizeof(float);
        float *m1 = backend_alloc(be, bytes), *m2 = o->m2 ? backend_alloc(be, bytes) : NULL;
        backend_zero(be, m1, bytes);
        if (m2) backend_zero(be, m2, bytes);
        optim_adopt_state(o, m1, m2);
    }
    *info =
        (model_info){.reg_max = model_config(m)->reg_max,
                     .branches = model_num_branches(m),
                     .auto_optimizer = is_auto,
                     .lr = lr,
                     .momentum = momentum,
                     .decay = wd,
                     .n_weight = kind == OPTIM_MUSGD ? count[PG_MUON] : count[PG_WEIGHT],
                     .n_bn = count[PG_BN],
                     .n_bias = count[PG_BIAS],
                     .accumulate = *accumulate,
                     .warmup_iters = sched_warmup_iters(sc, (n_train + a->batch - 1) / a->batch)};
    snprintf(info->optimizer, sizeof info->optimizer, "%s", kind_name(kind));
    return rc;
}

void train_setup_loss(const train_args *a, int nc, int reg_max, detloss_hyp *o2m,
                      detloss_hyp *o2o) {
    *o2m = detloss_hyp_default(nc, reg_max);
    *o2o = detloss_hyp_one2one(nc, reg_max);
    detloss_hyp *hs[2] = {o2m, o2o};
    for (int i = 0; i < 2; i++) {
        hs[i]->box = (float)a->box;
        hs[i]->cls = (float)a->cls;
        hs[i]->dfl = (float)a->dfl;
        hs[i]->stal_min = ul_behaviour_of(a->ultralytics)->stal_min;
        hs[i]->bce_torch2 = ul_behaviour_of(a->ultralytics)->bce_torch2;
    }
}

void train_free_optimizer(model *m, optimizer *o) {
    float *m1 = o->m1, *m2 = o->m2;
    optim_free(o);
    backend_free(model_backend(m), m1);
    backend_free(model_backend(m), m2);
}
