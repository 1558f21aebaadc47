#include "lifecycle/drift_stats.h"

#include "common/log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double psi_term(double p, double q) {
    if (p < DRIFT_PSI_EPS) p = DRIFT_PSI_EPS;
    if (q < DRIFT_PSI_EPS) q = DRIFT_PSI_EPS;
    return (q - p) * log(q / p);
}

/* Bin of v for the sorted unique upper edges e[k]: bins (-inf, e0], (e0, e1], ..., (e_k-1, inf) */
static int bin_of(double v, const double *e, int k) {
    int lo = 0, hi = k; /* first edge >= v */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (e[mid] >= v)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

double drift_psi(const double *ref, size_t n, const double *cur, size_t m, int *bins) {
    if (bins) *bins = 0;
    if (n == 0 || m == 0) return NAN;
    double *s = xmalloc(n * sizeof *s), e[9];
    memcpy(s, ref, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_double);
    int k = 0;
    for (int q = 1; q <= 9; q++) {
        double v = s[(size_t)((double)q / 10 * (double)(n - 1))];
        if (v < s[n - 1] && (k == 0 || v > e[k - 1])) e[k++] = v; /* ties collapse bins */
    }
    free(s);
    int64_t *a = xcalloc((size_t)k + 1, sizeof *a), *b = xcalloc((size_t)k + 1, sizeof *b);
    for (size_t i = 0; i < n; i++) a[bin_of(ref[i], e, k)]++;
    for (size_t i = 0; i < m; i++) b[bin_of(cur[i], e, k)]++;
    double psi = drift_psi_counts(a, b, k + 1);
    free(a);
    free(b);
    if (bins) *bins = k + 1;
    return psi;
}

double drift_psi_counts(const int64_t *ref, const int64_t *cur, int k) {
    double n = 0, m = 0, psi = 0;
    for (int i = 0; i < k; i++) n += (double)ref[i], m += (double)cur[i];
    if (n <= 0 || m <= 0) return NAN;
    for (int i = 0; i < k; i++) psi += psi_term((double)ref[i] / n, (double)cur[i] / m);
    return psi;
}

double drift_psi_threshold(int bins, size_t n, size_t m) {
    if (n == 0 || m == 0) return NAN;
    return DRIFT_PSI_LIMIT + (bins - 1) * (1.0 / (double)n + 1.0 / (double)m);
}

/* Kolmogorov's Q(lambda) = 2 sum_j (-1)^(j-1) exp(-2 j^2 lambda^2) */
static double kolmogorov_q(double lambda) {
    if (lambda < 0.2) return 1;
    double sum = 0, sign = 1;
    for (int j = 1; j <= 100; j++) {
        double t = sign * exp(-2.0 * j * j * lambda * lambda);
        sum += t;
        if (fabs(t) < 1e-12 * fabs(sum)) break;
        sign = -sign;
    }
    double q = 2 * sum;
    return q < 0 ? 0 : q > 1 ? 1 : q;
}

double drift_ks(double *ref, size_t n, double *cur, size_t m, double *p) {
    if (p) *p = NAN;
    if (n == 0 || m == 0) return NAN;
    qsort(ref, n, sizeof *ref, cmp_double);
    qsort(cur, m, sizeof *cur, cmp_double);
    size_t i = 0, j = 0;
    double d = 0;
    while (i < n && j < m) { /* step both functions past the next value (ties together) */
        double v = ref[i] <= cur[j] ? ref[i] : cur[j];
        while (i < n && ref[i] <= v) i++;
        while (j < m && cur[j] <= v) j++;
        double diff = fabs((double)i / (double)n - (double)j / (double)m);
        if (diff > d) d = diff;
    }
    if (p) {
        double en = sqrt((double)n * (double)m / (double)(n + m));
        *p = kolmogorov_q((en + 0.12 + 0.11 / en) * d);
    }
    return d;
}

double drift_ks_threshold(size_t n, size_t m) {
    if (n == 0 || m == 0) return NAN;
    double c = DRIFT_KS_ALPHA_C * sqrt((double)(n + m) / ((double)n * (double)m));
    return c > DRIFT_KS_MIN ? c : DRIFT_KS_MIN;
}

double drift_share_threshold(double min_delta, double p1, size_t n, double p2, size_t m) {
    if (n == 0 || m == 0) return NAN;
    double p = (p1 * (double)n + p2 * (double)m) / (double)(n + m);
    double z = 3.29 * sqrt(p * (1 - p) * (1.0 / (double)n + 1.0 / (double)m));
    return z > min_delta ? z : min_delta;
}

void drift_image_stats(const uint8_t *rgb, int h, int w, int step, double *brightness,
                       double *contrast) {
    if (step < 1) step = 1;
    double s = 0, s2 = 0;
    size_t k = 0;
    for (int y = 0; y < h; y += step)
        for (int x = 0; x < w; x += step) {
            const uint8_t *p = rgb + ((size_t)y * w + x) * 3;
            double l = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
            s += l, s2 += l * l, k++;
        }
    double mean = k ? s / (double)k : 0, var = k ? s2 / (double)k - mean * mean : 0;
    *brightness = mean;
    *contrast = sqrt(var > 0 ? var : 0);
}
