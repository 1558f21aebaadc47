/* mAP, P, R from gathered match records (see metrics.h). The arithmetic follows numpy's as used by
 * Ultralytics (interp, trapz with pairwise summation, the F1 box filter) so results agree to the
 * last bits in the common cases. */
#include "coordinator/metrics.h"

#include "common/log.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define NPR VAL_CURVE_POINTS /* points of the P/R-vs-confidence and plotted PR curves */
#define NAP 101              /* recall points of the AP integral */

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

/* AP of one curve; pr_out (NULL or [NPR]): the envelope at recall linspace(0, 1, NPR) (plots). */
static double compute_ap(val_ap_rule rule, const double *recall, const double *precision, size_t n,
                         double *pr_out) {
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
    for (int i = 0; pr_out && i < NPR; i++)
        pr_out[i] = val_np_interp(linspace01(i, NPR), mrec, mpre, m, mpre[0], mpre[m - 1]);
    free(mrec);
    free(mpre);
    return np_sum(term, NAP - 1);
}

double val_compute_ap(const double *recall, const double *precision, size_t n) {
    return compute_ap(VAL_AP_TO_ONE, recall, precision, n, NULL);
}

double val_compute_ap_with(val_ap_rule rule, const double *recall, const double *precision,
                           size_t n) {
    return compute_ap(rule, recall, precision, n, NULL);
}

void val_smooth_box(const double *y, int n, double f, double *out) {
    if (n <= 0) return;
    int nf = (int)nearbyint(n * f * 2) / 2 + 1, h = nf / 2;
    double *yp = xmalloc(((size_t)n + 2 * (size_t)h) * sizeof *yp);
    for (int i = 0; i < h; i++) {
        yp[i] = y[0];
        yp[n + h + i] = y[n - 1];
    }
    memcpy(yp + h, y, (size_t)n * sizeof *y);
    const double w = 1.0 / nf;
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int k = 0; k < nf; k++) s += yp[i + k] * w;
        out[i] = s;
    }
    free(yp);
}

void val_metrics_free(val_metrics *m) {
    free(m->ap);
    free(m->p);
    free(m->r);
    free(m->f1);
    free(m->gt);
    free(m->p_curve);
    free(m->r_curve);
    free(m->f1_curve);
    free(m->pr_curve);
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
    size_t ncurve = (size_t)(nc > 0 ? nc : 1) * NPR;
    m->p_curve = xcalloc(ncurve, sizeof *m->p_curve);
    m->r_curve = xcalloc(ncurve, sizeof *m->r_curve);
    m->f1_curve = xcalloc(ncurve, sizeof *m->f1_curve);
    m->pr_curve = xcalloc(ncurve, sizeof *m->pr_curve);
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

    double *pc = m->p_curve, *rc = m->r_curve; /* rows by class id */
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
            m->ap[(size_t)c * VAL_NIOU + t] =
                compute_ap(rule, rt, pt, np_, t == 0 ? m->pr_curve + (size_t)c * NPR : NULL);
        }
        for (int i = 0; i < NPR; i++) {
            double q = -linspace01(i, NPR);
            rc[(size_t)c * NPR + i] = val_np_interp(q, xp, rec0, np_, 0.0, rec0[np_ - 1]);
            pc[(size_t)c * NPR + i] = val_np_interp(q, xp, prec0, np_, 1.0, prec0[np_ - 1]);
        }
    }
    /* mean F1 over classes, smoothed, first arg-max */
    double *f1m = xmalloc(NPR * sizeof *f1m), *f1s = xmalloc(NPR * sizeof *f1s);
    for (int i = 0; i < NPR; i++) {
        double s = 0;
        for (int e = 0; e < ne; e++) {
            size_t k = (size_t)ev[e] * NPR + i;
            double p = pc[k], r = rc[k];
            m->f1_curve[k] = 2 * p * r / (p + r + 1e-16);
            s += m->f1_curve[k];
        }
        f1m[i] = s / ne;
    }
    val_smooth_box(f1m, NPR, 0.1, f1s);
    int best = 0;
    double bestv = -INFINITY;
    for (int i = 0; i < NPR; i++)
        if (f1s[i] > bestv) {
            bestv = f1s[i];
            best = i;
        }
    m->conf = linspace01(best, NPR);
    double *tmp = xmalloc((size_t)ne * VAL_NIOU * sizeof *tmp);
    for (int e = 0; e < ne; e++) {
        const int c = ev[e];
        double p = pc[(size_t)c * NPR + best], r = rc[(size_t)c * NPR + best];
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
    free(f1s);
    free(pt);
    free(rt);
    free(prec0);
    free(rec0);
    free(xp);
    free(ev);
    return 0;
}
