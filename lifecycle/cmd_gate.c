/* gate: a candidate version against a baseline (typically the run's production tag) on the same
 * data, in one process; exit 0 pass, 1 fail (naming the rule and the classes), 2 no verdict (bad
 * usage, or the evaluation could not run). A CI step (docs/lifecycle.md). */
#include "common/log.h"
#include "coordinator/cli.h"
#include "lifecycle/commands.h"
#include "lifecycle/eval_args.h"
#include "lifecycle/eval_report.h"
#include "lifecycle/gate_rules.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cli_spec spec = {
    .name = "gate",
    .usage =
        "candidate=<run|run:vN|run@tag|file> baseline=<run@production|version> data=<h5|yaml>\n"
        "       [split=val] [metric=mAP50-95] [min_delta=0] [max_drop_per_class=<x>] [--json]\n"
        "       [imgsz=<candidate's>] [batch=16] [conf=0.001] [iou=0.7] [device=cpu] ...",
    .help = "Evaluates both versions on the same data in this process and compares one metric\n"
            "(mAP50-95, mAP50, precision, recall) overall and per class. Passes (exit 0) when\n"
            "candidate - baseline >= min_delta overall and, with max_drop_per_class, no class\n"
            "drops by more than that; otherwise fails (exit 1) naming the rule and the classes.\n"
            "Exit 2: bad usage, or a version or the data could not be evaluated. --json prints\n"
            "the table and the verdict as one JSON document on stdout.",
    .flags = "json",
    .keys = "candidate,baseline,data,split,metric,min_delta,max_drop_per_class," EVAL_ARGS_KEYS,
    .max_pos = 0,
};

typedef struct side {
    eval_model em;
    eval_result r;
    char label[4400];
    int n, nc;
} side;

/* Evaluates one version; the model is freed again (only one is in memory at a time). */
static int evaluate(const char *ref, const eval_args *ea, eval_source *src, const int *imgsz,
                    side *s, char *err, size_t errlen) {
    if (eval_model_load(ref, &ea->dev, &s->em, err, errlen) != 0) return -1;
    eval_opts o;
    eval_args_opts(ea, &s->em, false, &o);
    if (imgsz && *imgsz) o.imgsz = *imgsz;
    snprintf(s->label, sizeof s->label, "%s", s->em.label);
    fprintf(stderr, "gate: evaluating %s on %s [%s], imgsz %d\n", s->label, src->path,
            split_name(src->split), o.imgsz);
    int rc = eval_run(&s->em, src, &o, &s->r, err, errlen);
    s->nc = s->em.nc;
    model_free(s->em.m); /* the names stay for the table */
    s->em.m = NULL;
    return rc;
}

static void print_table(const side *c, const side *b, const gate_rules *ru, const gate_verdict *v,
                        char *const *names) {
    printf("gate: %s\n  candidate %s\n  baseline  %s\n", gate_metric_name(ru->metric), c->label,
           b->label);
    printf("%22s%11s%12s%12s%11s\n", "Class", "Instances", "candidate", "baseline", "diff");
    printf("%22s%11lld%12.4f%12.4f%+11.4f\n", "all", (long long)c->r.instances, v->cand, v->base,
           v->delta);
    for (int k = 0; k < c->nc; k++) {
        if (c->r.counts[k] <= 0) continue;
        double x = gate_class(&c->r.m, ru->metric, k), y = gate_class(&b->r.m, ru->metric, k);
        bool failed = false;
        for (int i = 0; i < v->nfailed; i++) failed |= v->failed[i] == k;
        printf("%22s%11lld%12.4f%12.4f%+11.4f%s\n", names[k], (long long)c->r.counts[k], x, y,
               x - y, failed ? "  <- dropped" : "");
    }
    if (v->pass)
        printf("PASS: %s %+.4f >= min_delta %g%s\n", gate_metric_name(ru->metric), v->delta,
               ru->min_delta, ru->max_drop_per_class >= 0 ? ", no class dropped too far" : "");
    else
        printf("FAIL: %s\n", v->reason);
}

static void print_json(const side *c, const side *b, const gate_rules *ru, const gate_verdict *v,
                       char *const *names) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "pass", v->pass);
    cJSON_AddStringToObject(j, "metric", gate_metric_name(ru->metric));
    cJSON_AddStringToObject(j, "candidate", c->label);
    cJSON_AddStringToObject(j, "baseline", b->label);
    cJSON_AddNumberToObject(j, "min_delta", ru->min_delta);
    if (ru->max_drop_per_class >= 0)
        cJSON_AddNumberToObject(j, "max_drop_per_class", ru->max_drop_per_class);
    cJSON *all = cJSON_AddObjectToObject(j, "all");
    cJSON_AddNumberToObject(all, "candidate", v->cand);
    cJSON_AddNumberToObject(all, "baseline", v->base);
    cJSON_AddNumberToObject(all, "diff", v->delta);
    cJSON *cls = cJSON_AddArrayToObject(j, "classes");
    for (int k = 0; k < c->nc; k++) {
        if (c->r.counts[k] <= 0) continue;
        double x = gate_class(&c->r.m, ru->metric, k), y = gate_class(&b->r.m, ru->metric, k);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "class", k);
        cJSON_AddStringToObject(o, "name", names[k]);
        cJSON_AddNumberToObject(o, "instances", (double)c->r.counts[k]);
        cJSON_AddNumberToObject(o, "candidate", x);
        cJSON_AddNumberToObject(o, "baseline", y);
        cJSON_AddNumberToObject(o, "diff", x - y);
        cJSON_AddItemToArray(cls, o);
    }
    cJSON *failed = cJSON_AddArrayToObject(j, "failed_classes");
    for (int i = 0; i < v->nfailed; i++)
        cJSON_AddItemToArray(failed, cJSON_CreateString(names[v->failed[i]]));
    cJSON_AddStringToObject(j, "reason", v->reason);
    cli_print_json(j);
}

static int parse_rules(kv_args *a, gate_rules *ru, char *err, size_t errlen) {
    const char *metric = kv_get(a, "metric");
    *ru = (gate_rules){.metric = GATE_MAP50_95, .max_drop_per_class = -1};
    if (metric && gate_metric_parse(metric, &ru->metric) != 0)
        return errf(err, errlen, "metric=%s: expected mAP50-95, mAP50, precision or recall",
                    metric);
    if (kv_get_double(a, "min_delta", 0, &ru->min_delta, err, errlen) ||
        kv_get_double(a, "max_drop_per_class", -1, &ru->max_drop_per_class, err, errlen))
        return -1;
    if (kv_get(a, "max_drop_per_class") && !(ru->max_drop_per_class >= 0))
        return errf(err, errlen, "max_drop_per_class=%g: expected >= 0", ru->max_drop_per_class);
    if (!isfinite(ru->min_delta)) return errf(err, errlen, "min_delta: expected a number");
    return 0;
}

int cmd_gate(int argc, char **argv) {
    cli_args c;
    if (cli_parse(&spec, argc, argv, &c) != 0) return 2;
    if (c.help) return cli_free(&c), cli_help(&spec);
    char err[2048];
    eval_args ea;
    gate_rules ru;
    const char *cand = kv_get(&c.kv, "candidate"), *base = kv_get(&c.kv, "baseline"),
               *data = kv_get(&c.kv, "data");
    int rc = 0;
    if (eval_args_parse(&c.kv, 16, 0.001, "gate", &ea, err, sizeof err) ||
        parse_rules(&c.kv, &ru, err, sizeof err))
        rc = cli_usage_error(&spec, "%s", err);
    else if (!cand || !base || !data)
        rc = cli_usage_error(&spec, "candidate=, baseline= and data= are required");
    eval_source src = {0};
    if (rc == 0 && eval_source_open(data, kv_get(&c.kv, "split"), &src, err, sizeof err) != 0)
        rc = 2, log_error("%s", err);
    if (rc == 0 && !eval_source_labelled(&src))
        rc = cli_usage_error(&spec, "data=%s: the gate needs a dataset with labels", data);
    side sc = {0}, sb = {0};
    if (rc == 0 && evaluate(cand, &ea, &src, NULL, &sc, err, sizeof err) != 0)
        rc = 2, log_error("candidate: %s", err);
    /* the baseline at the candidate's image size: one comparison, one input */
    int imgsz = ea.imgsz ? (int)ea.imgsz : sc.em.imgsz;
    if (rc == 0 && evaluate(base, &ea, &src, &imgsz, &sb, err, sizeof err) != 0)
        rc = 2, log_error("baseline: %s", err);
    if (rc == 0 && sc.nc != sb.nc)
        rc = 2, log_error("candidate has %d classes, baseline %d: not comparable", sc.nc, sb.nc);
    if (rc == 0) {
        for (int k = 0; k < sc.nc; k++)
            if (strcmp(sc.em.names[k], sb.em.names[k]))
                log_warn("class %d is '%s' in the candidate, '%s' in the baseline", k,
                         sc.em.names[k], sb.em.names[k]);
        gate_verdict v;
        gate_decide(&ru, &sc.r.m, &sb.r.m, sc.nc, (const char *const *)sc.em.names, &v);
        if (cli_flag(&c, "json"))
            print_json(&sc, &sb, &ru, &v, sc.em.names);
        else
            print_table(&sc, &sb, &ru, &v, sc.em.names);
        rc = v.pass ? 0 : 1;
        gate_verdict_free(&v);
    }
    eval_result_free(&sc.r);
    eval_result_free(&sb.r);
    eval_model_free(&sc.em);
    eval_model_free(&sb.em);
    eval_source_close(&src);
    cli_free(&c);
    return rc;
}
