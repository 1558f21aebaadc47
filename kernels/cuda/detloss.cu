// The detection loss on the GPU: the CUDA backend's `detloss` op (backend_detloss,
// kernels/backend.h). The algorithm and the per-index bodies are in kernels/cuda/detloss_hd.h
// (checked on the CPU by tests/test_detloss_hd.c); the CPU reference is kernels/detloss.c.
//
// Per call the targets are padded and converted on the host (detloss_preprocess_targets, tiny)
// and copied up; everything else (decode, assigner, loss, gradient, the sums) runs on the stream
// and the results are added to the caller's device buffer of doubles: nothing comes back, the op
// returns as soon as the work is enqueued. The sums are reduced in a fixed order, so the same
// inputs give the same bits on the same GPU.
#include "kernels/cuda/ops.cuh" // first: it declares the C headers (detloss.h) as extern "C"

#include "kernels/cuda/detloss_hd.h"

#include <stdlib.h>
#include <string.h>

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

// ---- the kernels (one per step of detloss_hd.h) --------------------------------------------

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
        atomicMax(&tu[0], hd_float_bits(d.metric[q])); // non-negative: bits order = value order
        atomicMax(&tu[1], hd_float_bits(d.overlap[q]));
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

// The loss's scratch in the backend's context (grows with B, A and M, kept between calls).
struct detloss_scratch {
    cuda_buf b[B_COUNT];
    float *h_lab, *h_box, *h_mask; // host staging of the preprocessed targets
    size_t h_cap;
};

// Device buffer i of at least bytes (grows; the old contents are not kept).
static void *need(cuda_ctx *c, int i, size_t bytes) {
    return cuda_buf_need(c, &c->loss->b[i], bytes);
}

void cuda_release_detloss(cuda_ctx *c) {
    if (!c->loss) return;
    for (int i = 0; i < B_COUNT; i++) cuda_buf_free(c, &c->loss->b[i]);
    free(c->loss->h_lab);
    free(c->loss->h_box);
    free(c->loss->h_mask);
    free(c->loss);
    c->loss = NULL;
}

static int grid_for(size_t n) {
    size_t g = (n + DL_THREADS - 1) / DL_THREADS;
    return g < 1 ? 1 : g > 65535 ? 65535 : (int)g;
}

// One branch: steps 1 to 8 of detloss_hd.h; its sums into row br of B_SUMS.
static void run_branch(cuda_ctx *c, dl_dev *d, int br) {
    cudaStream_t st = c->stream;
    const int A = d->A, M = d->M;
    const size_t BA = (size_t)d->B * A, BM = (size_t)d->B * M;
    const int topk = d->h.topk < A ? d->h.topk : A, topk2 = d->h.topk2 < A ? d->h.topk2 : A;
    double *part = (double *)c->loss->b[B_PART].p;
    double *sums = (double *)c->loss->b[B_SUMS].p + br * DL_NSUM;
    float *tss = (float *)((double *)c->loss->b[B_SUMS].p + 2 * DL_NSUM) + br;
    d->tss = tss;
    if (BM) CUDA_CHECK(cudaMemsetAsync(d->tu, 0, BM * 2 * sizeof(uint32_t), st));
    k_decode<<<grid_for(BA), DL_THREADS, 0, st>>>(*d);
    CUDA_LAUNCHED("k_decode");
    if (BM) {
        k_candidates<<<(unsigned)BM, DL_THREADS, 0, st>>>(*d, topk);
        CUDA_LAUNCHED("k_candidates");
        if (M > 1) {
            k_conflicts<<<grid_for(BA), DL_THREADS, 0, st>>>(*d);
            CUDA_LAUNCHED("k_conflicts");
        }
        if (topk2 != topk) {
            k_topk2<<<(unsigned)BM, DL_THREADS, 0, st>>>(*d, topk2);
            CUDA_LAUNCHED("k_topk2");
        }
    }
    k_assign<<<grid_for(BA), DL_THREADS, 0, st>>>(*d);
    CUDA_LAUNCHED("k_assign");
    k_scores<<<DL_RED_BLOCKS, DL_THREADS, 0, st>>>(*d, part);
    CUDA_LAUNCHED("k_scores");
    k_reduce<<<1, DL_THREADS, 0, st>>>(part, 1u << 3, sums, tss);
    CUDA_LAUNCHED("k_reduce (scores)");
    k_cls<<<DL_RED_BLOCKS, DL_THREADS, 0, st>>>(*d, part);
    CUDA_LAUNCHED("k_cls");
    k_box<<<DL_RED_BLOCKS, DL_THREADS, 0, st>>>(*d, part);
    CUDA_LAUNCHED("k_box");
    k_reduce<<<1, DL_THREADS, 0, st>>>(part, 1u << 0 | 1u << 1 | 1u << 2 | 1u << 4, sums, NULL);
    CUDA_LAUNCHED("k_reduce (loss)");
}

static void check_hyp(const cuda_ctx *c, const detloss_hyp *h) {
    if (h->reg_max < 1 || h->reg_max > DETLOSS_MAX_REG_MAX || h->nc < 1)
        FATAL("detloss on %s: reg_max %d (1..%d), nc %d (>= 1)", c->name, h->reg_max,
              DETLOSS_MAX_REG_MAX, h->nc);
    if (h->topk < 1 || h->topk > DL_DEV_MAX_TOPK || h->topk2 < 1 || h->topk2 > DL_DEV_MAX_TOPK)
        FATAL("detloss on %s: topk %d / topk2 %d: the GPU assigner takes 1..%d", c->name, h->topk,
              h->topk2, DL_DEV_MAX_TOPK);
}

// The targets, padded per image to M and in pixels (the CPU's own preprocess), to the device.
static void upload_targets(cuda_ctx *c, const backend_detloss_desc *d, int M) {
    detloss_scratch *l = c->loss;
    size_t bm = (size_t)d->B * (M > 0 ? M : 1), n = (size_t)d->B * M;
    if (bm > l->h_cap) {
        l->h_lab = (float *)xrealloc(l->h_lab, bm * sizeof(float));
        l->h_box = (float *)xrealloc(l->h_box, bm * 4 * sizeof(float));
        l->h_mask = (float *)xrealloc(l->h_mask, bm * sizeof(float));
        l->h_cap = bm;
    }
    detloss_preprocess_targets(d->ntargets, d->targets, d->B, M, d->img_h, d->img_w, l->h_lab,
                               l->h_box, l->h_mask);
    void *lab = need(c, B_GT_LAB, bm * sizeof(float)), *box = need(c, B_GT_BOX, bm * 16),
         *mask = need(c, B_GT_MASK, bm * sizeof(float));
    if (n == 0) return;
    // pageable sources: staged before these return, so the host buffers may be reused
    CUDA_CHECK(
        cudaMemcpyAsync(lab, l->h_lab, n * sizeof(float), cudaMemcpyHostToDevice, c->stream));
    CUDA_CHECK(
        cudaMemcpyAsync(box, l->h_box, n * 4 * sizeof(float), cudaMemcpyHostToDevice, c->stream));
    CUDA_CHECK(
        cudaMemcpyAsync(mask, l->h_mask, n * sizeof(float), cudaMemcpyHostToDevice, c->stream));
}

static void cu_detloss(backend *be, const backend_detloss_desc *d, const float *const preds[2],
                       float *const dpreds[2], double *result) {
    cuda_ctx *c = cuda_enter(be, "detloss");
    const int nbr = d->branches == 2 ? 2 : 1;
    for (int br = 0; br < nbr; br++) check_hyp(c, &d->h[br]);
    if (d->B < 1 || d->A < 1) FATAL("detloss on %s: batch %d, anchors %d", c->name, d->B, d->A);
    if (!c->loss) c->loss = (detloss_scratch *)xcalloc(1, sizeof *c->loss);
    const int M = detloss_max_gt(d->ntargets, d->targets, d->B);
    const int nc = d->h[0].nc, no = 4 * d->h[0].reg_max + nc;
    const size_t BA = (size_t)d->B * d->A, BMA = BA * (size_t)M;
    upload_targets(c, d, M);
    dl_dev dd;
    memset(&dd, 0, sizeof dd);
    dd.pd_box = (float *)need(c, B_PD_BOX, BA * 4 * sizeof(float));
    dd.metric = (float *)need(c, B_METRIC, BMA * sizeof(float));
    dd.overlap = (float *)need(c, B_OVERLAP, BMA * sizeof(float));
    dd.in_gt = (uint8_t *)need(c, B_IN_GT, BMA);
    dd.pos = (uint8_t *)need(c, B_POS, BMA);
    dd.gt_of = (int *)need(c, B_GT_OF, BA * sizeof(int));
    dd.tscore = (float *)need(c, B_TSCORE, BA * sizeof(float));
    dd.tu = (uint32_t *)need(c, B_TU, (size_t)d->B * M * 2 * sizeof(uint32_t));
    need(c, B_PART, (size_t)DL_RED_BLOCKS * DL_NSUM * sizeof(double));
    void *sums = need(c, B_SUMS, 2 * DL_NSUM * sizeof(double) + 2 * sizeof(float));
    CUDA_CHECK(cudaMemsetAsync(sums, 0, 2 * DL_NSUM * sizeof(double), c->stream));
    dd.gt_lab = (const float *)c->loss->b[B_GT_LAB].p;
    dd.gt_box = (const float *)c->loss->b[B_GT_BOX].p;
    dd.gt_mask = (const float *)c->loss->b[B_GT_MASK].p;
    dd.B = d->B;
    dd.A = d->A;
    dd.M = M;
    dd.no = no;
    dd.img_h = d->img_h;
    dd.img_w = d->img_w;
    dd.anc = d->anchor_points;
    dd.str = d->strides;
    dd.grad_scale = d->grad_scale;
    for (int br = 0; br < nbr; br++) {
        dd.h = d->h[br];
        if (d->h[br].cls_weight) { // host memory in the desc: the device's copy
            float *cw = (float *)need(c, br ? B_CLS_W1 : B_CLS_W0, (size_t)nc * sizeof(float));
            CUDA_CHECK(cudaMemcpyAsync(cw, d->h[br].cls_weight, (size_t)nc * sizeof(float),
                                       cudaMemcpyHostToDevice, c->stream));
            dd.h.cls_weight = cw;
        }
        float w = nbr == 2 ? (br ? d->o2o : d->o2m) : 1.0f;
        dd.gw[0] = dd.gw[1] = dd.gw[2] = w;
        dd.preds = preds[br];
        dd.dpreds = dpreds ? dpreds[br] : NULL;
        run_branch(c, &dd, br);
    }
    k_result<<<1, 1, 0, c->stream>>>((const double *)sums, nbr, d->h[0], d->h[nbr - 1], d->o2m,
                                     d->o2o, d->B, result);
    CUDA_LAUNCHED("k_result");
    cuda_leave(c);
}

void cuda_fill_detloss(backend_i *f) {
    f->detloss = cu_detloss;
}
