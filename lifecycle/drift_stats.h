/* Two-sample statistics for data drift (`drift`): the population stability index and the
 * two-sample Kolmogorov-Smirnov test, with the thresholds the command applies, and the image
 * statistics it compares. Pure functions; docs/lifecycle.md states the formulas.
 *
 * PSI = sum over bins of (q - p) ln(q / p), p and q the reference's and the new sample's shares
 * of each bin, an empty bin's share taken as 1e-4. For numbers the bins are the reference's
 * deciles (ties collapse bins), for categories the categories. Under no shift PSI is about
 * chi-square with B - 1 degrees of freedom times (1/n + 1/m), so its expected value is
 * (B - 1)(1/n + 1/m): the threshold the command uses is the conventional 0.2 ("significant
 * shift") plus that bias, so that small samples do not raise false alarms.
 *
 * KS: D = the largest distance between the two empirical distribution functions; p from the
 * asymptotic Kolmogorov distribution with Stephens' small-sample correction (as scipy's ks_2samp
 * mode='asymp'). The threshold is max(0.1, the critical value at alpha = 0.001:
 * 1.949 sqrt((n + m) / (n m))): a difference must be both real and not negligible, and a report
 * of some twenty checks should not cry wolf on a fresh sample. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DRIFT_PSI_EPS 1e-4
#define DRIFT_PSI_LIMIT 0.2
#define DRIFT_KS_MIN 0.1
#define DRIFT_KS_ALPHA_C 1.949 /* c(alpha) for alpha = 0.001 */
#define DRIFT_MIN_SAMPLES 20   /* fewer values on either side: not tested */

/* PSI of numbers: bins are the reference's deciles. *bins gets the bin count used. */
double drift_psi(const double *ref, size_t n, const double *cur, size_t m, int *bins);
/* PSI of category counts (k categories). */
double drift_psi_counts(const int64_t *ref, const int64_t *cur, int k);
/* The threshold for a PSI over `bins` bins of samples n and m: DRIFT_PSI_LIMIT + the bias. */
double drift_psi_threshold(int bins, size_t n, size_t m);

/* Two-sample KS statistic D and its asymptotic p-value. ref and cur are sorted in place. */
double drift_ks(double *ref, size_t n, double *cur, size_t m, double *p);
double drift_ks_threshold(size_t n, size_t m);

/* The threshold on the change of a share (images without a confident detection) between samples
 * of n and m: max(min_delta, 3.29 sqrt(p (1 - p) (1/n + 1/m))), p the pooled share: a
 * two-proportion z-test at alpha = 0.001 (two-sided), and at least min_delta. */
double drift_share_threshold(double min_delta, double p1, size_t n, double p2, size_t m);

/* Brightness (mean luma, 0..255, Rec. 601 weights) and contrast (standard deviation of luma) of
 * an RGB image, from every pixel of every `step`th row and column. */
void drift_image_stats(const uint8_t *rgb, int h, int w, int step, double *brightness,
                       double *contrast);
