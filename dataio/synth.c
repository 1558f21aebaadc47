#include "dataio/synth.h"

#include "common/rng.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum { SHAPE_CIRCLE, SHAPE_RECT, SHAPE_TRIANGLE };

/* Sizes as a fraction of the image side: big enough to detect at small imgsz, small enough that
 * several fit without overlapping. */
#define MIN_FRAC 0.08
#define MAX_FRAC 0.40
#define NOISE 24         /* background and shape noise amplitude, +- grey levels */
#define MIN_CONTRAST 200 /* L1 distance between a shape's colour and the background colour */

synth_style synth_style_default(void) {
    return (synth_style){.brightness = 1, .object_scale = 1, .background = SYNTH_BG_PLAIN};
}

int synth_background_parse(const char *name, synth_background *out) {
    if (!strcmp(name, "plain")) return *out = SYNTH_BG_PLAIN, 0;
    if (!strcmp(name, "stripes")) return *out = SYNTH_BG_STRIPES, 0;
    return -1;
}

const char *synth_background_name(synth_background b) {
    return b == SYNTH_BG_STRIPES ? "stripes" : "plain";
}

const char *synth_class_name(int cls) {
    static const char *names[SYNTH_MAX_CLASSES] = {"circle", "rectangle", "triangle"};
    return cls >= 0 && cls < SYNTH_MAX_CLASSES ? names[cls] : "?";
}

typedef struct box {
    int x0, y0, x1, y1; /* half-open pixel extent */
} box;

static bool overlaps(box a, box b, int margin) {
    return a.x0 < b.x1 + margin && b.x0 < a.x1 + margin && a.y0 < b.y1 + margin &&
           b.y0 < a.y1 + margin;
}

/* Edge function of pixel centre (px, py) against the edge a->b (times 2, in double). */
static double edge(double ax, double ay, double bx, double by, double px, double py) {
    return (bx - ax) * (py - ay) - (by - ay) * (px - ax);
}

static bool inside(int kind, box b, double apex_x, int x, int y) {
    double px = x + 0.5, py = y + 0.5;
    if (kind == SHAPE_RECT) return true;
    if (kind == SHAPE_CIRCLE) {
        double r = (b.x1 - b.x0) / 2.0, cx = b.x0 + r, cy = b.y0 + r;
        return (px - cx) * (px - cx) + (py - cy) * (py - cy) <= r * r;
    }
    /* triangle: apex on the top edge, base along the bottom edge (clockwise in image coords) */
    double ax = apex_x, ay = b.y0, bx = b.x1, by = b.y1, cx = b.x0, cy = b.y1;
    return edge(ax, ay, bx, by, px, py) >= 0 && edge(bx, by, cx, cy, px, py) >= 0 &&
           edge(cx, cy, ax, ay, px, py) >= 0;
}

static void pick_colour(rng *r, const int bg[3], int out[3]) {
    for (int tries = 0; tries < 64; tries++) {
        int d = 0;
        for (int c = 0; c < 3; c++) out[c] = rng_int(r, 256), d += abs(out[c] - bg[c]);
        if (d >= MIN_CONTRAST) return;
    }
    for (int c = 0; c < 3; c++) out[c] = bg[c] < 128 ? 255 : 0; /* the far corner always works */
}

/* Diagonal stripes of a second colour over the background, a period of an eighth of the side. The
 * second colour is far from the first, so the background is busy. */
static void stripes(rng *r, const int bg[3], int s, uint8_t *rgb) {
    int col[3], period = s / 8 > 4 ? s / 8 : 4;
    pick_colour(r, bg, col);
    for (int y = 0; y < s; y++)
        for (int x = 0; x < s; x++)
            if ((x + y) % period < period / 2) {
                uint8_t *p = rgb + ((size_t)y * s + x) * 3;
                p[0] = (uint8_t)col[0], p[1] = (uint8_t)col[1], p[2] = (uint8_t)col[2];
            }
}

int synth_image(uint64_t seed, split_id split, int index, int imgsz, int classes, uint8_t *rgb,
                float *labels) {
    return synth_image_styled(seed, split, index, imgsz, classes, NULL, rgb, labels);
}

int synth_image_styled(uint64_t seed, split_id split, int index, int imgsz, int classes,
                       const synth_style *style, uint8_t *rgb, float *labels) {
    synth_style st = style ? *style : synth_style_default();
    rng r = rng_keyed(seed, (uint64_t)split, (uint64_t)index);
    const int s = imgsz;
    int bg[3];
    for (int c = 0; c < 3; c++) bg[c] = rng_int(&r, 256);
    for (int i = 0; i < s * s; i++)
        for (int c = 0; c < 3; c++) rgb[i * 3 + c] = (uint8_t)bg[c];
    if (st.background == SYNTH_BG_STRIPES) stripes(&r, bg, s, rgb);

    int want = 1 + rng_int(&r, SYNTH_MAX_OBJECTS), n = 0;
    box placed[SYNTH_MAX_OBJECTS];
    int lo = (int)(MIN_FRAC * st.object_scale * s), hi = (int)(MAX_FRAC * st.object_scale * s);
    if (lo < 3) lo = 3;
    if (hi < lo) hi = lo;
    if (hi > s) hi = s;
    /* Rejection sampling for non-overlapping placements; after enough misses the image simply has
     * fewer objects (always at least one: the first placement cannot collide). */
    for (int attempt = 0; attempt < 200 && n < want; attempt++) {
        int kind = rng_int(&r, classes);
        int w = lo + rng_int(&r, hi - lo + 1), h = lo + rng_int(&r, hi - lo + 1);
        if (kind == SHAPE_CIRCLE) h = w;
        box b = {rng_int(&r, s - w + 1), rng_int(&r, s - h + 1), 0, 0};
        b.x1 = b.x0 + w, b.y1 = b.y0 + h;
        double apex = b.x0 + rng_uniform(&r) * w;
        int col[3];
        pick_colour(&r, bg, col);
        bool clash = false;
        for (int k = 0; k < n; k++) clash |= overlaps(b, placed[k], 2);
        if (clash) continue;
        /* paint, and measure the painted extent: that is the exact box */
        int mx0 = s, my0 = s, mx1 = -1, my1 = -1;
        for (int y = b.y0; y < b.y1; y++)
            for (int x = b.x0; x < b.x1; x++) {
                if (!inside(kind, b, apex, x, y)) continue;
                uint8_t *p = rgb + ((size_t)y * s + x) * 3;
                p[0] = (uint8_t)col[0], p[1] = (uint8_t)col[1], p[2] = (uint8_t)col[2];
                if (x < mx0) mx0 = x;
                if (x > mx1) mx1 = x;
                if (y < my0) my0 = y;
                if (y > my1) my1 = y;
            }
        if (mx1 < 0) continue;
        placed[n] = b;
        float *l = labels + n * 5;
        l[0] = (float)kind;
        l[1] = (float)((mx0 + mx1 + 1) * 0.5 / s), l[2] = (float)((my0 + my1 + 1) * 0.5 / s);
        l[3] = (float)((double)(mx1 - mx0 + 1) / s), l[4] = (float)((double)(my1 - my0 + 1) / s);
        n++;
    }
    /* noise over everything, 8 pixels' worth of channel offsets per 64-bit draw */
    size_t total = (size_t)s * s * 3;
    for (size_t i = 0; i < total; i += 8) {
        uint64_t u = rng_u64(&r);
        for (size_t k = 0; k < 8 && i + k < total; k++) {
            int v = rgb[i + k] + (int)((u >> (8 * k)) & 0xFF) * (2 * NOISE + 1) / 256 - NOISE;
            rgb[i + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    if (st.brightness != 1)
        for (size_t i = 0; i < total; i++) {
            double v = rgb[i] * st.brightness + 0.5;
            rgb[i] = (uint8_t)(v > 255 ? 255 : v);
        }
    return n;
}
