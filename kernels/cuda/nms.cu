// Validation NMS and yolo26's top-k on the GPU: the CUDA backend's `nms` op (backend_nms,
// kernels/backend.h). The algorithm and every per-element and per-pair function are in
// kernels/cuda/nms_hd.h (checked on the CPU against kernels/nms.c by tests/test_nms_hd.c); the
// sorts are CUB's segmented radix sort over unique 64-bit keys, so their order is the CPU's.
//
// NMS (nms_detect): count the candidates per anchor, scan, write their keys, sort per image, then
// one block per image gathers the best max_nms offset boxes and runs the greedy sweep, its lanes
// suppressing in parallel. One small copy to the host per call: the candidate total, to size the
// key buffers. Top-k (topk_detect): anchor keys sorted per image, then the K x nc pair keys of the
// K best anchors sorted per image, then one thread per image collects. Only counts[] and the kept
// detections are written.
#include "kernels/cuda/ops.cuh" // first: it declares the C headers as extern "C"

#include "kernels/cuda/nms_hd.h"

#include <climits>
#include <cstdlib>
#include <cub/device/device_scan.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

// ---- scratch: device buffers kept in the backend, grown on demand ----------------------------

enum {
    N_COUNT,     // [B*A + 1] candidates per anchor
    N_OFFS,      // [B*A + 1] their exclusive scan: each anchor's first slot; [B*A] the total
    N_SEG,       // [B + 1] segment offsets of the first sort
    N_SEG2,      // [B + 1] of the second (top-k pairs)
    N_KEYS,      // keys before the first sort
    N_SORTED,    // after it
    N_PAIRS,     // top-k pair keys before the second sort
    N_PAIRS_OUT, // after it
    N_BOXES,     // [B][ncap][5] offset boxes of the sweep
    N_SUP,       // [B][ncap] suppressed flags
    N_SCAN_TMP,  // CUB's temporary storage
    N_SORT_TMP,
    N_BUFS
};

struct nms_scratch {
    cuda_buf b[N_BUFS];
};

// Device buffer i of at least bytes (grows; the old contents are not kept).
static void *need(cuda_ctx *c, int i, size_t bytes) {
    return cuda_buf_need(c, &c->nms->b[i], bytes);
}

void cuda_release_nms(cuda_ctx *c) {
    if (!c->nms) return;
    for (int i = 0; i < N_BUFS; i++) cuda_buf_free(c, &c->nms->b[i]);
    free(c->nms);
    c->nms = NULL;
}

// ---- kernels (bodies in nms_hd.h) --------------------------------------------------------------

__global__ void k_count(const float *pred, size_t rows, int nc, float ct, int multi, int *count) {
    GRID_STRIDE(i, rows + 1)
    count[i] = i < rows ? nms_row_count(pred + i * (size_t)(4 + nc) + 4, nc, ct, multi) : 0;
}

__global__ void k_keys(const float *pred, size_t rows, int A, int nc, float ct, int multi,
                       const int *offs, uint64_t *keys) {
    GRID_STRIDE(i, rows)
    nms_row_keys(pred + i * (size_t)(4 + nc) + 4, nc, ct, multi, (int)(i % (size_t)A),
                 keys + offs[i]);
}

// Segment b of image b: [offs[b*A], offs[(b+1)*A]).
__global__ void k_segments(const int *offs, int B, int A, int *seg) {
    GRID_STRIDE(b, (size_t)B + 1) seg[b] = offs[b * (size_t)A];
}

__global__ void k_uniform_segments(int B, int len, int *seg) {
    GRID_STRIDE(b, (size_t)B + 1) seg[b] = (int)b * len;
}

// One block per image: gather the best max_nms offset boxes, then the greedy sweep.
__global__ void k_sweep(const float *pred, int A, int nc, nms_cfg cfg, int ncap, const int *seg,
                        const uint64_t *sorted, float *boxes, uint8_t *sup, detection *dets,
                        int32_t *counts) {
    __shared__ int cur, kept;
    const int b = blockIdx.x, t = threadIdx.x;
    const float *p = pred + (size_t)b * A * (size_t)(4 + nc);
    const uint64_t *keys = sorted + seg[b];
    const int n = nms_cap(seg[b + 1] - seg[b], cfg.max_nms); // <= ncap
    float *ob = boxes + (size_t)b * ncap * 5;
    uint8_t *s = sup + (size_t)b * ncap;
    for (int k = t; k < n; k += blockDim.x) {
        nms_sorted_box(p, nc, &cfg, keys[k], ob + (size_t)k * 5);
        s[k] = 0;
    }
    __syncthreads();
    if (t == 0) {
        cur = nms_next_alive(s, 0, n);
        kept = 0;
    }
    __syncthreads();
    for (;;) {
        const int i = cur; // every thread reads cur and kept before the first barrier
        if (i >= n || kept >= cfg.max_det) break;
        if (t == 0)
            dets[(size_t)b * cfg.max_det + kept] = nms_candidate(p, nc, nms_key_index(keys[i]));
        nms_sweep_lane(ob, n, i, t, blockDim.x, cfg.iou_thres, s);
        __syncthreads(); // the sweep's flags are visible to thread 0
        if (t == 0) {
            kept++;
            cur = nms_next_alive(s, i + 1, n);
        }
        __syncthreads();
    }
    if (t == 0) counts[b] = kept;
}

__global__ void k_anchor_keys(const float *pred, size_t rows, int A, int nc, uint64_t *keys) {
    GRID_STRIDE(i, rows)
    keys[i] = topk_anchor_key(pred + i * (size_t)(4 + nc), nc, (int)(i % (size_t)A));
}

// Pair (k, c) of image b's K best anchors.
__global__ void k_pair_keys(const float *pred, int B, int A, int nc, int K,
                            const uint64_t *anchor_keys, uint64_t *pair_keys) {
    const size_t per = (size_t)K * nc;
    GRID_STRIDE(i, (size_t)B * per) {
        size_t b = i / per, r = i % per;
        pair_keys[i] = topk_pair_key(pred + b * A * (size_t)(4 + nc), nc, anchor_keys + b * A,
                                     (int)(r / nc), (int)(r % nc));
    }
}

__global__ void k_topk_collect(const float *pred, int B, int A, int nc, nms_cfg cfg, int K,
                               const uint64_t *anchor_keys, const uint64_t *pair_keys,
                               detection *dets, int32_t *counts) {
    GRID_STRIDE(b, (size_t)B)
    counts[b] = topk_collect(pred + b * A * (size_t)(4 + nc), nc, &cfg, K, anchor_keys + b * A,
                             pair_keys ? pair_keys + b * (size_t)K * nc : NULL,
                             dets + b * (size_t)cfg.max_det);
}

// ---- the op --------------------------------------------------------------------------------

// Keys of nseg segments (offsets seg[0..nseg]) sorted ascending, each segment on its own.
static void sort_segments(cuda_ctx *c, const uint64_t *in, uint64_t *out, int n, int nseg,
                          const int *seg) {
    size_t tmp = 0;
    CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortKeys(nullptr, tmp, in, out, n, nseg, seg, seg + 1,
                                                       0, 64, c->stream));
    void *t = need(c, N_SORT_TMP, tmp);
    CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortKeys(t, tmp, in, out, n, nseg, seg, seg + 1, 0,
                                                       64, c->stream));
}

static void nms_on_device(cuda_ctx *c, const backend_nms_desc *d, const float *pred,
                          detection *dets, int32_t *counts) {
    const int B = d->images, A = d->anchors, nc = d->nc;
    const int multi = d->cfg.multi_label && nc > 1;
    const size_t rows = (size_t)B * A;
    int *count = (int *)need(c, N_COUNT, (rows + 1) * sizeof(int));
    int *offs = (int *)need(c, N_OFFS, (rows + 1) * sizeof(int));
    int *seg = (int *)need(c, N_SEG, ((size_t)B + 1) * sizeof(int));
    k_count<<<cuda_blocks(c, rows + 1), CUDA_BLOCK, 0, c->stream>>>(
        pred, rows, nc, d->cfg.conf_thres, multi, count);
    CUDA_LAUNCHED("k_count");
    size_t tmp = 0;
    CUDA_CHECK(
        cub::DeviceScan::ExclusiveSum(nullptr, tmp, count, offs, (int)(rows + 1), c->stream));
    void *t = need(c, N_SCAN_TMP, tmp);
    CUDA_CHECK(cub::DeviceScan::ExclusiveSum(t, tmp, count, offs, (int)(rows + 1), c->stream));
    k_segments<<<cuda_blocks(c, (size_t)B + 1), CUDA_BLOCK, 0, c->stream>>>(offs, B, A, seg);
    CUDA_LAUNCHED("k_segments");
    int total = 0; // the one copy to the host: how many keys to sort
    CUDA_CHECK(
        cudaMemcpyAsync(&total, offs + rows, sizeof total, cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    if (total == 0) {
        CUDA_CHECK(cudaMemsetAsync(counts, 0, (size_t)B * sizeof *counts, c->stream));
        return;
    }
    uint64_t *keys = (uint64_t *)need(c, N_KEYS, (size_t)total * sizeof(uint64_t));
    uint64_t *sorted = (uint64_t *)need(c, N_SORTED, (size_t)total * sizeof(uint64_t));
    k_keys<<<cuda_blocks(c, rows), CUDA_BLOCK, 0, c->stream>>>(pred, rows, A, nc, d->cfg.conf_thres,
                                                               multi, offs, keys);
    CUDA_LAUNCHED("k_keys");
    sort_segments(c, keys, sorted, total, B, seg);
    int ncap = nms_cap(total, d->cfg.max_nms); // at least every image's sweep length
    if (ncap < 1) ncap = 1;
    float *boxes = (float *)need(c, N_BOXES, (size_t)B * ncap * 5 * sizeof(float));
    uint8_t *sup = (uint8_t *)need(c, N_SUP, (size_t)B * ncap);
    k_sweep<<<B, NMS_SWEEP_LANES, 0, c->stream>>>(pred, A, nc, d->cfg, ncap, seg, sorted, boxes,
                                                  sup, dets, counts);
    CUDA_LAUNCHED("k_sweep");
}

static void topk_on_device(cuda_ctx *c, const backend_nms_desc *d, const float *pred,
                           detection *dets, int32_t *counts) {
    const int B = d->images, A = d->anchors, nc = d->nc;
    const int K = d->cfg.max_det < A ? d->cfg.max_det : A;
    if (K <= 0) {
        CUDA_CHECK(cudaMemsetAsync(counts, 0, (size_t)B * sizeof *counts, c->stream));
        return;
    }
    const size_t rows = (size_t)B * A;
    uint64_t *akeys = (uint64_t *)need(c, N_KEYS, rows * sizeof(uint64_t));
    uint64_t *asorted = (uint64_t *)need(c, N_SORTED, rows * sizeof(uint64_t));
    int *seg = (int *)need(c, N_SEG, ((size_t)B + 1) * sizeof(int));
    k_uniform_segments<<<cuda_blocks(c, (size_t)B + 1), CUDA_BLOCK, 0, c->stream>>>(B, A, seg);
    CUDA_LAUNCHED("k_uniform_segments");
    k_anchor_keys<<<cuda_blocks(c, rows), CUDA_BLOCK, 0, c->stream>>>(pred, rows, A, nc, akeys);
    CUDA_LAUNCHED("k_anchor_keys");
    sort_segments(c, akeys, asorted, (int)rows, B, seg);
    uint64_t *psorted = NULL;
    if (!d->cfg.agnostic) {
        const size_t np = (size_t)B * K * nc;
        uint64_t *pkeys = (uint64_t *)need(c, N_PAIRS, np * sizeof(uint64_t));
        psorted = (uint64_t *)need(c, N_PAIRS_OUT, np * sizeof(uint64_t));
        int *seg2 = (int *)need(c, N_SEG2, ((size_t)B + 1) * sizeof(int));
        k_uniform_segments<<<cuda_blocks(c, (size_t)B + 1), CUDA_BLOCK, 0, c->stream>>>(B, K * nc,
                                                                                        seg2);
        CUDA_LAUNCHED("k_uniform_segments");
        k_pair_keys<<<cuda_blocks(c, np), CUDA_BLOCK, 0, c->stream>>>(pred, B, A, nc, K, asorted,
                                                                      pkeys);
        CUDA_LAUNCHED("k_pair_keys");
        sort_segments(c, pkeys, psorted, (int)np, B, seg2);
    }
    k_topk_collect<<<cuda_blocks(c, (size_t)B, 64), 64, 0, c->stream>>>(
        pred, B, A, nc, d->cfg, K, asorted, psorted, dets, counts);
    CUDA_LAUNCHED("k_topk_collect");
}

static void cu_nms(backend *be, const backend_nms_desc *d, const float *pred, detection *dets,
                   int32_t *counts) {
    cuda_ctx *c = cuda_enter(be, "nms");
    const size_t per_image = (size_t)d->anchors * (size_t)(d->nc > 0 ? d->nc : 0);
    if (d->images < 0 || d->anchors < 1 || d->nc < 1 || per_image > UINT32_MAX ||
        (size_t)d->images * per_image >= INT_MAX)
        FATAL("nms on %s: %d images x %d anchors x %d classes (at most %d scores in all)", c->name,
              d->images, d->anchors, d->nc, INT_MAX - 1);
    if (!c->nms) c->nms = (nms_scratch *)xcalloc(1, sizeof *c->nms);
    if (d->images > 0) {
        if (d->one2one)
            topk_on_device(c, d, pred, dets, counts);
        else
            nms_on_device(c, d, pred, dets, counts);
    }
    cuda_leave(c);
}

void cuda_fill_nms(backend_i *f) {
    f->nms = cu_nms;
}
