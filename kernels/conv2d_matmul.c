/* 1x1 stride-1 CONV2D_BF16 convolutions on oneDNN's matmul primitive (conv2d_internal.h): bf16 A
 * and B given by strides (no copies: W^T, dy^T are strided views), float C. Backward-data's add
 * and backward-weights' dw += are a sum post-op. The weights are converted to bf16 into the
 * workspace on every call (they change every step), x / dy when given as floats. */
#include "kernels/conv2d_internal.h"

#include "common/log.h"
#include "kernels/bf16.h"

#include <stdlib.h>

typedef struct mm_op {
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t p;
    dnnl_memory_t a, b, bias, c, scr;
    size_t scr_f;
} mm_op;

enum { MM_FWD, MM_BD_SET, MM_BD_ADD, MM_BW, MM_NOPS };

struct conv2d_mm {
    mm_op op[MM_NOPS];
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    float *zero_bias;
};

static void mm_op_free(mm_op *o) {
    dnnl_memory_t ms[] = {o->a, o->b, o->bias, o->c, o->scr};
    for (size_t i = 0; i < sizeof ms / sizeof *ms; i++)
        if (ms[i]) dnnl_memory_destroy(ms[i]);
    if (o->p) dnnl_primitive_destroy(o->p);
    if (o->pd) dnnl_primitive_desc_destroy(o->pd);
}

void conv2d_mm_free(conv2d_mm *m) {
    if (!m) return;
    for (int i = 0; i < MM_NOPS; i++) mm_op_free(&m->op[i]);
    free(m->zero_bias);
    free(m);
}

static void md2(dnnl_memory_desc_t *md, int64_t rows, int64_t cols, int64_t rs, int64_t cs,
                dnnl_data_type_t t) {
    dnnl_dims_t dims = {rows, cols}, strides = {rs, cs};
    DNN_CHECK(dnnl_memory_desc_init_by_strides(md, 2, dims, t, strides));
}

/* c (+)= a b (+ bias); 0 or -1 if oneDNN refuses. */
static int mm_make(dnnl_engine_t e, mm_op *o, const dnnl_memory_desc_t *a,
                   const dnnl_memory_desc_t *b, const dnnl_memory_desc_t *bias,
                   const dnnl_memory_desc_t *c, int sum) {
    dnnl_primitive_attr_t attr;
    DNN_CHECK(dnnl_primitive_attr_create(&attr));
    DNN_CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    if (sum) {
        dnnl_post_ops_t po;
        DNN_CHECK(dnnl_post_ops_create(&po));
        DNN_CHECK(dnnl_post_ops_append_sum(po, 1.0f));
        DNN_CHECK(dnnl_primitive_attr_set_post_ops(attr, po));
        dnnl_post_ops_destroy(po);
    }
    dnnl_matmul_desc_t desc;
    int ok = dnnl_matmul_desc_init(&desc, a, b, bias, c) == dnnl_success &&
             dnnl_primitive_desc_create(&o->pd, &desc, attr, e, NULL) == dnnl_success &&
             dnnl_primitive_create(&o->p, o->pd) == dnnl_success;
    dnnl_primitive_attr_destroy(attr);
    if (!ok) return -1;
    o->a = conv2d_dnn_mem(e, a);
    o->b = conv2d_dnn_mem(e, b);
    o->c = conv2d_dnn_mem(e, c);
    if (bias) o->bias = conv2d_dnn_mem(e, bias);
    o->scr = conv2d_dnn_scratch(e, o->pd, &o->scr_f);
    return 0;
}

conv2d_mm *conv2d_mm_create(conv2d_dnn_env *env, const conv2d_desc *d) {
    conv2d_dnn_env_init(env);
    conv2d_mm *m = xcalloc(1, sizeof *m);
    m->engine = env->engine;
    m->stream = env->stream;
    const int64_t R = (int64_t)conv2d_rows_in(d), ci = d->cin, co = d->cout;
    dnnl_memory_desc_t x, dy, wt, w, y, dx, dyt, dw, bias;
    md2(&x, R, ci, ci, 1, dnnl_bf16);
    md2(&dy, R, co, co, 1, dnnl_bf16);
    md2(&wt, ci, co, 1, ci, dnnl_bf16); /* W^T of W [cout][cin] */
    md2(&w, co, ci, ci, 1, dnnl_bf16);
    md2(&y, R, co, co, 1, dnnl_f32);
    md2(&dx, R, ci, ci, 1, dnnl_f32);
    md2(&dyt, co, R, 1, co, dnnl_bf16); /* dy^T */
    md2(&dw, co, ci, ci, 1, dnnl_f32);
    md2(&bias, 1, co, co, 1, dnnl_f32);
    dnnl_engine_t e = m->engine;
    if (mm_make(e, &m->op[MM_FWD], &x, &wt, &bias, &y, 0) ||
        mm_make(e, &m->op[MM_BD_SET], &dy, &w, NULL, &dx, 0) ||
        mm_make(e, &m->op[MM_BD_ADD], &dy, &w, NULL, &dx, 1) ||
        mm_make(e, &m->op[MM_BW], &dyt, &x, NULL, &dw, 1)) {
        conv2d_mm_free(m);
        return NULL;
    }
    m->zero_bias = xcalloc((size_t)co, sizeof(float));
    return m;
}

const char *conv2d_mm_impl_name(const conv2d_mm *m, int op) {
    const mm_op *o = &m->op[op == CONV_FWD ? MM_FWD : op == CONV_BWD_DATA ? MM_BD_SET : MM_BW];
    const char *s = NULL;
    if (dnnl_primitive_desc_query(o->pd, dnnl_query_impl_info_str, 0, &s) != dnnl_success || !s)
        return "?";
    return s;
}

static size_t bf16_floats(size_t n) {
    return conv2d_round16((n + 1) / 2);
}

size_t conv2d_mm_ws_floats(const conv2d_desc *d, const conv2d_mm *m, int op) {
    const size_t R = conv2d_rows_in(d), W = bf16_floats((size_t)d->cin * d->cout);
    switch (op) {
    case CONV_FWD:
        return W + bf16_floats(R * d->cin) + m->op[MM_FWD].scr_f;
    case CONV_BWD_DATA: {
        size_t s = m->op[MM_BD_SET].scr_f > m->op[MM_BD_ADD].scr_f ? m->op[MM_BD_SET].scr_f
                                                                   : m->op[MM_BD_ADD].scr_f;
        return W + bf16_floats(R * d->cout) + s;
    }
    default:
        return bf16_floats(R * d->cin) + bf16_floats(R * d->cout) + m->op[MM_BW].scr_f;
    }
}

static void set(dnnl_memory_t mem, const void *p) {
    DNN_CHECK(dnnl_memory_set_data_handle(mem, (void *)p));
}

/* The bf16 operand: given, or the floats converted into the workspace at *ws (moved past). */
static const bf16 *as_bf16(size_t n, const float *f, const bf16 *b, float **ws) {
    if (b) return b;
    bf16 *dst = (bf16 *)*ws;
    bf16_from_f32(n, f, dst);
    *ws += bf16_floats(n);
    return dst;
}

static void run(conv2d_mm *m, mm_op *o, const void *a, const void *b, const float *bias, float *c,
                float *scr) {
    set(o->a, a);
    set(o->b, b);
    set(o->c, c);
    dnnl_exec_arg_t args[5] = {
        {DNNL_ARG_SRC, o->a}, {DNNL_ARG_WEIGHTS, o->b}, {DNNL_ARG_DST, o->c}};
    int n = 3;
    if (o->bias) {
        set(o->bias, bias);
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, o->bias};
    }
    if (o->scr) {
        set(o->scr, scr);
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, o->scr};
    }
    DNN_CHECK(dnnl_primitive_execute(o->p, m->stream, n, args));
    DNN_CHECK(dnnl_stream_wait(m->stream));
}

void conv2d_mm_forward(const conv2d_desc *d, conv2d_mm *m, const float *x, const bf16 *xb,
                       const float *w, const float *bias, float *y, float *ws) {
    const bf16 *wb = as_bf16((size_t)d->cin * d->cout, w, NULL, &ws);
    const bf16 *a = as_bf16(conv2d_rows_in(d) * d->cin, x, xb, &ws);
    run(m, &m->op[MM_FWD], a, wb, bias ? bias : m->zero_bias, y, ws);
}

void conv2d_mm_backward_data(const conv2d_desc *d, conv2d_mm *m, const float *w, const float *dy,
                             const bf16 *dyb, float *dx, int dx_write, float *ws) {
    const bf16 *wb = as_bf16((size_t)d->cin * d->cout, w, NULL, &ws);
    const bf16 *a = as_bf16(conv2d_rows_in(d) * d->cout, dy, dyb, &ws);
    run(m, &m->op[dx_write ? MM_BD_SET : MM_BD_ADD], a, wb, NULL, dx, ws);
}

void conv2d_mm_backward_weights(const conv2d_desc *d, conv2d_mm *m, const float *x, const bf16 *xb,
                                const float *dy, const bf16 *dyb, float *dw, float *ws) {
    const bf16 *b = as_bf16(conv2d_rows_in(d) * d->cin, x, xb, &ws);
    const bf16 *a = as_bf16(conv2d_rows_in(d) * d->cout, dy, dyb, &ws);
    run(m, &m->op[MM_BW], a, b, NULL, dw, ws);
}
