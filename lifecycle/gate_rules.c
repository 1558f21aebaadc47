#include "lifecycle/gate_rules.h"

#include "common/log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const metric_names[] = {"mAP50-95", "mAP50", "precision", "recall"};

int gate_metric_parse(const char *name, gate_metric *out) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, metric_names[i])) return *out = (gate_metric)i, 0;
    return -1;
}

const char *gate_metric_name(gate_metric m) {
    return metric_names[m];
}

double gate_overall(const val_metrics *m, gate_metric which) {
    switch (which) {
    case GATE_MAP50:
        return m->map50;
    case GATE_PRECISION:
        return m->precision;
    case GATE_RECALL:
        return m->recall;
    default:
        return m->map50_95;
    }
}

double gate_class(const val_metrics *m, gate_metric which, int c) {
    if (c < 0 || c >= m->nc || m->gt[c] <= 0) return NAN;
    const double *ap = m->ap + (size_t)c * VAL_NIOU;
    double s = 0;
    switch (which) {
    case GATE_MAP50:
        return ap[0];
    case GATE_PRECISION:
        return m->p[c];
    case GATE_RECALL:
        return m->r[c];
    default:
        for (int t = 0; t < VAL_NIOU; t++) s += ap[t];
        return s / VAL_NIOU;
    }
}

typedef struct {
    int c;
    double drop;
} drop;

static int by_drop(const void *pa, const void *pb) {
    const drop *a = pa, *b = pb;
    if (a->drop != b->drop) return a->drop > b->drop ? -1 : 1;
    return a->c - b->c;
}

void gate_decide(const gate_rules *r, const val_metrics *cand, const val_metrics *base, int nc,
                 const char *const *names, gate_verdict *v) {
    memset(v, 0, sizeof *v);
    const char *mn = gate_metric_name(r->metric);
    v->cand = gate_overall(cand, r->metric);
    v->base = gate_overall(base, r->metric);
    v->delta = v->cand - v->base;
    size_t len = 0;
    /* exact: evaluation is deterministic, so the same weights give a delta of exactly 0 */
    if (!(v->delta >= r->min_delta)) {
        v->overall_failed = true;
        len += (size_t)snprintf(v->reason + len, sizeof v->reason - len,
                                "min_delta: %s %.4f - %.4f = %+.4f < %g", mn, v->cand, v->base,
                                v->delta, r->min_delta);
    }
    drop *d = xmalloc((size_t)(nc > 0 ? nc : 1) * sizeof *d);
    int nd = 0;
    for (int c = 0; r->max_drop_per_class >= 0 && c < nc; c++) {
        double b = gate_class(base, r->metric, c), k = gate_class(cand, r->metric, c);
        if (isnan(b) || isnan(k)) continue;
        if (b - k > r->max_drop_per_class) d[nd++] = (drop){c, b - k};
    }
    qsort(d, (size_t)nd, sizeof *d, by_drop);
    v->nfailed = nd;
    v->failed = xmalloc((size_t)(nd > 0 ? nd : 1) * sizeof *v->failed);
    for (int i = 0; i < nd; i++) {
        int c = d[i].c;
        v->failed[i] = c;
        if (len < sizeof v->reason - 1)
            len += (size_t)snprintf(
                v->reason + len, sizeof v->reason - len,
                "%smax_drop_per_class: class '%s' %s dropped %.4f (%.4f -> %.4f) > %g",
                len ? "; " : "", names[c], mn, d[i].drop, gate_class(base, r->metric, c),
                gate_class(cand, r->metric, c), r->max_drop_per_class);
    }
    free(d);
    v->pass = !v->overall_failed && nd == 0;
}

void gate_verdict_free(gate_verdict *v) {
    free(v->failed);
    memset(v, 0, sizeof *v);
}
