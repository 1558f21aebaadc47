/* The model gate's decision (`gate`): a candidate against a baseline on the same data, by one
 * metric, overall and per class. Pure: the evaluation happens elsewhere (cmd_gate.c). */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "coordinator/metrics.h"

typedef enum { GATE_MAP50_95, GATE_MAP50, GATE_PRECISION, GATE_RECALL } gate_metric;

/* "mAP50-95", "mAP50", "precision", "recall". 0, or -1 for another name. */
int gate_metric_parse(const char *name, gate_metric *out);
const char *gate_metric_name(gate_metric m);
/* The metric overall, and for class c (classes without ground truth: NaN). */
double gate_overall(const val_metrics *m, gate_metric which);
double gate_class(const val_metrics *m, gate_metric which, int c);

typedef struct gate_rules {
    gate_metric metric;
    double min_delta;          /* candidate - baseline >= min_delta overall */
    double max_drop_per_class; /* baseline - candidate <= this for every class; < 0: no rule */
} gate_rules;

typedef struct gate_verdict {
    bool pass;
    double cand, base, delta; /* overall */
    bool overall_failed;
    int nfailed;       /* classes over max_drop_per_class */
    int *failed;       /* [nfailed] their ids, the largest drop first */
    char reason[2048]; /* "" on pass; the failed rule(s), naming the classes */
} gate_verdict;

/* names[nc]. Classes without ground truth take no part. Free with gate_verdict_free. */
void gate_decide(const gate_rules *r, const val_metrics *cand, const val_metrics *base, int nc,
                 const char *const *names, gate_verdict *v);
void gate_verdict_free(gate_verdict *v);
