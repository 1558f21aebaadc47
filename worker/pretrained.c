/* Pretrained weights into a freshly built model (pretrained.h). */
#include "worker/pretrained.h"

#include "common/log.h"

#include <mpi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const tensor_desc *find(const tensor_desc *t, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, name)) return &t[i];
    return NULL;
}

static bool same_shape(const tensor_desc *s, const model_tensor *mt) {
    if (s->ndim != mt->ndim) return false;
    for (int d = 0; d < mt->ndim; d++)
        if (s->shape[d] != mt->shape[d]) return false;
    return true;
}

/* "model.22.cv3.0.2.weight" / ".bias" (and one2one_cv3) of the Detect layer: a class-logit conv. */
static bool class_logit(const model *m, const char *name) {
    int layer = model_config(m)->nlayers - 1, l, i, k, used = 0;
    char br[16], what[8];
    if (sscanf(name, "model.%d.%15[a-z0-9_].%d.%d.%7[a-z]%n", &l, br, &i, &k, what, &used) != 5 ||
        name[used] || l != layer || k != 2)
        return false;
    return (!strcmp(br, "cv3") || !strcmp(br, "one2one_cv3")) &&
           (!strcmp(what, "weight") || !strcmp(what, "bias"));
}

static void note_skipped(pretrained_report *r, const char *name) {
    size_t len = strlen(r->not_loaded);
    if (r->n_not_loaded++ < 12 && len + strlen(name) + 3 < sizeof r->not_loaded)
        snprintf(r->not_loaded + len, sizeof r->not_loaded - len, "%s%s", len ? ", " : "", name);
}

/* Rows of the source's class-logit tensor by the class map, into ours (PyTorch layout: class
 * first; a conv weight's other dims must match). false when they do not. */
static bool remap_rows(const model_tensor *mt, const tensor_desc *s, const float *src,
                       const int *cls_map, float *dst_torch) {
    if (s->ndim != mt->ndim) return false;
    for (int d = 1; d < mt->ndim; d++)
        if (s->shape[d] != mt->shape[d]) return false;
    size_t row = mt->numel / (size_t)mt->shape[0];
    for (int c = 0; c < mt->shape[0]; c++)
        if (cls_map[c] >= 0 && cls_map[c] < s->shape[0])
            memcpy(dst_torch + (size_t)c * row, src + (size_t)cls_map[c] * row, row * sizeof *src);
    return true;
}

/* The source's values of s: in the data's range? */
static bool in_range(const tensor_desc *s, int64_t n_floats) {
    int64_t numel = 1;
    for (int d = 0; d < s->ndim; d++) numel *= s->shape[d] > 0 ? s->shape[d] : 0;
    return s->offset >= 0 && s->offset + numel <= n_floats;
}

/* One tensor of the model (a parameter or a buffer) from the source, if it fits. */
static int load_one(model *m, const model_tensor *mt, float *ours, const tensor_desc *t, int n,
                    const float *data, int64_t n_floats, const int *cls_map, pretrained_report *r,
                    char *err, size_t errlen) {
    const tensor_desc *s = find(t, n, mt->name);
    if (s && !in_range(s, n_floats))
        return errf(err, errlen, "pretrained tensor %s: data out of range", s->name);
    if (s && cls_map && class_logit(m, mt->name)) {
        /* start from our initialisation: rows of classes without a match keep it */
        float *torch = xmalloc(mt->numel * sizeof *torch);
        model_tensor_to_torch(mt, ours + mt->offset, torch);
        bool ok = remap_rows(mt, s, data + s->offset, cls_map, torch);
        if (ok) model_tensor_from_torch(mt, torch, ours + mt->offset);
        free(torch);
        if (ok) {
            r->remapped++;
            r->transferred++;
            return 0;
        }
    }
    if (s && same_shape(s, mt)) {
        model_tensor_from_torch(mt, data + s->offset, ours + mt->offset);
        r->transferred++;
    } else {
        note_skipped(r, mt->name);
    }
    return 0;
}

int pretrained_load(model *m, const tensor_desc *t, int n, const float *data, int64_t n_floats,
                    const int *cls_map, pretrained_report *r, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    float *params = xmalloc(model_num_params(m) * sizeof *params + 1);
    float *bufs = xmalloc(model_num_buffer_floats(m) * sizeof *bufs + 1);
    model_params_to_host(m, params);
    model_buffers_to_host(m, bufs);
    int rc = 0, nbn = 0;
    for (int i = 0; i < model_num_param_tensors(m) && rc == 0; i++)
        rc = load_one(m, model_param_tensor(m, i), params, t, n, data, n_floats, cls_map, r, err,
                      errlen);
    for (int i = 0; i < model_num_buffer_tensors(m) && rc == 0; i++) {
        const model_tensor *mt = model_buffer_tensor(m, i);
        rc = load_one(m, mt, bufs, t, n, data, n_floats, NULL, r, err, errlen);
        /* each BN's num_batches_tracked is a state_dict entry of its own (one counter here) */
        size_t len = strlen(mt->name);
        if (len > 13 && !strcmp(mt->name + len - 13, ".running_mean")) {
            char nbt[STATE_NAME_MAX + 32];
            snprintf(nbt, sizeof nbt, "%.*s.num_batches_tracked", (int)(len - 13), mt->name);
            const tensor_desc *s = find(t, n, nbt);
            nbn++;
            if (s && s->ndim == 0 && in_range(s, n_floats)) {
                *model_num_batches_tracked(m) = (long long)data[s->offset];
                r->transferred++;
            } else {
                note_skipped(r, nbt);
            }
        }
    }
    r->total = model_num_param_tensors(m) + model_num_buffer_tensors(m) + nbn;
    if (rc == 0) {
        model_params_from_host(m, params);
        model_buffers_from_host(m, bufs);
    }
    free(params);
    free(bufs);
    return rc;
}

int pretrained_cls_width(const int head_ch[3], int rule_c3, const int src_ch[3], int src_c3) {
    if (src_c3 <= 0) return rule_c3;
    for (int i = 0; i < 3; i++)
        if (head_ch[i] != src_ch[i]) return rule_c3;
    return src_c3;
}

int pretrained_receive(model *m, model *ema, int wrank, int cls_width, int rule_width, char *err,
                       size_t errlen) {
    weights_header h;
    CHECK_MPI(MPI_Bcast(&h, sizeof h, MPI_BYTE, 0, MPI_COMM_WORLD));
    tensor_desc *t = xmalloc((size_t)(h.n_tensors ? h.n_tensors : 1) * sizeof *t);
    float *d = xmalloc((size_t)(h.n_floats ? h.n_floats : 1) * sizeof *d);
    int *map = xmalloc((size_t)(h.ncls ? h.ncls : 1) * sizeof *map);
    CHECK_MPI(MPI_Bcast(t, (int)(h.n_tensors * (int64_t)sizeof *t), MPI_BYTE, 0, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Bcast(d, (int)h.n_floats, MPI_FLOAT, 0, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Bcast(map, h.ncls, MPI_INT, 0, MPI_COMM_WORLD));
    pretrained_summary sum = {.ok = 1, .cls_width = cls_width, .rule_width = rule_width};
    pretrained_report r, re;
    const int *cls_map = h.ncls == model_config(m)->nc ? map : NULL;
    int rc = pretrained_load(m, t, (int)h.n_tensors, d, h.n_floats, cls_map, &r, err, errlen);
    if (rc == 0)
        rc = pretrained_load(ema, t, (int)h.n_tensors, d, h.n_floats, cls_map, &re, err, errlen);
    if (rc == 0) {
        sum.transferred = r.transferred;
        sum.total = r.total;
        sum.remapped = r.remapped;
        sum.n_not_loaded = r.n_not_loaded;
        snprintf(sum.not_loaded, sizeof sum.not_loaded, "%s", r.not_loaded);
    } else {
        sum.ok = 0;
        snprintf(sum.error, sizeof sum.error, "%.255s", err);
    }
    if (wrank == 0)
        CHECK_MPI(MPI_Send(&sum, sizeof sum, MPI_BYTE, 0, TAG_PRETRAINED, MPI_COMM_WORLD));
    free(t);
    free(d);
    free(map);
    return rc;
}
