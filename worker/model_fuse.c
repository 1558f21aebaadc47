/* The bf16 fusions of a built graph (model_internal.h: model_fuse_bf16). A bf16 convolution reads
 * the bf16 shadow of its input, which an OP_TO_BF16 pass writes, and converts its dy in backward:
 * where the input comes from a BN + SiLU, that op writes the shadow as it writes y, and where the
 * conv's output feeds only a BN + SiLU, that op's backward writes the conv's dy in bf16. Each row
 * is converted as it is produced, so the bits are those of the separate passes. */
#include "common/log.h"
#include "worker/model_internal.h"

#include <stdlib.h>

/* The op writing slot s before op `end` (-1: none, the image). */
static int producer(const model *m, int end, int s) {
    for (int i = end - 1; i >= 0; i--) {
        const op *o = &m->ops[i];
        if ((o->kind != OP_OUTPUT && o->y == s) || (o->kind == OP_ATTN && o->y2 == s)) return i;
    }
    return -1;
}

/* How many ops read slot s in forward (reads) or by gradient (!reads), ignoring op `except`. */
static int readers(const model *m, int s, int except, bool reads) {
    int n = 0;
    for (int i = 0; i < m->nops; i++) {
        if (i == except) continue;
        int in[OP_MAX_IN + 1],
            k = reads ? model_op_reads(&m->ops[i], in) : model_op_inputs(&m->ops[i], in);
        for (int j = 0; j < k; j++) n += in[j] == s;
    }
    return n;
}

/* Forward: a conversion of a BN + SiLU's output moves into that op (the op list is compacted). */
static void fuse_conversions(model *m) {
    bool *gone = xcalloc((size_t)m->nops, sizeof *gone);
    for (int i = 0; i < m->nops; i++) {
        const op *t = &m->ops[i];
        int p = t->kind == OP_TO_BF16 ? producer(m, i, t->x) : -1;
        if (p >= 0 && m->ops[p].kind == OP_BN_SILU && m->ops[p].yb < 0) {
            m->ops[p].yb = t->y;
            gone[i] = true;
        }
    }
    int kept = 0;
    for (int i = 0; i < m->nops; i++)
        if (!gone[i]) m->ops[kept++] = m->ops[i];
    m->nops = kept;
    free(gone);
    for (int i = 0; i < m->nops; i++) { /* float outputs that only the shadow's readers wanted */
        op *o = &m->ops[i];
        o->skip_y = o->kind == OP_BN_SILU && o->yb >= 0 && readers(m, o->y, i, true) == 0;
        if (o->skip_y) m->slots[o->y].no_act = true;
    }
}

/* Backward: a bf16 conv followed by the BN + SiLU that is the only reader of its output (so that
 * op writes the output's gradient, dx_write, and nothing else adds to it). They are adjacent: no
 * other conv's backward runs between them to reuse m->dyb. */
static void fuse_gradients(model *m) {
    for (int i = 0; i + 1 < m->nops; i++) {
        op *c = &m->ops[i], *n = &m->ops[i + 1];
        bool fuse = c->kind == OP_CONV && c->xb >= 0 && n->kind == OP_BN_SILU && n->x == c->y &&
                    readers(m, c->y, -1, false) == 1;
        c->dyb_ready = n->dx_bf16 = fuse;
    }
}

void model_fuse_bf16(model *m) {
    backend *be = m->be;
    if (!backend_supports(be, BACKEND_OP_BATCHNORM_SILU_FORWARD_TRAIN_BF16) ||
        !backend_supports(be, BACKEND_OP_BATCHNORM_SILU_FORWARD_EVAL_BF16) ||
        !backend_supports(be, BACKEND_OP_BATCHNORM_SILU_BACKWARD_SET_BF16))
        return; /* the to_bf16 passes stay */
    fuse_conversions(m);
    fuse_gradients(m);
}
