/* Validation charts: PR curve, metric-confidence curves (9 x 6 in at 250 dpi) and the confusion
 * matrix (12 x 9 in at 250 dpi), as Ultralytics' plot_pr_curve, plot_mc_curve and
 * ConfusionMatrix.plot draw them. */
#include "coordinator/charts.h"

#include "common/log.h"
#include "coordinator/plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPTS VAL_CURVE_POINTS
#define PER_CLASS_LEGEND 21 /* classes below this get their own line colour and legend entry */

/* Classes with ground truth: the rows Ultralytics' curves have. */
static int eval_classes(const val_metrics *m, int *ev) {
    int n = 0;
    for (int c = 0; c < m->nc; c++)
        if (m->gt[c] > 0) ev[n++] = c;
    return n;
}

typedef struct {
    plot_canvas *c;
    plot_axes a;
    plot_legend_entry *e;
    char (*labels)[160];
    int ne;
} curve_fig;

/* The figure, its axes laid out leaving room for the outside legend of the given labels. */
static void curve_begin(curve_fig *f, int nlabels, char (*labels)[160], const plot_style *styles,
                        const char *title, const char *xl, const char *yl) {
    double dpi = 250;
    f->c = plot_canvas_new(9 * 250, 6 * 250, dpi);
    f->e = xcalloc((size_t)nlabels, sizeof *f->e);
    for (int i = 0; i < nlabels; i++) f->e[i] = (plot_legend_entry){labels[i], styles[i]};
    f->ne = nlabels;
    f->labels = labels;
    f->a = plot_axes_new(f->c, 0, 0, 9 * dpi, 6 * dpi);
    plot_axes_xlim(&f->a, 0, 1);
    plot_axes_ylim(&f->a, 0, 1);
    plot_axes_frame(&f->a,
                    &(plot_frame){.title = title,
                                  .title_pt = 13.2, /* matplotlib's "large" */
                                  .xlabel = xl,
                                  .ylabel = yl,
                                  .right_pad_px = plot_legend_width(f->c, f->e, nlabels, 11) +
                                                  0.04 * 6.5 * dpi});
}

static int curve_end(curve_fig *f, const char *path, char *err, size_t errlen) {
    plot_legend(&f->a, f->e, f->ne, PLOT_LEGEND_OUTSIDE_RIGHT, 11, NULL, NULL, 0);
    int rc = plot_canvas_save_png(f->c, path, err, errlen);
    plot_canvas_free(f->c);
    free(f->e);
    return rc;
}

static void x_axis(double *x) {
    for (int i = 0; i < NPTS; i++) x[i] = i == NPTS - 1 ? 1.0 : (double)i / (NPTS - 1);
}

/* Lines of the evaluated classes (per-class colours when few, else grey) and the mean of rows. */
static void class_lines(curve_fig *f, const double *rows, const int *ev, int ne, const double *x,
                        double *mean) {
    for (int i = 0; i < NPTS; i++) mean[i] = 0;
    for (int k = 0; k < ne; k++) {
        const double *y = rows + (size_t)ev[k] * NPTS;
        for (int i = 0; i < NPTS; i++) mean[i] += y[i] / ne;
        plot_style s = {.color = ne < PER_CLASS_LEGEND ? plot_cycle(k) : plot_hex(0x808080),
                        .width_pt = 1};
        plot_line(&f->a, x, y, NPTS, &s);
    }
}

static int no_classes(const char *path, char *err, size_t errlen) {
    return errf(err, errlen, "%s: no class has ground truth: nothing to plot", path);
}

int chart_pr_curve(const val_metrics *m, const char *const *names, const char *path, char *err,
                   size_t errlen) {
    int *ev = xmalloc((size_t)(m->nc > 0 ? m->nc : 1) * sizeof *ev), ne = eval_classes(m, ev);
    if (ne == 0) {
        free(ev);
        return no_classes(path, err, errlen);
    }
    int nl = (ne < PER_CLASS_LEGEND ? ne : 0) + 1;
    char(*labels)[160] = xcalloc((size_t)nl, sizeof *labels);
    plot_style *st = xcalloc((size_t)nl, sizeof *st);
    double map50 = 0;
    for (int k = 0; k < ne; k++) map50 += m->ap[(size_t)ev[k] * VAL_NIOU] / ne;
    for (int k = 0; k < nl - 1; k++) {
        snprintf(labels[k], sizeof labels[k], "%s %.3f", names[ev[k]],
                 m->ap[(size_t)ev[k] * VAL_NIOU]);
        st[k] = (plot_style){.color = plot_cycle(k), .width_pt = 1};
    }
    snprintf(labels[nl - 1], sizeof labels[0], "all classes %.3f mAP@0.5", map50);
    st[nl - 1] = (plot_style){.color = plot_hex(0x0000ff), .width_pt = 3};
    curve_fig f;
    curve_begin(&f, nl, labels, st, "Precision-Recall Curve", "Recall", "Precision");
    double x[NPTS], mean[NPTS];
    x_axis(x);
    class_lines(&f, m->pr_curve, ev, ne, x, mean);
    plot_line(&f.a, x, mean, NPTS, &st[nl - 1]);
    int rc = curve_end(&f, path, err, errlen);
    free(labels);
    free(st);
    free(ev);
    return rc;
}

int chart_mc_curve(const val_metrics *m, chart_metric which, const char *const *names,
                   const char *path, char *err, size_t errlen) {
    int *ev = xmalloc((size_t)(m->nc > 0 ? m->nc : 1) * sizeof *ev), ne = eval_classes(m, ev);
    if (ne == 0) {
        free(ev);
        return no_classes(path, err, errlen);
    }
    const double *rows = which == CHART_F1          ? m->f1_curve
                         : which == CHART_PRECISION ? m->p_curve
                                                    : m->r_curve;
    const char *yl = which == CHART_F1 ? "F1" : which == CHART_PRECISION ? "Precision" : "Recall";
    double x[NPTS], mean[NPTS], sm[NPTS];
    x_axis(x);
    for (int i = 0; i < NPTS; i++) {
        mean[i] = 0;
        for (int k = 0; k < ne; k++) mean[i] += rows[(size_t)ev[k] * NPTS + i] / ne;
    }
    val_smooth_box(mean, NPTS, 0.1, sm);
    int best = 0;
    for (int i = 1; i < NPTS; i++)
        if (sm[i] > sm[best]) best = i;
    int nl = (ne < PER_CLASS_LEGEND ? ne : 0) + 1;
    char(*labels)[160] = xcalloc((size_t)nl, sizeof *labels);
    plot_style *st = xcalloc((size_t)nl, sizeof *st);
    for (int k = 0; k < nl - 1; k++) {
        snprintf(labels[k], sizeof labels[k], "%s", names[ev[k]]);
        st[k] = (plot_style){.color = plot_cycle(k), .width_pt = 1};
    }
    snprintf(labels[nl - 1], sizeof labels[0], "all classes %.2f at %.3f", sm[best], x[best]);
    st[nl - 1] = (plot_style){.color = plot_hex(0x0000ff), .width_pt = 3};
    char title[64];
    snprintf(title, sizeof title, "%s-Confidence Curve", yl);
    curve_fig f;
    curve_begin(&f, nl, labels, st, title, "Confidence", yl);
    class_lines(&f, rows, ev, ne, x, mean);
    plot_line(&f.a, x, sm, NPTS, &st[nl - 1]);
    int rc = curve_end(&f, path, err, errlen);
    free(labels);
    free(st);
    free(ev);
    return rc;
}

/* ---- confusion matrix -------------------------------------------------------------------------
 */

int chart_confusion(const int64_t *matrix, int nc, const char *const *names, bool normalize,
                    const char *path, char *err, size_t errlen) {
    int n = nc + 1;
    double *v = xmalloc((size_t)n * n * sizeof *v), vmax = 0;
    for (int j = 0; j < n; j++) {
        double col = 0;
        for (int i = 0; i < n; i++) col += (double)matrix[(size_t)i * n + j];
        for (int i = 0; i < n; i++) {
            double x = (double)matrix[(size_t)i * n + j] / (normalize ? col + 1e-9 : 1);
            v[(size_t)i * n + j] = x < 0.005 ? NAN : x; /* not annotated (would read 0.00) */
            if (x >= 0.005) vmax = fmax(vmax, x);
        }
    }
    const char **tl = xmalloc((size_t)n * sizeof *tl);
    for (int i = 0; i < nc; i++) tl[i] = names[i];
    tl[nc] = "background";
    double dpi = 250, W = 12 * dpi, H = 9 * dpi;
    plot_canvas *c = plot_canvas_new((int)W, (int)H, dpi);
    double tick_pt = fmax(6, 15 - 0.1 * n), label_pt = fmax(6, 12 - 0.1 * n);
    /* subplots_adjust(left=0, right=0.84, top=0.94, bottom=max(0.1, 0.25 - 0.001 n)); the colour
     * bar (fraction 0.046, pad 0.05) takes the right of that box and the square image is
     * anchored to the right of what is left (colorbar's panchor (1, 0.5)); the bar is as tall as
     * the image and 1/20 as wide (aspect 20) */
    double btm = fmax(0.1, 0.25 - 0.001 * n), box_h = (0.94 - btm) * H;
    double right = 0.84 * W * (1 - 0.046 - 0.05), side = fmin(box_h, right), cbw = side / 20;
    double ax_x = right - side, ax_y = (1 - 0.94) * H + (box_h - side) / 2;
    plot_axes a = plot_axes_new(c, 0, 0, W, H);
    plot_heatmap_axes(&a, n, n);
    /* place the data area exactly, then draw labels around it */
    a.x = ax_x, a.y = ax_y, a.w = side, a.h = side;
    double vtop = vmax > 0 ? vmax : 1; /* imshow: vmin 0, vmax the largest shown value */
    plot_heatmap(&a, v, n, n, 0, vtop, plot_cmap_blues);
    plot_rgb black = {0, 0, 0}, white = {1, 1, 1};
    if (n < 30) {
        double thr = 0.45 * (normalize ? 1 : vtop);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                double x = v[(size_t)i * n + j];
                if (isnan(x)) continue;
                char s[32];
                if (normalize)
                    snprintf(s, sizeof s, "%.2f", x);
                else
                    snprintf(s, sizeof s, "%lld", (long long)x);
                plot_text(c, plot_px(&a, j), plot_py(&a, i), s, 10, x > thr ? white : black,
                          PLOT_CENTER, PLOT_MIDDLE, 0);
            }
    }
    double tick = plot_pt(c, 3.5), pad = plot_pt(c, 3.5);
    cairo_t *cr = plot_canvas_cairo(c);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_line_width(cr, plot_pt(c, 0.8));
    for (int i = 0; i < n && n < 99; i++) {
        double px = plot_px(&a, i), py = plot_py(&a, i);
        cairo_move_to(cr, px, a.y + a.h);
        cairo_line_to(cr, px, a.y + a.h + tick);
        cairo_move_to(cr, a.x, py);
        cairo_line_to(cr, a.x - tick, py);
        cairo_stroke(cr);
        plot_text(c, px, a.y + a.h + tick + pad, tl[i], tick_pt, black, PLOT_RIGHT, PLOT_MIDDLE,
                  90);
        plot_text(c, a.x - tick - pad, py, tl[i], tick_pt, black, PLOT_RIGHT, PLOT_MIDDLE, 0);
    }
    double xlw = 0, ylw = 0;
    for (int i = 0; i < n && n < 99; i++) {
        xlw = fmax(xlw, plot_text_width(c, tl[i], tick_pt));
        ylw = xlw;
    }
    plot_text(c, a.x + a.w / 2, a.y + a.h + tick + pad + xlw + plot_pt(c, 10), "True", label_pt,
              black, PLOT_CENTER, PLOT_TOP, 0);
    plot_text(c, a.x - tick - pad - ylw - plot_pt(c, 10), a.y + a.h / 2, "Predicted", label_pt,
              black, PLOT_CENTER, PLOT_BOTTOM, 90);
    plot_text(c, a.x + a.w / 2, a.y - plot_pt(c, 20),
              normalize ? "Confusion Matrix Normalized" : "Confusion Matrix", label_pt, black,
              PLOT_CENTER, PLOT_BOTTOM, 0);
    plot_colorbar(c, right + 0.05 * 0.84 * W, a.y, cbw, a.h, 0, vtop, plot_cmap_blues, 11);
    int rc = plot_canvas_save_png(c, path, err, errlen);
    plot_canvas_free(c);
    free(tl);
    free(v);
    return rc;
}
