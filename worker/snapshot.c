/* Worker training state <-> the checkpoint message (snapshot.h). */
#include "worker/snapshot.h"

#include "common/log.h"
#include "common/protocol.h"
#include "kernels/backend.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(OPTIM_MAX_GROUPS == STATE_MAX_GROUPS, "state_header holds every optimizer group");
_Static_assert(PG_WEIGHT == 0 && PG_BN == 1 && PG_BIAS == 2 && PG_MUON == 3,
               "state_group_tag_name (protocol.h) knows the tags");
_Static_assert(OPTIM_SGD == 0 && OPTIM_ADAMW == 1 && OPTIM_MUSGD == 2,
               "state_optimizer_name (protocol.h) knows the optimizers");

/* ---- the flat message ------------------------------------------------------------------------ */

typedef struct msg {
    tensor_desc *t;
    int n, cap;
    float *d;
    size_t nf, capf;
} msg;

/* Appends one tensor, converted to PyTorch layout, under prefix + name + suffix. */
static void add(msg *b, const char *prefix, const model_tensor *mt, const char *suffix,
                const float *ours) {
    if (b->n == b->cap)
        b->t = xrealloc(b->t, (size_t)(b->cap = b->cap ? 2 * b->cap : 512) * sizeof *b->t);
    if (b->nf + mt->numel > b->capf) {
        b->capf = 2 * (b->nf + mt->numel);
        b->d = xrealloc(b->d, b->capf * sizeof *b->d);
    }
    tensor_desc *t = &b->t[b->n++];
    memset(t, 0, sizeof *t);
    if (snprintf(t->name, sizeof t->name, "%s%s%s", prefix, mt->name, suffix) >=
        (int)sizeof t->name)
        FATAL("tensor name too long: %s%s%s", prefix, mt->name, suffix);
    t->ndim = mt->ndim;
    memcpy(t->shape, mt->shape, sizeof t->shape);
    t->offset = (int64_t)b->nf;
    model_tensor_to_torch(mt, ours, b->d + b->nf);
    b->nf += mt->numel;
}

/* Host copies of the state: the model's memory is its backend's, which may be a device's
 * (worker/model.h names the crossing points; the optimizer state and the gradient sum are backend
 * memory too). */
typedef struct host_state {
    float *params, *buffers, *ema_params, *ema_buffers, *m1, *m2, *acc;
} host_state;

static float *host_floats(size_t n) {
    return xcalloc(n ? n : 1, sizeof(float));
}

/* Reads everything (the gradient sum only when acc_live) from the backend. */
static void host_fetch(const snapshot_parts *p, host_state *h) {
    backend *be = model_backend(p->m);
    size_t np = model_num_params(p->m), nb = model_num_buffer_floats(p->m);
    *h = (host_state){.params = host_floats(np),
                      .buffers = host_floats(nb),
                      .ema_params = host_floats(np),
                      .ema_buffers = host_floats(nb),
                      .m1 = host_floats(p->opt->n),
                      .m2 = p->opt->m2 ? host_floats(p->opt->n) : NULL,
                      .acc = host_floats(np)};
    model_params_to_host(p->m, h->params);
    model_buffers_to_host(p->m, h->buffers);
    model_params_to_host(p->ema_m, h->ema_params);
    model_buffers_to_host(p->ema_m, h->ema_buffers);
    backend_to_host(be, h->m1, p->opt->m1, p->opt->n * sizeof *h->m1);
    if (h->m2) backend_to_host(be, h->m2, p->opt->m2, p->opt->n * sizeof *h->m2);
    if (*p->acc_live) backend_to_host(be, h->acc, *p->acc, np * sizeof *h->acc);
}

/* Writes it back (the gradient sum when acc_live, allocating it on the backend). */
static void host_store(snapshot_parts *p, const host_state *h) {
    backend *be = model_backend(p->m);
    size_t np = model_num_params(p->m);
    model_params_from_host(p->m, h->params);
    model_buffers_from_host(p->m, h->buffers);
    model_params_from_host(p->ema_m, h->ema_params);
    model_buffers_from_host(p->ema_m, h->ema_buffers);
    backend_to_device(be, p->opt->m1, h->m1, p->opt->n * sizeof *h->m1);
    if (h->m2) backend_to_device(be, p->opt->m2, h->m2, p->opt->n * sizeof *h->m2);
    if (*p->acc_live) {
        if (!*p->acc) *p->acc = backend_alloc(be, np * sizeof **p->acc);
        backend_to_device(be, *p->acc, h->acc, np * sizeof *h->acc);
    }
}

static void host_free(host_state *h) {
    free(h->params);
    free(h->buffers);
    free(h->ema_params);
    free(h->ema_buffers);
    free(h->m1);
    free(h->m2);
    free(h->acc);
}

static void add_model(msg *b, const char *prefix, const model *m, const float *params,
                      const float *buffers) {
    for (int i = 0; i < model_num_param_tensors(m); i++) {
        const model_tensor *mt = model_param_tensor(m, i);
        add(b, prefix, mt, "", params + mt->offset);
    }
    for (int i = 0; i < model_num_buffer_tensors(m); i++) {
        const model_tensor *mt = model_buffer_tensor(m, i);
        add(b, prefix, mt, "", buffers + mt->offset);
    }
}

/* The parameter a row of the optimizer's table belongs to (same offset in the flat buffer). */
static const model_tensor *param_at(const model *m, size_t offset) {
    for (int i = 0; i < model_num_param_tensors(m); i++)
        if (model_param_tensor(m, i)->offset == offset) return model_param_tensor(m, i);
    return NULL;
}

/* PyTorch's optimizer state keys for m1 / m2 (NULL: this tensor has no m2). */
static const char *key1(const optimizer *o) {
    return o->kind == OPTIM_ADAMW ? "/exp_avg" : "/momentum_buffer";
}
static const char *key2(const optimizer *o, const optim_tensor *ot) {
    if (!o->m2) return NULL;
    if (o->kind == OPTIM_ADAMW) return "/exp_avg_sq";
    return o->group[ot->group].use_muon ? "/momentum_buffer_SGD" : NULL;
}

static void add_optimizer(msg *b, const model *m, const optimizer *o, const host_state *h) {
    for (int k = 0; k < o->ntensors; k++) {
        const optim_tensor *ot = &o->tensors[k];
        const model_tensor *mt = param_at(m, ot->offset);
        if (!mt) FATAL("optimizer tensor at offset %zu is no parameter", ot->offset);
        add(b, "optimizer/state/", mt, key1(o), h->m1 + ot->offset);
        const char *k2 = key2(o, ot);
        if (k2) add(b, "optimizer/state/", mt, k2, h->m2 + ot->offset);
    }
}

static void send_msg(const msg *b, int tag_desc) {
    if (b->nf > INT_MAX || (size_t)b->n * sizeof *b->t > INT_MAX)
        FATAL("state of %zu floats is too large for one message", b->nf);
    CHECK_MPI(
        MPI_Send(b->t, (int)((size_t)b->n * sizeof *b->t), MPI_BYTE, 0, tag_desc, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Send(b->d, (int)b->nf, MPI_FLOAT, 0, tag_desc, MPI_COMM_WORLD));
}

static void msg_free(msg *b) {
    free(b->t);
    free(b->d);
}

/* ---- sending --------------------------------------------------------------------------------- */

static void fill_header(const snapshot_parts *p, const msg *b, state_header *h) {
    const optimizer *o = p->opt;
    *h = (state_header){.n_tensors = b->n,
                        .n_floats = (int64_t)b->nf,
                        .iterations = *p->iterations,
                        .last_opt_step = *p->last_opt_step,
                        .warmup_iters = *p->warmup_iters,
                        .optimizer_steps = o->step,
                        .ema_updates = p->ema->updates,
                        .bn_batches_model = *model_num_batches_tracked(p->m),
                        .bn_batches_ema = *model_num_batches_tracked(p->ema_m),
                        .accumulate = *p->accumulate,
                        .e2e_updates = *p->e2e_updates,
                        .optimizer_kind = o->kind,
                        .ngroups = o->ngroups,
                        .grad_accum = *p->acc_live,
                        .world_size = p->world_size};
    for (int g = 0; g < o->ngroups; g++) {
        h->group_tag[g] = o->group[g].tag;
        h->group_use_muon[g] = o->group[g].use_muon;
        h->group_lr[g] = o->group[g].lr;
        h->group_initial_lr[g] = o->group[g].initial_lr;
        h->group_momentum[g] = o->group[g].momentum;
        h->group_weight_decay[g] = o->group[g].weight_decay;
    }
}

void snapshot_send(const snapshot_parts *p) {
    if (p->wrank != 0 && !*p->acc_live) return;
    host_state hs;
    host_fetch(p, &hs);
    if (p->wrank == 0) {
        msg b = {0};
        add_model(&b, "model/", p->m, hs.params, hs.buffers);
        add_model(&b, "ema/", p->ema_m, hs.ema_params, hs.ema_buffers);
        add_optimizer(&b, p->m, p->opt, &hs);
        state_header h;
        fill_header(p, &b, &h);
        CHECK_MPI(MPI_Send(&h, sizeof h, MPI_BYTE, 0, TAG_STATE_HEADER, MPI_COMM_WORLD));
        send_msg(&b, TAG_STATE_DATA);
        msg_free(&b);
    }
    if (!*p->acc_live) {
        host_free(&hs);
        return;
    }
    msg b = {0};
    for (int i = 0; i < model_num_param_tensors(p->m); i++) {
        const model_tensor *mt = model_param_tensor(p->m, i);
        add(&b, "grad_accum/", mt, "", hs.acc + mt->offset);
    }
    host_free(&hs);
    accum_header ah = {.n_tensors = b.n, .n_floats = (int64_t)b.nf};
    CHECK_MPI(MPI_Send(&ah, sizeof ah, MPI_BYTE, 0, TAG_STATE_ACCUM, MPI_COMM_WORLD));
    send_msg(&b, TAG_STATE_ACCUM);
    msg_free(&b);
}

/* ---- restoring ------------------------------------------------------------------------------- */

/* Where a named tensor goes: the model tensor that describes it and its destination (our layout).
 */
static int locate(snapshot_parts *p, host_state *hs, const char *name, const model_tensor **mt,
                  float **dst, char *err, size_t errlen) {
    model *m = NULL;
    float *params = NULL, *buffers = NULL;
    const char *rest = NULL;
    if (!strncmp(name, "model/", 6))
        m = p->m, rest = name + 6, params = hs->params, buffers = hs->buffers;
    if (!strncmp(name, "ema/", 4))
        m = p->ema_m, rest = name + 4, params = hs->ema_params, buffers = hs->ema_buffers;
    if (m) {
        int i = model_find_param(m, rest);
        if (i >= 0) {
            *mt = model_param_tensor(m, i);
            *dst = params + (*mt)->offset;
            return 0;
        }
        i = model_find_buffer(m, rest);
        if (i >= 0) {
            *mt = model_buffer_tensor(m, i);
            *dst = buffers + (*mt)->offset;
            return 0;
        }
        return errf(err, errlen, "checkpoint tensor %s: this model has no such tensor", name);
    }
    const char *pfx = "optimizer/state/", *slash = strrchr(name, '/');
    if (strncmp(name, pfx, strlen(pfx)) || !slash || slash < name + strlen(pfx))
        return errf(err, errlen, "checkpoint tensor %s: not a model, EMA or optimizer tensor",
                    name);
    char pname[STATE_NAME_MAX];
    snprintf(pname, sizeof pname, "%.*s", (int)(slash - name - strlen(pfx)), name + strlen(pfx));
    int i = model_find_param(p->m, pname);
    if (i < 0) return errf(err, errlen, "checkpoint tensor %s: no parameter %s", name, pname);
    *mt = model_param_tensor(p->m, i);
    const optimizer *o = p->opt;
    if (!strcmp(slash, key1(o)))
        *dst = hs->m1 + (*mt)->offset;
    else if (o->m2 && (!strcmp(slash, "/exp_avg_sq") || !strcmp(slash, "/momentum_buffer_SGD")))
        *dst = hs->m2 + (*mt)->offset;
    else
        return errf(err, errlen, "checkpoint tensor %s: not state of a %s optimizer", name,
                    state_optimizer_name(o->kind));
    return 0;
}

static bool same_shape(const tensor_desc *t, const model_tensor *mt) {
    if (t->ndim != mt->ndim) return false;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] != mt->shape[d]) return false;
    return true;
}

/* How many tensors a complete state has for this model and optimizer. */
static int expected_tensors(snapshot_parts *p) {
    int per_model = model_num_param_tensors(p->m) + model_num_buffer_tensors(p->m),
        n = 2 * per_model;
    for (int k = 0; k < p->opt->ntensors; k++) n += 1 + (key2(p->opt, &p->opt->tensors[k]) != NULL);
    return n;
}

static int restore_counters(snapshot_parts *p, const state_header *h, char *err, size_t errlen) {
    optimizer *o = p->opt;
    if (h->optimizer_kind != (int32_t)o->kind || h->ngroups != o->ngroups)
        return errf(err, errlen,
                    "checkpoint optimizer %s with %d groups; this run builds %s with %d",
                    state_optimizer_name(h->optimizer_kind), h->ngroups,
                    state_optimizer_name(o->kind), o->ngroups);
    for (int g = 0; g < o->ngroups; g++) {
        o->group[g].lr = h->group_lr[g];
        o->group[g].initial_lr = h->group_initial_lr[g];
        o->group[g].momentum = h->group_momentum[g];
        o->group[g].weight_decay = h->group_weight_decay[g];
    }
    o->step = h->optimizer_steps;
    p->ema->updates = h->ema_updates;
    *p->iterations = h->iterations;
    *p->last_opt_step = h->last_opt_step;
    *p->warmup_iters = h->warmup_iters;
    *p->accumulate = h->accumulate;
    *p->e2e_updates = h->e2e_updates;
    *model_num_batches_tracked(p->m) = h->bn_batches_model;
    *model_num_batches_tracked(p->ema_m) = h->bn_batches_ema;
    return 0;
}

static int receive_accum(snapshot_parts *p, host_state *hs, char *err, size_t errlen) {
    accum_header ah;
    CHECK_MPI(
        MPI_Recv(&ah, sizeof ah, MPI_BYTE, 0, TAG_STATE_ACCUM, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    tensor_desc *t = xmalloc((size_t)(ah.n_tensors ? ah.n_tensors : 1) * sizeof *t);
    float *d = xmalloc((size_t)(ah.n_floats ? ah.n_floats : 1) * sizeof *d);
    CHECK_MPI(MPI_Recv(t, (int)(ah.n_tensors * (int64_t)sizeof *t), MPI_BYTE, 0, TAG_STATE_ACCUM,
                       MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    CHECK_MPI(MPI_Recv(d, (int)ah.n_floats, MPI_FLOAT, 0, TAG_STATE_ACCUM, MPI_COMM_WORLD,
                       MPI_STATUS_IGNORE));
    memset(hs->acc, 0, model_num_params(p->m) * sizeof *hs->acc);
    int rc = 0, found = 0;
    for (int64_t i = 0; i < ah.n_tensors && rc == 0; i++) {
        const char *name = t[i].name + strlen("grad_accum/");
        int k = strncmp(t[i].name, "grad_accum/", 11) ? -1 : model_find_param(p->m, name);
        if (k < 0 || !same_shape(&t[i], model_param_tensor(p->m, k)))
            rc = errf(err, errlen, "checkpoint tensor %s does not fit this model", t[i].name);
        else {
            const model_tensor *mt = model_param_tensor(p->m, k);
            model_tensor_from_torch(mt, d + t[i].offset, hs->acc + mt->offset);
            found++;
        }
    }
    if (rc == 0 && ah.n_tensors > 0 && found != model_num_param_tensors(p->m))
        rc = errf(err, errlen, "checkpoint gradient sum covers %d of %d parameters", found,
                  model_num_param_tensors(p->m));
    *p->acc_live = rc == 0 && ah.n_tensors > 0;
    free(t);
    free(d);
    return rc;
}

int snapshot_receive(snapshot_parts *p, char *err, size_t errlen) {
    state_header h;
    CHECK_MPI(MPI_Bcast(&h, sizeof h, MPI_BYTE, 0, MPI_COMM_WORLD));
    tensor_desc *t = xmalloc((size_t)(h.n_tensors ? h.n_tensors : 1) * sizeof *t);
    float *d = xmalloc((size_t)(h.n_floats ? h.n_floats : 1) * sizeof *d);
    CHECK_MPI(MPI_Bcast(t, (int)(h.n_tensors * (int64_t)sizeof *t), MPI_BYTE, 0, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Bcast(d, (int)h.n_floats, MPI_FLOAT, 0, MPI_COMM_WORLD));
    host_state hs;
    *p->acc_live = false;
    host_fetch(p, &hs);
    int rc = 0;
    for (int64_t i = 0; i < h.n_tensors && rc == 0; i++) {
        const model_tensor *mt = NULL;
        float *dst = NULL;
        if (locate(p, &hs, t[i].name, &mt, &dst, err, errlen) != 0)
            rc = -1;
        else if (!same_shape(&t[i], mt))
            rc = errf(err, errlen, "checkpoint tensor %s: shape does not match this model's",
                      t[i].name);
        else if (t[i].offset < 0 || t[i].offset + (int64_t)mt->numel > h.n_floats)
            rc = errf(err, errlen, "checkpoint tensor %s: data out of range", t[i].name);
        else
            model_tensor_from_torch(mt, d + t[i].offset, dst);
    }
    /* names are unique in a file, so a complete state has exactly this many */
    if (rc == 0 && h.n_tensors != expected_tensors(p))
        rc = errf(err, errlen, "checkpoint holds %lld tensors; this model and optimizer need %d",
                  (long long)h.n_tensors, expected_tensors(p));
    if (rc == 0) rc = restore_counters(p, &h, err, errlen);
    free(t);
    free(d);
    /* the coordinator sends every rank its gradient sum when one is pending: always receive it */
    if (h.grad_accum) {
        char e2[512];
        if (receive_accum(p, &hs, e2, sizeof e2) != 0 && rc == 0) rc = errf(err, errlen, "%s", e2);
    }
    if (rc == 0) host_store(p, &hs);
    host_free(&hs);
    return rc;
}
