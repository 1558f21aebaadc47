/* drift (docs/lifecycle.md): the statistics against hand-computed values, the shifted looks of
 * the synthetic generator, and the command on the shapes data: a shifted copy (darker, smaller
 * objects, a striped background) flags drift, a fresh sample of the same generator does not; the
 * images worth annotating pack into a dataset. */
#include "dataio/synth.h"
#include "lifecycle/drift_checks.h"
#include "lifecycle/drift_stats.h"
#include "lifecycle_util.h"
#include "runs.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Test(drift, ks_statistic_and_p_value) {
    double a[5] = {5, 1, 4, 2, 3}, b[5] = {3, 4, 5, 6, 7}, p;
    cr_assert_float_eq(drift_ks(a, 5, b, 5, &p), 0.4, 1e-12, "ECDFs differ most at 2: 0.4 vs 0");
    cr_assert(p > 0.5 && p <= 1, "5 vs 5 values: no evidence (p %g)", p);
    double c[4] = {1, 1, 2, 2}, d[4] = {1, 1, 2, 2};
    cr_assert_eq(drift_ks(c, 4, d, 4, &p), 0, "identical samples, ties included");
    double e[50], f[50];
    for (int i = 0; i < 50; i++) e[i] = i, f[i] = 100 + i;
    cr_assert_eq(drift_ks(e, 50, f, 50, &p), 1);
    cr_assert_lt(p, 1e-15, "disjoint samples of 50: p %g", p);
    /* the threshold: at least 0.1, else the alpha = 0.001 critical value */
    cr_assert_float_eq(drift_ks_threshold(100, 100), 1.949 * sqrt(0.02), 1e-12);
    cr_assert_float_eq(drift_ks_threshold(100000, 100000), 0.1, 1e-12);
}

Test(drift, population_stability_index) {
    int64_t r[2] = {50, 50}, c[2] = {25, 75};
    double want = (0.25 - 0.5) * log(0.25 / 0.5) + (0.75 - 0.5) * log(0.75 / 0.5);
    cr_assert_float_eq(drift_psi_counts(r, c, 2), want, 1e-12);
    int64_t z[2] = {100, 0}; /* an empty bin counts as 1e-4 */
    double want2 = (1e-4 - 0.5) * log(1e-4 / 0.5) + (1 - 0.5) * log(1 / 0.5);
    cr_assert_float_eq(drift_psi_counts(r, z, 2), want2, 1e-12);
    double x[1000], y[1000];
    for (int i = 0; i < 1000; i++) x[i] = y[i] = (i * 7919) % 1000;
    int bins;
    cr_assert_float_eq(drift_psi(x, 1000, y, 1000, &bins), 0, 1e-12, "the same sample");
    cr_assert_eq(bins, 10, "deciles");
    for (int i = 0; i < 1000; i++) y[i] = x[i] + 500; /* half of it past every reference decile */
    cr_assert_gt(drift_psi(x, 1000, y, 1000, &bins), 1, "a large shift");
    cr_assert_float_eq(drift_psi_threshold(10, 100, 100), 0.2 + 9 * 0.02, 1e-12,
                       "0.2 plus the small-sample bias");
    double t = drift_share_threshold(0.1, 0.5, 100, 0.5, 100);
    cr_assert_float_eq(t, 3.29 * sqrt(0.25 * 0.02), 1e-12, "z-test bound above the minimum");
    cr_assert_float_eq(drift_share_threshold(0.1, 0.5, 1000000, 0.5, 1000000), 0.1, 1e-12);
}

Test(drift, image_statistics) {
    uint8_t img[4 * 4 * 3];
    for (int i = 0; i < 16; i++) memset(img + 3 * i, i < 8 ? 0 : 200, 3);
    double b, c;
    drift_image_stats(img, 4, 4, 1, &b, &c);
    cr_assert_float_eq(b, 100, 1e-9, "grey levels: luma of grey is the grey");
    cr_assert_float_eq(c, 100, 1e-9, "half 0, half 200");
}

/* Mean of an image and its boxes' largest side. */
static void look(const synth_style *st, int index, double *mean, double *side, uint8_t *out) {
    uint8_t rgb[64 * 64 * 3];
    float lab[SYNTH_MAX_OBJECTS * 5];
    int n = synth_image_styled(5, SPLIT_VAL, index, 64, 3, st, rgb, lab);
    double s = 0;
    for (int i = 0; i < 64 * 64 * 3; i++) s += rgb[i];
    *mean = s / (64 * 64 * 3);
    *side = 0;
    for (int k = 0; k < n; k++) *side = fmax(*side, fmax(lab[5 * k + 3], lab[5 * k + 4]));
    if (out) memcpy(out, rgb, sizeof rgb);
}

Test(drift, synthetic_shifted_looks) {
    synth_style def = synth_style_default(), dark = def, small = def, stripes = def;
    dark.brightness = 0.5;
    small.object_scale = 0.5;
    stripes.background = SYNTH_BG_STRIPES;
    static uint8_t a[64 * 64 * 3], b[64 * 64 * 3];
    float la[SYNTH_MAX_OBJECTS * 5];
    double m0 = 0, m1 = 0, s0 = 0, s1 = 0, m, s;
    for (int i = 0; i < 40; i++) {
        synth_image(5, SPLIT_VAL, i, 64, 3, a, la);
        look(&def, i, &m, &s, b);
        cr_assert_eq(memcmp(a, b, sizeof a), 0, "the default style draws the default images");
        m0 += m, s0 = fmax(s0, s);
        look(&dark, i, &m1, &s, NULL);
        cr_assert_lt(m1, 0.55 * m + 1, "darker: image %d", i);
        look(&small, i, &m, &s, NULL);
        s1 = fmax(s1, s);
    }
    cr_assert_gt(s0, 0.3, "default objects reach 40 %% of the side");
    cr_assert_leq(s1, 0.2 + 1e-6, "object_scale 0.5: at most 20 %% of the side");
    /* stripes: the background alternates between two colours along a diagonal */
    look(&stripes, 3, &m, &s, a);
    look(&def, 3, &m, &s, b);
    cr_assert_neq(memcmp(a, b, sizeof a), 0);
    int changes = 0;
    for (int x = 1; x < 64; x++)
        changes += abs(a[3 * x] - a[3 * (x - 1)]) + abs(a[3 * x + 1] - a[3 * (x - 1) + 1]) > 100;
    cr_assert_geq(changes, 4, "stripe edges along the top row (%d)", changes);
}

static cJSON *report(const char *dir, const char *name) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s/report.json", dir, name);
    char *t = lc_read(path);
    cJSON *j = cJSON_Parse(t);
    free(t);
    cr_assert(j, "%s is JSON", path);
    return j;
}

static const cJSON *check(const cJSON *rep, const char *what, const char *stat) {
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(rep, "checks")) {
        if (!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(c, "check")), what) &&
            !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(c, "statistic")), stat))
            return c;
    }
    cr_assert_fail("no check %s %s", what, stat);
    return NULL;
}

Test(drift, shifted_shapes_drift_and_a_fresh_sample_does_not, .timeout = 1500) {
    char dir[256], data[400], path[700];
    lc_tmpdir(dir, "lc-drift");
    lc_synth(dir, 3, data);
    cr_assert_eq(run_sh("\"$YOLO_COORD\" data synth out=%s/ref.h5 train=1 val=120 imgsz=64 "
                        "classes=3 seed=11 > /dev/null && "
                        "\"$YOLO_COORD\" data synth out=%s/fresh.h5 train=1 val=120 imgsz=64 "
                        "classes=3 seed=12 > /dev/null && "
                        "\"$YOLO_COORD\" data synth out=%s/shifted.h5 train=1 val=120 imgsz=64 "
                        "classes=3 seed=12 brightness=0.5 object_scale=0.5 background=stripes "
                        "> /dev/null",
                        dir, dir, dir),
                 0);
    lc_train(dir, data, 2, "plots=False");
    int rc = run_sh("\"$YOLO_COORD\" drift model=%s/r reference=%s/ref.h5 new=%s/shifted.h5 "
                    "annotate=10 project=%s name=shifted > %s/shifted.log 2>&1",
                    dir, dir, dir, dir, dir);
    cr_assert_eq(rc, 1, "the shifted copy drifts (exit 1); see %s/shifted.log", dir);
    cJSON *r = report(dir, "shifted");
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(r, "drift")));
    const cJSON *b = check(r, "image brightness", "KS");
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(b, "drift")), "darker images are noticed");
    cr_assert_gt(cJSON_GetObjectItem(b, "value")->valuedouble,
                 cJSON_GetObjectItem(b, "threshold")->valuedouble);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(r, "annotate")), 10);
    cJSON_Delete(r);
    snprintf(path, sizeof path, "%s/shifted.log", dir);
    cr_assert(run_file_has(path, "top confidence (any class)") && run_file_has(path, "DRIFT"),
              "the table names each check");
    /* the images worth annotating pack into a dataset as they are */
    snprintf(path, sizeof path, "%s/shifted/annotate.txt", dir);
    char *list = lc_read(path);
    int lines = 0;
    for (char *p = list; *p; p++) lines += *p == '\n';
    cr_assert_eq(lines, 10);
    free(list);
    cr_assert_eq(run_sh("\"$YOLO_COORD\" data pack data=%s/shifted/annotate.yaml out=%s/new.h5 "
                        "> %s/pack.log 2>&1 && \"$YOLO_COORD\" data info %s/new.h5 >> %s/pack.log",
                        dir, dir, dir, dir, dir),
                 0, "data pack takes the annotation set; see %s/pack.log", dir);
    snprintf(path, sizeof path, "%s/pack.log", dir);
    cr_assert(run_file_has(path, "train: 8 images") && run_file_has(path, "val: 2 images"),
              "10 images packed, every fifth to val; see %s", path);
    cr_assert(run_file_has(path, "3 classes"), "the model's classes");
    /* a fresh sample of the same generator */
    rc = run_sh("\"$YOLO_COORD\" drift model=%s/r reference=%s/ref.h5 new=%s/fresh.h5 "
                "annotate=0 project=%s name=fresh > %s/fresh.log 2>&1",
                dir, dir, dir, dir, dir);
    cr_assert_eq(rc, 0, "a fresh sample does not drift (exit 0); see %s/fresh.log", dir);
    r = report(dir, "fresh");
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItem(r, "drift")));
    int tested = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(r, "checks")) tested +=
        cJSON_IsTrue(cJSON_GetObjectItem(c, "tested"));
    cr_assert_geq(tested, 8, "the checks ran (%d tested)", tested);
    cJSON_Delete(r);
    lc_rm_rf(dir);
}

/* A side of n images whose top confidences are lo + (hi - lo) * i / n, class i % 2, with
 * brightness b. */
static drift_side fake_side(int n, double lo, double hi, double b) {
    drift_side s = {.n = n, .nc = 2};
    s.brightness = calloc((size_t)n, sizeof(double));
    s.contrast = calloc((size_t)n, sizeof(double));
    s.size = calloc((size_t)n, sizeof(double));
    s.max_conf = calloc((size_t)n, sizeof(double));
    s.class_conf = calloc((size_t)n * 2, sizeof(double));
    for (int i = 0; i < n; i++) {
        double c = lo + (hi - lo) * ((i * 37) % n) / n; /* shuffled: no order effects */
        s.max_conf[i] = c;
        s.class_conf[i * 2 + i % 2] = c;
        s.brightness[i] = b + (i % 10);
        s.contrast[i] = 20 + (i % 7);
        s.size[i] = 640;
    }
    return s;
}

static const drift_check *find(const drift_check *c, int n, const char *what, const char *stat) {
    for (int i = 0; i < n; i++)
        if (!strcmp(c[i].what, what) && !strcmp(c[i].stat, stat)) return &c[i];
    cr_assert_fail("no check %s %s", what, stat);
    return NULL;
}

Test(drift, checks_flag_a_confidence_shift_and_keep_quiet_on_the_same_distribution) {
    char *names[2] = {"cat", "dog"};
    drift_settings st = {.conf = 0.25, .no_det_delta = 0.1};
    drift_side ref = fake_side(200, 0.3, 0.9, 100), same = fake_side(200, 0.3, 0.9, 100),
               low = fake_side(200, 0.05, 0.6, 100);
    drift_check *c;
    int n;
    drift_run_checks(&st, names, &ref, &same, &c, &n);
    for (int i = 0; i < n; i++)
        cr_assert(!c[i].drift, "%s %s: %g > %g", c[i].what, c[i].stat, c[i].value, c[i].threshold);
    cr_assert(find(c, n, "top confidence cat", "KS")->tested, "per class");
    free(c);
    drift_run_checks(&st, names, &ref, &low, &c, &n);
    cr_assert(find(c, n, "top confidence (any class)", "KS")->drift);
    cr_assert(find(c, n, "top confidence (any class)", "PSI")->drift);
    cr_assert(find(c, n, "top confidence dog", "KS")->drift);
    const drift_check *nd = find(c, n, "images without a confident detection", "share");
    cr_assert(nd->drift, "0 %% -> 36 %% of images below 0.25 (%g vs %g)", nd->value, nd->threshold);
    cr_assert(!find(c, n, "image brightness", "KS")->drift, "the images did not change");
    free(c);
    drift_side_free(&ref), drift_side_free(&same), drift_side_free(&low);
}
