/* Reading and verifying one checkpoint version (format in ckpt_file.h). */
#include "common/log.h"
#include "common/sha256.h"
#include "coordinator/ckpt_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ckpt_file {
    char *path;
    hid_t f;
    ckpt_meta meta;
    ckpt_tensor *t;
    int n;
};

static const unsigned char HDF5_SIGNATURE[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

/* Why a file that is not an HDF5 file at offset 0 cannot be opened; 0 when it looks like one. */
static int check_signature(const char *path, char *err, size_t errlen) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    unsigned char sig[8];
    size_t got = fread(sig, 1, sizeof sig, fp);
    fclose(fp);
    if (got < sizeof sig)
        return errf(err, errlen, "%s: truncated (%zu bytes): not a complete checkpoint", path, got);
    if (memcmp(sig, HDF5_SIGNATURE, sizeof sig))
        return errf(err, errlen, "%s: not an HDF5 file, so not a yolo-cluster checkpoint", path);
    return 0;
}

static int check_format(hid_t f, const char *path, char *err, size_t errlen) {
    char *fmt = NULL;
    if (h5_attr_get_str(f, "format", &fmt) != 0)
        return errf(err, errlen, "%s: not a yolo-cluster checkpoint (no 'format' attribute)", path);
    int rc = 0, ver = 0;
    if (!strcmp(fmt, "yolo-cluster weights"))
        rc = errf(err, errlen,
                  "%s: a weights file (EMA weights only, no training state), not a checkpoint",
                  path);
    else if (strcmp(fmt, CKPT_FORMAT))
        rc = errf(err, errlen, "%s: not a yolo-cluster checkpoint (format '%.80s')", path, fmt);
    else if (h5_attr_get(f, "format_version", H5T_NATIVE_INT, &ver, 0) != 0)
        rc = errf(err, errlen, "%s: checkpoint without a format_version attribute", path);
    else if (ver > CKPT_FORMAT_VERSION)
        rc = errf(err, errlen,
                  "%s: written by a newer yolo-cluster (checkpoint format %d; this build reads "
                  "format %d): update to read it",
                  path, ver, CKPT_FORMAT_VERSION);
    else if (ver < 1)
        rc = errf(err, errlen, "%s: unknown checkpoint format version %d", path, ver);
    free(fmt);
    return rc;
}

typedef struct visit_ctx {
    ckpt_tensor *t;
    int n, cap;
    char *err;
    size_t errlen;
    int failed;
} visit_ctx;

static int describe_dataset(hid_t d, const char *name, ckpt_tensor *t, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    if (snprintf(t->name, sizeof t->name, "%s", name) >= (int)sizeof t->name)
        return errf(err, errlen, "tensor name too long: %.60s...", name);
    hid_t ty = H5Dget_type(d), s = H5Dget_space(d);
    int rc = 0;
    H5T_class_t cls = ty >= 0 ? H5Tget_class(ty) : H5T_NO_CLASS;
    size_t sz = ty >= 0 ? H5Tget_size(ty) : 0;
    if (cls == H5T_FLOAT && sz == 4)
        t->dtype = CKPT_F32;
    else if (cls == H5T_INTEGER && sz == 8)
        t->dtype = CKPT_I64;
    else
        rc = errf(err, errlen, "tensor %s: unexpected data type (float32 or int64 expected)", name);
    int nd = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
    hsize_t dims[4] = {0};
    if (rc == 0 && (nd < 0 || nd > 4))
        rc = errf(err, errlen, "tensor %s: %d dimensions (at most 4)", name, nd);
    else if (rc == 0) {
        H5Sget_simple_extent_dims(s, dims, NULL);
        t->ndim = nd;
        for (int i = 0; i < nd; i++) t->shape[i] = (int64_t)dims[i];
    }
    char *sha = NULL;
    if (rc == 0 && (h5_attr_get_str(d, "sha256", &sha) != 0 || strlen(sha) != 64))
        rc = errf(err, errlen, "tensor %s: no sha256 attribute", name);
    if (sha) snprintf(t->sha256, sizeof t->sha256, "%s", sha);
    free(sha);
    if (ty >= 0) H5Tclose(ty);
    if (s >= 0) H5Sclose(s);
    return rc;
}

static herr_t visit_link(hid_t loc, const char *name, const H5L_info_t *info, void *op) {
    visit_ctx *v = op;
    if (info->type != H5L_TYPE_HARD) return 0;
    hid_t o = H5Oopen(loc, name, H5P_DEFAULT);
    if (o < 0) {
        v->failed = errf(v->err, v->errlen, "object %s cannot be opened (damaged file)", name);
        return -1;
    }
    int rc = 0;
    if (H5Iget_type(o) == H5I_DATASET) {
        if (v->n == v->cap) {
            v->cap = v->cap ? 2 * v->cap : 256;
            v->t = xrealloc(v->t, (size_t)v->cap * sizeof *v->t);
        }
        if (describe_dataset(o, name, &v->t[v->n], v->err, v->errlen) != 0)
            v->failed = rc = -1;
        else
            v->n++;
    }
    H5Oclose(o);
    return rc;
}

hid_t ckpt_h5_open(const char *path, char *err, size_t errlen) {
    if (check_signature(path, err, errlen) != 0) return -1;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        char h5err[256];
        ckpt_h5_error(h5err, sizeof h5err);
        errf(err, errlen, "%s: truncated or damaged HDF5 file (%s)", path, h5err);
    }
    return f;
}

int ckpt_h5_list_tensors(hid_t f, ckpt_tensor **t, int *n, char *err, size_t errlen) {
    visit_ctx v = {.err = err, .errlen = errlen};
    *t = NULL;
    *n = 0;
    if (H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, visit_link, &v) < 0 || v.failed) {
        if (!v.failed) errf(err, errlen, "cannot list the datasets");
        free(v.t);
        return -1;
    }
    qsort(v.t, (size_t)v.n, sizeof *v.t, ckpt_tensor_cmp);
    *t = v.t;
    *n = v.n;
    return 0;
}

ckpt_file *ckpt_open(const char *path, char *err, size_t errlen) {
    hid_t f = ckpt_h5_open(path, err, errlen);
    if (f < 0) return NULL;
    ckpt_file *cf = xcalloc(1, sizeof *cf);
    cf->path = xstrdup(path);
    cf->f = f;
    char merr[300];
    if (check_format(f, path, err, errlen) != 0) goto fail;
    if (ckpt_meta_read(f, &cf->meta, merr, sizeof merr) != 0) {
        errf(err, errlen, "%s: damaged checkpoint: %s", path, merr);
        goto fail;
    }
    char *sha = NULL;
    if (h5_attr_get_str(f, "content_sha256", &sha) != 0 || strlen(sha) != 64) {
        free(sha);
        errf(err, errlen, "%s: damaged checkpoint: no content_sha256", path);
        goto fail;
    }
    snprintf(cf->meta.content_sha256, sizeof cf->meta.content_sha256, "%s", sha);
    free(sha);
    if (ckpt_h5_list_tensors(f, &cf->t, &cf->n, merr, sizeof merr) != 0) {
        errf(err, errlen, "%s: damaged checkpoint: %s", path, merr);
        goto fail;
    }
    return cf;
fail:
    ckpt_close(cf);
    return NULL;
}

void ckpt_close(ckpt_file *cf) {
    if (!cf) return;
    if (cf->f >= 0) H5Fclose(cf->f);
    ckpt_meta_free(&cf->meta);
    free(cf->t);
    free(cf->path);
    free(cf);
}

const char *ckpt_path(const ckpt_file *cf) {
    return cf->path;
}
const ckpt_meta *ckpt_file_meta(const ckpt_file *cf) {
    return &cf->meta;
}
int ckpt_num_tensors(const ckpt_file *cf) {
    return cf->n;
}
const ckpt_tensor *ckpt_tensor_at(const ckpt_file *cf, int i) {
    return i >= 0 && i < cf->n ? &cf->t[i] : NULL;
}

int ckpt_find_tensor(const ckpt_file *cf, const char *name) {
    ckpt_tensor key;
    snprintf(key.name, sizeof key.name, "%s", name);
    const ckpt_tensor *hit = bsearch(&key, cf->t, (size_t)cf->n, sizeof *cf->t, ckpt_tensor_cmp);
    return hit ? (int)(hit - cf->t) : -1;
}

int ckpt_h5_read_tensor(hid_t f, const char *path, const ckpt_tensor *t, void *out, char *err,
                        size_t errlen) {
    hid_t d = H5Dopen2(f, t->name, H5P_DEFAULT);
    hid_t mem = t->dtype == CKPT_I64 ? H5T_NATIVE_INT64 : H5T_NATIVE_FLOAT;
    int ok = d >= 0 && H5Dread(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0;
    if (d >= 0) H5Dclose(d);
    if (!ok) {
        char h5err[256];
        ckpt_h5_error(h5err, sizeof h5err);
        return errf(err, errlen, "%s: tensor %s cannot be read (%s)", path, t->name, h5err);
    }
    char hex[65];
    sha256_hex(out, (size_t)ckpt_tensor_numel(t) * ckpt_dtype_size(t->dtype), hex);
    if (strcmp(hex, t->sha256))
        return errf(err, errlen, "%s: tensor %s: sha256 mismatch (damaged data)", path, t->name);
    return 0;
}

int ckpt_read_tensor(ckpt_file *cf, int i, void *out, char *err, size_t errlen) {
    if (i < 0 || i >= cf->n) return errf(err, errlen, "%s: no tensor #%d", cf->path, i);
    return ckpt_h5_read_tensor(cf->f, cf->path, &cf->t[i], out, err, errlen);
}

int ckpt_verify(ckpt_file *cf, void (*report)(void *ctx, const char *line), void *ctx, char *err,
                size_t errlen) {
    int bad = 0;
    size_t cap = 0;
    void *buf = NULL;
    char line[512];
    if (err && errlen) err[0] = 0;
    for (int i = 0; i < cf->n; i++) {
        size_t bytes = (size_t)ckpt_tensor_numel(&cf->t[i]) * ckpt_dtype_size(cf->t[i].dtype);
        if (bytes > cap) {
            free(buf);
            cap = bytes;
            buf = xmalloc(cap ? cap : 1);
        }
        if (ckpt_read_tensor(cf, i, buf, line, sizeof line) != 0) {
            if (report) report(ctx, line);
            if (!bad++) errf(err, errlen, "%s", line);
        }
    }
    free(buf);
    char hex[65];
    ckpt_content_digest(&cf->meta, cf->t, cf->n, hex);
    if (strcmp(hex, cf->meta.content_sha256)) {
        snprintf(line, sizeof line,
                 "%s: content_sha256 mismatch: metadata or the tensor list was changed", cf->path);
        if (report) report(ctx, line);
        if (!bad++) errf(err, errlen, "%s", line);
    }
    return bad;
}
