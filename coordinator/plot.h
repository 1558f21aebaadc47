/* Charts on cairo: a canvas, axes with ticks and labels, line/bar/heat-map series, legends, colour
 * bars and raster images, saved as PNG (cairo) or JPEG (TurboJPEG), atomically.
 *
 * Sizes follow matplotlib's conventions so our charts look like the Ultralytics ones: a canvas is
 * made in pixels at a dpi, and text sizes, line widths and marker sizes are in points (1/72 in),
 * so an 11 pt label on a 200 dpi canvas is 30.6 px. Text is drawn with cairo's toy font API in
 * DejaVu Sans (matplotlib's default face; fontconfig falls back to any sans face).
 * Pixel coordinates have their origin at the top left; data coordinates grow up and right. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cairo.h>

typedef struct plot_rgb {
    double r, g, b; /* 0..1 */
} plot_rgb;

plot_rgb plot_hex(uint32_t rgb); /* 0xRRGGBB */
/* matplotlib's default colour cycle (tab10): C0 blue, C1 orange, ... */
plot_rgb plot_cycle(int i);
/* Ultralytics' 20-colour class palette (Colors()): class i gets plot_class_color(i). */
plot_rgb plot_class_color(int i);
/* Colour maps on [0, 1]: matplotlib's "Blues", and the white-to-blue ramp of labels.jpg. */
plot_rgb plot_cmap_blues(double t);
plot_rgb plot_cmap_white_blue(double t);
typedef plot_rgb (*plot_cmap)(double t);

/* ---- canvas ------------------------------------------------------------------------------- */

typedef struct plot_canvas plot_canvas;

/* A white canvas. NULL only when cairo cannot allocate it. */
plot_canvas *plot_canvas_new(int width, int height, double dpi);
void plot_canvas_free(plot_canvas *c);
int plot_canvas_width(const plot_canvas *c);
int plot_canvas_height(const plot_canvas *c);
double plot_pt(const plot_canvas *c, double points); /* points -> pixels */
cairo_t *plot_canvas_cairo(plot_canvas *c);
/* Written to a temporary name and renamed: a reader never sees half an image. 0 or -1 + err. */
int plot_canvas_save_png(plot_canvas *c, const char *path, char *err, size_t errlen);
int plot_canvas_save_jpeg(plot_canvas *c, const char *path, int quality, char *err, size_t errlen);

typedef enum { PLOT_LEFT, PLOT_CENTER, PLOT_RIGHT } plot_halign;
typedef enum { PLOT_TOP, PLOT_MIDDLE, PLOT_BOTTOM } plot_valign;

/* Text anchored at (x, y) pixels, rotated by angle_deg counter-clockwise about the anchor. */
void plot_text(plot_canvas *c, double x, double y, const char *s, double size_pt, plot_rgb color,
               plot_halign ha, plot_valign va, double angle_deg);
/* Width and height (ascent + descent of the face) in pixels of s at size_pt. */
double plot_text_width(plot_canvas *c, const char *s, double size_pt);
double plot_text_height(plot_canvas *c, double size_pt);
void plot_fill_rect(plot_canvas *c, double x, double y, double w, double h, plot_rgb color);
void plot_stroke_rect(plot_canvas *c, double x, double y, double w, double h, plot_rgb color,
                      double width_px);
/* An RGB uint8 HWC image drawn scaled into the pixel rectangle (x, y, w, h). */
void plot_image(plot_canvas *c, const uint8_t *rgb, int img_w, int img_h, double x, double y,
                double w, double h);

/* ---- axes --------------------------------------------------------------------------------- */

typedef enum { PLOT_SOLID, PLOT_DOTTED, PLOT_DASHED } plot_dash;

typedef struct plot_style {
    plot_rgb color;
    double width_pt; /* line width; 0: no line */
    plot_dash dash;
    double marker_pt; /* > 0: a '.' marker (a dot of half this diameter, as matplotlib) */
} plot_style;

typedef struct plot_axes {
    plot_canvas *c;
    double cx, cy, cw, ch; /* the cell the axes lay themselves out in (pixels) */
    double x, y, w, h;     /* the data area (pixels), set by plot_axes_frame */
    double x0, x1, y0, y1; /* data limits */
    bool have_data, fixed_x, fixed_y;
    double font_pt; /* tick labels (11: Ultralytics' rcParams font.size) */
} plot_axes;

/* Axes that will lay themselves out in the pixel cell (x, y, w, h). */
plot_axes plot_axes_new(plot_canvas *c, double x, double y, double w, double h);
/* Grows the data limits to hold the points (non-finite values are skipped). */
void plot_axes_data(plot_axes *a, const double *x, const double *y, int n);
void plot_axes_xlim(plot_axes *a, double x0, double x1); /* fixed, no margins */
void plot_axes_ylim(plot_axes *a, double y0, double y1);

typedef struct plot_frame {
    const char *title, *xlabel, *ylabel; /* NULL: none */
    double title_pt, label_pt;           /* 0: 12 and font_pt */
    bool no_spines;                      /* labels.jpg and the confusion matrix hide them */
    bool no_ticks;                       /* no ticks or tick labels at all */
    double right_pad_px;                 /* room kept free at the right (an outside legend) */
    /* Categorical x ticks at 0..nxt-1 with these labels, rotated 90 degrees when rot90. */
    const char *const *xticklabels;
    int nxt;
    const char *const *yticklabels;
    int nyt;
    double tick_label_pt; /* categorical tick labels; 0: font_pt */
    bool rot90;
} plot_frame;

/* Final limits (matplotlib's 5% margins around the data unless fixed), nice ticks, then the
 * data area inside the cell leaving room for tick labels, axis labels and title; draws all of
 * that. Series are drawn after this. */
void plot_axes_frame(plot_axes *a, const plot_frame *f);
/* Data -> pixel coordinates. */
double plot_px(const plot_axes *a, double x);
double plot_py(const plot_axes *a, double y);

/* Ticks matplotlib's AutoLocator would choose for [lo, hi] with at most max_ticks intervals
 * (steps 1, 2, 2.5, 5 times a power of ten). Writes at most cap values; returns the count. */
int plot_nice_ticks(double lo, double hi, int max_ticks, double *ticks, int cap);
/* A tick label: as few decimals as the tick spacing needs ("0.25", "1", "1e+06"). */
void plot_tick_label(double v, double step, char *buf, size_t n);

/* Series, clipped to the data area. */
void plot_line(plot_axes *a, const double *x, const double *y, int n, const plot_style *s);
/* Bars centred at x[i] of the given width (data units) from 0 to h[i]; colors[i] (or colors[0]
 * for all when one_color). With value_labels, each bar's height is printed above it. */
void plot_bars(plot_axes *a, const double *x, const double *h, int n, double width,
               const plot_rgb *colors, bool one_color, bool value_labels);
/* rows x cols cells (row 0 at the top, as imshow) over the data area: cell (i, j) spans
 * x in [j - 0.5, j + 0.5], y in [i - 0.5, i + 0.5] when the limits are those (plot_heatmap_axes).
 * NaN cells are left blank. */
void plot_heatmap(plot_axes *a, const double *v, int rows, int cols, double vmin, double vmax,
                  plot_cmap cmap);
/* Limits so that a rows x cols heat map fills the axes with row 0 at the top. */
void plot_heatmap_axes(plot_axes *a, int rows, int cols);
/* A vertical colour bar in the pixel rectangle with ticks and labels on its right. */
void plot_colorbar(plot_canvas *c, double x, double y, double w, double h, double vmin, double vmax,
                   plot_cmap cmap, double font_pt);

typedef enum {
    PLOT_LEGEND_BEST, /* the corner with the fewest data points under it */
    PLOT_LEGEND_UPPER_RIGHT,
    PLOT_LEGEND_OUTSIDE_RIGHT, /* beside the axes, top aligned (bbox_to_anchor=(1.04, 1)) */
} plot_legend_loc;

typedef struct plot_legend_entry {
    const char *label;
    plot_style style;
} plot_legend_entry;

/* The series drawn so far (for PLOT_LEGEND_BEST) are given as points xs/ys (data units). */
void plot_legend(plot_axes *a, const plot_legend_entry *e, int n, plot_legend_loc loc,
                 double font_pt, const double *xs, const double *ys, int npts);
/* Width in pixels an outside legend of these labels needs (for plot_frame.right_pad_px). */
double plot_legend_width(plot_canvas *c, const plot_legend_entry *e, int n, double font_pt);
