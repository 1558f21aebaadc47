/* Runs the compiled op list: forward in order, backward in reverse (see model_internal.h). */
#include "common/log.h"
#include "common/timer.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/pool.h"
#include "kernels/tensor_ops.h"
#include "worker/model_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t numel(const slot *s) {
    return (size_t)s->n * s->h * s->w * s->c;
}
static size_t rows(const slot *s) {
    return (size_t)s->n * s->h * s->w;
}

static int level_anchor_offset(const model *m, int level) {
    int a = 0;
    for (int l = 0; l < level; l++) a += m->level_h[l] * m->level_w[l];
    return a;
}

static void run_forward(model *m, const op *o, bool train) {
    float *A = m->act;
    const slot *X = &m->slots[o->x], *Y = &m->slots[o->y];
    const float *x = A + X->off;
    float *y = A + Y->off;
    switch (o->kind) {
    case OP_CONV:
        conv2d_forward(&o->cd, x, m->p + m->params[o->pw].offset,
                       o->pb >= 0 ? m->p + m->params[o->pb].offset : NULL, y, m->ws);
        break;
    case OP_BN: {
        const float *g = m->p + m->params[o->pg].offset, *b = m->p + m->params[o->pbeta].offset;
        float *rm = m->b + m->bufs[o->bm].offset, *rv = m->b + m->bufs[o->bv].offset;
        float *save = m->scratch + o->save;
        if (train)
            batchnorm_forward_train((int)rows(X), X->c, x, g, b, BN_EPS, BN_MOMENTUM, rm, rv, save,
                                    save + X->c, y);
        else
            batchnorm_forward_infer((int)rows(X), X->c, x, g, b, rm, rv, BN_EPS, y);
        break;
    }
    case OP_SILU:
        silu_forward(numel(X), x, y);
        break;
    case OP_ADD:
        add_forward(numel(X), x, A + m->slots[o->x2].off, y);
        break;
    case OP_CONCAT: {
        const float *xs[OP_MAX_IN];
        int cs[OP_MAX_IN];
        for (int i = 0; i < o->nin; i++) {
            xs[i] = A + m->slots[o->ins[i]].off;
            cs[i] = m->slots[o->ins[i]].c;
        }
        concat_forward(rows(Y), o->nin, xs, cs, y);
        break;
    }
    case OP_SLICE:
        slice_channels_forward(rows(X), X->c, o->off, Y->c, x, y);
        break;
    case OP_UPSAMPLE:
        upsample2x_forward(X->n, X->h, X->w, X->c, x, y);
        break;
    case OP_MAXPOOL:
        maxpool_forward(X->n, X->h, X->w, X->c, o->k, o->stride, o->pad, x, y,
                        m->iscratch + o->argmax);
        break;
    case OP_ATTN:
        attention_forward(&o->ad, x, y, A + m->slots[o->y2].off, m->scratch + o->save);
        break;
    case OP_DETACH:
        memcpy(y, x, numel(X) * sizeof *x);
        break;
    case OP_OUTPUT: {
        size_t hw = (size_t)X->h * X->w, A_ = (size_t)m->anchors, no = (size_t)m->no;
        int a0 = level_anchor_offset(m, o->level);
        for (int b = 0; b < X->n; b++)
            memcpy(m->out[o->branch] + ((size_t)b * A_ + a0) * no, x + b * hw * no,
                   hw * no * sizeof *x);
        break;
    }
    }
}

static void run_backward(model *m, const op *o) {
    float *A = m->act, *D = m->dact;
    const slot *X = &m->slots[o->x], *Y = &m->slots[o->y];
    const float *x = A + X->off, *dy = D + Y->goff;
    /* slot 0 is the image: its gradient only when asked for (model_want_input_grad) */
    float *dx = o->x == 0 && !m->want_input_grad ? NULL : D + X->goff;
    switch (o->kind) {
    case OP_CONV:
        conv2d_backward(&o->cd, x, m->p + m->params[o->pw].offset, dy, dx,
                        m->g + m->params[o->pw].offset,
                        o->pb >= 0 ? m->g + m->params[o->pb].offset : NULL, m->ws);
        break;
    case OP_BN: {
        const float *save = m->scratch + o->save;
        batchnorm_backward((int)rows(X), X->c, x, m->p + m->params[o->pg].offset, save, save + X->c,
                           dy, dx, m->g + m->params[o->pg].offset,
                           m->g + m->params[o->pbeta].offset);
        break;
    }
    case OP_SILU:
        silu_backward(numel(X), x, dy, dx);
        break;
    case OP_ADD:
        accumulate(numel(Y), dy, dx);
        accumulate(numel(Y), dy, D + m->slots[o->x2].goff);
        break;
    case OP_CONCAT: {
        float *dxs[OP_MAX_IN];
        int cs[OP_MAX_IN];
        for (int i = 0; i < o->nin; i++) {
            dxs[i] = D + m->slots[o->ins[i]].goff;
            cs[i] = m->slots[o->ins[i]].c;
        }
        concat_backward(rows(Y), o->nin, cs, dy, dxs);
        break;
    }
    case OP_SLICE:
        slice_channels_backward(rows(X), X->c, o->off, Y->c, dy, dx);
        break;
    case OP_UPSAMPLE:
        upsample2x_backward(X->n, X->h, X->w, X->c, dy, dx);
        break;
    case OP_MAXPOOL:
        maxpool_backward(Y->n, Y->h, Y->w, Y->c, dy, m->iscratch + o->argmax, dx);
        break;
    case OP_ATTN:
        attention_backward(&o->ad, x, m->scratch + o->save, dy, D + m->slots[o->y2].goff, dx);
        break;
    case OP_DETACH:
        break;
    case OP_OUTPUT: {
        size_t hw = (size_t)X->h * X->w, A_ = (size_t)m->anchors, no = (size_t)m->no;
        int a0 = level_anchor_offset(m, o->level);
        for (int b = 0; b < X->n; b++)
            accumulate(hw * no, m->dout[o->branch] + ((size_t)b * A_ + a0) * no,
                       D + X->goff + b * hw * no);
        break;
    }
    }
}

const float *model_input_grad(const model *m) {
    return m->dact && m->want_input_grad ? m->dact + m->slots[0].goff : NULL;
}

void model_want_input_grad(model *m, bool on) {
    m->want_input_grad = on;
}

void model_forward(model *m, const float *images, bool train) {
    if (!m->act) FATAL("model_forward before model_plan");
    if (train && m->eval_only) FATAL("model_forward(train) on a model_plan_eval plan");
    const slot *img = &m->slots[0];
    memcpy(m->act + img->off, images, numel(img) * sizeof *images);
    m->t_conv = m->t_other = 0;
    memset(m->t_kind, 0, sizeof m->t_kind);
    for (int i = 0; i < m->nops; i++) {
        double t0 = now_seconds();
        run_forward(m, &m->ops[i], train);
        double dt = now_seconds() - t0;
        if (m->ops[i].kind == OP_CONV)
            m->t_conv += dt;
        else
            m->t_other += dt;
        m->t_kind[m->ops[i].kind][0] += dt;
    }
    if (train) m->num_batches_tracked++;
    m->trained_forward = train;
}

void model_set_grad_ready_hook(model *m, model_grad_ready_fn fn, void *ctx) {
    m->grad_hook = fn;
    m->grad_hook_ctx = ctx;
}

/* Reports the parameters of op o (a, b: param indices or -1) to the hook, merged when adjacent. */
static void report_grads(const model *m, int a, int b) {
    const model_tensor *ta = a >= 0 ? &m->params[a] : NULL, *tb = b >= 0 ? &m->params[b] : NULL;
    if (ta && tb && ta->offset + ta->numel == tb->offset)
        m->grad_hook(m->grad_hook_ctx, ta->offset, ta->numel + tb->numel);
    else
        for (int i = 0; i < 2; i++) {
            const model_tensor *t = i ? tb : ta;
            if (t) m->grad_hook(m->grad_hook_ctx, t->offset, t->numel);
        }
}

/* Parameters no op owns (their gradients never change) are final before backward starts. */
static void report_unowned_grads(const model *m) {
    bool *owned = xcalloc((size_t)m->nparams + 1, sizeof *owned);
    for (int i = 0; i < m->nops; i++) {
        const op *o = &m->ops[i];
        if (o->kind == OP_CONV) {
            owned[o->pw] = true;
            if (o->pb >= 0) owned[o->pb] = true;
        } else if (o->kind == OP_BN) {
            owned[o->pg] = owned[o->pbeta] = true;
        }
    }
    for (int i = 0; i < m->nparams; i++)
        if (!owned[i]) report_grads(m, i, -1);
    free(owned);
}

void model_backward(model *m, const float *dout_one2many, const float *dout_one2one) {
    if (!m->trained_forward) FATAL("model_backward needs a train-mode forward first");
    if (!m->dact) m->dact = xmalloc((m->grad_floats + 1) * sizeof *m->dact);
    size_t no = (size_t)m->batch * m->anchors * m->no;
    if (m->keep_grads) memset(m->dact, 0, m->grad_floats * sizeof *m->dact);
    const float *d[2] = {dout_one2many, dout_one2one};
    for (int b = 0; b < model_num_branches(m); b++) {
        if (d[b])
            memcpy(m->dout[b], d[b], no * sizeof *d[b]);
        else
            memset(m->dout[b], 0, no * sizeof *m->dout[b]);
    }
    if (m->grad_hook) report_unowned_grads(m);
    for (int i = m->nops - 1; i >= 0; i--) {
        double t0 = now_seconds();
        if (!m->keep_grads) /* gradients that become live here start from zero */
            for (int k = m->zero_start[i]; k < m->zero_start[i + 1]; k++) {
                if (m->zero_slots[k] == 0 && !m->want_input_grad) continue;
                const slot *s = &m->slots[m->zero_slots[k]];
                memset(m->dact + s->goff, 0, numel(s) * sizeof *m->dact);
            }
        run_backward(m, &m->ops[i]);
        const op *o = &m->ops[i];
        if (m->grad_hook && o->kind == OP_CONV) report_grads(m, o->pw, o->pb);
        if (m->grad_hook && o->kind == OP_BN) report_grads(m, o->pg, o->pbeta);
        double dt = now_seconds() - t0;
        if (m->ops[i].kind == OP_CONV)
            m->t_conv += dt;
        else
            m->t_other += dt;
        m->t_kind[m->ops[i].kind][1] += dt;
    }
}

/* Frees any earlier plan, rebuilds the graph at this shape and allocates the arena. */
static int plan(model *m, int batch, int h, int w, bool eval_only, char *err, size_t errlen) {
    if (batch < 1 || h < 32 || w < 32 || h % 32 || w % 32)
        return errf(err, errlen,
                    "batch %d, image %dx%d: need batch >= 1 and sides that are "
                    "multiples of 32",
                    batch, h, w);
    model_free_plan(m);
    if (model_build_graph(m, batch, h, w, false, NULL, NULL, err, errlen)) return -1;
    m->eval_only = eval_only;
    if (!m->keep_grads) model_share_activations(m, !eval_only);
    m->batch = batch;
    m->h = h;
    m->w = w;
    m->act = xmalloc(m->arena_floats * sizeof *m->act);
    if (eval_only)
        m->grad_floats = 0;
    else
        model_plan_grads(m); /* gradient memory is allocated by the first backward */
    m->scratch = xmalloc((m->scratch_floats + 1) * sizeof *m->scratch);
    m->iscratch = xmalloc((m->scratch_i32 + 1) * sizeof *m->iscratch);
    m->conv_ws = 0;
    for (int i = 0; i < m->nops; i++)
        if (m->ops[i].kind == OP_CONV) {
            size_t s = conv2d_workspace_floats(&m->ops[i].cd);
            if (s > m->conv_ws) m->conv_ws = s;
        }
    m->ws = xmalloc((m->conv_ws + 1) * sizeof *m->ws);
    m->anchors = 0;
    for (int l = 0; l < m->nlevels; l++) m->anchors += m->level_h[l] * m->level_w[l];
    size_t no = (size_t)batch * m->anchors * m->no;
    for (int b = 0; b < model_num_branches(m); b++) {
        m->out[b] = xcalloc(no, sizeof *m->out[b]);
        m->dout[b] = xcalloc(no, sizeof *m->dout[b]);
    }
    m->anchor_pts = xmalloc((size_t)m->anchors * 2 * sizeof *m->anchor_pts);
    m->anchor_str = xmalloc((size_t)m->anchors * sizeof *m->anchor_str);
    int a = 0;
    for (int l = 0; l < m->nlevels; l++)
        for (int yy = 0; yy < m->level_h[l]; yy++)
            for (int xx = 0; xx < m->level_w[l]; xx++, a++) {
                m->anchor_pts[2 * a] = (float)xx + 0.5f;
                m->anchor_pts[2 * a + 1] = (float)yy + 0.5f;
                m->anchor_str[a] = (float)m->strides[l];
            }
    m->trained_forward = false;
    return 0;
}

int model_plan(model *m, int batch, int h, int w, char *err, size_t errlen) {
    return plan(m, batch, h, w, false, err, errlen);
}

int model_plan_eval(model *m, int batch, int h, int w, char *err, size_t errlen) {
    return plan(m, batch, h, w, true, err, errlen);
}

const char *model_timing_text(const model *m, char *buf, size_t n) {
    static const char *names[] = {"conv",     "bn",   "silu", "add",    "concat", "slice",
                                  "upsample", "pool", "attn", "detach", "output"};
    size_t o = 0;
    buf[0] = 0;
    for (int k = 0; k <= OP_OUTPUT && o < n; k++) {
        if (m->t_kind[k][0] + m->t_kind[k][1] == 0) continue;
        o += (size_t)snprintf(buf + o, n - o, "%s%s %.3f/%.3f", o ? ", " : "", names[k],
                              m->t_kind[k][0], m->t_kind[k][1]);
    }
    return buf;
}
