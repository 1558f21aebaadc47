/* Runs the compiled op list on the model's backend: forward in order, backward in reverse (see
 * model_internal.h); plans the arena; times each op between two backend events. */
#include "common/log.h"
#include "kernels/batchnorm.h"
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

/* A shadow slot's bf16 values. */
static bf16 *shadow(const model *m, int s) {
    return (bf16 *)(m->act + m->slots[s].off);
}

static void bn_silu_forward_bf16(model *m, const op *o, bool train, int r, int c, const float *x,
                                 const float *g, const float *b, float *rm, float *rv,
                                 float *save) {
    float *y = o->skip_y ? NULL : m->act + m->slots[o->y].off;
    if (train)
        backend_batchnorm_silu_forward_train_bf16(m->be, r, c, x, g, b, BN_EPS, BN_MOMENTUM, rm, rv,
                                                  save, save + c, y, shadow(m, o->yb));
    else
        backend_batchnorm_silu_forward_eval_bf16(m->be, r, c, x, g, b, rm, rv, BN_EPS, y,
                                                 shadow(m, o->yb));
}

static void run_forward(model *m, const op *o, bool train) {
    backend *be = m->be;
    float *A = m->act;
    const slot *X = &m->slots[o->x], *Y = &m->slots[o->y];
    const float *x = A + X->off;
    float *y = A + Y->off;
    switch (o->kind) {
    case OP_CONV:
        if (o->xb >= 0)
            backend_conv2d_forward_bf16(
                be, &o->cd, shadow(m, o->xb), m->p + m->params[o->pw].offset,
                o->pb >= 0 ? m->p + m->params[o->pb].offset : NULL, y, m->ws);
        else
            backend_conv2d_forward(be, &o->cd, x, m->p + m->params[o->pw].offset,
                                   o->pb >= 0 ? m->p + m->params[o->pb].offset : NULL, y, m->ws);
        break;
    case OP_TO_BF16:
        backend_to_bf16(be, numel(X), x, (bf16 *)y);
        break;
    case OP_BN:
    case OP_BN_SILU: {
        const float *g = m->p + m->params[o->pg].offset, *b = m->p + m->params[o->pbeta].offset;
        float *rm = m->b + m->bufs[o->bm].offset, *rv = m->b + m->bufs[o->bv].offset;
        float *save = m->scratch + o->save;
        int r = (int)rows(X);
        if (o->kind == OP_BN_SILU && o->yb >= 0) /* with the shadow bf16 convs read */
            bn_silu_forward_bf16(m, o, train, r, X->c, x, g, b, rm, rv, save);
        else if (o->kind == OP_BN_SILU && train)
            backend_batchnorm_silu_forward_train(be, r, X->c, x, g, b, BN_EPS, BN_MOMENTUM, rm, rv,
                                                 save, save + X->c, y);
        else if (o->kind == OP_BN_SILU)
            backend_batchnorm_silu_forward_eval(be, r, X->c, x, g, b, rm, rv, BN_EPS, y);
        else if (train)
            backend_batchnorm_forward_train(be, r, X->c, x, g, b, BN_EPS, BN_MOMENTUM, rm, rv, save,
                                            save + X->c, y);
        else
            backend_batchnorm_forward_eval(be, r, X->c, x, g, b, rm, rv, BN_EPS, y);
        break;
    }
    case OP_SILU:
        backend_silu_forward(be, numel(X), x, y);
        break;
    case OP_ADD:
        backend_add(be, numel(X), x, A + m->slots[o->x2].off, y);
        break;
    case OP_CONCAT: {
        const float *xs[OP_MAX_IN];
        int cs[OP_MAX_IN];
        for (int i = 0; i < o->nin; i++) {
            xs[i] = A + m->slots[o->ins[i]].off;
            cs[i] = m->slots[o->ins[i]].c;
        }
        backend_concat_forward(be, rows(Y), o->nin, xs, cs, y);
        break;
    }
    case OP_SLICE:
        backend_slice_forward(be, rows(X), X->c, o->off, Y->c, x, y);
        break;
    case OP_UPSAMPLE:
        backend_upsample2x_forward(be, X->n, X->h, X->w, X->c, x, y);
        break;
    case OP_MAXPOOL:
        backend_maxpool_forward(be, X->n, X->h, X->w, X->c, o->k, o->stride, o->pad, x, y,
                                m->iscratch + o->argmax);
        break;
    case OP_ATTN:
        backend_attention_forward(be, &o->ad, x, y, A + m->slots[o->y2].off, m->scratch + o->save);
        break;
    case OP_DETACH:
        backend_copy(be, y, x, numel(X) * sizeof *x);
        break;
    case OP_OUTPUT: { /* image b's level rows go to anchors [a0, a0 + hw) of its output rows */
        size_t hw = (size_t)X->h * X->w, A_ = (size_t)m->anchors, no = (size_t)m->no;
        int a0 = level_anchor_offset(m, o->level);
        backend_copy_2d(be, m->out[o->branch] + (size_t)a0 * no, A_ * no * sizeof *x, x,
                        hw * no * sizeof *x, hw * no * sizeof *x, (size_t)X->n);
        break;
    }
    case OP_KIND_COUNT:
        FATAL("op kind %d", (int)o->kind);
    }
}

static void run_backward(model *m, const op *o) {
    backend *be = m->be;
    float *A = m->act, *D = m->dact;
    const slot *X = &m->slots[o->x], *Y = &m->slots[o->y];
    const float *x = A + X->off, *dy = D + Y->goff;
    /* slot 0 is the image: its gradient only when asked for (model_want_input_grad) */
    float *dx = o->x == 0 && !m->want_input_grad ? NULL : D + X->goff;
    switch (o->kind) {
    case OP_CONV:
        if (o->xb >= 0) { /* bf16: dy converted once for both halves (or by the BN + SiLU) */
            if (!o->dyb_ready) backend_to_bf16(be, numel(Y), dy, m->dyb);
            backend_conv2d_backward_bf16(be, &o->cd, shadow(m, o->xb),
                                         m->p + m->params[o->pw].offset, m->dyb, dx, o->dx_write,
                                         m->g + m->params[o->pw].offset, m->ws);
            break;
        }
        backend_conv2d_backward_filter(be, &o->cd, x, dy, m->g + m->params[o->pw].offset,
                                       o->pb >= 0 ? m->g + m->params[o->pb].offset : NULL, m->ws);
        if (dx && o->dx_write)
            backend_conv2d_backward_data_set(be, &o->cd, m->p + m->params[o->pw].offset, dy, dx,
                                             m->ws);
        else if (dx)
            backend_conv2d_backward_data(be, &o->cd, m->p + m->params[o->pw].offset, dy, dx, m->ws);
        break;
    case OP_BN:
    case OP_BN_SILU: {
        const float *save = m->scratch + o->save, *g = m->p + m->params[o->pg].offset;
        float *dg = m->g + m->params[o->pg].offset, *db = m->g + m->params[o->pbeta].offset;
        if (o->dx_bf16 && !o->dx_write) FATAL("bn_silu: a bf16 dy it does not write alone");
        if (o->dx_bf16) /* the conv before it reads bf16(dx) from m->dyb; dx holds scratch */
            backend_batchnorm_silu_backward_set_bf16(be, (int)rows(X), X->c, x, g,
                                                     m->p + m->params[o->pbeta].offset, save,
                                                     save + X->c, dy, dx, m->dyb, dg, db);
        else if (o->kind == OP_BN_SILU && o->dx_write)
            backend_batchnorm_silu_backward_set(be, (int)rows(X), X->c, x, g,
                                                m->p + m->params[o->pbeta].offset, save,
                                                save + X->c, dy, dx, dg, db);
        else if (o->kind == OP_BN_SILU)
            backend_batchnorm_silu_backward(be, (int)rows(X), X->c, x, g,
                                            m->p + m->params[o->pbeta].offset, save, save + X->c,
                                            dy, dx, dg, db);
        else
            backend_batchnorm_backward(be, (int)rows(X), X->c, x, g, save, save + X->c, dy, dx, dg,
                                       db);
        break;
    }
    case OP_SILU:
        backend_silu_backward(be, numel(X), x, dy, dx);
        break;
    case OP_ADD:
        backend_accumulate(be, numel(Y), dy, dx);
        backend_accumulate(be, numel(Y), dy, D + m->slots[o->x2].goff);
        break;
    case OP_CONCAT: {
        float *dxs[OP_MAX_IN];
        int cs[OP_MAX_IN];
        for (int i = 0; i < o->nin; i++) {
            dxs[i] = D + m->slots[o->ins[i]].goff;
            cs[i] = m->slots[o->ins[i]].c;
        }
        backend_concat_backward(be, rows(Y), o->nin, cs, dy, dxs);
        break;
    }
    case OP_SLICE:
        backend_slice_backward(be, rows(X), X->c, o->off, Y->c, dy, dx);
        break;
    case OP_UPSAMPLE:
        backend_upsample2x_backward(be, X->n, X->h, X->w, X->c, dy, dx);
        break;
    case OP_MAXPOOL:
        backend_maxpool_backward(be, X->n, X->h, X->w, X->c, o->k, o->stride, o->pad, dy,
                                 m->iscratch + o->argmax, dx);
        break;
    case OP_ATTN:
        backend_attention_backward(be, &o->ad, x, m->scratch + o->save, dy,
                                   D + m->slots[o->y2].goff, dx);
        break;
    case OP_DETACH:
    case OP_TO_BF16: /* the float slot's gradient flows through the convolutions */
        break;
    case OP_OUTPUT: {
        size_t hw = (size_t)X->h * X->w, A_ = (size_t)m->anchors, no = (size_t)m->no;
        int a0 = level_anchor_offset(m, o->level);
        for (int b = 0; b < X->n; b++)
            backend_accumulate(be, hw * no, m->dout[o->branch] + ((size_t)b * A_ + a0) * no,
                               D + X->goff + b * hw * no);
        break;
    }
    case OP_KIND_COUNT:
        FATAL("op kind %d", (int)o->kind);
    }
}

const float *model_input_grad(const model *m) {
    return m->dact && m->want_input_grad ? m->dact + m->slots[0].goff : NULL;
}

void model_want_input_grad(model *m, bool on) {
    m->want_input_grad = on;
}

/* The forward of every op from the input already in slot 0; each op between two events. */
static void forward_ops(model *m, bool train) {
    for (int i = 0; i < m->nops; i++) {
        backend_event_record(m->be, m->ev_fwd[i]);
        run_forward(m, &m->ops[i], train);
    }
    backend_event_record(m->be, m->ev_fwd[m->nops]);
    m->timed_fwd = true;
    m->timed_bwd = false;
    if (train) m->num_batches_tracked++;
    m->trained_forward = train;
}

static void check_forward(const model *m, bool train) {
    if (!m->act) FATAL("model_forward before model_plan");
    if (train && m->eval_only) FATAL("model_forward(train) on a model_plan_eval plan");
}

void model_forward(model *m, const float *images, bool train) {
    check_forward(m, train);
    const slot *img = &m->slots[0];
    backend_to_device(m->be, m->act + img->off, images, numel(img) * sizeof *images);
    forward_ops(m, train);
}

void model_forward_u8_device(model *m, const uint8_t *images, bool train) {
    check_forward(m, train);
    const slot *img = &m->slots[0];
    backend_normalize_u8(m->be, numel(img), images, 1.0f / 255.0f, m->act + img->off);
    forward_ops(m, train);
}

void model_forward_u8(model *m, const uint8_t *images, bool train) {
    size_t n = model_input_bytes_u8(m);
    const uint8_t *src = images; /* a host-memory backend reads the caller's bytes in place */
    if (!backend_memory_is_host(m->be)) {
        if (!m->img_u8) m->img_u8 = backend_alloc(m->be, n);
        backend_to_device(m->be, m->img_u8, images, n);
        src = m->img_u8;
    }
    model_forward_u8_device(m, src, train);
}

size_t model_input_bytes_u8(const model *m) {
    return numel(&m->slots[0]);
}

void model_set_grad_ready_hook(model *m, model_grad_ready_fn fn, void *ctx) {
    m->grad_hook = fn;
    m->grad_hook_ctx = ctx;
}

backend_event *model_grad_ready_event(model *m) {
    return m->ev_ready;
}

/* Reports the parameters of op o (a, b: param indices or -1) to the hook, merged when adjacent,
 * after marking the stream: the work that produced them has been enqueued before ev_ready. */
static void report_grads(const model *m, int a, int b) {
    backend_event_record(m->be, m->ev_ready);
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
        } else if (o->kind == OP_BN || o->kind == OP_BN_SILU) {
            owned[o->pg] = owned[o->pbeta] = true;
        }
    }
    for (int i = 0; i < m->nparams; i++)
        if (!owned[i]) report_grads(m, i, -1);
    free(owned);
}

void model_backward(model *m, const float *dout_one2many, const float *dout_one2one) {
    if (!m->trained_forward) FATAL("model_backward needs a train-mode forward first");
    size_t bytes = (size_t)m->batch * m->anchors * m->no * sizeof(float);
    const float *d[2] = {dout_one2many, dout_one2one};
    for (int b = 0; b < model_num_branches(m); b++) {
        if (d[b])
            backend_to_device(m->be, m->dout[b], d[b], bytes);
        else
            backend_zero(m->be, m->dout[b], bytes);
    }
    model_backward_from_head_grads(m);
}

void model_backward_from_head_grads(model *m) {
    if (!m->trained_forward) FATAL("model_backward needs a train-mode forward first");
    backend *be = m->be;
    if (!m->dact) m->dact = backend_alloc(be, (m->grad_floats + 1) * sizeof *m->dact);
    if (m->keep_grads) backend_zero(be, m->dact, m->grad_floats * sizeof *m->dact);
    if (m->grad_hook) report_unowned_grads(m);
    for (int i = m->nops - 1; i >= 0; i--) {
        backend_event_record(be, m->ev_bwd[i + 1]);
        if (!m->keep_grads) /* gradients that become live here start from zero */
            for (int k = m->zero_start[i]; k < m->zero_start[i + 1]; k++) {
                if (m->zero_slots[k] == 0 && !m->want_input_grad) continue;
                const slot *s = &m->slots[m->zero_slots[k]];
                backend_zero(be, m->dact + s->goff, numel(s) * sizeof *m->dact);
            }
        const op *o = &m->ops[i];
        run_backward(m, o);
        if (m->grad_hook && o->kind == OP_CONV) report_grads(m, o->pw, o->pb);
        if (m->grad_hook && (o->kind == OP_BN || o->kind == OP_BN_SILU))
            report_grads(m, o->pg, o->pbeta);
    }
    backend_event_record(be, m->ev_bwd[0]);
    m->timed_bwd = true;
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
    backend *be = m->be;
    m->eval_only = eval_only;
    if (!m->keep_grads) model_share_activations(m, !eval_only);
    m->batch = batch;
    m->h = h;
    m->w = w;
    m->act = backend_alloc(be, m->arena_floats * sizeof *m->act);
    if (eval_only)
        m->grad_floats = 0;
    else
        model_plan_grads(m); /* gradient memory is allocated by the first backward */
    m->scratch = backend_alloc(be, (m->scratch_floats + 1) * sizeof *m->scratch);
    m->iscratch = backend_alloc(be, (m->scratch_i32 + 1) * sizeof *m->iscratch);
    m->conv_ws = 0;
    for (int i = 0; i < m->nops; i++)
        if (m->ops[i].kind == OP_CONV) {
            size_t s = backend_conv2d_workspace_floats(be, &m->ops[i].cd);
            if (s > m->conv_ws) m->conv_ws = s;
        }
    m->ws = backend_alloc(be, (m->conv_ws + 1) * sizeof *m->ws);
    if (!eval_only && m->dyb_elems) m->dyb = backend_alloc(be, m->dyb_elems * sizeof *m->dyb);
    m->anchors = 0;
    for (int l = 0; l < m->nlevels; l++) m->anchors += m->level_h[l] * m->level_w[l];
    size_t no = (size_t)batch * m->anchors * m->no;
    for (int b = 0; b < model_num_branches(m); b++) {
        m->out[b] = backend_alloc(be, no * sizeof *m->out[b]);
        m->dout[b] = backend_alloc(be, no * sizeof *m->dout[b]);
        backend_zero(be, m->out[b], no * sizeof *m->out[b]);
        backend_zero(be, m->dout[b], no * sizeof *m->dout[b]);
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
    size_t apb = (size_t)m->anchors * 2 * sizeof(float), asb = (size_t)m->anchors * sizeof(float);
    m->anchor_pts_dev = backend_alloc(be, apb);
    m->anchor_str_dev = backend_alloc(be, asb);
    backend_to_device(be, m->anchor_pts_dev, m->anchor_pts, apb);
    backend_to_device(be, m->anchor_str_dev, m->anchor_str, asb);
    m->ev_fwd = xcalloc((size_t)m->nops + 1, sizeof *m->ev_fwd);
    m->ev_bwd = xcalloc((size_t)m->nops + 1, sizeof *m->ev_bwd);
    for (int i = 0; i <= m->nops; i++) {
        m->ev_fwd[i] = backend_event_create(be);
        m->ev_bwd[i] = backend_event_create(be);
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

/* ---- timing from the events around each op ---- */

static const char *const kind_names[] = {"conv",   "bn",       "silu",   "add",  "concat",
                                         "slice",  "upsample", "pool",   "attn", "detach",
                                         "output", "bn_silu",  "to_bf16"};
_Static_assert(sizeof kind_names / sizeof kind_names[0] == OP_KIND_COUNT,
               "kind_names needs one name per op_kind");

const char *model_op_kind_name(op_kind k) {
    return (unsigned)k < OP_KIND_COUNT ? kind_names[k] : "?";
}

/* Seconds per op kind, forward / backward, of the last forward and the backward after it. */
static void kind_seconds(const model *m, double t[OP_KIND_COUNT][2]) {
    memset(t, 0, sizeof(double) * OP_KIND_COUNT * 2);
    for (int i = 0; m->timed_fwd && i < m->nops; i++)
        t[m->ops[i].kind][0] += backend_event_elapsed(m->be, m->ev_fwd[i], m->ev_fwd[i + 1]);
    for (int i = 0; m->timed_bwd && i < m->nops; i++)
        t[m->ops[i].kind][1] += backend_event_elapsed(m->be, m->ev_bwd[i + 1], m->ev_bwd[i]);
}

void model_timing(const model *m, double *conv_s, double *other_s) {
    double t[OP_KIND_COUNT][2];
    kind_seconds(m, t);
    *conv_s = t[OP_CONV][0] + t[OP_CONV][1];
    *other_s = 0;
    for (int k = 0; k < OP_KIND_COUNT; k++)
        if (k != OP_CONV) *other_s += t[k][0] + t[k][1];
}

const char *model_timing_text(const model *m, char *buf, size_t n) {
    double t[OP_KIND_COUNT][2];
    kind_seconds(m, t);
    size_t o = 0;
    buf[0] = 0;
    for (int k = 0; k < OP_KIND_COUNT && o < n; k++) {
        if (t[k][0] + t[k][1] == 0) continue;
        o += (size_t)snprintf(buf + o, n - o, "%s%s %.3f/%.3f", o ? ", " : "",
                              model_op_kind_name((op_kind)k), t[k][0], t[k][1]);
    }
    return buf;
}
