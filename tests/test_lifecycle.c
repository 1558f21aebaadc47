/* val and predict (bin/lifecycle, docs/lifecycle.md): the same numbers, boxes and plots as the
 * validation at the end of training on the same weights; predict's letterbox undone exactly on
 * image files; annotated boxes where the objects are; usage errors. */
#include "coordinator/charts.h"
#include "coordinator/coco_json.h"
#include "dataio/pack.h"
#include "kernels/backend_cuda.h"
#include "coordinator/plot.h"
#include "dataio/image_files.h"
#include "dataio/loader.h"
#include "lifecycle/eval_run.h"
#include "lifecycle_util.h"
#include "oracle.h"
#include "runs.h"
#include "testenv.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void check_png(const char *dir, const char *file, int w, int h) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    lc_image im = lc_load_image(path);
    cr_assert(im.w == w && im.h == h, "%s: %dx%d, want %dx%d", path, im.w, im.h, w, h);
    cr_assert_gt(lc_ink(&im), (size_t)(w * h / 200), "%s is not blank", path);
    free(im.rgb);
}

Test(lifecycle, val_reproduces_the_validation_at_the_end_of_training, .timeout = 1200) {
    char dir[256], path[600], data[400];
    lc_tmpdir(dir, "lc-val");
    lc_synth(dir, 2, data);
    lc_train(dir, data, 2, "save_json=True plots=True");
    /* the final version, at the validation batch training used (2 x batch 8) */
    cr_assert_eq(run_sh("\"$YOLO_COORD\" val model=%s/r:last batch=16 save_json=True plots=True "
                        "project=%s name=val > %s/val.log 2>&1",
                        dir, dir, dir),
                 0, "val failed; see %s/val.log", dir);
    snprintf(path, sizeof path, "%s/train.log", dir);
    char *tl = lc_read(path);
    snprintf(path, sizeof path, "%s/val.log", dir);
    char *vl = lc_read(path);
    char *tt = lc_last_table(tl), *vt = lc_last_table(vl);
    cr_assert_gt(strlen(tt), 100, "training printed its validation table");
    cr_assert_str_eq(vt, tt, "val's table equals the end of training's");
    lc_check_speed_lines(vl, 20);
    /* every box and score the same */
    snprintf(path, sizeof path, "%s/r/predictions.json", dir);
    char *tj = lc_read(path);
    snprintf(path, sizeof path, "%s/val/predictions.json", dir);
    char *vj = lc_read(path);
    cJSON *a = cJSON_Parse(tj);
    cr_assert(cJSON_IsArray(a) && cJSON_GetArraySize(a) > 0, "training wrote predictions");
    cr_assert_str_eq(vj, tj, "val's predictions.json equals training's");
    const cJSON *first = cJSON_GetArrayItem(a, 0);
    cr_assert(cJSON_GetObjectItem(first, "image_id") && cJSON_GetObjectItem(first, "bbox") &&
                  cJSON_GetObjectItem(first, "score") && cJSON_GetObjectItem(first, "category_id"),
              "COCO result fields");
    cJSON_Delete(a);
    /* the plots training draws, from val */
    snprintf(path, sizeof path, "%s/val", dir);
    check_png(path, "PR_curve.png", 2250, 1500);
    check_png(path, "F1_curve.png", 2250, 1500);
    check_png(path, "P_curve.png", 2250, 1500);
    check_png(path, "R_curve.png", 2250, 1500);
    check_png(path, "confusion_matrix.png", 3000, 2250);
    check_png(path, "confusion_matrix_normalized.png", 3000, 2250);
    check_png(path, "val_batch0_labels.jpg", 256, 256);
    check_png(path, "val_batch0_pred.jpg", 256, 256);
    check_png(path, "val_batch1_pred.jpg", 128, 128);
    /* the same version by tag and as an exported weights file: the same boxes and scores */
    cr_assert_eq(run_sh("\"$YOLO_COORD\" ckpt tag %s/r last production > /dev/null && "
                        "\"$YOLO_COORD\" ckpt export %s/r:last format=h5 out=%s/w.h5 > /dev/null",
                        dir, dir, dir),
                 0);
    /* a weights file records the training imgsz (format 2): not given, it is the version's 64 */
    const char *spelling[2] = {"%s/r@production", "%s/w.h5"}, *name[2] = {"tag", "file"};
    for (int k = 0; k < 2; k++) {
        char model[400];
        snprintf(model, sizeof model, spelling[k], dir);
        cr_assert_eq(run_sh("\"$YOLO_COORD\" val model=%s data=%s batch=16 save_json=True "
                            "plots=False project=%s name=%s > %s/%s.log 2>&1",
                            model, data, dir, name[k], dir, name[k]),
                     0, "val model=%s failed; see %s/%s.log", model, dir, name[k]);
        snprintf(path, sizeof path, "%s/%s/predictions.json", dir, name[k]);
        char *kj = lc_read(path);
        cr_assert_str_eq(kj, tj, "val model=%s: predictions.json equals training's", model);
        free(kj);
    }
    /* through the copies a GPU backend needs (the CPU backend in device-memory mode): the same
     * boxes, so evaluation never reads backend memory as host memory */
    cr_assert_eq(run_sh("YOLO_EVAL_DEVICE_MEMORY=1 \"$YOLO_COORD\" val model=%s/r:last batch=16 "
                        "save_json=True plots=False project=%s name=devmem > %s/devmem.log 2>&1",
                        dir, dir, dir),
                 0, "see %s/devmem.log", dir);
    snprintf(path, sizeof path, "%s/devmem/predictions.json", dir);
    char *dj = lc_read(path);
    cr_assert_str_eq(dj, tj, "device-memory mode: predictions.json equals training's");
    free(dj);
    /* devices: an unknown one is refused; cuda runs where a GPU is, else is refused naming why */
    snprintf(path, sizeof path, "%s/device.err", dir);
    cr_assert_eq(run_sh("\"$YOLO_COORD\" val model=%s/r:last device=tpu plots=False project=%s "
                        "name=dev 2> %s",
                        dir, dir, path),
                 2);
    cr_assert(run_file_has(path, "device=tpu: expected cpu, cuda or cuda:N"), "see %s", path);
    char why[256];
    int rc = run_sh("\"$YOLO_COORD\" val model=%s/r:last device=cuda plots=False project=%s "
                    "name=dev > %s 2>&1",
                    dir, dir, path);
    if (backend_cuda_device_count(why, sizeof why) == 0) {
        cr_assert_eq(rc, 2, "no GPU (%s): refused; see %s", why, path);
        cr_assert(run_file_has(path, "device=cuda: "), "the device is named; see %s", path);
    } else {
        cr_assert_eq(rc, 0, "val on the GPU; see %s", path);
    }
    free(tl), free(vl), free(tt), free(vt), free(tj), free(vj);
    lc_rm_rf(dir);
}

/* JSON lines of predict into an array of objects. */
static cJSON *read_jsonl(const char *path) {
    char *s = lc_read(path);
    cJSON *a = cJSON_CreateArray();
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        cr_assert(o, "not JSON: %s", line);
        cJSON_AddItemToArray(a, o);
    }
    free(s);
    return a;
}

static double num(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(o, k);
    cr_assert(cJSON_IsNumber(v), "field %s", k);
    return v->valuedouble;
}

static const char *base(const char *p) {
    return strrchr(p, '/') ? strrchr(p, '/') + 1 : p;
}

/* predict's lines equal training's predictions.json entry by entry (that file rounds boxes to 3
 * decimals and scores to 5). */
static void same_predictions(cJSON *lines, cJSON *coco) {
    int n = cJSON_GetArraySize(coco);
    cr_assert_eq(cJSON_GetArraySize(lines), n, "as many boxes as training's validation");
    for (int i = 0; i < n; i++) {
        const cJSON *l = cJSON_GetArrayItem(lines, i), *c = cJSON_GetArrayItem(coco, i);
        cr_assert_str_eq(base(cJSON_GetStringValue(cJSON_GetObjectItem(l, "file"))),
                         cJSON_GetStringValue(cJSON_GetObjectItem(c, "file_name")), "entry %d", i);
        cr_assert_eq(num(l, "class"), num(c, "category_id"), "entry %d class", i);
        cr_assert_leq(fabs(num(c, "score") - num(l, "confidence")), 5.01e-6, "entry %d score", i);
        const cJSON *xy = cJSON_GetObjectItem(l, "xyxy"), *bb = cJSON_GetObjectItem(c, "bbox");
        double x1 = cJSON_GetArrayItem(xy, 0)->valuedouble,
               y1 = cJSON_GetArrayItem(xy, 1)->valuedouble;
        double x2 = cJSON_GetArrayItem(xy, 2)->valuedouble,
               y2 = cJSON_GetArrayItem(xy, 3)->valuedouble;
        double want[4] = {x1, y1, x2 - x1, y2 - y1};
        for (int k = 0; k < 4; k++)
            cr_assert_leq(fabs(cJSON_GetArrayItem(bb, k)->valuedouble - want[k]), 1.01e-3,
                          "entry %d box[%d]: %g vs %g", i, k,
                          cJSON_GetArrayItem(bb, k)->valuedouble, want[k]);
    }
}

Test(lifecycle, predict_on_coco8_gives_the_boxes_of_training_validation, .timeout = 1200) {
    const char *yaml = shared_path("data/coco8/coco8.yaml");
    const char *images = shared_path("data/coco8/images/val");
    cr_assert(yaml && images, "coco8 is part of the shared data");
    char dir[256], data[400], path[600];
    lc_tmpdir(dir, "lc-predict");
    snprintf(data, sizeof data, "%s/coco8.h5", dir);
    cr_assert_eq(run_sh("\"$YOLO_COORD\" data pack data=%s out=%s > /dev/null", yaml, data), 0);
    /* one step of 80 classes leaves every score far below 0.001: validate at conf 0 */
    lc_train(dir, data, 1, "batch=4 save_json=True plots=False conf=0");
    cr_assert_eq(run_sh("\"$YOLO_COORD\" predict model=%s/r source=%s split=val batch=8 "
                        "conf=0 out=%s/p.jsonl > %s/predict.log 2>&1",
                        dir, data, dir, dir),
                 0, "predict failed; see %s/predict.log", dir);
    snprintf(path, sizeof path, "%s/predict.log", dir);
    char *plog = lc_read(path);
    lc_check_speed_lines(plog, 4);
    free(plog);
    snprintf(path, sizeof path, "%s/p.jsonl", dir);
    cJSON *lines = read_jsonl(path);
    snprintf(path, sizeof path, "%s/r/predictions.json", dir);
    char *t = lc_read(path);
    cJSON *coco = cJSON_Parse(t);
    cr_assert(cJSON_GetArraySize(coco) > 0, "training's validation predicted boxes");
    same_predictions(lines, coco);
    cJSON_Delete(lines);
    cJSON_Delete(coco);
    free(t);
    /* the image folder, annotated: three boxes per image, drawn where the JSON lines say */
    cr_assert_eq(run_sh("\"$YOLO_COORD\" predict model=%s/r source=%s conf=0 max_det=3 save=True "
                        "project=%s name=pred > %s/predict2.log 2>&1",
                        dir, images, dir, dir),
                 0, "predict failed; see %s/predict2.log", dir);
    snprintf(path, sizeof path, "%s/predict2.log", dir);
    t = lc_read(path);
    lc_check_speed_lines(t, 4);
    free(t);
    snprintf(path, sizeof path, "%s/pred/predictions.jsonl", dir);
    lines = read_jsonl(path);
    cr_assert_eq(cJSON_GetArraySize(lines), 4 * 3, "4 images x max_det 3");
    cr_assert(run_file_has(path, "000000000036.jpg"), "file names of the folder");
    for (int i = 0; i < cJSON_GetArraySize(lines); i++) {
        const cJSON *l = cJSON_GetArrayItem(lines, i);
        const char *file = cJSON_GetStringValue(cJSON_GetObjectItem(l, "file"));
        char ann[700];
        snprintf(ann, sizeof ann, "%s/pred/%s", dir, base(file));
        lc_image im = lc_load_image(ann), orig = lc_load_image(file);
        cr_assert(im.w == orig.w && im.h == orig.h, "%s keeps the image's size", ann);
        /* the box's top edge, a little in from the corner, is in its class colour (JPEG: loose) */
        const cJSON *xy = cJSON_GetObjectItem(l, "xyxy");
        int x1 = (int)cJSON_GetArrayItem(xy, 0)->valuedouble,
            y1 = (int)cJSON_GetArrayItem(xy, 1)->valuedouble;
        int x2 = (int)cJSON_GetArrayItem(xy, 2)->valuedouble,
            y2 = (int)cJSON_GetArrayItem(xy, 3)->valuedouble;
        plot_rgb c = plot_class_color((int)num(l, "class"));
        int hits = 0, tries = 0;
        for (int y = y2 - 1; y <= y2; y++) /* the bottom edge: labels never cover it */
            for (int x = x1 + 3; x < x2 - 3; x++, tries++) {
                if (x < 0 || y < 0 || x >= im.w || y >= im.h) continue;
                const uint8_t *p = im.rgb + ((size_t)y * im.w + x) * 3;
                hits += abs(p[0] - (int)(c.r * 255)) < 60 && abs(p[1] - (int)(c.g * 255)) < 60 &&
                        abs(p[2] - (int)(c.b * 255)) < 60;
            }
        if (x2 - x1 > 10 && y2 > 2 && y2 < im.h)
            cr_assert_gt(hits, tries / 3, "%s: box %d %d %d %d drawn (%d of %d edge pixels)", ann,
                         x1, y1, x2, y2, hits, tries);
        free(im.rgb);
        free(orig.rgb);
    }
    cJSON_Delete(lines);
    lc_rm_rf(dir);
}

/* An image file with a red rectangle on white. */
static void write_png(const char *path, int w, int h, int x0, int y0, int x1, int y1) {
    plot_canvas *c = plot_canvas_new(w, h, 72);
    plot_fill_rect(c, x0, y0, x1 - x0, y1 - y0, (plot_rgb){1, 0, 0});
    char err[256];
    cr_assert_eq(plot_canvas_save_png(c, path, err, sizeof err), 0, "%s", err);
    plot_canvas_free(c);
}

Test(lifecycle, predict_letterbox_is_undone_exactly_on_image_files) {
    char dir[256], path[600];
    lc_tmpdir(dir, "lc-letterbox");
    static const int sz[3][6] = {
        {150, 97, 40, 20, 100, 70}, {61, 200, 10, 120, 50, 190}, {333, 333, 1, 1, 332, 100}};
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/img%d.png", dir, k);
        write_png(path, sz[k][0], sz[k][1], sz[k][2], sz[k][3], sz[k][4], sz[k][5]);
    }
    image_files f;
    char err[512];
    cr_assert_eq(image_files_list(dir, &f, err, sizeof err), 0, "%s", err);
    cr_assert_eq(f.n, 3);
    int imgsz = 96;
    loader_config lc = loader_config_defaults();
    lc.imgsz = imgsz, lc.augment = 0, lc.max_batch = 1, lc.max_side = imgsz + 32, lc.nthreads = 1;
    loader *ld = loader_create_source(image_files_source(&f, dir), &lc, err, sizeof err);
    cr_assert(ld, "%s", err);
    for (int k = 0; k < 3; k++) {
        int h, w;
        eval_predict_canvas(sz[k][1], sz[k][0], imgsz, &h, &w);
        cr_assert(h % 32 == 0 && w % 32 == 0 && h <= imgsz && w <= imgsz, "canvas %dx%d", w, h);
        cr_assert(h == imgsz || w == imgsz, "the long side fills imgsz");
        cr_assert_eq(loader_submit_shape(ld, k, 0, &k, 1, h, w, err, sizeof err), 0, "%s", err);
        loader_batch b;
        cr_assert_eq(loader_next(ld, &b, err, sizeof err), 0, "%s", err);
        /* the red rectangle's extent in the canvas, back to the original pixels */
        float box[4] = {1e9f, 1e9f, -1, -1};
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                const uint8_t *p = b.images + ((size_t)y * w + x) * 3;
                if (p[0] > 200 && p[1] < 128) {
                    box[0] = fminf(box[0], (float)x), box[1] = fminf(box[1], (float)y);
                    box[2] = fmaxf(box[2], (float)x + 1), box[3] = fmaxf(box[3], (float)y + 1);
                }
            }
        cr_assert_geq(box[2], 0, "the object is in the canvas");
        float o[4];
        letterbox_undo_box(&b.info[0], box, o);
        double tol = 1.0 / b.info[0].gain_x + 0.5; /* one canvas pixel of resampling */
        for (int j = 0; j < 4; j++)
            cr_assert_leq(fabs(o[j] - sz[k][2 + j]), tol, "image %d side %d: %g vs %d (tol %g)", k,
                          j, o[j], sz[k][2 + j], tol);
    }
    loader_destroy(ld);
    image_files_free(&f);
    lc_rm_rf(dir);
}

Test(lifecycle, annotated_boxes_land_on_their_objects) {
    int w = 240, h = 160;
    uint8_t *rgb = malloc((size_t)w * h * 3);
    memset(rgb, 128, (size_t)w * h * 3);
    for (int y = 50; y < 110; y++) /* a dark object */
        for (int x = 80; x < 170; x++) memset(rgb + ((size_t)y * w + x) * 3, 20, 3);
    char dir[256], path[600], err[256];
    lc_tmpdir(dir, "lc-annotate");
    snprintf(path, sizeof path, "%s/a.png", dir);
    chart_tile t = {.rgb = rgb, .w = w, .h = h};
    chart_box b = {0, 2, 0.87f, 80, 50, 170, 110};
    const char *names[3] = {"a", "b", "thing"};
    cr_assert_eq(chart_annotated(&t, &b, 1, names, 3, path, err, sizeof err), 0, "%s", err);
    lc_image im = lc_load_image(path);
    cr_assert(im.w == w && im.h == h);
    plot_rgb c = plot_class_color(2);
    int R = (int)lround(c.r * 255), G = (int)lround(c.g * 255), B = (int)lround(c.b * 255);
#define IS_CLASS(x, y)                                                                             \
    (abs(im.rgb[((size_t)(y)*w + (x)) * 3] - R) < 8 &&                                             \
     abs(im.rgb[((size_t)(y)*w + (x)) * 3 + 1] - G) < 8 &&                                         \
     abs(im.rgb[((size_t)(y)*w + (x)) * 3 + 2] - B) < 8)
    for (int x = 85; x < 165; x++) cr_assert(IS_CLASS(x, 109), "bottom edge at x %d", x);
    for (int y = 55; y < 105; y++) {
        cr_assert(IS_CLASS(80, y), "left edge at y %d", y);
        cr_assert(IS_CLASS(169, y), "right edge at y %d", y);
        cr_assert(!IS_CLASS(125, y), "inside stays the object");
        cr_assert(!IS_CLASS(40, y) && !IS_CLASS(200, y), "outside stays the image");
    }
    int label = 0; /* "thing 0.87" on a filled tab above the box */
    for (int y = 30; y < 50; y++)
        for (int x = 80; x < 150; x++) label += IS_CLASS(x, y);
    cr_assert_gt(label, 200, "the label tab above the box");
#undef IS_CLASS
    free(im.rgb);
    free(rgb);
    lc_rm_rf(dir);
}

Test(lifecycle, bad_usage_exits_2_with_one_line) {
    char dir[256], path[600];
    lc_tmpdir(dir, "lc-usage");
    snprintf(path, sizeof path, "%s/err.txt", dir);
    cr_assert_eq(run_sh("\"$YOLO_COORD\" val data=x.h5 2> %s", path), 2);
    cr_assert(run_file_has(path, "model=<version> is required"));
    cr_assert_eq(run_sh("\"$YOLO_COORD\" val model=%s/none 2> %s", dir, path), 2);
    cr_assert(run_file_has(path, "no such run folder or version file"));
    cr_assert_eq(run_sh("\"$YOLO_COORD\" predict model=a source=b colour=red 2> %s", path), 2);
    cr_assert(run_file_has(path, "unknown argument 'colour'"));
    cr_assert_eq(run_sh("\"$YOLO_COORD\" gate candidate=a 2> %s", path), 2);
    cr_assert_eq(run_sh("\"$YOLO_COORD\" drift model=a new=b conf=2 2> %s", path), 2);
    cr_assert(run_file_has(path, "conf=2"));
    cr_assert_eq(run_sh("\"$YOLO_COORD\" val --help > %s", path), 0);
    cr_assert(run_file_has(path, "usage: coordinator val"));
    lc_rm_rf(dir);
}

Test(lifecycle, coco_predictions_json_as_ultralytics_writes_it) {
    char dir[256], path[600], err[512];
    lc_tmpdir(dir, "lc-coco");
    snprintf(path, sizeof path, "%s/s.h5", dir);
    int count[SPLIT_COUNT] = {1, 4, 0};
    pack_stats st;
    cr_assert_eq(pack_synth(path, count, 32, 2, 1, &st, err, sizeof err), 0, "%s", err);
    dataset *ds = dataset_open(path, err, sizeof err);
    cr_assert(ds, "%s", err);
    /* out of image order; image 3's two boxes in score order */
    val_plot_det d[3] = {{3, 1, 0.9123456f, 1.23456f, 2, 11.5f, 12.0004f},
                         {0, 0, 0.5f, 0, 0, 32, 32},
                         {3, 0, 0.25f, 4, 5, 6, 7}};
    snprintf(path, sizeof path, "%s/p.json", dir);
    cr_assert_eq(coco_predictions_write(path, ds, SPLIT_VAL, d, 3, err, sizeof err), 0, "%s", err);
    dataset_close(ds);
    char *t = lc_read(path);
    cJSON *a = cJSON_Parse(t);
    cr_assert_eq(cJSON_GetArraySize(a), 3);
    const cJSON *e0 = cJSON_GetArrayItem(a, 0), *e1 = cJSON_GetArrayItem(a, 1),
                *e2 = cJSON_GetArrayItem(a, 2);
    cr_assert_eq(num(e0, "image_id"), 0, "synth/val/000000: a numeric stem is a number");
    cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(e0, "file_name")), "000000");
    cr_assert_eq(num(e1, "image_id"), 3);
    cr_assert_eq(num(e1, "score"), 0.91235, "score rounded to 5 decimals");
    cr_assert_eq(num(e2, "score"), 0.25, "image 3's boxes keep their order");
    const cJSON *bb = cJSON_GetObjectItem(e1, "bbox");
    double want[4] = {1.235, 2, 10.265, 10}; /* x, y, w, h rounded to 3 decimals */
    for (int k = 0; k < 4; k++)
        cr_assert_float_eq(cJSON_GetArrayItem(bb, k)->valuedouble, want[k], 1e-9, "bbox[%d]", k);
    cr_assert_eq(num(e1, "category_id"), 1);
    cJSON_Delete(a);
    free(t);
    lc_rm_rf(dir);
}
