/* The GPU's validation NMS and top-k (kernels/cuda/nms.cu) run on the host: the device functions
 * of kernels/cuda/nms_hd.h called in the kernels' order (per anchor, the scan, per sorted slot,
 * the sweep's lanes of one block per image) and compared with kernels/nms.c, the CPU that
 * validation used until now: the kept detections must be the same, bit for bit (suite `cuda_hd`).
 * The sort is CUB's radix sort on the GPU and qsort here: the keys are unique, so both give the
 * one ascending order, and the test checks that they are unique. */
#include "common/rng.h"
#include "kernels/cuda/nms_hd.h"
#include "kernels/nms.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_u64(const void *pa, const void *pb) {
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    return (a > b) - (a < b);
}

/* CUB's segmented sort, as the host does it; checks the keys of each segment are unique. */
static void sort_segments(uint64_t *keys, int nseg, const int *seg) {
    for (int s = 0; s < nseg; s++) {
        qsort(keys + seg[s], (size_t)(seg[s + 1] - seg[s]), sizeof *keys, cmp_u64);
        for (int k = seg[s] + 1; k < seg[s + 1]; k++)
            cr_assert(keys[k - 1] < keys[k], "segment %d: keys %d and %d equal", s, k - 1, k);
    }
}

/* nms_on_device and its kernels, in order. */
static void device_nms(const float *pred, int B, int A, int nc, const nms_cfg *cfg, detection *dets,
                       int32_t *counts) {
    const int multi = cfg->multi_label && nc > 1, no = 4 + nc;
    const size_t rows = (size_t)B * A;
    int *count = malloc((rows + 1) * sizeof *count), *offs = malloc((rows + 1) * sizeof *offs);
    for (size_t i = 0; i <= rows; i++) /* k_count */
        count[i] = i < rows ? nms_row_count(pred + i * no + 4, nc, cfg->conf_thres, multi) : 0;
    offs[0] = 0; /* CUB's exclusive scan */
    for (size_t i = 1; i <= rows; i++) offs[i] = offs[i - 1] + count[i - 1];
    int *seg = malloc(((size_t)B + 1) * sizeof *seg);
    for (int b = 0; b <= B; b++) seg[b] = offs[(size_t)b * A]; /* k_segments */
    const int total = offs[rows];
    uint64_t *keys = malloc(((size_t)total + 1) * sizeof *keys);
    for (size_t i = 0; i < rows; i++) { /* k_keys */
        int w = nms_row_keys(pred + i * no + 4, nc, cfg->conf_thres, multi, (int)(i % A),
                             keys + offs[i]);
        cr_assert_eq(w, count[i], "anchor %zu wrote %d keys, counted %d", i, w, count[i]);
    }
    sort_segments(keys, B, seg);
    int ncap = nms_cap(total, cfg->max_nms);
    if (ncap < 1) ncap = 1;
    float *ob = malloc((size_t)ncap * 5 * sizeof *ob);
    uint8_t *sup = malloc((size_t)ncap);
    memset(sup, 1, (size_t)ncap); /* what the buffer held before: the kernel clears its part */
    for (int b = 0; b < B; b++) { /* k_sweep: block b */
        const float *p = pred + (size_t)b * A * no;
        const uint64_t *k = keys + seg[b];
        const int n = nms_cap(seg[b + 1] - seg[b], cfg->max_nms);
        cr_assert_leq(n, ncap);
        for (int t = 0; t < NMS_SWEEP_LANES; t++)
            for (int q = t; q < n; q += NMS_SWEEP_LANES) {
                nms_sorted_box(p, nc, cfg, k[q], ob + (size_t)q * 5);
                sup[q] = 0;
            }
        int cur = nms_next_alive(sup, 0, n), kept = 0;
        for (;;) {
            const int i = cur;
            if (i >= n || kept >= cfg->max_det) break;
            dets[(size_t)b * cfg->max_det + kept] = nms_candidate(p, nc, nms_key_index(k[i]));
            for (int t = 0; t < NMS_SWEEP_LANES; t++)
                nms_sweep_lane(ob, n, i, t, NMS_SWEEP_LANES, cfg->iou_thres, sup);
            kept++;
            cur = nms_next_alive(sup, i + 1, n);
        }
        counts[b] = kept;
    }
    free(sup);
    free(ob);
    free(keys);
    free(seg);
    free(offs);
    free(count);
}

/* topk_on_device and its kernels, in order. */
static void device_topk(const float *pred, int B, int A, int nc, const nms_cfg *cfg,
                        detection *dets, int32_t *counts) {
    const int K = cfg->max_det < A ? cfg->max_det : A, no = 4 + nc;
    if (K <= 0) {
        for (int b = 0; b < B; b++) counts[b] = 0;
        return;
    }
    const size_t rows = (size_t)B * A, np = (size_t)B * K * nc;
    uint64_t *ak = malloc(rows * sizeof *ak), *pk = malloc(np * sizeof *pk);
    int *seg = malloc(((size_t)B + 1) * sizeof *seg),
        *seg2 = malloc(((size_t)B + 1) * sizeof *seg2);
    for (int b = 0; b <= B; b++) seg[b] = b * A, seg2[b] = b * K * nc; /* k_uniform_segments */
    for (size_t i = 0; i < rows; i++) ak[i] = topk_anchor_key(pred + i * no, nc, (int)(i % A));
    sort_segments(ak, B, seg);
    if (!cfg->agnostic) {
        for (size_t i = 0; i < np; i++) { /* k_pair_keys */
            size_t b = i / ((size_t)K * nc), r = i % ((size_t)K * nc);
            pk[i] = topk_pair_key(pred + b * A * no, nc, ak + b * A, (int)(r / nc), (int)(r % nc));
        }
        sort_segments(pk, B, seg2);
    }
    for (int b = 0; b < B; b++) /* k_topk_collect */
        counts[b] = topk_collect(pred + (size_t)b * A * no, nc, cfg, K, ak + (size_t)b * A,
                                 cfg->agnostic ? NULL : pk + (size_t)b * K * nc,
                                 dets + (size_t)b * cfg->max_det);
    free(seg2);
    free(seg);
    free(pk);
    free(ak);
}

typedef struct scene {
    int B, A, nc;
    int score_levels; /* > 0: scores k / levels (ties); 0: continuous */
    int box_kinds;    /* > 0: boxes drawn from this many (identical boxes); 0: all random */
    float score_max;  /* scores in [0, score_max) */
    float extent;     /* box centres in [0, extent) pixels, sides up to extent / 3 */
} scene;

static float *make_pred(const scene *s, uint64_t seed) {
    const int no = 4 + s->nc;
    float *pred = malloc((size_t)s->B * s->A * no * sizeof *pred), proto[16][4];
    rng r = rng_keyed(seed, (uint64_t)s->A, (uint64_t)s->nc);
    for (int k = 0; k < 16; k++) {
        proto[k][0] = (float)rng_range(&r, 0, s->extent);
        proto[k][1] = (float)rng_range(&r, 0, s->extent);
        proto[k][2] = (float)rng_range(&r, 2, s->extent / 3);
        proto[k][3] = (float)rng_range(&r, 2, s->extent / 3);
    }
    for (size_t i = 0; i < (size_t)s->B * s->A; i++) {
        float *q = pred + i * no;
        if (s->box_kinds > 0) {
            memcpy(q, proto[rng_int(&r, s->box_kinds)], 4 * sizeof *q);
        } else {
            q[0] = (float)rng_range(&r, 0, s->extent), q[1] = (float)rng_range(&r, 0, s->extent);
            q[2] = (float)rng_range(&r, 2, s->extent / 3),
            q[3] = (float)rng_range(&r, 2, s->extent / 3);
        }
        for (int c = 0; c < s->nc; c++) {
            double u = rng_uniform(&r);
            q[4 + c] = s->score_levels > 0 ? (float)rng_int(&r, s->score_levels) /
                                                 (float)s->score_levels * s->score_max
                                           : (float)(u * s->score_max);
        }
    }
    return pred;
}

/* One scene through the device emulation and through kernels/nms.c, image by image. Returns the
 * detections kept in all (so callers can check the scene was not trivial). */
static int check_scene(const scene *s, const nms_cfg *cfg, int one2one, uint64_t seed) {
    float *pred = make_pred(s, seed);
    const int md = cfg->max_det > 0 ? cfg->max_det : 1, no = 4 + s->nc;
    detection *dev = calloc((size_t)s->B * md, sizeof *dev), *cpu = calloc((size_t)md, sizeof *cpu);
    int32_t *cnt = calloc((size_t)s->B, sizeof *cnt);
    (one2one ? device_topk : device_nms)(pred, s->B, s->A, s->nc, cfg, dev, cnt);
    int all = 0;
    for (int b = 0; b < s->B; b++) {
        const float *p = pred + (size_t)b * s->A * no;
        int n =
            one2one ? topk_detect(p, s->A, s->nc, cfg, cpu) : nms_detect(p, s->A, s->nc, cfg, cpu);
        cr_assert_eq(cnt[b], n, "seed %llu image %d: device keeps %d, CPU %d",
                     (unsigned long long)seed, b, cnt[b], n);
        for (int k = 0; k < n; k++) {
            const detection *x = dev + (size_t)b * cfg->max_det + k, *y = cpu + k;
            cr_assert(!memcmp(x, y, sizeof *x),
                      "seed %llu image %d det %d: device (%.9g %.9g %.9g %.9g %.9g c%d), CPU (%.9g "
                      "%.9g %.9g %.9g %.9g c%d)",
                      (unsigned long long)seed, b, k, x->x1, x->y1, x->x2, x->y2, x->conf, x->cls,
                      y->x1, y->y1, y->x2, y->y2, y->conf, y->cls);
        }
        all += n;
    }
    free(cnt);
    free(cpu);
    free(dev);
    free(pred);
    return all;
}

static nms_cfg cfg_with(float conf, int max_det, int max_nms, int multi, int agnostic) {
    nms_cfg c = nms_val_defaults();
    c.conf_thres = conf;
    c.max_det = max_det;
    c.max_nms = max_nms;
    c.multi_label = multi;
    c.agnostic = agnostic;
    return c;
}

Test(cuda_hd, score_key_orders_as_the_cpu) {
    const float v[] = {0.0f,  -0.0f, 1e-45f, -1e-45f,  0.001f,    0.5f,   0.5000001f, 1.0f,
                       -1.0f, 3e38f, -3e38f, INFINITY, -INFINITY, 1e-38f, 0.25f};
    const int n = sizeof v / sizeof *v;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            uint32_t a = nms_score_desc_bits(v[i]), b = nms_score_desc_bits(v[j]);
            cr_assert_eq(v[i] > v[j], a < b, "%g > %g: key %08x vs %08x", v[i], v[j], a, b);
            cr_assert_eq(v[i] == v[j], a == b, "%g == %g: key %08x vs %08x", v[i], v[j], a, b);
        }
    cr_assert(nms_key(0.5f, 7) < nms_key(0.5f, 8), "equal scores: lower index first");
    cr_assert(nms_key(0.6f, 9) < nms_key(0.5f, 1), "higher score first");
    cr_assert_eq(nms_key_index(nms_key(0.3f, 0xfffffffeu)), 0xfffffffeu);
}

typedef struct hd_case {
    scene s;
    float conf;
    int max_det, max_nms, multi, agnostic;
    float max_wh;  /* 0: the default 7680 */
    int want_some; /* 1: must keep detections; 0: must keep none; -1: either */
} hd_case;

static void run_cases(const hd_case *cs, int n, int one2one) {
    for (int i = 0; i < n; i++) {
        nms_cfg cfg =
            cfg_with(cs[i].conf, cs[i].max_det, cs[i].max_nms, cs[i].multi, cs[i].agnostic);
        if (cs[i].max_wh > 0) cfg.max_wh = cs[i].max_wh;
        int kept = check_scene(&cs[i].s, &cfg, one2one, 100 + (uint64_t)i);
        if (cs[i].want_some == 1) cr_assert_gt(kept, 0, "case %d keeps nothing", i);
        if (cs[i].want_some == 0) cr_assert_eq(kept, 0, "case %d keeps %d", i, kept);
    }
}

/* scene: B A nc score_levels box_kinds score_max extent */
Test(cuda_hd, nms_matches_cpu_bitwise, .timeout = 120) {
    const hd_case cs[] = {
        {{3, 400, 1, 0, 0, 1, 640}, 0.001f, 300, 30000, 1, 0, 0, 1},      /* nc 1, crowded */
        {{2, 300, 3, 0, 0, 1, 200}, 0.25f, 300, 30000, 1, 0, 0, 1},       /* multi-label */
        {{2, 200, 80, 0, 0, 0.05f, 320}, 0.001f, 300, 30000, 1, 0, 0, 1}, /* 80 classes */
        {{2, 300, 3, 8, 4, 1, 200}, 0.001f, 300, 30000, 1, 0, 0, 1},      /* tied scores, 4 boxes */
        {{2, 300, 4, 5, 1, 1, 100}, 0.001f, 300, 30000, 1, 0, 0, 1},      /* every box identical */
        {{2, 300, 3, 0, 0, 0.001f, 200}, 0.001f, 300, 30000, 1, 0, 0, 0}, /* all below conf */
        {{2, 500, 6, 16, 0, 1, 300}, 0.001f, 7, 50, 1, 0, 0, 1},     /* max_nms and max_det cut */
        {{2, 300, 3, 0, 0, 1, 200}, 0.001f, 0, 30000, 1, 0, 0, 0},   /* max_det 0 */
        {{2, 300, 3, 0, 0, 1, 200}, 0.001f, 300, 0, 1, 0, 0, 0},     /* max_nms 0 */
        {{2, 300, 5, 4, 0, 1, 200}, 0.25f, 300, 30000, 0, 0, 0, 1},  /* one label, scores = conf */
        {{2, 300, 5, 4, 3, 1, 200}, 0.25f, 300, 30000, 1, 1, 0, 1},  /* agnostic, scores = conf */
        {{2, 300, 4, 0, 0, 1, 640}, 0.05f, 300, 30000, 1, 0, 50, 1}, /* classes overlap (span
                                                                        > max_wh) */
        {{5, 120, 2, 3, 6, 1, 64}, 0.001f, 20, 100, 1, 0, 0, 1},     /* 5 images, small cuts */
    };
    run_cases(cs, sizeof cs / sizeof *cs, 0);
}

Test(cuda_hd, topk_matches_cpu_bitwise, .timeout = 60) {
    const hd_case cs[] = {
        {{3, 400, 5, 0, 0, 1, 640}, 0.25f, 300, 0, 0, 0, 0, 1},      /* K = 300 of 400 anchors */
        {{2, 300, 80, 0, 0, 0.1f, 320}, 0.001f, 300, 0, 0, 0, 0, 1}, /* 80 classes, K = A */
        {{2, 300, 4, 4, 3, 1, 200}, 0.001f, 30, 0, 0, 0, 0, 1},      /* ties, K < anchors */
        {{2, 300, 1, 4, 3, 1, 200}, 0.25f, 300, 0, 0, 0, 0, 1},      /* ties, scores = conf */
        {{2, 50, 3, 0, 0, 1, 200}, 0.001f, 300, 0, 0, 0, 0, 1},      /* max_det > anchors */
        {{2, 300, 4, 6, 0, 1, 200}, 0.3f, 40, 0, 0, 1, 0, 1},        /* agnostic, ties */
        {{2, 300, 2, 4, 0, 1, 200}, 0.25f, 300, 0, 0, 1, 0, 1},      /* agnostic, scores = conf */
        {{2, 300, 3, 0, 0, 0.2f, 200}, 0.5f, 300, 0, 0, 0, 0, 0},    /* all below conf */
        {{2, 300, 3, 0, 0, 1, 200}, 0.001f, 0, 0, 0, 0, 0, 0},       /* max_det 0 */
        {{1, 300, 1, 8, 0, 1, 200}, 0.001f, 10, 0, 0, 0, 0, 1},      /* nc 1 */
    };
    run_cases(cs, sizeof cs / sizeof *cs, 1);
}
