/* Loading a version or weights file for evaluation (eval_model.h). */
#include "lifecycle/eval_model.h"

#include "common/kv.h"
#include "common/log.h"
#include "common/train_args.h"
#include "coordinator/ckpt_file.h"
#include "coordinator/ckpt_ref.h"
#include "coordinator/model_weights.h"
#include "kernels/backend_cuda.h"
#include "kernels/threads.h"
#include "worker/pretrained.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* "cuda" -> 0, "cuda:N" / "N" -> N; -1 when d names no CUDA device. */
static int cuda_index(const char *d) {
    const char *n = !strcmp(d, "cuda") ? "0" : !strncmp(d, "cuda:", 5) ? d + 5 : d;
    char *end;
    long v = strtol(n, &end, 10);
    return n[0] >= '0' && n[0] <= '9' && !*end && v < 1024 ? (int)v : -1;
}

int eval_device_backend(const eval_device *dev, backend **out, char *err, size_t errlen) {
    const char *d = dev && dev->device ? dev->device : "cpu";
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = dev && dev->threads > 0 ? dev->threads : cores > 0 ? (int)cores : 1;
    kernels_set_threads(threads); /* the host's own kernels: NMS and the loss */
    int gpu = cuda_index(d);
    if (gpu >= 0) { /* the training backend's CUDA implementation (no GPU: its reason) */
        char e[512];
        *out = backend_cuda_create(&(backend_cuda_opts){.device = gpu}, e, sizeof e);
        return *out ? 0 : errf(err, errlen, "device=%s: %s", d, e);
    }
    if (strcmp(d, "cpu")) return errf(err, errlen, "device=%s: expected cpu, cuda or cuda:N", d);
    /* YOLO_EVAL_DEVICE_MEMORY=1 (tests): the CPU backend reports its memory as device memory, so
     * evaluation takes every copy a GPU backend needs (tests/test_lifecycle.c) */
    const char *dm = getenv("YOLO_EVAL_DEVICE_MEMORY");
    *out = backend_cpu_create(&(backend_cpu_opts){.threads = threads,
                                                  .conv_impl = conv2d_impl_from_env(CONV2D_AUTO),
                                                  .device_memory = dm && !strcmp(dm, "1")});
    return *out ? 0 : errf(err, errlen, "cannot create the CPU backend");
}

/* names: a JSON array of nc strings. */
static int parse_names(eval_model *e, const char *json, char *err, size_t errlen) {
    cJSON *a = cJSON_Parse(json ? json : "");
    int n = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : -1;
    if (n != e->nc) {
        cJSON_Delete(a);
        return errf(err, errlen, "%s: %d class names recorded for %d classes", e->path, n, e->nc);
    }
    e->names = xcalloc((size_t)(n > 0 ? n : 1), sizeof *e->names);
    for (int i = 0; i < n; i++) {
        const char *s = cJSON_GetStringValue(cJSON_GetArrayItem(a, i));
        char num[16];
        snprintf(num, sizeof num, "%d", i);
        e->names[i] = xstrdup(s ? s : num);
    }
    cJSON_Delete(a);
    return 0;
}

/* The architecture the file records (its yaml text, named as built: the scale letter counts) with
 * the class-branch width its weights have (a fine-tuned model keeps its source's). */
static model *build(backend *be, const model_weights *w, char *err, size_t errlen) {
    int c3 = 0, ch[3] = {0};
    model_head_widths(w->t, w->n, "", &c3, ch);
    model_spec spec = {.yaml = w->model, .yaml_text = w->model_yaml, .nc = w->nc, .cls_width = c3};
    return model_create_spec(be, &spec, 0, err, errlen);
}

/* Every tensor of the model must come from the file (evaluation never runs on initialised
 * weights): pretrained_load with nothing left out. */
static int load_weights(eval_model *e, const model_weights *w, char *err, size_t errlen) {
    tensor_desc *t = NULL;
    float *data = NULL;
    int64_t nf = 0;
    model_weights_pack(w, &t, &data, &nf);
    pretrained_report r = {0};
    int rc = pretrained_load(e->m, t, w->n, data, nf, NULL, &r, err, errlen);
    if (rc == 0 && r.n_not_loaded > 0)
        rc = errf(err, errlen, "%s: %d tensor(s) of %s missing or of another shape: %s", e->path,
                  r.n_not_loaded, e->model, r.not_loaded);
    free(t);
    free(data);
    return rc;
}

/* Training settings from the version's args.yaml; for a weights file the image size it records
 * (imgsz, 0 when none) and Ultralytics' defaults for the rest. */
static void read_args(eval_model *e, const ckpt_meta *meta, int imgsz) {
    e->imgsz = imgsz > 0 ? imgsz : 640, e->batch = 16, e->ultralytics = UL_VERSION_DEFAULT,
    e->nms = -1;
    if (!meta || !meta->args_yaml) return;
    char v[256];
    long l;
    kv_args_yaml_value(meta->args_yaml, "imgsz", v, sizeof v);
    if (parse_long(v, &l) && l >= 32) e->imgsz = (int)l;
    kv_args_yaml_value(meta->args_yaml, "batch", v, sizeof v);
    if (parse_long(v, &l) && l >= 1) e->batch = (int)l;
    kv_args_yaml_value(meta->args_yaml, "ultralytics", v, sizeof v);
    if (v[0]) ul_version_parse(v, &e->ultralytics);
    kv_args_yaml_value(meta->args_yaml, "nms", v, sizeof v);
    bool b;
    if (parse_bool(v, &b)) e->nms = b;
    if (meta->dataset) snprintf(e->dataset, sizeof e->dataset, "%s", meta->dataset);
    e->has_metrics = meta->has_row;
    e->map50 = meta->row.map50, e->map50_95 = meta->row.map50_95;
}

int eval_model_load(const char *ref, const eval_device *dev, eval_model *e, char *err,
                    size_t errlen) {
    memset(e, 0, sizeof *e);
    ckpt_ref r;
    if (ckpt_ref_resolve(ref, NULL, "best", &r, err, errlen) != 0) return -1;
    snprintf(e->label, sizeof e->label, "%s", r.label);
    snprintf(e->path, sizeof e->path, "%s", r.path);
    model_weights w;
    if (model_weights_load(r.path, &w, NULL, NULL, err, errlen) != 0) return -1;
    e->from_checkpoint = w.from_checkpoint;
    e->version = w.version;
    e->nc = w.nc;
    snprintf(e->model, sizeof e->model, "%s", w.model);
    snprintf(e->dataset_sha256, sizeof e->dataset_sha256, "%s", w.dataset_sha256);
    int rc = parse_names(e, w.names, err, errlen);
    ckpt_file *f = rc == 0 && w.from_checkpoint ? ckpt_open(r.path, err, errlen) : NULL;
    if (rc == 0 && w.from_checkpoint && !f) rc = -1;
    read_args(e, f ? ckpt_file_meta(f) : NULL, w.imgsz);
    ckpt_close(f);
    if (rc == 0) rc = eval_device_backend(dev, &e->be, err, errlen);
    if (rc == 0 && !(e->m = build(e->be, &w, err, errlen))) rc = -1;
    if (rc == 0) rc = load_weights(e, &w, err, errlen);
    if (rc == 0) e->end2end = model_num_branches(e->m) == 2;
    model_weights_free(&w);
    return rc;
}

void eval_model_free(eval_model *e) {
    model_free(e->m);
    if (e->be) backend_destroy(e->be);
    for (int i = 0; e->names && i < e->nc; i++) free(e->names[i]);
    free(e->names);
    memset(e, 0, sizeof *e);
}

bool eval_model_one2one(const eval_model *e, int nms) {
    if (!e->end2end) return false;
    train_args a = {.ultralytics = e->ultralytics, .nms = nms >= 0 ? nms : e->nms};
    return train_args_val_one2one(&a);
}
