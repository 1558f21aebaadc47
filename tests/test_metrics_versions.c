/* mAP and prediction matching of the two supported releases (suite `valversion`): hand-derived
 * cases that run everywhere, and generated scenes (sparse, crowded, with ties) checked against
 * Ultralytics 8.4.190's own match_predictions and ap_per_class where that package is installed
 * (tests/pyref.h; skipped with the reason elsewhere). */
#include "common/rng.h"
#include "coordinator/metrics.h"
#include "kernels/nms.h"
#include "tests/pyref.h"
#include "tests/testenv.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BITS(lo, hi) ((((1u << ((hi) + 1)) - 1u) >> (lo)) << (lo)) /* bits lo..hi set */

static detection box(float x1, float y1, float x2, float y2, float conf, int cls) {
    return (detection){x1, y1, x2, y2, conf, cls};
}

/* ---- compute_ap: hand-derived ----------------------------------------------------------------
 * One prediction, a TP, of a class with 2 ground truths: recall [0.5], precision [1].
 *  8.4.33: mrec 0 .5 1, envelope 1 1 0: y = 1 up to .5, then 1 - 2 (x - .5):
 *          .5 + .5 * .5 / 2 = .75
 *  8.4.190: mrec 0 .5 .5 1, envelope 1 1 0 0: y = 1 below .5; at x = .5 numpy.interp takes the last
 *          of the equal xp (the 0): .49 + (1 + 0) / 2 * .01 = .495 */
Test(valversion, compute_ap_hand_cases) {
    double r[1] = {0.5}, p[1] = {1.0};
    cr_assert_float_eq(val_compute_ap_with(VAL_AP_TO_ONE, r, p, 1), 0.75, 1e-12);
    cr_assert_float_eq(val_compute_ap_with(VAL_AP_DROP_AFTER_LAST_RECALL, r, p, 1), 0.495, 1e-12);
    /* a perfect class scores .995 under both (the last point is y(1) = 0 either way) */
    double r1[2] = {0.5, 1.0}, p1[2] = {1.0, 1.0};
    cr_assert_float_eq(val_compute_ap_with(VAL_AP_TO_ONE, r1, p1, 2), 0.995, 1e-12);
    cr_assert_float_eq(val_compute_ap_with(VAL_AP_DROP_AFTER_LAST_RECALL, r1, p1, 2), 0.995, 1e-12);
    /* test_metrics.c's class 0 at t = 0..4: (R, P) = (1/3, 1) (1/3, 1/2) (2/3, 2/3) (2/3, 1/2).
     * 8.4.190: envelope 1 on [0, 1/3), 2/3 on (1/3, 2/3), 0 after 2/3:
     * .33 + (1 + 2/3) / 2 * .01 + 2/3 * .32 + (2/3 + 0) / 2 * .01 = .555 (8.4.33: .63915) */
    double r2[4] = {1. / 3, 1. / 3, 2. / 3, 2. / 3}, p2[4] = {1, .5, 2. / 3, .5};
    cr_assert_float_eq(val_compute_ap_with(VAL_AP_TO_ONE, r2, p2, 4), 0.63915, 1e-5);
    cr_assert_float_eq(val_compute_ap_with(VAL_AP_DROP_AFTER_LAST_RECALL, r2, p2, 4), 0.555, 1e-9);
}

Test(valversion, map_of_a_record_set_per_release) {
    /* class 0: 2 GTs, one TP at every threshold: AP .75 (8.4.33) vs .495 (8.4.190) */
    val_record r[1] = {{0.9f, 0, BITS(0, 9)}};
    int64_t gt[1] = {2};
    val_metrics a, b;
    cr_assert_eq(val_metrics_compute_with(VAL_AP_TO_ONE, r, 1, gt, 1, &a, NULL, 0), 0);
    cr_assert_eq(val_metrics_compute_with(VAL_AP_DROP_AFTER_LAST_RECALL, r, 1, gt, 1, &b, NULL, 0),
                 0);
    cr_assert_float_eq(a.map50, 0.75, 1e-12);
    cr_assert_float_eq(b.map50, 0.495, 1e-12);
    cr_assert_float_eq(b.map50_95, 0.495, 1e-12);
    cr_assert_float_eq(a.precision, b.precision, 0, "P and R do not depend on the release");
    cr_assert_float_eq(a.recall, b.recall, 0);
    val_metrics_free(&a);
    val_metrics_free(&b);
}

/* ---- matching: hand-derived ------------------------------------------------------------------
 * A = [0,0,10,10], B = [4,0,14,10] (class 0). p1 = A (conf .9): IoU 1 with A. p2 = [1,0,11,10]
 * (conf .8): IoU 9/11 = .818 with A, 7/13 = .538 with B.
 *  8.4.33: p2's best pair is A, which p1 (lower index) keeps: p2 is a false positive everywhere.
 *  8.4.190: A is claimed, so p2 claims B: a TP at .50 only (.538 < .55).
 * Two identical ground truths C1 = C2 = [20,0,30,10] and two identical predictions on them
 * (conf .7, .6): IoU ties everywhere.
 *  8.4.33: every pair has IoU 1; both predictions' first pair is C2 (the reversed stable sort puts
 *  the higher gt first), C2 keeps the lower prediction: p3 TP, p4 FP.
 *  8.4.190: p3 claims C1 (argmax: the first maximum), p4 claims C2: both TP. */
Test(valversion, matching_greedy_versus_iou_sorted) {
    const float gt[4][4] = {{0, 0, 10, 10}, {4, 0, 14, 10}, {20, 0, 30, 10}, {20, 0, 30, 10}};
    const int gc[4] = {0, 0, 0, 0};
    detection d[4] = {box(0, 0, 10, 10, 0.9f, 0), box(1, 0, 11, 10, 0.8f, 0),
                      box(20, 0, 30, 10, 0.7f, 0), box(20, 0, 30, 10, 0.6f, 0)};
    val_record s[4], g[4];
    val_match_with(VAL_MATCH_IOU_SORTED, d, 4, &gt[0][0], gc, 4, s);
    val_match_with(VAL_MATCH_GREEDY, d, 4, &gt[0][0], gc, 4, g);
    cr_assert_eq(s[0].tp, BITS(0, 9));
    cr_assert_eq(g[0].tp, BITS(0, 9));
    cr_assert_eq(s[1].tp, 0u, "8.4.33: %#x", s[1].tp);
    cr_assert_eq(g[1].tp, BITS(0, 0), "8.4.190: %#x", g[1].tp);
    cr_assert_eq(s[2].tp, BITS(0, 9));
    cr_assert_eq(s[3].tp, 0u);
    cr_assert_eq(g[2].tp, BITS(0, 9));
    cr_assert_eq(g[3].tp, BITS(0, 9), "8.4.190: the duplicate ground truth is claimed too");
    /* no ground truth, or none of the class: false positives under both */
    const int other[4] = {1, 1, 1, 1};
    val_match_with(VAL_MATCH_GREEDY, d, 4, &gt[0][0], other, 4, g);
    for (int i = 0; i < 4; i++) cr_assert_eq(g[i].tp, 0u);
    val_match_with(VAL_MATCH_GREEDY, d, 4, NULL, NULL, 0, g);
    for (int i = 0; i < 4; i++) cr_assert_eq(g[i].tp, 0u);
}

/* ---- generated scenes against Ultralytics 8.4.190 -------------------------------------------- */

enum { MAXP = 120, MAXG = 60, NIMG = 6, NCLS = 3 };

typedef struct scene_img {
    int np, ng;
    detection d[MAXP];
    float gt[MAXG][4];
    int gc[MAXG];
} scene_img;

typedef struct scene {
    int id;
    bool unique_conf; /* no equal confidences anywhere: ap_per_class's sort is then defined */
    scene_img im[NIMG];
} scene;

static int by_conf_desc(const void *a, const void *b) {
    float x = ((const detection *)a)->conf, y = ((const detection *)b)->conf;
    return (x < y) - (x > y);
}

/* kind 0: sparse; 1: crowded (many overlapping objects of few classes); 2: ties (duplicate
 * boxes and labels, confidences on a 0.05 grid). Predictions are jittered copies of ground
 * truths, some with another class, plus background boxes; sorted by confidence as NMS gives
 * them (equal confidences in whatever order qsort leaves them: both sides use that order). */
static void make_scene(scene *s, int id, int kind) {
    memset(s, 0, sizeof *s);
    s->id = id;
    s->unique_conf = kind != 2;
    rng r = rng_keyed(2024, (uint64_t)id, (uint64_t)kind);
    int uniq = 0;
    for (int i = 0; i < NIMG; i++) {
        scene_img *m = &s->im[i];
        m->ng = kind == 1 ? 30 + (int)(rng_uniform(&r) * 30) : 2 + (int)(rng_uniform(&r) * 8);
        if (i == NIMG - 1 && kind == 0) m->ng = 0; /* an image without objects */
        float span = kind == 1 ? 60.f : 300.f;
        for (int g = 0; g < m->ng; g++) {
            if (kind == 2 && g > 0 && rng_uniform(&r) < 0.3) { /* a duplicate label */
                memcpy(m->gt[g], m->gt[g - 1], sizeof m->gt[g]);
                m->gc[g] = m->gc[g - 1];
                continue;
            }
            float x = (float)(rng_uniform(&r) * span), y = (float)(rng_uniform(&r) * span);
            float w = 8 + (float)(rng_uniform(&r) * 40), h = 8 + (float)(rng_uniform(&r) * 40);
            if (kind == 2) x = floorf(x), y = floorf(y), w = floorf(w), h = floorf(h);
            m->gt[g][0] = x, m->gt[g][1] = y, m->gt[g][2] = x + w, m->gt[g][3] = y + h;
            m->gc[g] = (int)(rng_uniform(&r) * NCLS);
        }
        m->np = kind == 1 ? 80 + (int)(rng_uniform(&r) * 40) : 5 + (int)(rng_uniform(&r) * 20);
        for (int p = 0; p < m->np; p++) {
            float conf;
            if (kind == 2)
                conf = 0.05f * (float)(1 + (int)(rng_uniform(&r) * 19));
            else /* distinct over the whole scene */
                conf = (float)(0.001 +
                               0.998 * ((double)(uniq++) + rng_uniform(&r) * 0.5) / (NIMG * MAXP));
            if (m->ng == 0 || rng_uniform(&r) < 0.15) {
                float x = (float)(rng_uniform(&r) * span), y = (float)(rng_uniform(&r) * span);
                m->d[p] = box(x, y, x + 20, y + 15, conf, (int)(rng_uniform(&r) * NCLS));
                continue;
            }
            const float *b = m->gt[(int)(rng_uniform(&r) * m->ng)];
            float j = kind == 2 ? (float)((int)(rng_uniform(&r) * 5) - 2)
                                : (float)((rng_uniform(&r) - 0.5) * 8);
            float k = kind == 2 ? 0 : (float)((rng_uniform(&r) - 0.5) * 6);
            int cls = m->gc[(int)(b - m->gt[0]) / 4];
            if (rng_uniform(&r) < 0.1) cls = (int)(rng_uniform(&r) * NCLS);
            m->d[p] = box(b[0] + j, b[1] + k, b[2] + j, b[3] - k, conf, cls);
        }
        qsort(m->d, (size_t)m->np, sizeof *m->d, by_conf_desc);
    }
}

static void write_scene(FILE *f, const scene *s) {
    fprintf(f, "scene %d %d\n", s->id, NIMG);
    for (int i = 0; i < NIMG; i++) {
        const scene_img *m = &s->im[i];
        fprintf(f, "image %d %d\n", m->np, m->ng);
        for (int p = 0; p < m->np; p++)
            fprintf(f, "pred %d %a\n", m->d[p].cls, (double)m->d[p].conf);
        for (int g = 0; g < m->ng; g++) fprintf(f, "gt %d\n", m->gc[g]);
        for (int g = 0; g < m->ng; g++) {
            fprintf(f, "iou");
            for (int p = 0; p < m->np; p++) {
                float pb[4] = {m->d[p].x1, m->d[p].y1, m->d[p].x2, m->d[p].y2};
                fprintf(f, " %a", (double)box_iou_xyxy(m->gt[g], pb));
            }
            fprintf(f, "\n");
        }
    }
}

/* Our side of one scene: records (8.4.190 matching) and metrics (8.4.190 AP). */
static size_t ours(const scene *s, val_record *recs, int64_t *gt, val_metrics *m) {
    size_t n = 0;
    memset(gt, 0, NCLS * sizeof *gt);
    for (int i = 0; i < NIMG; i++) {
        const scene_img *im = &s->im[i];
        val_match_with(VAL_MATCH_GREEDY, im->d, im->np, &im->gt[0][0], im->gc, im->ng, recs + n);
        n += (size_t)im->np;
        for (int g = 0; g < im->ng; g++) gt[im->gc[g]]++;
    }
    val_record *copy = malloc(n * sizeof *copy);
    memcpy(copy, recs, n * sizeof *copy);
    cr_assert_eq(
        val_metrics_compute_with(VAL_AP_DROP_AFTER_LAST_RECALL, copy, n, gt, NCLS, m, NULL, 0), 0);
    free(copy);
    return n;
}

Test(valversion, matches_and_map_equal_ultralytics_8_4_190, .timeout = 300) {
    char why[512];
    const char *py = pyref_bench_python(why, sizeof why);
    if (!py) cr_skip_test("%s", why);
    char dir[256], in[300], out[300];
    test_temp_dir(dir, sizeof dir, "ulref");
    snprintf(in, sizeof in, "%s/in.txt", dir);
    snprintf(out, sizeof out, "%s/out.txt", dir);
    enum { NS = 12 };
    scene *sc = malloc(NS * sizeof *sc);
    FILE *f = fopen(in, "w");
    cr_assert(f);
    for (int i = 0; i < NS; i++) {
        make_scene(&sc[i], i, i % 3);
        write_scene(f, &sc[i]);
    }
    cr_assert_eq(fclose(f), 0);
    cr_assert_eq(pyref_run(py, repo_path("tests/py/ul190_metrics.py"), in, out, why, sizeof why), 0,
                 "%s", why);
    f = fopen(out, "r");
    cr_assert(f);
    val_record *recs = malloc(NIMG * MAXP * sizeof *recs);
    char line[4096];
    int checked_tp = 0, checked_ap = 0, tp_total = 0;
    int si = -1;
    size_t base[NIMG + 1];
    val_metrics m;
    memset(&m, 0, sizeof m);
    int64_t gt[NCLS];
    double worst = 0;
    while (fgets(line, sizeof line, f)) {
        int a, b;
        unsigned bits;
        if (sscanf(line, "scene %d", &a) == 1) {
            if (si >= 0) val_metrics_free(&m);
            si = a;
            ours(&sc[si], recs, gt, &m);
            base[0] = 0;
            for (int i = 0; i < NIMG; i++) base[i + 1] = base[i] + (size_t)sc[si].im[i].np;
        } else if (sscanf(line, "tp %d %d %u", &a, &b, &bits) == 3) {
            uint32_t got = recs[base[a] + (size_t)b].tp;
            cr_assert_eq(got, bits, "scene %d image %d prediction %d: tp %#x, Ultralytics %#x", si,
                         a, b, got, bits);
            checked_tp++;
            tp_total += bits != 0;
        } else if (!strncmp(line, "ap ", 3) && sc[si].unique_conf) {
            char *e;
            int c = (int)strtol(line + 3, &e, 10);
            for (int t = 0; t < VAL_NIOU; t++) {
                double ref = strtod(e, &e), got = m.ap[(size_t)c * VAL_NIOU + t];
                worst = fmax(worst, fabs(got - ref));
                cr_assert(fabs(got - ref) <= 1e-12, "scene %d class %d t %d: AP %.17g vs %.17g", si,
                          c, t, got, ref);
            }
            checked_ap++;
        } else if (!strncmp(line, "pr ", 3) && sc[si].unique_conf) {
            char *e;
            int c = (int)strtol(line + 3, &e, 10);
            double p = strtod(e, &e), r = strtod(e, &e);
            cr_assert(fabs(m.p[c] - p) <= 1e-12 && fabs(m.r[c] - r) <= 1e-12,
                      "scene %d class %d: P %.17g R %.17g vs %.17g %.17g", si, c, m.p[c], m.r[c], p,
                      r);
        } else if (!strncmp(line, "mean ", 5) && sc[si].unique_conf) {
            char *e = line + 5;
            double v[4];
            for (int k = 0; k < 4; k++) v[k] = strtod(e, &e);
            cr_assert(fabs(m.precision - v[0]) <= 1e-12 && fabs(m.recall - v[1]) <= 1e-12 &&
                          fabs(m.map50 - v[2]) <= 1e-12 && fabs(m.map50_95 - v[3]) <= 1e-12,
                      "scene %d: P %.17g R %.17g mAP50 %.17g mAP50-95 %.17g vs %.17g %.17g %.17g "
                      "%.17g",
                      si, m.precision, m.recall, m.map50, m.map50_95, v[0], v[1], v[2], v[3]);
        }
    }
    fclose(f);
    if (si >= 0) val_metrics_free(&m);
    int total_preds = 0;
    for (int i = 0; i < NS; i++)
        for (int j = 0; j < NIMG; j++) total_preds += sc[i].im[j].np;
    cr_assert_eq(checked_tp, total_preds, "every prediction compared");
    cr_assert_gt(checked_ap, 10, "per-class APs compared");
    cr_assert(tp_total > total_preds / 10 && tp_total < total_preds,
              "scenes are not trivial: %d/%d", tp_total, total_preds);
    cr_log_info(
        "%d predictions' TP bits equal Ultralytics 8.4.190; %d class APs, worst |diff| %.3g",
        checked_tp, checked_ap, worst);
    free(recs);
    free(sc);
    test_remove_dir(dir);
}
