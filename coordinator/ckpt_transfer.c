/* Training state between the workers' messages and checkpoint versions (ckpt_transfer.h). */
#include "coordinator/ckpt_transfer.h"

#include "common/log.h"
#include "common/protocol.h"
#include "coordinator/mpi_wait.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(STATE_NAME_MAX == CKPT_NAME_MAX, "message and file names have the same limit");
_Static_assert(STATE_MAX_GROUPS == CKPT_MAX_GROUPS, "every optimizer group fits a checkpoint");

/* ---- receiving a worker's state ------------------------------------------------------------ */

/* Tensors (name, shape, float offset) collected from messages before their memory settles. */
typedef struct table {
    ckpt_tensor *t;
    size_t *off; /* F32: offset in floats; I64: index into the counters */
    int n, cap;
    float *f;
    size_t nf;
} table;

static ckpt_tensor *table_add(table *b, const char *name, ckpt_dtype dt, int ndim,
                              const int32_t *shape, size_t off) {
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 1024;
        b->t = xrealloc(b->t, (size_t)b->cap * sizeof *b->t);
        b->off = xrealloc(b->off, (size_t)b->cap * sizeof *b->off);
    }
    ckpt_tensor *t = &b->t[b->n];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dt;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    b->off[b->n++] = off;
    return t;
}

/* Receives a desc table and its floats from src (tag), appending them under prefix. */
static void receive_tensors(table *b, int src, int tag, int64_t nt, int64_t nf, const char *strip,
                            const char *prefix) {
    if (nf > INT_MAX || nt * (int64_t)sizeof(tensor_desc) > INT_MAX)
        FATAL("rank %d: state message of %lld floats is too large", src, (long long)nf);
    tensor_desc *t = xmalloc((size_t)(nt ? nt : 1) * sizeof *t);
    CHECK_MPI(MPI_Recv(t, (int)(nt * (int64_t)sizeof *t), MPI_BYTE, src, tag, MPI_COMM_WORLD,
                       MPI_STATUS_IGNORE));
    b->f = xrealloc(b->f, (b->nf + (size_t)nf + 1) * sizeof *b->f);
    CHECK_MPI(
        MPI_Recv(b->f + b->nf, (int)nf, MPI_FLOAT, src, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    for (int64_t i = 0; i < nt; i++) {
        const char *rest = t[i].name;
        if (strip && !strncmp(rest, strip, strlen(strip))) rest += strlen(strip);
        char name[CKPT_NAME_MAX + 32];
        snprintf(name, sizeof name, "%s%s", prefix, rest);
        table_add(b, name, CKPT_F32, t[i].ndim, t[i].shape, b->nf + (size_t)t[i].offset);
    }
    b->nf += (size_t)nf;
    free(t);
}

static void meta_from_header(ckpt_meta *m, const state_header *h, int workers) {
    m->iterations = h->iterations;
    m->last_opt_step = h->last_opt_step;
    m->warmup_iters = h->warmup_iters;
    m->optimizer_steps = h->optimizer_steps;
    m->ema_updates = h->ema_updates;
    m->bn_batches_model = h->bn_batches_model;
    m->bn_batches_ema = h->bn_batches_ema;
    m->accumulate = h->accumulate;
    m->e2e_updates = h->e2e_updates;
    snprintf(m->optimizer, sizeof m->optimizer, "%s", state_optimizer_name(h->optimizer_kind));
    m->ngroups = h->ngroups;
    for (int g = 0; g < h->ngroups && g < CKPT_MAX_GROUPS; g++) {
        ckpt_param_group *pg = &m->group[g];
        snprintf(pg->tag, sizeof pg->tag, "%s", state_group_tag_name(h->group_tag[g]));
        pg->use_muon = h->group_use_muon[g];
        pg->lr = h->group_lr[g];
        pg->initial_lr = h->group_initial_lr[g];
        pg->momentum = h->group_momentum[g];
        pg->weight_decay = h->group_weight_decay[g];
    }
    m->grad_accum_ranks = h->grad_accum ? workers : 0;
    m->world_size = h->world_size;
}

/* "<bn>.num_batches_tracked" (int64, one counter per model) next to every "<bn>.running_mean". */
static void add_bn_counters(table *b) {
    int n = b->n;
    for (int i = 0; i < n; i++) {
        const char *nm = b->t[i].name, *suf = ".running_mean";
        size_t len = strlen(nm), ls = strlen(suf);
        bool model = !strncmp(nm, "model/", 6), ema = !strncmp(nm, "ema/", 4);
        if ((!model && !ema) || len < ls || strcmp(nm + len - ls, suf)) continue;
        char name[CKPT_NAME_MAX + 32];
        snprintf(name, sizeof name, "%.*s.num_batches_tracked", (int)(len - ls), nm);
        table_add(b, name, CKPT_I64, 0, NULL, model ? 0 : 1);
    }
}

void ckpt_state_receive(int workers, ckpt_job *job) {
    state_header h;
    mpi_wait_message(1, TAG_STATE_HEADER);
    CHECK_MPI(
        MPI_Recv(&h, sizeof h, MPI_BYTE, 1, TAG_STATE_HEADER, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    table b = {0};
    receive_tensors(&b, 1, TAG_STATE_DATA, h.n_tensors, h.n_floats, NULL, "");
    for (int r = 1; h.grad_accum && r <= workers; r++) {
        accum_header ah;
        mpi_wait_message(r, TAG_STATE_ACCUM);
        CHECK_MPI(MPI_Recv(&ah, sizeof ah, MPI_BYTE, r, TAG_STATE_ACCUM, MPI_COMM_WORLD,
                           MPI_STATUS_IGNORE));
        char prefix[32];
        snprintf(prefix, sizeof prefix, "grad_accum/rank%d/", r - 1);
        receive_tensors(&b, r, TAG_STATE_ACCUM, ah.n_tensors, ah.n_floats, "grad_accum/", prefix);
    }
    add_bn_counters(&b);
    meta_from_header(&job->meta, &h, workers);
    /* one block: the floats, then the two counters */
    size_t fbytes = (b.nf * sizeof(float) + 7) / 8 * 8;
    char *blob = xrealloc(b.f, fbytes + 2 * sizeof(int64_t));
    int64_t *counters = (int64_t *)(blob + fbytes);
    counters[0] = h.bn_batches_model;
    counters[1] = h.bn_batches_ema;
    for (int i = 0; i < b.n; i++)
        b.t[i].data = b.t[i].dtype == CKPT_I64 ? (const void *)&counters[b.off[i]]
                                               : (const void *)((float *)blob + b.off[i]);
    free(b.off);
    job->t = b.t;
    job->n = b.n;
    job->blob = blob;
}

/* ---- a version's state back to the workers -------------------------------------------------- */

typedef struct part {
    tensor_desc *t;
    int64_t n, nf;
    float *d;
} part;

struct ckpt_state {
    state_header h;
    part main;
    int ranks; /* gradient sums stored (the world size that wrote them), 0: none */
    part *accum;
};

static int index_of(const char *name, const char *(*fn)(int), int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(fn(i), name)) return i;
    return -1;
}
static const char *tag_name(int i) {
    return state_group_tag_name(i);
}
static const char *opt_name(int i) {
    return state_optimizer_name(i);
}

static int header_from_meta(state_header *h, const ckpt_meta *m, char *err, size_t errlen) {
    *h = (state_header){.iterations = m->iterations,
                        .last_opt_step = m->last_opt_step,
                        .warmup_iters = m->warmup_iters,
                        .optimizer_steps = m->optimizer_steps,
                        .ema_updates = m->ema_updates,
                        .bn_batches_model = m->bn_batches_model,
                        .bn_batches_ema = m->bn_batches_ema,
                        .accumulate = m->accumulate,
                        .e2e_updates = m->e2e_updates,
                        .optimizer_kind = index_of(m->optimizer, opt_name, 3),
                        .ngroups = m->ngroups,
                        .grad_accum = m->grad_accum_ranks > 0,
                        .world_size = m->world_size};
    if (h->optimizer_kind < 0) return errf(err, errlen, "unknown optimizer '%s'", m->optimizer);
    for (int g = 0; g < m->ngroups; g++) {
        h->group_tag[g] = index_of(m->group[g].tag, tag_name, 4);
        if (h->group_tag[g] < 0)
            return errf(err, errlen, "optimizer group %d: unknown tag '%s'", g, m->group[g].tag);
        h->group_use_muon[g] = m->group[g].use_muon;
        h->group_lr[g] = m->group[g].lr;
        h->group_initial_lr[g] = m->group[g].initial_lr;
        h->group_momentum[g] = m->group[g].momentum;
        h->group_weight_decay[g] = m->group[g].weight_decay;
    }
    return 0;
}

/* Appends tensor i of f to p under `name` (floats read and checked against their sha256). */
static int part_add(part *p, ckpt_file *f, int i, const char *name, char *err, size_t errlen) {
    const ckpt_tensor *ct = ckpt_tensor_at(f, i);
    int64_t numel = ckpt_tensor_numel(ct);
    p->t = xrealloc(p->t, (size_t)(p->n + 1) * sizeof *p->t);
    p->d = xrealloc(p->d, (size_t)(p->nf + numel + 1) * sizeof *p->d);
    tensor_desc *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ct->ndim;
    for (int d = 0; d < ct->ndim; d++) t->shape[d] = (int32_t)ct->shape[d];
    t->offset = p->nf;
    p->nf += numel;
    return ckpt_read_tensor(f, i, p->d + t->offset, err, errlen);
}

ckpt_state *ckpt_state_load(ckpt_file *f, char *err, size_t errlen) {
    const ckpt_meta *m = ckpt_file_meta(f);
    ckpt_state *s = xcalloc(1, sizeof *s);
    if (header_from_meta(&s->h, m, err, errlen) != 0) goto fail;
    s->ranks = m->grad_accum_ranks;
    if (s->ranks < 0 || s->ranks > 1 << 20) {
        errf(err, errlen, "%s: bad grad_accum_ranks %d", ckpt_path(f), s->ranks);
        goto fail;
    }
    s->accum = xcalloc((size_t)(s->ranks ? s->ranks : 1), sizeof *s->accum);
    for (int i = 0; i < ckpt_num_tensors(f); i++) {
        const ckpt_tensor *t = ckpt_tensor_at(f, i);
        if (t->dtype != CKPT_F32)
            continue; /* the num_batches_tracked copies: the header has them */
        int rc = 0;
        if (!strncmp(t->name, "model/", 6) || !strncmp(t->name, "ema/", 4) ||
            !strncmp(t->name, "optimizer/state/", 16)) {
            rc = part_add(&s->main, f, i, t->name, err, errlen);
        } else if (!strncmp(t->name, "grad_accum/rank", 15)) {
            char *end;
            long r = strtol(t->name + 15, &end, 10);
            if (*end != '/' || r < 0 || r >= s->ranks) {
                errf(err, errlen, "%s: tensor %s: rank out of range", ckpt_path(f), t->name);
                goto fail;
            }
            char name[CKPT_NAME_MAX + 16];
            snprintf(name, sizeof name, "grad_accum/%s", end + 1);
            rc = part_add(&s->accum[r], f, i, name, err, errlen);
        }
        if (rc) goto fail;
    }
    s->h.n_tensors = s->main.n;
    s->h.n_floats = s->main.nf;
    if (s->main.nf > INT_MAX) {
        errf(err, errlen, "%s: state of %lld floats is too large", ckpt_path(f),
             (long long)s->main.nf);
        goto fail;
    }
    return s;
fail:
    ckpt_state_free(s);
    return NULL;
}

static void send_part(const part *p, int rank) {
    accum_header ah = {.n_tensors = p ? p->n : 0, .n_floats = p ? p->nf : 0};
    CHECK_MPI(MPI_Send(&ah, sizeof ah, MPI_BYTE, rank, TAG_STATE_ACCUM, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Send(p ? p->t : NULL, (int)(ah.n_tensors * (int64_t)sizeof(tensor_desc)),
                       MPI_BYTE, rank, TAG_STATE_ACCUM, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Send(p ? p->d : NULL, (int)ah.n_floats, MPI_FLOAT, rank, TAG_STATE_ACCUM,
                       MPI_COMM_WORLD));
}

void ckpt_state_broadcast(const ckpt_state *s, int workers) {
    state_header h = s->h;
    CHECK_MPI(MPI_Bcast(&h, sizeof h, MPI_BYTE, 0, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Bcast(s->main.t, (int)(s->main.n * (int64_t)sizeof(tensor_desc)), MPI_BYTE, 0,
                        MPI_COMM_WORLD));
    CHECK_MPI(MPI_Bcast(s->main.d, (int)s->main.nf, MPI_FLOAT, 0, MPI_COMM_WORLD));
    if (!h.grad_accum) return;
    if (s->ranks == workers) {
        for (int r = 0; r < workers; r++) send_part(&s->accum[r], r + 1);
        return;
    }
    /* another world size: the all-reduce averages over `workers` and each rank's sum was scaled by
     * the old count, so rank 1 carries sum_k acc_k * workers / ranks and the others nothing */
    part merged = s->accum[0];
    merged.d = xmalloc((size_t)(merged.nf + 1) * sizeof *merged.d);
    for (int64_t i = 0; i < merged.nf; i++) {
        double v = 0;
        for (int k = 0; k < s->ranks; k++) v += s->accum[k].nf == merged.nf ? s->accum[k].d[i] : 0;
        merged.d[i] = (float)(v * workers / s->ranks);
    }
    log_info("resume: the gradients of a half-accumulated optimizer step, summed by %d worker(s), "
             "go to rank 1 of %d (the same step up to float rounding)",
             s->ranks, workers);
    send_part(&merged, 1);
    for (int r = 2; r <= workers; r++) send_part(NULL, r);
    free(merged.d);
}

void ckpt_state_free(ckpt_state *s) {
    if (!s) return;
    free(s->main.t);
    free(s->main.d);
    for (int r = 0; r < s->ranks && s->accum; r++) {
        free(s->accum[r].t);
        free(s->accum[r].d);
    }
    free(s->accum);
    free(s);
}
