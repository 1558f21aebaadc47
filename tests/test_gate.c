/* gate (docs/lifecycle.md): the decision rules on known metrics, and the command on real versions:
 * equal models pass with min_delta=0, a model with one class silenced fails naming that class,
 * the better model passes; bad usage exits 2. */
#include "coordinator/ckpt_file.h"
#include "lifecycle/gate_rules.h"
#include "lifecycle_util.h"
#include "runs.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Metrics of nc classes with per-class AP at every threshold = ap[c]. */
static val_metrics fake(int nc, const double *ap) {
    val_metrics m = {.nc = nc, .n_eval = nc};
    m.ap = calloc((size_t)nc * VAL_NIOU, sizeof *m.ap);
    m.p = calloc((size_t)nc, sizeof *m.p);
    m.r = calloc((size_t)nc, sizeof *m.r);
    m.gt = calloc((size_t)nc, sizeof *m.gt);
    double s = 0;
    for (int c = 0; c < nc; c++) {
        for (int t = 0; t < VAL_NIOU; t++) m.ap[c * VAL_NIOU + t] = ap[c];
        m.gt[c] = 5;
        s += ap[c];
    }
    m.map50 = m.map50_95 = s / nc;
    return m;
}

static void unfake(val_metrics *m) {
    free(m->ap), free(m->p), free(m->r), free(m->gt);
}

Test(gate, rules_on_known_metrics) {
    const char *names[3] = {"cat", "dog", "owl"};
    double a[3] = {0.5, 0.6, 0.7}, b[3] = {0.5, 0.3, 0.72};
    val_metrics base = fake(3, a), same = fake(3, a), worse = fake(3, b);
    gate_rules r = {.metric = GATE_MAP50_95, .min_delta = 0, .max_drop_per_class = -1};
    gate_verdict v;
    gate_decide(&r, &same, &base, 3, names, &v);
    cr_assert(v.pass, "equal passes with min_delta 0");
    cr_assert_eq(v.delta, 0);
    gate_verdict_free(&v);
    r.min_delta = 0.01;
    gate_decide(&r, &same, &base, 3, names, &v);
    cr_assert(!v.pass && v.overall_failed, "equal fails a positive min_delta");
    cr_assert(strstr(v.reason, "min_delta"), "%s", v.reason);
    gate_verdict_free(&v);
    r.min_delta = -1, r.max_drop_per_class = 0.05;
    gate_decide(&r, &worse, &base, 3, names, &v);
    cr_assert(!v.pass && !v.overall_failed);
    cr_assert_eq(v.nfailed, 1);
    cr_assert_eq(v.failed[0], 1, "dog dropped 0.3");
    cr_assert(strstr(v.reason, "class 'dog'") && !strstr(v.reason, "owl"), "%s", v.reason);
    gate_verdict_free(&v);
    gate_decide(&r, &base, &worse, 3, names, &v);
    cr_assert(v.pass, "the better model passes (owl's 0.02 drop is within 0.05)");
    gate_verdict_free(&v);
    gate_metric m;
    cr_assert_eq(gate_metric_parse("mAP50", &m), 0);
    cr_assert_eq(m, GATE_MAP50);
    cr_assert_neq(gate_metric_parse("accuracy", &m), 0);
    unfake(&base), unfake(&same), unfake(&worse);
}

/* A copy of version src with class `cls` silenced: its logit bias in every class branch of the
 * head set to -30 (sigmoid ~ 1e-13), so the model never predicts it. */
static void silence_class(const char *src, const char *dst, int cls) {
    char err[512];
    ckpt_file *f = ckpt_open(src, err, sizeof err);
    cr_assert(f, "%s", err);
    int n = ckpt_num_tensors(f), hits = 0;
    ckpt_tensor *t = calloc((size_t)n, sizeof *t);
    for (int i = 0; i < n; i++) {
        t[i] = *ckpt_tensor_at(f, i);
        void *d = malloc((size_t)ckpt_tensor_numel(&t[i]) * ckpt_dtype_size(t[i].dtype) + 1);
        cr_assert_eq(ckpt_read_tensor(f, i, d, err, sizeof err), 0, "%s", err);
        size_t len = strlen(t[i].name);
        /* model.22.cv3.<level>.2.bias: the class logits' conv of each level */
        if (!strncmp(t[i].name, "ema/", 4) && strstr(t[i].name, ".cv3.") && len > 7 &&
            !strcmp(t[i].name + len - 7, ".2.bias")) {
            ((float *)d)[cls] = -30;
            hits++;
        }
        t[i].data = d;
    }
    cr_assert_eq(hits, 3, "three levels of class logits");
    ckpt_meta meta = *ckpt_file_meta(f);
    cr_assert_eq(ckpt_write(dst, &meta, t, n, err, sizeof err), 0, "%s", err);
    for (int i = 0; i < n; i++) free((void *)t[i].data);
    free(t);
    ckpt_close(f);
}

static cJSON *gate_json(const char *dir, const char *name, const char *args, int want_rc) {
    char out[400];
    snprintf(out, sizeof out, "%s/%s.json", dir, name);
    int rc = run_sh("\"$YOLO_COORD\" gate %s --json > %s 2> %s/%s.err", args, out, dir, name);
    cr_assert_eq(rc, want_rc, "gate %s: exit %d, want %d; see %s", name, rc, want_rc, out);
    char *t = lc_read(out);
    cJSON *j = cJSON_Parse(t);
    cr_assert(j, "%s: JSON on stdout", out);
    free(t);
    return j;
}

Test(gate, better_passes_worse_fails_naming_the_class_equal_passes, .timeout = 1500) {
    char dir[256], data[400], path[600], args[2000];
    lc_tmpdir(dir, "lc-gate");
    lc_synth(dir, 3, data);
    lc_train(dir, data, 2, "plots=False");
    /* Labels the model partly gets right: its own boxes on the val images (the drift command's
     * annotation set, re-packed as the walkthrough does). A model trained for two epochs of 32
     * images scores low and draws huge boxes, so every box above 0.001 is a label, at imgsz 320
     * where boxes of the stride-8 level fit inside the images unclipped. */
    cr_assert_eq(run_sh("\"$YOLO_COORD\" drift model=%s/r reference=%s new=%s conf=0.001 "
                        "conf_floor=0.001 annotate=20 imgsz=320 project=%s name=labels "
                        "> %s/drift.log 2>&1; "
                        "\"$YOLO_COORD\" data pack data=%s/labels/annotate.yaml out=%s/own.h5 "
                        "> %s/pack.log 2>&1",
                        dir, data, data, dir, dir, dir, dir, dir),
                 0, "labels from the model; see %s/drift.log, %s/pack.log", dir, dir);
    char last[400], silenced[400];
    snprintf(last, sizeof last, "%s/r/weights/last.h5", dir);
    snprintf(silenced, sizeof silenced, "%s/silenced.h5", dir);
    silence_class(last, silenced, 1);
    /* max_det high enough that no image's boxes are cut: silencing one class then leaves the
     * others' boxes exactly as they were */
    const char *common = "split=train imgsz=320 max_det=5000 batch=16";
    /* the baseline as a CI step names it: the run's production tag */
    cr_assert_eq(run_sh("\"$YOLO_COORD\" ckpt tag %s/r last production > /dev/null", dir), 0);
    snprintf(args, sizeof args,
             "candidate=%s/r:last baseline=%s/r@production data=%s/own.h5 min_delta=0 %s", dir, dir,
             dir, common);
    cJSON *j = gate_json(dir, "equal", args, 0);
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(j, "pass")));
    const cJSON *all = cJSON_GetObjectItem(j, "all");
    cr_assert_eq(cJSON_GetObjectItem(all, "diff")->valuedouble, 0, "the same weights: 0");
    cr_assert_gt(cJSON_GetObjectItem(all, "candidate")->valuedouble, 0.02,
                 "the model finds some of its own boxes");
    cJSON_Delete(j);
    snprintf(args, sizeof args,
             "candidate=%s baseline=%s/r:last data=%s/own.h5 max_drop_per_class=0.05 %s", silenced,
             dir, dir, common);
    j = gate_json(dir, "worse", args, 1);
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItem(j, "pass")));
    const cJSON *failed = cJSON_GetObjectItem(j, "failed_classes");
    cr_assert_eq(cJSON_GetArraySize(failed), 1, "one class dropped");
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetArrayItem(failed, 0)), "rectangle");
    cr_assert(strstr(cJSON_GetStringValue(cJSON_GetObjectItem(j, "reason")),
                     "max_drop_per_class: class 'rectangle'"),
              "the rule and the class are named");
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(j, "classes")) {
        const char *nm = cJSON_GetStringValue(cJSON_GetObjectItem(c, "name"));
        double d = cJSON_GetObjectItem(c, "diff")->valuedouble;
        if (!strcmp(nm, "rectangle"))
            cr_assert_lt(d, -0.05, "rectangle dropped");
        else
            cr_assert_eq(d, 0, "%s unchanged", nm);
    }
    cJSON_Delete(j);
    snprintf(
        args, sizeof args,
        "candidate=%s/r:last baseline=%s data=%s/own.h5 min_delta=0.01 max_drop_per_class=0 %s",
        dir, silenced, dir, common);
    j = gate_json(dir, "better", args, 0);
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(j, "pass")));
    cr_assert_gt(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "all"), "diff")->valuedouble, 0.01);
    cJSON_Delete(j);
    /* the table, without --json */
    snprintf(path, sizeof path, "%s/table.txt", dir);
    cr_assert_eq(run_sh("\"$YOLO_COORD\" gate candidate=%s baseline=%s/r:last data=%s/own.h5 "
                        "metric=mAP50 %s > %s 2>&1",
                        silenced, dir, dir, common, path),
                 1);
    cr_assert(run_file_has(path, "FAIL: min_delta: mAP50"), "see %s", path);
    cr_assert(run_file_has(path, "rectangle") && run_file_has(path, "candidate"));
    cr_assert_eq(run_sh("\"$YOLO_COORD\" gate candidate=%s baseline=%s/r:nothere data=%s/own.h5 "
                        "2> %s",
                        silenced, dir, dir, path),
                 2, "an unknown baseline is no verdict");
    cr_assert(run_file_has(path, "nothere"));
    lc_rm_rf(dir);
}
