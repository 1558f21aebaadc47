/* Reader of the dataset file; the schema is in dataio/dataset_write.h. */
#include "dataio/dataset.h"

#include "common/log.h"
#include "dataio/augment.h"
#include "dataio/dataset_write.h"
#include "dataio/heap_direct.h"

#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct split_data {
    int present;
    int64_t n, m;
    uint8_t *enc;
    int32_t *hgt, *wid;
    int64_t *off;
    float *labels;
    hid_t images, filenames;
    heap_direct *direct; /* image bytes without HDF5 (NULL: the file's layout is not known) */
    char hash[65];
} split_data;

struct dataset {
    char *path, *source, *created, *packer, *stored_as;
    int stored_imgsz;
    hid_t file, vlen_u8, str;
    hid_t xfer_own; /* reads whose variable-length buffers are plain malloc blocks we keep */
    int nc;
    char **names;
    char hash[65];
    split_data sp[SPLIT_COUNT];
};

const char *split_name(split_id s) {
    static const char *names[SPLIT_COUNT] = {"train", "val", "test"};
    return s >= 0 && s < SPLIT_COUNT ? names[s] : "?";
}

static hid_t vlen_str_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

/* A scalar string attribute (variable-length), malloc'd; NULL when absent or not a string. */
static char *read_str_attr(dataset *ds, hid_t obj, const char *name) {
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return NULL;
    char *v = NULL, *out = NULL;
    hid_t ft = H5Aget_type(a);
    if (ft >= 0 && H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft) > 0 &&
        H5Aread(a, ds->str, &v) >= 0 && v) {
        out = xstrdup(v);
        H5free_memory(v);
    }
    if (ft >= 0) H5Tclose(ft);
    H5Aclose(a);
    return out;
}

static int read_int_attr(hid_t obj, const char *name, int64_t *out) {
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    int rc = H5Aread(a, H5T_NATIVE_INT64, out) >= 0 ? 0 : -1;
    H5Aclose(a);
    return rc;
}

/* Reads a whole table of the expected rank; dims[] receives its shape. NULL on any error. */
static void *read_table(hid_t grp, const char *name, hid_t mtype, int rank, hsize_t *dims) {
    if (H5Lexists(grp, name, H5P_DEFAULT) <= 0) return NULL;
    hid_t d = H5Dopen2(grp, name, H5P_DEFAULT), sp = d >= 0 ? H5Dget_space(d) : -1;
    void *buf = NULL;
    if (sp >= 0 && H5Sget_simple_extent_ndims(sp) == rank &&
        H5Sget_simple_extent_dims(sp, dims, NULL) == rank) {
        size_t n = 1;
        for (int i = 0; i < rank; i++) n *= dims[i];
        /* a corrupt size must not become a huge allocation: far more than any real split */
        bool sane = dims[0] <= ((hsize_t)1 << 32) && n <= ((size_t)1 << 34);
        if (sane) buf = xmalloc(n ? n * H5Tget_size(mtype) : 1);
        if (sane && n && H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
            free(buf), buf = NULL;
    }
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    return buf;
}

static hsize_t dataset_len(hid_t d) {
    hid_t sp = H5Dget_space(d);
    hsize_t n = 0;
    if (sp >= 0 && H5Sget_simple_extent_ndims(sp) == 1)
        H5Sget_simple_extent_dims(sp, &n, NULL);
    else
        n = (hsize_t)-1;
    if (sp >= 0) H5Sclose(sp);
    return n;
}

static int open_split(dataset *ds, split_id s, char *err, size_t errlen) {
    split_data *p = &ds->sp[s];
    const char *sn = split_name(s);
    if (H5Lexists(ds->file, sn, H5P_DEFAULT) <= 0) return 0;
    hid_t g = H5Gopen2(ds->file, sn, H5P_DEFAULT);
    if (g < 0) return errf(err, errlen, "%s: /%s is not a group", ds->path, sn);
    hsize_t dn[2], dh[1], dw[1], doff[1], dl[2];
    p->enc = read_table(g, "encoding", H5T_NATIVE_UINT8, 1, dn);
    p->hgt = read_table(g, "height", H5T_NATIVE_INT32, 1, dh);
    p->wid = read_table(g, "width", H5T_NATIVE_INT32, 1, dw);
    p->off = read_table(g, "label_offsets", H5T_NATIVE_INT64, 1, doff);
    p->labels = read_table(g, "labels", H5T_NATIVE_FLOAT, 2, dl);
    p->images = H5Lexists(g, "images", H5P_DEFAULT) > 0 ? H5Dopen2(g, "images", H5P_DEFAULT) : -1;
    p->filenames =
        H5Lexists(g, "filenames", H5P_DEFAULT) > 0 ? H5Dopen2(g, "filenames", H5P_DEFAULT) : -1;
    char *h = read_str_attr(ds, g, "sha256");
    H5Gclose(g);
    if (!p->enc || !p->hgt || !p->wid || !p->off || !p->labels || p->images < 0 ||
        p->filenames < 0 || !h || strlen(h) != 64) {
        free(h);
        return errf(err, errlen, "%s: /%s: missing or unreadable member (not a dataset file?)",
                    ds->path, sn);
    }
    memcpy(p->hash, h, 65);
    free(h);
    p->n = (int64_t)dn[0], p->m = (int64_t)dl[0];
    if (dh[0] != dn[0] || dw[0] != dn[0] || doff[0] != dn[0] + 1 || dl[1] != 5 ||
        dataset_len(p->images) != dn[0] || dataset_len(p->filenames) != dn[0] || p->n > INT32_MAX)
        return errf(err, errlen, "%s: /%s: table sizes disagree", ds->path, sn);
    if (p->off[0] != 0 || p->off[p->n] != p->m)
        return errf(err, errlen, "%s: /%s: label_offsets do not span labels", ds->path, sn);
    for (int64_t i = 0; i < p->n; i++)
        if (p->off[i + 1] < p->off[i] || p->hgt[i] <= 0 || p->wid[i] <= 0)
            return errf(err, errlen, "%s: /%s: image %lld: bad offsets or size", ds->path, sn,
                        (long long)i);
    /* Every box as the packers write it (the class a valid index, the box inside the image with
     * the packers' rounding slack), so training and `data info` can trust the labels. */
    const float eps = 1e-5f;
    for (int64_t i = 0; i < p->n; i++)
        for (int64_t b = p->off[i]; b < p->off[i + 1]; b++) {
            const float *l = p->labels + b * 5;
            const char *bad = NULL;
            if (!(l[0] >= 0 && l[0] < ds->nc) || l[0] != floorf(l[0]))
                bad = "class is not one of the file's classes";
            else if (!(l[3] > 0 && l[4] > 0 && l[1] - l[3] / 2 >= -eps &&
                       l[1] + l[3] / 2 <= 1 + eps && l[2] - l[4] / 2 >= -eps &&
                       l[2] + l[4] / 2 <= 1 + eps))
                bad = "box is not inside the image";
            if (bad)
                return errf(err, errlen,
                            "%s: /%s image %lld: label %lld (%g %g %g %g %g): %s (num_classes "
                            "%d)",
                            ds->path, sn, (long long)i, (long long)(b - p->off[i]), l[0], l[1],
                            l[2], l[3], l[4], bad, ds->nc);
        }
    p->present = 1;
    p->direct = heap_direct_open(ds->path, ds->file, p->images, p->n);
    return 0;
}

/* The type conversion buffer of an image read: it holds 16 bytes per image (the heap reference,
 * then the hvl_t), not the bytes. HDF5's default, 1 MB, is zeroed on every H5Dread: measured 19%
 * of a single 150 KB image read. 4 KB converts 256 images per pass. */
enum { XFER_BUFFER = 4096 };

/* Variable-length reads into plain malloc blocks, so a sample can keep them. */
static void *vlen_malloc(size_t n, void *info) {
    (void)info;
    return malloc(n ? n : 1);
}
static void vlen_free(void *p, void *info) {
    (void)info;
    free(p);
}

dataset *dataset_open(const char *path, char *err, size_t errlen) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    htri_t is = H5Fis_hdf5(path);
    if (is < 0) return errf(err, errlen, "%s: cannot open (missing or unreadable)", path), NULL;
    if (is == 0) return errf(err, errlen, "%s: not an HDF5 file", path), NULL;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return errf(err, errlen, "%s: corrupt or truncated HDF5 file", path), NULL;
    dataset *ds = xcalloc(1, sizeof *ds);
    ds->path = xstrdup(path), ds->file = f;
    ds->vlen_u8 = H5Tvlen_create(H5T_NATIVE_UINT8), ds->str = vlen_str_type();

    for (int s = 0; s < SPLIT_COUNT; s++) ds->sp[s].images = ds->sp[s].filenames = -1;
    ds->xfer_own = H5Pcreate(H5P_DATASET_XFER);
    if (ds->xfer_own < 0 ||
        H5Pset_vlen_mem_manager(ds->xfer_own, vlen_malloc, NULL, vlen_free, NULL) < 0 ||
        H5Pset_buffer(ds->xfer_own, XFER_BUFFER, NULL, NULL) < 0) {
        errf(err, errlen, "%s: HDF5 cannot make a transfer property list", path);
        goto fail;
    }
    int64_t ver = 0, nc = 0;
    if (read_int_attr(f, "format_version", &ver) != 0) {
        errf(err, errlen, "%s: not a dataset file (no format_version attribute)", path);
        goto fail;
    }
    if (ver < DATASET_FORMAT_VERSION_ORIGINAL || ver > DATASET_FORMAT_VERSION) {
        errf(err, errlen,
             "%s: dataset format version %lld is not supported (this build reads %d to %d)", path,
             (long long)ver, DATASET_FORMAT_VERSION_ORIGINAL, DATASET_FORMAT_VERSION);
        goto fail;
    }
    int64_t stored = 0;
    if (ver >= 2 && (read_int_attr(f, "stored_imgsz", &stored) != 0 || stored < 1 ||
                     stored > 65536 || !(ds->stored_as = read_str_attr(ds, f, "stored_as")))) {
        errf(err, errlen, "%s: format version 2 without valid stored_imgsz/stored_as attributes",
             path);
        goto fail;
    }
    ds->stored_imgsz = (int)stored;
    char *h = read_str_attr(ds, f, "sha256");
    if (read_int_attr(f, "num_classes", &nc) != 0 || nc < 1 || nc > DATASET_MAX_CLASSES || !h ||
        strlen(h) != 64) {
        free(h);
        errf(err, errlen, "%s: missing or bad num_classes/sha256 attributes", path);
        goto fail;
    }
    memcpy(ds->hash, h, 65);
    free(h);
    ds->nc = (int)nc;
    ds->source = read_str_attr(ds, f, "source");
    ds->created = read_str_attr(ds, f, "created");
    ds->packer = read_str_attr(ds, f, "packer_version");
    hsize_t dn;
    hid_t cn =
        H5Lexists(f, "class_names", H5P_DEFAULT) > 0 ? H5Dopen2(f, "class_names", H5P_DEFAULT) : -1;
    char **raw = xcalloc((size_t)nc, sizeof *raw);
    int ok = cn >= 0 && (dn = dataset_len(cn)) == (hsize_t)nc &&
             H5Dread(cn, ds->str, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) >= 0;
    ds->names = xcalloc((size_t)nc, sizeof *ds->names);
    for (int i = 0; i < nc; i++) {
        ds->names[i] = xstrdup(ok && raw[i] ? raw[i] : "");
        if (raw[i]) H5free_memory(raw[i]);
    }
    free(raw);
    if (cn >= 0) H5Dclose(cn);
    if (!ok) {
        errf(err, errlen, "%s: class_names missing or not %lld strings", path, (long long)nc);
        goto fail;
    }
    for (int s = 0; s < SPLIT_COUNT; s++)
        if (open_split(ds, (split_id)s, err, errlen) != 0) goto fail;
    return ds;
fail:
    dataset_close(ds);
    return NULL;
}

void dataset_close(dataset *ds) {
    if (!ds) return;
    for (int s = 0; s < SPLIT_COUNT; s++) {
        split_data *p = &ds->sp[s];
        free(p->enc), free(p->hgt), free(p->wid), free(p->off), free(p->labels);
        if (p->images >= 0) H5Dclose(p->images);
        if (p->filenames >= 0) H5Dclose(p->filenames);
        heap_direct_close(p->direct);
    }
    for (int i = 0; ds->names && i < ds->nc; i++) free(ds->names[i]);
    if (ds->vlen_u8 >= 0) H5Tclose(ds->vlen_u8);
    if (ds->xfer_own > 0) H5Pclose(ds->xfer_own);
    if (ds->str >= 0) H5Tclose(ds->str);
    if (ds->file >= 0) H5Fclose(ds->file);
    free(ds->names), free(ds->path), free(ds->source), free(ds->created), free(ds->packer);
    free(ds->stored_as);
    free(ds);
}

const char *dataset_path(const dataset *ds) {
    return ds->path;
}
int dataset_num_classes(const dataset *ds) {
    return ds->nc;
}
const char *dataset_class_name(const dataset *ds, int cls) {
    return cls >= 0 && cls < ds->nc ? ds->names[cls] : "?";
}
const char *dataset_hash(const dataset *ds) {
    return ds->hash;
}
const char *dataset_source(const dataset *ds) {
    return ds->source ? ds->source : "";
}
const char *dataset_created(const dataset *ds) {
    return ds->created ? ds->created : "";
}
const char *dataset_packer_version(const dataset *ds) {
    return ds->packer ? ds->packer : "";
}

int dataset_stored_imgsz(const dataset *ds) {
    return ds->stored_imgsz;
}

const char *dataset_stored_as(const dataset *ds) {
    return ds->stored_as ? ds->stored_as : "";
}

int dataset_split_size(const dataset *ds, split_id s) {
    return s >= 0 && s < SPLIT_COUNT && ds->sp[s].present ? (int)ds->sp[s].n : 0;
}
bool dataset_has_split(const dataset *ds, split_id s) {
    return s >= 0 && s < SPLIT_COUNT && ds->sp[s].present;
}
int64_t dataset_split_boxes(const dataset *ds, split_id s) {
    return dataset_has_split(ds, s) ? ds->sp[s].m : 0;
}
const char *dataset_split_hash(const dataset *ds, split_id s) {
    return dataset_has_split(ds, s) ? ds->sp[s].hash : "";
}

static split_data *sample_split(dataset *ds, split_id s, int index) {
    if (!dataset_has_split(ds, s) || index < 0 || index >= ds->sp[s].n) return NULL;
    return &ds->sp[s];
}

/* Reads element `index` of a 1-D variable-length dataset into *v (reclaimed by the caller). */
static int read_vlen_elem_x(hid_t d, hid_t mtype, hid_t xfer, int index, void *v) {
    hsize_t i = (hsize_t)index, one = 1;
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(1, &one, NULL);
    int rc = fs >= 0 && ms >= 0 &&
                     H5Sselect_hyperslab(fs, H5S_SELECT_SET, &i, NULL, &one, NULL) >= 0 &&
                     H5Dread(d, mtype, ms, fs, xfer, v) >= 0
                 ? 0
                 : -1;
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return rc;
}

static int read_vlen_elem(hid_t d, hid_t mtype, int index, void *v) {
    return read_vlen_elem_x(d, mtype, H5P_DEFAULT, index, v);
}

/* Everything but the image bytes, from the tables read at open. */
static void fill_sample(dataset *ds, const split_data *p, int index, dataset_sample *out) {
    out->index = index;
    out->height = p->hgt[index], out->width = p->wid[index];
    out->stored_h = out->height, out->stored_w = out->width;
    if (ds->stored_imgsz)
        augment_load_size(out->height, out->width, ds->stored_imgsz, &out->stored_h,
                          &out->stored_w);
    out->encoding = (image_encoding)p->enc[index];
    out->nboxes = (int)(p->off[index + 1] - p->off[index]);
    out->labels = xmalloc(out->nboxes ? (size_t)out->nboxes * 5 * sizeof(float) : 1);
    memcpy(out->labels, p->labels + p->off[index] * 5, (size_t)out->nboxes * 5 * sizeof(float));
}

static int no_sample(dataset *ds, split_id s, int index, char *err, size_t errlen) {
    return errf(err, errlen, "%s: no sample %d in split %s (size %d)", ds->path, index,
                split_name(s), dataset_split_size(ds, s));
}

int dataset_read(dataset *ds, split_id s, int index, dataset_sample *out, char *err,
                 size_t errlen) {
    memset(out, 0, sizeof *out);
    split_data *p = sample_split(ds, s, index);
    if (!p) return no_sample(ds, s, index, err, errlen);
    hvl_t v = {0, NULL};
    /* the image bytes land in a malloc block that the sample takes over (no copy) */
    if (read_vlen_elem_x(p->images, ds->vlen_u8, ds->xfer_own, index, &v) != 0) {
        free(v.p);
        return errf(err, errlen, "%s: %s image %d: HDF5 read failed (corrupt file?)", ds->path,
                    split_name(s), index);
    }
    out->bytes = v.p ? v.p : xmalloc(1);
    out->nbytes = v.len;
    fill_sample(ds, p, index, out);
    return 0;
}

int dataset_read_unlocked(dataset *ds, split_id s, int index, dataset_sample *out, char *err,
                          size_t errlen) {
    memset(out, 0, sizeof *out);
    split_data *p = sample_split(ds, s, index);
    if (!p) return no_sample(ds, s, index, err, errlen);
    if (!p->direct || heap_direct_read(p->direct, index, &out->bytes, &out->nbytes) != 0) return 1;
    fill_sample(ds, p, index, out);
    return 0;
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* The distinct indices' image bytes in one H5Dread of a point selection, in ascending order (so
 * the chunks of heap references are visited once each). */
static int read_vlen_points(const split_data *p, hid_t mtype, hid_t xfer, const int *u, int nu,
                            hvl_t *v) {
    hsize_t *pts = xmalloc(sizeof *pts * (size_t)nu), n = (hsize_t)nu;
    for (int k = 0; k < nu; k++) pts[k] = (hsize_t)u[k];
    hid_t fs = H5Dget_space(p->images), ms = H5Screate_simple(1, &n, NULL);
    int rc = fs >= 0 && ms >= 0 && H5Sselect_elements(fs, H5S_SELECT_SET, n, pts) >= 0 &&
                     H5Dread(p->images, mtype, ms, fs, xfer, v) >= 0
                 ? 0
                 : -1;
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    free(pts);
    return rc;
}

/* After a failed read of several images: the first that does not read alone, with
 * dataset_read's message, or a line saying that the read of them all failed. */
static void name_bad_sample(dataset *ds, split_id s, const int *u, int nu, char *err,
                            size_t errlen) {
    for (int k = 0; k < nu; k++) {
        dataset_sample one;
        if (dataset_read(ds, s, u[k], &one, err, errlen) != 0) return;
        dataset_sample_free(&one);
    }
    errf(err, errlen, "%s: %s: HDF5 read of %d images failed (corrupt file?)", ds->path,
         split_name(s), nu);
}

int dataset_read_many(dataset *ds, split_id s, const int *indices, int n, dataset_sample *out,
                      char *err, size_t errlen) {
    memset(out, 0, sizeof *out * (size_t)(n > 0 ? n : 0));
    if (n < 1) return errf(err, errlen, "%s: read of %d samples", ds->path, n);
    for (int i = 0; i < n; i++)
        if (!sample_split(ds, s, indices[i])) return no_sample(ds, s, indices[i], err, errlen);
    split_data *p = &ds->sp[s];
    int *u = xmalloc(sizeof *u * (size_t)n), nu = 0;
    memcpy(u, indices, sizeof *u * (size_t)n);
    qsort(u, (size_t)n, sizeof *u, cmp_int);
    for (int i = 0; i < n; i++)
        if (nu == 0 || u[i] != u[nu - 1]) u[nu++] = u[i];
    hvl_t *v = xcalloc((size_t)nu, sizeof *v);
    int rc = read_vlen_points(p, ds->vlen_u8, ds->xfer_own, u, nu, v);
    if (rc != 0) {
        for (int k = 0; k < nu; k++) free(v[k].p);
        name_bad_sample(ds, s, u, nu, err, errlen);
    } else {
        int *owner = xmalloc(sizeof *owner * (size_t)nu); /* the sample that took v[k]'s block */
        for (int k = 0; k < nu; k++) owner[k] = -1;
        for (int i = 0; i < n; i++) {
            int k = (int)((int *)bsearch(&indices[i], u, (size_t)nu, sizeof *u, cmp_int) - u);
            if (owner[k] < 0) {
                out[i].bytes = v[k].p ? v[k].p : xmalloc(1);
                owner[k] = i;
            } else { /* a repeated index gets its own copy */
                out[i].bytes = xmalloc(v[k].len ? v[k].len : 1);
                memcpy(out[i].bytes, out[owner[k]].bytes, v[k].len);
            }
            out[i].nbytes = v[k].len;
            fill_sample(ds, p, indices[i], &out[i]);
        }
        free(owner);
    }
    free(v), free(u);
    return rc;
}

void dataset_sample_free(dataset_sample *smp) {
    if (!smp) return;
    free(smp->bytes), free(smp->labels);
    smp->bytes = NULL, smp->labels = NULL, smp->nbytes = 0, smp->nboxes = 0;
}

int dataset_labels(dataset *ds, split_id s, int index, const float **labels, int *nboxes) {
    split_data *p = sample_split(ds, s, index);
    if (!p) return -1;
    *labels = p->labels + p->off[index] * 5;
    *nboxes = (int)(p->off[index + 1] - p->off[index]);
    return 0;
}

int dataset_image_size(dataset *ds, split_id s, int index, int *height, int *width) {
    split_data *p = sample_split(ds, s, index);
    if (!p) return -1;
    *height = p->hgt[index], *width = p->wid[index];
    return 0;
}

int dataset_filename(dataset *ds, split_id s, int index, char *buf, size_t n) {
    split_data *p = sample_split(ds, s, index);
    if (!p || n == 0) return -1;
    char *v = NULL;
    if (read_vlen_elem(p->filenames, ds->str, index, &v) != 0) return -1;
    snprintf(buf, n, "%s", v ? v : "");
    if (v) H5free_memory(v);
    return 0;
}
