#include "coordinator/weights_file.h"

#include "common/atomic_file.h"
#include "common/log.h"

#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

static int attr_str(hid_t obj, const char *name, const char *val) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return -1;
    H5Tset_size(t, strlen(val) + 1);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a >= 0 && H5Awrite(a, t, val) >= 0 ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
    return rc;
}

static int attr_num(hid_t obj, const char *name, hid_t type, const void *val) {
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, type, s, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a >= 0 && H5Awrite(a, type, val) >= 0 ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(s);
    return rc;
}

int weights_write(const char *path, const model_state_header *h, const tensor_desc *t,
                  const float *data, const weights_meta *meta, char *err, size_t errlen) {
    char *tmp = atomic_tmp_path(path);
    int rc = -1;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        errf(err, errlen, "%s: cannot create weights file", tmp);
        free(tmp);
        return -1;
    }
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    int version = WEIGHTS_FORMAT_VERSION;
    long long updates = h->ema_updates;
    if (attr_num(f, "format_version", H5T_NATIVE_INT, &version) ||
        attr_str(f, "format", "yolo-cluster weights") ||
        attr_num(f, "epoch", H5T_NATIVE_INT, &meta->epoch) ||
        attr_num(f, "fitness", H5T_NATIVE_DOUBLE, &meta->fitness) ||
        attr_num(f, "ema_updates", H5T_NATIVE_LLONG, &updates) ||
        attr_str(f, "model", meta->model ? meta->model : "") ||
        attr_str(f, "dataset_hash", meta->dataset_hash ? meta->dataset_hash : "") ||
        attr_str(f, "args", meta->args_yaml ? meta->args_yaml : "")) {
        errf(err, errlen, "%s: cannot write attributes", path);
        goto out;
    }
    for (int64_t i = 0; i < h->n_tensors; i++) {
        hsize_t dims[4];
        for (int d = 0; d < t[i].ndim; d++) dims[d] = (hsize_t)t[i].shape[d];
        hid_t s = t[i].ndim ? H5Screate_simple(t[i].ndim, dims, NULL) : H5Screate(H5S_SCALAR);
        hid_t d = H5Dcreate2(f, t[i].name, H5T_IEEE_F32LE, s, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        int ok = d >= 0 && H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                    data + t[i].offset) >= 0;
        if (d >= 0) H5Dclose(d);
        H5Sclose(s);
        if (!ok) {
            errf(err, errlen, "%s: cannot write tensor %s", path, t[i].name);
            goto out;
        }
    }
    rc = 0;
out:
    H5Pclose(lcpl);
    if (H5Fclose(f) < 0 && rc == 0) rc = errf(err, errlen, "%s: closing failed (disk full?)", path);
    if (rc == 0) rc = atomic_commit(tmp, path, err, errlen);
    if (rc != 0) atomic_abort(tmp);
    free(tmp);
    return rc;
}
