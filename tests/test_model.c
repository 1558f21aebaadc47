/* Model yaml parsing, parameter registry, counts, init and `worker info` (suite `model`). */
#include "tests/oracle.h"
#include "worker/model.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/testenv.h"

static model *make(const char *spec, int nc) {
    char err[512] = "";
    model *m = model_create(spec, nc, 1, err, sizeof err);
    cr_assert(m, "model_create(%s): %s", spec, err);
    return m;
}

static void check_count(const char *spec, int nc, size_t want) {
    model *m = make(spec, nc);
    cr_assert_eq(model_num_params(m), want, "%s nc=%d: %zu params, want %zu", spec, nc,
                 model_num_params(m), want);
    model_free(m);
}

Test(model, param_counts_nano_all_nc) {
    check_count("yolov8n.yaml", 80, 3157200);
    check_count("yolo11n.yaml", 80, 2624080);
    check_count("yolo26n.yaml", 80, 2572280);
    check_count("yolov8n.yaml", 1, 3011043);
    check_count("yolo11n.yaml", 1, 2590035);
    check_count("yolo26n.yaml", 1, 2504190);
    check_count("yolov8n.yaml", 3, 3011433);
    check_count("yolo11n.yaml", 3, 2590425);
    check_count("yolo26n.yaml", 3, 2504970);
}

/* Ultralytics' own files, unchanged, must build the same networks (counts from their comments). */
Test(model, ultralytics_yaml_files_unchanged) {
    const char *dir = shared_path("data/ultralytics-models/yolov8.yaml");
    cr_assert(dir, "shared ultralytics-models not found");
    char base[600];
    snprintf(base, sizeof base, "%s", dir);
    *strrchr(base, '/') = 0;
    struct {
        const char *f;
        size_t n;
    } cases[] = {{"yolov8n.yaml", 3157200},  {"yolo11n.yaml", 2624080}, {"yolo26n.yaml", 2572280},
                 {"yolov8s.yaml", 11166560}, {"yolo11s.yaml", 9458752}, {"yolo26s.yaml", 10009784},
                 {"yolo11m.yaml", 20114688}, {"yolo26m.yaml", 21896248}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char p[700];
        snprintf(p, sizeof p, "%s/%s", base, cases[i].f);
        check_count(p, 0, cases[i].n);
    }
}

Test(model, gflops_and_trainable) {
    struct {
        const char *f;
        double gf;
        size_t trainable;
        int tensors, buffers;
    } c[] = {{"yolov8n.yaml", 8.746, 3157184, 184, 114},
             {"yolo11n.yaml", 6.483, 2624064, 256, 162},
             {"yolo26n.yaml", 5.961, 2572280, 366, 228}};
    for (int i = 0; i < 3; i++) {
        model *m = make(c[i].f, 80);
        double macs, bias;
        model_conv_macs(m, 640, 640, &macs, &bias);
        double gf = 2 * (macs + bias) / 1e9;
        cr_assert(fabs(gf - c[i].gf) < 1.5e-3, "%s: %.4f GFLOPs, want %.3f", c[i].f, gf, c[i].gf);
        cr_assert_eq(model_num_trainable(m), c[i].trainable, "%s trainable %zu", c[i].f,
                     model_num_trainable(m));
        cr_assert_eq(model_num_param_tensors(m), c[i].tensors, "%s tensors %d", c[i].f,
                     model_num_param_tensors(m));
        cr_assert_eq(model_num_buffer_tensors(m), c[i].buffers);
        model_free(m);
    }
}

Test(model, state_dict_names_order_shapes) {
    model *m = make("yolov8n.yaml", 80);
    const model_tensor *t0 = model_param_tensor(m, 0);
    cr_assert_str_eq(t0->name, "model.0.conv.weight");
    cr_assert(t0->shape[0] == 16 && t0->shape[1] == 3 && t0->shape[2] == 3 && t0->shape[3] == 3);
    cr_assert_str_eq(model_param_tensor(m, 1)->name, "model.0.bn.weight");
    cr_assert_str_eq(model_param_tensor(m, 2)->name, "model.0.bn.bias");
    /* C2f registers cv1, cv2, then m.0 (execution order differs) */
    cr_assert_str_eq(model_param_tensor(m, 6)->name, "model.2.cv1.conv.weight");
    cr_assert_str_eq(model_param_tensor(m, 9)->name, "model.2.cv2.conv.weight");
    cr_assert_str_eq(model_param_tensor(m, 12)->name, "model.2.m.0.cv1.conv.weight");
    int i = model_find_param(m, "model.22.cv2.0.2.bias");
    cr_assert(i > 0);
    cr_assert_str_eq(model_param_tensor(m, i - 1)->name, "model.22.cv2.0.2.weight");
    int last = model_num_param_tensors(m) - 1;
    cr_assert_str_eq(model_param_tensor(m, last)->name, "model.22.dfl.conv.weight");
    cr_assert(!model_param_tensor(m, last)->trainable);
    const float *p = model_params(m) + model_param_tensor(m, last)->offset;
    for (int k = 0; k < 16; k++) cr_assert_eq(p[k], (float)k);
    /* offsets are contiguous in order */
    size_t off = 0;
    for (int k = 0; k < model_num_param_tensors(m); k++) {
        cr_assert_eq(model_param_tensor(m, k)->offset, off);
        off += model_param_tensor(m, k)->numel;
    }
    cr_assert_eq(off, model_num_params(m));
    cr_assert_eq(t0->role, MODEL_WEIGHT);
    cr_assert_eq(model_param_tensor(m, 1)->role, MODEL_BN_WEIGHT);
    cr_assert_eq(model_param_tensor(m, 2)->role, MODEL_BIAS);
    cr_assert_eq(model_param_tensor(m, i)->role, MODEL_BIAS);
    cr_assert_eq(model_buffer_tensor(m, 0)->role, MODEL_BUFFER);
    cr_assert_str_eq(model_buffer_tensor(m, 0)->name, "model.0.bn.running_mean");
    cr_assert_str_eq(model_buffer_tensor(m, 1)->name, "model.0.bn.running_var");
    model_free(m);

    m = make("yolo26n.yaml", 80);
    cr_assert(model_find_param(m, "model.23.one2one_cv3.2.2.bias") ==
              model_num_param_tensors(m) - 1);
    cr_assert(model_find_param(m, "model.22.m.0.1.attn.pe.conv.weight") >= 0);
    const model_tensor *pe =
        model_param_tensor(m, model_find_param(m, "model.22.m.0.1.attn.pe.conv.weight"));
    cr_assert(pe->shape[0] == 128 && pe->shape[1] == 1 && pe->shape[2] == 3);
    cr_assert(model_find_param(m, "model.23.dfl.conv.weight") < 0);
    int q = model_find_param(m, "model.10.m.0.attn.qkv.conv.weight");
    cr_assert_str_eq(model_param_tensor(m, q + 3)->name, "model.10.m.0.attn.proj.conv.weight");
    cr_assert_str_eq(model_param_tensor(m, q + 6)->name, "model.10.m.0.attn.pe.conv.weight");
    model_free(m);
}

Test(model, init_like_ultralytics) {
    model *m = make("yolo26n.yaml", 80);
    const float *p = model_params(m);
    const model_tensor *t;
    t = model_param_tensor(m, model_find_param(m, "model.23.cv3.0.2.bias"));
    cr_assert(fabsf(p[t->offset] - -11.5366f) < 1e-3f, "%f", p[t->offset]);
    t = model_param_tensor(m, model_find_param(m, "model.23.one2one_cv3.2.2.bias"));
    cr_assert(fabsf(p[t->offset + 79] - -8.7641f) < 1e-3f);
    t = model_param_tensor(m, model_find_param(m, "model.23.one2one_cv2.1.2.bias"));
    for (size_t k = 0; k < t->numel; k++) cr_assert_eq(p[t->offset + k], 2.0f);
    t = model_param_tensor(m, model_find_param(m, "model.5.bn.weight"));
    cr_assert_eq(p[t->offset], 1.0f);
    t = model_param_tensor(m, model_find_param(m, "model.7.conv.weight"));
    double bound = 1 / sqrt(128.0 * 9), mx = 0, mean = 0;
    for (size_t k = 0; k < t->numel; k++) {
        mx = fmax(mx, fabs(p[t->offset + k]));
        mean += p[t->offset + k];
    }
    cr_assert(mx <= bound && mx > 0.95 * bound, "max %g bound %g", mx, bound);
    cr_assert(fabs(mean / t->numel) < 0.05 * bound);
    const float *b = model_buffers(m);
    t = model_buffer_tensor(m, model_find_buffer(m, "model.4.cv1.bn.running_var"));
    cr_assert_eq(b[t->offset], 1.0f);
    /* same seed: same weights; another seed: different */
    char err[256];
    model *m2 = model_create("yolo26n.yaml", 80, 1, err, sizeof err);
    model *m3 = model_create("yolo26n.yaml", 80, 2, err, sizeof err);
    cr_assert(!memcmp(model_params(m2), p, model_num_params(m) * sizeof *p));
    cr_assert(memcmp(model_params(m3), p, model_num_params(m) * sizeof *p));
    model_free(m);
    model_free(m2);
    model_free(m3);
}

Test(model, scale_resolution_rules) {
    char err[512];
    model_yaml y;
    cr_assert_eq(model_yaml_load("yolov8n.yaml", 0, &y, err, sizeof err), 0, "%s", err);
    const char *tail = "models/yolov8.yaml";
    cr_assert(strlen(y.path) >= strlen(tail) &&
                  !strcmp(y.path + strlen(y.path) - strlen(tail), tail),
              "%s", y.path);
    cr_assert_eq(y.scale, 'n');
    cr_assert(y.legacy);
    cr_assert(y.layers[9].sppf_act, "v8 SPPF cv1 has SiLU");
    model_yaml_free(&y);
    cr_assert_eq(model_yaml_load("yolo11m.yaml", 0, &y, err, sizeof err), 0, "%s", err);
    cr_assert(!y.legacy);
    cr_assert(y.layers[2].c3k, "c3k forced at scale m");
    cr_assert_eq(y.layers[2].c2, 256);
    cr_assert_eq(y.max_channels, 512);
    cr_assert_eq(y.layers[8].c2, 512, "max_channels clamps 1024 -> 512");
    model_yaml_free(&y);
    cr_assert_eq(model_yaml_load("yolo26n.yaml", 5, &y, err, sizeof err), 0, "%s", err);
    cr_assert(!y.layers[9].sppf_act && y.layers[9].shortcut, "26 SPPF: no act, residual");
    cr_assert(y.end2end && y.reg_max == 1 && y.nc == 5);
    cr_assert_str_eq(y.layers[22].args_text, "[384, 256, 1, True, 0.5, True]");
    model_yaml_free(&y);
    /* no letter in the name: the first scale */
    cr_assert_eq(model_yaml_load(repo_path("models/yolo11.yaml"), 0, &y, err, sizeof err), 0, "%s",
                 err);
    cr_assert_eq(y.scale, 'n');
    cr_assert_eq(y.layers[0].c2, 16);
    model_yaml_free(&y);
    /* a file without scales: depth_multiple / width_multiple */
    char path[] = "/tmp/yolo_model_mult_XXXXXX.yaml";
    int fd = mkstemps(path, 5);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("nc: 2\ndepth_multiple: 0.33\nwidth_multiple: 0.25\nbackbone:\n"
          "  - [-1, 1, Conv, [64, 3, 2]]\n  - [-1, 3, C2f, [64, True]]\n"
          "head:\n  - [[0, 1, 1], 1, Detect, [nc]]\n",
          f);
    fclose(f);
    cr_assert_eq(model_yaml_load(path, 0, &y, err, sizeof err), 0, "%s", err);
    cr_assert_eq(y.scale, 0);
    cr_assert_eq(y.layers[0].c2, 16);
    cr_assert_eq(y.layers[1].n, 1);
    model_yaml_free(&y);
    unlink(path);
    cr_assert_neq(model_yaml_load("yolov9n.yaml", 0, &y, err, sizeof err), 0);
    cr_assert(strstr(err, "yolov9n.yaml"), "%s", err);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
}

static void expect_error(const char *text, const char *want1, const char *want2) {
    char path[] = "/tmp/yolo_model_test_XXXXXX.yaml";
    int fd = mkstemps(path, 5);
    cr_assert(fd >= 0);
    close(fd);
    write_file(path, text);
    char err[512] = "";
    model_yaml y;
    cr_assert_neq(model_yaml_load(path, 0, &y, err, sizeof err), 0, "accepted: %s", text);
    cr_assert(strstr(err, path), "error names the file: %s", err);
    cr_assert(strstr(err, want1), "error '%s' lacks '%s'", err, want1);
    if (want2) cr_assert(strstr(err, want2), "error '%s' lacks '%s'", err, want2);
    cr_assert(!strchr(err, '\n'), "one line");
    unlink(path);
}

#define HDR "nc: 4\nscales:\n  n: [0.5, 0.25, 1024]\nbackbone:\n  - [-1, 1, Conv, [64, 3, 2]]\n"
/* Deep repeats: C2f concatenates 2 + n parts and SPPF cv1 and its n pools, up to the supported 16
 * (ops once held 8 inputs: n = 12 wrote past them); 17 is refused with the layer named. */
Test(model, deep_repeats_build_and_run_and_beyond_the_limit_are_refused) {
    char dir[256], path[300], err[512];
    test_temp_dir(dir, sizeof dir, "deep");
    snprintf(path, sizeof path, "%s/deep.yaml", dir);
    write_file(path,
               "nc: 2\nbackbone:\n  - [-1, 1, Conv, [16, 3, 2]]\n  - [-1, 1, Conv, [16, 3, 2]]\n"
               "  - [-1, 1, Conv, [16, 3, 2]]\n  - [-1, 16, C2f, [16, True]]\n"
               "  - [-1, 1, SPPF, [16, 3, 16, True]]\nhead:\n  - [[1, 2, 4], 1, Detect, [nc]]\n");
    model *m = model_create(path, 0, 1, err, sizeof err);
    cr_assert(m, "%s", err);
    cr_assert_eq(model_plan(m, 1, 64, 64, err, sizeof err), 0, "%s", err);
    float *img = calloc(64 * 64 * 3, sizeof *img);
    model_forward(m, img, true);
    free(img);
    model_free(m);
    write_file(path, "nc: 2\nbackbone:\n  - [-1, 1, Conv, [16, 3, 2]]\n  - [-1, 17, C2f, [16]]\n"
                     "head:\n  - [[0, 1, 1], 1, Detect, [nc]]\n");
    model_yaml y;
    cr_assert_neq(model_yaml_load(path, 0, &y, err, sizeof err), 0);
    cr_assert(strstr(err, "layer 1") && strstr(err, "above the supported 16"), "%s", err);
    test_remove_dir(dir);
}

Test(model, bad_yaml_errors) {
    expect_error(HDR "  - [-1, 1, Frobnicate, [64]]\nhead:\n  - [[0, 1, 1], 1, Detect, [nc]]\n",
                 "layer 1", "unknown module 'Frobnicate'");
    expect_error(HDR "  - [-3, 1, Conv, [64, 3, 2]]\nhead:\n  - [[0, 1, 1], 1, Detect, [nc]]\n",
                 "layer 1", "out of range");
    expect_error(HDR "head:\n  - [[0, 5, 0], 1, Detect, [nc]]\n", "layer 1", "out of range");
    expect_error(HDR "  - [-1, 1, Conv, [64, 3, 2]\nhead: [\n", "yaml error", NULL);
    expect_error(HDR "  - [-1, 1, Conv]\nhead:\n  - [[0, 1, 1], 1, Detect, [nc]]\n", "layer 1",
                 "[from, repeats, module, args]");
    expect_error(HDR "  - [-1, 1, Conv, [abc, 3]]\nhead:\n  - [[0, 1, 1], 1, Detect, [nc]]\n",
                 "layer 1", "channels");
    expect_error("nc: 4\nbackbone: []\n", "backbone", NULL);
    expect_error("activation: nn.ReLU()\n" HDR "head:\n  - [[0, 0, 0], 1, Detect, [nc]]\n",
                 "activation", NULL);
}

/* A width multiple or expansion ratio that rounds a layer down to 0 channels is refused by
 * model_create with the layer named, in one line. Here C3k2's e=0.025 of 64 channels leaves 1
 * hidden channel, which its Bottleneck's e=0.5 rounds to 0 (found by fuzz_model_yaml: a division
 * by zero in the conv planner). */
Test(model, a_layer_rounded_to_no_channels_is_refused) {
    char dir[256], path[300], err[512] = "";
    test_temp_dir(dir, sizeof dir, "zeroch");
    snprintf(path, sizeof path, "%s/zero.yaml", dir);
    write_file(path, "nc: 2\nbackbone:\n  - [-1, 1, Conv, [16, 3, 2]]\n"
                     "  - [-1, 1, C3k2, [64, False, 0.025]]\n"
                     "head:\n  - [[0, 1, 1], 1, Detect, [nc]]\n");
    model *m = model_create(path, 0, 1, err, sizeof err);
    cr_assert_null(m, "accepted");
    cr_assert(strstr(err, "0 output channels") && strstr(err, "leaves no channels"), "%s", err);
    cr_assert(!strchr(err, '\n'), "one line: %s", err);
    test_remove_dir(dir);
}

static char *run_cmd(const char *cmd, int *status) {
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    static char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    *status = pclose(p);
    return buf;
}

Test(model, worker_info_summary) {
    const char *worker = bin_path("worker");
    struct {
        const char *args, *line;
    } c[] = {{"model=yolov8n.yaml nc=80 imgsz=640",
              "yolov8n summary: 3,157,200 parameters, 8.7 GFLOPs\n"},
             {"model=yolo11n.yaml", "yolo11n summary: 2,624,080 parameters, 6.5 GFLOPs\n"},
             {"model=yolo26n.yaml nc=80", "yolo26n summary: 2,572,280 parameters, 6.0 GFLOPs\n"},
             {"model=yolov8n.yaml nc=3", "yolov8n summary: 3,011,433 parameters, "}};
    for (int i = 0; i < 4; i++) {
        char cmd[256];
        int st;
        snprintf(cmd, sizeof cmd, "'%s' info %s 2>&1", worker, c[i].args);
        char *out = run_cmd(cmd, &st);
        cr_assert_eq(st, 0, "%s: %s", cmd, out);
        cr_assert(strstr(out, c[i].line), "%s: no '%s' in:\n%s", cmd, c[i].line, out);
    }
    int st;
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "'%s' info model=yolov8n.yaml 2>&1", worker);
    char *out = run_cmd(cmd, &st);
    cr_assert(strstr(out, " 22         [15, 18, 21]   1     897664  Detect       [80, 16, None, "
                          "[64, 128, 256]]"),
              "%s", out);
    snprintf(cmd, sizeof cmd, "'%s' info model=nope.yaml 2>&1", worker);
    out = run_cmd(cmd, &st);
    cr_assert_neq(st, 0);
    cr_assert(strstr(out, "nope.yaml"), "%s", out);
}
