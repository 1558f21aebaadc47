/* drift: a version's predictions and the images on reference data (what it was validated on)
 * against new data; every statistic with its value and threshold, exit 1 when one is crossed,
 * and the new images most worth annotating, ready for `data pack`. */
#include "common/atomic_file.h"
#include "common/log.h"
#include "coordinator/cli.h"
#include "lifecycle/commands.h"
#include "lifecycle/drift_annotate.h"
#include "lifecycle/drift_checks.h"
#include "lifecycle/eval_args.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const cli_spec spec = {
    .name = "drift",
    .usage =
        "model=<run|run:vN|run@tag|file> new=<folder|image|h5|yaml> [new_split=val]\n"
        "       [reference=<h5|yaml> (the training dataset)] [reference_split=val] [conf=0.25]\n"
        "       [conf_floor=0.05] [no_detection_delta=0.1] [annotate=100] [--json]\n"
        "       [imgsz=<training imgsz>] [device=cpu] [project=runs/detect] [name=drift] ...",
    .help =
        "Runs the model over reference data and new data and compares, per class and\n"
        "overall, the distribution of each image's highest confidence (detections above\n"
        "conf_floor count; "
        "PSI and two-sample KS), the predicted-class frequencies (PSI, detections above conf),\n"
        "the share of images without a detection above conf, and the images' brightness,\n"
        "contrast and size (PSI and KS): each value with its threshold (docs/lifecycle.md).\n"
        "Exit 1 when any threshold is crossed. The `annotate` new images the model is least\n"
        "sure about (1 - highest confidence) go to project/name/images with the model's boxes\n"
        "as pre-annotations in labels/, listed in annotate.txt, with annotate.yaml ready for\n"
        "`coordinator data pack data=.../annotate.yaml out=new.h5`.",
    .flags = "json",
    .keys = "model,new,new_split,reference,reference_split,conf_floor,no_detection_delta,"
            "annotate," EVAL_ARGS_KEYS,
};

typedef struct side {
    eval_source src;
    eval_result r;
    drift_side s;
} side;

static int run_side(eval_model *em, const char *spec_, const char *split, const eval_opts *o,
                    side *s, char *err, size_t errlen) {
    if (eval_source_open(spec_, split, &s->src, err, errlen) != 0) return -1;
    fprintf(stderr, "drift: %s: %d images\n", s->src.ds ? s->src.path : spec_, s->src.n);
    if (eval_run(em, &s->src, o, &s->r, err, errlen) != 0) return -1;
    return drift_side_collect(&s->src, &s->r, em->nc, &s->s, err, errlen);
}

static void side_free(side *s) {
    drift_side_free(&s->s);
    eval_result_free(&s->r);
    eval_source_close(&s->src);
}

static void print_checks(const drift_check *c, int n) {
    printf("%-42s%7s%11s%11s%8s  %s\n", "check", "stat", "value", "threshold", "result", "detail");
    for (int i = 0; i < n; i++) {
        if (!c[i].tested) {
            printf("%-42s%7s%11s%11s%8s  %zu vs %zu values: too few to test\n", c[i].what,
                   c[i].stat, "-", "-", "n/a", c[i].n, c[i].m);
            continue;
        }
        printf("%-42s%7s%11.4f%11.4f%8s  %s\n", c[i].what, c[i].stat, c[i].value, c[i].threshold,
               c[i].drift ? "DRIFT" : "ok", c[i].detail);
    }
}

static cJSON *checks_json(const drift_check *c, int n, bool drift, const char *model,
                          const char *ref, const char *cur) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "drift", drift);
    cJSON_AddStringToObject(j, "model", model);
    cJSON_AddStringToObject(j, "reference", ref);
    cJSON_AddStringToObject(j, "new", cur);
    cJSON *a = cJSON_AddArrayToObject(j, "checks");
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "check", c[i].what);
        cJSON_AddStringToObject(o, "statistic", c[i].stat);
        cJSON_AddBoolToObject(o, "tested", c[i].tested);
        if (c[i].tested) {
            cJSON_AddNumberToObject(o, "value", c[i].value);
            cJSON_AddNumberToObject(o, "threshold", c[i].threshold);
        }
        cJSON_AddBoolToObject(o, "drift", c[i].drift);
        cJSON_AddNumberToObject(o, "n_reference", (double)c[i].n);
        cJSON_AddNumberToObject(o, "n_new", (double)c[i].m);
        cJSON_AddStringToObject(o, "detail", c[i].detail);
        cJSON_AddItemToArray(a, o);
    }
    return j;
}

/* report.json and the annotation set into dir; the report also on stdout with --json. */
static int write_outputs(const char *dir, eval_model *em, side *cur, const drift_check *c, int n,
                         bool drift, long annotate, float conf, const char *ref_name, bool json,
                         char *err, size_t errlen) {
    cJSON *j =
        checks_json(c, n, drift, em->label, ref_name, cur->src.ds ? cur->src.path : cur->src.spec);
    drift_pick *picks = NULL;
    int k = drift_rank(cur->s.max_conf, cur->r.n, (int)annotate, &picks);
    cJSON *a = cJSON_AddArrayToObject(j, "annotate");
    for (int i = 0; i < k; i++) {
        char name[4200];
        eval_source_name(&cur->src, picks[i].index, name, sizeof name);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "image", name);
        cJSON_AddNumberToObject(o, "index", picks[i].index);
        cJSON_AddNumberToObject(o, "score", picks[i].score);
        cJSON_AddItemToArray(a, o);
    }
    cJSON_AddStringToObject(j, "ranking", "least confident: 1 - the image's highest confidence");
    char *text = cJSON_Print(j);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/report.json", dir);
    int rc = atomic_write_file(path, text, strlen(text), err, errlen);
    if (json) printf("%s\n", text);
    free(text);
    cJSON_Delete(j);
    if (rc == 0 && k > 0)
        rc = drift_write_annotation_set(dir, &cur->src, &cur->r, em, picks, k, conf, err, errlen);
    if (rc == 0 && !json)
        printf("report %s; %d image(s) to annotate: %s/annotate.txt (least confident first), "
               "pack with: coordinator data pack data=%s/annotate.yaml out=<new.h5>\n",
               path, k, dir, dir);
    free(picks);
    return rc;
}

int cmd_drift(int argc, char **argv) {
    cli_args c;
    if (cli_parse(&spec, argc, argv, &c) != 0) return 2;
    if (c.help) return cli_free(&c), cli_help(&spec);
    kv_args *a = &c.kv;
    char err[2048];
    eval_args ea;
    double floor_, no_det;
    long annotate;
    const char *model = kv_get(a, "model"), *cur_spec = kv_get(a, "new"),
               *ref_spec = kv_get(a, "reference");
    int rc = 0;
    if (eval_args_parse(a, 16, 0.25, "drift", &ea, err, sizeof err) ||
        kv_get_double(a, "conf_floor", 0.05, &floor_, err, sizeof err) ||
        kv_get_double(a, "no_detection_delta", 0.1, &no_det, err, sizeof err) ||
        kv_get_long(a, "annotate", 100, &annotate, err, sizeof err))
        rc = cli_usage_error(&spec, "%s", err);
    else if (!model || !cur_spec)
        rc = cli_usage_error(&spec, "model= and new= are required");
    else if (!(floor_ >= 0 && floor_ <= ea.conf))
        rc = cli_usage_error(&spec, "conf_floor=%g: expected 0..conf (%g)", floor_, ea.conf);
    else if (!(no_det > 0 && no_det <= 1) || annotate < 0)
        rc = cli_usage_error(&spec, "no_detection_delta in (0, 1] and annotate >= 0 expected");
    eval_model em = {0};
    if (rc == 0 && eval_model_load(model, &ea.dev, &em, err, sizeof err) != 0)
        rc = 2, log_error("%s", err);
    if (rc == 0 && !ref_spec) {
        if (em.dataset[0] && access(em.dataset, R_OK) == 0)
            ref_spec = em.dataset;
        else
            rc = cli_usage_error(&spec,
                                 "reference= is required (%s records no dataset that "
                                 "still exists)",
                                 em.label);
    }
    side ref = {0}, cur = {0};
    eval_opts o;
    if (rc == 0) {
        eval_args_opts(&ea, &em, false, &o);
        o.conf = (float)floor_; /* keep what the confidence distributions need */
        if (run_side(&em, ref_spec, kv_get(a, "reference_split"), &o, &ref, err, sizeof err) ||
            run_side(&em, cur_spec, kv_get(a, "new_split"), &o, &cur, err, sizeof err))
            rc = 2, log_error("%s", err);
    }
    char dir[PATH_MAX] = "";
    if (rc == 0 && eval_args_out_dir(&ea, dir, sizeof dir, err, sizeof err) != 0)
        rc = 2, log_error("%s", err);
    if (rc == 0) {
        drift_settings st = {.conf = (float)ea.conf, .no_det_delta = no_det};
        drift_check *checks = NULL;
        int n = 0;
        drift_run_checks(&st, em.names, &ref.s, &cur.s, &checks, &n);
        bool drift = false;
        for (int i = 0; i < n; i++) drift |= checks[i].drift;
        bool json = cli_flag(&c, "json");
        if (!json) {
            printf("drift: %s; reference %s [%d images] vs new %s [%d images]\n", em.label,
                   ref.src.ds ? ref.src.path : ref_spec, ref.r.n,
                   cur.src.ds ? cur.src.path : cur_spec, cur.r.n);
            print_checks(checks, n);
            printf("%s\n", drift ? "DRIFT: at least one threshold crossed" : "no drift detected");
        }
        if (write_outputs(dir, &em, &cur, checks, n, drift, annotate, (float)ea.conf,
                          ref.src.ds ? ref.src.path : ref_spec, json, err, sizeof err) != 0)
            rc = 2, log_error("%s", err);
        else
            rc = drift ? 1 : 0;
        free(checks);
    }
    side_free(&ref);
    side_free(&cur);
    eval_model_free(&em);
    cli_free(&c);
    return rc;
}
