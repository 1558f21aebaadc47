/* The oneDNN path of conv2d (see conv2d.c): convolution primitives for NHWC activations, with
 * the weights in the layout oneDNN picks (reordered from OHWI on every call because the weights
 * change every step). oneDNN writes its outputs, so dx goes through scratch + add and dw through a
 * reorder with a sum post-op. Everything runs on the engine and stream of the conv2d_ctx that
 * created the primitives.
 * CONV2D_BF16: the primitives take bf16 inputs (src and weights in forward, diff_dst and weights
 * in backward-data, src and diff_dst in backward-weights) and give float outputs; x and dy are
 * converted into the workspace on each call, the weights by their reorder (which converts). */
#include "common/log.h"
#include "kernels/bf16.h"
#include "kernels/conv2d_internal.h"

#include <stdint.h>
#include <stdlib.h>

typedef struct dnn_prim {
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t p;
} dnn_prim;

typedef struct dnn_conv {
    dnn_prim fwd, bwd_data, bwd_weights;
    dnn_prim w_to_fwd, w_to_bd; /* .p NULL when the primitive takes OHWI as it is */
    dnn_prim dw_to_user;        /* reorder with a sum post-op: dw += internal */
    dnnl_memory_t src, wuser, bias, dst, wfwd, wbd, dsrc, ddst, dwint, dwuser, scr_f, scr_d, scr_w;
    size_t wfwd_f, wbd_f, dwint_f, scr_f_f, scr_d_f, scr_w_f; /* region sizes, floats (rounded) */
    size_t xb_f, dyb_f; /* bf16: the converted x and dy regions (floats, rounded); 0 in fp32 */
    float *zero_bias;
    dnnl_engine_t engine; /* the owning context's (conv2d_dnn_env) */
    dnnl_stream_t stream;
} dnn_conv;

#define DNN_CHECK(call)                                                                            \
    do {                                                                                           \
        dnnl_status_t st_ = (call);                                                                \
        if (st_ != dnnl_success) FATAL("%s failed: oneDNN status %d", #call, (int)st_);            \
    } while (0)

static void env_init(conv2d_dnn_env *env) {
    if (env->engine) return;
    DNN_CHECK(dnnl_engine_create(&env->engine, dnnl_cpu, 0));
    DNN_CHECK(dnnl_stream_create(&env->stream, env->engine, dnnl_stream_default_flags));
}

void conv2d_dnn_env_free(conv2d_dnn_env *env) {
    if (env->stream) dnnl_stream_destroy(env->stream);
    if (env->engine) dnnl_engine_destroy(env->engine);
    env->stream = NULL;
    env->engine = NULL;
}

static void prim_destroy(dnn_prim *p) {
    if (p->p) dnnl_primitive_destroy(p->p);
    if (p->pd) dnnl_primitive_desc_destroy(p->pd);
    p->p = NULL;
    p->pd = NULL;
}

static size_t md_floats(const dnnl_memory_desc_t *md) {
    return conv2d_round16((dnnl_memory_desc_get_size(md) + sizeof(float) - 1) / sizeof(float));
}

static dnnl_memory_t mem_for(dnnl_engine_t engine, const dnnl_memory_desc_t *md) {
    dnnl_memory_t m;
    DNN_CHECK(dnnl_memory_create(&m, md, engine, DNNL_MEMORY_NONE));
    return m;
}

static const dnnl_memory_desc_t *pd_md(const dnn_prim *p, dnnl_query_t q) {
    return dnnl_primitive_desc_query_md(p->pd, q, 0);
}

/* Reorder src_md -> dst_md, or nothing if they are the same layout and no sum is wanted. */
static int make_reorder(dnnl_engine_t engine, dnn_prim *r, const dnnl_memory_desc_t *src,
                        const dnnl_memory_desc_t *dst, int sum) {
    if (!sum && dnnl_memory_desc_equal(src, dst)) return 0;
    dnnl_primitive_attr_t attr = NULL;
    if (sum) {
        dnnl_post_ops_t po;
        DNN_CHECK(dnnl_primitive_attr_create(&attr));
        DNN_CHECK(dnnl_post_ops_create(&po));
        DNN_CHECK(dnnl_post_ops_append_sum(po, 1.0f));
        DNN_CHECK(dnnl_primitive_attr_set_post_ops(attr, po));
        dnnl_post_ops_destroy(po);
    }
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&r->pd, src, engine, dst, engine, attr);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return -1;
    return dnnl_primitive_create(&r->p, r->pd) == dnnl_success ? 0 : -1;
}

void conv2d_dnn_free(dnn_conv *c) {
    if (!c) return;
    dnn_prim *ps[] = {&c->fwd,      &c->bwd_data, &c->bwd_weights,
                      &c->w_to_fwd, &c->w_to_bd,  &c->dw_to_user};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) prim_destroy(ps[i]);
    dnnl_memory_t ms[] = {c->src,  c->wuser, c->bias,   c->dst,   c->wfwd,  c->wbd,  c->dsrc,
                          c->ddst, c->dwint, c->dwuser, c->scr_f, c->scr_d, c->scr_w};
    for (size_t i = 0; i < sizeof ms / sizeof *ms; i++)
        if (ms[i]) dnnl_memory_destroy(ms[i]);
    free(c->zero_bias);
    free(c);
}

static int create_prim(dnnl_engine_t engine, dnn_prim *p, const dnnl_convolution_desc_t *od,
                       dnnl_primitive_attr_t attr, const_dnnl_primitive_desc_t hint) {
    if (dnnl_primitive_desc_create(&p->pd, od, attr, engine, hint) != dnnl_success) return -1;
    return dnnl_primitive_create(&p->p, p->pd) == dnnl_success ? 0 : -1;
}

static dnnl_memory_t scratch_mem(dnnl_engine_t engine, const dnn_prim *p, size_t *floats) {
    const dnnl_memory_desc_t *md = pd_md(p, dnnl_query_scratchpad_md);
    *floats = md ? md_floats(md) : 0;
    return *floats ? mem_for(engine, md) : NULL;
}

/* Builds the three convolution primitives and the weight reorders; NULL if oneDNN refuses. */
dnn_conv *conv2d_dnn_create(conv2d_dnn_env *env, const conv2d_desc *d) {
    env_init(env);
    dnn_conv *c = xcalloc(1, sizeof *c);
    c->engine = env->engine;
    c->stream = env->stream;
    dnnl_engine_t eng = c->engine;
    const int G = d->groups;
    /* bf16: src, weights and diff_dst in bf16 (x is always an input, so src of backward-data
     * is its float gradient: dsrc); dst, diff_src, diff_weights float */
    const dnnl_data_type_t in_t = d->prec == CONV2D_BF16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t src, dst, dsrc, ddst, bias, wuser, wany, dwany;
    dnnl_dims_t sd = {d->n, d->cin, d->h, d->w}, dd = {d->n, d->cout, d->oh, d->ow};
    dnnl_dims_t bd = {d->cout};
    DNN_CHECK(dnnl_memory_desc_init_by_tag(&src, 4, sd, in_t, dnnl_nhwc));
    DNN_CHECK(dnnl_memory_desc_init_by_tag(&dsrc, 4, sd, dnnl_f32, dnnl_nhwc));
    DNN_CHECK(dnnl_memory_desc_init_by_tag(&dst, 4, dd, dnnl_f32, dnnl_nhwc));
    DNN_CHECK(dnnl_memory_desc_init_by_tag(&ddst, 4, dd, in_t, dnnl_nhwc));
    DNN_CHECK(dnnl_memory_desc_init_by_tag(&bias, 1, bd, dnnl_f32, dnnl_a));
    if (G == 1) {
        dnnl_dims_t wd = {d->cout, d->cin, d->kh, d->kw};
        DNN_CHECK(dnnl_memory_desc_init_by_tag(&wuser, 4, wd, dnnl_f32, dnnl_ohwi));
        DNN_CHECK(dnnl_memory_desc_init_by_tag(&wany, 4, wd, in_t, dnnl_format_tag_any));
        DNN_CHECK(dnnl_memory_desc_init_by_tag(&dwany, 4, wd, dnnl_f32, dnnl_format_tag_any));
    } else {
        dnnl_dims_t wd = {G, d->cout / G, d->cin / G, d->kh, d->kw};
        DNN_CHECK(dnnl_memory_desc_init_by_tag(&wuser, 5, wd, dnnl_f32, dnnl_gohwi));
        DNN_CHECK(dnnl_memory_desc_init_by_tag(&wany, 5, wd, in_t, dnnl_format_tag_any));
        DNN_CHECK(dnnl_memory_desc_init_by_tag(&dwany, 5, wd, dnnl_f32, dnnl_format_tag_any));
    }
    dnnl_dims_t strides = {d->stride, d->stride}, pl = {d->pad, d->pad};
    /* oneDNN checks oh == (h + pl + pr - k) / s + 1 with the same floor as PyTorch. */
    dnnl_dims_t pr = {d->pad, d->pad};
    dnnl_primitive_attr_t attr;
    DNN_CHECK(dnnl_primitive_attr_create(&attr));
    DNN_CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    dnnl_convolution_desc_t fd, bdd, bwd;
    int ok =
        dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct,
                                           &src, &wany, &bias, &dst, strides, pl,
                                           pr) == dnnl_success &&
        create_prim(eng, &c->fwd, &fd, attr, NULL) == 0 &&
        dnnl_convolution_backward_data_desc_init(&bdd, dnnl_convolution_direct, &dsrc, &wany,
                                                 &ddst, strides, pl, pr) == dnnl_success &&
        create_prim(eng, &c->bwd_data, &bdd, attr, c->fwd.pd) == 0 &&
        dnnl_convolution_backward_weights_desc_init(&bwd, dnnl_convolution_direct, &src, &dwany,
                                                    NULL, &ddst, strides, pl, pr) == dnnl_success &&
        create_prim(eng, &c->bwd_weights, &bwd, attr, c->fwd.pd) == 0;
    dnnl_primitive_attr_destroy(attr);
    if (ok) {
        const dnnl_memory_desc_t *wf = pd_md(&c->fwd, dnnl_query_weights_md);
        const dnnl_memory_desc_t *wb = pd_md(&c->bwd_data, dnnl_query_weights_md);
        const dnnl_memory_desc_t *dwi = pd_md(&c->bwd_weights, dnnl_query_diff_weights_md);
        ok = make_reorder(eng, &c->w_to_fwd, &wuser, wf, 0) == 0 &&
             make_reorder(eng, &c->w_to_bd, &wuser, wb, 0) == 0 &&
             make_reorder(eng, &c->dw_to_user, dwi, &wuser, 1) == 0;
        if (ok) {
            c->src = mem_for(eng, &src);
            c->dst = mem_for(eng, &dst);
            c->dsrc = mem_for(eng, &dsrc);
            c->ddst = mem_for(eng, &ddst);
            if (d->prec == CONV2D_BF16) {
                c->xb_f = conv2d_round16((conv2d_rows_in(d) * d->cin + 1) / 2);
                c->dyb_f = conv2d_round16(((size_t)d->n * d->oh * d->ow * d->cout + 1) / 2);
            }
            c->bias = mem_for(eng, &bias);
            c->wuser = mem_for(eng, &wuser);
            c->dwuser = mem_for(eng, &wuser);
            c->wfwd = mem_for(eng, wf);
            c->wbd = mem_for(eng, wb);
            c->dwint = mem_for(eng, dwi);
            c->wfwd_f = c->w_to_fwd.p ? md_floats(wf) : 0;
            c->wbd_f = c->w_to_bd.p ? md_floats(wb) : 0;
            c->dwint_f = md_floats(dwi);
            c->scr_f = scratch_mem(eng, &c->fwd, &c->scr_f_f);
            c->scr_d = scratch_mem(eng, &c->bwd_data, &c->scr_d_f);
            c->scr_w = scratch_mem(eng, &c->bwd_weights, &c->scr_w_f);
            c->zero_bias = xcalloc((size_t)d->cout, sizeof(float));
        }
    }
    if (!ok) {
        conv2d_dnn_free(c);
        return NULL;
    }
    return c;
}

static const char *prim_impl_name(const dnn_prim *p) {
    const char *s = NULL;
    if (dnnl_primitive_desc_query(p->pd, dnnl_query_impl_info_str, 0, &s) != dnnl_success || !s)
        return "?";
    return s;
}

const char *conv2d_dnn_impl_name(const dnn_conv *c, int op) {
    return prim_impl_name(op == CONV_FWD        ? &c->fwd
                          : op == CONV_BWD_DATA ? &c->bwd_data
                                                : &c->bwd_weights);
}

size_t conv2d_dnn_ws_floats(const conv2d_desc *d, const dnn_conv *c, int op) {
    switch (op) {
    case CONV_FWD:
        return c->xb_f + c->wfwd_f + c->scr_f_f;
    case CONV_BWD_DATA:
        return c->dyb_f + c->wbd_f + c->scr_d_f + conv2d_round16(conv2d_rows_in(d) * d->cin);
    default:
        return c->xb_f + c->dyb_f + c->dwint_f + c->scr_w_f;
    }
}

static void set_handle(dnnl_memory_t m, const void *p) {
    DNN_CHECK(dnnl_memory_set_data_handle(m, (void *)p));
}

static void run(const dnn_conv *c, const dnn_prim *p, int nargs, const dnnl_exec_arg_t *args) {
    DNN_CHECK(dnnl_primitive_execute(p->p, c->stream, nargs, args));
}

/* Weights in the layout of primitive `prim`: reorder into ws, or the caller's buffer as is. */
static dnnl_memory_t weights_for(dnn_conv *c, const dnn_prim *reorder, dnnl_memory_t internal,
                                 const float *w, float *ws) {
    set_handle(c->wuser, w);
    if (!reorder->p) return c->wuser;
    set_handle(internal, ws);
    dnnl_exec_arg_t a[] = {{DNNL_ARG_FROM, c->wuser}, {DNNL_ARG_TO, internal}};
    run(c, reorder, 2, a);
    return internal;
}

/* bf16: n floats of src converted into the region at *ws (which moves past it); fp32: src. */
static const void *as_input(size_t n, const float *src, size_t region, float **ws) {
    if (!region) return src;
    bf16 *dst = (bf16 *)*ws;
    bf16_from_f32(n, src, dst);
    *ws += region;
    return dst;
}

void conv2d_dnn_forward(const conv2d_desc *d, dnn_conv *c, const float *x, const float *w,
                        const float *bias, float *y, float *ws) {
    const void *xin = as_input(conv2d_rows_in(d) * d->cin, x, c->xb_f, &ws);
    dnnl_memory_t wm = weights_for(c, &c->w_to_fwd, c->wfwd, w, ws);
    set_handle(c->src, xin);
    set_handle(c->bias, bias ? bias : c->zero_bias);
    set_handle(c->dst, y);
    dnnl_exec_arg_t a[5] = {{DNNL_ARG_SRC, c->src},
                            {DNNL_ARG_WEIGHTS, wm},
                            {DNNL_ARG_BIAS, c->bias},
                            {DNNL_ARG_DST, c->dst}};
    int na = 4;
    if (c->scr_f) {
        set_handle(c->scr_f, ws + c->wfwd_f);
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, c->scr_f};
    }
    run(c, &c->fwd, na, a);
    DNN_CHECK(dnnl_stream_wait(c->stream));
}

/* diff_src into out (oneDNN writes it); workspace: [dy bf16] [weights] [scratch]. */
static void backward_data_into(const conv2d_desc *d, dnn_conv *c, const float *w, const float *dy,
                               float *out, float *ws) {
    const size_t nout = (size_t)d->n * d->oh * d->ow * d->cout;
    float *p = ws;
    set_handle(c->ddst, as_input(nout, dy, c->dyb_f, &p));
    dnnl_memory_t wm = weights_for(c, &c->w_to_bd, c->wbd, w, p);
    set_handle(c->dsrc, out);
    dnnl_exec_arg_t a[4] = {
        {DNNL_ARG_DIFF_DST, c->ddst}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DIFF_SRC, c->dsrc}};
    int na = 3;
    if (c->scr_d) {
        set_handle(c->scr_d, p + c->wbd_f);
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, c->scr_d};
    }
    run(c, &c->bwd_data, na, a);
    DNN_CHECK(dnnl_stream_wait(c->stream));
}

void conv2d_dnn_backward(const conv2d_desc *d, dnn_conv *c, const float *x, const float *w,
                         const float *dy, float *dx, float *dw, float *ws) {
    const size_t nout = (size_t)d->n * d->oh * d->ow * d->cout;
    if (dw) { /* workspace: [x bf16] [dy bf16] [dw internal] [scratch] */
        float *p = ws;
        set_handle(c->src, as_input(conv2d_rows_in(d) * d->cin, x, c->xb_f, &p));
        set_handle(c->ddst, as_input(nout, dy, c->dyb_f, &p));
        set_handle(c->dwint, p);
        dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, c->src},
                                {DNNL_ARG_DIFF_DST, c->ddst},
                                {DNNL_ARG_DIFF_WEIGHTS, c->dwint}};
        int na = 3;
        if (c->scr_w) {
            set_handle(c->scr_w, p + c->dwint_f);
            a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, c->scr_w};
        }
        run(c, &c->bwd_weights, na, a);
        set_handle(c->dwuser, dw);
        dnnl_exec_arg_t r[] = {{DNNL_ARG_FROM, c->dwint}, {DNNL_ARG_TO, c->dwuser}};
        run(c, &c->dw_to_user, 2, r);
        DNN_CHECK(dnnl_stream_wait(c->stream));
    }
    if (dx) { /* workspace: [dy bf16] [weights] [scratch] [dx before the add] */
        float *tmp = ws + c->dyb_f + c->wbd_f + c->scr_d_f;
        backward_data_into(d, c, w, dy, tmp, ws);
        size_t total = conv2d_rows_in(d) * d->cin;
#pragma omp parallel for simd schedule(static)
        for (size_t i = 0; i < total; i++) dx[i] += tmp[i];
    }
}

void conv2d_dnn_backward_data_set(const conv2d_desc *d, dnn_conv *c, const float *w,
                                  const float *dy, float *dx, float *ws) {
    backward_data_into(d, c, w, dy, dx, ws);
}
