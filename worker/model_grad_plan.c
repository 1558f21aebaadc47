/* Arena layouts by lifetime. Gradient arena: In backward (ops in reverse), the gradient of a slot
 * is live from the backward of its last consumer (the first to accumulate into it; it is zeroed
 * just before, unless that consumer writes it: gradient_written) to the backward of its producer
 * (the last to read it). Slots whose live ranges do not overlap share memory: placed largest first
 * at the lowest offset that fits among the overlapping ones. The image gradient stays live to the
 * end (model_input_grad). Eval-only plans also share the activation arena: a slot lives from its
 * producer to its last consumer in forward order. */
#include "common/log.h"
#include "worker/model_internal.h"

#include <stdlib.h>
#include <string.h>

static size_t numel(const slot *s) {
    return (size_t)s->n * s->h * s->w * s->c;
}

typedef struct range {
    int t0, t1; /* backward steps (op index counted from the end), inclusive */
    size_t off, size;
    int slot;
} range;

static int by_size_desc(const void *a, const void *b) {
    const range *x = a, *y = b;
    if (x->size != y->size) return x->size < y->size ? 1 : -1;
    return x->slot - y->slot;
}
static int by_off(const void *a, const void *b) {
    const range *x = *(const range *const *)a, *y = *(const range *const *)b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Largest first, each at the lowest offset that fits among the ranges overlapping it in time.
 * Returns the arena size (floats). */
static size_t place(range *r, int nr) {
    qsort(r, (size_t)nr, sizeof *r, by_size_desc);
    range **live = xmalloc(((size_t)nr + 1) * sizeof *live);
    size_t total = 0;
    for (int i = 0; i < nr; i++) {
        int k = 0;
        for (int j = 0; j < i; j++)
            if (r[j].t0 <= r[i].t1 && r[i].t0 <= r[j].t1) live[k++] = &r[j];
        qsort(live, (size_t)k, sizeof *live, by_off);
        size_t off = 0;
        for (int j = 0; j < k; j++) {
            if (live[j]->off >= off + r[i].size) break;
            size_t end = live[j]->off + live[j]->size;
            if (end > off) off = end;
        }
        r[i].off = off;
        if (off + r[i].size > total) total = off + r[i].size;
    }
    free(live);
    return total;
}

/* Inputs of an op (slot indices) whose gradients its backward reads/accumulates; a conversion to
 * bf16 has none (the float slot's gradient comes from the convolutions). */
int model_op_inputs(const op *o, int *in) {
    int k = 0;
    if (o->kind == OP_TO_BF16) return 0;
    if (o->kind == OP_CONCAT) {
        for (int i = 0; i < o->nin; i++) in[k++] = o->ins[i];
        return k;
    }
    in[k++] = o->x;
    if (o->kind == OP_ADD) in[k++] = o->x2;
    return k;
}

/* Slots an op reads in forward (for activation lifetimes): a bf16 convolution reads its input's
 * shadow, a conversion its float input. */
int model_op_reads(const op *o, int *in) {
    if (o->kind == OP_TO_BF16) return in[0] = o->x, 1;
    if (o->kind == OP_CONV && o->xb >= 0) return in[0] = o->xb, 1;
    return model_op_inputs(o, in);
}

/* prod[s]: the op writing slot s (-1: the image); cons[s]: the last op reading it (-1: none),
 * reading in forward (activations) or by gradient (activations false). */
static void lifetimes(const model *m, int *prod, int *cons, bool activations) {
    for (int s = 0; s < m->nslots; s++) prod[s] = cons[s] = -1;
    for (int i = 0; i < m->nops; i++) {
        const op *o = &m->ops[i];
        int in[OP_MAX_IN + 1], k = activations ? model_op_reads(o, in) : model_op_inputs(o, in);
        for (int j = 0; j < k; j++)
            if (i > cons[in[j]]) cons[in[j]] = i;
        if (o->kind != OP_OUTPUT) prod[o->y] = i;
        if (o->kind == OP_ATTN && o->y2 >= 0) prod[o->y2] = i;
        if (o->kind == OP_BN_SILU && o->yb >= 0) prod[o->yb] = i;
    }
}

/* Slots whose gradient the first op to produce it in backward (its last reader in forward)
 * WRITES rather than accumulates, so it needs no zeroing: the input of a conv or a BN + SiLU that
 * is its last reader (the conv's backward-data, batchnorm_silu_backward_set: op.dx_write). */
static bool *gradient_written(model *m, const int *cons) {
    bool *w = xcalloc((size_t)m->nslots, sizeof *w);
    for (int i = 0; i < m->nops; i++) {
        op *o = &m->ops[i];
        o->dx_write = false;
        bool writes = o->kind == OP_CONV || o->kind == OP_BN_SILU;
        if (writes && o->x != 0 && cons[o->x] == i) w[o->x] = o->dx_write = true;
    }
    return w;
}

void model_share_activations(model *m, bool train) {
    int S = m->nslots, N = m->nops;
    int *prod = xmalloc((size_t)S * sizeof *prod), *cons = xmalloc((size_t)S * sizeof *cons);
    lifetimes(m, prod, cons, true);
    /* for training, slots that a backward op reads (conv, BN, SiLU, BN+SiLU and attention inputs;
     * a bf16 conv's shadow instead of its input) stay to the end; the rest (inputs only of add,
     * concat, slice, upsample, pool, detach, output, bf16 conversion) die after their last
     * forward reader */
    bool *keep = xcalloc((size_t)S, sizeof *keep);
    for (int i = 0; train && i < N; i++) {
        const op *o = &m->ops[i];
        op_kind k = o->kind;
        if (k == OP_CONV || k == OP_BN || k == OP_SILU || k == OP_ATTN || k == OP_BN_SILU)
            keep[k == OP_CONV && o->xb >= 0 ? o->xb : o->x] = true;
    }
    range *r = xmalloc((size_t)S * sizeof *r);
    for (int s = 0; s < S; s++) {
        int t1 = keep[s] ? N : cons[s] >= 0 ? cons[s] : prod[s];
        r[s] = (range){prod[s], t1, 0, m->slots[s].no_act ? 0 : numel(&m->slots[s]), s};
    }
    free(keep);
    m->arena_floats = place(r, S);
    for (int i = 0; i < S; i++) m->slots[r[i].slot].off = r[i].off;
    free(r);
    free(prod);
    free(cons);
}

void model_plan_grads(model *m) {
    int S = m->nslots, N = m->nops;
    int *prod = xmalloc((size_t)S * sizeof *prod), *cons = xmalloc((size_t)S * sizeof *cons);
    lifetimes(m, prod, cons, false);
    /* zero-before lists (CSR over ops) */
    free(m->zero_start);
    free(m->zero_slots);
    m->zero_start = xcalloc((size_t)N + 1, sizeof *m->zero_start);
    m->zero_slots = xmalloc(((size_t)S + 1) * sizeof *m->zero_slots);
    int *zero_at = xmalloc((size_t)S * sizeof *zero_at);
    bool *written = gradient_written(m, cons);
    for (int s = 0; s < S; s++) {
        zero_at[s] = m->slots[s].bf16 ? -1 : cons[s] >= 0 ? cons[s] : prod[s]; /* shadow: none */
        if (zero_at[s] >= 0 && !written[s]) m->zero_start[zero_at[s] + 1]++;
    }
    for (int i = 0; i < N; i++) m->zero_start[i + 1] += m->zero_start[i];
    int *fill = xcalloc((size_t)N, sizeof *fill);
    for (int s = 0; s < S; s++)
        if (zero_at[s] >= 0 && !written[s])
            m->zero_slots[m->zero_start[zero_at[s]] + fill[zero_at[s]]++] = s;
    free(fill);
    free(written);

    if (m->keep_grads) {
        for (int s = 0; s < S; s++) m->slots[s].goff = m->slots[s].off;
        m->grad_floats = m->arena_floats;
        free(prod);
        free(cons);
        free(zero_at);
        return;
    }
    range *r = xmalloc((size_t)S * sizeof *r);
    int nr = 0;
    for (int s = 0; s < S; s++) {
        if (zero_at[s] < 0) continue; /* never touched in backward */
        int t0 = N - 1 - zero_at[s];
        int t1 = s == 0 || prod[s] < 0 ? N : N - 1 - prod[s];
        r[nr++] = (range){t0, t1, 0, numel(&m->slots[s]), s};
    }
    m->grad_floats = place(r, nr);
    for (int i = 0; i < nr; i++) m->slots[r[i].slot].goff = r[i].off;
    free(r);
    free(prod);
    free(cons);
    free(zero_at);
}
