/* results.png: Ultralytics' plot_results for detection (12 x 6 in at 200 dpi, tight layout). */
#include "coordinator/charts.h"

#include "common/log.h"
#include "coordinator/plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void results_table_add(results_table *t, int n, const char *const *names, const double *values) {
    if (t->nrow == 0 && t->ncol == 0) {
        t->ncol = n;
        t->names = xcalloc((size_t)(n ? n : 1), sizeof *t->names);
        for (int i = 0; i < n; i++) t->names[i] = xstrdup(names[i]);
    }
    if (t->nrow == t->caprow) {
        t->caprow = 2 * t->caprow + 16;
        t->v = xrealloc(t->v, (size_t)t->caprow * (size_t)(t->ncol ? t->ncol : 1) * sizeof *t->v);
    }
    double *row = t->v + (size_t)t->nrow * t->ncol;
    for (int j = 0; j < t->ncol; j++) {
        row[j] = NAN;
        for (int i = 0; i < n; i++)
            if (strcmp(names[i], t->names[j]) == 0) row[j] = values[i];
    }
    t->nrow++;
}

void results_table_free(results_table *t) {
    for (int i = 0; i < t->ncol; i++) free(t->names[i]);
    free(t->names);
    free(t->v);
    memset(t, 0, sizeof *t);
}

/* Splits a CSV line in place at commas (no quoting: results.csv has none). */
static int split(char *line, char **f, int cap) {
    int n = 0;
    line[strcspn(line, "\r\n")] = 0;
    for (char *p = line; n < cap;) {
        f[n++] = p;
        char *c = strchr(p, ',');
        if (!c) break;
        *c = 0;
        p = c + 1;
    }
    return n;
}

int results_table_read_csv(const char *path, results_table *t, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? 0
                               : errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    char line[4096], *fld[64];
    const char *names[64];
    char hdr[4096];
    int ncol = 0, rc = 0, lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (lineno == 1) {
            memcpy(hdr, line, sizeof hdr);
            ncol = split(hdr, fld, 64);
            for (int i = 0; i < ncol; i++) names[i] = fld[i];
            continue;
        }
        if (line[0] == '\n' || line[0] == 0) continue;
        char *vals[64];
        int n = split(line, vals, 64);
        if (n != ncol) {
            rc = errf(err, errlen, "%s:%d: %d values for %d columns", path, lineno, n, ncol);
            break;
        }
        double v[64];
        for (int i = 0; i < n; i++) {
            char *end;
            v[i] = strtod(vals[i], &end);
            if (end == vals[i]) v[i] = NAN;
        }
        results_table_add(t, n, names, v);
    }
    fclose(f);
    return rc;
}

/* ---- smoothing ------------------------------------------------------------------------------ */

/* numpy.pad(mode="symmetric") index for any offset: the sequence mirrored with its edge values
 * repeated, periodic with period 2n. */
static int symmetric_index(int i, int n) {
    int p = 2 * n, k = ((i % p) + p) % p;
    return k < n ? k : p - 1 - k;
}

void chart_gaussian_smooth(const double *y, int n, double sigma, double *out) {
    int r = (int)(4.0 * sigma + 0.5);
    double *k = xmalloc((size_t)(2 * r + 1) * sizeof *k), sum = 0;
    for (int i = -r; i <= r; i++) sum += k[i + r] = exp(-0.5 * (i / sigma) * (i / sigma));
    for (int i = 0; i <= 2 * r; i++) k[i] /= sum;
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = -r; j <= r; j++) s += y[symmetric_index(i + j, n)] * k[r - j];
        out[i] = s;
    }
    free(k);
}

/* ---- the chart --------------------------------------------------------------------------------
 */

static int panel_columns(const results_table *t, int *cols) {
    int loss[32], metric[32], nl = 0, nm = 0;
    for (int j = 1; j < t->ncol; j++) {
        if (strstr(t->names[j], "loss") && nl < 32)
            loss[nl++] = j;
        else if (strstr(t->names[j], "metric") && nm < 32)
            metric[nm++] = j;
    }
    int lm = nl / 2, mm = (nm + 1) / 2, n = 0;
    for (int i = 0; i < lm; i++) cols[n++] = loss[i];
    for (int i = 0; i < mm; i++) cols[n++] = metric[i];
    for (int i = lm; i < nl; i++) cols[n++] = loss[i];
    for (int i = mm; i < nm; i++) cols[n++] = metric[i];
    return n;
}

int chart_results(const results_table *t, const char *path, char *err, size_t errlen) {
    int cols[64], n = panel_columns(t, cols);
    if (n == 0) return errf(err, errlen, "%s: no loss or metric columns to plot", path);
    int per_row = (n + 1) / 2;
    /* figsize (len(columns) + 2, 6) inches at 200 dpi */
    double dpi = 200, W = (n + 2) * dpi, H = 6 * dpi;
    plot_canvas *c = plot_canvas_new((int)W, (int)H, dpi);
    if (!c) return errf(err, errlen, "%s: cannot allocate the canvas", path);
    double *x = xmalloc((size_t)(t->nrow ? t->nrow : 1) * sizeof *x);
    double *y = xmalloc((size_t)(t->nrow ? t->nrow : 1) * sizeof *y);
    double *ys = xmalloc((size_t)(t->nrow ? t->nrow : 1) * sizeof *ys);
    for (int i = 0; i < t->nrow; i++) x[i] = t->v[(size_t)i * t->ncol];
    /* tight_layout: the figure's edge padding, then equal cells */
    double pad = plot_pt(c, 0.54 * 11), cw = (W - 2 * pad) / per_row, ch = (H - 2 * pad) / 2;
    for (int p = 0; p < n; p++) {
        for (int i = 0; i < t->nrow; i++) y[i] = t->v[(size_t)i * t->ncol + cols[p]];
        chart_gaussian_smooth(y, t->nrow, 3, ys);
        plot_axes a = plot_axes_new(c, pad + (p % per_row) * cw, pad + (p / per_row) * ch, cw, ch);
        plot_axes_data(&a, x, y, t->nrow);
        plot_axes_data(&a, x, ys, t->nrow);
        plot_axes_frame(&a, &(plot_frame){.title = t->names[cols[p]], .title_pt = 12});
        plot_style raw = {.color = plot_cycle(0), .width_pt = 2, .marker_pt = 8};
        plot_style smooth = {.color = plot_cycle(1), .width_pt = 2, .dash = PLOT_DOTTED};
        plot_line(&a, x, y, t->nrow, &raw);
        plot_line(&a, x, ys, t->nrow, &smooth);
        if (p == 1) { /* Ultralytics puts the one legend on the second panel */
            plot_legend_entry e[2] = {{"results", raw}, {"smooth", smooth}};
            double *px = xmalloc(2 * (size_t)(t->nrow ? t->nrow : 1) * sizeof *px);
            double *py = xmalloc(2 * (size_t)(t->nrow ? t->nrow : 1) * sizeof *py);
            for (int i = 0; i < t->nrow; i++) {
                px[i] = px[t->nrow + i] = x[i];
                py[i] = y[i];
                py[t->nrow + i] = ys[i];
            }
            plot_legend(&a, e, 2, PLOT_LEGEND_BEST, 11, px, py, 2 * t->nrow);
            free(px);
            free(py);
        }
    }
    free(x);
    free(y);
    free(ys);
    int rc = plot_canvas_save_png(c, path, err, errlen);
    plot_canvas_free(c);
    return rc;
}
