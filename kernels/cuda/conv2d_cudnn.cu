// Convolutions on the GPU through cuDNN (NHWC activations, OHWI weights = cuDNN's KRSC), and the
// depthwise shapes of the fp32 ops on our kernels when the backend says so (depthwise OWN, or
// AUTO's choice per shape and direction, made at planning by timing both). Twin: kernels/conv2d.c.
//
// Each shape gets a plan once (at model planning, through conv2d_workspace_floats, or at its first
// op): descriptors and one algorithm per direction, picked by cudnnFind* (trial runs) or
// cudnnGet*_v7 (heuristics) among those that use the precision's math, stay under the workspace
// limit and, unless the backend allows otherwise, give the same bits every run. All shapes share
// one workspace in the backend (the largest need), so conv2d_workspace_floats asks the caller for
// none.
//
// Accumulation (dx +=, dw +=) is cuDNN's beta = 1 in fp32 (beta = 0 where dx is written). In bf16
// (amp) cuDNN's descriptors are bf16 (inputs and result; fp32 accumulation inside): the fp32 ops
// round x, w and dy to bf16 copies in scratch (kernels/bf16.h's rounding, the to_bf16 op's bits),
// cuDNN writes a bf16 result, and a kernel adds (or, forward, stores with the bias) it into the
// fp32 tensor. The bf16 ops (the bf16 graph, model_set_conv_precision) take x and dy already in
// bf16 and convert only w. The bias gradient is our deterministic channel sum.
#include "kernels/cuda/conv2d_internal.cuh"

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

static const float one = 1.0f, zero = 0.0f; // cuDNN's alpha and beta

// y = float(yb) (+ bias[channel])
__global__ void from_bf16_bias_k(size_t n, int c, const bf16 *yb, const float *bias, float *y) {
    GRID_STRIDE(i, n) {
        float v = bf16_to_float(yb[i]);
        y[i] = bias ? v + bias[i % (size_t)c] : v;
    }
}
// y += float(xb), or (write) y = float(xb) + 0.0f: the bits of adding it to a zeroed y
template <bool write> __global__ void store_bf16_k(size_t n, const bf16 *xb, float *y) {
    GRID_STRIDE(i, n) y[i] = write ? bf16_to_float(xb[i]) + 0.0f : y[i] + bf16_to_float(xb[i]);
}
__global__ void add_bias_k(size_t n, int c, const float *bias, float *y) {
    GRID_STRIDE(i, n) y[i] += bias[i % (size_t)c];
}

// The element counts of x, w and y.
struct conv_sizes {
    size_t x, w, y;
};
static conv_sizes sizes_of(const conv2d_desc *d) {
    conv_sizes s;
    s.x = (size_t)d->n * d->h * d->w * d->cin;
    s.w = (size_t)d->cout * d->kh * d->kw * (d->cin / d->groups);
    s.y = (size_t)d->n * d->oh * d->ow * d->cout;
    return s;
}

// Up to three bf16 regions of scratch, one per tensor of the conv (each 256-byte aligned; NULL
// where not wanted, so the scratch holds only what the op uses), taken once per op: cuda_scratch
// gives the same memory to every call. Each op says which tensor's bf16 copy (or bf16 result) each
// region holds; a region is reused only after the work reading it, in stream order.
struct bf16_regions {
    bf16 *x, *w, *y;
};
static bf16_regions regions_of(cuda_ctx *c, const conv_sizes &s, bool want_x, bool want_w,
                               bool want_y) {
    size_t a = 256 / sizeof(bf16) - 1;
    size_t nx = want_x ? (s.x + a) & ~a : 0, nw = want_w ? (s.w + a) & ~a : 0,
           ny = want_y ? (s.y + a) & ~a : 0;
    bf16 *base = (bf16 *)cuda_scratch(c, (nx + nw + ny) * sizeof(bf16));
    bf16_regions r;
    r.x = want_x ? base : NULL;
    r.w = want_w ? base + nx : NULL;
    r.y = want_y ? base + nx + nw : NULL;
    return r;
}

// The three bf16 convolutions (cuDNN's bf16 descriptors: inputs and result in bf16, fp32
// accumulation) with their fp32 results. Forward: y = float(yb) + bias, yb in scratch.
static void fwd_bf16(cuda_ctx *c, const conv_plan *p, const conv_sizes &s, const bf16 *xb,
                     const bf16 *wb, bf16 *yb, const float *bias, float *y) {
    CUDNN_CHECK(cudnnConvolutionForward(c->cudnn, &one, p->x, xb, p->w, wb, p->conv[DIR_FWD],
                                        p->fwd, c->ws, p->ws[DIR_FWD], &zero, p->y, yb));
    from_bf16_bias_k<<<cuda_blocks(c, s.y), CUDA_BLOCK, 0, c->stream>>>(s.y, p->d.cout, yb, bias,
                                                                        y);
    CUDA_LAUNCHED("from_bf16_bias_k");
}
// dx += (or, write, dx =) the data gradient, through dxb in scratch.
static void data_bf16(cuda_ctx *c, const conv_plan *p, const conv_sizes &s, const bf16 *wb,
                      const bf16 *dyb, bf16 *dxb, float *dx, bool write) {
    CUDNN_CHECK(cudnnConvolutionBackwardData(c->cudnn, &one, p->w, wb, p->y, dyb, p->conv[DIR_DATA],
                                             p->data, c->ws, p->ws[DIR_DATA], &zero, p->x, dxb));
    if (write)
        store_bf16_k<true><<<cuda_blocks(c, s.x), CUDA_BLOCK, 0, c->stream>>>(s.x, dxb, dx);
    else
        store_bf16_k<false><<<cuda_blocks(c, s.x), CUDA_BLOCK, 0, c->stream>>>(s.x, dxb, dx);
    CUDA_LAUNCHED("store_bf16_k");
}
// dw += the filter gradient, through dwb in scratch.
static void filter_bf16(cuda_ctx *c, const conv_plan *p, const conv_sizes &s, const bf16 *xb,
                        const bf16 *dyb, bf16 *dwb, float *dw) {
    CUDNN_CHECK(cudnnConvolutionBackwardFilter(c->cudnn, &one, p->x, xb, p->y, dyb,
                                               p->conv[DIR_FILTER], p->filter, c->ws,
                                               p->ws[DIR_FILTER], &zero, p->w, dwb));
    store_bf16_k<false><<<cuda_blocks(c, s.w), CUDA_BLOCK, 0, c->stream>>>(s.w, dwb, dw);
    CUDA_LAUNCHED("store_bf16_k");
}

static bool bf16_math(const cuda_ctx *c) {
    return c->opts.precision == BACKEND_PRECISION_BF16;
}

// ---- the fp32 ops' cuDNN path of each direction (the ops, and AUTO's timing) ------------------

// y = x * w (+ bias)
static void cudnn_forward(cuda_ctx *c, const conv_plan *p, const float *x, const float *w,
                          const float *bias, float *y) {
    conv_sizes s = sizes_of(&p->d);
    if (bf16_math(c)) { // x, w converted here; y the bf16 result
        bf16_regions r = regions_of(c, s, true, true, true);
        cuda_to_bf16(c, s.x, x, r.x);
        cuda_to_bf16(c, s.w, w, r.w);
        fwd_bf16(c, p, s, r.x, r.w, r.y, bias, y);
    } else {
        CUDNN_CHECK(cudnnConvolutionForward(c->cudnn, &one, p->x, x, p->w, w, p->conv[DIR_FWD],
                                            p->fwd, c->ws, p->ws[DIR_FWD], &zero, p->y, y));
        if (bias) {
            add_bias_k<<<cuda_blocks(c, s.y), CUDA_BLOCK, 0, c->stream>>>(s.y, p->d.cout, bias, y);
            CUDA_LAUNCHED("add_bias_k");
        }
    }
}

// dx += (write: dx =) the data gradient
static void cudnn_backward_data(cuda_ctx *c, const conv_plan *p, const float *w, const float *dy,
                                float *dx, bool write) {
    conv_sizes s = sizes_of(&p->d);
    if (bf16_math(c)) { // w, dy converted into their regions; x's receives dx
        bf16_regions r = regions_of(c, s, true, true, true);
        cuda_to_bf16(c, s.w, w, r.w);
        cuda_to_bf16(c, s.y, dy, r.y);
        data_bf16(c, p, s, r.w, r.y, r.x, dx, write);
    } else { // beta 1 adds to dx, beta 0 writes it
        CUDNN_CHECK(cudnnConvolutionBackwardData(c->cudnn, &one, p->w, w, p->y, dy,
                                                 p->conv[DIR_DATA], p->data, c->ws, p->ws[DIR_DATA],
                                                 write ? &zero : &one, p->x, dx));
    }
}

// dw += the filter gradient (the bias gradient is the op's: our channel sum)
static void cudnn_backward_filter(cuda_ctx *c, const conv_plan *p, const float *x, const float *dy,
                                  float *dw) {
    conv_sizes s = sizes_of(&p->d);
    if (bf16_math(c)) { // x, dy converted into their regions; w's receives dw
        bf16_regions r = regions_of(c, s, true, true, true);
        cuda_to_bf16(c, s.x, x, r.x);
        cuda_to_bf16(c, s.y, dy, r.y);
        filter_bf16(c, p, s, r.x, r.y, r.w, dw);
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
            : cudnn_backward_data(c, p, t->w, t->y, t->dx, false);
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
    conv_sizes s = sizes_of(&p->d);
    dw_tensors t = {dw_alloc(c, s.x), dw_alloc(c, s.x), dw_alloc(c, s.y), dw_alloc(c, s.w),
                    dw_alloc(c, s.w)};
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
    // plan (and under AUTO choose) now, at planning, not in the first step; the bf16 ops take
    // cuDNN for every shape
    if (bf16_math(c))
        plan_for(c, d);
    else
        route(c, d, DIR_FWD);
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

// dx += (write: dx =) the data gradient, for both backward-data ops.
static void backward_data(cuda_ctx *c, const conv2d_desc *d, const float *w, const float *dy,
                          float *dx, bool write) {
    conv_plan *p = route(c, d, DIR_DATA);
    if (p) {
        cudnn_backward_data(c, p, w, dy, dx, write);
        return;
    }
    // our kernel accumulates: into a zeroed dx for write
    if (write) CUDA_CHECK(cudaMemsetAsync(dx, 0, sizes_of(d).x * sizeof *dx, c->stream));
    cuda_dw_backward_data(c, d, w, dy, dx);
}

static void cu_conv_backward_data(backend *be, const conv2d_desc *d, const float *w,
                                  const float *dy, float *dx, float *ws) {
    (void)ws;
    cuda_ctx *c = cuda_enter(be, "conv2d_backward_data");
    backward_data(c, d, w, dy, dx, false);
    cuda_leave(c);
}

static void cu_conv_backward_data_set(backend *be, const conv2d_desc *d, const float *w,
                                      const float *dy, float *dx, float *ws) {
    (void)ws;
    cuda_ctx *c = cuda_enter(be, "conv2d_backward_data_set");
    backward_data(c, d, w, dy, dx, true);
    cuda_leave(c);
}

static void cu_conv_backward_filter(backend *be, const conv2d_desc *d, const float *x,
                                    const float *dy, float *dw, float *dbias, float *ws) {
    (void)ws;
    cuda_ctx *c = cuda_enter(be, "conv2d_backward_filter");
    conv_plan *p = route(c, d, DIR_FILTER);
    if (!p) {
        cuda_dw_backward_filter(c, d, x, dy, dw, dbias);
        cuda_leave(c);
        return;
    }
    if (dw) cudnn_backward_filter(c, p, x, dy, dw);
    // after the bf16 work above: its scratch is not this sum's (stream order)
    if (dbias) cuda_channel_sum_add(c, (int)(sizes_of(d).y / (size_t)d->cout), d->cout, dy, dbias);
    cuda_leave(c);
}

// The bf16 graph's convolutions (BACKEND_PRECISION_BF16 only, kernels/cuda/ops.cu): x and dy
// arrive in bf16 (the shadows that to_bf16 or a BN + SiLU wrote), only w is converted here. Every
// shape goes to cuDNN, depthwise ones included (our depthwise kernels read fp32).
static void cu_conv_forward_bf16(backend *be, const conv2d_desc *d, const bf16 *xb, const float *w,
                                 const float *bias, float *y, float *ws) {
    (void)ws;
    cuda_ctx *c = cuda_enter(be, "conv2d_forward_bf16");
    conv_plan *p = plan_for(c, d);
    conv_sizes s = sizes_of(d);
    bf16_regions r = regions_of(c, s, false, true, true); // x is xb
    cuda_to_bf16(c, s.w, w, r.w);
    fwd_bf16(c, p, s, xb, r.w, r.y, bias, y);
    cuda_leave(c);
}

static void cu_conv_backward_bf16(backend *be, const conv2d_desc *d, const bf16 *xb, const float *w,
                                  const bf16 *dyb, float *dx, bool dx_write, float *dw, float *ws) {
    (void)ws;
    cuda_ctx *c = cuda_enter(be, "conv2d_backward_bf16");
    conv_plan *p = plan_for(c, d);
    conv_sizes s = sizes_of(d);
    bf16_regions r = regions_of(c, s, dx != NULL, true, false); // dy is dyb
    if (dx) { // w's region holds bf16(w), x's receives dx
        cuda_to_bf16(c, s.w, w, r.w);
        data_bf16(c, p, s, r.w, dyb, r.x, dx, dx_write);
    }
    // w's region receives dw once the data gradient, enqueued before, has read bf16(w)
    if (dw) filter_bf16(c, p, s, xb, dyb, r.w, dw);
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
    f->conv2d_backward_data_set = cu_conv_backward_data_set;
    // cleared by cuda_ops_fill below bf16 precision
    f->conv2d_forward_bf16 = cu_conv_forward_bf16;
    f->conv2d_backward_bf16 = cu_conv_backward_bf16;
}
