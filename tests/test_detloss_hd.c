/* The GPU loss's algorithm without a GPU: the per-index bodies of kernels/cuda/detloss_hd.h (the
 * code each CUDA thread runs) called in plain loops, in the kernels' order, against the CPU
 * reference (kernels/detloss.c): assignments and gradients bit for bit, sums to double rounding,
 * for both Ultralytics settings (the 16 px assigner rule of 8.4.190 and torch 2's BCE), both head
 * kinds (reg_max 16, topk 10; yolo26's E2E with reg_max 1 and its one2one topk 7 / 1), class
 * weights, padding rows, tiny boxes, crowded images and images without targets.
 * What only a GPU checks (the block-wide top-k merge, the block sums, the launches): the GPU
 * tests (tests/test_gpu_train.c). */
#include "kernels/cuda/detloss_hd.h"
#include "kernels/backend.h"
#include "kernels/detloss.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint32_t rng;
static float urand(void) { /* uniform [0, 1) */
    rng = rng * 1664525u + 1013904223u;
    return (float)(rng >> 8) / 16777216.0f;
}

/* The scratch of one emulated branch. */
typedef struct emu {
    dl_dev d;
    float tss;
    float *lab, *box, *mask;
} emu;

static void emu_init(emu *e, const detloss_hyp *h, float gw, float scale, int B, int A,
                     const float *preds, const float *anc, const float *str, int nt, const float *t,
                     float img, float *dpreds) {
    memset(e, 0, sizeof *e);
    int M = detloss_max_gt(nt, t, B);
    size_t bm = (size_t)B * (M ? M : 1), ba = (size_t)B * A, bma = ba * (M ? M : 1);
    e->lab = malloc(bm * sizeof(float));
    e->box = malloc(bm * 4 * sizeof(float));
    e->mask = malloc(bm * sizeof(float));
    detloss_preprocess_targets(nt, t, B, M, img, img, e->lab, e->box, e->mask);
    dl_dev *d = &e->d;
    d->h = *h;
    d->gw[0] = d->gw[1] = d->gw[2] = gw;
    d->grad_scale = scale;
    d->B = B, d->A = A, d->M = M, d->no = 4 * h->reg_max + h->nc;
    d->img_h = d->img_w = img;
    d->preds = preds, d->anc = anc, d->str = str;
    d->gt_lab = e->lab, d->gt_box = e->box, d->gt_mask = e->mask;
    d->dpreds = dpreds;
    d->pd_box = malloc(ba * 4 * sizeof(float));
    d->metric = malloc(bma * sizeof(float));
    d->overlap = malloc(bma * sizeof(float));
    d->in_gt = malloc(bma);
    d->pos = malloc(bma);
    d->gt_of = malloc(ba * sizeof(int));
    d->tscore = malloc(ba * sizeof(float));
    d->tu = calloc(bm * 2, sizeof(uint32_t));
    d->tss = &e->tss;
}

static void emu_free(emu *e) {
    free(e->lab), free(e->box), free(e->mask);
    free(e->d.pd_box), free(e->d.metric), free(e->d.overlap), free(e->d.in_gt), free(e->d.pos);
    free(e->d.gt_of), free(e->d.tscore), free(e->d.tu);
}

/* The top-k of GT (b, j) over every anchor, as one thread of k_candidates / k_topk2 would keep
 * it if it saw all anchors (the block merge gives the same list: the order is total). */
static int topk_of(emu *e, int b, int j, int k, bool second, int *idx) {
    float val[DL_DEV_MAX_TOPK];
    int cnt = 0;
    for (int a = 0; a < e->d.A; a++) {
        float v = second ? dl_k_topk2_value(&e->d, b, j, a) : e->d.metric[dl_bma(&e->d, b, j, a)];
        dl_topk_insert(k, &cnt, val, idx, v, a);
    }
    return cnt;
}

/* Steps 1-8 of detloss_hd.h in their kernels' order; the sums of the branch. */
static dl_sums emu_run(emu *e) {
    dl_dev *d = &e->d;
    const size_t BA = (size_t)d->B * d->A;
    const int topk = d->h.topk < d->A ? d->h.topk : d->A;
    const int topk2 = d->h.topk2 < d->A ? d->h.topk2 : d->A;
    for (size_t i = 0; i < BA; i++) dl_k_decode(d, i);
    int idx[DL_DEV_MAX_TOPK];
    for (int b = 0; b < d->B; b++)
        for (int j = 0; j < d->M; j++) {
            int real = dl_real(d, b, j);
            float box[4];
            dl_stal_box(&d->h, d->gt_box + ((size_t)b * d->M + j) * 4, real, box);
            for (int a = 0; a < d->A; a++) dl_k_metric(d, b, j, a, real, box);
            if (real) dl_k_pos_from_topk(d, b, j, idx, topk_of(e, b, j, topk, false, idx));
        }
    if (d->M > 1)
        for (size_t i = 0; i < BA; i++) dl_k_conflicts(d, (int)(i / d->A), (int)(i % d->A));
    if (topk2 != topk)
        for (int b = 0; b < d->B; b++)
            for (int j = 0; j < d->M; j++) {
                if (!dl_real(d, b, j)) continue;
                int n = topk_of(e, b, j, topk2, true, idx);
                for (int a = 0; a < d->A; a++)
                    if (d->pos[dl_bma(d, b, j, a)]) dl_k_topk2_keep(d, b, j, a, idx, n);
            }
    for (size_t i = 0; i < BA; i++) {
        int gi = dl_k_assign(d, i);
        if (gi < 0) continue;
        int b = (int)(i / d->A), a = (int)(i % d->A);
        size_t q = dl_bma(d, b, gi, a);
        uint32_t *tu = d->tu + ((size_t)b * d->M + gi) * 2, m = hd_float_bits(d->metric[q]),
                 o = hd_float_bits(d->overlap[q]);
        if (m > tu[0]) tu[0] = m;
        if (o > tu[1]) tu[1] = o;
    }
    dl_sums s = {0, 0, 0, 0, 0};
    for (size_t i = 0; i < BA; i++) s.tsum += dl_k_score(d, i);
    e->tss = (float)s.tsum < 1 ? 1 : (float)s.tsum;
    dl_coefs k = dl_dev_coefs(d);
    for (size_t i = 0; i < BA * d->no; i++) s.cls += dl_k_cls(d, &k, i / d->no, (int)(i % d->no));
    for (size_t i = 0; i < BA; i++) {
        double li, ld;
        s.fg += dl_k_box(d, &k, i, &li, &ld);
        s.box += li;
        s.dfl += ld;
    }
    return s;
}

static void expect_rel(const char *what, double got, double ref, double tol) {
    double rel = fabs(got - ref) / fmax(fabs(ref), 1e-30);
    cr_expect(rel <= tol, "%s: device algorithm %.12g, CPU %.12g (rel %.3g)", what, got, ref, rel);
}

/* A scene: B images of img px (levels 8, 16, 32), random logits leaning to "no object", targets
 * of every kind: ordinary, tiny (under 8 and 16 px), overlapping duplicates (conflicts), a
 * padding row (class nc), and the last image without targets. */
typedef struct scene {
    int B, A, nt, no;
    float img;
    float *anc, *str, *preds[2], *t;
} scene;

static void scene_make(scene *s, int B, int img, int R, int nc, uint32_t seed) {
    rng = seed;
    int hs[3] = {img / 8, img / 16, img / 32};
    const float ls[3] = {8, 16, 32};
    s->B = B, s->img = (float)img, s->no = 4 * R + nc;
    s->A = detloss_make_anchors(3, hs, hs, ls, NULL, NULL);
    s->anc = malloc(sizeof(float) * 2 * s->A);
    s->str = malloc(sizeof(float) * s->A);
    detloss_make_anchors(3, hs, hs, ls, s->anc, s->str);
    size_t np = (size_t)B * s->A * s->no;
    for (int br = 0; br < 2; br++) {
        s->preds[br] = malloc(np * sizeof(float));
        for (size_t i = 0; i < np; i++) {
            int ch = (int)(i % s->no);
            s->preds[br][i] = ch < 4 * R
                                  ? (R == 1 ? 3 * urand() : 4 * urand() - 2 - 0.2f * (ch % R))
                                  : 6 * urand() - 5;
        }
    }
    s->t = malloc(sizeof(float) * 6 * 16 * B);
    s->nt = 0;
    for (int b = 0; b < B - 1; b++) {
        int n = 1 + (int)(urand() * 6);
        for (int q = 0; q < n; q++) {
            float *r = s->t + 6 * s->nt++;
            float w = q == 0 ? 5.0f / img : q == 1 ? 12.0f / img : 0.05f + 0.5f * urand();
            float h = q == 0 ? 6.0f / img : 0.05f + 0.5f * urand();
            r[0] = (float)b, r[1] = (float)(int)(urand() * nc);
            r[2] = 0.2f + 0.6f * urand(), r[3] = 0.2f + 0.6f * urand(), r[4] = w, r[5] = h;
            if (q == 3) { /* a near-duplicate of the previous box: shared anchors */
                memcpy(r + 1, r - 5, 5 * sizeof(float));
                r[4] *= 1.1f;
            }
        }
        if (b == 0) { /* a padding row: a class outside [0, nc) */
            float *r = s->t + 6 * s->nt++;
            r[0] = 0, r[1] = (float)nc, r[2] = r[3] = 0.5f, r[4] = r[5] = 0.3f;
        }
    }
}

static void scene_free(scene *s) {
    free(s->anc), free(s->str), free(s->preds[0]), free(s->preds[1]), free(s->t);
}

/* One branch through both, compared: assignment, target scores, sums, gradient. */
static void compare_branch(const scene *s, const detloss_hyp *h, float gw, float scale, int br,
                           dl_sums *sums_out) {
    size_t np = (size_t)s->B * s->A * s->no;
    float *g_dev = malloc(np * sizeof(float)), *g_cpu = malloc(np * sizeof(float));
    for (size_t i = 0; i < np; i++) g_dev[i] = NAN; /* every element must be written */
    emu e;
    emu_init(&e, h, gw, scale, s->B, s->A, s->preds[br], s->anc, s->str, s->nt, s->t, s->img,
             g_dev);
    dl_sums q = emu_run(&e);
    detloss_ctx *ctx = detloss_create();
    detloss_out o;
    float w3[3] = {gw, gw, gw};
    cr_assert_eq(detloss_branch(ctx, h, s->B, s->A, s->preds[br], s->anc, s->str, s->nt, s->t,
                                s->img, s->img, w3, g_cpu, &o),
                 0);
    for (size_t i = 0; i < np; i++) g_cpu[i] *= scale;
    int Bq, Aq, M;
    const detloss_assign *as = detloss_last_assign(ctx, &Bq, &Aq, &M);
    cr_assert_eq(M, e.d.M);
    int nfg = 0;
    for (int ba = 0; ba < s->B * s->A; ba++) {
        int fg = e.d.gt_of[ba] >= 0;
        nfg += fg;
        cr_assert_eq(fg, as->fg_mask[ba], "fg of anchor %d", ba);
        float tsum = 0;
        for (int c = 0; c < h->nc; c++) tsum += as->target_scores[(size_t)ba * h->nc + c];
        cr_assert_eq(e.d.tscore[ba], tsum, "target score of anchor %d", ba);
        if (!fg) continue;
        cr_assert_eq(e.d.gt_of[ba], as->target_gt_idx[ba], "GT of anchor %d", ba);
        cr_assert_eq((int)e.d.gt_lab[(size_t)(ba / s->A) * M + e.d.gt_of[ba]],
                     as->target_labels[ba]);
    }
    cr_assert_gt(nfg, 0, "the scene has foreground anchors");
    cr_assert_eq((int)q.fg, o.num_fg);
    expect_rel("target score sum", q.tsum, o.target_scores_raw, 1e-12);
    expect_rel("cls sum", q.cls, o.loss_sum[1], 1e-9);
    expect_rel("box sum", q.box, o.loss_sum[0], 1e-9);
    expect_rel("dfl sum", q.dfl, o.loss_sum[2], 1e-9);
    float vec[3], items[3];
    double ls[3];
    dl_finish(h, &q, s->B, vec, items, ls);
    for (int k = 0; k < 3; k++) expect_rel("item", items[k], o.items[k], 1e-6);
    size_t bad = 0;
    for (size_t i = 0; i < np; i++) bad += memcmp(&g_dev[i], &g_cpu[i], sizeof(float)) != 0;
    cr_expect_eq(bad, 0, "%zu of %zu gradient elements differ from the CPU's", bad, np);
    if (sums_out) *sums_out = q;
    emu_free(&e);
    detloss_destroy(ctx);
    free(g_dev), free(g_cpu);
}

static detloss_hyp release(detloss_hyp h, bool v190) {
    h.stal_min = v190 ? 16.0f : 8.0f;
    h.bce_torch2 = v190;
    return h;
}

static void v8_case(bool v190, bool class_weights, float scale) {
    scene s;
    scene_make(&s, 3, 128, 16, 5, 11u + v190);
    detloss_hyp h = release(detloss_hyp_default(5, 16), v190);
    float cw[5] = {0.5f, 1.5f, 1, 0.8f, 1.2f};
    if (class_weights) h.cls_weight = cw;
    compare_branch(&s, &h, 1, scale, 0, NULL);
    scene_free(&s);
}

Test(detloss_hd, v8_branch_matches_cpu_8_4_33) {
    v8_case(false, false, 1);
}
Test(detloss_hd, v8_branch_matches_cpu_8_4_190_class_weights_scaled) {
    v8_case(true, true, 2);
}

/* yolo26: both branches, E2E weights, and the combined result as detloss_e2e reports it. */
static void e2e_case(bool v190) {
    scene s;
    scene_make(&s, 4, 96, 1, 3, 29u + v190);
    detloss_hyp h0 = release(detloss_hyp_default(3, 1), v190);
    detloss_hyp h1 = release(detloss_hyp_one2one(3, 1), v190);
    float o2m, o2o;
    detloss_e2e_weights(3, 10, &o2m, &o2o);
    dl_sums q[2];
    compare_branch(&s, &h0, o2m, 1, 0, &q[0]);
    compare_branch(&s, &h1, o2o, 1, 1, &q[1]);
    detloss_ctx *ctx = detloss_create();
    detloss_out o;
    cr_assert_eq(detloss_e2e(ctx, &h0, &h1, o2m, o2o, s.B, s.A, s.preds[0], s.preds[1], s.anc,
                             s.str, s.nt, s.t, s.img, s.img, NULL, NULL, &o, NULL),
                 0);
    float vec[2][3], items[2][3];
    double ls[2][3];
    dl_finish(&h0, &q[0], s.B, vec[0], items[0], ls[0]);
    dl_finish(&h1, &q[1], s.B, vec[1], items[1], ls[1]);
    float total = 0;
    for (int k = 0; k < 3; k++) {
        total += vec[0][k] * o2m + vec[1][k] * o2o;
        expect_rel("E2E item (one2one)", items[1][k], o.items[k], 1e-6);
        expect_rel("E2E loss_sum", ls[1][k], o.loss_sum[k], 1e-9);
    }
    expect_rel("E2E total", total, o.total, 1e-6);
    cr_expect_eq((int)q[1].fg, o.num_fg);
    detloss_destroy(ctx);
    scene_free(&s);
}

Test(detloss_hd, e2e_matches_cpu_8_4_33) {
    e2e_case(false);
}
Test(detloss_hd, e2e_matches_cpu_8_4_190) {
    e2e_case(true);
}

/* The block merge's order: any split of the anchors into per-thread lists, merged by
 * dl_topk_before, is the sequential top-k (ties to the lower index). */
Test(detloss_hd, topk_lists_merge_to_the_sequential_topk) {
    enum { N = 300, K = 10, T = 8 };
    float v[N];
    rng = 5;
    for (int i = 0; i < N; i++) v[i] = (float)(int)(urand() * 20) / 4; /* many ties */
    float sv[K];
    int si[K], sn = 0;
    for (int i = 0; i < N; i++) dl_topk_insert(K, &sn, sv, si, v[i], i);
    /* thread t sees t, t + T, ...; then merge all lists by inserting their entries */
    float lv[T][K];
    int li[T][K], ln[T] = {0};
    for (int i = 0; i < N; i++) dl_topk_insert(K, &ln[i % T], lv[i % T], li[i % T], v[i], i);
    float mv[K];
    int mi[K], mn = 0;
    for (int t = T - 1; t >= 0; t--) /* any order: the result must not depend on it */
        for (int q = 0; q < ln[t]; q++) dl_topk_insert(K, &mn, mv, mi, lv[t][q], li[t][q]);
    cr_assert_eq(mn, sn);
    for (int q = 0; q < K; q++) {
        cr_expect_eq(mi[q], si[q], "rank %d", q);
        cr_expect_eq(mv[q], sv[q]);
    }
    for (int q = 1; q < K; q++) cr_expect(dl_topk_before(sv[q - 1], si[q - 1], sv[q], si[q]));
}
