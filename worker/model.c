/* Model creation, parameter registry and initialisation, the host/device boundary of the flat
 * buffers and the head outputs (see model.h). */
#include "common/log.h"
#include "common/rng.h"
#include "worker/model_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Ultralytics' init: PyTorch defaults (kaiming-uniform a=sqrt(5) = U(+-1/sqrt(fan_in)) for conv
 * weights and Conv2d biases, BN gamma 1 beta 0, running 0/1), then Detect.bias_init. Into host
 * arrays of the parameters and buffers. */
static void init_params(model *m, uint64_t seed, float *params, float *buffers) {
    const model_yaml *y = &m->cfg;
    int det = y->nlayers - 1;
    double fan_in = 1;
    for (int i = 0; i < m->nparams; i++) {
        model_tensor *t = &m->params[i];
        float *p = params + t->offset;
        const char *nm = t->name;
        size_t len = strlen(nm);
        rng r = rng_keyed(seed, (uint64_t)i, 0x6d6f64656cULL);
        if (strstr(nm, ".dfl.conv.weight")) {
            for (size_t k = 0; k < t->numel; k++) p[k] = (float)k;
        } else if (t->ndim == 4) {
            fan_in = (double)t->shape[1] * t->shape[2] * t->shape[3];
            double bound = 1.0 / sqrt(fan_in);
            for (size_t k = 0; k < t->numel; k++) p[k] = (float)rng_range(&r, -bound, bound);
        } else if (len > 12 && !strcmp(nm + len - 10, ".bn.weight")) {
            for (size_t k = 0; k < t->numel; k++) p[k] = 1.0f;
        } else if (len > 10 && !strcmp(nm + len - 8, ".bn.bias")) {
            memset(p, 0, t->numel * sizeof *p);
        } else { /* a Conv2d bias: same bound as its weight (the previous tensor) */
            double bound = 1.0 / sqrt(fan_in);
            for (size_t k = 0; k < t->numel; k++) p[k] = (float)rng_range(&r, -bound, bound);
            int l, lvl;
            char br[16];
            if (sscanf(nm, "model.%d.%15[a-z0-9_].%d.2.bias", &l, br, &lvl) == 3 && l == det &&
                lvl >= 0 && lvl < 3) {
                if (!strcmp(br, "cv2") || !strcmp(br, "one2one_cv2")) {
                    for (size_t k = 0; k < t->numel; k++) p[k] = 2.0f;
                } else if (!strcmp(br, "cv3") || !strcmp(br, "one2one_cv3")) {
                    double s = 640.0 / m->strides[lvl];
                    float v = (float)log(5.0 / y->nc / (s * s));
                    for (size_t k = 0; k < t->numel && k < (size_t)y->nc; k++) p[k] = v;
                }
            }
        }
    }
    for (int i = 0; i < m->nbufs; i++) {
        model_tensor *t = &m->bufs[i];
        float v = strstr(t->name, "running_var") ? 1.0f : 0.0f;
        for (size_t k = 0; k < t->numel; k++) buffers[t->offset + k] = v;
    }
    m->num_batches_tracked = 0;
}

static void free_events(backend *be, backend_event **ev, int n) {
    for (int i = 0; ev && i < n; i++) backend_event_destroy(be, ev[i]);
    free(ev);
}

void model_free_plan(model *m) {
    backend *be = m->be;
    void *dev[] = {m->act,     m->dact,    m->scratch,        m->iscratch,
                   m->ws,      m->img_u8,  m->out[0],         m->out[1],
                   m->dout[0], m->dout[1], m->anchor_pts_dev, m->anchor_str_dev,
                   m->decoded, m->dyb,     m->det_dev,        m->det_counts_dev};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++) backend_free(be, dev[i]);
    free_events(be, m->ev_fwd, m->nops + 1);
    free_events(be, m->ev_bwd, m->nops + 1);
    for (int b = 0; b < 2; b++) {
        free(m->out_host[b]);
        m->out[b] = m->dout[b] = m->out_host[b] = NULL;
    }
    free(m->anchor_pts);
    free(m->anchor_str);
    free(m->zero_start);
    free(m->zero_slots);
    m->zero_start = m->zero_slots = NULL;
    m->act = m->dact = m->scratch = m->ws = m->anchor_pts = m->anchor_str = NULL;
    m->anchor_pts_dev = m->anchor_str_dev = m->decoded = NULL;
    m->det_dev = NULL;
    m->det_counts_dev = NULL;
    m->det_room = m->det_images = 0;
    m->iscratch = NULL;
    m->img_u8 = NULL;
    m->dyb = NULL;
    m->ev_fwd = m->ev_bwd = NULL;
    m->timed_fwd = m->timed_bwd = false;
    m->batch = 0;
}

model *model_create(const char *yaml, int nc, uint64_t seed, char *err, size_t errlen) {
    return model_create_on(backend_cpu_default(), yaml, nc, seed, err, errlen);
}

model *model_create_on(backend *be, const char *yaml, int nc, uint64_t seed, char *err,
                       size_t errlen) {
    return model_create_spec(be, &(model_spec){.yaml = yaml, .nc = nc}, seed, err, errlen);
}

model *model_create_spec(backend *be, const model_spec *spec, uint64_t seed, char *err,
                         size_t errlen) {
    model *m = xcalloc(1, sizeof *m);
    m->be = be;
    int rc = spec->yaml_text
                 ? model_yaml_load_text(spec->yaml_text, spec->yaml, spec->nc, &m->cfg, err, errlen)
                 : model_yaml_load(spec->yaml, spec->nc, &m->cfg, err, errlen);
    if (rc) {
        free(m);
        return NULL;
    }
    m->cfg.cls_width = spec->cls_width;
    m->layer_params = xcalloc((size_t)m->cfg.nlayers, sizeof *m->layer_params);
    /* the first build registers the parameters; the probe size only has to be a valid shape */
    if (model_build_graph(m, 1, 64, 64, true, NULL, NULL, err, errlen)) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s", err ? err : "");
        errf(err, errlen, "%s: %s", m->cfg.path, msg);
        model_free(m);
        return NULL;
    }
    size_t pbytes = m->nparam_floats * sizeof(float), bbytes = m->nbuf_floats * sizeof(float);
    m->p = backend_alloc(be, pbytes);
    m->g = backend_alloc(be, pbytes);
    m->b = backend_alloc(be, bbytes ? bbytes : sizeof(float));
    backend_zero(be, m->g, pbytes);
    float *p = xcalloc(m->nparam_floats, sizeof *p), *b = xcalloc(m->nbuf_floats + 1, sizeof *b);
    init_params(m, seed, p, b);
    backend_to_device(be, m->p, p, pbytes);
    backend_to_device(be, m->b, b, bbytes);
    free(p);
    free(b);
    m->ev_ready = backend_event_create(be);
    return m;
}

void model_free(model *m) {
    if (!m) return;
    model_free_plan(m);
    free(m->params);
    free(m->bufs);
    backend_free(m->be, m->p);
    backend_free(m->be, m->g);
    backend_free(m->be, m->b);
    backend_event_destroy(m->be, m->ev_ready);
    free(m->layer_params);
    free(m->slots);
    free(m->ops);
    free(m->names);
    model_yaml_free(&m->cfg);
    free(m);
}

const model_yaml *model_config(const model *m) {
    return &m->cfg;
}
backend *model_backend(const model *m) {
    return m->be;
}
size_t model_num_params(const model *m) {
    return m->nparam_floats;
}
size_t model_num_trainable(const model *m) {
    return m->ntrainable;
}
size_t model_num_buffer_floats(const model *m) {
    return m->nbuf_floats;
}
float *model_params(model *m) {
    return m->p;
}
float *model_grads(model *m) {
    return m->g;
}
float *model_buffers(model *m) {
    return m->b;
}
int model_num_param_tensors(const model *m) {
    return m->nparams;
}
const model_tensor *model_param_tensor(const model *m, int i) {
    return &m->params[i];
}
int model_num_buffer_tensors(const model *m) {
    return m->nbufs;
}
const model_tensor *model_buffer_tensor(const model *m, int i) {
    return &m->bufs[i];
}
long long *model_num_batches_tracked(model *m) {
    return &m->num_batches_tracked;
}
void model_zero_grad(model *m) {
    backend_zero(m->be, m->g, m->nparam_floats * sizeof *m->g);
}

void model_params_to_host(const model *m, float *dst) {
    backend_to_host(m->be, dst, m->p, m->nparam_floats * sizeof *dst);
}
void model_params_from_host(model *m, const float *src) {
    backend_to_device(m->be, m->p, src, m->nparam_floats * sizeof *src);
}
void model_buffers_to_host(const model *m, float *dst) {
    backend_to_host(m->be, dst, m->b, m->nbuf_floats * sizeof *dst);
}
void model_buffers_from_host(model *m, const float *src) {
    backend_to_device(m->be, m->b, src, m->nbuf_floats * sizeof *src);
}
size_t model_layer_params(const model *m, int layer) {
    return m->layer_params[layer];
}
int model_plan_bytes(model *m, int h, int w, bool train, size_t *bytes, char *err, size_t errlen) {
    if (h < 32 || w < 32 || h % 32 || w % 32)
        return errf(err, errlen, "image %dx%d: sides must be multiples of 32", h, w);
    model_free_plan(m);
    if (model_build_graph(m, 1, h, w, false, NULL, NULL, err, errlen)) return -1;
    if (!m->keep_grads) model_share_activations(m, train);
    m->grad_floats = 0;
    if (train) model_plan_grads(m);
    size_t ws = 0, anchors = 0;
    for (int i = 0; i < m->nops; i++)
        if (m->ops[i].kind == OP_CONV) {
            size_t s = conv2d_workspace_floats(&m->ops[i].cd);
            if (s > ws) ws = s;
        }
    for (int l = 0; l < m->nlevels; l++) anchors += (size_t)m->level_h[l] * m->level_w[l];
    /* head outputs and their gradients, per branch */
    size_t heads = 2 * (size_t)model_num_branches(m) * anchors * (size_t)m->no;
    *bytes = (m->arena_floats + m->grad_floats + m->scratch_floats + ws + heads) * sizeof(float) +
             m->scratch_i32 * sizeof(int32_t);
    model_free_plan(m);
    m->grad_floats = 0;
    return 0;
}

size_t model_arena_bytes(const model *m) {
    return (m->arena_floats + m->grad_floats + m->scratch_floats + m->conv_ws) * sizeof(float) +
           m->scratch_i32 * sizeof(int32_t);
}

static int find(const model_tensor *t, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, name)) return i;
    return -1;
}
int model_find_param(const model *m, const char *name) {
    return find(m->params, m->nparams, name);
}
int model_find_buffer(const model *m, const char *name) {
    return find(m->bufs, m->nbufs, name);
}

void model_conv_macs(const model *m, int h, int w, double *macs, double *bias_adds) {
    /* build on a scratch copy so an existing plan stays intact */
    model t = *m;
    t.slots = NULL;
    t.ops = NULL;
    t.names = NULL;
    t.cap_slots = t.cap_ops = t.cap_names = 0;
    char err[256];
    if (model_build_graph(&t, 1, h, w, false, macs, bias_adds, err, sizeof err)) {
        *macs = *bias_adds = NAN;
    }
    free(t.slots);
    free(t.ops);
    free(t.names);
}

int model_num_branches(const model *m) {
    return m->cfg.end2end ? 2 : 1;
}
int model_num_anchors(const model *m) {
    return m->anchors;
}
int model_planned_batch(const model *m) {
    return m->batch;
}
int model_out_channels(const model *m) {
    return m->no;
}
const float *model_output(const model *m, int branch) {
    return branch >= 0 && branch < model_num_branches(m) ? m->out[branch] : NULL;
}
static size_t output_floats(const model *m) {
    return (size_t)m->batch * m->anchors * m->no;
}
const float *model_output_host(model *m, int branch) {
    const float *o = model_output(m, branch);
    if (!o || backend_memory_is_host(m->be)) {
        if (o) backend_synchronize(m->be); /* the forward may still be running */
        return o;
    }
    if (!m->out_host[branch]) m->out_host[branch] = xmalloc(output_floats(m) * sizeof(float));
    backend_to_host(m->be, m->out_host[branch], o, output_floats(m) * sizeof(float));
    return m->out_host[branch];
}
float *model_head_grad(model *m, int branch) {
    return branch >= 0 && branch < model_num_branches(m) ? m->dout[branch] : NULL;
}
const float *model_anchor_points(const model *m) {
    return m->anchor_pts;
}
const float *model_anchor_strides(const model *m) {
    return m->anchor_str;
}
const float *model_anchor_points_device(const model *m) {
    return m->anchor_pts_dev;
}
const float *model_anchor_strides_device(const model *m) {
    return m->anchor_str_dev;
}

static const float *named(const model *m, const float *base, const char *name, int dims[4]) {
    if (!base) return NULL;
    for (int i = 0; i < m->nnames; i++)
        if (!strcmp(m->names[i].name, name)) {
            const slot *s = &m->slots[m->names[i].slot];
            if (dims) dims[0] = s->n, dims[1] = s->h, dims[2] = s->w, dims[3] = s->c;
            return base + s->off;
        }
    return NULL;
}

const float *model_activation(const model *m, const char *name, int dims[4]) {
    if (!m->keep_grads) return NULL; /* shared memory: many slots are overwritten */
    return named(m, m->act, name, dims);
}

const float *model_activation_grad(const model *m, const char *name, int dims[4]) {
    if (!m->keep_grads) return NULL;
    return named(m, m->dact, name, dims);
}

void model_set_conv_precision(model *m, conv2d_prec prec) {
    m->conv_prec = prec;
}

void model_set_bf16_fusion(model *m, bool on) {
    m->bf16_unfused = !on;
}

void model_keep_activation_grads(model *m, bool keep) {
    m->keep_grads = keep;
}

void model_tensor_to_torch(const model_tensor *t, const float *ours, float *torch) {
    if (!t->ohwi) {
        memcpy(torch, ours, t->numel * sizeof *ours);
        return;
    }
    int O = t->shape[0], I = t->shape[1], H = t->shape[2], W = t->shape[3];
    for (int o = 0; o < O; o++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int i = 0; i < I; i++)
                    torch[(((size_t)o * I + i) * H + y) * W + x] =
                        ours[(((size_t)o * H + y) * W + x) * I + i];
}

void model_tensor_from_torch(const model_tensor *t, const float *torch, float *ours) {
    if (!t->ohwi) {
        memcpy(ours, torch, t->numel * sizeof *ours);
        return;
    }
    int O = t->shape[0], I = t->shape[1], H = t->shape[2], W = t->shape[3];
    for (int o = 0; o < O; o++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int i = 0; i < I; i++)
                    ours[(((size_t)o * H + y) * W + x) * I + i] =
                        torch[(((size_t)o * I + i) * H + y) * W + x];
}
