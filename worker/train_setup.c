#include "worker/train_setup.h"

#include "common/log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int train_setup_optimizer(model *m, train_args *a, long n_train, optimizer *o, sched_cfg *sc,
                          int *accumulate, char *err, size_t errlen) {
    optim_kind kind;
    double lr = a->lr0, momentum = a->momentum;
    if (!strcmp(a->optimizer, "auto")) {
        long it = optim_auto_iterations(n_train, (int)a->batch, (int)a->nbs, (int)a->epochs);
        kind = optim_auto(it, (int)a->nc, &lr, &momentum);
        a->warmup_bias_lr = 0.0; /* Ultralytics forces this under auto */
        log_info("optimizer: 'optimizer=auto' found, determining best optimizer: %s(lr=%g, "
                 "momentum=%g)",
                 kind == OPTIM_SGD     ? "SGD"
                 : kind == OPTIM_ADAMW ? "AdamW"
                                       : "MuSGD",
                 lr, momentum);
    } else {
        kind = !strcmp(a->optimizer, "SGD")     ? OPTIM_SGD
               : !strcmp(a->optimizer, "AdamW") ? OPTIM_ADAMW
                                                : OPTIM_MUSGD;
    }
    *sc = sched_defaults((int)a->epochs, (int)a->batch);
    sc->lrf = a->lrf;
    sc->cos_lr = a->cos_lr;
    sc->momentum = a->momentum;
    sc->warmup_epochs = a->warmup_epochs;
    sc->warmup_momentum = a->warmup_momentum;
    sc->warmup_bias_lr = a->warmup_bias_lr;
    sc->nbs = (int)a->nbs;
    *accumulate = sched_accumulate(sc);
    double wd = sched_weight_decay(sc, a->weight_decay, *accumulate);
    optim_group groups[OPTIM_MAX_GROUPS];
    int ng = optim_default_groups(kind, lr, momentum, wd, groups);
    int nt = model_num_param_tensors(m), k = 0;
    optim_tensor *ts = xcalloc((size_t)nt, sizeof *ts);
    for (int i = 0; i < nt; i++) {
        const model_tensor *t = model_param_tensor(m, i);
        if (!t->trainable) continue; /* the frozen DFL conv */
        int in_norm = strstr(t->name, ".bn.") != NULL;
        optim_tag tag = optim_tag_of(t->name, t->ndim, in_norm, kind == OPTIM_MUSGD);
        optim_tensor *o_t = &ts[k++];
        o_t->offset = t->offset;
        o_t->numel = t->numel;
        o_t->ndim = t->ndim;
        memcpy(o_t->shape, t->shape, sizeof o_t->shape);
        o_t->group = optim_group_index(kind, tag, kind == OPTIM_MUSGD && optim_lr3x_match(t->name));
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
    return rc;
}

void train_free_optimizer(model *m, optimizer *o) {
    float *m1 = o->m1, *m2 = o->m2;
    optim_free(o);
    backend_free(model_backend(m), m1);
    backend_free(model_backend(m), m2);
}

void train_export_state(const model *m, const float *params, const float *buffers,
                        model_state_header *h, tensor_desc **tp, float **dp) {
    int np = model_num_param_tensors(m), nb = model_num_buffer_tensors(m);
    size_t nf = model_num_params(m) + model_num_buffer_floats(m);
    tensor_desc *t = xcalloc((size_t)(np + nb), sizeof *t);
    float *d = xmalloc(nf * sizeof *d);
    size_t off = 0;
    for (int i = 0; i < np + nb; i++) {
        const model_tensor *mt = i < np ? model_param_tensor(m, i) : model_buffer_tensor(m, i - np);
        const float *src = (i < np ? params : buffers) + mt->offset;
        snprintf(t[i].name, sizeof t[i].name, "%s", mt->name);
        t[i].ndim = mt->ndim;
        memcpy(t[i].shape, mt->shape, sizeof t[i].shape);
        t[i].offset = (int64_t)off;
        model_tensor_to_torch(mt, src, d + off);
        off += mt->numel;
    }
    *h = (model_state_header){.n_tensors = np + nb, .n_floats = (int64_t)off};
    *tp = t;
    *dp = d;
}
