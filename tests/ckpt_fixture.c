#include "tests/ckpt_fixture.h"
#include "tests/testenv.h"

#include "common/model_file.h"
#include "common/rng.h"
#include "coordinator/ckpt_file.h"
#include "coordinator/ckpt_store.h"
#include "coordinator/model_weights.h"
#include "worker/model.h"
#include "worker/pretrained.h"

#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

double fixture_map(int v) {
    return 0.1 * v;
}
double fixture_fitness(int v) {
    return 0.1 * fixture_map(v) + 0.9 * (0.05 * v); /* Ultralytics: 0.1 mAP50 + 0.9 mAP50-95 */
}

/* The model's tensors in PyTorch layout under prefix/, perturbed by version, into t (data
 * malloc'd; *n counts). */
static void model_tensors(model *m, const char *prefix, int version, unsigned seed, ckpt_tensor *t,
                          int *n, int64_t *nbt) {
    float *p = malloc(model_num_params(m) * sizeof *p), *b = malloc(model_num_buffer_floats(m) * 4);
    model_params_to_host(m, p);
    model_buffers_to_host(m, b);
    rng r = rng_keyed(seed, (uint64_t)version, 0x66697874ULL);
    for (int pass = 0; pass < 2; pass++) {
        int count = pass ? model_num_buffer_tensors(m) : model_num_param_tensors(m);
        for (int i = 0; i < count; i++) {
            const model_tensor *mt = pass ? model_buffer_tensor(m, i) : model_param_tensor(m, i);
            float *src = (pass ? b : p) + mt->offset, *dst = malloc(mt->numel * sizeof *dst);
            model_tensor_to_torch(mt, src, dst);
            bool var = strstr(mt->name, "running_var") != NULL;
            if (!strstr(mt->name, ".dfl."))
                for (size_t k = 0; k < mt->numel; k++)
                    dst[k] = var ? 0.5f + (float)rng_range(&r, 0, 1)
                                 : dst[k] + (float)rng_range(&r, -0.05, 0.05);
            ckpt_tensor *x = &t[(*n)++];
            memset(x, 0, sizeof *x);
            snprintf(x->name, sizeof x->name, "%s/%s", prefix, mt->name);
            x->ndim = mt->ndim;
            for (int d = 0; d < mt->ndim; d++) x->shape[d] = mt->shape[d];
            x->data = dst;
            size_t len = strlen(mt->name);
            if (pass && len > 13 && !strcmp(mt->name + len - 13, ".running_mean")) {
                ckpt_tensor *c = &t[(*n)++];
                memset(c, 0, sizeof *c);
                snprintf(c->name, sizeof c->name, "%s/%.*s.num_batches_tracked", prefix,
                         (int)(len - 13), mt->name);
                c->dtype = CKPT_I64;
                c->data = nbt;
            }
        }
    }
    free(p);
    free(b);
}

static void write_args(const char *run, const char *name, const fixture_run_opts *o) {
    char path[600];
    snprintf(path, sizeof path, "%s/args.yaml", run);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f,
            "task: detect\nmode: train\nmodel: yolov8n.yaml\ndata: s.h5\nepochs: %d\nbatch: 8\n"
            "imgsz: 64\nname: %s\nlr0: %g\nsave_dir: %s\n",
            o->versions, name, o->lr0, run);
    fclose(f);
}

void fixture_run(const char *dir, const char *name, const fixture_run_opts *o) {
    char run[512], w[600], err[1024], ypath[512];
    snprintf(run, sizeof run, "%s/%s", dir, name);
    snprintf(w, sizeof w, "%s/weights", run);
    cr_assert_eq(mkdir(run, 0755) == 0 && mkdir(w, 0755) == 0, 1, "%s", run);
    write_args(run, name, o);
    char *yaml = model_file_read("yolov8n.yaml", ypath, sizeof ypath, err, sizeof err);
    cr_assert(yaml, "%s", err);
    model *m = model_create("yolov8n.yaml", o->nc ? o->nc : 3, o->seed, err, sizeof err);
    cr_assert(m, "%s", err);
    char apath[600], *args = calloc(1, 4096);
    snprintf(apath, sizeof apath, "%s/args.yaml", run);
    FILE *af = fopen(apath, "r");
    cr_assert(af && args);
    cr_assert_gt(fread(args, 1, 4095, af), 0);
    fclose(af);
    int best = o->best ? o->best : o->versions;
    char abs_run[PATH_MAX];
    cr_assert(realpath(run, abs_run));
    for (int v = 1; v <= o->versions; v++) {
        int cap = 3 * (model_num_param_tensors(m) + 2 * model_num_buffer_tensors(m));
        ckpt_tensor *t = calloc((size_t)cap, sizeof *t);
        int n = 0;
        int64_t nbt = 10 * v;
        model_tensors(m, "ema", v, o->seed, t, &n, &nbt);
        model_tensors(m, "model", v + 1000, o->seed, t, &n, &nbt);
        ckpt_meta meta = {0};
        meta.version = v;
        snprintf(meta.reason, sizeof meta.reason, "epoch");
        meta.epoch = v;
        meta.epochs = o->versions;
        meta.step = meta.steps = 2;
        meta.epoch_complete = 1;
        meta.finished = v == o->versions;
        meta.images_seen = 16 * v;
        meta.iterations = 2 * v;
        meta.elapsed_s = 1.5 * v;
        meta.best_fitness = fixture_fitness(v < best ? v : best);
        meta.best_epoch = v < best ? v : best;
        meta.best_map50 = 0.05 * meta.best_epoch;
        meta.best_map50_95 = fixture_map(meta.best_epoch);
        snprintf(meta.optimizer, sizeof meta.optimizer, "SGD");
        meta.has_row = true;
        meta.row.epoch = v;
        meta.row.time = 1.5 * v;
        meta.row.train[0] = 2.0 / v;
        meta.row.map50 = 0.05 * v;
        meta.row.map50_95 = fixture_map(v);
        meta.row.n_lr = 3;
        meta.fitness = fixture_fitness(v);
        if (v == 1 && o->parent_path) {
            char real[PATH_MAX], *slash;
            cr_assert(realpath(o->parent_path, real));
            slash = strrchr(real, '/');
            snprintf(meta.parent_version, sizeof meta.parent_version, "%.5s", slash + 1);
            *slash = 0;
            *strrchr(real, '/') = 0; /* <run>/weights -> <run> */
            ckpt_meta_set(&meta.parent_run, real);
        } else if (v > 1) {
            snprintf(meta.parent_version, sizeof meta.parent_version, "v%04d", v - 1);
            ckpt_meta_set(&meta.parent_run, abs_run);
        }
        snprintf(meta.dataset_sha256, sizeof meta.dataset_sha256, "%s",
                 o->dataset_sha
                     ? o->dataset_sha
                     : "abababababababababababababababababababababababababababababababab");
        ckpt_meta_set(&meta.dataset, "s.h5");
        ckpt_meta_set(&meta.model, "yolov8n.yaml");
        ckpt_meta_set(&meta.model_yaml, yaml);
        ckpt_meta_set(&meta.args_yaml, args);
        ckpt_meta_set(&meta.class_names,
                      o->names_json ? o->names_json : "[\"circle\",\"rectangle\",\"triangle\"]");
        snprintf(meta.code_version, sizeof meta.code_version, "test");
        meta.world_size = 1;
        meta.micro_batch = 8;
        snprintf(meta.host, sizeof meta.host, "test");
        snprintf(meta.precision, sizeof meta.precision, "bf16 convolutions (fixture)");
        char path[700];
        ckpt_store_version_path(run, v, path, sizeof path);
        cr_assert_eq(ckpt_write(path, &meta, t, n, err, sizeof err), 0, "%s", err);
        for (int i = 0; i < n; i++)
            if (t[i].dtype == CKPT_F32) free((void *)t[i].data);
        free(t);
        ckpt_meta_free(&meta);
        cr_assert_eq(ckpt_store_link(run, "last.h5", v, err, sizeof err), 0, "%s", err);
        if (v <= best) cr_assert_eq(ckpt_store_link(run, "best.h5", v, err, sizeof err), 0);
    }
    free(args);
    free(yaml);
    model_free(m);
}

float *fixture_forward(const char *weights, int b, int h, int w, const float *images,
                       size_t *count) {
    char err[1200];
    model_weights mw;
    cr_assert_eq(model_weights_load(weights, &mw, NULL, NULL, err, sizeof err), 0, "%s", err);
    model *m = model_create(mw.model, mw.nc, 0, err, sizeof err);
    cr_assert(m, "%s", err);
    tensor_desc *t;
    float *data;
    int64_t nf;
    model_weights_pack(&mw, &t, &data, &nf);
    pretrained_report r;
    cr_assert_eq(pretrained_load(m, t, mw.n, data, nf, NULL, &r, err, sizeof err), 0, "%s", err);
    cr_assert_eq(r.transferred, r.total, "every tensor of the model loads: %d/%d (not: %s)",
                 r.transferred, r.total, r.not_loaded);
    free(t);
    free(data);
    model_weights_free(&mw);
    cr_assert_eq(model_plan_eval(m, b, h, w, err, sizeof err), 0, "%s", err);
    model_forward(m, images, false);
    *count = (size_t)b * model_num_anchors(m) * model_out_channels(m);
    float *out = malloc(*count * sizeof *out);
    memcpy(out, model_output_host(m, MODEL_ONE2MANY), *count * sizeof *out);
    model_free(m);
    return out;
}

void fixture_write_raw(const char *path, const float *x, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert(f && fwrite(x, sizeof *x, n, f) == n, "%s", path);
    cr_assert_eq(fclose(f), 0);
}

double fixture_max_diff(const char *ref_path, const float *ours, size_t n, double *range) {
    float *ref = malloc(n * sizeof *ref + 4);
    FILE *f = fopen(ref_path, "rb");
    cr_assert(f, "%s", ref_path);
    size_t got = fread(ref, sizeof *ref, n + 1, f);
    fclose(f);
    cr_assert_eq(got, n, "the reference holds %zu outputs, ours are %zu", got, n);
    double worst = 0;
    *range = 0;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)ours[i] - ref[i]));
        *range = fmax(*range, fabs((double)ref[i]));
    }
    free(ref);
    return worst;
}

void fixture_suite_dirs(char *dir, size_t n, const char *tag, char *exe, size_t exelen) {
    test_temp_dir(dir, n, tag);
    snprintf(exe, exelen, "%s", bin_path("coordinator"));
    cr_assert_eq(access(exe, X_OK), 0, "%s: build first", exe);
}
