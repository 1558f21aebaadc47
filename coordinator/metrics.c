/* mAP, P, R from gathered match records (see metrics.h). The arithmetic follows numpy's as used by
 * Ultralytics (interp, trapz with pairwise summation, the F1 box filter) so results agree to the
 * last bits in the common cases. */
#include "coordinator/metrics.h"

#include "common/log.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define NPR 1000 /* points of the P/R-vs-confidence curves */
#define NAP 101  /* recall points of the AP integral */

static int cmp_record(const void *pa, const void *pb) {
    const val_record *a = pa, *b = pb;
    if (a->conf > b->conf) return -1;
    if (a->conf < b->conf) return 1;
    if (a->cls != b->cls) return a->cls < b->cls ? -1 : 1;
    return (a->tp > b->tp) - (a->tp < b->tp);
}

/* numpy's pairwise summation (add.reduce on a contiguous double array). */
static double pairwise(const double *a, size_t n) {
    if (n < 8) {
        double s = 0.;
        for (size_t i = 0; i < n; i++) s += a[i];
        return s;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++) r[j] = a[j];
        size_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[i + j];
        double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) s += a[i];
        return s;
    }
    size_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise(a, n2) + pairwise(a + n2, n - n2);
}

/* add.reduce: the first element starts the accumulator, the rest is summed pairwise. */
static double np_sum(const double *a, size_t n) {
    return n == 0 ? 0.0 : a[0] + pairwise(a + 1, n - 1);
}

/* numpy.linspace(0, 1, num)[i] */
static double linspace01(int i, int num) {
    return i == num - 1 ? 1.0 : (double)i * (1.0 / (double)(num - 1));
}

double val_np_interp(double x, const double *xp, const double *fp, size_t n, double left,
                     double right) {
    if (n == 0) return NAN;
    if (x < xp[0]) return left;
    if (x > xp[n - 1]) return right;
    if (x == xp[n - 1]) return fp[n - 1];
    /* last j with xp[j] <= x (so xp[j + 1] > x) */
    size_t lo = 0, hi = n - 1; /* xp[lo] <= x < xp[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (xp[mid] <= x)
            lo = mid;
        else
            hi = mid;
    }
    if (xp[lo] == x) return fp[lo];
    double slope = (fp[lo + 1] - fp[lo]) / (xp[lo + 1] - xp[lo]);
    return slope * (x - xp[lo]) + fp[lo];
}

double val_compute_ap(const double *recall, const double *precision, size_t n) {
    return val_compute_ap_with(VAL_AP_TO_ONE, recall, precision, n);
}

double val_compute_ap_with(val_ap_rule rule, const double *recall, const double *precision,
                           size_t n) {
    bool drop = rule == VAL_AP_DROP_AFTER_LAST_RECALL;
    size_t m = n + 2 + drop;
    double *mrec = xmalloc(m * sizeof *mrec), *mpre = xmalloc(m * sizeof *mpre);
    mrec[0] = 0.0;
    mpre[0] = 1.0;
    for (size_t i = 0; i < n; i++) {
        mrec[i + 1] = recall[i];
        mpre[i + 1] = precision[i];
    }
    if (drop) { /* (r_last, 0): the precision envelope ends where the recall does */
        mrec[n + 1] = n ? recall[n - 1] : 1.0;
        mpre[n + 1] = 0.0;
    }
    mrec[m - 1] = 1.0;
    mpre[m - 1] = 0.0;
    for (size_t i = m - 1; i-- > 0;) /* envelope: running max from the right */
        if (mpre[i + 1] > mpre[i]) mpre[i] = mpre[i + 1];
    double y[NAP], term[NAP - 1];
    for (int i = 0; i < NAP; i++)
        y[i] = val_np_interp(linspace01(i, NAP), mrec, mpre, m, mpre[0], mpre[m - 1]);
    for (int i = 0; i < NAP - 1; i++)
        term[i] = (linspace01(i + 1, NAP) - linspace01(i, NAP)) * (y[i + 1] + y[i]) / 2.0;
    free(mrec);
    free(mpre);
    return np_sum(term, NAP - 1);
}

void val_metrics_free(val_metrics *m) {
    free(m->ap);
    free(m->p);
    free(m->r);
    free(m->f1);
    free(m->gt);
    memset(m, 0, sizeof *m);
}

int val_metrics_compute(val_record *recs, size_t n, const int64_t *gt_counts, int nc,
                        val_metrics *m, char *err, size_t errlen) {
    return val_metrics_compute_with(VAL_AP_TO_ONE, recs, n, gt_counts, nc, m, err, errlen);
}

int val_metrics_compute_with(val_ap_rule rule, val_record *recs, size_t n, const int64_t *gt_counts,
                             int nc, val_metrics *m, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    for (int c = 0; c < nc; c++)
        if (gt_counts[c] < 0)
            return errf(err, errlen, "metrics: class %d has a negative ground-truth count %lld", c,
                        (long long)gt_counts[c]);
    m->nc = nc;
    m->ap = xcalloc((size_t)(nc > 0 ? nc : 1) * VAL_NIOU, sizeof *m->ap);
    m->p = xcalloc((size_t)(nc > 0 ? nc : 1), sizeof *m->p);
    m->r = xcalloc((size_t)(nc > 0 ? nc : 1), sizeof *m->r);
    m->f1 = xcalloc((size_t)(nc > 0 ? nc : 1), sizeof *m->f1);
    m->gt = xcalloc((size_t)(nc > 0 ? nc : 1), sizeof *m->gt);
    if (nc > 0) memcpy(m->gt, gt_counts, (size_t)nc * sizeof *m->gt);
    int *ev = xmalloc((size_t)(nc > 0 ? nc : 1) * sizeof *ev); /* evaluated class ids */
    int ne = 0;
    for (int c = 0; c < nc; c++)
        if (gt_counts[c] > 0) ev[ne++] = c;
    m->n_eval = ne;
    if (ne == 0) {
        free(ev);
        return 0;
    }
    if (n) qsort(recs, n, sizeof *recs, cmp_record); /* recs may be NULL when n == 0 */

    double *pc = xcalloc((size_t)ne * NPR, sizeof *pc), *rc = xcalloc((size_t)ne * NPR, sizeof *rc);
    double *xp = xmalloc((n ? n : 1) * sizeof *xp), *rec0 = xmalloc((n ? n : 1) * sizeof *rec0);
    double *prec0 = xmalloc((n ? n : 1) * sizeof *prec0);
    double *rt = xmalloc((n ? n : 1) * sizeof *rt), *pt = xmalloc((n ? n : 1) * sizeof *pt);
    for (int e = 0; e < ne; e++) {
        const int c = ev[e];
        const double nl = (double)gt_counts[c] + 1e-16;
        size_t np_ = 0;
        for (size_t i = 0; i < n; i++)
            if (recs[i].cls == c) xp[np_++] = -(double)recs[i].conf;
        if (np_ == 0) continue; /* AP 0, P = R = 0 */
        for (int t = 0; t < VAL_NIOU; t++) {
            long tpc = 0, fpc = 0;
            size_t k = 0;
            for (size_t i = 0; i < n; i++) {
                if (recs[i].cls != c) continue;
                if (recs[i].tp >> t & 1u)
                    tpc++;
                else
                    fpc++;
                rt[k] = (double)tpc / nl;
                pt[k] = (double)tpc / (double)(tpc + fpc);
                k++;
            }
            if (t == 0) {
                memcpy(rec0, rt, np_ * sizeof *rt);
                memcpy(prec0, pt, np_ * sizeof *pt);
            }
            m->ap[(size_t)c * VAL_NIOU + t] = val_compute_ap_with(rule, rt, pt, np_);
        }
        for (int i = 0; i < NPR; i++) {
            double q = -linspace01(i, NPR);
            rc[(size_t)e * NPR + i] = val_np_interp(q, xp, rec0, np_, 0.0, rec0[np_ - 1]);
            pc[(size_t)e * NPR + i] = val_np_interp(q, xp, prec0, np_, 1.0, prec0[np_ - 1]);
        }
    }
    /* mean F1 over classes, smoothed, first arg-max */
    double *f1m = xmalloc(NPR * sizeof *f1m), *yp = xmalloc((NPR + 100) * sizeof *yp);
    for (int i = 0; i < NPR; i++) {
        double s = 0;
        for (int e = 0; e < ne; e++) {
            double p = pc[(size_t)e * NPR + i], r = rc[(size_t)e * NPR + i];
            s += 2 * p * r / (p + r + 1e-16);
        }
        f1m[i] = s / ne;
    }
    for (int i = 0; i < 50; i++) {
        yp[i] = f1m[0];
        yp[NPR + 50 + i] = f1m[NPR - 1];
    }
    memcpy(yp + 50, f1m, NPR * sizeof *f1m);
    const double w = 1.0 / 101.0;
    int best = 0;
    double bestv = -INFINITY;
    for (int i = 0; i < NPR; i++) {
        double s = 0;
        for (int k = 0; k < 101; k++) s += yp[i + k] * w;
        if (s > bestv) {
            bestv = s;
            best = i;
        }
    }
    m->conf = linspace01(best, NPR);
    double *tmp = xmalloc((size_t)ne * VAL_NIOU * sizeof *tmp);
    for (int e = 0; e < ne; e++) {
        const int c = ev[e];
        double p = pc[(size_t)e * NPR + best], r = rc[(size_t)e * NPR + best];
        m->p[c] = p;
        m->r[c] = r;
        m->f1[c] = 2 * p * r / (p + r + 1e-16);
        tmp[e] = p;
    }
    m->precision = np_sum(tmp, ne) / ne;
    for (int e = 0; e < ne; e++) tmp[e] = m->r[ev[e]];
    m->recall = np_sum(tmp, ne) / ne;
    for (int e = 0; e < ne; e++) tmp[e] = m->ap[(size_t)ev[e] * VAL_NIOU + 0];
    m->map50 = np_sum(tmp, ne) / ne;
    for (int e = 0; e < ne; e++) tmp[e] = m->ap[(size_t)ev[e] * VAL_NIOU + 5];
    m->map75 = np_sum(tmp, ne) / ne;
    for (int e = 0; e < ne; e++)
        for (int t = 0; t < VAL_NIOU; t++)
            tmp[(size_t)e * VAL_NIOU + t] = m->ap[(size_t)ev[e] * VAL_NIOU + t];
    m->map50_95 = np_sum(tmp, (size_t)ne * VAL_NIOU) / (ne * VAL_NIOU);
    m->fitness = m->map50_95;
    free(tmp);
    free(f1m);
    free(yp);
    free(pt);
    free(rt);
    free(prec0);
    free(rec0);
    free(xp);
    free(rc);
    free(pc);
    free(ev);
    return 0;
}
