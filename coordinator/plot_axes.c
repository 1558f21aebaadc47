/* Axes: limits, ticks, layout inside a cell (a small tight_layout), frame, lines, bars, legends.
 * Sizes are matplotlib's defaults: spines and ticks 0.8 pt, ticks 3.5 pt long outward with labels
 * 3.5 pt beyond, axis labels 4 pt off the tick labels, the title 6 pt above the axes, and about
 * one font size of padding around each cell. */
#include "coordinator/plot.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAX_TICKS 32
#define BLACK ((plot_rgb){0, 0, 0})

plot_axes plot_axes_new(plot_canvas *c, double x, double y, double w, double h) {
    return (plot_axes){.c = c, .cx = x, .cy = y, .cw = w, .ch = h, .font_pt = 11};
}

void plot_axes_data(plot_axes *a, const double *x, const double *y, int n) {
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) continue;
        if (!a->have_data) {
            if (!a->fixed_x) a->x0 = a->x1 = x[i];
            if (!a->fixed_y) a->y0 = a->y1 = y[i];
            a->have_data = true;
        }
        if (!a->fixed_x) a->x0 = fmin(a->x0, x[i]), a->x1 = fmax(a->x1, x[i]);
        if (!a->fixed_y) a->y0 = fmin(a->y0, y[i]), a->y1 = fmax(a->y1, y[i]);
    }
}

void plot_axes_xlim(plot_axes *a, double x0, double x1) {
    a->x0 = x0, a->x1 = x1, a->fixed_x = true;
}

void plot_axes_ylim(plot_axes *a, double y0, double y1) {
    a->y0 = y0, a->y1 = y1, a->fixed_y = true;
}

double plot_px(const plot_axes *a, double x) {
    return a->x + (x - a->x0) / (a->x1 - a->x0) * a->w;
}

double plot_py(const plot_axes *a, double y) {
    return a->y + a->h - (y - a->y0) / (a->y1 - a->y0) * a->h;
}

/* matplotlib's nonsingular() then its 5% autoscale margins. */
static void auto_limits(double *lo, double *hi, bool fixed, bool have) {
    if (fixed) return;
    if (!have) *lo = 0, *hi = 1;
    if (*hi - *lo < 1e-12 * fmax(1.0, fmax(fabs(*lo), fabs(*hi)))) {
        if (*lo == 0)
            *lo = -0.05, *hi = 0.05;
        else
            *lo -= 0.05 * fabs(*lo), *hi += 0.05 * fabs(*hi);
        return;
    }
    double m = 0.05 * (*hi - *lo);
    *lo -= m, *hi += m;
}

int plot_nice_ticks(double lo, double hi, int max_ticks, double *ticks, int cap) {
    if (!(hi > lo) || max_ticks < 1) return 0;
    static const double steps[] = {1, 2, 2.5, 5, 10};
    double raw = (hi - lo) / max_ticks, mag = pow(10, floor(log10(raw)));
    double step = 10 * mag;
    for (int i = 0; i < 5; i++)
        if (steps[i] * mag >= raw * (1 - 1e-9)) {
            step = steps[i] * mag;
            break;
        }
    /* fewer than two ticks inside: take a smaller step (matplotlib's min_n_ticks = 2) */
    for (int tries = 0; tries < 4; tries++) {
        double first = ceil(lo / step - 1e-9), last = floor(hi / step + 1e-9);
        if (last - first >= 1) break;
        step /= 2;
    }
    int n = 0;
    for (double k = ceil(lo / step - 1e-9); k * step <= hi + 1e-9 * step && n < cap; k++) {
        double v = k * step;
        ticks[n++] = fabs(v) < 1e-12 * step ? 0.0 : v;
    }
    return n;
}

void plot_tick_label(double v, double step, char *buf, size_t n) {
    double av = fmax(fabs(v), step);
    if (av >= 1e5 || (av > 0 && av < 1e-4)) {
        snprintf(buf, n, "%.3g", v);
        return;
    }
    int dec = 0;
    while (dec < 8 && fabs(step * pow(10, dec) - round(step * pow(10, dec))) > 1e-6) dec++;
    snprintf(buf, n, "%.*f", dec, v);
    if (buf[0] != '-') return;
    if (strspn(buf + 1, "0.") == strlen(buf + 1)) {
        memmove(buf, buf + 1, strlen(buf)); /* "-0.00" -> "0.00" */
    } else if (strlen(buf) + 3 < n) {       /* matplotlib's minus sign, U+2212 */
        memmove(buf + 3, buf + 1, strlen(buf));
        memcpy(buf, "\xe2\x88\x92", 3);
    }
}

typedef struct {
    double v[MAX_TICKS];
    char s[MAX_TICKS][32];
    int n;
    double maxw; /* widest label, pixels */
} tick_set;

static void make_ticks(plot_canvas *c, double lo, double hi, double len_px, double font_pt,
                       double per_label, tick_set *t) {
    double len_pt = len_px * 72.0 / (plot_pt(c, 72.0));
    int nb = (int)floor(len_pt / (font_pt * per_label));
    nb = nb < 1 ? 1 : nb > 9 ? 9 : nb;
    t->n = plot_nice_ticks(lo, hi, nb, t->v, MAX_TICKS);
    double step = t->n > 1 ? t->v[1] - t->v[0] : 1;
    t->maxw = 0;
    for (int i = 0; i < t->n; i++) {
        plot_tick_label(t->v[i], step, t->s[i], sizeof t->s[i]);
        t->maxw = fmax(t->maxw, plot_text_width(c, t->s[i], font_pt));
    }
}

static double cat_label_extent(plot_canvas *c, const char *const *labels, int n, double pt) {
    double m = 0;
    for (int i = 0; i < n; i++) m = fmax(m, plot_text_width(c, labels[i], pt));
    return m;
}

void plot_axes_frame(plot_axes *a, const plot_frame *f) {
    plot_canvas *c = a->c;
    double fp = a->font_pt, tp = f->title_pt > 0 ? f->title_pt : 12;
    double lp = f->label_pt > 0 ? f->label_pt : fp,
           cp = f->tick_label_pt > 0 ? f->tick_label_pt : fp;
    auto_limits(&a->x0, &a->x1, a->fixed_x, a->have_data);
    auto_limits(&a->y0, &a->y1, a->fixed_y, a->have_data);
    double pad = plot_pt(c, 0.54 * fp), tick = f->no_ticks ? 0 : plot_pt(c, 3.5),
           tpad = f->no_ticks ? 0 : plot_pt(c, 3.5), th = plot_text_height(c, fp);
    tick_set xt = {0}, yt = {0};
    double left = 0, bottom = 0, top = 0, right = 0;
    /* twice: tick labels depend on the area, the area on the labels' size */
    for (int pass = 0; pass < 2; pass++) {
        double w = a->cw - left - right - 2 * pad, h = a->ch - top - bottom - 2 * pad;
        if (pass == 0) w = a->cw * 0.8, h = a->ch * 0.8;
        if (!f->no_ticks && !f->xticklabels) make_ticks(c, a->x0, a->x1, w, fp, 3, &xt);
        if (!f->no_ticks && !f->yticklabels) make_ticks(c, a->y0, a->y1, h, fp, 2, &yt);
        double ylw = f->no_ticks      ? 0
                     : f->yticklabels ? cat_label_extent(c, f->yticklabels, f->nyt, cp)
                                      : yt.maxw;
        double xlh = f->no_ticks                  ? 0
                     : f->xticklabels && f->rot90 ? cat_label_extent(c, f->xticklabels, f->nxt, cp)
                                                  : plot_text_height(c, f->xticklabels ? cp : fp);
        left = tick + tpad + ylw + (f->ylabel ? plot_pt(c, 4) + plot_text_height(c, lp) : 0);
        bottom = tick + tpad + xlh + (f->xlabel ? plot_pt(c, 4) + plot_text_height(c, lp) : 0);
        top = f->title ? plot_text_height(c, tp) + plot_pt(c, 6) : th / 2;
        right = f->right_pad_px + (xt.n ? plot_text_width(c, xt.s[xt.n - 1], fp) / 2 : 0);
    }
    a->x = a->cx + pad + left;
    a->y = a->cy + pad + top;
    a->w = fmax(1, a->cw - 2 * pad - left - right);
    a->h = fmax(1, a->ch - 2 * pad - top - bottom);

    cairo_t *cr = plot_canvas_cairo(c);
    cairo_save(cr);
    cairo_set_line_width(cr, plot_pt(c, 0.8));
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_SQUARE);
    if (!f->no_spines) {
        cairo_rectangle(cr, a->x, a->y, a->w, a->h);
        cairo_stroke(cr);
    }
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
    double xb = a->y + a->h, yl = a->x;
    if (!f->no_ticks) {
        int nx = f->xticklabels ? f->nxt : xt.n, ny = f->yticklabels ? f->nyt : yt.n;
        for (int i = 0; i < nx; i++) {
            double v = f->xticklabels ? i : xt.v[i];
            if (v < fmin(a->x0, a->x1) - 1e-9 || v > fmax(a->x0, a->x1) + 1e-9) continue;
            double px = plot_px(a, v);
            cairo_move_to(cr, px, xb);
            cairo_line_to(cr, px, xb + tick);
            cairo_stroke(cr);
            if (f->xticklabels && f->rot90)
                plot_text(c, px, xb + tick + tpad, f->xticklabels[i], cp, BLACK, PLOT_RIGHT,
                          PLOT_MIDDLE, 90);
            else
                plot_text(c, px, xb + tick + tpad, f->xticklabels ? f->xticklabels[i] : xt.s[i],
                          f->xticklabels ? cp : fp, BLACK, PLOT_CENTER, PLOT_TOP, 0);
        }
        for (int i = 0; i < ny; i++) {
            double v = f->yticklabels ? i : yt.v[i];
            if (v < fmin(a->y0, a->y1) - 1e-9 || v > fmax(a->y0, a->y1) + 1e-9) continue;
            double py = plot_py(a, v);
            cairo_move_to(cr, yl, py);
            cairo_line_to(cr, yl - tick, py);
            cairo_stroke(cr);
            plot_text(c, yl - tick - tpad, py, f->yticklabels ? f->yticklabels[i] : yt.s[i],
                      f->yticklabels ? cp : fp, BLACK, PLOT_RIGHT, PLOT_MIDDLE, 0);
        }
    }
    cairo_restore(cr);
    if (f->title)
        plot_text(c, a->x + a->w / 2, a->y - plot_pt(c, 6), f->title, tp, BLACK, PLOT_CENTER,
                  PLOT_BOTTOM, 0);
    if (f->xlabel)
        plot_text(c, a->x + a->w / 2, a->cy + a->ch - pad, f->xlabel, lp, BLACK, PLOT_CENTER,
                  PLOT_BOTTOM, 0);
    if (f->ylabel)
        plot_text(c, a->cx + pad, a->y + a->h / 2, f->ylabel, lp, BLACK, PLOT_CENTER, PLOT_TOP, 90);
}

/* ---- series --------------------------------------------------------------------------------- */

static void clip_to_area(cairo_t *cr, const plot_axes *a) {
    cairo_rectangle(cr, a->x, a->y, a->w, a->h);
    cairo_clip(cr);
}

static void apply_style(plot_canvas *c, const plot_style *s) {
    cairo_t *cr = plot_canvas_cairo(c);
    cairo_set_source_rgb(cr, s->color.r, s->color.g, s->color.b);
    double lw = plot_pt(c, s->width_pt);
    cairo_set_line_width(cr, lw);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    if (s->dash == PLOT_DOTTED) { /* matplotlib's ':' = [1, 1.65] x line width, butt caps */
        double d[2] = {lw, 1.65 * lw};
        cairo_set_dash(cr, d, 2, 0);
        cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
    } else if (s->dash == PLOT_DASHED) { /* '--' = [3.7, 1.6] */
        double d[2] = {3.7 * lw, 1.6 * lw};
        cairo_set_dash(cr, d, 2, 0);
        cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
    } else {
        cairo_set_dash(cr, NULL, 0, 0);
        cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    }
}

static void dot(plot_canvas *c, double x, double y, const plot_style *s) {
    cairo_t *cr = plot_canvas_cairo(c);
    /* '.': a circle of half the marker size, plus matplotlib's 1 pt edge */
    double r = plot_pt(c, 0.25 * s->marker_pt + 0.5);
    cairo_new_sub_path(cr);
    cairo_arc(cr, x, y, r, 0, 2 * M_PI);
    cairo_fill(cr);
}

void plot_line(plot_axes *a, const double *x, const double *y, int n, const plot_style *s) {
    cairo_t *cr = plot_canvas_cairo(a->c);
    cairo_save(cr);
    clip_to_area(cr, a);
    apply_style(a->c, s);
    if (s->width_pt > 0) {
        bool pen = false;
        for (int i = 0; i < n; i++) {
            if (!isfinite(x[i]) || !isfinite(y[i])) { /* a gap, as matplotlib draws NaN */
                pen = false;
                continue;
            }
            if (pen)
                cairo_line_to(cr, plot_px(a, x[i]), plot_py(a, y[i]));
            else
                cairo_move_to(cr, plot_px(a, x[i]), plot_py(a, y[i]));
            pen = true;
        }
        cairo_stroke(cr);
    }
    if (s->marker_pt > 0)
        for (int i = 0; i < n; i++)
            if (isfinite(x[i]) && isfinite(y[i])) dot(a->c, plot_px(a, x[i]), plot_py(a, y[i]), s);
    cairo_restore(cr);
}

void plot_bars(plot_axes *a, const double *x, const double *h, int n, double width,
               const plot_rgb *colors, bool one_color, bool value_labels) {
    cairo_t *cr = plot_canvas_cairo(a->c);
    for (int i = 0; i < n; i++) {
        plot_rgb col = colors[one_color ? 0 : i];
        double x0 = plot_px(a, x[i] - width / 2), x1 = plot_px(a, x[i] + width / 2);
        double y0 = plot_py(a, 0), y1 = plot_py(a, h[i]);
        cairo_save(cr);
        clip_to_area(cr, a);
        plot_fill_rect(a->c, x0, fmin(y0, y1), x1 - x0, fabs(y1 - y0), col);
        cairo_restore(cr);
        if (value_labels) {
            char s[32];
            snprintf(s, sizeof s, "%.0f", h[i]);
            plot_text(a->c, (x0 + x1) / 2, y1, s, a->font_pt, BLACK, PLOT_CENTER, PLOT_BOTTOM, 0);
        }
    }
}

/* ---- legend ---------------------------------------------------------------------------------- */

double plot_legend_width(plot_canvas *c, const plot_legend_entry *e, int n, double font_pt) {
    double fs = plot_pt(c, font_pt), tw = 0;
    for (int i = 0; i < n; i++) tw = fmax(tw, plot_text_width(c, e[i].label, font_pt));
    /* borderpad 0.4, handle 2.0, handletextpad 0.8 (font sizes), plus the 0.5 axes pad */
    return fs * (0.4 + 2.0 + 0.8 + 0.4 + 0.5) + tw;
}

void plot_legend(plot_axes *a, const plot_legend_entry *e, int n, plot_legend_loc loc,
                 double font_pt, const double *xs, const double *ys, int npts) {
    plot_canvas *c = a->c;
    cairo_t *cr = plot_canvas_cairo(c);
    double fs = plot_pt(c, font_pt), th = plot_text_height(c, font_pt);
    double bw = plot_legend_width(c, e, n, font_pt) - 0.5 * fs;
    double bh = fs * 0.8 + n * th + (n - 1) * 0.5 * fs, ap = 0.5 * fs;
    double bx, by;
    if (loc == PLOT_LEGEND_OUTSIDE_RIGHT) {
        bx = a->x + a->w * 1.04 + ap;
        by = a->y;
    } else {
        /* candidates: upper right, upper left, lower left, lower right (matplotlib's order) */
        double cx[4] = {a->x + a->w - ap - bw, a->x + ap, a->x + ap, a->x + a->w - ap - bw};
        double cy[4] = {a->y + ap, a->y + ap, a->y + a->h - ap - bh, a->y + a->h - ap - bh};
        int best = 0, best_n = -1;
        for (int k = 0; k < (loc == PLOT_LEGEND_BEST ? 4 : 1); k++) {
            int cnt = 0;
            for (int i = 0; i < npts; i++) {
                double px = plot_px(a, xs[i]), py = plot_py(a, ys[i]);
                cnt += px >= cx[k] && px <= cx[k] + bw && py >= cy[k] && py <= cy[k] + bh;
            }
            if (best_n < 0 || cnt < best_n) best = k, best_n = cnt;
        }
        bx = cx[best];
        by = cy[best];
    }
    /* frame: white at 80 %, light grey edge, rounded corners */
    double r = 0.2 * fs;
    cairo_save(cr);
    cairo_new_sub_path(cr);
    cairo_arc(cr, bx + bw - r, by + r, r, -M_PI / 2, 0);
    cairo_arc(cr, bx + bw - r, by + bh - r, r, 0, M_PI / 2);
    cairo_arc(cr, bx + r, by + bh - r, r, M_PI / 2, M_PI);
    cairo_arc(cr, bx + r, by + r, r, M_PI, 1.5 * M_PI);
    cairo_close_path(cr);
    cairo_set_source_rgba(cr, 1, 1, 1, 0.8);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.8, 0.8, 0.8);
    cairo_set_line_width(cr, plot_pt(c, 0.8));
    cairo_stroke(cr);
    cairo_restore(cr);
    for (int i = 0; i < n; i++) {
        double ly = by + 0.4 * fs + i * (th + 0.5 * fs) + th / 2;
        double hx0 = bx + 0.4 * fs, hx1 = hx0 + 2.0 * fs;
        cairo_save(cr);
        apply_style(c, &e[i].style);
        if (e[i].style.width_pt > 0) {
            cairo_move_to(cr, hx0, ly);
            cairo_line_to(cr, hx1, ly);
            cairo_stroke(cr);
        }
        if (e[i].style.marker_pt > 0) dot(c, (hx0 + hx1) / 2, ly, &e[i].style);
        cairo_restore(cr);
        plot_text(c, hx1 + 0.8 * fs, ly, e[i].label, font_pt, BLACK, PLOT_LEFT, PLOT_MIDDLE, 0);
    }
}
