/* The 8.4.190 behaviours that need a model, a dataset or a whole run (suite `ulfeature`): MuSGD
 * groups, what the optimizer lines report, the loss settings, class weights (cls_pw), max_det
 * raising, YOLO26 validation through both heads, and the names and lines a run writes. */
#include "common/rng.h"
#include "common/train_args.h"
#include "coordinator/train_prep.h"
#include "dataio/augment.h"
#include "dataio/dataset_write.h"
#include "dataio/loader.h"
#include "kernels/detloss.h"
#include "kernels/nms.h"
#include "kernels/threads.h"
#include "tests/mem_source.h"
#include "worker/model.h"
#include "worker/train_setup.h"
#include "worker/validate.h"
#include "tests/testenv.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void one_thread(void) {
    kernels_set_threads(1);
}

static train_args args_for(ul_version v, const char *optimizer, int nc) {
    kv_args kv = {0};
    train_args a;
    char err[512];
    kv_set(&kv, "data", "/etc/hostname");
    kv_set(&kv, "ultralytics", v == UL_8_4_33 ? "8.4.33" : "8.4.190");
    kv_set(&kv, "optimizer", optimizer);
    kv_set(&kv, "epochs", "2");
    kv_set(&kv, "batch", "8");
    cr_assert_eq(train_args_parse(&kv, &a, err, sizeof err), 0, "%s", err);
    kv_free(&kv);
    a.nc = nc;
    return a;
}

/* Tensors in the 3x-lr MuSGD groups (the even group indices) */
static int lr3x_tensors(const optimizer *o) {
    int n = 0;
    for (int i = 0; i < o->ntensors; i++) n += o->tensors[i].group % 2 == 0;
    return n;
}

Test(ulfeature, musgd_groups_and_optimizer_summary, .init = one_thread) {
    char err[512];
    struct {
        const char *yaml;
        ul_version v;
        int lr3x; /* head class-branch tensors */
    } c[] = {
        /* v8 head (model.22): 8.4.33's "23"+"cv3" never matches; 8.4.190 takes cv3 directly: 3
         * levels x (2 Conv of weight, bn.weight, bn.bias + Conv2d weight, bias) = 24 */
        {"yolov8n.yaml", UL_8_4_33, 0},
        {"yolov8n.yaml", UL_8_4_190, 24},
        /* yolo26 head (model.23): cv3 and one2one_cv3, 3 levels x (4 Conv x 3 + 2) = 84 either way
         */
        {"yolo26n.yaml", UL_8_4_33, 84},
        {"yolo26n.yaml", UL_8_4_190, 84},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        model *m = model_create(c[i].yaml, 3, 0, err, sizeof err);
        cr_assert(m, "%s", err);
        train_args a = args_for(c[i].v, "MuSGD", 3);
        optimizer o;
        sched_cfg sc;
        int acc;
        model_info mi;
        cr_assert_eq(train_setup_optimizer(m, &a, 16, &o, &sc, &acc, &mi, err, sizeof err), 0, "%s",
                     err);
        cr_assert_eq(o.ngroups, 8);
        cr_assert_eq(lr3x_tensors(&o), c[i].lr3x, "%s %s: %d", c[i].yaml, ul_version_name(c[i].v),
                     lr3x_tensors(&o));
        cr_assert_str_eq(mi.optimizer, "MuSGD");
        /* every conv weight is 4-d: the Muon group is the same under both rules; the frozen DFL
         * weight counts, as in Ultralytics' groups */
        bool v8 = !strcmp(c[i].yaml, "yolov8n.yaml");
        cr_assert_eq(mi.n_weight, v8 ? 64 : 126, "%d", mi.n_weight);
        cr_assert_eq(mi.n_bn, v8 ? 57 : 114);
        cr_assert_eq(mi.n_bias, v8 ? 63 : 126);
        train_free_optimizer(m, &o);
        model_free(m);
    }
    /* auto on 16 images: AdamW, lr round(0.002 * 5 / 7, 6); 8.4.190 caps accumulate at
     * nb * epochs = 2 * 2 = 4 and warms up 1 epoch (2 iterations), 8.4.33 uses 8 and 100 */
    model *m = model_create("yolov8n.yaml", 3, 0, err, sizeof err);
    cr_assert(m, "%s", err);
    for (int v = 0; v < 2; v++) {
        train_args a = args_for((ul_version)v, "auto", 3);
        optimizer o;
        sched_cfg sc;
        int acc;
        model_info mi;
        cr_assert_eq(train_setup_optimizer(m, &a, 16, &o, &sc, &acc, &mi, err, sizeof err), 0);
        cr_assert(mi.auto_optimizer);
        cr_assert_str_eq(mi.optimizer, "AdamW");
        cr_assert_eq(mi.lr, 0.001429);
        cr_assert_eq(mi.momentum, 0.9);
        cr_assert_eq(mi.decay, 0.0005, "weight decay from the uncapped accumulate 8: %g", mi.decay);
        cr_assert_eq(a.warmup_bias_lr, 0.0, "auto forces warmup_bias_lr 0");
        cr_assert_eq(mi.accumulate, v == UL_8_4_190 ? 4 : 8);
        cr_assert_eq(acc, mi.accumulate);
        cr_assert_eq(mi.warmup_iters, v == UL_8_4_190 ? 2 : 100);
        train_free_optimizer(m, &o);
    }
    model_free(m);
}

Test(ulfeature, loss_settings_per_release) {
    train_args a = args_for(UL_8_4_190, "auto", 4);
    a.box = 5.0, a.cls = 1.0, a.dfl = 2.0;
    detloss_hyp o2m, o2o;
    train_setup_loss(&a, 4, 1, &o2m, &o2o);
    cr_assert_eq(o2m.stal_min, 16.0f);
    cr_assert_eq(o2o.stal_min, 16.0f);
    cr_assert(o2m.bce_torch2 && o2o.bce_torch2);
    cr_assert(o2m.box == 5.0f && o2o.cls == 1.0f && o2o.dfl == 2.0f, "the run's gains");
    cr_assert(o2o.topk == 7 && o2o.topk2 == 1 && o2m.topk == 10);
    a = args_for(UL_8_4_33, "auto", 4);
    train_setup_loss(&a, 4, 16, &o2m, &o2o);
    cr_assert_eq(o2m.stal_min, 8.0f);
    cr_assert(!o2m.bce_torch2);
}

/* cls_pw multiplies each class's BCE (and its gradient) by the class weight, so the cls sum is
 * linear in the weights: L(w) = sum_c w_c L(e_c). */
Test(ulfeature, class_weights_scale_the_bce_linearly) {
    enum { B = 2, NC = 3 };
    int hs[3] = {4, 2, 1}, ws[3] = {4, 2, 1};
    float lst[3] = {8, 16, 32}, anc[2 * 21], str[21];
    int A = detloss_make_anchors(3, hs, ws, lst, anc, str);
    cr_assert_eq(A, 21);
    int no = 4 * 16 + NC;
    float *preds = malloc(sizeof(float) * B * A * no), *g = malloc(sizeof(float) * B * A * no);
    float *gs = calloc((size_t)B * A * no, sizeof(float));
    for (int i = 0; i < B * A * no; i++) preds[i] = sinf(0.37f * (float)i) * 2.0f - 1.0f;
    float targets[3 * 6] = {0,    0,    0.3f, 0.3f, 0.2f, 0.25f, 0,    2,    0.7f,
                            0.6f, 0.3f, 0.2f, 1,    1,    0.5f,  0.5f, 0.4f, 0.4f};
    detloss_ctx *ctx = detloss_create();
    detloss_hyp h = detloss_hyp_default(NC, 16);
    detloss_out o, oc;
    float w[NC] = {1.7f, 0.3f, 1.0f};
    h.cls_weight = w;
    cr_assert_eq(detloss_branch(ctx, &h, B, A, preds, anc, str, 3, targets, 32, 32, NULL, g, &o),
                 0);
    double sum = 0;
    for (int c = 0; c < NC; c++) {
        float e[NC] = {0, 0, 0};
        e[c] = 1;
        h.cls_weight = e;
        float *gc = malloc(sizeof(float) * B * A * no);
        cr_assert_eq(
            detloss_branch(ctx, &h, B, A, preds, anc, str, 3, targets, 32, 32, NULL, gc, &oc), 0);
        sum += w[c] * oc.loss_sum[1];
        for (int i = 0; i < B * A * no; i++) gs[i] += w[c] * gc[i];
        free(gc);
    }
    cr_assert_float_eq(o.loss_sum[1], sum, 1e-6 * sum, "cls sum %g vs %g", o.loss_sum[1], sum);
    double md = 0, mx = 0;
    for (int a = 0; a < B * A; a++)
        for (int k = 4 * 16; k < no; k++) {
            md = fmax(md, fabs(g[a * no + k] - gs[a * no + k]));
            mx = fmax(mx, fabs(g[a * no + k]));
        }
    cr_assert(md <= 1e-6 * mx, "class gradients linear in the weights: %g of %g", md, mx);
    /* all-ones weights are no weights */
    float ones[NC] = {1, 1, 1};
    h.cls_weight = ones;
    detloss_branch(ctx, &h, B, A, preds, anc, str, 3, targets, 32, 32, NULL, NULL, &o);
    h.cls_weight = NULL;
    detloss_branch(ctx, &h, B, A, preds, anc, str, 3, targets, 32, 32, NULL, NULL, &oc);
    cr_assert_eq(o.items[1], oc.items[1]);
    detloss_destroy(ctx);
    free(preds), free(g), free(gs);
}

/* A dataset of raw 8x8 images: train image 0 has 301 boxes of class 1, image 1 four of class 0;
 * val image 0 two of class 2. */
static void write_dense(const char *path) {
    char err[512];
    const char *names[3] = {"a", "b", "c"};
    dataset_writer *w = dataset_writer_create(path, 3, names, "test", err, sizeof err);
    cr_assert(w, "%s", err);
    uint8_t px[8 * 8 * 3];
    memset(px, 90, sizeof px);
    float *l = malloc(sizeof(float) * 5 * 301);
    for (int i = 0; i < 301; i++) {
        float r[5] = {1, 0.1f + 0.002f * (float)i, 0.5f, 0.05f, 0.05f};
        memcpy(l + 5 * i, r, sizeof r);
    }
    float four[20] = {0, .2f, .2f, .1f, .1f, 0, .4f, .4f, .1f, .1f,
                      0, .6f, .6f, .1f, .1f, 0, .8f, .8f, .1f, .1f};
    float two[10] = {2, .3f, .3f, .2f, .2f, 2, .7f, .7f, .2f, .2f};
    cr_assert_eq(dataset_writer_begin_split(w, SPLIT_TRAIN, err, sizeof err), 0, "%s", err);
    cr_assert_eq(
        dataset_writer_add(w, px, sizeof px, IMG_RAW_RGB, 8, 8, l, 301, "0", err, sizeof err), 0,
        "%s", err);
    cr_assert_eq(
        dataset_writer_add(w, px, sizeof px, IMG_RAW_RGB, 8, 8, four, 4, "1", err, sizeof err), 0,
        "%s", err);
    cr_assert_eq(dataset_writer_begin_split(w, SPLIT_VAL, err, sizeof err), 0, "%s", err);
    cr_assert_eq(
        dataset_writer_add(w, px, sizeof px, IMG_RAW_RGB, 8, 8, two, 2, "v", err, sizeof err), 0,
        "%s", err);
    cr_assert_eq(dataset_writer_finish(w, NULL, err, sizeof err), 0, "%s", err);
    free(l);
}

Test(ulfeature, max_det_raise_and_class_weights_from_the_data) {
    char dir[256], path[300], err[512];
    test_temp_dir(dir, sizeof dir, "ulfeat");
    snprintf(path, sizeof path, "%s/dense.h5", dir);
    write_dense(path);
    dataset *ds = dataset_open(path, err, sizeof err);
    cr_assert(ds, "%s", err);
    train_args a = args_for(UL_8_4_190, "auto", 3);
    cr_assert_eq(train_prep_max_det(&a, ds, 2), 301);
    cr_assert_eq(a.max_det, 301, "the default 300 is raised to the densest image");
    a = args_for(UL_8_4_190, "auto", 3);
    a.max_det = 100;
    train_prep_max_det(&a, ds, 2);
    cr_assert_eq(a.max_det, 100, "a max_det the user chose is kept (with a warning)");
    a = args_for(UL_8_4_190, "auto", 3);
    cr_assert_eq(train_prep_max_det(&a, ds, 1), 301);
    a = args_for(UL_8_4_33, "auto", 3);
    train_prep_max_det(&a, ds, 2);
    cr_assert_eq(a.max_det, 300, "8.4.33 keeps 300");
    /* cls_pw = 1: counts (4, 301, 0) -> (1/4, 1/301, mean of those), divided by their mean:
     * class 2 (no labels) gets exactly the mean, i.e. 1 */
    a = args_for(UL_8_4_190, "auto", 3);
    float w[3];
    cr_assert(!train_prep_class_weights(&a, ds, 2, w), "cls_pw 0: no weights");
    a.cls_pw = 1.0;
    cr_assert(train_prep_class_weights(&a, ds, 2, w));
    cr_assert_float_eq(w[2], 1.0f, 1e-6);
    cr_assert_float_eq(w[0] / w[1], 301.0f / 4.0f, 1e-3);
    cr_assert_float_eq((w[0] + w[1] + w[2]) / 3, 1.0f, 1e-6, "mean 1");
    a.cls_pw = 0.5; /* dampened: the ratio is the square root */
    cr_assert(train_prep_class_weights(&a, ds, 2, w));
    cr_assert_float_eq(w[0] / w[1], sqrtf(301.0f / 4.0f), 1e-3);
    dataset_close(ds);
    test_remove_dir(dir);
}

/* ---- YOLO26 validation through both heads ---------------------------------------------------- */

static void fill_image(int index, dataset_sample *out) {
    int h = 48 + 8 * index, w = 64;
    out->height = h, out->width = w;
    out->bytes = malloc((size_t)h * w * 3);
    for (size_t i = 0; i < (size_t)h * w * 3; i++)
        out->bytes[i] = (uint8_t)((i * 7 + (size_t)index * 31) % 251);
    out->nboxes = 2;
    out->labels = malloc(10 * sizeof(float));
    float l[10] = {0, 0.3f, 0.4f, 0.3f, 0.4f, 1, 0.7f, 0.6f, 0.2f, 0.3f};
    memcpy(out->labels, l, sizeof l);
}

/* Runs validate_run on 3 images in one 64 x 96 batch and recomputes the detections of the chosen
 * head independently: forward, decode of that branch, its post-process. */
static int val_one_head(model *m, bool one2one, val_record **recs_out) {
    char err[512];
    loader_config c = loader_config_defaults();
    c.imgsz = 64, c.augment = 0, c.nthreads = 1, c.depth = 2, c.max_batch = 2, c.max_side = 96;
    loader *L = loader_create_source(mem_source_of("mem", 3, fill_image), &c, err, sizeof err);
    cr_assert(L, "%s", err);
    detloss_hyp h2m = detloss_hyp_default(2, 1), h2o = detloss_hyp_one2one(2, 1);
    double *loss_res = backend_alloc(model_backend(m), BACKEND_DETLOSS_RESULTS * sizeof(double));
    validator v = {.m = m,
                   .ld = L,
                   .chunk = 2,
                   .nc = 2,
                   .imgsz = 64,
                   .loss_res = loss_res,
                   .h_o2m = &h2m,
                   .h_o2o = &h2o,
                   .one2one = one2one,
                   .match = VAL_MATCH_GREEDY,
                   .conf = 0.001f,
                   .iou = 0.7f,
                   .max_det = 300};
    int32_t idx[3] = {0, 1, 2};
    val_shape shape = {3, 64, 96};
    val_summary s;
    val_record *recs;
    int64_t counts[4];
    cr_assert_eq(validate_run(&v, 0, idx, 3, &shape, 1, &s, &recs, counts, NULL, err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(s.images, 3);
    cr_assert_eq(s.batches, 1, "one rectangular batch, in two forward chunks");
    cr_assert(counts[0] == 3 && counts[1] == 3 && counts[2] == 3 && counts[3] == 3);
    cr_assert(isfinite(s.loss_sum[0]) && s.loss_sum[1] > 0);
    /* independent: the letterboxed images, one forward of all three, the branch's decode */
    float *img = malloc(sizeof(float) * 3 * 64 * 96 * 3);
    for (int i = 0; i < 3; i++) {
        dataset_sample smp = {0};
        fill_image(i, &smp);
        aug_image a = {smp.bytes, smp.height, smp.width, smp.labels, smp.nboxes};
        uint8_t *u8 = malloc(64 * 96 * 3);
        float lab[10];
        augment_val_shape(&a, smp.height, smp.width, 64, 64, 96, u8, lab, NULL);
        for (int k = 0; k < 64 * 96 * 3; k++) img[(size_t)i * 64 * 96 * 3 + k] = u8[k] / 255.0f;
        free(u8);
        free(smp.bytes);
        free(smp.labels);
    }
    cr_assert_eq(model_plan_eval(m, 3, 64, 96, err, sizeof err), 0, "%s", err);
    model_forward(m, img, false);
    int A = model_num_anchors(m), no = 6;
    float *dec = malloc(sizeof(float) * 3 * A * no);
    model_decode(m, one2one ? MODEL_ONE2ONE : MODEL_ONE2MANY, dec);
    nms_cfg cfg = nms_val_defaults();
    detection det[300];
    int total = 0;
    for (int i = 0; i < 3; i++) {
        const float *p = dec + (size_t)i * A * no;
        if (!one2one) /* the one-to-many decode is xywh for NMS: widths and heights >= 0 */
            for (int a = 0; a < A; a++) cr_assert(p[a * no + 2] >= 0 && p[a * no + 3] >= 0);
        int nd = one2one ? topk_detect(p, A, 2, &cfg, det) : nms_detect(p, A, 2, &cfg, det);
        for (int k = 0; k < nd; k++) {
            cr_assert_eq(recs[total + k].conf, det[k].conf, "image %d detection %d", i, k);
            cr_assert_eq(recs[total + k].cls, det[k].cls);
        }
        total += nd;
    }
    cr_assert_eq(s.records, total);
    free(img);
    free(dec);
    backend_free(model_backend(m), loss_res);
    loader_destroy(L);
    *recs_out = recs;
    return s.records;
}

Test(ulfeature, yolo26_validates_through_either_head, .init = one_thread, .timeout = 120) {
    char err[512];
    model *m = model_create("yolo26n.yaml", 2, 7, err, sizeof err);
    cr_assert(m, "%s", err);
    /* the one-to-one head starts as a copy of the one-to-many head (Ultralytics deep-copies it):
     * make it score higher, so that the heads tell apart */
    int changed = 0;
    for (int i = 0; i < model_num_param_tensors(m); i++) {
        const model_tensor *t = model_param_tensor(m, i);
        if (strstr(t->name, "one2one_cv3") && strstr(t->name, ".bias") && t->numel == 2) {
            for (size_t k = 0; k < t->numel; k++) model_params(m)[t->offset + k] += 3.0f;
            changed++;
        }
    }
    cr_assert_eq(changed, 3, "the class bias of each level");
    val_record *a, *b;
    int na = val_one_head(m, false, &a), nb = val_one_head(m, true, &b);
    cr_assert_gt(na, 0);
    cr_assert_gt(nb, 0);
    bool differ = na != nb;
    for (int i = 0; i < na && i < nb && !differ; i++) differ = a[i].conf != b[i].conf;
    cr_assert(differ, "the two heads give different detections (%d, %d)", na, nb);
    free(a);
    free(b);
    model_free(m);
}

/* ---- whole runs: loss names, optimizer lines, args.yaml ------------------------------------- */

static int grep(const char *file, const char *text) {
    FILE *f = fopen(file, "r");
    if (!f) return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) found = strstr(line, text) != NULL;
    fclose(f);
    return found;
}

Test(ulfeature, runs_name_l1_loss_and_print_the_optimizer, .timeout = 300) {
    char dir[256], cmd[2048], p[600];
    test_temp_dir(dir, sizeof dir, "ulrun");
    const char *coord = bin_path("coordinator");
    snprintf(cmd, sizeof cmd,
             "'%s' data synth out=%s/s.h5 train=16 val=8 imgsz=64 classes=2 seed=0 >/dev/null",
             coord, dir);
    cr_assert_eq(system(cmd), 0);
    const char *ver[2] = {"8.4.33", "8.4.190"};
    for (int v = 0; v < 2; v++) {
        snprintf(cmd, sizeof cmd,
                 "timeout 240 '%s' train data=%s/s.h5 model=yolo26n.yaml epochs=1 imgsz=64 batch=8 "
                 "workers=1 threads=1 loader_threads=1 ultralytics=%s project=%s name=r%d "
                 "> %s/log%d.txt 2>&1",
                 coord, dir, ver[v], dir, v, dir, v);
        cr_assert_eq(system(cmd), 0, "see %s/log%d.txt", dir, v);
        snprintf(p, sizeof p, "%s/r%d/results.csv", dir, v);
        cr_assert(grep(p, v ? "train/l1_loss" : "train/dfl_loss"), "%s names the third loss", p);
        cr_assert(grep(p, v ? "val/l1_loss" : "val/dfl_loss"));
        snprintf(p, sizeof p, "%s/r%d/args.yaml", dir, v);
        char want[64];
        snprintf(want, sizeof want, "ultralytics: %s", ver[v]);
        cr_assert(grep(p, want), "%s records %s", p, want);
        snprintf(p, sizeof p, "%s/r%d/train.log", dir, v);
        cr_assert(grep(p, v ? "      Epoch   box_loss   cls_loss    l1_loss"
                            : "      Epoch   box_loss   cls_loss   dfl_loss"),
                  "progress header in %s", p);
        /* yolo26n at nc=2, 16 images: AdamW, lr round(0.01 / 6, 6); weight decay 0.0005 * 8 *
         * round(64 / 8) / 64 */
        cr_assert(grep(p, v ? "optimizer: 'optimizer=auto' found, ignoring 'lr0=0.01' and "
                              "determining best 'optimizer' and 'lr0' automatically... "
                            : "optimizer: 'optimizer=auto' found, ignoring 'lr0=0.01' and "
                              "'momentum=0.937' and determining best 'optimizer', 'lr0' and "
                              "'momentum' automatically... "),
                  "the auto line in %s", p);
        cr_assert(grep(p, "optimizer: AdamW(lr=0.001667, momentum=0.9) with parameter groups 114 "
                          "weight(decay=0.0), 126 weight(decay=0.0005), 126 bias(decay=0.0)"),
                  "the groups line in %s", p);
    }
    test_remove_dir(dir);
}

/* A non-mosaic training sample with every augmentation at 0: 8.4.33 letterboxes the 47 x 64 image
 * into 64 x 64 (8 rows of padding above: round(8.5 - 0.1)) and copies it; 8.4.190 warps it about
 * its centre, 8.5 rows down, so each output row blends two image rows and the box moves by 8.5. */
Test(ulfeature, non_mosaic_sample_is_warped_from_its_centre_in_8_4_190) {
    enum { H = 47, W = 64, S = 64 };
    uint8_t *img = malloc(H * W * 3), *o33 = malloc(S * S * 3), *o190 = malloc(S * S * 3);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W * 3; x++) img[y * W * 3 + x] = (uint8_t)(40 + 4 * y);
    float lab[5] = {1, 0.5f, 0.5f, 0.5f, 0.5f}, l33[5], l190[5];
    aug_image a = {img, H, W, lab, 1};
    augment_params p = {0};
    rng r = rng_keyed(1, 2, 3);
    cr_assert_eq(augment_train(&p, S, &r, 0, &a, o33, l33), 1);
    p.warp_from_centre = 1;
    r = rng_keyed(1, 2, 3);
    cr_assert_eq(augment_train(&p, S, &r, 0, &a, o190, l190), 1);
    cr_assert_eq(o33[(7 * S) * 3], 114, "8.4.33: padding row 7");
    cr_assert_eq(o33[(8 * S) * 3], 40, "8.4.33: image row 0 at row 8");
    cr_assert_eq(o33[(9 * S) * 3], 44);
    int v = o190[(9 * S) * 3]; /* half of image row 0 (40), half of row 1 (44) */
    cr_assert(v >= 41 && v <= 43, "8.4.190: row 9 blends rows 0 and 1: %d", v);
    v = o190[(8 * S) * 3]; /* half padding (114), half row 0 (40) */
    cr_assert(v >= 76 && v <= 78, "8.4.190: row 8 blends the border and row 0: %d", v);
    /* the box: centre y 0.5 of 47 rows -> 23.5 + 8 = 31.5 (8.4.33), + 8.5 = 32 (8.4.190) */
    cr_assert_float_eq(l33[2] * S, 31.5f, 1e-4);
    cr_assert_float_eq(l190[2] * S, 32.0f, 1e-4);
    cr_assert_float_eq(l190[1], l33[1], 1e-6, "no padding across: x is the same");
    free(img), free(o33), free(o190);
}
