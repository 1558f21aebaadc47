/* Weights from a checkpoint version's EMA or a weights file (model_weights.h). */
#include "coordinator/model_weights.h"

#include "common/kv.h"
#include "common/log.h"
#include "coordinator/ckpt_ref.h"
#include "coordinator/ckpt_weights.h"
#include "dataio/dataset.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* nc: the class logits' bias of the first level ("model.22.cv3.0.2.bias" has nc values). */
static int nc_of(const model_weights *w) {
    for (int i = 0; i < w->n; i++) {
        int l, k;
        char tail[8];
        if (sscanf(w->t[i].name, "model.%d.cv3.0.%d.bia%1s", &l, &k, tail) == 3 && k == 2 &&
            w->t[i].ndim == 1)
            return (int)w->t[i].shape[0];
    }
    return 0;
}

static char *placeholder_names(int nc) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < nc; i++) {
        char s[16];
        snprintf(s, sizeof s, "%d", i);
        cJSON_AddItemToArray(a, cJSON_CreateString(s));
    }
    char *text = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    char *out = xstrdup(text);
    cJSON_free(text);
    return out;
}

/* The class names a version was trained with: recorded in it, else from its dataset file when
 * that is still there with the same content hash, else placeholders. */
static char *names_of_version(const ckpt_meta *m, int nc) {
    if (m->class_names && m->class_names[0]) return xstrdup(m->class_names);
    char err[512];
    dataset *ds = m->dataset && m->dataset[0] ? dataset_open(m->dataset, err, sizeof err) : NULL;
    char *out = NULL;
    if (ds && !strcmp(dataset_hash(ds), m->dataset_sha256) && dataset_num_classes(ds) == nc) {
        cJSON *a = cJSON_CreateArray();
        for (int i = 0; i < nc; i++)
            cJSON_AddItemToArray(a, cJSON_CreateString(dataset_class_name(ds, i)));
        char *text = cJSON_PrintUnformatted(a);
        out = xstrdup(text);
        cJSON_free(text);
        cJSON_Delete(a);
    }
    if (ds) dataset_close(ds);
    return out ? out : placeholder_names(nc);
}

static void add_tensor(model_weights *w, const ckpt_tensor *src, const char *name) {
    ckpt_tensor *t = &w->t[w->n++];
    *t = *src;
    snprintf(t->name, sizeof t->name, "%s", name);
    t->data = NULL;
}

/* The imgsz of a version's args.yaml text: > 0, or 0 when absent or not a size. */
static int imgsz_of_args(const char *args_yaml) {
    char v[64];
    long l;
    kv_args_yaml_value(args_yaml ? args_yaml : "", "imgsz", v, sizeof v);
    return parse_long(v, &l) && l > 0 && l < 1L << 20 ? (int)l : 0;
}

static int from_checkpoint(const char *path, model_weights *w, void (*report)(void *, const char *),
                           void *ctx, char *err, size_t errlen) {
    ckpt_file *f = ckpt_open(path, err, errlen);
    if (!f) return -1;
    if (ckpt_verify(f, report, ctx, err, errlen) != 0) {
        ckpt_close(f);
        return -1;
    }
    const ckpt_meta *m = ckpt_file_meta(f);
    w->from_checkpoint = true;
    w->t = xcalloc((size_t)ckpt_num_tensors(f) + 1, sizeof *w->t);
    int rc = 0;
    for (int i = 0; i < ckpt_num_tensors(f) && rc == 0; i++) {
        const ckpt_tensor *t = ckpt_tensor_at(f, i);
        if (strncmp(t->name, "ema/", 4)) continue;
        add_tensor(w, t, t->name + 4);
        void *d = xmalloc((size_t)ckpt_tensor_numel(t) * ckpt_dtype_size(t->dtype) + 1);
        w->t[w->n - 1].data = d;
        rc = ckpt_read_tensor(f, i, d, err, errlen);
    }
    if (rc == 0 && w->n == 0) rc = errf(err, errlen, "%s: no EMA tensors (ema/...)", path);
    w->model = xstrdup(m->model ? m->model : "");
    w->model_yaml = xstrdup(m->model_yaml ? m->model_yaml : "");
    w->nc = nc_of(w);
    w->names = names_of_version(m, w->nc);
    w->imgsz = imgsz_of_args(m->args_yaml);
    snprintf(w->dataset_sha256, sizeof w->dataset_sha256, "%s", m->dataset_sha256);
    snprintf(w->content_sha256, sizeof w->content_sha256, "%s", m->content_sha256);
    ckpt_close(f);
    return rc;
}

static int from_weights_file(const char *path, model_weights *w,
                             void (*report)(void *, const char *), void *ctx, char *err,
                             size_t errlen) {
    ckpt_weights *f = ckpt_weights_open(path, err, errlen);
    if (!f) return -1;
    if (ckpt_weights_verify(f, report, ctx, err, errlen) != 0) {
        ckpt_weights_close(f);
        return -1;
    }
    const ckpt_weights_info *wi = ckpt_weights_meta(f);
    w->t = xcalloc((size_t)ckpt_weights_num_tensors(f) + 1, sizeof *w->t);
    int rc = 0;
    for (int i = 0; i < ckpt_weights_num_tensors(f) && rc == 0; i++) {
        const ckpt_tensor *t = ckpt_weights_tensor_at(f, i);
        if (strncmp(t->name, "model/", 6)) continue;
        add_tensor(w, t, t->name + 6);
        void *d = xmalloc((size_t)ckpt_tensor_numel(t) * ckpt_dtype_size(t->dtype) + 1);
        w->t[w->n - 1].data = d;
        rc = ckpt_weights_read_tensor(f, i, d, err, errlen);
    }
    if (rc == 0 && w->n == 0) rc = errf(err, errlen, "%s: no tensors under model/", path);
    w->model = xstrdup(wi->model);
    w->model_yaml = xstrdup(wi->model_yaml);
    w->names = xstrdup(wi->names);
    w->nc = wi->nc;
    w->imgsz = wi->imgsz;
    snprintf(w->dataset_sha256, sizeof w->dataset_sha256, "%s", wi->dataset_sha256);
    snprintf(w->content_sha256, sizeof w->content_sha256, "%s", wi->content_sha256);
    ckpt_weights_close(f);
    return rc;
}

int model_weights_open_either(const char *path, ckpt_file **f, char *err, size_t errlen) {
    *f = ckpt_open(path, err, errlen);
    if (*f) return 0;
    return strstr(err, "a weights file") ? 1 : -1;
}

int model_weights_load(const char *path, model_weights *w, void (*report)(void *, const char *),
                       void *ctx, char *err, size_t errlen) {
    memset(w, 0, sizeof *w);
    char e1[1200];
    ckpt_ref r;
    if (ckpt_ref_resolve(path, NULL, NULL, &r, e1, sizeof e1) != 0) {
        r = (ckpt_ref){0};
        snprintf(r.path, sizeof r.path, "%s", path);
        snprintf(r.label, sizeof r.label, "%s", path);
    }
    snprintf(w->source, sizeof w->source, "%s", r.label);
    w->version = r.version;
    const char *slash = strrchr(r.path, '/');
    snprintf(w->file_name, sizeof w->file_name, "%s", slash ? slash + 1 : r.path);
    if (r.run_dir[0] && r.version)
        snprintf(w->run_dir, sizeof w->run_dir, "%s", r.run_dir);
    else
        snprintf(w->run_dir, sizeof w->run_dir, "%.*s", slash ? (int)(slash - r.path) : 1,
                 slash ? r.path : ".");
    ckpt_file *f = NULL;
    int rc = model_weights_open_either(r.path, &f, e1, sizeof e1);
    if (f) ckpt_close(f);
    if (rc == 0)
        rc = from_checkpoint(r.path, w, report, ctx, err, errlen);
    else if (rc == 1)
        rc = from_weights_file(r.path, w, report, ctx, err, errlen);
    else
        rc = errf(err, errlen, "%s", e1);
    if (rc) model_weights_free(w);
    return rc;
}

int model_weights_recorded_imgsz(const char *path) {
    char e1[1200], e2[1200];
    ckpt_file *f = NULL;
    int kind = model_weights_open_either(path, &f, e1, sizeof e1);
    if (kind == 0) {
        int s = imgsz_of_args(ckpt_file_meta(f)->args_yaml);
        ckpt_close(f);
        return s;
    }
    if (kind < 0) return -1;
    ckpt_weights *w = ckpt_weights_open(path, e2, sizeof e2);
    if (!w) return -1;
    int s = ckpt_weights_meta(w)->imgsz;
    ckpt_weights_close(w);
    return s > 0 ? s : 0;
}

void model_weights_free(model_weights *w) {
    for (int i = 0; i < w->n; i++) free((void *)w->t[i].data);
    free(w->t);
    free(w->model);
    free(w->model_yaml);
    free(w->names);
    memset(w, 0, sizeof *w);
}

int model_weights_find(const model_weights *w, const char *name) {
    for (int i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name)) return i;
    return -1;
}

void model_weights_pack(const model_weights *w, tensor_desc **t, float **data, int64_t *n_floats) {
    int64_t total = 0;
    for (int i = 0; i < w->n; i++) total += ckpt_tensor_numel(&w->t[i]);
    *t = xcalloc((size_t)w->n + 1, sizeof **t);
    *data = xmalloc((size_t)(total + 1) * sizeof **data);
    int64_t at = 0;
    for (int i = 0; i < w->n; i++) {
        const ckpt_tensor *s = &w->t[i];
        tensor_desc *d = &(*t)[i];
        snprintf(d->name, sizeof d->name, "%s", s->name);
        d->ndim = s->ndim;
        for (int k = 0; k < s->ndim; k++) d->shape[k] = (int32_t)s->shape[k];
        d->offset = at;
        int64_t n = ckpt_tensor_numel(s);
        for (int64_t k = 0; k < n; k++)
            (*data)[at + k] = s->dtype == CKPT_I64 ? (float)((const int64_t *)s->data)[k]
                                                   : ((const float *)s->data)[k];
        at += n;
    }
    *n_floats = at;
}

/* "  Person " -> "person" */
static void norm_name(const char *s, char *out, size_t n) {
    while (isspace((unsigned char)*s)) s++;
    size_t k = 0;
    for (; *s && k + 1 < n; s++) out[k++] = (char)tolower((unsigned char)*s);
    while (k && isspace((unsigned char)out[k - 1])) k--;
    out[k] = 0;
}

static bool placeholders(const char *const *names, int n) {
    for (int i = 0; i < n; i++) {
        char s[16];
        snprintf(s, sizeof s, "%d", i);
        if (strcmp(names[i], s)) return false;
    }
    return true;
}

int model_weights_cls_map(const model_weights *w, const char *const *names, int nc, int *map) {
    cJSON *src = cJSON_Parse(w->names ? w->names : "[]");
    int ns = cJSON_IsArray(src) ? cJSON_GetArraySize(src) : 0;
    const char **sn = xcalloc((size_t)ns + 1, sizeof *sn);
    for (int i = 0; i < ns; i++) {
        cJSON *it = cJSON_GetArrayItem(src, i);
        sn[i] = cJSON_IsString(it) ? it->valuestring : "";
    }
    int matched = 0;
    bool identity = ns == nc;
    for (int c = 0; c < nc; c++) {
        char want[256], have[256];
        norm_name(names[c], want, sizeof want);
        map[c] = -1;
        for (int i = 0; i < ns && map[c] < 0; i++) {
            norm_name(sn[i], have, sizeof have);
            if (!strcmp(want, have)) map[c] = i;
        }
        matched += map[c] >= 0;
        identity = identity && map[c] == c;
    }
    bool skip =
        ns == 0 || placeholders(sn, ns) || placeholders(names, nc) || matched == 0 || identity;
    free(sn);
    cJSON_Delete(src);
    return skip ? 0 : matched;
}

void model_head_widths(const ckpt_tensor *t, int n, const char *prefix, int *c3, int ch[3]) {
    *c3 = 0;
    ch[0] = ch[1] = ch[2] = 0;
    size_t pl = strlen(prefix);
    int layer = -1;
    for (int i = 0; i < n; i++) { /* the Detect layer: the one with cv3.0.2 */
        int l, used = 0;
        if (!strncmp(t[i].name, prefix, pl) &&
            sscanf(t[i].name + pl, "model.%d.cv3.0.2.weight%n", &l, &used) == 1 &&
            !t[i].name[pl + (size_t)used] && t[i].ndim == 4) {
            layer = l;
            *c3 = (int)t[i].shape[1];
        }
    }
    for (int k = 0; k < 3 && layer >= 0; k++) {
        char name[CKPT_NAME_MAX + 64];
        snprintf(name, sizeof name, "%smodel.%d.cv2.%d.0.conv.weight", prefix, layer, k);
        for (int i = 0; i < n; i++)
            if (!strcmp(t[i].name, name) && t[i].ndim == 4) ch[k] = (int)t[i].shape[1];
    }
}
