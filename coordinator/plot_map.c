/* Heat maps (imshow-like cells) and colour bars. */
#include "coordinator/plot.h"

#include <math.h>
#include <stdio.h>

void plot_heatmap_axes(plot_axes *a, int rows, int cols) {
    plot_axes_xlim(a, -0.5, cols - 0.5);
    plot_axes_ylim(a, rows - 0.5, -0.5); /* row 0 at the top */
}

void plot_heatmap(plot_axes *a, const double *v, int rows, int cols, double vmin, double vmax,
                  plot_cmap cmap) {
    double span = vmax > vmin ? vmax - vmin : 1;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            double x = v[(size_t)i * cols + j];
            if (isnan(x)) continue;
            double px0 = plot_px(a, j - 0.5), px1 = plot_px(a, j + 0.5);
            double py0 = plot_py(a, i - 0.5), py1 = plot_py(a, i + 0.5);
            /* cells overlap by a hair so no background seams show between them */
            plot_fill_rect(a->c, fmin(px0, px1), fmin(py0, py1), fabs(px1 - px0) + 0.5,
                           fabs(py1 - py0) + 0.5, cmap((x - vmin) / span));
        }
}

void plot_colorbar(plot_canvas *c, double x, double y, double w, double h, double vmin, double vmax,
                   plot_cmap cmap, double font_pt) {
    int steps = (int)ceil(h);
    for (int k = 0; k < steps; k++) {
        double t = 1.0 - (k + 0.5) / steps;
        plot_fill_rect(c, x, y + k, w, 1.5, cmap(t));
    }
    if (!(vmax > vmin)) return;
    double ticks[32];
    double len_pt = h * 72.0 / plot_pt(c, 72.0);
    int nb = (int)floor(len_pt / (font_pt * 2));
    nb = nb < 1 ? 1 : nb > 9 ? 9 : nb;
    int n = plot_nice_ticks(vmin, vmax, nb, ticks, 32);
    double step = n > 1 ? ticks[1] - ticks[0] : 1, tick = plot_pt(c, 3.5);
    cairo_t *cr = plot_canvas_cairo(c);
    cairo_save(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_line_width(cr, plot_pt(c, 0.8));
    for (int i = 0; i < n; i++) {
        double py = y + h - (ticks[i] - vmin) / (vmax - vmin) * h;
        cairo_move_to(cr, x + w, py);
        cairo_line_to(cr, x + w + tick, py);
        cairo_stroke(cr);
        char s[32];
        plot_tick_label(ticks[i], step, s, sizeof s);
        plot_text(c, x + w + tick + plot_pt(c, 3.5), py, s, font_pt, (plot_rgb){0, 0, 0}, PLOT_LEFT,
                  PLOT_MIDDLE, 0);
    }
    cairo_restore(cr);
}
