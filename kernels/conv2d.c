/* 2-D convolution, fp32 NHWC, weights OHWI. Each op (forward, backward-data, backward-weights)
 * runs on one of:
 *  - oneDNN convolution primitives (conv2d_onednn.c);
 *  - forced (CONV2D_MATMUL), for 1x1 stride-1 bf16 convs: oneDNN's matmul primitive
 *    (conv2d_matmul.c);
 *  - GEMM: dnnl_sgemm per group, on the input itself for 1x1 stride-1 convs, else on an im2col
 *    buffer in the caller's workspace. beta = 1 gives backward's accumulation for free;
 *  - depthwise direct loops (conv2d_depthwise.c), when oneDNN has no primitive.
 * auto_path() below picks per shape. Primitives are created once per (shape, thread count, impl)
 * and kept in a small table of the conv2d_ctx. The table is not locked: a context is called from
 * one thread (each op uses OpenMP inside). */
#include "kernels/conv2d.h"
#include "kernels/conv2d_internal.h"

#include "common/log.h"
#include "kernels/bf16.h"
#include "kernels/gemm.h"

#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

conv2d_desc conv2d_make(int n, int h, int w, int cin, int cout, int k, int stride, int pad,
                        int groups) {
    conv2d_desc d = {.n = n,
                     .h = h,
                     .w = w,
                     .cin = cin,
                     .cout = cout,
                     .kh = k,
                     .kw = k,
                     .stride = stride,
                     .pad = pad,
                     .groups = groups,
                     .oh = 0,
                     .ow = 0};
    if (n <= 0 || h <= 0 || w <= 0 || cin <= 0 || cout <= 0 || k <= 0 || stride <= 0 || pad < 0 ||
        groups <= 0 || cin % groups || cout % groups)
        FATAL("conv2d_make: bad shape n=%d h=%d w=%d cin=%d cout=%d k=%d s=%d p=%d g=%d", n, h, w,
              cin, cout, k, stride, pad, groups);
    d.oh = (h + 2 * pad - k) / stride + 1;
    d.ow = (w + 2 * pad - k) / stride + 1;
    if (d.oh <= 0 || d.ow <= 0)
        FATAL("conv2d_make: kernel %d larger than padded input %dx%d (pad %d)", k, h, w, pad);
    return d;
}

double conv2d_macs(const conv2d_desc *d) {
    return (double)d->n * d->oh * d->ow * d->cout * d->kh * d->kw * (d->cin / d->groups);
}

/* ---- shared helpers ------------------------------------------------------------------------- */

enum { PATH_DEPTHWISE, PATH_GEMM, PATH_ONEDNN, PATH_MATMUL };

conv2d_impl conv2d_impl_from_env(conv2d_impl fallback) {
    const char *v = getenv("YOLO_CONV_IMPL");
    if (!v || !*v) return fallback;
    const char *names[] = {"auto", "gemm", "onednn", "direct", "matmul"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(v, names[i])) return (conv2d_impl)i;
    log_warn("YOLO_CONV_IMPL=%s: expected auto, gemm, onednn, direct or matmul; using %s", v,
             names[fallback]);
    return fallback;
}

static int is_depthwise(const conv2d_desc *d) {
    return d->groups > 1 && d->groups == d->cin && d->cin == d->cout;
}
static int is_pointwise(const conv2d_desc *d) {
    return d->kh == 1 && d->kw == 1 && d->stride == 1 && d->pad == 0;
}
/* A 1x1 stride-1 bf16 conv without groups: one matrix product per op (conv2d_mm_*). */
static int is_bf16_matmul(const conv2d_desc *d) {
    return is_pointwise(d) && d->groups == 1 && d->prec == CONV2D_BF16;
}
static size_t rows_out(const conv2d_desc *d) {
    return (size_t)d->n * d->oh * d->ow;
}
/* Workspace regions start on 64-byte boundaries: float counts are rounded up to 16. */
#define round16 conv2d_round16
static float *align64(float *ws) {
    return (float *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
}
#define WS_SLACK 16 /* floats, for align64 */

/* db[j] += sum_i dy[i][j], summed in double per thread and reduced in thread order. */
static void bias_grad(size_t m, int c, const float *dy, float *db) {
    int nt = omp_get_max_threads();
    double *part = xcalloc((size_t)nt * c, sizeof(double));
#pragma omp parallel
    {
        double *acc = part + (size_t)omp_get_thread_num() * c;
#pragma omp for schedule(static)
        for (size_t i = 0; i < m; i++) {
            const float *r = dy + i * c;
#pragma omp simd
            for (int j = 0; j < c; j++) acc[j] += r[j];
        }
    }
    for (int t = 0; t < nt; t++)
        for (int j = 0; j < c; j++) db[j] += (float)part[(size_t)t * c + j];
    free(part);
}

/* ---- GEMM path ------------------------------------------------------------------------------ */

/* col[m][ki][kj][0..cg) = x[n][oy*s-p+ki][ox*s-p+kj][g*cg + ...] (0 outside), m = (n, oy, ox). */
static void im2col(const conv2d_desc *d, const float *x, int g, float *col) {
    const int cg = d->cin / d->groups, K = d->kh * d->kw * cg;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < d->n; n++)
        for (int oy = 0; oy < d->oh; oy++)
            for (int ox = 0; ox < d->ow; ox++) {
                float *dst = col + (((size_t)n * d->oh + oy) * d->ow + ox) * K;
                for (int ki = 0; ki < d->kh; ki++) {
                    int iy = oy * d->stride - d->pad + ki;
                    for (int kj = 0; kj < d->kw; kj++, dst += cg) {
                        int ix = ox * d->stride - d->pad + kj;
                        if (iy < 0 || iy >= d->h || ix < 0 || ix >= d->w)
                            memset(dst, 0, sizeof(float) * cg);
                        else
                            memcpy(dst,
                                   x + (((size_t)n * d->h + iy) * d->w + ix) * d->cin +
                                       (size_t)g * cg,
                                   sizeof(float) * cg);
                    }
                }
            }
}

/* dx[..][g*cg + c] += sum of the dcol entries that im2col copied from that input (gather). */
static void col2im_add(const conv2d_desc *d, const float *dcol, int g, float *dx) {
    const int cg = d->cin / d->groups, K = d->kh * d->kw * cg, S = d->stride, P = d->pad;
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < d->n; n++)
        for (int iy = 0; iy < d->h; iy++)
            for (int ix = 0; ix < d->w; ix++) {
                float *dxp = dx + (((size_t)n * d->h + iy) * d->w + ix) * d->cin + (size_t)g * cg;
                for (int ki = 0; ki < d->kh; ki++) {
                    int t = iy + P - ki;
                    if (t < 0 || t % S) continue;
                    int oy = t / S;
                    if (oy >= d->oh) continue;
                    for (int kj = 0; kj < d->kw; kj++) {
                        int u = ix + P - kj;
                        if (u < 0 || u % S) continue;
                        int ox = u / S;
                        if (ox >= d->ow) continue;
                        const float *src = dcol + (((size_t)n * d->oh + oy) * d->ow + ox) * K +
                                           ((size_t)ki * d->kw + kj) * cg;
#pragma omp simd
                        for (int c = 0; c < cg; c++) dxp[c] += src[c];
                    }
                }
            }
}

static void gemm_forward_part(const conv2d_desc *d, const float *x, const float *w,
                              const float *bias, float *y, float *ws) {
    const size_t M = rows_out(d);
    const int cg = d->cin / d->groups, og = d->cout / d->groups, K = d->kh * d->kw * cg;
    float beta = 0.0f;
    if (bias) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < M; i++) memcpy(y + i * d->cout, bias, sizeof(float) * d->cout);
        beta = 1.0f;
    }
    for (int g = 0; g < d->groups; g++) {
        const float *a = x + (size_t)g * cg;
        long lda = d->cin;
        if (!is_pointwise(d)) {
            im2col(d, x, g, ws);
            a = ws;
            lda = K;
        }
        gemm_f32(false, true, M, og, K, 1.0f, a, lda, w + (size_t)g * og * K, K, beta,
                 y + (size_t)g * og, d->cout);
    }
}

static void gemm_backward_part(const conv2d_desc *d, const float *x, const float *w,
                               const float *dy, float *dx, float *dw, float *ws) {
    const size_t M = rows_out(d);
    const int cg = d->cin / d->groups, og = d->cout / d->groups, K = d->kh * d->kw * cg;
    for (int g = 0; g < d->groups; g++) {
        const float *dyg = dy + (size_t)g * og;
        if (dw) { /* dW_g[og][K] += dY_g^T [og][M] * col [M][K] */
            const float *a = x + (size_t)g * cg;
            long lda = d->cin;
            if (!is_pointwise(d)) {
                im2col(d, x, g, ws);
                a = ws;
                lda = K;
            }
            gemm_f32(true, false, og, K, M, 1.0f, dyg, d->cout, a, lda, 1.0f,
                     dw + (size_t)g * og * K, K);
        }
        if (dx) { /* dcol[M][K] = dY_g [M][og] * W_g [og][K] */
            const float *wg = w + (size_t)g * og * K;
            if (is_pointwise(d)) {
                gemm_f32(false, false, M, cg, og, 1.0f, dyg, d->cout, wg, K, 1.0f,
                         dx + (size_t)g * cg, d->cin);
            } else {
                gemm_f32(false, false, M, K, og, 1.0f, dyg, d->cout, wg, K, 0.0f, ws, K);
                col2im_add(d, ws, g, dx);
            }
        }
    }
}

/* The GEMM path works on chunks of whole images so that the im2col buffer stays under the
 * context's im2col_cap floats (16 MB; at least one image): at imgsz 640, batch 16 a full buffer
 * would be 300 MB. dw accumulates over chunks (beta = 1); dx and y rows belong to one chunk each.
 * `step` is the images per chunk (conv_entry.chunk). */
#define IM2COL_CAP_DEFAULT ((size_t)4 << 20)

static int chunk_images(const conv2d_desc *d, size_t im2col_cap) {
    if (is_pointwise(d)) return d->n;
    size_t per = (size_t)d->oh * d->ow * d->kh * d->kw * (d->cin / d->groups);
    size_t c = im2col_cap / per;
    return c < 1 ? 1 : c > (size_t)d->n ? d->n : (int)c;
}
static size_t gemm_ws_floats(const conv2d_desc *d, int step) {
    if (is_pointwise(d)) return 0;
    return round16((size_t)step * d->oh * d->ow * d->kh * d->kw * (d->cin / d->groups));
}

static void gemm_forward(const conv2d_desc *d, int step, const float *x, const float *w,
                         const float *bias, float *y, float *ws) {
    const size_t in_img = (size_t)d->h * d->w * d->cin, out_img = (size_t)d->oh * d->ow * d->cout;
    for (int n0 = 0; n0 < d->n; n0 += step) {
        conv2d_desc s = *d;
        s.n = n0 + step < d->n ? step : d->n - n0;
        gemm_forward_part(&s, x + n0 * in_img, w, bias, y + n0 * out_img, ws);
    }
}

static void gemm_backward(const conv2d_desc *d, int step, const float *x, const float *w,
                          const float *dy, float *dx, float *dw, float *ws) {
    const size_t in_img = (size_t)d->h * d->w * d->cin, out_img = (size_t)d->oh * d->ow * d->cout;
    for (int n0 = 0; n0 < d->n; n0 += step) {
        conv2d_desc s = *d;
        s.n = n0 + step < d->n ? step : d->n - n0;
        /* x is NULL for dx only (backward-data), w for dw only (backward-filter) */
        gemm_backward_part(&s, x ? x + n0 * in_img : NULL, w, dy + n0 * out_img,
                           dx ? dx + n0 * in_img : NULL, dw, ws);
    }
}

/* The bf16 reference on the GEMM path: the float convolution of the inputs rounded to bf16
 * (conv2d.h), the rounded copies at the start of the workspace. */
static size_t w_floats(const conv2d_desc *d) {
    return (size_t)d->cout * d->kh * d->kw * (d->cin / d->groups);
}
static size_t rounded_ws_floats(const conv2d_desc *d) {
    /* the widened bf16 inputs (conv2d_ctx_*_bf16), then the rounded copies */
    return 2 * (round16(conv2d_rows_in(d) * d->cin) + round16(rows_out(d) * d->cout)) +
           round16(w_floats(d));
}
static const float *rounded(size_t n, const float *src, float **ws) {
    if (!src) return NULL;
    float *dst = *ws;
    bf16_round_f32(n, src, dst);
    *ws += round16(n);
    return dst;
}
static void gemm_forward_bf16(const conv2d_desc *d, int step, const float *x, const float *w,
                              const float *bias, float *y, float *ws) {
    const float *xr = rounded(conv2d_rows_in(d) * d->cin, x, &ws);
    const float *wr = rounded(w_floats(d), w, &ws);
    gemm_forward(d, step, xr, wr, bias, y, ws);
}
static void gemm_backward_bf16(const conv2d_desc *d, int step, const float *x, const float *w,
                               const float *dy, float *dx, float *dw, float *ws) {
    const float *xr = rounded(conv2d_rows_in(d) * d->cin, x, &ws);
    const float *wr = rounded(w_floats(d), w, &ws);
    const float *dyr = rounded(rows_out(d) * d->cout, dy, &ws);
    gemm_backward(d, step, xr, wr, dyr, dx, dw, ws);
}

/* ---- per-shape choice and table ------------------------------------------------------------- */

/* CONV2D_AUTO's choice for each op, from bench_conv compare=true clock=cpu (1 thread, yolov8n
 * shapes, Zen 3 AVX2; README has the numbers). oneDNN's direct kernels win where the channels per
 * tap are few (no im2col blow-up) and for depthwise; im2col + sgemm wins for strided convs from 64
 * input channels up and, mostly, for the weight gradient from 32 input channels up; a 1x1
 * stride-1 conv is a plain GEMM (no im2col, and beta = 1 accumulates for free).
 * The measurements favour GEMM for dw also at stride 2 with 16 channels and oneDNN at stride 1
 * with 32 (about 1 % of the model's conv time). That rule was tried and changes rounding enough to
 * flip the chaotic 6-epoch trainlearns test, so the simpler rule below stays. */
static int auto_path(const conv2d_desc *d, int op) {
    int cg = d->cin / d->groups;
    if (is_depthwise(d)) return PATH_ONEDNN;
    if (is_pointwise(d)) return PATH_GEMM;
    if (op == CONV_BWD_WEIGHTS) return cg >= 32 ? PATH_GEMM : PATH_ONEDNN;
    return d->stride > 1 && cg >= 64 ? PATH_GEMM : PATH_ONEDNN;
}

typedef struct conv_entry {
    conv2d_desc d;
    int nthreads;
    conv2d_impl impl;
    int path[CONV_NOPS];
    int chunk; /* GEMM path: images per im2col chunk */
    size_t ws_floats;
    dnn_conv *dnn;
    conv2d_mm *mm;
    char name[256];
} conv_entry;

#define CACHE_SIZE 256

struct conv2d_ctx {
    conv2d_impl impl;
    int impl_set; /* the default context reads YOLO_CONV_IMPL at first use unless set */
    size_t im2col_cap;
    conv2d_dnn_env dnn;
    conv_entry cache[CACHE_SIZE];
    int cache_used, cache_next;
};

static conv2d_ctx g_default = {.impl = CONV2D_AUTO, .im2col_cap = IM2COL_CAP_DEFAULT};

conv2d_ctx *conv2d_ctx_create(conv2d_impl impl) {
    conv2d_ctx *c = xcalloc(1, sizeof *c);
    c->impl = impl;
    c->impl_set = 1;
    c->im2col_cap = IM2COL_CAP_DEFAULT;
    return c;
}

static void cache_clear(conv2d_ctx *c) {
    for (int i = 0; i < c->cache_used; i++) {
        conv2d_dnn_free(c->cache[i].dnn);
        conv2d_mm_free(c->cache[i].mm);
    }
    memset(c->cache, 0, sizeof c->cache);
    c->cache_used = c->cache_next = 0;
}

void conv2d_ctx_destroy(conv2d_ctx *c) {
    if (!c || c == &g_default) return;
    cache_clear(c);
    conv2d_dnn_env_free(&c->dnn);
    free(c);
}

conv2d_ctx *conv2d_default_ctx(void) {
    return &g_default;
}

void conv2d_set_impl(conv2d_impl impl) {
    g_default.impl = impl;
    g_default.impl_set = 1;
}

void conv2d_cache_clear(void) {
    cache_clear(&g_default);
}

void conv2d_set_im2col_cap(size_t floats) {
    g_default.im2col_cap = floats;
    cache_clear(&g_default); /* workspace sizes change */
}

static int desc_equal(const conv2d_desc *a, const conv2d_desc *b) {
    return a->n == b->n && a->h == b->h && a->w == b->w && a->cin == b->cin && a->cout == b->cout &&
           a->kh == b->kh && a->kw == b->kw && a->stride == b->stride && a->pad == b->pad &&
           a->groups == b->groups && a->oh == b->oh && a->ow == b->ow && a->prec == b->prec;
}

static size_t op_ws(const conv_entry *e, int op) {
    const conv2d_desc *d = &e->d;
    switch (e->path[op]) {
    case PATH_DEPTHWISE:
        return conv2d_dw_ws_floats(d, e->nthreads);
    case PATH_ONEDNN:
        return conv2d_dnn_ws_floats(d, e->dnn, op);
    case PATH_MATMUL:
        return conv2d_mm_ws_floats(d, e->mm, op);
    default:
        return gemm_ws_floats(d, e->chunk) + (d->prec == CONV2D_BF16 ? rounded_ws_floats(d) : 0);
    }
}

static void op_name(const conv_entry *e, int op, char *buf, size_t len) {
    switch (e->path[op]) {
    case PATH_DEPTHWISE:
        snprintf(buf, len, "direct");
        break;
    case PATH_ONEDNN:
        snprintf(buf, len, "onednn/%s", conv2d_dnn_impl_name(e->dnn, op));
        break;
    case PATH_MATMUL:
        snprintf(buf, len, "matmul/%s", conv2d_mm_impl_name(e->mm, op));
        break;
    default:
        snprintf(buf, len, "%s%s", is_pointwise(&e->d) ? "sgemm" : "im2col+sgemm",
                 e->d.prec == CONV2D_BF16 ? " on bf16-rounded inputs" : "");
        break;
    }
}

/* CONV2D_MATMUL: 1x1 stride-1 bf16 convs on oneDNN's matmul primitive. Not AUTO's choice: per op
 * it beats the convolution primitives' backward only on small shapes (<= 6400 rows, 1 thread) and
 * a yolov8n train step showed no difference (docs/kernels.md, bench_conv pointwise=true). */
static int wants_matmul(const conv_entry *e) {
    const conv2d_desc *d = &e->d;
    if (!is_bf16_matmul(d) || !bf16_cpu_has_native()) return 0;
    return e->impl == CONV2D_MATMUL;
}

static void entry_fill(conv2d_ctx *c, conv_entry *e) {
    const conv2d_desc *d = &e->d;
    int any_dnn = 0;
    int bf16 = d->prec == CONV2D_BF16;
    if (wants_matmul(e) && !(e->mm = conv2d_mm_create(&c->dnn, d)))
        log_warn("conv2d: oneDNN has no matmul for 1x1 %dx%dx%d->%d; using its convolutions", d->h,
                 d->w, d->cin, d->cout);
    for (int op = 0; op < CONV_NOPS; op++) {
        /* bf16: oneDNN's bf16 primitives where the CPU multiplies bf16 natively, else the
         * reference */
        int p = bf16 ? (bf16_cpu_has_native() ? PATH_ONEDNN : PATH_GEMM) : auto_path(d, op);
        if (e->impl == CONV2D_GEMM) p = PATH_GEMM;
        if (e->impl == CONV2D_ONEDNN) p = PATH_ONEDNN;
        if (e->impl == CONV2D_DIRECT && is_depthwise(d) && !bf16) p = PATH_DEPTHWISE;
        if (e->mm) p = PATH_MATMUL;
        e->path[op] = p;
        any_dnn |= p == PATH_ONEDNN;
    }
    if (any_dnn && !(e->dnn = conv2d_dnn_create(&c->dnn, d))) {
        log_warn("conv2d: oneDNN has no primitive for %dx%dx%d->%d k%dx%d s%d p%d g%d; using %s",
                 d->h, d->w, d->cin, d->cout, d->kh, d->kw, d->stride, d->pad, d->groups,
                 is_depthwise(d) ? "direct loops" : "GEMM");
        for (int op = 0; op < CONV_NOPS; op++)
            if (e->path[op] == PATH_ONEDNN)
                e->path[op] = is_depthwise(d) && !bf16 ? PATH_DEPTHWISE : PATH_GEMM;
    }
    e->chunk = chunk_images(d, c->im2col_cap);
    e->ws_floats = 0;
    for (int op = 0; op < CONV_NOPS; op++)
        if (op_ws(e, op) > e->ws_floats) e->ws_floats = op_ws(e, op);
    if (e->ws_floats) e->ws_floats += WS_SLACK;
    int same = e->path[0] == e->path[1] && e->path[1] == e->path[2];
    if (same && e->path[0] == PATH_GEMM)
        snprintf(e->name, sizeof e->name, "%s%s",
                 is_pointwise(d) ? "1x1 dnnl_sgemm" : "im2col+dnnl_sgemm",
                 bf16 ? " on bf16-rounded inputs" : "");
    else if (same && e->path[0] == PATH_DEPTHWISE)
        snprintf(e->name, sizeof e->name, "depthwise-direct");
    else {
        char n[CONV_NOPS][80];
        for (int op = 0; op < CONV_NOPS; op++) op_name(e, op, n[op], sizeof n[op]);
        snprintf(e->name, sizeof e->name, "fwd:%s dx:%s dw:%s", n[0], n[1], n[2]);
    }
}

static conv_entry *lookup(conv2d_ctx *c, const conv2d_desc *d) {
    if (!c->impl_set) {
        c->impl = conv2d_impl_from_env(c->impl);
        c->impl_set = 1;
    }
    int nt = omp_get_max_threads();
    for (int i = 0; i < c->cache_used; i++) {
        conv_entry *e = &c->cache[i];
        if (e->nthreads == nt && e->impl == c->impl && desc_equal(&e->d, d)) return e;
    }
    conv_entry *e;
    if (c->cache_used < CACHE_SIZE) {
        e = &c->cache[c->cache_used++];
    } else { /* full: replace round-robin */
        e = &c->cache[c->cache_next];
        c->cache_next = (c->cache_next + 1) % CACHE_SIZE;
        conv2d_dnn_free(e->dnn);
        conv2d_mm_free(e->mm);
    }
    memset(e, 0, sizeof *e);
    e->d = *d;
    e->nthreads = nt;
    e->impl = c->impl;
    entry_fill(c, e);
    return e;
}

/* ---- entry points --------------------------------------------------------------------------- */

size_t conv2d_ctx_workspace_floats(conv2d_ctx *c, const conv2d_desc *d) {
    return lookup(c, d)->ws_floats;
}

const char *conv2d_ctx_path(conv2d_ctx *c, const conv2d_desc *d) {
    return lookup(c, d)->name;
}

static float *checked_ws(const conv_entry *e, float *ws, const char *fn) {
    if (e->ws_floats && !ws) FATAL("%s: workspace of %zu floats is NULL", fn, e->ws_floats);
    return ws ? align64(ws) : NULL;
}

/* The floats of pre-converted bf16 inputs for the reference (GEMM) path, in the workspace region
 * in front of what that path itself uses (bf16_inputs_ws_floats); NULL when not given. */
static const float *widened(size_t n, const bf16 *src, float **ws) {
    if (!src) return NULL;
    float *dst = *ws;
    bf16_to_f32(n, src, dst);
    *ws += round16(n);
    return dst;
}

static void forward_on(conv2d_ctx *c, const conv2d_desc *d, const float *x, const bf16 *xb,
                       const float *w, const float *bias, float *y, float *ws) {
    conv_entry *e = lookup(c, d);
    float *a = checked_ws(e, ws, "conv2d_forward");
    switch (e->path[CONV_FWD]) {
    case PATH_DEPTHWISE:
        conv2d_dw_forward(d, x, w, bias, y, a);
        break;
    case PATH_ONEDNN:
        conv2d_dnn_forward(d, e->dnn, x, xb, w, bias, y, a);
        break;
    case PATH_MATMUL:
        conv2d_mm_forward(d, e->mm, x, xb, w, bias, y, a);
        break;
    default:
        if (d->prec == CONV2D_BF16) {
            if (xb) x = widened(conv2d_rows_in(d) * d->cin, xb, &a);
            gemm_forward_bf16(d, e->chunk, x, w, bias, y, a);
        } else {
            gemm_forward(d, e->chunk, x, w, bias, y, a);
        }
        break;
    }
}

/* dw += (when dw), dx += or = with dx_write (when dx), on the op's path. */
static void backward_on(const conv_entry *e, int op, const float *x, const bf16 *xb, const float *w,
                        const float *dy, const bf16 *dyb, float *dx, int dx_write, float *dw,
                        float *ws) {
    const conv2d_desc *d = &e->d;
    int path = e->path[op];
    if (path == PATH_ONEDNN) { /* oneDNN writes dx itself when asked to: no add pass */
        conv2d_dnn_backward(d, e->dnn, x, xb, w, dy, dyb, dx, dx_write, dw, ws);
        return;
    }
    if (path == PATH_MATMUL) { /* dw first, as everywhere (same bits) */
        if (dw) conv2d_mm_backward_weights(d, e->mm, x, xb, dy, dyb, dw, ws);
        if (dx) conv2d_mm_backward_data(d, e->mm, w, dy, dyb, dx, dx_write, ws);
        return;
    }
    if (dx && dx_write) {
        size_t n = conv2d_rows_in(d) * d->cin;
#pragma omp parallel for simd schedule(static) if (n >= 65536)
        for (size_t i = 0; i < n; i++) dx[i] = 0.0f;
    }
    if (path == PATH_DEPTHWISE) {
        conv2d_dw_backward(d, x, w, dy, dx, dw, ws);
    } else if (d->prec == CONV2D_BF16) {
        if (xb) x = widened(conv2d_rows_in(d) * d->cin, xb, &ws);
        if (dyb) dy = widened(rows_out(d) * d->cout, dyb, &ws);
        gemm_backward_bf16(d, e->chunk, x, w, dy, dx, dw, ws);
    } else {
        gemm_backward(d, e->chunk, x, w, dy, dx, dw, ws);
    }
}

void conv2d_ctx_forward(conv2d_ctx *c, const conv2d_desc *d, const float *x, const float *w,
                        const float *bias, float *y, float *ws) {
    forward_on(c, d, x, NULL, w, bias, y, ws);
}

/* Every path computes dx and dw from separate loops (dw first, when both are asked for), so
 * running them one at a time gives the same bits as together. */
void conv2d_ctx_backward_data(conv2d_ctx *c, const conv2d_desc *d, const float *w, const float *dy,
                              float *dx, float *ws) {
    conv_entry *e = lookup(c, d);
    float *a = checked_ws(e, ws, "conv2d_backward_data");
    if (dx) backward_on(e, CONV_BWD_DATA, NULL, NULL, w, dy, NULL, dx, 0, NULL, a);
}

void conv2d_ctx_backward_data_set(conv2d_ctx *c, const conv2d_desc *d, const float *w,
                                  const float *dy, float *dx, float *ws) {
    conv_entry *e = lookup(c, d);
    float *a = checked_ws(e, ws, "conv2d_backward_data_set");
    backward_on(e, CONV_BWD_DATA, NULL, NULL, w, dy, NULL, dx, 1, NULL, a);
}

void conv2d_ctx_backward_filter(conv2d_ctx *c, const conv2d_desc *d, const float *x,
                                const float *dy, float *dw, float *dbias, float *ws) {
    conv_entry *e = lookup(c, d);
    float *a = checked_ws(e, ws, "conv2d_backward_filter");
    if (dw) backward_on(e, CONV_BWD_WEIGHTS, x, NULL, NULL, dy, NULL, NULL, 0, dw, a);
    if (dbias) bias_grad(rows_out(d), d->cout, dy, dbias);
}

static void need_bf16(const conv2d_desc *d, const char *fn) {
    if (d->prec != CONV2D_BF16) FATAL("%s: the conv2d_desc is not CONV2D_BF16", fn);
}

void conv2d_ctx_forward_bf16(conv2d_ctx *c, const conv2d_desc *d, const bf16 *xb, const float *w,
                             const float *bias, float *y, float *ws) {
    need_bf16(d, "conv2d_forward_bf16");
    forward_on(c, d, NULL, xb, w, bias, y, ws);
}

void conv2d_ctx_backward_bf16(conv2d_ctx *c, const conv2d_desc *d, const bf16 *xb, const float *w,
                              const bf16 *dyb, float *dx, int dx_write, float *dw, float *ws) {
    need_bf16(d, "conv2d_backward_bf16");
    conv_entry *e = lookup(c, d);
    float *a = checked_ws(e, ws, "conv2d_backward_bf16");
    if (dw) backward_on(e, CONV_BWD_WEIGHTS, NULL, xb, NULL, NULL, dyb, NULL, 0, dw, a);
    if (dx) backward_on(e, CONV_BWD_DATA, NULL, NULL, w, NULL, dyb, dx, dx_write, NULL, a);
}

/* ---- the default context -------------------------------------------------------------------- */

size_t conv2d_workspace_floats(const conv2d_desc *d) {
    return conv2d_ctx_workspace_floats(&g_default, d);
}

const char *conv2d_path(const conv2d_desc *d) {
    return conv2d_ctx_path(&g_default, d);
}

void conv2d_forward(const conv2d_desc *d, const float *x, const float *w, const float *bias,
                    float *y, float *ws) {
    conv2d_ctx_forward(&g_default, d, x, w, bias, y, ws);
}

void conv2d_backward(const conv2d_desc *d, const float *x, const float *w, const float *dy,
                     float *dx, float *dw, float *dbias, float *ws) {
    conv_entry *e = lookup(&g_default, d);
    float *a = checked_ws(e, ws, "conv2d_backward");
    if (e->path[CONV_BWD_DATA] == e->path[CONV_BWD_WEIGHTS]) {
        if (dx || dw) backward_on(e, CONV_BWD_DATA, x, NULL, w, dy, NULL, dx, 0, dw, a);
    } else {
        if (dw) backward_on(e, CONV_BWD_WEIGHTS, x, NULL, w, dy, NULL, NULL, 0, dw, a);
        if (dx) backward_on(e, CONV_BWD_DATA, x, NULL, w, dy, NULL, dx, 0, NULL, a);
    }
    if (dbias) bias_grad(rows_out(d), d->cout, dy, dbias);
}
