/* The canvas: a cairo RGB24 image surface, text, colours, and atomic PNG/JPEG output. */
#include "coordinator/plot.h"

#include "common/atomic_file.h"
#include "common/log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#define FONT_FACE "DejaVu Sans"

struct plot_canvas {
    cairo_surface_t *surf;
    cairo_t *cr;
    int w, h;
    double dpi;
};

plot_rgb plot_hex(uint32_t v) {
    return (plot_rgb){((v >> 16) & 255) / 255.0, ((v >> 8) & 255) / 255.0, (v & 255) / 255.0};
}

plot_rgb plot_cycle(int i) {
    static const uint32_t tab10[10] = {0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
                                       0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf};
    return plot_hex(tab10[((i % 10) + 10) % 10]);
}

plot_rgb plot_class_color(int i) {
    static const uint32_t pal[20] = {0x042AFF, 0x0BDBEB, 0xF3F3F3, 0x00DFB7, 0x111F68,
                                     0xFF6FDD, 0xFF444F, 0xCCED00, 0x00F344, 0xBD00FF,
                                     0x00B4FF, 0xDD00BA, 0x00FFFF, 0x26C000, 0x01FFB3,
                                     0x7D24FF, 0x7B0068, 0xFF1B6C, 0xFC6D2F, 0xA2FF0B};
    return plot_hex(pal[((i % 20) + 20) % 20]);
}

/* Linear interpolation through n evenly spaced colours. */
static plot_rgb ramp(const uint32_t *stops, int n, double t) {
    if (!(t > 0)) t = 0;
    if (t > 1) t = 1;
    double u = t * (n - 1);
    int i = (int)u;
    if (i >= n - 1) return plot_hex(stops[n - 1]);
    double f = u - i;
    plot_rgb a = plot_hex(stops[i]), b = plot_hex(stops[i + 1]);
    return (plot_rgb){a.r + f * (b.r - a.r), a.g + f * (b.g - a.g), a.b + f * (b.b - a.b)};
}

plot_rgb plot_cmap_blues(double t) {
    /* ColorBrewer's 9-class Blues, as matplotlib defines "Blues" */
    static const uint32_t s[9] = {0xf7fbff, 0xdeebf7, 0xc6dbef, 0x9ecae1, 0x6baed6,
                                  0x4292c6, 0x2171b5, 0x08519c, 0x08306b};
    return ramp(s, 9, t);
}

plot_rgb plot_cmap_white_blue(double t) {
    static const uint32_t s[2] = {0xffffff, 0x0000ff};
    return ramp(s, 2, t);
}

plot_canvas *plot_canvas_new(int width, int height, double dpi) {
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
    if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(s);
        return NULL;
    }
    plot_canvas *c = xcalloc(1, sizeof *c);
    c->surf = s;
    c->cr = cairo_create(s);
    c->w = width;
    c->h = height;
    c->dpi = dpi;
    cairo_set_source_rgb(c->cr, 1, 1, 1);
    cairo_paint(c->cr);
    cairo_select_font_face(c->cr, FONT_FACE, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    return c;
}

void plot_canvas_free(plot_canvas *c) {
    if (!c) return;
    cairo_destroy(c->cr);
    cairo_surface_destroy(c->surf);
    free(c);
}

int plot_canvas_width(const plot_canvas *c) {
    return c->w;
}

int plot_canvas_height(const plot_canvas *c) {
    return c->h;
}

double plot_pt(const plot_canvas *c, double points) {
    return points * c->dpi / 72.0;
}

cairo_t *plot_canvas_cairo(plot_canvas *c) {
    return c->cr;
}

/* ---- output -------------------------------------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} membuf;

static cairo_status_t to_mem(void *closure, const unsigned char *data, unsigned int len) {
    membuf *b = closure;
    if (b->n + len > b->cap) {
        b->cap = 2 * (b->n + len) + 4096;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
    return CAIRO_STATUS_SUCCESS;
}

int plot_canvas_save_png(plot_canvas *c, const char *path, char *err, size_t errlen) {
    cairo_surface_flush(c->surf);
    membuf b = {0};
    cairo_status_t st = cairo_surface_write_to_png_stream(c->surf, to_mem, &b);
    int rc = st == CAIRO_STATUS_SUCCESS ? atomic_write_file(path, b.p, b.n, err, errlen)
                                        : errf(err, errlen, "%s: PNG encoding failed: %s", path,
                                               cairo_status_to_string(st));
    free(b.p);
    return rc;
}

int plot_canvas_save_jpeg(plot_canvas *c, const char *path, int quality, char *err, size_t errlen) {
    cairo_surface_flush(c->surf);
    tjhandle tj = tjInitCompress();
    if (!tj) return errf(err, errlen, "%s: TurboJPEG: %s", path, tjGetErrorStr());
    unsigned char *jpg = NULL;
    unsigned long n = 0;
    /* RGB24 pixels are native-endian 32-bit xRGB words: B, G, R, x bytes on little-endian. */
    int pf = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? TJPF_BGRX : TJPF_XRGB;
    int rc = tjCompress2(tj, cairo_image_surface_get_data(c->surf), c->w,
                         cairo_image_surface_get_stride(c->surf), c->h, pf, &jpg, &n, TJSAMP_420,
                         quality, TJFLAG_ACCURATEDCT);
    if (rc != 0)
        rc = errf(err, errlen, "%s: JPEG encoding failed: %s", path, tjGetErrorStr2(tj));
    else
        rc = atomic_write_file(path, jpg, n, err, errlen);
    tjFree(jpg);
    tjDestroy(tj);
    return rc;
}

/* ---- drawing primitives -------------------------------------------------------------------- */

static void set_color(cairo_t *cr, plot_rgb c) {
    cairo_set_source_rgb(cr, c.r, c.g, c.b);
}

double plot_text_width(plot_canvas *c, const char *s, double size_pt) {
    cairo_set_font_size(c->cr, plot_pt(c, size_pt));
    cairo_text_extents_t e;
    cairo_text_extents(c->cr, s, &e);
    return e.x_advance;
}

double plot_text_height(plot_canvas *c, double size_pt) {
    cairo_set_font_size(c->cr, plot_pt(c, size_pt));
    cairo_font_extents_t fe;
    cairo_font_extents(c->cr, &fe);
    return fe.ascent + fe.descent;
}

void plot_text(plot_canvas *c, double x, double y, const char *s, double size_pt, plot_rgb color,
               plot_halign ha, plot_valign va, double angle_deg) {
    cairo_t *cr = c->cr;
    cairo_save(cr);
    cairo_set_font_size(cr, plot_pt(c, size_pt));
    cairo_font_extents_t fe;
    cairo_font_extents(cr, &fe);
    double w = plot_text_width(c, s, size_pt);
    double dx = ha == PLOT_LEFT ? 0 : ha == PLOT_CENTER ? -w / 2 : -w;
    /* vertical placement by the face's ascent/descent, so labels of one row line up */
    double dy = va == PLOT_TOP      ? fe.ascent
                : va == PLOT_MIDDLE ? (fe.ascent - fe.descent) / 2
                                    : -fe.descent;
    cairo_translate(cr, x, y);
    cairo_rotate(cr, -angle_deg * M_PI / 180.0);
    cairo_move_to(cr, dx, dy);
    set_color(cr, color);
    cairo_show_text(cr, s);
    cairo_restore(cr);
}

void plot_fill_rect(plot_canvas *c, double x, double y, double w, double h, plot_rgb color) {
    set_color(c->cr, color);
    cairo_rectangle(c->cr, x, y, w, h);
    cairo_fill(c->cr);
}

void plot_stroke_rect(plot_canvas *c, double x, double y, double w, double h, plot_rgb color,
                      double width_px) {
    cairo_save(c->cr);
    set_color(c->cr, color);
    cairo_set_line_width(c->cr, width_px);
    cairo_set_line_join(c->cr, CAIRO_LINE_JOIN_MITER);
    cairo_rectangle(c->cr, x, y, w, h);
    cairo_stroke(c->cr);
    cairo_restore(c->cr);
}

void plot_image(plot_canvas *c, const uint8_t *rgb, int img_w, int img_h, double x, double y,
                double w, double h) {
    if (img_w <= 0 || img_h <= 0) return;
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, img_w, img_h);
    if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(s);
        return;
    }
    cairo_surface_flush(s);
    uint8_t *dst = cairo_image_surface_get_data(s);
    int stride = cairo_image_surface_get_stride(s);
    for (int r = 0; r < img_h; r++) {
        uint32_t *row = (uint32_t *)(dst + (size_t)r * stride);
        const uint8_t *src = rgb + (size_t)r * img_w * 3;
        for (int i = 0; i < img_w; i++)
            row[i] = (uint32_t)src[3 * i] << 16 | (uint32_t)src[3 * i + 1] << 8 | src[3 * i + 2];
    }
    cairo_surface_mark_dirty(s);
    cairo_t *cr = c->cr;
    cairo_save(cr);
    cairo_rectangle(cr, x, y, w, h);
    cairo_clip(cr);
    cairo_translate(cr, x, y);
    cairo_scale(cr, w / img_w, h / img_h);
    cairo_set_source_surface(cr, s, 0, 0);
    cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_GOOD);
    cairo_paint(cr);
    cairo_restore(cr);
    cairo_surface_destroy(s);
}
