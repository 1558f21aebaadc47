/* The oneDNN path of conv2d (see conv2d.c): convolution primitives for NHWC activations, with
 * the weights in the layout oneDNN picks (reordered from OHWI on every call because the weights
 * change every step). oneDNN writes its outputs, so dx goes through scratch + add (unless written:
 * conv2d_dnn_backward_data_set) and dw through a reorder with a sum post-op. Everything runs on the
 * engine of the conv2d_ctx that created the primitives.
 * Lanes: with T threads and a batch that T divides, the batch is split into T lanes of n / T
 * images, each run by one OpenMP thread on single-threaded primitives (created with one thread, so
 * that they run whole inside the parallel region) with its own stream, memory objects and
 * workspace. No oneDNN-internal barrier then spins while a thread waits for a core another process
 * holds (measured: 78 % of a loaded 2-core machine's time in one), the threads share nothing but
 * the reordered weights, and each lane's data stays in its core's cache. Backward-weights sums the
 * lanes' gradients in lane order. Otherwise one lane runs the whole batch on T threads.
 * CONV2D_BF16: the primitives take bf16 inputs (src and weights in forward, diff_dst and weights
 * in backward-data, src and diff_dst in backward-weights) and give float outputs; x and dy are
 * converted into the workspace on each call (each lane its own images), the weights by their
 * reorder (which converts). */
#include "common/log.h"
#include "kernels/bf16.h"
#include "kernels/conv2d_internal.h"

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct dnn_prim {
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t p;
} dnn_prim;

/* One thread's memory objects and stream (lane 0 also serves the single-lane case). */
typedef struct dnn_lane {
    dnnl_stream_t stream;
    dnnl_memory_t src, dst, dsrc, ddst, bias, wfwd, wbd, dwint, scr_f, scr_d, scr_w;
} dnn_lane;

typedef struct dnn_conv {
    dnn_prim fwd, bwd_data, bwd_weights; /* for one lane's ns images */
    dnn_prim w_to_fwd, w_to_bd;          /* .p NULL when the primitive takes OHWI as it is */
    dnn_prim dw_to_user;                 /* reorder with a sum post-op: dw += internal */
    int lanes, ns;                       /* lanes x ns = the batch */
    dnn_lane *lane;
    dnnl_memory_t wuser, dwuser, wfwd, wbd; /* the caller's thread: weight reorders */
    /* region sizes in floats (rounded); xb, dyb: a lane's converted x and dy (bf16 only), tmp: a
     * lane's dx before the add */
    size_t wfwd_f, wbd_f, dwint_f, scr_f_f, scr_d_f, scr_w_f, xb_f, dyb_f, tmp_f;
    size_t in_img, out_img; /* floats per image of x and y */
    float *zero_bias;
    dnnl_engine_t engine; /* the owning context's (conv2d_dnn_env) */
    dnnl_stream_t stream;
} dnn_conv;

void conv2d_dnn_env_init(conv2d_dnn_env *env) {
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

dnnl_memory_t conv2d_dnn_mem(dnnl_engine_t engine, const dnnl_memory_desc_t *md) {
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
    for (int l = 0; c->lane && l < c->lanes; l++) {
        dnn_lane *L = &c->lane[l];
        dnnl_memory_t ms[] = {L->src, L->dst,   L->dsrc,  L->ddst,  L->bias, L->wfwd,
                              L->wbd, L->dwint, L->scr_f, L->scr_d, L->scr_w};
        for (size_t i = 0; i < sizeof ms / sizeof *ms; i++)
            if (ms[i]) dnnl_memory_destroy(ms[i]);
        if (L->stream) dnnl_stream_destroy(L->stream);
    }
    free(c->lane);
    dnnl_memory_t ms[] = {c->wuser, c->dwuser, c->wfwd, c->wbd};
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

dnnl_memory_t conv2d_dnn_scratch(dnnl_engine_t engine, const_dnnl_primitive_desc_t pd,
                                 size_t *floats) {
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    *floats = md ? md_floats(md) : 0;
    return *floats ? conv2d_dnn_mem(engine, md) : NULL;
}

/* The primitives for ns images. With one_thread, created while OpenMP reports one thread, so
 * that they are built for (and run whole on) the thread that executes them. 0 or -1. */
static int create_prims(dnn_conv *c, const conv2d_desc *d, int ns, int one_thread) {
    dnnl_engine_t eng = c->engine;
    const int G = d->groups;
    /* bf16: src, weights and diff_dst in bf16 (x is always an input, so src of backward-data
     * is its float gradient: dsrc); dst, diff_src, diff_weights float */
    const dnnl_data_type_t in_t = d->prec == CONV2D_BF16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t src, dst, dsrc, ddst, bias, wuser, wany, dwany;
    dnnl_dims_t sd = {ns, d->cin, d->h, d->w}, dd = {ns, d->cout, d->oh, d->ow};
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
    int threads = omp_get_max_threads();
    if (one_thread) omp_set_num_threads(1);
    int ok =
        dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct,
                                           &src, &wany, &bias, &dst, strides, pl,
                                           pr) == dnnl_success &&
        create_prim(eng, &c->fwd, &fd, attr, NULL) == 0 &&
        dnnl_convolution_backward_data_desc_init(&bdd, dnnl_convolution_direct, &dsrc, &wany, &ddst,
                                                 strides, pl, pr) == dnnl_success &&
        create_prim(eng, &c->bwd_data, &bdd, attr, c->fwd.pd) == 0 &&
        dnnl_convolution_backward_weights_desc_init(&bwd, dnnl_convolution_direct, &src, &dwany,
                                                    NULL, &ddst, strides, pl, pr) == dnnl_success &&
        create_prim(eng, &c->bwd_weights, &bwd, attr, c->fwd.pd) == 0;
    if (one_thread) omp_set_num_threads(threads);
    dnnl_primitive_attr_destroy(attr);
    if (!ok) return -1;
    const dnnl_memory_desc_t *wf = pd_md(&c->fwd, dnnl_query_weights_md);
    const dnnl_memory_desc_t *wb = pd_md(&c->bwd_data, dnnl_query_weights_md);
    const dnnl_memory_desc_t *dwi = pd_md(&c->bwd_weights, dnnl_query_diff_weights_md);
    if (make_reorder(eng, &c->w_to_fwd, &wuser, wf, 0) != 0 ||
        make_reorder(eng, &c->w_to_bd, &wuser, wb, 0) != 0 ||
        make_reorder(eng, &c->dw_to_user, dwi, &wuser, 1) != 0)
        return -1;
    c->wuser = conv2d_dnn_mem(eng, &wuser);
    c->dwuser = conv2d_dnn_mem(eng, &wuser);
    c->wfwd = conv2d_dnn_mem(eng, wf);
    c->wbd = conv2d_dnn_mem(eng, wb);
    c->wfwd_f = c->w_to_fwd.p ? md_floats(wf) : 0;
    c->wbd_f = c->w_to_bd.p ? md_floats(wb) : 0;
    c->dwint_f = md_floats(dwi);
    c->lane = xcalloc((size_t)c->lanes, sizeof *c->lane);
    for (int l = 0; l < c->lanes; l++) {
        dnn_lane *L = &c->lane[l];
        if (c->lanes > 1)
            DNN_CHECK(dnnl_stream_create(&L->stream, eng, dnnl_stream_default_flags));
        else
            L->stream = NULL; /* the context's */
        L->src = conv2d_dnn_mem(eng, &src);
        L->dst = conv2d_dnn_mem(eng, &dst);
        L->dsrc = conv2d_dnn_mem(eng, &dsrc);
        L->ddst = conv2d_dnn_mem(eng, &ddst);
        L->bias = conv2d_dnn_mem(eng, &bias);
        L->wfwd = conv2d_dnn_mem(eng, wf);
        L->wbd = conv2d_dnn_mem(eng, wb);
        L->dwint = conv2d_dnn_mem(eng, dwi);
        L->scr_f = conv2d_dnn_scratch(eng, c->fwd.pd, &c->scr_f_f);
        L->scr_d = conv2d_dnn_scratch(eng, c->bwd_data.pd, &c->scr_d_f);
        L->scr_w = conv2d_dnn_scratch(eng, c->bwd_weights.pd, &c->scr_w_f);
    }
    return 0;
}

/* Builds the primitives and the weight reorders; NULL if oneDNN refuses. */
dnn_conv *conv2d_dnn_create(conv2d_dnn_env *env, const conv2d_desc *d) {
    conv2d_dnn_env_init(env);
    dnn_conv *c = xcalloc(1, sizeof *c);
    c->engine = env->engine;
    c->stream = env->stream;
    int t = omp_get_max_threads();
    c->lanes = t > 1 && d->n % t == 0 ? t : 1;
    c->ns = d->n / c->lanes;
    c->in_img = (size_t)d->h * d->w * d->cin;
    c->out_img = (size_t)d->oh * d->ow * d->cout;
    if (create_prims(c, d, c->ns, c->lanes > 1) != 0) {
        conv2d_dnn_free(c);
        return NULL;
    }
    if (d->prec == CONV2D_BF16) {
        c->xb_f = conv2d_round16((c->ns * c->in_img + 1) / 2);
        c->dyb_f = conv2d_round16((c->ns * c->out_img + 1) / 2);
    }
    c->tmp_f = conv2d_round16(c->ns * c->in_img);
    c->zero_bias = xcalloc((size_t)d->cout, sizeof(float));
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

/* Per op: the shared reordered weights, then one region per lane. */
static size_t lane_floats(const dnn_conv *c, int op) {
    switch (op) {
    case CONV_FWD:
        return c->xb_f + c->scr_f_f;
    case CONV_BWD_DATA:
        return c->dyb_f + c->scr_d_f + c->tmp_f;
    default:
        return c->xb_f + c->dyb_f + c->dwint_f + c->scr_w_f;
    }
}
static size_t shared_floats(const dnn_conv *c, int op) {
    return op == CONV_FWD ? c->wfwd_f : op == CONV_BWD_DATA ? c->wbd_f : 0;
}

size_t conv2d_dnn_ws_floats(const conv2d_desc *d, const dnn_conv *c, int op) {
    (void)d;
    return shared_floats(c, op) + (size_t)c->lanes * lane_floats(c, op);
}

static void set_handle(dnnl_memory_t m, const void *p) {
    DNN_CHECK(dnnl_memory_set_data_handle(m, (void *)p));
}

static dnnl_stream_t lane_stream(const dnn_conv *c, const dnn_lane *L) {
    return L->stream ? L->stream : c->stream;
}

static void run(const dnn_conv *c, const dnn_lane *L, const dnn_prim *p, int nargs,
                const dnnl_exec_arg_t *args) {
    dnnl_stream_t s = lane_stream(c, L);
    DNN_CHECK(dnnl_primitive_execute(p->p, s, nargs, args));
    DNN_CHECK(dnnl_stream_wait(s));
}

/* The weights in the layout of the primitives: reordered into ws (on the caller's thread), or
 * the caller's buffer as is. Returns the data pointer the lanes' memory objects take. */
static const void *weights_for(dnn_conv *c, const dnn_prim *reorder, dnnl_memory_t internal,
                               const float *w, float *ws) {
    if (!reorder->p) return w;
    set_handle(c->wuser, w);
    set_handle(internal, ws);
    dnnl_exec_arg_t a[] = {{DNNL_ARG_FROM, c->wuser}, {DNNL_ARG_TO, internal}};
    run(c, &c->lane[0], reorder, 2, a);
    return ws;
}

/* A lane's input: the caller's bf16 (pre-converted), or its floats converted into the region at
 * *ws (which moves past it) for a bf16 primitive, or the floats themselves. */
static const void *lane_input(size_t n, size_t off, const float *src, const bf16 *srcb,
                              size_t region, float **ws) {
    if (srcb) return srcb + off;
    src += off;
    if (!region) return src;
    bf16 *dst = (bf16 *)*ws;
    bf16_from_f32(n, src, dst);
    *ws += region;
    return dst;
}

/* Each lane's images on one OpenMP thread, or on the caller's thread (with oneDNN's own threads)
 * for a single lane; p: the lane's workspace after the shared weights. */
#define LANE_LOOP(c, op, ws, l, p)                                                                 \
    for (int l = 0; l < (c)->lanes; l++)                                                           \
        for (float *p = (ws) + shared_floats(c, op) + (size_t)l * lane_floats(c, op); p; p = NULL)

void conv2d_dnn_forward(const conv2d_desc *d, dnn_conv *c, const float *x, const bf16 *xb,
                        const float *w, const float *bias, float *y, float *ws) {
    const void *wd = weights_for(c, &c->w_to_fwd, c->wfwd, w, ws);
    const float *b = bias ? bias : c->zero_bias;
#pragma omp parallel for num_threads(c->lanes) schedule(static) if (c->lanes > 1)
    LANE_LOOP(c, CONV_FWD, ws, l, p) {
        dnn_lane *L = &c->lane[l];
        size_t i0 = (size_t)l * c->ns;
        set_handle(L->src, lane_input(c->ns * c->in_img, i0 * c->in_img, x, xb, c->xb_f, &p));
        set_handle(L->wfwd, wd);
        set_handle(L->bias, b);
        set_handle(L->dst, y + i0 * c->out_img);
        dnnl_exec_arg_t a[5] = {{DNNL_ARG_SRC, L->src},
                                {DNNL_ARG_WEIGHTS, L->wfwd},
                                {DNNL_ARG_BIAS, L->bias},
                                {DNNL_ARG_DST, L->dst}};
        int na = 4;
        if (L->scr_f) {
            set_handle(L->scr_f, p);
            a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, L->scr_f};
        }
        run(c, L, &c->fwd, na, a);
    }
    (void)d;
}

/* dx of every lane: written (add = 0) or added (add = 1, through the lane's tmp region). */
static void backward_data(const conv2d_desc *d, dnn_conv *c, const float *w, const float *dy,
                          const bf16 *dyb, float *dx, int add, float *ws) {
    const void *wd = weights_for(c, &c->w_to_bd, c->wbd, w, ws);
#pragma omp parallel for num_threads(c->lanes) schedule(static) if (c->lanes > 1)
    LANE_LOOP(c, CONV_BWD_DATA, ws, l, p) {
        dnn_lane *L = &c->lane[l];
        size_t i0 = (size_t)l * c->ns, n = c->ns * c->in_img;
        float *out = dx + i0 * c->in_img;
        set_handle(L->ddst, lane_input(c->ns * c->out_img, i0 * c->out_img, dy, dyb, c->dyb_f, &p));
        set_handle(L->wbd, wd);
        float *tmp = p + c->scr_d_f;
        set_handle(L->dsrc, add ? tmp : out);
        dnnl_exec_arg_t a[4] = {
            {DNNL_ARG_DIFF_DST, L->ddst}, {DNNL_ARG_WEIGHTS, L->wbd}, {DNNL_ARG_DIFF_SRC, L->dsrc}};
        int na = 3;
        if (L->scr_d) {
            set_handle(L->scr_d, p);
            a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, L->scr_d};
        }
        run(c, L, &c->bwd_data, na, a);
        if (add) {
#pragma omp parallel for simd schedule(static) if (c->lanes == 1)
            for (size_t i = 0; i < n; i++) out[i] += tmp[i];
        }
    }
    (void)d;
}

/* dw += the sum over lanes of each lane's weight gradient (lane order). */
static void backward_weights(const conv2d_desc *d, dnn_conv *c, const float *x, const bf16 *xb,
                             const float *dy, const bf16 *dyb, float *dw, float *ws) {
    float *dwint[64];
    if (c->lanes > 64) FATAL("conv2d: %d lanes", c->lanes);
#pragma omp parallel for num_threads(c->lanes) schedule(static) if (c->lanes > 1)
    LANE_LOOP(c, CONV_BWD_WEIGHTS, ws, l, p) {
        dnn_lane *L = &c->lane[l];
        size_t i0 = (size_t)l * c->ns;
        set_handle(L->src, lane_input(c->ns * c->in_img, i0 * c->in_img, x, xb, c->xb_f, &p));
        set_handle(L->ddst, lane_input(c->ns * c->out_img, i0 * c->out_img, dy, dyb, c->dyb_f, &p));
        dwint[l] = p;
        set_handle(L->dwint, p);
        dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, L->src},
                                {DNNL_ARG_DIFF_DST, L->ddst},
                                {DNNL_ARG_DIFF_WEIGHTS, L->dwint}};
        int na = 3;
        if (L->scr_w) {
            set_handle(L->scr_w, p + c->dwint_f);
            a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, L->scr_w};
        }
        run(c, L, &c->bwd_weights, na, a);
    }
    size_t nw = c->dwint_f;
    for (int l = 1; l < c->lanes; l++) {
        const float *src = dwint[l];
#pragma omp simd
        for (size_t i = 0; i < nw; i++) dwint[0][i] += src[i];
    }
    dnn_lane *L0 = &c->lane[0];
    set_handle(L0->dwint, dwint[0]);
    set_handle(c->dwuser, dw);
    dnnl_exec_arg_t r[] = {{DNNL_ARG_FROM, L0->dwint}, {DNNL_ARG_TO, c->dwuser}};
    run(c, L0, &c->dw_to_user, 2, r);
    (void)d;
}

void conv2d_dnn_backward(const conv2d_desc *d, dnn_conv *c, const float *x, const bf16 *xb,
                         const float *w, const float *dy, const bf16 *dyb, float *dx, int dx_write,
                         float *dw, float *ws) {
    if (dw) backward_weights(d, c, x, xb, dy, dyb, dw, ws);
    if (dx) backward_data(d, c, w, dy, dyb, dx, !dx_write, ws);
}
