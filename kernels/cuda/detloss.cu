// The detection loss on the GPU (kernels/cuda/detloss_cuda.h): the kernels of
// kernels/cuda/detloss_dev.h's algorithm, their launches, and the scratch they use.
#include <cuda_runtime.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "kernels/cuda/detloss_cuda.h"
#include "kernels/detloss.h"
}
#include "kernels/cuda/detloss_dev.h"

#define DL_THREADS 256    // threads per block (a power of two: the block merges halve it)
#define DL_RED_BLOCKS 264 // blocks of the summing kernels: fixed, so the sums' order is fixed
#define DL_NSUM 5         // per branch: cls, box, dfl, tsum, fg (dl_sums order)

// ---- block-wide helpers ----------------------------------------------------------------------

// Shared lists of the block top-k: one per thread, merged pairwise (halving) into list 0.
struct topk_shared {
    float v[DL_THREADS][DL_DEV_MAX_TOPK];
    int i[DL_THREADS][DL_DEV_MAX_TOPK];
    int n[DL_THREADS];
};

// Merges every thread's sorted list (val/idx, cnt entries) into the block's k first entries in
// dl_topk_before order: s->i[0][0..s->n[0]). All threads of the block must call it.
__device__ void block_topk(int k, int cnt, const float *val, const int *idx, topk_shared *s) {
    int t = threadIdx.x;
    for (int q = 0; q < cnt; q++) {
        s->v[t][q] = val[q];
        s->i[t][q] = idx[q];
    }
    s->n[t] = cnt;
    __syncthreads();
    for (int h = blockDim.x / 2; h > 0; h >>= 1) {
        if (t < h) {
            float mv[DL_DEV_MAX_TOPK];
            int mi[DL_DEV_MAX_TOPK];
            int na = s->n[t], nb = s->n[t + h], p = 0, q = 0, n = 0;
            while (n < k && (p < na || q < nb)) {
                bool take_a = q >= nb || (p < na && dl_topk_before(s->v[t][p], s->i[t][p],
                                                                   s->v[t + h][q], s->i[t + h][q]));
                if (take_a) {
                    mv[n] = s->v[t][p];
                    mi[n] = s->i[t][p++];
                } else {
                    mv[n] = s->v[t + h][q];
                    mi[n] = s->i[t + h][q++];
                }
                n++;
            }
            for (int r = 0; r < n; r++) {
                s->v[t][r] = mv[r];
                s->i[t][r] = mi[r];
            }
            s->n[t] = n;
        }
        __syncthreads();
    }
}

// Sums nv doubles over the block in a fixed tree order; thread 0 gets the totals in out.
__device__ void block_sum(int nv, double *v, double (*sh)[DL_THREADS], double *out) {
    int t = threadIdx.x;
    for (int j = 0; j < nv; j++) sh[j][t] = v[j];
    __syncthreads();
    for (int h = blockDim.x / 2; h > 0; h >>= 1) {
        if (t < h)
            for (int j = 0; j < nv; j++) sh[j][t] += sh[j][t + h];
        __syncthreads();
    }
    if (t == 0)
        for (int j = 0; j < nv; j++) out[j] = sh[j][0];
}

// ---- the kernels (one per step of detloss_dev.h) --------------------------------------------

__global__ void k_decode(dl_dev d) {
    size_t n = (size_t)d.B * d.A;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dl_k_decode(&d, i);
}

// One block per GT (b, j): every anchor's candidate test and metric, then the GT's top-k.
__global__ void k_candidates(dl_dev d, int k) {
    __shared__ topk_shared s;
    int b = blockIdx.x / d.M, j = blockIdx.x % d.M;
    int real = dl_real(&d, b, j);
    float box[4];
    dl_stal_box(&d.h, d.gt_box + ((size_t)b * d.M + j) * 4, real, box);
    float val[DL_DEV_MAX_TOPK];
    int idx[DL_DEV_MAX_TOPK], cnt = 0;
    for (int a = threadIdx.x; a < d.A; a += blockDim.x) {
        float m = dl_k_metric(&d, b, j, a, real, box);
        if (real) dl_topk_insert(k, &cnt, val, idx, m, a);
    }
    if (!real) return; // the whole block: padding has no positives
    block_topk(k, cnt, val, idx, &s);
    if (threadIdx.x == 0) dl_k_pos_from_topk(&d, b, j, s.i[0], s.n[0]);
}

__global__ void k_conflicts(dl_dev d) {
    size_t n = (size_t)d.B * d.A;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dl_k_conflicts(&d, (int)(i / d.A), (int)(i % d.A));
}

// One block per GT: keep its top-k2 positives by metric (yolo26's one2one branch).
__global__ void k_topk2(dl_dev d, int k2) {
    __shared__ topk_shared s;
    int b = blockIdx.x / d.M, j = blockIdx.x % d.M;
    if (!dl_real(&d, b, j)) return; // no positives to keep
    float val[DL_DEV_MAX_TOPK];
    int idx[DL_DEV_MAX_TOPK], cnt = 0;
    for (int a = threadIdx.x; a < d.A; a += blockDim.x)
        dl_topk_insert(k2, &cnt, val, idx, dl_k_topk2_value(&d, b, j, a), a);
    block_topk(k2, cnt, val, idx, &s);
    for (int a = threadIdx.x; a < d.A; a += blockDim.x)
        if (d.pos[dl_bma(&d, b, j, a)]) dl_k_topk2_keep(&d, b, j, a, s.i[0], s.n[0]);
}

__global__ void k_assign(dl_dev d) {
    size_t n = (size_t)d.B * d.A;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        int gi = dl_k_assign(&d, i);
        if (gi < 0) continue;
        int b = (int)(i / d.A), a = (int)(i % d.A);
        size_t q = dl_bma(&d, b, gi, a);
        uint32_t *tu = d.tu + ((size_t)b * d.M + gi) * 2;
        atomicMax(&tu[0], dl_float_bits(d.metric[q])); // non-negative: bits order = value order
        atomicMax(&tu[1], dl_float_bits(d.overlap[q]));
    }
}

// Target scores; the block sums of the scores go to part[block * DL_NSUM + 3].
__global__ void k_scores(dl_dev d, double *part) {
    __shared__ double sh[1][DL_THREADS];
    size_t n = (size_t)d.B * d.A;
    double v[1] = {0};
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        v[0] += dl_k_score(&d, i);
    block_sum(1, v, sh, part + (size_t)blockIdx.x * DL_NSUM + 3);
}

// Every channel of every anchor: class BCE (block sums to part[.. + 0]), box gradient zeroed.
__global__ void k_cls(dl_dev d, double *part) {
    __shared__ double sh[1][DL_THREADS];
    dl_coefs k = dl_dev_coefs(&d);
    size_t n = (size_t)d.B * d.A * d.no;
    double v[1] = {0};
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        v[0] += dl_k_cls(&d, &k, i / d.no, (int)(i % d.no));
    block_sum(1, v, sh, part + (size_t)blockIdx.x * DL_NSUM + 0);
}

// Foreground anchors: box and DFL / L1 (block sums to part[.. + 1, 2], the count to [.. + 4]).
__global__ void k_box(dl_dev d, double *part) {
    __shared__ double sh[2][DL_THREADS];
    __shared__ double shf[1][DL_THREADS];
    dl_coefs k = dl_dev_coefs(&d);
    size_t n = (size_t)d.B * d.A;
    double v[2] = {0, 0}, f[1] = {0};
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        double li, ld;
        f[0] += dl_k_box(&d, &k, i, &li, &ld);
        v[0] += li;
        v[1] += ld;
    }
    block_sum(2, v, sh, part + (size_t)blockIdx.x * DL_NSUM + 1);
    block_sum(1, f, shf, part + (size_t)blockIdx.x * DL_NSUM + 4);
}

// Sums the DL_RED_BLOCKS partial rows into sums[0..DL_NSUM) (one block, fixed order) for the
// slots in mask; with tss, also max((float)tsum, 1).
__global__ void k_reduce(const double *part, unsigned mask, double *sums, float *tss) {
    __shared__ double sh[DL_NSUM][DL_THREADS];
    double v[DL_NSUM];
    for (int j = 0; j < DL_NSUM; j++) {
        v[j] = 0;
        for (int b = threadIdx.x; b < DL_RED_BLOCKS; b += blockDim.x)
            if (mask >> j & 1) v[j] += part[(size_t)b * DL_NSUM + j];
    }
    double out[DL_NSUM];
    block_sum(DL_NSUM, v, sh, out);
    if (threadIdx.x != 0) return;
    for (int j = 0; j < DL_NSUM; j++)
        if (mask >> j & 1) sums[j] = out[j];
    if (tss) {
        float t = (float)out[3];
        *tss = t < 1 ? 1 : t;
    }
}

// The items of the branches, combined as detloss_branch / detloss_e2e report them, added to
// result.
__global__ void k_result(const double *sums, int nbr, detloss_hyp h0, detloss_hyp h1, float o2m,
                         float o2o, int B, double *result) {
    float vec[2][3], items[2][3];
    double ls[2][3];
    const detloss_hyp *hs[2] = {&h0, &h1};
    for (int br = 0; br < nbr; br++) {
        const double *s = sums + br * DL_NSUM;
        dl_sums q = {s[0], s[1], s[2], s[3], s[4]};
        dl_finish(hs[br], &q, B, vec[br], items[br], ls[br]);
    }
    int r = nbr - 1; // the reported branch: one2one for E2E
    float tot[3];
    for (int i = 0; i < 3; i++) tot[i] = nbr == 2 ? vec[0][i] * o2m + vec[1][i] * o2o : vec[0][i];
    for (int i = 0; i < 3; i++) {
        result[BACKEND_DETLOSS_ITEMS + i] += items[r][i];
        result[BACKEND_DETLOSS_LOSS_SUM + i] += ls[r][i];
    }
    result[BACKEND_DETLOSS_TARGET_RAW] += sums[r * DL_NSUM + 3];
    result[BACKEND_DETLOSS_NUM_FG] += sums[r * DL_NSUM + 4];
    result[BACKEND_DETLOSS_TOTAL] += tot[0] + tot[1] + tot[2];
}

// ---- host side --------------------------------------------------------------------------------

struct buf {
    void *p;
    size_t cap;
};

enum {
    B_GT_LAB,
    B_GT_BOX,
    B_GT_MASK,
    B_CLS_W0,
    B_CLS_W1,
    B_PD_BOX,
    B_METRIC,
    B_OVERLAP,
    B_IN_GT,
    B_POS,
    B_GT_OF,
    B_TSCORE,
    B_TU,
    B_PART,
    B_SUMS, // [2][DL_NSUM] doubles, then 2 floats: tss per branch
    B_COUNT
};

struct detloss_cuda {
    int device;
    buf b[B_COUNT];
    float *h_lab, *h_box, *h_mask; // host staging of the preprocessed targets
    size_t h_cap;
};

static int cuda_err(cudaError_t e, const char *what, char *err, size_t errlen) {
    if (err && errlen)
        snprintf(err, errlen, "detloss (CUDA): %s: %s (%s)", what, cudaGetErrorString(e),
                 cudaGetErrorName(e));
    return -1;
}
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen) vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}
#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) return cuda_err(e_, #call, err, errlen);                            \
    } while (0)
#define CK_LAUNCH(what) CK(cudaPeekAtLastError())

// Device buffer i of at least bytes (grows; the old contents are not kept).
static int need(detloss_cuda *l, int i, size_t bytes, char *err, size_t errlen) {
    if (bytes == 0) bytes = 16;
    if (l->b[i].cap >= bytes) return 0;
    if (l->b[i].p) CK(cudaFree(l->b[i].p)); // synchronises: nothing enqueued still uses it
    l->b[i].p = NULL;
    l->b[i].cap = 0;
    CK(cudaMalloc(&l->b[i].p, bytes));
    l->b[i].cap = bytes;
    return 0;
}

extern "C" detloss_cuda *detloss_cuda_create(int device) {
    detloss_cuda *l = (detloss_cuda *)calloc(1, sizeof *l);
    if (l) l->device = device;
    return l;
}

extern "C" void detloss_cuda_destroy(detloss_cuda *l) {
    if (!l) return;
    for (int i = 0; i < B_COUNT; i++)
        if (l->b[i].p) cudaFree(l->b[i].p); // teardown: an error here changes nothing
    free(l->h_lab);
    free(l->h_box);
    free(l->h_mask);
    free(l);
}

static int grid_for(size_t n) {
    size_t g = (n + DL_THREADS - 1) / DL_THREADS;
    return g < 1 ? 1 : g > 65535 ? 65535 : (int)g;
}

// One branch: steps 1 to 8 of detloss_dev.h; sums into l's B_SUMS row br.
static int run_branch(detloss_cuda *l, cudaStream_t st, dl_dev *d, int br, char *err,
                      size_t errlen) {
    const int A = d->A, M = d->M;
    const size_t BA = (size_t)d->B * A, BM = (size_t)d->B * M;
    const int topk = d->h.topk < A ? d->h.topk : A, topk2 = d->h.topk2 < A ? d->h.topk2 : A;
    double *part = (double *)l->b[B_PART].p, *sums = (double *)l->b[B_SUMS].p + br * DL_NSUM;
    float *tss = (float *)((double *)l->b[B_SUMS].p + 2 * DL_NSUM) + br;
    d->tss = tss;
    if (BM) CK(cudaMemsetAsync(d->tu, 0, BM * 2 * sizeof(uint32_t), st));
    k_decode<<<grid_for(BA), DL_THREADS, 0, st>>>(*d);
    CK_LAUNCH("decode");
    if (BM) {
        k_candidates<<<(unsigned)BM, DL_THREADS, 0, st>>>(*d, topk);
        CK_LAUNCH("candidates");
        if (M > 1) {
            k_conflicts<<<grid_for(BA), DL_THREADS, 0, st>>>(*d);
            CK_LAUNCH("conflicts");
        }
        if (topk2 != topk) {
            k_topk2<<<(unsigned)BM, DL_THREADS, 0, st>>>(*d, topk2);
            CK_LAUNCH("topk2");
        }
    }
    k_assign<<<grid_for(BA), DL_THREADS, 0, st>>>(*d);
    CK_LAUNCH("assign");
    k_scores<<<DL_RED_BLOCKS, DL_THREADS, 0, st>>>(*d, part);
    CK_LAUNCH("scores");
    k_reduce<<<1, DL_THREADS, 0, st>>>(part, 1u << 3, sums, tss);
    CK_LAUNCH("reduce scores");
    k_cls<<<DL_RED_BLOCKS, DL_THREADS, 0, st>>>(*d, part);
    CK_LAUNCH("cls");
    k_box<<<DL_RED_BLOCKS, DL_THREADS, 0, st>>>(*d, part);
    CK_LAUNCH("box");
    k_reduce<<<1, DL_THREADS, 0, st>>>(part, 1u << 0 | 1u << 1 | 1u << 2 | 1u << 4, sums, NULL);
    CK_LAUNCH("reduce loss");
    return 0;
}

static int check_hyp(const detloss_hyp *h, char *err, size_t errlen) {
    if (h->reg_max < 1 || h->reg_max > DETLOSS_MAX_REG_MAX || h->nc < 1)
        return fail(err, errlen, "detloss (CUDA): reg_max %d (1..%d), nc %d (>= 1)", h->reg_max,
                    DETLOSS_MAX_REG_MAX, h->nc);
    if (h->topk < 1 || h->topk > DL_DEV_MAX_TOPK || h->topk2 < 1 || h->topk2 > DL_DEV_MAX_TOPK)
        return fail(err, errlen, "detloss (CUDA): topk %d / topk2 %d: the GPU assigner takes 1..%d",
                    h->topk, h->topk2, DL_DEV_MAX_TOPK);
    return 0;
}

// The targets, padded per image to M and in pixels (the CPU's own preprocess), to the device.
static int upload_targets(detloss_cuda *l, cudaStream_t st, const backend_detloss_desc *d, int M,
                          char *err, size_t errlen) {
    size_t bm = (size_t)d->B * (M > 0 ? M : 1);
    if (bm > l->h_cap) {
        free(l->h_lab);
        free(l->h_box);
        free(l->h_mask);
        l->h_lab = (float *)malloc(bm * sizeof(float));
        l->h_box = (float *)malloc(bm * 4 * sizeof(float));
        l->h_mask = (float *)malloc(bm * sizeof(float));
        l->h_cap = l->h_lab && l->h_box && l->h_mask ? bm : 0;
        if (!l->h_cap) return fail(err, errlen, "detloss (CUDA): out of host memory");
    }
    detloss_preprocess_targets(d->ntargets, d->targets, d->B, M, d->img_h, d->img_w, l->h_lab,
                               l->h_box, l->h_mask);
    if (need(l, B_GT_LAB, bm * sizeof(float), err, errlen) ||
        need(l, B_GT_BOX, bm * 4 * sizeof(float), err, errlen) ||
        need(l, B_GT_MASK, bm * sizeof(float), err, errlen))
        return -1;
    size_t n = (size_t)d->B * M;
    if (n == 0) return 0;
    // pageable sources: staged at once, so the host buffers may be reused when these return
    CK(cudaMemcpyAsync(l->b[B_GT_LAB].p, l->h_lab, n * sizeof(float), cudaMemcpyHostToDevice, st));
    CK(cudaMemcpyAsync(l->b[B_GT_BOX].p, l->h_box, n * 4 * sizeof(float), cudaMemcpyHostToDevice,
                       st));
    CK(cudaMemcpyAsync(l->b[B_GT_MASK].p, l->h_mask, n * sizeof(float), cudaMemcpyHostToDevice,
                       st));
    return 0;
}

extern "C" int detloss_cuda_run(detloss_cuda *l, void *stream, const backend_detloss_desc *d,
                                const float *const preds[2], float *const dpreds[2], double *result,
                                char *err, size_t errlen) {
    cudaStream_t st = (cudaStream_t)stream;
    const int nbr = d->branches == 2 ? 2 : 1;
    for (int br = 0; br < nbr; br++)
        if (check_hyp(&d->h[br], err, errlen)) return -1;
    if (d->B < 1 || d->A < 1) return fail(err, errlen, "detloss (CUDA): empty batch");
    CK(cudaSetDevice(l->device));
    const int M = detloss_max_gt(d->ntargets, d->targets, d->B);
    const int nc = d->h[0].nc, no = 4 * d->h[0].reg_max + nc;
    const size_t BA = (size_t)d->B * d->A, BMA = BA * (size_t)M;
    if (upload_targets(l, st, d, M, err, errlen) ||
        need(l, B_PD_BOX, BA * 4 * sizeof(float), err, errlen) ||
        need(l, B_METRIC, BMA * sizeof(float), err, errlen) ||
        need(l, B_OVERLAP, BMA * sizeof(float), err, errlen) ||
        need(l, B_IN_GT, BMA, err, errlen) || need(l, B_POS, BMA, err, errlen) ||
        need(l, B_GT_OF, BA * sizeof(int), err, errlen) ||
        need(l, B_TSCORE, BA * sizeof(float), err, errlen) ||
        need(l, B_TU, (size_t)d->B * M * 2 * sizeof(uint32_t), err, errlen) ||
        need(l, B_PART, (size_t)DL_RED_BLOCKS * DL_NSUM * sizeof(double), err, errlen) ||
        need(l, B_SUMS, 2 * DL_NSUM * sizeof(double) + 2 * sizeof(float), err, errlen) ||
        need(l, B_CLS_W0, (size_t)nc * sizeof(float), err, errlen) ||
        need(l, B_CLS_W1, (size_t)nc * sizeof(float), err, errlen))
        return -1;
    CK(cudaMemsetAsync(l->b[B_SUMS].p, 0, 2 * DL_NSUM * sizeof(double), st));
    for (int br = 0; br < nbr; br++) {
        dl_dev dd;
        memset(&dd, 0, sizeof dd);
        dd.h = d->h[br];
        if (d->h[br].cls_weight) { // host memory in the desc: the device's copy
            float *cw = (float *)l->b[br ? B_CLS_W1 : B_CLS_W0].p;
            CK(cudaMemcpyAsync(cw, d->h[br].cls_weight, (size_t)nc * sizeof(float),
                               cudaMemcpyHostToDevice, st));
            dd.h.cls_weight = cw;
        }
        float w = nbr == 2 ? (br ? d->o2o : d->o2m) : 1.0f;
        dd.gw[0] = dd.gw[1] = dd.gw[2] = w;
        dd.grad_scale = d->grad_scale;
        dd.B = d->B;
        dd.A = d->A;
        dd.M = M;
        dd.no = no;
        dd.img_h = d->img_h;
        dd.img_w = d->img_w;
        dd.preds = preds[br];
        dd.anc = d->anchor_points;
        dd.str = d->strides;
        dd.gt_lab = (const float *)l->b[B_GT_LAB].p;
        dd.gt_box = (const float *)l->b[B_GT_BOX].p;
        dd.gt_mask = (const float *)l->b[B_GT_MASK].p;
        dd.dpreds = dpreds ? dpreds[br] : NULL;
        dd.pd_box = (float *)l->b[B_PD_BOX].p;
        dd.metric = (float *)l->b[B_METRIC].p;
        dd.overlap = (float *)l->b[B_OVERLAP].p;
        dd.in_gt = (uint8_t *)l->b[B_IN_GT].p;
        dd.pos = (uint8_t *)l->b[B_POS].p;
        dd.gt_of = (int *)l->b[B_GT_OF].p;
        dd.tscore = (float *)l->b[B_TSCORE].p;
        dd.tu = (uint32_t *)l->b[B_TU].p;
        if (run_branch(l, st, &dd, br, err, errlen)) return -1;
    }
    k_result<<<1, 1, 0, st>>>((const double *)l->b[B_SUMS].p, nbr, d->h[0], d->h[nbr - 1], d->o2m,
                              d->o2o, d->B, result);
    CK_LAUNCH("result");
    return 0;
}
