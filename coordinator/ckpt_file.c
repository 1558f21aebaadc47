/* Writing one checkpoint version (format in ckpt_file.h and docs/checkpoints.md), and the HDF5
 * file writer it shares with the weights files (ckpt_weights.h). */
#include "common/atomic_file.h"
#include "common/log.h"
#include "common/sha256.h"
#include "coordinator/ckpt_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The innermost HDF5 error description (where the system error, e.g. "No space left on device",
 * is named), for a one-line message. */
static herr_t first_error(unsigned n, const H5E_error2_t *e, void *ctx) {
    char *buf = ctx;
    if (n == 0 && e->desc) snprintf(buf, 240, "%s", e->desc);
    return 0;
}

void ckpt_h5_error(char *buf, size_t n) {
    char tmp[240] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, first_error, tmp);
    snprintf(buf, n, "%s", tmp[0] ? tmp : "HDF5 error");
}

static int write_tensor(hid_t f, hid_t lcpl, const ckpt_tensor *t) {
    hsize_t dims[4];
    for (int d = 0; d < t->ndim; d++) dims[d] = (hsize_t)t->shape[d];
    hid_t s = t->ndim ? H5Screate_simple(t->ndim, dims, NULL) : H5Screate(H5S_SCALAR);
    if (s < 0) return -1;
    hid_t d = H5Dcreate2(f, t->name, ckpt_h5_type(t->dtype), s, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    hid_t mem = t->dtype == CKPT_I64 ? H5T_NATIVE_INT64 : H5T_NATIVE_FLOAT;
    int rc = d >= 0 && H5Dwrite(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) >= 0 &&
                     h5_attr_put_str(d, "sha256", t->sha256) == 0
                 ? 0
                 : -1;
    if (d >= 0 && H5Dclose(d) < 0) rc = -1;
    H5Sclose(s);
    return rc;
}

void ckpt_iso_now(char *buf, size_t n) {
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The whole file is built in memory (HDF5's core driver, no backing store) and then written with
 * plain I/O: a full or read-only disk fails our write with the system's reason, and HDF5 never
 * holds a file half-flushed to a failing disk (its library state would not survive that). */
static int build_image(const char *path, const ckpt_h5_attrs *attrs, const ckpt_tensor *t, int n,
                       void **img, size_t *len, char *err, size_t errlen) {
    char h5err[256];
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    /* one allocation for the whole image: the tensors plus room for the metadata */
    size_t bytes = 4 << 20;
    for (int i = 0; i < n; i++)
        bytes += (size_t)ckpt_tensor_numel(&t[i]) * ckpt_dtype_size(t[i].dtype);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_core(fapl, bytes, 0) < 0) {
        if (fapl >= 0) H5Pclose(fapl);
        return errf(err, errlen, "%s: HDF5 in-memory file setup failed", path);
    }
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0) {
        ckpt_h5_error(h5err, sizeof h5err);
        return errf(err, errlen, "%s: cannot create in memory: %s", path, h5err);
    }
    int rc = -1;
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    char merr[300];
    if (lcpl < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0) {
        errf(err, errlen, "%s: HDF5 property list failed", path);
    } else if (attrs->write(f, attrs->ctx, merr, sizeof merr) != 0) {
        ckpt_h5_error(h5err, sizeof h5err);
        errf(err, errlen, "%s: %s: %s", path, merr, h5err);
    } else {
        rc = 0;
        for (int i = 0; i < n && rc == 0; i++)
            if (write_tensor(f, lcpl, &t[i]) != 0) {
                ckpt_h5_error(h5err, sizeof h5err);
                rc = errf(err, errlen, "%s: cannot write tensor %s: %s", path, t[i].name, h5err);
            }
    }
    if (lcpl >= 0) H5Pclose(lcpl);
    ssize_t size =
        rc == 0 && H5Fflush(f, H5F_SCOPE_GLOBAL) >= 0 ? H5Fget_file_image(f, NULL, 0) : -1;
    if (rc == 0 && size <= 0) rc = errf(err, errlen, "%s: HDF5 file image failed", path);
    if (rc == 0) {
        *img = xmalloc((size_t)size);
        *len = (size_t)size;
        if (H5Fget_file_image(f, *img, (size_t)size) != size) {
            free(*img);
            *img = NULL;
            rc = errf(err, errlen, "%s: HDF5 file image failed", path);
        }
    }
    if (H5Fclose(f) < 0 && rc == 0) rc = errf(err, errlen, "%s: HDF5 close failed", path);
    return rc;
}

int ckpt_h5_write(const char *path, const ckpt_h5_attrs *attrs, const ckpt_tensor *t, int n,
                  char *err, size_t errlen) {
    void *img = NULL;
    size_t len = 0;
    if (build_image(path, attrs, t, n, &img, &len, err, errlen) != 0) return -1;
    /* temporary name, fsync, rename, fsync of the folder */
    int rc = atomic_write_file(path, img, len, err, errlen);
    free(img);
    return rc;
}

void ckpt_hash_tensors(ckpt_tensor *t, int n) {
    for (int i = 0; i < n; i++)
        sha256_hex(t[i].data, (size_t)ckpt_tensor_numel(&t[i]) * ckpt_dtype_size(t[i].dtype),
                   t[i].sha256);
}

static int write_meta(hid_t f, void *ctx, char *err, size_t errlen) {
    const ckpt_meta *meta = ctx;
    if (ckpt_meta_write(f, meta, err, errlen) != 0) return -1;
    if (h5_attr_put_str(f, "content_sha256", meta->content_sha256) != 0)
        return errf(err, errlen, "cannot write attribute content_sha256");
    return 0;
}

int ckpt_write(const char *path, ckpt_meta *meta, ckpt_tensor *t, int n, char *err, size_t errlen) {
    meta->format_version = CKPT_FORMAT_VERSION;
    if (!meta->created[0]) ckpt_iso_now(meta->created, sizeof meta->created);
    ckpt_hash_tensors(t, n);
    ckpt_content_digest(meta, t, n, meta->content_sha256);
    return ckpt_h5_write(path, &(ckpt_h5_attrs){write_meta, meta}, t, n, err, errlen);
}
