// Convolutions on the GPU through cuDNN (NHWC activations, OHWI weights = cuDNN's KRSC), and the
// depthwise shapes on our kernels when the backend says so (depthwise OWN, or AUTO's choice per
// shape and direction, made at planning by timing both). Twin: kernels/conv2d.c.
//
// Each shape gets a plan once (at model planning, through conv2d_workspace_floats, or at its first
// op): descriptors and one algorithm per direction, picked by cudnnFind* (trial runs) or
// cudnnGet*_v7 (heuristics) among those that use the precision's math, stay under the workspace
// limit and, unless the backend allows otherwise, give the same bits every run. All shapes share
// one workspace in the backend (the largest need), so conv2d_workspace_floats asks the caller for
// none.
//
// Accumulation (dx +=, dw +=) is cuDNN's beta = 1 in fp32. In bf16 (amp) x, w and dy are rounded
// to bf16 copies in scratch, cuDNN writes a bf16 result, and a kernel adds (or, forward, stores
// with the bias) it into the fp32 tensor. The bias gradient is our deterministic channel sum.
#include "kernels/cuda/conv2d_internal.cuh"

#include <cuda_bf16.h>
#include <stdlib.h>
#include <string.h>

enum { DIR_FWD, DIR_DATA, DIR_FILTER, DIR_COUNT };
static const char *const dir_names[DIR_COUNT] = {"forward", "backward data", "backward filter"};

struct conv_plan {
    conv2d_desc d;
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv[DIR_COUNT]; // each direction with its algorithm's math type
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t data;
    cudnnConvolutionBwdFilterAlgo_t filter;
    size_t ws[DIR_COUNT];
    float find_ms[DIR_COUNT]; // cudnnFind's time of the picked algorithm; -1: heuristics
    bool det[DIR_COUNT];      // the picked algorithm is deterministic
    bool dw_auto;             // a depthwise shape under AUTO: dw.use[] routes each direction
    backend_depthwise_choice dw;
    conv_plan *next;
};

static bool same_shape(const conv2d_desc *a, const conv2d_desc *b) {
    return a->n == b->n && a->h == b->h && a->w == b->w && a->cin == b->cin && a->cout == b->cout &&
           a->kh == b->kh && a->kw == b->kw && a->stride == b->stride && a->pad == b->pad &&
           a->groups == b->groups;
}

static cudnnDataType_t data_type(const cuda_ctx *c) {
    return c->opts.precision == BACKEND_PRECISION_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}

static cudnnMathType_t wanted_math(const cuda_ctx *c) {
    switch (c->opts.precision) {
    case BACKEND_PRECISION_TF32:
        return CUDNN_DEFAULT_MATH; // cuDNN may use TF32 tensor cores for fp32 data
    case BACKEND_PRECISION_BF16:
        return CUDNN_TENSOR_OP_MATH;
    default:
        return CUDNN_FMA_MATH; // strict fp32
    }
}

// The index of the result to use: the first (fastest, or best by heuristics) that succeeded,
// fits the workspace limit, has the wanted math and is deterministic (unless allowed); failing
// that the first that succeeded and fits, with a warning; -1 if none.
template <typename Perf>
static int pick(const cuda_ctx *c, const conv2d_desc *d, int dir, const Perf *r, int n) {
    for (int strict = 1; strict >= 0; strict--)
        for (int i = 0; i < n; i++) {
            if (r[i].status != CUDNN_STATUS_SUCCESS || r[i].memory > c->opts.workspace_limit)
                continue;
            bool good = r[i].mathType == wanted_math(c) &&
                        (c->opts.nondeterministic || r[i].determinism == CUDNN_DETERMINISTIC);
            if (strict && !good) continue;
            if (!strict)
                log_warn("CUDA backend %s: conv %dx%dx%d->%d k%d s%d g%d %s: no %s algorithm of "
                         "the wanted math within %zu MiB; using algorithm %d",
                         c->name, d->h, d->w, d->cin, d->cout, d->kh, d->stride, d->groups,
                         dir_names[dir], c->opts.nondeterministic ? "" : "deterministic",
                         c->opts.workspace_limit >> 20, (int)r[i].algo);
            return i;
        }
    return -1;
}

static void no_algorithm(const cuda_ctx *c, const conv2d_desc *d, int dir) {
    FATAL("CUDA backend %s: cuDNN has no %s algorithm for conv n%d %dx%dx%d -> %d k%dx%d s%d p%d "
          "g%d within the workspace limit of %zu MiB",
          c->name, dir_names[dir], d->n, d->h, d->w, d->cin, d->cout, d->kh, d->kw, d->stride,
          d->pad, d->groups, c->opts.workspace_limit >> 20);
}

// The picked result of one direction: its algorithm, workspace and math type into the plan.
template <typename Perf, typename Algo>
static void take(cuda_ctx *c, conv_plan *p, int dir, const Perf *r, int n, Algo *algo) {
    int i = pick(c, &p->d, dir, r, n);
    if (i < 0) no_algorithm(c, &p->d, dir);
    *algo = r[i].algo;
    p->ws[dir] = r[i].memory;
    p->find_ms[dir] = c->opts.search == BACKEND_CONV_FIND ? r[i].time : -1.0f;
    p->det[dir] = r[i].determinism == CUDNN_DETERMINISTIC;
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv[dir], r[i].mathType));
}

static void choose(cuda_ctx *c, conv_plan *p) {
    enum { MAXR = 16 };
    int n = 0;
    bool find = c->opts.search == BACKEND_CONV_FIND;
    cudnnConvolutionFwdAlgoPerf_t rf[MAXR];
    cudnnConvolutionBwdDataAlgoPerf_t rd[MAXR];
    cudnnConvolutionBwdFilterAlgoPerf_t rw[MAXR];
    cudnnConvolutionDescriptor_t *cv = p->conv;
    if (find)
        CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithm(c->cudnn, p->x, p->w, cv[DIR_FWD], p->y,
                                                         MAXR, &n, rf));
    else
        CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(c->cudnn, p->x, p->w, cv[DIR_FWD], p->y,
                                                           MAXR, &n, rf));
    take(c, p, DIR_FWD, rf, n, &p->fwd);
    if (find)
        CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithm(c->cudnn, p->w, p->y, cv[DIR_DATA],
                                                              p->x, MAXR, &n, rd));
    else
        CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(c->cudnn, p->w, p->y, cv[DIR_DATA],
                                                                p->x, MAXR, &n, rd));
    take(c, p, DIR_DATA, rd, n, &p->data);
    if (find)
        CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithm(
            c->cudnn, p->x, p->y, cv[DIR_FILTER], p->w, MAXR, &n, rw));
    else
        CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
            c->cudnn, p->x, p->y, cv[DIR_FILTER], p->w, MAXR, &n, rw));
    take(c, p, DIR_FILTER, rw, n, &p->filter);
}

static void choose_depthwise(cuda_ctx *c, conv_plan *p);

static conv_plan *plan_for(cuda_ctx *c, const conv2d_desc *d) {
    for (conv_plan *p = c->plans; p; p = p->next)
        if (same_shape(&p->d, d)) return p;
    conv_plan *p = (conv_plan *)xcalloc(1, sizeof *p);
    p->d = *d;
    cudnnDataType_t t = data_type(c);
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->x));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->y));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&p->w));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NHWC, t, d->n, d->cin, d->h, d->w));
    CUDNN_CHECK(
        cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NHWC, t, d->n, d->cout, d->oh, d->ow));
    // NHWC filter format = KRSC = [cout][kh][kw][cin/groups]: our OHWI as it is
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->w, t, CUDNN_TENSOR_NHWC, d->cout, d->cin / d->groups,
                                           d->kh, d->kw));
    for (int dir = 0; dir < DIR_COUNT; dir++) {
        CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p->conv[dir]));
        CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p->conv[dir], d->pad, d->pad, d->stride,
                                                    d->stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                                    CUDNN_DATA_FLOAT));
        CUDNN_CHECK(cudnnSetConvolutionGroupCount(p->conv[dir], d->groups));
        CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv[dir], wanted_math(c)));
    }
    int n, ch, h, w;
    CUDNN_CHECK(
        cudnnGetConvolution2dForwardOutputDim(p->conv[DIR_FWD], p->x, p->w, &n, &ch, &h, &w));
    if (n != d->n || ch != d->cout || h != d->oh || w != d->ow)
        FATAL("CUDA backend %s: cuDNN's output %dx%dx%dx%d differs from conv2d_make's %dx%dx%dx%d",
              c->name, n, h, w, ch, d->n, d->oh, d->ow, d->cout);
    choose(c, p);
    size_t need = p->ws[0];
    for (int dir = 1; dir < DIR_COUNT; dir++) need = p->ws[dir] > need ? p->ws[dir] : need;
    if (need > c->ws_bytes) { // the one shared workspace grows to the largest need
        CUDA_CHECK(cudaStreamSynchronize(c->stream));
        CUDA_CHECK(cudaFree(c->ws));
        c->ws = NULL;
        CUDA_CHECK(cudaMalloc(&c->ws, need));
        c->ws_bytes = need;
    }
    if (c->opts.depthwise == BACKEND_DEPTHWISE_AUTO && cuda_dw_fits(d)) choose_depthwise(c, p);
    p->next = c->plans;
    c->plans = p;
    return p;
}

// ---- bf16 copies and the fp32 results -------------------------------------------------------

__global__ void to_bf16_k(size_t n, const float *x, __nv_bfloat16 *y) {
    GRID_STRIDE(i, n) y[i] = __float2bfloat16_rn(x[i]);
}
// y = yb (+ bias[channel])
__global__ void from_bf16_bias_k(size_t n, int c, const __nv_bfloat16 *yb, const float *bias,
                                 float *y) {
    GRID_STRIDE(i, n) {
        float v = __bfloat162float(yb[i]);
        y[i] = bias ? v + bias[i % (size_t)c] : v;
    }
}
__global__ void acc_bf16_k(size_t n, const __nv_bfloat16 *xb, float *y) {
    GRID_STRIDE(i, n) y[i] += __bfloat162float(xb[i]);
}
__global__ void add_bias_k(size_t n, int c, const float *bias, float *y) {
    GRID_STRIDE(i, n) y[i] += bias[i % (size_t)c];
}

static __nv_bfloat16 *to_bf16(cuda_ctx *c, const float *x, size_t n, __nv_bfloat16 *dst) {
    to_bf16_k<<<cuda_blocks(c, n), CUDA_BLOCK, 0, c->stream>>>(n, x, dst);
    CUDA_LAUNCHED("to_bf16_k");
    return dst;
}

static size_t sizes(const conv2d_desc *d, size_t *nx, size_t *nw, size_t *ny) {
    *nx = (size_t)d->n * d->h * d->w * d->cin;
    *nw = (size_t)d->cout * d->kh * d->kw * (d->cin / d->groups);
    *ny = (size_t)d->n * d->oh * d->ow * d->cout;
    size_t a = 256 / sizeof(__nv_bfloat16) - 1; // each copy 256-byte aligned
    return ((*nx + a) & ~a) + ((*nw + a) & ~a) + ((*ny + a) & ~a);
}
// Three bf16 regions of scratch: for x, w and y (in that order).
static void bf16_regions(cuda_ctx *c, const conv2d_desc *d, __nv_bfloat16 **xb, __nv_bfloat16 **wb,
                         __nv_bfloat16 **yb) {
    size_t nx, nw, ny, a = 256 / sizeof(__nv_bfloat16) - 1;
    size_t total = sizes(d, &nx, &nw, &ny);
    *xb = (__nv_bfloat16 *)cuda_scratch(c, total * sizeof(__nv_bfloat16));
    *wb = *xb + ((nx + a) & ~a);
    *yb = *wb + ((nw + a) & ~a);
}

// ---- the cuDNN path of each direction (the ops, and AUTO's timing) -----------------------------

static const float one = 1.0f, zero = 0.0f;

static void cudnn_forward(cuda_ctx *c, const conv_plan *p, const float *x, const float *w,
                          const float *bias, float *y) {
    size_t nx, nw, ny;
    sizes(&p->d, &nx, &nw, &ny);
    if (c->opts.precision == BACKEND_PRECISION_BF16) {
        __nv_bfloat16 *xb, *wb, *yb;
        bf16_regions(c, &p->d, &xb, &wb, &yb);
        CUDNN_CHECK(cudnnConvolutionForward(c->cudnn, &one, p->x, to_bf16(c, x, nx, xb), p->w,
                                            to_bf16(c, w, nw, wb), p->conv[DIR_FWD], p->fwd, c->ws,
                                            p->ws[DIR_FWD], &zero, p->y, yb));
        from_bf16_bias_k<<<cuda_blocks(c, ny), CUDA_BLOCK, 0, c->stream>>>(ny, p->d.cout, yb, bias,
                                                                           y);
        CUDA_LAUNCHED("from_bf16_bias_k");
    } else {
        CUDNN_CHECK(cudnnConvolutionForward(c->cudnn, &one, p->x, x, p->w, w, p->conv[DIR_FWD],
                                            p->fwd, c->ws, p->ws[DIR_FWD], &zero, p->y, y));
        if (bias) {
            add_bias_k<<<cuda_blocks(c, ny), CUDA_BLOCK, 0, c->stream>>>(ny, p->d.cout, bias, y);
            CUDA_LAUNCHED("add_bias_k");
        }
    }
}

static void cudnn_backward_data(cuda_ctx *c, const conv_plan *p, const float *w, const float *dy,
                                float *dx) {
    size_t nx, nw, ny;
    sizes(&p->d, &nx, &nw, &ny);
    if (c->opts.precision == BACKEND_PRECISION_BF16) {
        __nv_bfloat16 *xb, *wb, *yb; // xb receives dx, yb holds dy
        bf16_regions(c, &p->d, &xb, &wb, &yb);
        CUDNN_CHECK(cudnnConvolutionBackwardData(c->cudnn, &one, p->w, to_bf16(c, w, nw, wb), p->y,
                                                 to_bf16(c, dy, ny, yb), p->conv[DIR_DATA], p->data,
                                                 c->ws, p->ws[DIR_DATA], &zero, p->x, xb));
        acc_bf16_k<<<cuda_blocks(c, nx), CUDA_BLOCK, 0, c->stream>>>(nx, xb, dx);
        CUDA_LAUNCHED("acc_bf16_k");
    } else {
        CUDNN_CHECK(cudnnConvolutionBackwardData(c->cudnn, &one, p->w, w, p->y, dy,
                                                 p->conv[DIR_DATA], p->data, c->ws, p->ws[DIR_DATA],
                                                 &one, p->x, dx));
    }
}

// dw += (the bias gradient is the caller's: our channel sum)
static void cudnn_backward_filter(cuda_ctx *c, const conv_plan *p, const float *x, const float *dy,
                                  float *dw) {
    size_t nx, nw, ny;
    sizes(&p->d, &nx, &nw, &ny);
    if (c->opts.precision == BACKEND_PRECISION_BF16) {
        __nv_bfloat16 *xb, *wb, *yb; // wb receives dw
        bf16_regions(c, &p->d, &xb, &wb, &yb);
        CUDNN_CHECK(cudnnConvolutionBackwardFilter(
            c->cudnn, &one, p->x, to_bf16(c, x, nx, xb), p->y, to_bf16(c, dy, ny, yb),
            p->conv[DIR_FILTER], p->filter, c->ws, p->ws[DIR_FILTER], &zero, p->w, wb));
        acc_bf16_k<<<cuda_blocks(c, nw), CUDA_BLOCK, 0, c->stream>>>(nw, wb, dw);
        CUDA_LAUNCHED("acc_bf16_k");
    } else {
        CUDNN_CHECK(cudnnConvolutionBackwardFilter(c->cudnn, &one, p->x, x, p->y, dy,
                                                   p->conv[DIR_FILTER], p->filter, c->ws,
                                                   p->ws[DIR_FILTER], &one, p->w, dw));
    }
}

// ---- AUTO: our depthwise kernel or cuDNN, per shape and direction ----------------------------
//
// Timed once, when the shape is planned, on scratch tensors of the shape (zeros; the caller's are
// never touched): per direction and implementation DW_WARMUP calls (which also grow the shared
// scratch, whose growth synchronises), then DW_REPS calls between two events on the backend's
// stream; two rounds in opposite orders, the lower time of each side kept, so that neither gains
// from the clocks ramping up after an idle GPU. Both sides are timed the same way and as the ops
// run them (cuDNN's with its bf16 copies in amp); no bias (YOLO's depthwise convs have none).
// backend_depthwise_pick decides.

enum { DW_WARMUP = 2, DW_REPS = 5 };

typedef struct dw_tensors {
    float *x, *dx, *y, *w, *dw; // y also serves as dy
} dw_tensors;

static void dw_run(cuda_ctx *c, const conv_plan *p, int dir, bool own, const dw_tensors *t) {
    const conv2d_desc *d = &p->d;
    if (dir == DIR_FWD)
        own ? cuda_dw_forward(c, d, t->x, t->w, NULL, t->y)
            : cudnn_forward(c, p, t->x, t->w, NULL, t->y);
    else if (dir == DIR_DATA)
        own ? cuda_dw_backward_data(c, d, t->w, t->y, t->dx)
            : cudnn_backward_data(c, p, t->w, t->y, t->dx);
    else
        own ? cuda_dw_backward_filter(c, d, t->x, t->y, t->dw, NULL)
            : cudnn_backward_filter(c, p, t->x, t->y, t->dw);
}

// Mean milliseconds of one call.
static double dw_time(cuda_ctx *c, const conv_plan *p, int dir, bool own, const dw_tensors *t,
                      cudaEvent_t ev[2]) {
    for (int i = 0; i < DW_WARMUP; i++) dw_run(c, p, dir, own, t);
    CUDA_CHECK(cudaEventRecord(ev[0], c->stream));
    for (int i = 0; i < DW_REPS; i++) dw_run(c, p, dir, own, t);
    CUDA_CHECK(cudaEventRecord(ev[1], c->stream));
    CUDA_CHECK(cudaEventSynchronize(ev[1]));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, ev[0], ev[1]));
    return ms / DW_REPS;
}

// cudaMalloc of n floats, zeroed on the stream; NULL (with the error cleared) when the device is
// out of memory, which leaves the shape untimed rather than ending the run.
static float *dw_alloc(cuda_ctx *c, size_t n) {
    void *q = NULL;
    cudaError_t e = cudaMalloc(&q, n * sizeof(float));
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError(); // not sticky: clear it, or the next launch check reports it
        return NULL;
    }
    cuda_check_at(c, e, __FILE__, __LINE__, "cudaMalloc (depthwise timing tensors)");
    CUDA_CHECK(cudaMemsetAsync(q, 0, n * sizeof(float), c->stream));
    return (float *)q;
}

// Times both implementations of every direction into ch (whose times start at -1); false when the
// scratch tensors do not fit.
static bool dw_measure(cuda_ctx *c, const conv_plan *p, backend_depthwise_choice *ch) {
    size_t nx, nw, ny;
    sizes(&p->d, &nx, &nw, &ny);
    dw_tensors t = {dw_alloc(c, nx), dw_alloc(c, nx), dw_alloc(c, ny), dw_alloc(c, nw),
                    dw_alloc(c, nw)};
    bool ok = t.x && t.dx && t.y && t.w && t.dw;
    if (ok) {
        cudaEvent_t ev[2];
        CUDA_CHECK(cudaEventCreate(&ev[0]));
        CUDA_CHECK(cudaEventCreate(&ev[1]));
        for (int dir = 0; dir < DIR_COUNT; dir++)
            for (int round = 0; round < 2; round++)
                for (int k = 0; k < 2; k++) {
                    bool own = k == round; // round 0: ours first; round 1: cuDNN first
                    double ms = dw_time(c, p, dir, own, &t, ev),
                           *best = own ? &ch->own_ms[dir] : &ch->cudnn_ms[dir];
                    if (*best < 0 || ms < *best) *best = ms;
                }
        CUDA_CHECK(cudaEventDestroy(ev[0]));
        CUDA_CHECK(cudaEventDestroy(ev[1]));
    }
    CUDA_CHECK(cudaStreamSynchronize(c->stream)); // nothing may still use them (the memsets)
    float *all[] = {t.x, t.dx, t.y, t.w, t.dw};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (all[i]) CUDA_CHECK(cudaFree(all[i]));
    return ok;
}

static void choose_depthwise(cuda_ctx *c, conv_plan *p) {
    backend_depthwise_choice *ch = &p->dw;
    const conv2d_desc *d = &p->d;
    ch->d = *d;
    for (int dir = 0; dir < DIR_COUNT; dir++) {
        ch->find_ms[dir] = p->find_ms[dir], ch->own_ms[dir] = ch->cudnn_ms[dir] = -1;
        ch->cudnn_deterministic[dir] = p->det[dir];
    }
    // Under HEURISTIC cuDNN's choice involves no timing, and neither does this one: ours.
    ch->timed = c->opts.search == BACKEND_CONV_FIND && dw_measure(c, p, ch);
    if (c->opts.search == BACKEND_CONV_FIND && !ch->timed)
        log_warn("CUDA backend %s: depthwise conv n%d %dx%dx%d k%d s%d: no device memory to time "
                 "it; our kernel",
                 c->name, d->n, d->h, d->w, d->cin, d->kh, d->stride);
    for (int dir = 0; dir < DIR_COUNT; dir++)
        ch->use[dir] = backend_depthwise_pick(ch->own_ms[dir], ch->cudnn_ms[dir], p->det[dir],
                                              c->opts.nondeterministic);
    p->dw_auto = true;
}

// The plan that runs direction dir of d on cuDNN, or NULL where it runs on our depthwise kernel.
static conv_plan *route(cuda_ctx *c, const conv2d_desc *d, int dir) {
    if (c->opts.depthwise == BACKEND_DEPTHWISE_OWN && cuda_dw_fits(d)) return NULL;
    conv_plan *p = plan_for(c, d);
    return p->dw_auto && p->dw.use[dir] == BACKEND_DEPTHWISE_OWN ? NULL : p;
}

extern "C" int backend_cuda_depthwise_choices(const backend *be, backend_depthwise_choice *out,
                                              int max) {
    if (!backend_cuda_options(be)) return 0;
    int n = 0;
    for (const conv_plan *p = cuda_ctx_of(be)->plans; p; p = p->next) n += p->dw_auto;
    int k = n; // the list is newest first: fill from the end for planning order
    for (const conv_plan *p = cuda_ctx_of(be)->plans; p; p = p->next)
        if (p->dw_auto && --k < max) out[k] = p->dw;
    return n;
}

// ---- the ops ---------------------------------------------------------------------------------

static size_t cu_conv_ws_floats(backend *be, const conv2d_desc *d) {
    cuda_ctx *c = cuda_enter(be, "conv2d_workspace_floats");
    route(c, d, DIR_FWD); // plan (and under AUTO choose) now, at planning, not in the first step
    c->op = NULL;
    return 0;
}

static void cu_conv_forward(backend *be, const conv2d_desc *d, const float *x, const float *w,
                            const float *bias, float *y, float *ws) {
    (void)ws;
    cuda_ctx *c = cuda_enter(be, "conv2d_forward");
    conv_plan *p = route(c, d, DIR_FWD);
    if (p)
        cudnn_forward(c, p, x, w, bias, y);
    else
        cuda_dw_forward(c, d, x, w, bias, y);
    cuda_leave(c);
}

static void cu_conv_backward_data(backend *be, const conv2d_desc *d, const float *w,
                                  const float *dy, float *dx, float *ws) {
    (void)ws;
    cuda_ctx *c = cuda_enter(be, "conv2d_backward_data");
    conv_plan *p = route(c, d, DIR_DATA);
    if (p)
        cudnn_backward_data(c, p, w, dy, dx);
    else
        cuda_dw_backward_data(c, d, w, dy, dx);
    cuda_leave(c);
}

static void cu_conv_backward_filter(backend *be, const conv2d_desc *d, const float *x,
                                    const float *dy, float *dw, float *dbias, float *ws) {
    (void)ws;
    cuda_ctx *c = cuda_enter(be, "conv2d_backward_filter");
    conv_plan *p = route(c, d, DIR_FILTER);
    if (!p) {
        cuda_dw_backward_filter(c, d, x, dy, dw, dbias);
    } else {
        if (dw) cudnn_backward_filter(c, p, x, dy, dw);
        if (dbias) cuda_channel_sum_add(c, (int)((size_t)d->n * d->oh * d->ow), d->cout, dy, dbias);
    }
    cuda_leave(c);
}

void cuda_release_conv(cuda_ctx *c) {
    for (conv_plan *p = c->plans, *next; p; p = next) {
        next = p->next;
        for (int dir = 0; dir < DIR_COUNT; dir++)
            CUDNN_CHECK(cudnnDestroyConvolutionDescriptor(p->conv[dir]));
        CUDNN_CHECK(cudnnDestroyFilterDescriptor(p->w));
        CUDNN_CHECK(cudnnDestroyTensorDescriptor(p->x));
        CUDNN_CHECK(cudnnDestroyTensorDescriptor(p->y));
        free(p);
    }
    c->plans = NULL;
}

void cuda_fill_conv(backend_i *f) {
    f->conv2d_workspace_floats = cu_conv_ws_floats;
    f->conv2d_forward = cu_conv_forward;
    f->conv2d_backward_data = cu_conv_backward_data;
    f->conv2d_backward_filter = cu_conv_backward_filter;
}
