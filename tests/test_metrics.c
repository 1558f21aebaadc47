/* mAP / P / R from match records: a hand-worked example, numpy.interp semantics, and the
 * split-invariance the distributed validation relies on. */
#include "coordinator/metrics.h"

#include "common/rng.h"

#include <criterion/criterion.h>
#include <string.h>

#define BITS(lo, hi) ((((1u << ((hi) + 1)) - 1u) >> (lo)) << (lo)) /* bits lo..hi set */

/* The hand-worked set (IoU threshold index t: 0 = .50, 5 = .75, 9 = .95).
 *
 * Class 0, 3 ground truths. Predictions by confidence:
 *   .9 TP for t <= 4 (IoU .72)   .8 FP   .7 TP for t <= 8 (IoU .92)   .6 FP
 *  t = 0..4: T F T F. Cumulative (R, P): (1/3, 1) (1/3, 1/2) (2/3, 2/3) (2/3, 1/2).
 *     mrec = 0 1/3 1/3 2/3 2/3 1, mpre = 1 1 1/2 2/3 1/2 0 -> envelope 1 1 2/3 2/3 1/2 0.
 *     Interpolated: 1 on [0, 1/3), 2/3 on (1/3, 2/3), 1.5 (1 - x) on (2/3, 1].
 *     Trapezoids on the 0.01 grid: [0,.33] .33; [.33,.34] (1 + 2/3)/2 * .01 = .0083333;
 *     [.34,.66] 2/3 * .32 = .2133333; [.66,.67] (2/3 + .495)/2 * .01 = .0058083;
 *     [.67,1] 1.5 * .33^2/2 = .081675.  AP = .63915
 *  t = 5..8: F F T F: (0,0) (0,0) (1/3,1/3) (1/3,1/4). mrec = 0 0 0 1/3 1/3 1,
 *     envelope 1 1/3 1/3 1/3 1/4 0. At x = 0 numpy.interp takes the LAST of the equal xp = 0: 1/3.
 *     1/3 on [0, 1/3), .375 (1 - x) after: [0,.33] .11; [.33,.34] (1/3 + .2475)/2 * .01 =
 *     .0029042; [.34,1] .375 * .66^2/2 = .081675.  AP = .1945792
 *  t = 9: no TP: recall stays 0 and the envelope at x = 0 is already 0.  AP = 0
 * Class 1, 2 ground truths: .85 TP at every t, .3 TP for t <= 2 (IoU .62).
 *  t = 0..2: T T: (1/2, 1) (1, 1): y = 1 up to .99, y(1) = 0 (the sentinel):
 *     .99 + (1 + 0)/2 * .01 = .995 (a perfect class scores .995, not 1)
 *  t = 3..9: T F: (1/2, 1) (1/2, 1/2): y = 1 on [0,.5), y(.5) = 1/2 (last duplicate), 1 - x after:
 *     .49 + (1 + .5)/2 * .01 + .5^2/2 = .49 + .0075 + .125 = .6225
 * Class 2, 1 ground truth, no prediction: AP 0 at every t (still evaluated).
 * Class 3, no ground truth, one prediction at .99: ignored.
 *
 * mAP50 = (.63915 + .995 + 0)/3 = .5447167
 * mAP75 = (.1945792 + .6225 + 0)/3 = .2723597
 * mAP50-95 = (5 * .63915 + 4 * .1945792 + 3 * .995 + 7 * .6225)/30 = 11.3165667/30 = .3772189
 * P and R at the max mean-F1 confidence: below conf .3 class 0 sits at (P, R) = (1/2, 2/3) and
 * class 1 at (1, 1); that plateau [0, .3) holds the largest mean F1 (higher confidences lose recall
 * of class 1), so the first arg-max is confidence 0 and P = (1/2 + 1 + 0)/3 = .5,
 * R = (2/3 + 1 + 0)/3 = .5555556. */
static size_t hand_records(val_record *r) {
    size_t n = 0;
    r[n++] = (val_record){0.9f, 0, BITS(0, 4)};
    r[n++] = (val_record){0.8f, 0, 0};
    r[n++] = (val_record){0.7f, 0, BITS(0, 8)};
    r[n++] = (val_record){0.6f, 0, 0};
    r[n++] = (val_record){0.85f, 1, BITS(0, 9)};
    r[n++] = (val_record){0.3f, 1, BITS(0, 2)};
    r[n++] = (val_record){0.99f, 3, 0};
    return n;
}
static const int64_t hand_gt[4] = {3, 2, 1, 0};

Test(metrics, hand_worked_ap_map_p_r) {
    val_record r[16];
    size_t n = hand_records(r);
    val_metrics m;
    char err[200];
    cr_assert_eq(val_metrics_compute(r, n, hand_gt, 4, &m, err, sizeof err), 0, "%s", err);
    cr_assert_eq(m.n_eval, 3);
    const double ap0[10] = {.63915,   .63915,   .63915,   .63915,   .63915,
                            .1945792, .1945792, .1945792, .1945792, 0};
    for (int t = 0; t < 10; t++) {
        cr_assert_float_eq(m.ap[0 * 10 + t], ap0[t], 1e-7, "class 0 t %d: %.9f", t, m.ap[t]);
        cr_assert_float_eq(m.ap[1 * 10 + t], t <= 2 ? .995 : .6225, 1e-9, "class 1 t %d", t);
        cr_assert_eq(m.ap[2 * 10 + t], 0.0);
        cr_assert_eq(m.ap[3 * 10 + t], 0.0);
    }
    cr_assert_float_eq(m.map50, .5447167, 1e-7, "%.9f", m.map50);
    cr_assert_float_eq(m.map75, .2723597, 1e-7, "%.9f", m.map75);
    cr_assert_float_eq(m.map50_95, 11.3165667 / 30, 1e-8, "%.9f", m.map50_95);
    cr_assert_eq(m.fitness, m.map50_95, "8.4 fitness is mAP50-95 alone");
    cr_assert_float_eq(m.conf, 0.0, 1e-15);
    cr_assert_float_eq(m.precision, 0.5, 1e-12);
    cr_assert_float_eq(m.recall, 5.0 / 9, 1e-12);
    cr_assert_float_eq(m.p[0], 0.5, 1e-12);
    cr_assert_float_eq(m.r[0], 2.0 / 3, 1e-12);
    cr_assert_float_eq(m.f1[1], 1.0, 1e-12);
    val_metrics_free(&m);
}

/* One class, 2 ground truths: .9 T, .8 T, .2 F, .1 F. On the confidence axis R = 1 below .8 and
 * P = 2/3 + (x - .2)/1.8 between .2 and .8; F1 peaks at .8 but falls faster above it (recall
 * drops), so the smoothed arg-max lies a little below .8: there R must be 1 and P on that line. */
Test(metrics, precision_recall_at_interior_best_f1) {
    val_record r[4] = {{0.9f, 0, 1}, {0.8f, 0, 1}, {0.2f, 0, 0}, {0.1f, 0, 0}};
    int64_t gt[1] = {2};
    val_metrics m;
    cr_assert_eq(val_metrics_compute(r, 4, gt, 1, &m, NULL, 0), 0);
    cr_assert(m.conf > 0.7 && m.conf < 0.8, "conf %g", m.conf);
    cr_assert_float_eq(m.recall, 1.0, 1e-9);
    double x = m.conf;
    cr_assert_float_eq(m.precision, 2.0 / 3 + (x - 0.2) / 1.8, 1e-6, "P %g at %g", m.precision, x);
    /* AP50: T T F F -> R .5, 1, 1, 1 with P 1: .995 like any perfect ranking */
    cr_assert_float_eq(m.map50, 0.995, 1e-12);
    val_metrics_free(&m);
}

Test(metrics, numpy_interp_semantics) {
    const double xp[6] = {0, 0, 0.5, 0.5, 0.5, 1}, fp[6] = {1, 2, 3, 4, 5, 6};
    cr_assert_eq(val_np_interp(-1, xp, fp, 6, -7, 9), -7);
    cr_assert_eq(val_np_interp(2, xp, fp, 6, -7, 9), 9);
    cr_assert_eq(val_np_interp(0, xp, fp, 6, -7, 9), 2, "exact hit: last duplicate");
    cr_assert_eq(val_np_interp(0.5, xp, fp, 6, -7, 9), 5);
    cr_assert_eq(val_np_interp(1, xp, fp, 6, -7, 9), 6);
    cr_assert_float_eq(val_np_interp(0.25, xp, fp, 6, -7, 9), 2.5, 1e-15);
    cr_assert_float_eq(val_np_interp(0.75, xp, fp, 6, -7, 9), 5.5, 1e-15);
    const double rec[2] = {0.5, 1}, pre[2] = {1, 1};
    cr_assert_float_eq(val_compute_ap(rec, pre, 2), 0.995, 1e-12);
}

Test(metrics, no_ground_truth_and_bad_counts) {
    val_record r[1] = {{0.5f, 0, 1}};
    int64_t gt[2] = {0, 0};
    val_metrics m;
    cr_assert_eq(val_metrics_compute(r, 1, gt, 2, &m, NULL, 0), 0);
    cr_assert_eq(m.n_eval, 0);
    cr_assert_eq(m.map50_95, 0.0);
    val_metrics_free(&m);
    gt[1] = -1;
    char err[200];
    cr_assert_eq(val_metrics_compute(r, 1, gt, 2, &m, err, sizeof err), -1);
    cr_assert(strstr(err, "class 1"), "%s", err);
}

static int same_metrics(const val_metrics *a, const val_metrics *b) {
    if (a->precision != b->precision || a->recall != b->recall || a->map50 != b->map50 ||
        a->map50_95 != b->map50_95 || a->conf != b->conf)
        return 0;
    return memcmp(a->ap, b->ap, (size_t)a->nc * VAL_NIOU * sizeof *a->ap) == 0;
}

/* Records with many equal confidences (quantised to .05) and mixed TP/FP at equal confidence: the
 * metrics must be bit-identical whatever the order and however the records are split between two
 * "workers" (each with its own partial ground-truth counts, summed by the coordinator). */
Test(metrics, split_and_order_invariance) {
    enum { N = 400, NC = 3 };
    val_record all[N], other[N];
    rng g = rng_keyed(7, 0, 0);
    for (int i = 0; i < N; i++) {
        float conf = (float)(1 + rng_u32(&g) % 20) * 0.05f;
        int cls = (int)(rng_u32(&g) % NC);
        int depth = (int)(rng_u32(&g) % 12) - 1; /* TP up to threshold index depth (monotone) */
        all[i] = (val_record){conf, cls, depth < 0 ? 0u : BITS(0, depth > 9 ? 9 : depth)};
    }
    int64_t gt[NC] = {150, 90, 60}, gt_a[NC] = {100, 30, 60}, gt_b[NC];
    for (int c = 0; c < NC; c++) gt_b[c] = gt[c] - gt_a[c];
    memcpy(other, all, sizeof all);
    val_metrics ref, m;
    cr_assert_eq(val_metrics_compute(other, N, gt, NC, &ref, NULL, 0), 0);
    cr_assert(ref.map50 > 0.05 && ref.map50 < 0.95, "a non-trivial set: %g", ref.map50);
    /* reversed */
    for (int i = 0; i < N; i++) other[i] = all[N - 1 - i];
    val_metrics_compute(other, N, gt, NC, &m, NULL, 0);
    cr_assert(same_metrics(&ref, &m), "reversed order changed the metrics");
    val_metrics_free(&m);
    /* shuffled */
    memcpy(other, all, sizeof all);
    for (int i = N - 1; i > 0; i--) {
        int j = (int)(rng_u32(&g) % (uint32_t)(i + 1));
        val_record t = other[i];
        other[i] = other[j];
        other[j] = t;
    }
    val_metrics_compute(other, N, gt, NC, &m, NULL, 0);
    cr_assert(same_metrics(&ref, &m), "shuffled order changed the metrics");
    val_metrics_free(&m);
    /* two workers: odd and even records; the coordinator concatenates worker 1 first */
    int k = 0;
    for (int i = 1; i < N; i += 2) other[k++] = all[i];
    for (int i = 0; i < N; i += 2) other[k++] = all[i];
    int64_t gsum[NC];
    for (int c = 0; c < NC; c++) gsum[c] = gt_b[c] + gt_a[c];
    val_metrics_compute(other, N, gsum, NC, &m, NULL, 0);
    cr_assert(same_metrics(&ref, &m), "a split across workers changed the metrics");
    val_metrics_free(&m);
    val_metrics_free(&ref);
}
