#include "tests/oracle.h"
#include "tests/testenv.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *oracle_path(const char *file) {
    char rel[256];
    snprintf(rel, sizeof rel, "data/oracle/%s", file);
    return shared_path(rel);
}

bool oracle_has(const char *file, const char *dset) {
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return false;
    bool ok = H5Lexists(f, dset, H5P_DEFAULT) > 0;
    H5Fclose(f);
    return ok;
}

float *oracle_read_f32(const char *file, const char *dset, size_t *count, int *ndim, size_t *dims) {
    float *out = NULL;
    H5E_BEGIN_TRY {
        hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f >= 0) {
            hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
            if (d >= 0) {
                hid_t s = H5Dget_space(d);
                hsize_t hd[8] = {0};
                int nd = H5Sget_simple_extent_dims(s, hd, NULL);
                size_t n = 1;
                for (int i = 0; i < nd; i++) n *= hd[i];
                out = malloc((n ? n : 1) * sizeof *out);
                if (out && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
                    free(out);
                    out = NULL;
                }
                if (out) {
                    if (count) *count = n;
                    if (ndim) *ndim = nd;
                    if (dims)
                        for (int i = 0; i < nd; i++) dims[i] = hd[i];
                }
                H5Sclose(s);
                H5Dclose(d);
            }
            H5Fclose(f);
        }
    }
    H5E_END_TRY;
    return out;
}

static herr_t collect(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)g;
    (void)info;
    void **st = data;
    char ***names = st[0];
    int *n = st[1];
    *names = realloc(*names, (size_t)(*n + 1) * sizeof **names);
    (*names)[(*n)++] = strdup(name);
    return 0;
}

char **oracle_list(const char *file, const char *group, int *n) {
    char **names = NULL;
    *n = 0;
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return NULL;
    hid_t g = H5Gopen2(f, group, H5P_DEFAULT);
    if (g >= 0) {
        void *st[2] = {&names, n};
        H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, collect, st);
        H5Gclose(g);
    }
    H5Fclose(f);
    return names;
}

void oracle_free_list(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

double max_abs_f32(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

double rel_max_diff(const float *a, const float *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > md || isnan(d)) md = isnan(d) ? INFINITY : d;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    return mb > 0 ? md / mb : md;
}

void nchw_to_nhwc(const float *src, float *dst, int n, int c, int h, int w) {
    for (int i = 0; i < n; i++)
        for (int k = 0; k < c; k++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    dst[(((size_t)i * h + y) * w + x) * c + k] =
                        src[(((size_t)i * c + k) * h + y) * w + x];
}

void nhwc_to_nchw(const float *src, float *dst, int n, int h, int w, int c) {
    for (int i = 0; i < n; i++)
        for (int k = 0; k < c; k++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    dst[(((size_t)i * c + k) * h + y) * w + x] =
                        src[(((size_t)i * h + y) * w + x) * c + k];
}
