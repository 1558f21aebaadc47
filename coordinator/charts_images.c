/* Charts of labels and images: labels.jpg (plot_labels, 8 x 8 in at 200 dpi) and the image
 * mosaics of plot_images (val_batchK_labels.jpg / _pred.jpg). */
#include "coordinator/charts.h"

#include "common/log.h"
#include "coordinator/plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LABEL_BOXES 500 /* outlines drawn in the second panel */
#define HIST_BINS 50
#define JPEG_QUALITY 90

/* 50 x 50 counts of (x, y) over the data's range, drawn white (0) to blue (max), row 0 at the
 * top of the axes meaning the largest y (hist2d draws y upwards). */
static void hist2d(plot_axes *a, const float *boxes, size_t n, int xi, int yi, const char *xl,
                   const char *yl) {
    double lo[2] = {INFINITY, INFINITY}, hi[2] = {-INFINITY, -INFINITY};
    for (size_t i = 0; i < n; i++)
        for (int d = 0; d < 2; d++) {
            double v = boxes[i * 4 + (d ? yi : xi)];
            lo[d] = fmin(lo[d], v), hi[d] = fmax(hi[d], v);
        }
    for (int d = 0; d < 2; d++) /* numpy.histogram2d widens an empty range by 0.5 each side */
        if (!(hi[d] > lo[d])) lo[d] = (n ? lo[d] : 0) - 0.5, hi[d] = (n ? hi[d] : 0) + 0.5;
    double *cnt = xcalloc(HIST_BINS * HIST_BINS, sizeof *cnt), mx = 0;
    for (size_t i = 0; i < n; i++) {
        int b[2];
        for (int d = 0; d < 2; d++) {
            double v = boxes[i * 4 + (d ? yi : xi)];
            b[d] = (int)((v - lo[d]) / (hi[d] - lo[d]) * HIST_BINS);
            if (b[d] >= HIST_BINS) b[d] = HIST_BINS - 1; /* the last bin includes its right edge */
        }
        double *c = &cnt[(size_t)(HIST_BINS - 1 - b[1]) * HIST_BINS + b[0]];
        *c += 1;
        mx = fmax(mx, *c);
    }
    plot_axes_xlim(a, lo[0], hi[0]);
    plot_axes_ylim(a, lo[1], hi[1]);
    plot_axes_frame(a, &(plot_frame){.xlabel = xl, .ylabel = yl, .no_spines = true});
    /* the cells in data units: map them through a heat-map axes over the same pixels */
    plot_axes h = *a;
    plot_heatmap_axes(&h, HIST_BINS, HIST_BINS);
    plot_heatmap(&h, cnt, HIST_BINS, HIST_BINS, 0, mx > 0 ? mx : 1, plot_cmap_white_blue);
    free(cnt);
}

int chart_labels(const float *boxes, const int *cls, size_t n, int nc, const char *const *names,
                 const char *path, char *err, size_t errlen) {
    double dpi = 200, W = 8 * dpi, H = 8 * dpi;
    plot_canvas *c = plot_canvas_new((int)W, (int)H, dpi);
    if (!c) return errf(err, errlen, "%s: cannot allocate the canvas", path);
    double pad = plot_pt(c, 0.54 * 11), cw = (W - 2 * pad) / 2, ch = (H - 2 * pad) / 2;
    /* instances per class */
    if (nc < 1) nc = 1;
    double *x = xmalloc((size_t)nc * sizeof *x), *h = xcalloc((size_t)nc, sizeof *h);
    plot_rgb *col = xmalloc((size_t)nc * sizeof *col);
    for (int k = 0; k < nc; k++) x[k] = k, col[k] = plot_class_color(k);
    for (size_t i = 0; i < n; i++)
        if (cls[i] >= 0 && cls[i] < nc) h[cls[i]]++;
    plot_axes a = plot_axes_new(c, pad, pad, cw, ch);
    double hx[2] = {-0.5, nc - 0.5}, hy[2] = {0, 0};
    for (int k = 0; k < nc; k++) hy[1] = fmax(hy[1], h[k]);
    plot_axes_data(&a, hx, hy, 2);
    bool named = names && nc < 30;
    plot_axes_frame(&a, &(plot_frame){.ylabel = "instances",
                                      .xlabel = named ? NULL : "classes",
                                      .no_spines = true,
                                      .xticklabels = named ? names : NULL,
                                      .nxt = named ? nc : 0,
                                      .tick_label_pt = 10,
                                      .rot90 = true});
    plot_bars(&a, x, h, nc, 0.8, col, false, named);
    /* box outlines, centred, on a white 1000 x 1000 image shown without axes */
    a = plot_axes_new(c, pad + cw, pad, cw, ch);
    plot_axes_xlim(&a, -0.5, 999.5);
    plot_axes_ylim(&a, 999.5, -0.5);
    plot_axes_frame(&a, &(plot_frame){.no_spines = true, .no_ticks = true});
    double side = fmin(a.w, a.h); /* imshow keeps the image square */
    a.x += (a.w - side) / 2, a.y += (a.h - side) / 2, a.w = a.h = side;
    cairo_t *cr = plot_canvas_cairo(c);
    cairo_save(cr);
    cairo_set_line_width(cr, fmax(1.0, side / 1000));
    for (size_t i = 0; i < n && i < LABEL_BOXES; i++) {
        double bw = boxes[i * 4 + 2] * 1000, bh = boxes[i * 4 + 3] * 1000;
        plot_rgb k = plot_class_color(cls[i]);
        cairo_set_source_rgb(cr, k.r, k.g, k.b);
        double x0 = plot_px(&a, 500 - bw / 2), x1 = plot_px(&a, 500 + bw / 2);
        double y0 = plot_py(&a, 500 - bh / 2), y1 = plot_py(&a, 500 + bh / 2);
        cairo_rectangle(cr, fmin(x0, x1), fmin(y0, y1), fabs(x1 - x0), fabs(y1 - y0));
        cairo_stroke(cr);
    }
    cairo_restore(cr);
    /* centres and sizes */
    a = plot_axes_new(c, pad, pad + ch, cw, ch);
    hist2d(&a, boxes, n, 0, 1, "x", "y");
    a = plot_axes_new(c, pad + cw, pad + ch, cw, ch);
    hist2d(&a, boxes, n, 2, 3, "width", "height");
    free(x);
    free(h);
    free(col);
    int rc = plot_canvas_save_jpeg(c, path, JPEG_QUALITY, err, errlen);
    plot_canvas_free(c);
    return rc;
}

/* ---- mosaics -----------------------------------------------------------------------------------
 */

/* Ultralytics' Annotator text colour on a class colour: dark text on light colours. */
static plot_rgb text_on(plot_rgb bg) {
    double lum = 0.299 * bg.r + 0.587 * bg.g + 0.114 * bg.b;
    return lum > 0.6 ? (plot_rgb){0.0, 0.0, 0.0} : (plot_rgb){1, 1, 1};
}

/* A box with its label on a filled tab above it (inside the box when there is no room above),
 * shifted left when it would run past the mosaic's right edge. */
static void box_label(plot_canvas *c, double x0, double y0, double x1, double y1, plot_rgb col,
                      const char *label, double lw, double font_px) {
    plot_stroke_rect(c, x0, y0, x1 - x0, y1 - y0, col, lw);
    if (!label[0]) return;
    double pt = font_px * 72.0 / plot_pt(c, 72.0);
    double tw = plot_text_width(c, label, pt) + 2, th = plot_text_height(c, pt);
    double lx = x0 - lw / 2, ly = y0 - lw / 2;
    if (lx + tw > plot_canvas_width(c)) lx = plot_canvas_width(c) - tw;
    bool outside = ly >= th;
    double ty = outside ? ly - th : ly;
    plot_fill_rect(c, lx, ty, tw, th, col);
    plot_text(c, lx + 1, ty, label, pt, text_on(col), PLOT_LEFT, PLOT_TOP, 0);
}

/* "name" for a label (conf < 0), "name 0.9" / "name 0.87" for a prediction (decimals). */
static void box_text(const chart_box *b, const char *const *names, int nc, int decimals, char *out,
                     size_t n) {
    char num[16];
    snprintf(num, sizeof num, "%d", b->cls);
    const char *nm = names && b->cls >= 0 && b->cls < nc ? names[b->cls] : num;
    if (b->conf >= 0)
        snprintf(out, n, "%s %.*f", nm, decimals, b->conf);
    else
        snprintf(out, n, "%s", nm);
}

int chart_mosaic(const chart_tile *tiles, int ntiles, const chart_box *boxes, size_t nboxes,
                 const char *const *names, int nc, int max_side, const char *path, char *err,
                 size_t errlen) {
    if (ntiles > 16) ntiles = 16;
    if (ntiles < 1) return errf(err, errlen, "%s: no images to draw", path);
    int ns = (int)ceil(sqrt((double)ntiles));
    int T = max_side * ns > 1920 ? (int)ceil(1920.0 / ns) : max_side;
    plot_canvas *c = plot_canvas_new(T * ns, T * ns, 72); /* 72 dpi: points are pixels */
    if (!c) return errf(err, errlen, "%s: cannot allocate the canvas", path);
    /* font and line sizes of plot_images: fs = max(int((h + w) ns 0.01), 18), lw = fs / 10 */
    double fs = fmax((int)(2.0 * T * ns * 0.01), 18), lw = fmax(1, round(fs / 10));
    plot_rgb grey = plot_hex(0x727272), white = {1, 1, 1};
    double *gain = xmalloc((size_t)ntiles * 3 * sizeof *gain); /* scale, left, top per tile */
    /* all images first, then the annotations, which may reach into a neighbouring tile */
    for (int i = 0; i < ntiles; i++) {
        double tx = (double)T * (i / ns), ty = (double)T * (i % ns); /* column by column */
        const chart_tile *t = &tiles[i];
        double g = fmin((double)T / t->w, (double)T / t->h), iw = t->w * g, ih = t->h * g;
        gain[3 * i] = g, gain[3 * i + 1] = tx + (T - iw) / 2, gain[3 * i + 2] = ty + (T - ih) / 2;
        plot_fill_rect(c, tx, ty, T, T, grey);
        plot_image(c, t->rgb, t->w, t->h, gain[3 * i + 1], gain[3 * i + 2], iw, ih);
    }
    for (int i = 0; i < ntiles; i++) {
        double tx = (double)T * (i / ns), ty = (double)T * (i % ns);
        plot_stroke_rect(c, tx, ty, T, T, white, 2);
        if (tiles[i].name) {
            char nm[41]; /* plot_images shows 40 characters */
            snprintf(nm, sizeof nm, "%s", tiles[i].name);
            plot_text(c, tx + 5, ty + 5, nm, fs, plot_hex(0xdcdcdc), PLOT_LEFT, PLOT_TOP, 0);
        }
        double g = gain[3 * i], ox = gain[3 * i + 1], oy = gain[3 * i + 2];
        for (size_t k = 0; k < nboxes; k++) {
            const chart_box *b = &boxes[k];
            if (b->tile != i) continue;
            char label[160];
            box_text(b, names, nc, 1, label, sizeof label);
            box_label(c, ox + b->x1 * g, oy + b->y1 * g, ox + b->x2 * g, oy + b->y2 * g,
                      plot_class_color(b->cls), label, lw, fs);
        }
    }
    free(gain);
    int rc = plot_canvas_save_jpeg(c, path, JPEG_QUALITY, err, errlen);
    plot_canvas_free(c);
    return rc;
}

int chart_annotated(const chart_tile *img, const chart_box *boxes, size_t nboxes,
                    const char *const *names, int nc, const char *path, char *err, size_t errlen) {
    plot_canvas *c = plot_canvas_new(img->w, img->h, 72); /* 72 dpi: points are pixels */
    if (!c) return errf(err, errlen, "%s: cannot allocate the canvas", path);
    plot_image(c, img->rgb, img->w, img->h, 0, 0, img->w, img->h);
    /* Annotator's sizes: lw = max(round((h + w) / 2 * 0.003), 2); cv2 text of scale lw / 3 */
    double lw = fmax(round((img->w + img->h) / 2.0 * 0.003), 2), fs = fmax(lw * 22 / 3, 12);
    for (size_t k = 0; k < nboxes; k++) {
        const chart_box *b = &boxes[k];
        char label[160];
        box_text(b, names, nc, 2, label, sizeof label);
        box_label(c, b->x1, b->y1, b->x2, b->y2, plot_class_color(b->cls), label, lw, fs);
    }
    size_t len = strlen(path);
    bool png = len >= 4 && !strcasecmp(path + len - 4, ".png");
    int rc = png ? plot_canvas_save_png(c, path, err, errlen)
                 : plot_canvas_save_jpeg(c, path, JPEG_QUALITY, err, errlen);
    plot_canvas_free(c);
    return rc;
}
