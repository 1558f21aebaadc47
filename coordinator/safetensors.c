/* The safetensors writer (safetensors.h). */
#include "coordinator/safetensors.h"

#include "common/atomic_file.h"
#include "common/log.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const ckpt_tensor *const *)a)->name, (*(const ckpt_tensor *const *)b)->name);
}

int safetensors_write(const char *path, const ckpt_tensor *t, int n, const safetensors_meta *meta,
                      int nmeta, char *err, size_t errlen) {
    const ckpt_tensor **order = xmalloc((size_t)(n ? n : 1) * sizeof *order);
    for (int i = 0; i < n; i++) order[i] = &t[i];
    qsort(order, (size_t)n, sizeof *order, cmp_name);
    cJSON *h = cJSON_CreateObject();
    if (nmeta) {
        cJSON *m = cJSON_AddObjectToObject(h, "__metadata__");
        for (int i = 0; i < nmeta; i++)
            cJSON_AddStringToObject(m, meta[i].key, meta[i].value ? meta[i].value : "");
    }
    size_t data = 0;
    for (int i = 0; i < n; i++) {
        const ckpt_tensor *x = order[i];
        size_t bytes = (size_t)ckpt_tensor_numel(x) * ckpt_dtype_size(x->dtype);
        cJSON *e = cJSON_AddObjectToObject(h, x->name);
        if (!e) { /* a duplicate name */
            cJSON_Delete(h);
            free(order);
            return errf(err, errlen, "%s: tensor %s twice", path, x->name);
        }
        cJSON_AddStringToObject(e, "dtype", x->dtype == CKPT_I64 ? "I64" : "F32");
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < x->ndim; d++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)x->shape[d]));
        cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)data));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(data + bytes)));
        data += bytes;
    }
    char *json = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t hlen = strlen(json), padded = (hlen + 7) / 8 * 8;
    size_t total = 8 + padded + data;
    unsigned char *buf = xmalloc(total);
    uint64_t le = padded;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(le >> (8 * i));
    memcpy(buf + 8, json, hlen);
    memset(buf + 8 + hlen, ' ', padded - hlen);
    cJSON_free(json);
    size_t at = 8 + padded;
    for (int i = 0; i < n; i++) {
        size_t bytes = (size_t)ckpt_tensor_numel(order[i]) * ckpt_dtype_size(order[i]->dtype);
        memcpy(buf + at, order[i]->data, bytes); /* little-endian hosts only (as the checkpoint) */
        at += bytes;
    }
    free(order);
    int rc = atomic_write_file(path, buf, total, err, errlen);
    free(buf);
    return rc;
}
