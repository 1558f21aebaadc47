#include "lifecycle/drift_checks.h"

#include "common/log.h"
#include "lifecycle/drift_stats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATS_SIDE 256 /* image statistics from about this many rows and columns */

int drift_side_collect(eval_source *src, const eval_result *r, int nc, drift_side *s, char *err,
                       size_t errlen) {
    memset(s, 0, sizeof *s);
    s->n = r->n;
    s->nc = nc;
    size_t n = (size_t)(r->n > 0 ? r->n : 1);
    s->brightness = xmalloc(n * sizeof *s->brightness);
    s->contrast = xmalloc(n * sizeof *s->contrast);
    s->size = xmalloc(n * sizeof *s->size);
    s->max_conf = xcalloc(n, sizeof *s->max_conf);
    s->class_conf = xcalloc(n * (size_t)nc, sizeof *s->class_conf);
    for (int i = 0; i < r->n; i++) {
        uint8_t *rgb;
        int h, w;
        if (eval_source_image(src, i, &rgb, &h, &w, err, errlen) != 0) return -1;
        int big = h > w ? h : w, step = big / STATS_SIDE > 1 ? big / STATS_SIDE : 1;
        drift_image_stats(rgb, h, w, step, &s->brightness[i], &s->contrast[i]);
        s->size[i] = sqrt((double)h * w);
        free(rgb);
        for (int k = 0; k < r->ndets[i]; k++) {
            const eval_det *d = &r->dets[i][k];
            if (d->conf > s->max_conf[i]) s->max_conf[i] = d->conf;
            double *cc = &s->class_conf[(size_t)i * nc + d->cls];
            if (d->cls >= 0 && d->cls < nc && d->conf > *cc) *cc = d->conf;
        }
    }
    return 0;
}

void drift_side_free(drift_side *s) {
    free(s->brightness);
    free(s->contrast);
    free(s->size);
    free(s->max_conf);
    free(s->class_conf);
    memset(s, 0, sizeof *s);
}

typedef struct list {
    drift_check *c;
    int n, cap;
} list;

static drift_check *add(list *l, const char *what, const char *stat) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 32;
        l->c = xrealloc(l->c, (size_t)l->cap * sizeof *l->c);
    }
    drift_check *c = &l->c[l->n++];
    memset(c, 0, sizeof *c);
    snprintf(c->what, sizeof c->what, "%s", what);
    snprintf(c->stat, sizeof c->stat, "%s", stat);
    return c;
}

static double mean(const double *v, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += v[i];
    return n ? s / (double)n : NAN;
}

/* PSI and KS of two samples (copied: KS sorts). */
static void numeric_checks(list *l, const char *what, const double *a, size_t n, const double *b,
                           size_t m) {
    char detail[96];
    snprintf(detail, sizeof detail, "mean %.4g -> %.4g", mean(a, n), mean(b, m));
    bool enough = n >= DRIFT_MIN_SAMPLES && m >= DRIFT_MIN_SAMPLES;
    drift_check *c = add(l, what, "PSI");
    c->n = n, c->m = m, c->tested = enough;
    snprintf(c->detail, sizeof c->detail, "%s", detail);
    if (enough) {
        int bins;
        c->value = drift_psi(a, n, b, m, &bins);
        c->threshold = drift_psi_threshold(bins, n, m);
        c->drift = c->value > c->threshold;
    }
    c = add(l, what, "KS");
    c->n = n, c->m = m, c->tested = enough;
    snprintf(c->detail, sizeof c->detail, "%s", detail);
    if (enough) {
        double *x = xmalloc(n * sizeof *x), *y = xmalloc(m * sizeof *y), p;
        memcpy(x, a, n * sizeof *x);
        memcpy(y, b, m * sizeof *y);
        c->value = drift_ks(x, n, y, m, &p);
        c->threshold = drift_ks_threshold(n, m);
        c->drift = c->value > c->threshold;
        size_t len = strlen(c->detail);
        snprintf(c->detail + len, sizeof c->detail - len, ", p %.2g", p);
        free(x);
        free(y);
    }
}

/* Each image's highest confidence, of class cls (-1: any). */
static double *image_conf(const drift_side *s, int cls) {
    double *v = xmalloc((size_t)(s->n > 0 ? s->n : 1) * sizeof *v);
    for (int i = 0; i < s->n; i++)
        v[i] = cls < 0 ? s->max_conf[i] : s->class_conf[(size_t)i * s->nc + cls];
    return v;
}

/* Images in which each class is predicted above conf. */
static void class_counts(const drift_side *s, float conf, int64_t *counts) {
    memset(counts, 0, (size_t)s->nc * sizeof *counts);
    for (int i = 0; i < s->n; i++)
        for (int c = 0; c < s->nc; c++) counts[c] += s->class_conf[(size_t)i * s->nc + c] > conf;
}

static double share_without(const drift_side *s, float conf) {
    int k = 0;
    for (int i = 0; i < s->n; i++) k += !(s->max_conf[i] > conf);
    return s->n ? (double)k / s->n : NAN;
}

void drift_run_checks(const drift_settings *st, char *const *names, const drift_side *rs,
                      const drift_side *cs, drift_check **out, int *n) {
    list l = {0};
    char what[96];
    int nc = rs->nc;
    for (int c = -1; c < nc; c++) {
        double *x = image_conf(rs, c), *y = image_conf(cs, c);
        snprintf(what, sizeof what, "top confidence %s", c < 0 ? "(any class)" : names[c]);
        numeric_checks(&l, what, x, (size_t)rs->n, y, (size_t)cs->n);
        free(x);
        free(y);
    }
    int64_t *ca = xcalloc((size_t)nc + 1, sizeof *ca), *cb = xcalloc((size_t)nc + 1, sizeof *cb);
    class_counts(rs, st->conf, ca);
    class_counts(cs, st->conf, cb);
    int64_t na = 0, nb = 0;
    for (int c = 0; c < nc; c++) na += ca[c], nb += cb[c];
    drift_check *k = add(&l, "predicted classes", "PSI");
    k->n = (size_t)na, k->m = (size_t)nb;
    k->tested = na >= DRIFT_MIN_SAMPLES && nb >= DRIFT_MIN_SAMPLES && nc > 1;
    if (k->tested) {
        k->value = drift_psi_counts(ca, cb, nc);
        k->threshold = drift_psi_threshold(nc, (size_t)na, (size_t)nb);
        k->drift = k->value > k->threshold;
        int big = 0; /* the class whose share moved most */
        for (int c = 1; c < nc; c++)
            if (fabs((double)cb[c] / nb - (double)ca[c] / na) >
                fabs((double)cb[big] / nb - (double)ca[big] / na))
                big = c;
        snprintf(k->detail, sizeof k->detail, "%s %.0f%% -> %.0f%% of class predictions",
                 names[big], 100.0 * ca[big] / na, 100.0 * cb[big] / nb);
    }
    free(ca);
    free(cb);
    k = add(&l, "images without a confident detection", "share");
    double sa = share_without(rs, st->conf), sb = share_without(cs, st->conf);
    k->n = (size_t)rs->n, k->m = (size_t)cs->n, k->tested = rs->n > 0 && cs->n > 0;
    k->value = fabs(sb - sa);
    k->threshold = drift_share_threshold(st->no_det_delta, sa, (size_t)rs->n, sb, (size_t)cs->n);
    k->drift = k->tested && k->value > k->threshold;
    snprintf(k->detail, sizeof k->detail, "%.1f%% -> %.1f%% (conf > %g)", 100 * sa, 100 * sb,
             st->conf);
    numeric_checks(&l, "image brightness", rs->brightness, (size_t)rs->n, cs->brightness,
                   (size_t)cs->n);
    numeric_checks(&l, "image contrast", rs->contrast, (size_t)rs->n, cs->contrast, (size_t)cs->n);
    numeric_checks(&l, "image size", rs->size, (size_t)rs->n, cs->size, (size_t)cs->n);
    *out = l.c;
    *n = l.n;
}
