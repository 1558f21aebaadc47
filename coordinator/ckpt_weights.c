/* Weights files (format in ckpt_weights.h): written and read with the checkpoint's HDF5 writer
 * and tensor reader (ckpt_internal.h). */
#include "coordinator/ckpt_weights.h"

#include "common/log.h"
#include "common/sha256.h"
#include "coordinator/ckpt_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ckpt_weights {
    char *path;
    hid_t f;
    ckpt_weights_info info;
    ckpt_tensor *t;
    int n;
};

void ckpt_weights_info_free(ckpt_weights_info *w) {
    free(w->source);
    free(w->model);
    free(w->model_yaml);
    free(w->names);
    w->source = w->model = w->model_yaml = w->names = NULL;
}

static void put_entry(sha256_ctx *c, const char *key, const char *text) {
    char head[96];
    const char *s = text ? text : "";
    snprintf(head, sizeof head, "%s=%zu:", key, strlen(s));
    sha256_update(c, head, strlen(head));
    sha256_update(c, s, strlen(s));
    sha256_update(c, "\n", 1);
}

static void digest(const ckpt_weights_info *w, const ckpt_tensor *t, int n, char hex[65]) {
    sha256_ctx *c = sha256_begin();
    char num[32];
    snprintf(num, sizeof num, "%d", w->format_version);
    put_entry(c, "format_version", num);
    put_entry(c, "created", w->created);
    put_entry(c, "source", w->source);
    put_entry(c, "model", w->model);
    put_entry(c, "model_yaml", w->model_yaml);
    snprintf(num, sizeof num, "%d", w->nc);
    put_entry(c, "nc", num);
    put_entry(c, "names", w->names);
    put_entry(c, "dataset_sha256", w->dataset_sha256);
    if (w->format_version >= 2) {
        snprintf(num, sizeof num, "%d", w->imgsz);
        put_entry(c, "imgsz", num);
    }
    /* tensors in name order (t is sorted by the caller or the reader) */
    for (int i = 0; i < n; i++) {
        char buf[512];
        int k = snprintf(buf, sizeof buf, "tensor %s %s [", t[i].name,
                         t[i].dtype == CKPT_I64 ? "int64" : "float32");
        for (int d = 0; d < t[i].ndim; d++)
            k += snprintf(buf + k, sizeof buf - (size_t)k, "%s%" PRId64, d ? "," : "",
                          t[i].shape[d]);
        snprintf(buf + k, sizeof buf - (size_t)k, "] %s\n", t[i].sha256);
        sha256_update(c, buf, strlen(buf));
    }
    sha256_end(c, hex);
}

static int write_attrs(hid_t f, void *ctx, char *err, size_t errlen) {
    const ckpt_weights_info *w = ctx;
    int v = CKPT_WEIGHTS_FORMAT_VERSION;
    if (h5_attr_put_str(f, "format", CKPT_WEIGHTS_FORMAT) ||
        h5_attr_put(f, "format_version", H5T_NATIVE_INT, &v, 0) ||
        h5_attr_put_str(f, "created", w->created) || h5_attr_put_str(f, "source", w->source) ||
        h5_attr_put_str(f, "model", w->model) || h5_attr_put_str(f, "model_yaml", w->model_yaml) ||
        h5_attr_put(f, "nc", H5T_NATIVE_INT, &w->nc, 0) ||
        h5_attr_put(f, "imgsz", H5T_NATIVE_INT, &w->imgsz, 0) ||
        h5_attr_put_str(f, "names", w->names ? w->names : "[]") ||
        h5_attr_put_str(f, "dataset_sha256", w->dataset_sha256) ||
        h5_attr_put_str(f, "content_sha256", w->content_sha256))
        return errf(err, errlen, "cannot write the weights file's attributes");
    return 0;
}

int ckpt_weights_write(const char *path, ckpt_weights_info *info, ckpt_tensor *t, int n, char *err,
                       size_t errlen) {
    info->format_version = CKPT_WEIGHTS_FORMAT_VERSION;
    if (!info->created[0]) ckpt_iso_now(info->created, sizeof info->created);
    if (!info->names) info->names = xstrdup("[]");
    ckpt_hash_tensors(t, n);
    qsort(t, (size_t)n, sizeof *t, ckpt_tensor_cmp);
    digest(info, t, n, info->content_sha256);
    return ckpt_h5_write(path, &(ckpt_h5_attrs){write_attrs, info}, t, n, err, errlen);
}

/* The attributes; -1 with a one-line reason. */
static int read_attrs(hid_t f, const char *path, ckpt_weights_info *w, char *err, size_t errlen) {
    char *fmt = NULL, *s = NULL;
    if (h5_attr_get_str(f, "format", &fmt) != 0)
        return errf(err, errlen, "%s: not a yolo-cluster weights file (no 'format' attribute)",
                    path);
    int rc = 0;
    if (!strcmp(fmt, CKPT_FORMAT))
        rc = errf(err, errlen, "%s: a checkpoint version, not a weights file", path);
    else if (strcmp(fmt, CKPT_WEIGHTS_FORMAT))
        rc = errf(err, errlen, "%s: not a yolo-cluster weights file (format '%.80s')", path, fmt);
    free(fmt);
    if (rc) return rc;
    if (h5_attr_get(f, "format_version", H5T_NATIVE_INT, &w->format_version, 0) != 0)
        return errf(err, errlen, "%s: weights file without a format_version", path);
    if (w->format_version > CKPT_WEIGHTS_FORMAT_VERSION)
        return errf(err, errlen,
                    "%s: written by a newer yolo-cluster (weights format %d; this build reads "
                    "format %d): update to read it",
                    path, w->format_version, CKPT_WEIGHTS_FORMAT_VERSION);
    char **heap[] = {&w->source, &w->model, &w->model_yaml, &w->names};
    const char *heap_names[] = {"source", "model", "model_yaml", "names"};
    for (int i = 0; i < 4; i++)
        if (h5_attr_get_str(f, heap_names[i], heap[i]) != 0)
            return errf(err, errlen, "%s: damaged weights file: attribute %s missing", path,
                        heap_names[i]);
    struct {
        const char *name;
        char *dst;
        size_t n;
    } fixed[] = {{"created", w->created, sizeof w->created},
                 {"dataset_sha256", w->dataset_sha256, sizeof w->dataset_sha256},
                 {"content_sha256", w->content_sha256, sizeof w->content_sha256}};
    for (int i = 0; i < 3; i++) {
        if (h5_attr_get_str(f, fixed[i].name, &s) != 0)
            return errf(err, errlen, "%s: damaged weights file: attribute %s missing", path,
                        fixed[i].name);
        snprintf(fixed[i].dst, fixed[i].n, "%s", s);
        free(s);
    }
    if (h5_attr_get(f, "nc", H5T_NATIVE_INT, &w->nc, 0) != 0 || w->nc < 1)
        return errf(err, errlen, "%s: damaged weights file: attribute nc missing or < 1", path);
    w->imgsz = 0;
    if (w->format_version >= 2 &&
        (h5_attr_get(f, "imgsz", H5T_NATIVE_INT, &w->imgsz, 0) != 0 || w->imgsz < 0))
        return errf(err, errlen, "%s: damaged weights file: attribute imgsz missing or < 0", path);
    return 0;
}

ckpt_weights *ckpt_weights_open(const char *path, char *err, size_t errlen) {
    hid_t f = ckpt_h5_open(path, err, errlen);
    if (f < 0) return NULL;
    ckpt_weights *w = xcalloc(1, sizeof *w);
    w->path = xstrdup(path);
    w->f = f;
    char e2[600];
    if (read_attrs(f, path, &w->info, err, errlen) != 0) goto fail;
    if (ckpt_h5_list_tensors(f, &w->t, &w->n, e2, sizeof e2) != 0) {
        errf(err, errlen, "%s: damaged weights file: %s", path, e2);
        goto fail;
    }
    return w;
fail:
    ckpt_weights_close(w);
    return NULL;
}

void ckpt_weights_close(ckpt_weights *w) {
    if (!w) return;
    H5Fclose(w->f);
    ckpt_weights_info_free(&w->info);
    free(w->t);
    free(w->path);
    free(w);
}

const ckpt_weights_info *ckpt_weights_meta(const ckpt_weights *w) {
    return &w->info;
}
int ckpt_weights_num_tensors(const ckpt_weights *w) {
    return w->n;
}
const ckpt_tensor *ckpt_weights_tensor_at(const ckpt_weights *w, int i) {
    return i >= 0 && i < w->n ? &w->t[i] : NULL;
}

int ckpt_weights_read_tensor(ckpt_weights *w, int i, void *out, char *err, size_t errlen) {
    if (i < 0 || i >= w->n) return errf(err, errlen, "%s: no tensor #%d", w->path, i);
    return ckpt_h5_read_tensor(w->f, w->path, &w->t[i], out, err, errlen);
}

int ckpt_weights_verify(ckpt_weights *w, void (*report)(void *ctx, const char *line), void *ctx,
                        char *err, size_t errlen) {
    int bad = 0;
    char line[600];
    if (err && errlen) err[0] = 0;
    for (int i = 0; i < w->n; i++) {
        size_t bytes = (size_t)ckpt_tensor_numel(&w->t[i]) * ckpt_dtype_size(w->t[i].dtype);
        void *buf = xmalloc(bytes ? bytes : 1);
        if (ckpt_weights_read_tensor(w, i, buf, line, sizeof line) != 0) {
            if (report) report(ctx, line);
            if (!bad++) errf(err, errlen, "%s", line);
        }
        free(buf);
    }
    char hex[65];
    digest(&w->info, w->t, w->n, hex);
    if (strcmp(hex, w->info.content_sha256)) {
        snprintf(line, sizeof line,
                 "%s: content_sha256 mismatch: an attribute or the tensor list was changed",
                 w->path);
        if (report) report(ctx, line);
        if (!bad++) errf(err, errlen, "%s", line);
    }
    return bad;
}
