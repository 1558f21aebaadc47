/* Detection loss, part 2: finite differences with the assignment held fixed, and hand-made
 * assigner cases (part 1, tests/test_detloss.c, checks everything against the PyTorch oracle). */
#include "kernels/detloss.h"
#include "kernels/threads.h"
#include "tests/oracle.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_rel(const char *what, double got, double ref, double tol) {
    double rel = fabs(got - ref) / fmax(fabs(ref), 1e-30);
    cr_expect(rel <= tol, "%s: got %.9g, ref %.9g (rel %.3g > %.1g)", what, got, ref, rel, tol);
}

/* ---- 3. finite differences of the loss with the assignment held fixed --------------------------
 */

static uint32_t lcg_state;
static float urand(void) { /* uniform [0, 1) */
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return (float)(lcg_state >> 8) / 16777216.0f;
}

/* vec[0] recomputed from public pieces: decode, CIoU with alpha frozen (alpha_in non-NULL) or
 * computed (then stored in alpha_out), weights and normalisation as Ultralytics' BboxLoss. */
static double box_loss_frozen(const detloss_hyp *h, int B, int A, const float *x, const float *anc,
                              const float *str, const detloss_assign *as, const float *alpha_in,
                              float *alpha_out) {
    float *boxes = malloc(sizeof(float) * B * A * 4);
    detloss_decode(h, B, A, x, anc, boxes);
    double tsum = 0, l = 0;
    for (int i = 0; i < B * A * h->nc; i++) tsum += as->target_scores[i];
    for (int ba = 0; ba < B * A; ba++) {
        if (!as->fg_mask[ba]) continue;
        double w = 0;
        for (int c = 0; c < h->nc; c++) w += as->target_scores[ba * h->nc + c];
        float tb[4];
        for (int k = 0; k < 4; k++) tb[k] = as->target_bboxes[ba * 4 + k] / str[ba % A];
        float al;
        float ci = detloss_ciou(boxes + 4 * ba, tb, alpha_in ? alpha_in[ba] : -1.0f, &al, NULL);
        if (alpha_out) alpha_out[ba] = al;
        l += (1.0 - ci) * w;
    }
    free(boxes);
    return l / fmax(tsum, 1.0) * h->box * B;
}

static void fd_case(int R) {
    const int B = 2, nc = 3, no = 4 * R + nc, hs[2] = {4, 2}, wsz[2] = {4, 2};
    const float lstr[2] = {8, 16};
    float anc[40], str[20];
    const int A = detloss_make_anchors(2, hs, wsz, lstr, anc, str);
    cr_assert_eq(A, 20);
    /* 32x32 px images: two boxes in image 0, one in image 1 */
    const float targets[3 * 6] = {0, 1, 12 / 32.f, 12 / 32.f, 14 / 32.f, 10 / 32.f,
                                  0, 2, 22 / 32.f, 20 / 32.f, 12 / 32.f, 16 / 32.f,
                                  1, 0, 16 / 32.f, 16 / 32.f, 20 / 32.f, 20 / 32.f};
    size_t np = (size_t)B * A * no;
    float *x = malloc(np * sizeof(float)), *g = malloc(np * sizeof(float));
    lcg_state = 12345u + (uint32_t)R;
    for (int ba = 0; ba < B * A; ba++) {
        float *p = x + (size_t)ba * no;
        for (int s = 0; s < 4; s++)
            for (int j = 0; j < R; j++)
                p[s * R + j] = R == 1 ? 0.8f + 0.7f * urand() : 2 * urand() - 1 - 0.6f * j;
        for (int c = 0; c < nc; c++) p[4 * R + c] = 3 * urand() - 2;
    }
    detloss_hyp h = detloss_hyp_default(nc, R);
    detloss_ctx *ctx = detloss_create();
    detloss_out o;
    cr_assert_eq(detloss_branch(ctx, &h, B, A, x, anc, str, 3, targets, 32, 32, NULL, g, &o), 0);
    cr_assert_gt(o.num_fg, 3, "the case has foreground anchors (%d)", o.num_fg);
    cr_assert_gt(o.vec[0], 0.0f);
    cr_assert_gt(o.vec[2], 0.0f);
    const detloss_assign *as = detloss_last_assign(ctx, NULL, NULL, NULL);
    double tsum = 0;
    for (int i = 0; i < B * A * nc; i++) tsum += as->target_scores[i];
    cr_assert_gt(tsum, 0.05, "foreground anchors carry real weight (%g)", tsum);
    /* cls and dfl/L1 terms: central differences of vec[j] with the assignment replayed */
    const float hstep = R == 1 ? 3e-3f : 1e-2f;
    for (int j = 1; j < 3; j++) {
        float gw[3] = {0, 0, 0};
        gw[j] = 1;
        detloss_out oo;
        cr_assert_eq(detloss_from_assign(&h, B, A, x, anc, str, 32, 32, as, gw, g, &oo), 0);
        cr_expect_eq(oo.vec[j], o.vec[j], "same loss with the assignment replayed");
        double md = 0, mg = max_abs_f32(g, np);
        for (size_t i = 0; i < np; i++) {
            float keep = x[i];
            x[i] = keep + hstep;
            detloss_from_assign(&h, B, A, x, anc, str, 32, 32, as, NULL, NULL, &oo);
            double fp = oo.vec[j];
            x[i] = keep - hstep;
            detloss_from_assign(&h, B, A, x, anc, str, 32, 32, as, NULL, NULL, &oo);
            double fm = oo.vec[j];
            x[i] = keep;
            double num = (fp - fm) / (2.0 * hstep);
            md = fmax(md, fabs(num - g[i]));
            cr_expect(fabs(num - g[i]) <= 3e-3 * mg + 1e-2 * fabs(g[i]),
                      "reg_max %d term %d element %zu: analytic %.6g, numeric %.6g", R, j, i, g[i],
                      num);
        }
        cr_expect_gt(mg, 0, "term %d has a gradient", j);
        fprintf(stderr, "detloss FD reg_max %2d term %d: max|num - ana| / max|ana| = %.2e\n", R, j,
                md / mg);
    }
    /* box term: PyTorch differentiates CIoU with its aspect weight alpha held constant, so the
     * finite differences run over the box loss with each anchor's alpha frozen at x */
    float *alpha = malloc(sizeof(float) * B * A);
    double base = box_loss_frozen(&h, B, A, x, anc, str, as, NULL, alpha);
    cr_expect(fabs(base - o.vec[0]) <= 1e-6 * o.vec[0], "box loss %.9g vs %.9g", base, o.vec[0]);
    float gw0[3] = {1, 0, 0};
    detloss_out oo;
    cr_assert_eq(detloss_from_assign(&h, B, A, x, anc, str, 32, 32, as, gw0, g, &oo), 0);
    double md = 0, mg = max_abs_f32(g, np);
    for (size_t i = 0; i < np; i++) {
        float keep = x[i];
        x[i] = keep + hstep;
        double fp = box_loss_frozen(&h, B, A, x, anc, str, as, alpha, NULL);
        x[i] = keep - hstep;
        double fm = box_loss_frozen(&h, B, A, x, anc, str, as, alpha, NULL);
        x[i] = keep;
        double num = (fp - fm) / (2.0 * hstep);
        md = fmax(md, fabs(num - g[i]));
        cr_expect(fabs(num - g[i]) <= 3e-3 * mg + 1e-2 * fabs(g[i]),
                  "reg_max %d box term element %zu: analytic %.6g, numeric %.6g", R, i, g[i], num);
    }
    cr_expect_gt(mg, 0);
    fprintf(stderr, "detloss FD reg_max %2d term 0: max|num - ana| / max|ana| = %.2e\n", R,
            md / mg);
    free(alpha);
    detloss_destroy(ctx);
    free(x), free(g);
}

Test(detloss, finite_differences_dfl) {
    fd_case(16);
}
Test(detloss, finite_differences_l1) {
    fd_case(1);
}

/* ---- 4. hand-made assigner cases on an 8x8 grid of stride 8 (64x64 px, anchors at 8x+4) --------
 */

#define GA 64
typedef struct tal_case {
    float anc[2 * GA], scores[GA * 2], pbox[GA * 4];
    float labels[4], boxes[16], mask[4];
    int M;
    int lab[GA], gi[GA];
    float tbox[GA * 4], tsc[GA * 2];
    uint8_t fg[GA];
} tal_case;

static void tal_init(tal_case *t, const float pred[4]) {
    memset(t, 0, sizeof *t);
    for (int a = 0; a < GA; a++) {
        t->anc[2 * a] = 8.0f * (a % 8) + 4;
        t->anc[2 * a + 1] = 8.0f * (a / 8) + 4;
        memcpy(t->pbox + 4 * a, pred, 4 * sizeof(float));
        t->scores[2 * a] = t->scores[2 * a + 1] = 0.5f;
    }
}

static void tal_gt(tal_case *t, int label, float x1, float y1, float x2, float y2, float mask) {
    int j = t->M++;
    t->labels[j] = (float)label;
    t->boxes[4 * j] = x1, t->boxes[4 * j + 1] = y1, t->boxes[4 * j + 2] = x2;
    t->boxes[4 * j + 3] = y2, t->mask[j] = mask;
}

static int tal_run(tal_case *t, const detloss_hyp *h) {
    detloss_assign as = {t->lab, t->tbox, t->tsc, t->fg, t->gi};
    void *ws = malloc(detloss_tal_workspace(1, GA, t->M));
    detloss_tal_assign(h, 1, GA, t->M, t->scores, t->pbox, t->anc, t->labels, t->boxes, t->mask,
                       &as, ws);
    free(ws);
    int n = 0;
    for (int a = 0; a < GA; a++) n += t->fg[a];
    return n;
}

static int A_AT(int px, int py) {
    return (py - 4) / 8 * 8 + (px - 4) / 8;
}

Test(detloss, assigner_centres_edges_padding) {
    detloss_hyp h = detloss_hyp_default(2, 16);
    tal_case t;
    const float pred[4] = {10, 10, 30, 30};
    tal_init(&t, pred);
    for (int a = 0; a < GA; a++) t.scores[2 * a + 1] = 0.9f; /* outside anchors score high too */
    tal_gt(&t, 1, 10, 10, 30, 30, 1);
    tal_gt(&t, 0, 0, 0, 0, 0, 0); /* padding row */
    cr_assert_eq(tal_run(&t, &h), 9, "the 9 anchor centres inside (10,10,30,30)");
    for (int a = 0; a < GA; a++) {
        float ax = t.anc[2 * a], ay = t.anc[2 * a + 1];
        int inside = ax > 10 && ax < 30 && ay > 10 && ay < 30;
        cr_expect_eq(t.fg[a], inside, "anchor (%g,%g)", ax, ay);
        cr_expect_eq(t.gi[a], 0, "background and foreground point at GT 0");
        cr_expect_eq(t.lab[a], 1, "labels of GT 0, also for background anchors");
        cr_expect_eq(t.tbox[4 * a + 2], 30.0f);
        /* pred == GT everywhere: CIoU 1, metric equal, so every positive gets score U = 1 */
        cr_expect_float_eq(t.tsc[2 * a + 1], inside ? 1.0f : 0.0f, 1e-5f);
        cr_expect_eq(t.tsc[2 * a], 0.0f);
    }
    /* edges: a centre on the box edge is not inside (distance must be > eps) */
    tal_init(&t, pred);
    tal_gt(&t, 0, 12, 12, 36, 28, 1);
    cr_assert_eq(tal_run(&t, &h), 2);
    cr_expect(t.fg[A_AT(20, 20)] && t.fg[A_AT(28, 20)]);
    /* no GT at all: nothing is foreground */
    tal_init(&t, pred);
    tal_gt(&t, 0, 12, 12, 36, 28, 0);
    cr_expect_eq(tal_run(&t, &h), 0, "a padded GT gets no anchors");
    tal_init(&t, pred);
    tal_gt(&t, 5, 12, 12, 36, 28, 1);
    cr_expect_eq(tal_run(&t, &h), 0, "a class outside [0, nc) is treated as padding");
}

/* GT0 (2,2,30,30) and GT1 (18,18,46,46) share 4 anchor centres; both pick them in their top-k. */
static void conflict_case(tal_case *t, const float pred[4]) {
    tal_init(t, pred);
    int shared[4] = {A_AT(20, 20), A_AT(28, 20), A_AT(20, 28), A_AT(28, 28)};
    for (int a = 0; a < GA; a++) {
        t->scores[2 * a] = 0.1f + 0.005f * a;
        t->scores[2 * a + 1] = 0.5f + 0.001f * a;
    }
    for (int i = 0; i < 4; i++) t->scores[2 * shared[i]] = t->scores[2 * shared[i] + 1] = 0.9f;
    tal_gt(t, 0, 2, 2, 30, 30, 1);
    tal_gt(t, 1, 18, 18, 46, 46, 1);
}

Test(detloss, assigner_conflict_goes_to_max_iou_and_topk_limit) {
    detloss_hyp h = detloss_hyp_default(2, 16);
    tal_case t;
    const int shared[4] = {18, 19, 26, 27};
    /* own positives after resolution: 16 candidates each, top-10 by score, minus shared */
    const int own0[6] = {25, 24, 17, 16, 11, 10}, own1[6] = {45, 44, 43, 42, 37, 36};
    const float near1[4] = {16, 16, 40, 40}, near0[4] = {4, 4, 32, 32};
    for (int v = 0; v < 2; v++) {
        conflict_case(&t, v == 0 ? near1 : near0);
        int winner = v == 0 ? 1 : 0;
        cr_assert_eq(tal_run(&t, &h), 16, "6 + 6 own anchors + 4 shared");
        for (int i = 0; i < 4; i++) {
            cr_expect(t.fg[shared[i]]);
            cr_expect_eq(t.gi[shared[i]], winner, "shared anchor %d goes to the higher-IoU GT %d",
                         shared[i], winner);
            cr_expect_eq(t.lab[shared[i]], winner);
        }
        for (int i = 0; i < 6; i++) {
            cr_expect(t.fg[own0[i]] && t.gi[own0[i]] == 0, "anchor %d is GT 0's", own0[i]);
            cr_expect(t.fg[own1[i]] && t.gi[own1[i]] == 1, "anchor %d is GT 1's", own1[i]);
        }
    }
}

Test(detloss, assigner_topk_topk2_and_normalised_scores) {
    tal_case t;
    const float pred[4] = {8, 8, 40, 48};
    tal_init(&t, pred);
    for (int a = 0; a < GA; a++) t.scores[2 * a] = 0.05f + 0.9f * (float)((a * 37) % GA) / GA;
    tal_gt(&t, 0, 2, 2, 62, 62, 1); /* every anchor centre is inside */
    int order[GA];
    for (int a = 0; a < GA; a++) order[a] = a;
    for (int i = 0; i < GA; i++) /* anchors by descending score */
        for (int k = i + 1; k < GA; k++)
            if (t.scores[2 * order[k]] > t.scores[2 * order[i]]) {
                int s = order[i];
                order[i] = order[k];
                order[k] = s;
            }
    detloss_hyp h = detloss_hyp_default(2, 16);
    cr_assert_eq(tal_run(&t, &h), 10, "exactly topk positives");
    for (int i = 0; i < GA; i++) cr_expect_eq(t.fg[order[i]], i < 10, "rank %d", i);
    /* scores: t_a U / T with t = sqrt(s) u^6, u the same everywhere */
    float w = 32, hh = 40 + 1e-7f, W = 60, H = 60 + 1e-7f, inter = 32 * 40;
    float iou = inter / (w * hh + W * H - inter + 1e-7f);
    float cw = 60, ch = 60, dx = 64 - 48, dy = 64 - 56;
    float at = atanf(W / H) - atanf(w / hh), v = (float)(4 / (M_PI * M_PI)) * at * at;
    float u = iou - ((dx * dx + dy * dy) / 4 / (cw * cw + ch * ch + 1e-7f) +
                     v * v / (v - iou + 1.0000001f));
    float smax = t.scores[2 * order[0]];
    for (int i = 0; i < 10; i++) {
        int a = order[i];
        float want = sqrtf(t.scores[2 * a]) / sqrtf(smax) * u;
        cr_expect(fabsf(t.tsc[2 * a] - want) <= 1e-5f * want, "anchor %d score %g, want %g", a,
                  t.tsc[2 * a], want);
    }
    /* one2one: topk 7 then topk2 1: only the best anchor, with score U */
    h = detloss_hyp_one2one(2, 16);
    cr_assert_eq(tal_run(&t, &h), 1);
    cr_expect(t.fg[order[0]]);
    cr_expect_float_eq(t.tsc[2 * order[0]], u, 1e-5f * u);
}

Test(detloss, assigner_small_box_widening) {
    tal_case t;
    const float pred[4] = {10, 6, 22, 22};
    tal_init(&t, pred);
    /* 6 x 10 px: narrower than stride 8, so the candidate test uses 16 x 10 around (16, 14) */
    tal_gt(&t, 0, 13, 9, 19, 19, 1);
    detloss_hyp h = detloss_hyp_default(2, 16);
    cr_assert_eq(tal_run(&t, &h), 2);
    cr_expect(t.fg[A_AT(12, 12)] && t.fg[A_AT(20, 12)]);
    cr_expect_eq(t.tbox[4 * A_AT(12, 12)], 13.0f, "the target box itself is not widened");
    cr_expect_eq(t.tbox[4 * A_AT(12, 12) + 2], 19.0f);
    h.stal_min = 0; /* without STAL no anchor centre lies inside */
    cr_expect_eq(tal_run(&t, &h), 0);
}

/* CIoU gradient on its own, alpha frozen, over box pairs that overlap, nest and miss. */
Test(detloss, ciou_gradient_finite_differences) {
    const float pairs[][8] = {{1, 2, 5, 7, 2, 1, 6, 5},        {0, 0, 10, 4, 2, 1, 5, 3},
                              {3, 3, 4, 9, 1, 2, 8, 6},        {0, 0, 2, 2, 5, 6, 9, 8},
                              {10, 12, 30, 20, 14, 8, 26, 28}, {-1, -2, 3, 1, 0.5f, -1, 2, 2.5f}};
    for (size_t p = 0; p < sizeof pairs / sizeof *pairs; p++) {
        float b1[4], b2[4], g[4], g2[4], al;
        memcpy(b1, pairs[p], sizeof b1);
        memcpy(b2, pairs[p] + 4, sizeof b2);
        float c0 = detloss_ciou(b1, b2, -1, &al, g);
        cr_expect(c0 <= 1 && c0 > -1.5f);
        cr_expect_eq(detloss_ciou(b1, b2, al, NULL, g2), c0, "alpha override reproduces CIoU");
        for (int k = 0; k < 4; k++) {
            cr_expect_eq(g2[k], g[k]);
            const double hs = 1e-3 * fmax(1, fabs(b1[k]));
            float keep = b1[k];
            b1[k] = (float)(keep + hs);
            double fp = detloss_ciou(b1, b2, al, NULL, NULL);
            b1[k] = (float)(keep - hs);
            double fm = detloss_ciou(b1, b2, al, NULL, NULL);
            b1[k] = keep;
            double num = (fp - fm) / (2 * hs);
            cr_expect(fabs(num - g[k]) <= 2e-3 + 2e-3 * fabs(g[k]),
                      "pair %zu coordinate %d: analytic %.6g, numeric %.6g", p, k, g[k], num);
        }
    }
    /* identical boxes: CIoU 1; every min/max is a tie (PyTorch splits those 1/2, 1/2) */
    float b[4] = {1, 1, 4, 5}, g[4];
    cr_expect_float_eq(detloss_ciou(b, b, -1, NULL, g), 1.0f, 1e-6f);
    for (int k = 0; k < 4; k++)
        cr_expect(isfinite(g[k]) && fabsf(g[k]) < 1.0f, "g[%d] %g", k, g[k]);
}

/* No targets at all (and an image without targets): only the BCE term, against all-zero targets. */
Test(detloss, no_targets_gives_cls_only) {
    const int hs[1] = {2}, wsz[1] = {3}, B = 2, nc = 2, R = 16, no = 4 * R + nc;
    const float lstr[1] = {8};
    float anc[12], str[6];
    const int A = detloss_make_anchors(1, hs, wsz, lstr, anc, str);
    float x[2 * 6 * 66], g[2 * 6 * 66];
    lcg_state = 7;
    for (int i = 0; i < B * A * no; i++) x[i] = 4 * urand() - 2;
    detloss_hyp h = detloss_hyp_default(nc, R);
    detloss_ctx *ctx = detloss_create();
    detloss_out o;
    cr_assert_eq(detloss_branch(ctx, &h, B, A, x, anc, str, 0, NULL, 16, 24, NULL, g, &o), 0);
    double want = 0;
    for (int ba = 0; ba < B * A; ba++)
        for (int c = 0; c < nc; c++) {
            double z = x[ba * no + 4 * R + c];
            want += log1p(exp(z)); /* BCE with target 0 */
            cr_expect_float_eq(g[ba * no + 4 * R + c], (float)(0.5 * B / (1 + exp(-z))), 1e-6f);
        }
    cr_expect_eq(o.num_fg, 0);
    cr_expect_eq(o.vec[0], 0.0f);
    cr_expect_eq(o.vec[2], 0.0f);
    cr_expect_eq(o.target_scores_sum, 1.0f);
    check_rel("cls without targets", o.vec[1], 0.5 * B * want, 1e-6);
    for (int ba = 0; ba < B * A; ba++)
        for (int k = 0; k < 4 * R; k++) cr_expect_eq(g[ba * no + k], 0.0f);
    /* one box in image 1 only: image 0 stays all background */
    const float t[6] = {1, 1, 0.5f, 0.5f, 0.6f, 0.8f};
    cr_assert_eq(detloss_branch(ctx, &h, B, A, x, anc, str, 1, t, 16, 24, NULL, g, &o), 0);
    int fg0 = 0, fg1 = 0, Bq, Aq, Mq;
    const detloss_assign *as = detloss_last_assign(ctx, &Bq, &Aq, &Mq);
    cr_expect(Bq == B && Aq == A && Mq == 1);
    for (int a = 0; a < A; a++) fg0 += as->fg_mask[a], fg1 += as->fg_mask[A + a];
    cr_expect_eq(fg0, 0);
    cr_expect_gt(fg1, 0);
    h.reg_max = 65;
    cr_expect_eq(detloss_branch(ctx, &h, B, A, x, anc, str, 1, t, 16, 24, NULL, g, &o), -1);
    detloss_destroy(ctx);
}

/* Images run in parallel, sums are added in image order: 1 and 2 threads agree bitwise. */
Test(detloss, thread_count_does_not_change_results) {
    const int hs[3] = {16, 8, 4}, B = 4, nc = 3, R = 16, no = 4 * R + nc;
    const float ls[3] = {8, 16, 32};
    const int A = detloss_make_anchors(3, hs, hs, ls, NULL, NULL);
    float *anc = malloc(sizeof(float) * 2 * A), *str = malloc(sizeof(float) * A);
    detloss_make_anchors(3, hs, hs, ls, anc, str);
    size_t np = (size_t)B * A * no;
    cr_assert_geq(np, 65536u, "large enough for the parallel path");
    float *x = malloc(np * sizeof(float)), *g1 = malloc(np * sizeof(float));
    float *g2 = malloc(np * sizeof(float));
    lcg_state = 99;
    for (size_t i = 0; i < np; i++) x[i] = 2 * urand() - 1 - 0.3f * (float)((i % no) % R);
    float t[4 * 6];
    for (int i = 0; i < 4; i++) {
        float *r = t + 6 * i;
        r[0] = (float)i, r[1] = (float)(i % nc), r[2] = 0.3f + 0.1f * i, r[3] = 0.6f - 0.1f * i;
        r[4] = 0.2f + 0.05f * i, r[5] = 0.3f;
    }
    detloss_hyp h = detloss_hyp_default(nc, R);
    detloss_ctx *ctx = detloss_create();
    detloss_out o1, o2;
    kernels_set_threads(1);
    cr_assert_eq(detloss_branch(ctx, &h, B, A, x, anc, str, 4, t, 128, 128, NULL, g1, &o1), 0);
    kernels_set_threads(2);
    cr_assert_eq(detloss_branch(ctx, &h, B, A, x, anc, str, 4, t, 128, 128, NULL, g2, &o2), 0);
    kernels_set_threads(1);
    cr_expect_gt(o1.num_fg, 0);
    cr_expect_eq(memcmp(o1.vec, o2.vec, sizeof o1.vec), 0);
    cr_expect_eq(memcmp(g1, g2, np * sizeof(float)), 0);
    detloss_destroy(ctx);
    free(anc), free(str), free(x), free(g1), free(g2);
}
