/* Charts (coordinator/plot.h, charts.h): images decoded back (spng / TurboJPEG through dataio's
 * decoder), sizes, not blank, data points where the axes put them; the smoothing against numpy;
 * the confusion matrix counting of the validation plots. */
#include "coordinator/charts.h"
#include "coordinator/plot.h"
#include "coordinator/results_csv.h"
#include "dataio/decode.h"
#include "pyenv.h"
#include "tests/pyref.h"
#include "worker/val_plot_collect.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    uint8_t *rgb;
    int w, h;
} image;

static image load(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    rewind(f);
    uint8_t *buf = malloc((size_t)n);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    image im = {0};
    char err[256];
    int enc = image_sniff_encoding(buf, (size_t)n);
    cr_assert(enc, "%s: PNG or JPEG", path);
    cr_assert_eq(image_decode(buf, (size_t)n, enc, 0, 0, &im.rgb, &im.h, &im.w, err, sizeof err), 0,
                 "%s", err);
    free(buf);
    return im;
}

static const uint8_t *px(const image *im, int x, int y) {
    return im->rgb + ((size_t)y * im->w + x) * 3;
}

/* Pixels within tol (per channel) of a colour. */
static size_t count_color(const image *im, plot_rgb c, int tol) {
    int r = (int)lround(c.r * 255), g = (int)lround(c.g * 255), b = (int)lround(c.b * 255);
    size_t n = 0;
    for (int y = 0; y < im->h; y++)
        for (int x = 0; x < im->w; x++) {
            const uint8_t *p = px(im, x, y);
            n += abs(p[0] - r) <= tol && abs(p[1] - g) <= tol && abs(p[2] - b) <= tol;
        }
    return n;
}

/* Distinct colours, coarsely (4 bits per channel). */
static int distinct_colors(const image *im) {
    static bool seen[4096];
    memset(seen, 0, sizeof seen);
    int n = 0;
    for (size_t i = 0; i < (size_t)im->w * im->h; i++) {
        const uint8_t *p = im->rgb + 3 * i;
        int k = (p[0] >> 4) << 8 | (p[1] >> 4) << 4 | p[2] >> 4;
        if (!seen[k]) seen[k] = true, n++;
    }
    return n;
}

static void tmpdir(char *dir) {
    strcpy(dir, "/tmp/yolo-charts-XXXXXX");
    cr_assert(mkdtemp(dir));
}

static void rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(charts, nice_ticks_as_matplotlib_chooses_them) {
    double t[32];
    int n = plot_nice_ticks(0, 1, 5, t, 32);
    cr_assert_eq(n, 6);
    for (int i = 0; i < 6; i++) cr_assert_float_eq(t[i], 0.2 * i, 1e-12);
    n = plot_nice_ticks(-0.45, 30.45, 6, t, 32); /* epochs 1..30 with 5 % margins */
    cr_assert_eq(n, 4);
    cr_assert(t[0] == 0 && t[3] == 30);
    n = plot_nice_ticks(0.52, 2.4, 8, t, 32);
    cr_assert(n >= 4 && t[0] >= 0.52 && t[n - 1] <= 2.4);
    cr_assert_float_eq(t[1] - t[0], 0.25, 1e-12, "steps of 1, 2, 2.5, 5 x 10^k");
    char s[32];
    plot_tick_label(0.5, 0.25, s, sizeof s);
    cr_assert_str_eq(s, "0.50");
    plot_tick_label(20, 10, s, sizeof s);
    cr_assert_str_eq(s, "20");
    plot_tick_label(-0.04, 0.02, s, sizeof s);
    cr_assert_str_eq(s,
                     "\xe2\x88\x92"
                     "0.04",
                     "matplotlib's minus sign");
}

Test(charts, line_points_land_where_the_axes_put_them) {
    char dir[64], path[128], err[256];
    tmpdir(dir);
    plot_canvas *c = plot_canvas_new(800, 600, 100);
    cr_assert(c);
    plot_axes a = plot_axes_new(c, 0, 0, 800, 600);
    double x[6] = {0, 1, 2, 3, 4, 5}, y[6] = {0, 1, 4, 9, 16, 25};
    plot_axes_data(&a, x, y, 6);
    plot_axes_frame(&a, &(plot_frame){.title = "squares", .xlabel = "x", .ylabel = "y"});
    plot_rgb red = plot_hex(0xd62728);
    plot_line(&a, x, y, 6, &(plot_style){.color = red, .width_pt = 1, .marker_pt = 10});
    /* matplotlib's 5 % margins */
    cr_assert_float_eq(a.x0, -0.25, 1e-9);
    cr_assert_float_eq(a.x1, 5.25, 1e-9);
    cr_assert_float_eq(a.y1, 26.25, 1e-9);
    snprintf(path, sizeof path, "%s/line.png", dir);
    cr_assert_eq(plot_canvas_save_png(c, path, err, sizeof err), 0, "%s", err);
    image im = load(path);
    cr_assert(im.w == 800 && im.h == 600);
    for (int i = 0; i < 6; i++) {
        int u = (int)lround(plot_px(&a, x[i])), v = (int)lround(plot_py(&a, y[i]));
        cr_assert(u > 40 && u < 790 && v > 10 && v < 560, "inside the canvas with room for labels");
        const uint8_t *p = px(&im, u, v);
        cr_assert(abs(p[0] - 0xd6) < 8 && abs(p[1] - 0x27) < 8 && abs(p[2] - 0x28) < 8,
                  "point %d at (%d, %d) is drawn: %d %d %d", i, u, v, p[0], p[1], p[2]);
    }
    /* far from the curve (top left of the data area): background */
    const uint8_t *p = px(&im, (int)plot_px(&a, 0.5), (int)plot_py(&a, 20));
    cr_assert(p[0] == 255 && p[1] == 255 && p[2] == 255);
    free(im.rgb);
    plot_canvas_free(c);
    rm_rf(dir);
}

/* Losses falling as 3 / epoch, metrics and learning rates rising as 0.1 epoch. */
static void example_table(results_table *t, int epochs) {
    for (int e = 1; e <= epochs; e++) {
        epoch_row r = {.epoch = e, .time = 10.0 * e, .n_lr = 3};
        for (int k = 0; k < 3; k++) r.train[k] = r.val[k] = 3.0 / e, r.lr[k] = 0.1 * e;
        r.precision = r.recall = r.map50 = r.map50_95 = 0.1 * e;
        const char *names[RESULTS_MAX_COLUMNS];
        double v[RESULTS_MAX_COLUMNS];
        int n = results_csv_columns(&r, names, v);
        results_table_add(t, n, names, v);
    }
}

Test(charts, results_png_as_ultralytics_lays_it_out) {
    char dir[64], path[128], err[256];
    tmpdir(dir);
    results_table t = {0};
    example_table(&t, 8);
    snprintf(path, sizeof path, "%s/results.png", dir);
    cr_assert_eq(chart_results(&t, path, err, sizeof err), 0, "%s", err);
    image im = load(path);
    cr_assert(im.w == 2400 && im.h == 1200, "12 x 6 in at 200 dpi: %dx%d", im.w, im.h);
    cr_assert_gt(distinct_colors(&im), 30, "text, lines and markers in several colours");
    size_t blue = count_color(&im, plot_cycle(0), 30), orange = count_color(&im, plot_cycle(1), 30);
    cr_assert_gt(blue, 10 * 2000u, "the results lines in C0 in all ten panels: %zu", blue);
    cr_assert_gt(orange, 10 * 500u, "the dotted smooth lines in C1: %zu", orange);
    /* ten panels in a 2 x 5 grid: each cell holds blue ink */
    for (int r = 0; r < 2; r++)
        for (int k = 0; k < 5; k++) {
            size_t n = 0;
            for (int y = r * 600; y < (r + 1) * 600; y++)
                for (int x = k * 480; x < (k + 1) * 480; x++) {
                    const uint8_t *p = px(&im, x, y);
                    n += abs(p[0] - 0x1f) < 30 && abs(p[1] - 0x77) < 30 && abs(p[2] - 0xb4) < 30;
                }
            cr_assert_gt(n, 500u, "panel %d,%d has its line", r, k);
        }
    /* and the file round-trips through results.csv */
    results_table_free(&t);
    results_table u = {0};
    snprintf(path, sizeof path, "%s/none.csv", dir);
    cr_assert_eq(results_table_read_csv(path, &u, err, sizeof err), 0, "a missing file is empty");
    cr_assert_eq(u.nrow, 0);
    free(im.rgb);
    rm_rf(dir);
}

Test(charts, gaussian_smoothing_matches_numpy, .timeout = 120) {
    char py[1100], reason[1400];
    if (!test_pyenv_python("test", py, sizeof py, reason, sizeof reason))
        cr_skip_test("%s", reason);
    /* short (shorter than the kernel radius 12: numpy's repeated symmetric padding) and long */
    for (int n = 1; n <= 40; n += 13) {
        double y[64], out[64];
        char cmd[4096], list[1024] = "";
        size_t len = 0;
        for (int i = 0; i < n; i++) {
            y[i] = sin(1.7 * i) + 0.1 * i;
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%.17g", i ? "," : "", y[i]);
        }
        chart_gaussian_smooth(y, n, 3, out);
        snprintf(cmd, sizeof cmd,
                 "%s -c 'import numpy as np\n"
                 "y = np.array([%s], dtype=float)\n"
                 "r = int(4 * 3 + 0.5)\n"
                 "k = np.exp(-0.5 * (np.arange(-r, r + 1) / 3) ** 2); k /= k.sum()\n"
                 "print(\" \".join(repr(float(v)) for v in np.convolve(np.pad(y, r, "
                 "mode=\"symmetric\"), k, mode=\"valid\")))'",
                 py, list);
        FILE *p = popen(cmd, "r");
        cr_assert(p);
        for (int i = 0; i < n; i++) {
            double want;
            cr_assert_eq(fscanf(p, "%lf", &want), 1, "numpy output");
            cr_assert_float_eq(out[i], want, 1e-12, "n %d, i %d", n, i);
        }
        cr_assert_eq(pclose(p), 0);
    }
}

/* Records of three classes with tp bits falling with confidence: curves with shape. */
static void example_metrics(val_metrics *m) {
    enum { N = 300 };
    static val_record r[N];
    uint32_t s = 12345;
    for (int i = 0; i < N; i++) {
        s = s * 1103515245u + 12345u;
        float conf = (float)((s >> 8) & 0xffff) / 65536.0f;
        s = s * 1103515245u + 12345u;
        float q = (float)((s >> 8) & 0xffff) / 65536.0f;
        uint32_t tp = 0;
        for (int t = 0; t < VAL_NIOU; t++) tp |= (uint32_t)(q < conf * (1 - 0.07f * t)) << t;
        r[i] = (val_record){conf, i % 3, tp};
    }
    int64_t gt[3] = {60, 50, 40};
    char err[128];
    cr_assert_eq(val_metrics_compute(r, N, gt, 3, m, err, sizeof err), 0, "%s", err);
}

Test(charts, pr_and_confidence_curves) {
    char dir[64], path[128], err[256];
    tmpdir(dir);
    val_metrics m;
    example_metrics(&m);
    const char *names[3] = {"circle", "square", "triangle"};
    /* the curves metrics.c hands the plots: PR starts at precision 1 (the envelope's sentinel),
     * F1 is 2PR/(P+R), P at confidence 0 is the class's overall precision */
    for (int c = 0; c < 3; c++) {
        const double *pr = m.pr_curve + (size_t)c * VAL_CURVE_POINTS;
        cr_assert_float_eq(pr[0], 1.0, 1e-12);
        for (int i = 1; i < VAL_CURVE_POINTS; i++) cr_assert_leq(pr[i], pr[i - 1] + 1e-12);
        for (int i = 0; i < VAL_CURVE_POINTS; i += 37) {
            double p = m.p_curve[(size_t)c * VAL_CURVE_POINTS + i],
                   r = m.r_curve[(size_t)c * VAL_CURVE_POINTS + i];
            cr_assert_float_eq(m.f1_curve[(size_t)c * VAL_CURVE_POINTS + i],
                               2 * p * r / (p + r + 1e-16), 1e-12);
        }
    }
    snprintf(path, sizeof path, "%s/PR_curve.png", dir);
    cr_assert_eq(chart_pr_curve(&m, names, path, err, sizeof err), 0, "%s", err);
    image im = load(path);
    cr_assert(im.w == 2250 && im.h == 1500, "9 x 6 in at 250 dpi");
    cr_assert_gt(count_color(&im, plot_hex(0x0000ff), 20), 3000u, "the thick mean curve");
    for (int c = 0; c < 3; c++)
        cr_assert_gt(count_color(&im, plot_cycle(c), 20), 500u, "class %d's line", c);
    free(im.rgb);
    snprintf(path, sizeof path, "%s/F1_curve.png", dir);
    cr_assert_eq(chart_mc_curve(&m, CHART_F1, names, path, err, sizeof err), 0, "%s", err);
    im = load(path);
    cr_assert(im.w == 2250 && im.h == 1500);
    cr_assert_gt(count_color(&im, plot_hex(0x0000ff), 20), 3000u);
    free(im.rgb);
    val_metrics_free(&m);
    rm_rf(dir);
}

Test(charts, confusion_matrix_cells) {
    char dir[64], path[128], err[256];
    tmpdir(dir);
    const char *names[3] = {"a", "b", "c"};
    int64_t m[16] = {90, 5, 0, 20, 10, 80, 2, 15, 0, 6, 70, 30, 16, 9, 5, 0};
    snprintf(path, sizeof path, "%s/cm.png", dir);
    cr_assert_eq(chart_confusion(m, 3, names, false, path, err, sizeof err), 0, "%s", err);
    image im = load(path);
    cr_assert(im.w == 3000 && im.h == 2250, "12 x 9 in at 250 dpi");
    /* the largest count gets the darkest blue of the map; zero cells are left white */
    cr_assert_gt(count_color(&im, plot_cmap_blues(1), 4), 50000u, "the 90 cell");
    cr_assert_gt(distinct_colors(&im), 10);
    free(im.rgb);
    snprintf(path, sizeof path, "%s/cmn.png", dir);
    cr_assert_eq(chart_confusion(m, 3, names, true, path, err, sizeof err), 0, "%s", err);
    im = load(path);
    cr_assert(im.w == 3000 && im.h == 2250);
    free(im.rgb);
    rm_rf(dir);
}

Test(charts, labels_jpg) {
    char dir[64], path[128], err[256];
    tmpdir(dir);
    enum { N = 300 };
    float boxes[N * 4];
    int cls[N];
    for (int i = 0; i < N; i++) {
        cls[i] = i % 4 == 3 ? 1 : 0; /* class 0 three times as frequent */
        boxes[4 * i] = 0.1f + 0.8f * (float)(i % 17) / 17, boxes[4 * i + 1] = 0.5f;
        boxes[4 * i + 2] = 0.05f + 0.3f * (float)(i % 7) / 7, boxes[4 * i + 3] = 0.2f;
    }
    const char *names[2] = {"cat", "dog"};
    snprintf(path, sizeof path, "%s/labels.jpg", dir);
    cr_assert_eq(chart_labels(boxes, cls, N, 2, names, path, err, sizeof err), 0, "%s", err);
    image im = load(path);
    cr_assert(im.w == 1600 && im.h == 1600, "8 x 8 in at 200 dpi");
    size_t c0 = count_color(&im, plot_class_color(0), 24),
           c1 = count_color(&im, plot_class_color(1), 24);
    cr_assert_gt(c0, 20000u, "class 0's bar");
    cr_assert_gt(c1, 5000u, "class 1's bar");
    cr_assert_gt(c0, 2 * c1, "three times the instances, a taller bar");
    free(im.rgb);
    rm_rf(dir);
}

Test(charts, mosaic_boxes_land_on_their_objects) {
    char dir[64], path[128], err[256];
    tmpdir(dir);
    /* one 200 x 100 grey image with a box around (50..150, 20..80) */
    enum { W = 200, H = 100 };
    static uint8_t img[W * H * 3];
    memset(img, 128, sizeof img);
    chart_tile t = {img, W, H, "one.jpg"};
    chart_box b = {.tile = 0, .cls = 6, .conf = 0.9f, .x1 = 50, .y1 = 20, .x2 = 150, .y2 = 80};
    const char *names[7] = {"0", "1", "2", "3", "4", "5", "six"};
    snprintf(path, sizeof path, "%s/m.jpg", dir);
    cr_assert_eq(chart_mosaic(&t, 1, &b, 1, names, 7, 400, path, err, sizeof err), 0, "%s", err);
    image im = load(path);
    cr_assert(im.w == 400 && im.h == 400, "one tile of max_side");
    /* fitted: gain 2, centred vertically: y_tile = 100 + 2 y, x_tile = 2 x; the box colour
     * (class 6: FF444F) is red on the grey image, blurred a little by JPEG's chroma subsampling */
    int pts[4][2] = {{200, 100 + 2 * 80}, {100, 200}, {300, 200}, {150, 100 + 2 * 80}};
    for (int i = 0; i < 4; i++) {
        const uint8_t *p = px(&im, pts[i][0], pts[i][1]);
        cr_assert(p[0] > 170 && p[0] - p[1] > 60 && p[0] - p[2] > 60,
                  "box edge at (%d, %d): %d %d %d", pts[i][0], pts[i][1], p[0], p[1], p[2]);
        const uint8_t *q = px(&im,
                              pts[i][0] + (i == 1   ? 8
                                           : i == 2 ? -8
                                                    : 0),
                              pts[i][1] + (i == 0 || i == 3 ? -8 : 0));
        cr_assert(abs(q[0] - q[1]) < 20, "inside the edge: the grey image");
    }
    const uint8_t *p = px(&im, 200, 200); /* inside the box: the image */
    cr_assert(abs(p[0] - 128) < 10 && abs(p[1] - 128) < 10);
    p = px(&im, 200, 30); /* above the image: the letterbox grey */
    cr_assert(abs(p[0] - 114) < 10, "%d", p[0]);
    free(im.rgb);
    rm_rf(dir);
}

/* ---- the confusion matrix counting (Ultralytics ConfusionMatrix.process_batch) ------------------
 */

Test(charts, confusion_counts_follow_ultralytics) {
    int64_t m[9] = {0}; /* nc 2: [pred][true], index 2 background */
    float gt[8] = {0, 0, 10, 10, 20, 20, 30, 30};
    int gc[2] = {0, 1};
    detection d[4] = {
        {0, 0, 10, 10, 0.9f, 0},     /* on gt 0, right class */
        {20, 20, 30, 29, 0.8f, 0},   /* on gt 1 (IoU 0.9), wrong class */
        {0, 0, 10, 10, 0.7f, 1},     /* gt 0 already claimed: a false positive */
        {50, 50, 60, 60, 0.0005f, 1} /* below conf: ignored */
    };
    val_confusion_update(m, 2, d, 4, gt, gc, 2, 0.001f);
    cr_assert_eq(m[0 * 3 + 0], 1, "class 0 found as 0");
    cr_assert_eq(m[0 * 3 + 1], 1, "class 1 predicted as 0");
    cr_assert_eq(m[1 * 3 + 2], 1, "an unmatched class-1 detection is background");
    int64_t total = 0;
    for (int i = 0; i < 9; i++) total += m[i];
    cr_assert_eq(total, 3);
    /* no detections: each ground truth missed */
    memset(m, 0, sizeof m);
    val_confusion_update(m, 2, d, 0, gt, gc, 2, 0.001f);
    cr_assert(m[2 * 3 + 0] == 1 && m[2 * 3 + 1] == 1);
    /* no ground truth: detections above conf are background false positives */
    memset(m, 0, sizeof m);
    val_confusion_update(m, 2, d, 4, gt, gc, 0, 0.001f);
    cr_assert(m[0 * 3 + 2] == 2 && m[1 * 3 + 2] == 1);
    /* IoU at most 0.45 does not match */
    memset(m, 0, sizeof m);
    detection far = {0, 0, 10, 4.5f, 0.9f, 0}; /* IoU 0.45 */
    val_confusion_update(m, 2, &far, 1, gt, gc, 1, 0.001f);
    cr_assert(m[2 * 3 + 0] == 1 && m[0 * 3 + 2] == 1);
}

Test(charts, plotted_predictions_undo_the_letterbox) {
    val_plot_data d;
    val_plot_data_init(&d, 2);
    letterbox_info lb = {
        .orig_h = 100, .orig_w = 200, .gain_x = 0.32f, .gain_y = 0.32f, .pad_x = 0, .pad_y = 16};
    detection det[2] = {{32, 16 + 16, 64, 16 + 32, 0.8f, 1}, {0, 0, 5, 5, 0.1f, 0}};
    float gt[4] = {32, 32, 64, 48};
    int gc = 1;
    val_plot_collect_image(&d, 3, det, 2, gt, &gc, 1, &lb, 0.001f);
    cr_assert_eq(d.ndets, 1u, "only predictions above 0.25 are drawn");
    cr_assert_float_eq(d.dets[0].x1, 100.0f, 1e-3);
    cr_assert_float_eq(d.dets[0].y1, 50.0f, 1e-3);
    cr_assert_float_eq(d.dets[0].x2, 200.0f, 1e-3);
    cr_assert_float_eq(d.dets[0].y2, 100.0f, 1e-3);
    cr_assert_eq(d.dets[0].image, 3);
    cr_assert_eq(d.confusion[1 * 3 + 1], 1, "the matched pair counted");
    val_plot_collect_image(&d, VAL_PLOT_IMAGES, det, 2, gt, &gc, 1, &lb, 0.001f);
    cr_assert_eq(d.ndets, 1u, "images past the mosaics only count");
    cr_assert_eq(d.confusion[1 * 3 + 1], 2);
    val_plot_data_free(&d);
}

/* The same counting as Ultralytics' own ConfusionMatrix.process_batch on random images (needs
 * the bench environment: torch + ultralytics). */
Test(charts, confusion_counts_match_ultralytics, .timeout = 600) {
    char reason[1400];
    const char *py = pyref_bench_python(reason, sizeof reason);
    if (!py) cr_skip_test("%s", reason);
    char dir[64], path[128], cmd[4096];
    tmpdir(dir);
    snprintf(path, sizeof path, "%s/images.txt", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    enum { NC = 3, IMAGES = 300 };
    int64_t ours[(NC + 1) * (NC + 1)] = {0};
    uint32_t s = 7;
#define RND() ((s = s * 1664525u + 1013904223u) >> 8 & 0xffff) / 65536.0f
    for (int im = 0; im < IMAGES; im++) {
        int ngt = (int)(RND() * 5), nd = (int)(RND() * 8);
        float gt[5 * 4];
        int gc[5];
        detection det[8];
        for (int g = 0; g < ngt; g++) {
            float x = RND() * 80, y = RND() * 80, w = 5 + RND() * 20, h = 5 + RND() * 20;
            gt[4 * g] = x, gt[4 * g + 1] = y, gt[4 * g + 2] = x + w, gt[4 * g + 3] = y + h;
            gc[g] = (int)(RND() * NC);
        }
        for (int p = 0; p < nd; p++) {
            /* most near a ground truth (jittered), some anywhere */
            float x0 = RND() * 80, y0 = RND() * 80, x1 = x0 + 5 + RND() * 20,
                  y1 = y0 + 5 + RND() * 20;
            if (ngt && RND() < 0.7f) {
                int g = (int)(RND() * ngt);
                float j = 6 * (RND() - 0.5f);
                x0 = gt[4 * g] + j, y0 = gt[4 * g + 1] - j, x1 = gt[4 * g + 2] + j / 2;
                y1 = gt[4 * g + 3] + RND() * 4;
            }
            det[p] = (detection){x0, y0, x1, y1, 0.02f + 0.97f * RND(), (int)(RND() * NC)};
        }
        for (int i = 1; i < nd; i++) /* score-sorted, as the post-processing returns them */
            for (int j = i; j > 0 && det[j - 1].conf < det[j].conf; j--) {
                detection t = det[j];
                det[j] = det[j - 1], det[j - 1] = t;
            }
        val_confusion_update(ours, NC, det, nd, gt, gc, ngt, 0.25f);
        fprintf(f, "%d %d\n", ngt, nd);
        for (int g = 0; g < ngt; g++)
            fprintf(f, "%d %.9g %.9g %.9g %.9g\n", gc[g], gt[4 * g], gt[4 * g + 1], gt[4 * g + 2],
                    gt[4 * g + 3]);
        for (int p = 0; p < nd; p++)
            fprintf(f, "%d %.9g %.9g %.9g %.9g %.9g\n", det[p].cls, det[p].x1, det[p].y1, det[p].x2,
                    det[p].y2, det[p].conf);
    }
#undef RND
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "%s - %s 2>%s/py.err <<'EOF'\n"
             "import sys, torch\n"
             "from ultralytics.utils.metrics import ConfusionMatrix\n"
             "cm = ConfusionMatrix(names={i: str(i) for i in range(%d)})\n"
             "lines = open(sys.argv[1]).read().split('\\n')\n"
             "i = 0\n"
             "while i < len(lines) and lines[i].strip():\n"
             "    ngt, nd = map(int, lines[i].split()); i += 1\n"
             "    g = [list(map(float, l.split())) for l in lines[i:i + ngt]]; i += ngt\n"
             "    d = [list(map(float, l.split())) for l in lines[i:i + nd]]; i += nd\n"
             "    batch = {'cls': torch.tensor([r[0] for r in g]),\n"
             "             'bboxes': torch.tensor([r[1:5] for r in g]).reshape(-1, 4)}\n"
             "    det = {'cls': torch.tensor([r[0] for r in d]),\n"
             "           'bboxes': torch.tensor([r[1:5] for r in d]).reshape(-1, 4),\n"
             "           'conf': torch.tensor([r[5] for r in d])}\n"
             "    cm.process_batch(det, batch, conf=0.25)\n"
             "print(' '.join(str(int(v)) for v in cm.matrix.flatten()))\n"
             "EOF",
             py, path, dir, NC);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    for (int i = 0; i < (NC + 1) * (NC + 1); i++) {
        long long v;
        cr_assert_eq(fscanf(p, "%lld", &v), 1, "Ultralytics' matrix (see %s/py.err)", dir);
        cr_assert_eq(ours[i], v, "cell [%d][%d]: ours %lld, Ultralytics %lld", i / (NC + 1),
                     i % (NC + 1), (long long)ours[i], v);
    }
    cr_assert_eq(pclose(p), 0);
    int64_t total = 0;
    for (int i = 0; i < (NC + 1) * (NC + 1); i++) total += ours[i];
    cr_assert_gt(total, 300, "enough pairs counted to mean something");
    rm_rf(dir);
}
