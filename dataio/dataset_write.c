#include "dataio/dataset_write.h"

#include "common/atomic_file.h"
#include "common/log.h"

#include <hdf5.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Chunking. images: one chunk holds 64 heap references (16 bytes each, 1 KiB), so reading one
 * image by index touches a 1 KiB chunk plus that image's own bytes, and neighbours share the
 * chunk cache. No compression there: JPEG/PNG are compressed already, and HDF5 filters would only
 * see the heap references, not the variable-length bytes. The fixed-size per-image arrays and the
 * labels are read whole when a dataset is opened, so they get big chunks with shuffle+deflate. */
#define IMAGES_CHUNK 64
#define TABLE_CHUNK 65536

struct dataset_writer {
    char *path, *tmp, *source, *stored_as;
    int stored_imgsz;
    int nc;
    char **names;
    hid_t file, grp, images, vlen_u8;
    int cur; /* current split or -1 */
    int present[SPLIT_COUNT];
    char split_hex[SPLIT_COUNT][65];
    sha256_ctx *hash;
    /* per-split tables, written at the end of the split */
    int64_t n, cap, m, mcap;
    uint8_t *enc;
    int32_t *hgt, *wid;
    int64_t *off;
    float *labels;
    char **files;
};

static void le_bytes(uint8_t *b, uint64_t v, int n) {
    for (int i = 0; i < n; i++) b[i] = (uint8_t)(v >> (8 * i));
}

void dataset_hash_image(sha256_ctx *c, image_encoding enc, int height, int width,
                        const uint8_t *bytes, size_t nbytes, const float *labels, int nboxes) {
    uint8_t hdr[1 + 4 + 4 + 8];
    hdr[0] = (uint8_t)enc;
    le_bytes(hdr + 1, (uint32_t)height, 4);
    le_bytes(hdr + 5, (uint32_t)width, 4);
    le_bytes(hdr + 9, nbytes, 8);
    sha256_update(c, hdr, sizeof hdr);
    sha256_update(c, bytes, nbytes);
    uint8_t cnt[8];
    le_bytes(cnt, (uint64_t)nboxes, 8);
    sha256_update(c, cnt, 8);
    for (int i = 0; i < nboxes * 5; i++) {
        uint32_t u;
        memcpy(&u, &labels[i], 4);
        uint8_t b[4];
        le_bytes(b, u, 4);
        sha256_update(c, b, 4);
    }
}

void dataset_hash_file(char out_hex[65], int num_classes, const char *const *class_names,
                       const char split_hex[SPLIT_COUNT][65], const int present[SPLIT_COUNT]) {
    sha256_ctx *c = sha256_begin();
    uint8_t b[8];
    le_bytes(b, (uint64_t)num_classes, 8);
    sha256_update(c, b, 8);
    for (int i = 0; i < num_classes; i++)
        sha256_update(c, class_names[i], strlen(class_names[i]) + 1);
    for (int s = 0; s < SPLIT_COUNT; s++) {
        if (!present[s]) continue;
        const char *nm = split_name((split_id)s);
        sha256_update(c, nm, strlen(nm) + 1);
        sha256_update(c, split_hex[s], 64);
    }
    sha256_end(c, out_hex);
}

static int h5fail(dataset_writer *w, char *err, size_t errlen, const char *what) {
    return errf(err, errlen, "%s: HDF5 error while %s", w->path, what);
}

static hid_t str_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return t;
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

static int write_str_attr(hid_t obj, const char *name, const char *val) {
    hid_t t = str_type(), sp = H5Screate(H5S_SCALAR), a = -1;
    int rc = -1;
    if (t >= 0 && sp >= 0) a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0 && H5Awrite(a, t, &val) >= 0) rc = 0;
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    return rc;
}

static int write_num_attr(hid_t obj, const char *name, hid_t type, const void *val) {
    hid_t sp = H5Screate(H5S_SCALAR), a = -1;
    int rc = -1;
    if (sp >= 0) a = H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0 && H5Awrite(a, type, val) >= 0) rc = 0;
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    return rc;
}

/* A whole 1-D or 2-D table, chunked and (if the filter exists) deflated. */
static int write_table(hid_t loc, const char *name, hid_t mtype, hid_t ftype, int rank,
                       const hsize_t *dims, const void *data, bool compress) {
    hid_t sp = H5Screate_simple(rank, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE), d = -1;
    int rc = -1;
    hsize_t chunk[2] = {dims[0] < 1             ? 1
                        : dims[0] > TABLE_CHUNK ? TABLE_CHUNK
                                                : dims[0],
                        rank > 1 ? dims[1] : 1};
    if (sp < 0 || dcpl < 0 || H5Pset_chunk(dcpl, rank, chunk) < 0) goto out;
    if (compress && H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0 &&
        (H5Pset_shuffle(dcpl) < 0 || H5Pset_deflate(dcpl, 4) < 0))
        goto out;
    d = H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d < 0) goto out;
    if (dims[0] > 0 && H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) goto out;
    rc = 0;
out:
    if (d >= 0) H5Dclose(d);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (sp >= 0) H5Sclose(sp);
    return rc;
}

static void free_tables(dataset_writer *w) {
    for (int64_t i = 0; i < w->n; i++) free(w->files[i]);
    free(w->enc), free(w->hgt), free(w->wid), free(w->off), free(w->labels), free(w->files);
    w->enc = NULL, w->hgt = w->wid = NULL, w->off = NULL, w->labels = NULL, w->files = NULL;
    w->n = w->cap = w->m = w->mcap = 0;
}

static int end_split(dataset_writer *w, char *err, size_t errlen) {
    if (w->cur < 0) return 0;
    const char *sn = split_name((split_id)w->cur);
    int rc = -1;
    hid_t st = str_type();
    hsize_t n = (hsize_t)w->n, n1 = n + 1, lab[2] = {(hsize_t)w->m, 5};
    if (!w->off) w->off = xcalloc(1, sizeof *w->off); /* an empty split still has offsets[0] */
    const char **files = (const char **)w->files;
    if (st < 0 ||
        write_table(w->grp, "encoding", H5T_NATIVE_UINT8, H5T_STD_U8LE, 1, &n, w->enc, true) ||
        write_table(w->grp, "height", H5T_NATIVE_INT32, H5T_STD_I32LE, 1, &n, w->hgt, true) ||
        write_table(w->grp, "width", H5T_NATIVE_INT32, H5T_STD_I32LE, 1, &n, w->wid, true) ||
        write_table(w->grp, "label_offsets", H5T_NATIVE_INT64, H5T_STD_I64LE, 1, &n1, w->off,
                    true) ||
        write_table(w->grp, "labels", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 2, lab, w->labels, true) ||
        write_table(w->grp, "filenames", st, st, 1, &n, files, false)) {
        errf(err, errlen, "%s: HDF5 error while writing the %s tables", w->path, sn);
        goto out;
    }
    sha256_end(w->hash, w->split_hex[w->cur]);
    w->hash = NULL;
    int64_t ni = w->n, nb = w->m;
    if (write_num_attr(w->grp, "num_images", H5T_NATIVE_INT64, &ni) ||
        write_num_attr(w->grp, "num_boxes", H5T_NATIVE_INT64, &nb) ||
        write_str_attr(w->grp, "sha256", w->split_hex[w->cur])) {
        h5fail(w, err, errlen, "writing split attributes");
        goto out;
    }
    rc = 0;
out:
    if (st >= 0) H5Tclose(st);
    H5Dclose(w->images), H5Gclose(w->grp);
    w->images = w->grp = -1;
    free_tables(w);
    w->cur = -1;
    return rc;
}

dataset_writer *dataset_writer_create(const char *path, int num_classes,
                                      const char *const *class_names, const char *source, char *err,
                                      size_t errlen) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (num_classes < 1) return errf(err, errlen, "%s: need at least one class", path), NULL;
    dataset_writer *w = xcalloc(1, sizeof *w);
    w->path = xstrdup(path), w->tmp = atomic_tmp_path(path), w->source = xstrdup(source);
    w->nc = num_classes, w->cur = -1;
    w->file = w->grp = w->images = w->vlen_u8 = -1;
    w->names = xcalloc((size_t)num_classes, sizeof *w->names);
    for (int i = 0; i < num_classes; i++) w->names[i] = xstrdup(class_names[i]);
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->file < 0) {
        errf(err, errlen, "%s: cannot create %s", path, w->tmp);
        dataset_writer_abort(w);
        return NULL;
    }
    hsize_t nc = (hsize_t)num_classes;
    hid_t st = str_type();
    int bad = st < 0 || write_table(w->file, "class_names", st, st, 1, &nc, w->names, false);
    if (st >= 0) H5Tclose(st);
    w->vlen_u8 = H5Tvlen_create(H5T_NATIVE_UINT8);
    if (bad || w->vlen_u8 < 0) {
        h5fail(w, err, errlen, "writing class names");
        dataset_writer_abort(w);
        return NULL;
    }
    return w;
}

int dataset_writer_begin_split(dataset_writer *w, split_id s, char *err, size_t errlen) {
    if (end_split(w, err, errlen) != 0) return -1;
    if (s < 0 || s >= SPLIT_COUNT) return errf(err, errlen, "bad split id %d", (int)s);
    if (w->present[s])
        return errf(err, errlen, "%s: split %s written twice", w->path, split_name(s));
    w->grp = H5Gcreate2(w->file, split_name(s), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t zero = 0, unlim = H5S_UNLIMITED, chunk = IMAGES_CHUNK;
    hid_t sp = H5Screate_simple(1, &zero, &unlim), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (w->grp >= 0 && sp >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, 1, &chunk) >= 0)
        w->images = H5Dcreate2(w->grp, "images", w->vlen_u8, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (sp >= 0) H5Sclose(sp);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (w->images < 0) {
        if (w->grp >= 0) H5Gclose(w->grp);
        w->grp = -1;
        return h5fail(w, err, errlen, "creating a split");
    }
    w->cur = s, w->present[s] = 1;
    w->hash = sha256_begin();
    w->off = xmalloc(sizeof *w->off);
    w->off[0] = 0;
    return 0;
}

int dataset_writer_add(dataset_writer *w, const uint8_t *bytes, size_t nbytes, image_encoding enc,
                       int height, int width, const float *labels, int nboxes, const char *filename,
                       char *err, size_t errlen) {
    if (w->cur < 0) return errf(err, errlen, "%s: dataset_writer_add before begin_split", w->path);
    if (enc < IMG_JPEG || enc > IMG_RAW_RGB || height <= 0 || width <= 0 || nboxes < 0)
        return errf(err, errlen, "%s: bad image (encoding %d, %dx%d, %d boxes)", filename, (int)enc,
                    width, height, nboxes);
    for (int b = 0; b < nboxes; b++) {
        float c = labels[b * 5];
        if (!(c >= 0 && c < w->nc) || c != (float)(int)c)
            return errf(err, errlen, "%s: box %d: class %g outside 0..%d", filename, b, c,
                        w->nc - 1);
    }
    /* image bytes go to the file now */
    hsize_t idx = (hsize_t)w->n, one = 1, ext = idx + 1;
    hvl_t v = {nbytes, (void *)bytes};
    hid_t fs = -1, ms = -1;
    int ok = H5Dset_extent(w->images, &ext) >= 0 && (fs = H5Dget_space(w->images)) >= 0 &&
             H5Sselect_hyperslab(fs, H5S_SELECT_SET, &idx, NULL, &one, NULL) >= 0 &&
             (ms = H5Screate_simple(1, &one, NULL)) >= 0 &&
             H5Dwrite(w->images, w->vlen_u8, ms, fs, H5P_DEFAULT, &v) >= 0;
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    if (!ok) return errf(err, errlen, "%s: HDF5 error writing image %s", w->path, filename);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 256;
        w->enc = xrealloc(w->enc, (size_t)w->cap);
        w->hgt = xrealloc(w->hgt, (size_t)w->cap * sizeof *w->hgt);
        w->wid = xrealloc(w->wid, (size_t)w->cap * sizeof *w->wid);
        w->off = xrealloc(w->off, (size_t)(w->cap + 1) * sizeof *w->off);
        w->files = xrealloc(w->files, (size_t)w->cap * sizeof *w->files);
    }
    if (w->m + nboxes > w->mcap) {
        while (w->m + nboxes > w->mcap) w->mcap = w->mcap ? 2 * w->mcap : 1024;
        w->labels = xrealloc(w->labels, (size_t)w->mcap * 5 * sizeof *w->labels);
    }
    if (nboxes) memcpy(w->labels + w->m * 5, labels, (size_t)nboxes * 5 * sizeof *labels);
    w->m += nboxes;
    w->enc[w->n] = (uint8_t)enc, w->hgt[w->n] = height, w->wid[w->n] = width;
    w->files[w->n] = xstrdup(filename ? filename : "");
    w->off[++w->n] = w->m;
    dataset_hash_image(w->hash, enc, height, width, bytes, nbytes, labels, nboxes);
    return 0;
}

int dataset_writer_finish(dataset_writer *w, char hash_hex[65], char *err, size_t errlen) {
    char hex[65], created[32];
    int rc = -1;
    if (end_split(w, err, errlen) != 0) goto out;
    dataset_hash_file(hex, w->nc, (const char *const *)w->names, (const char(*)[65])w->split_hex,
                      w->present);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int32_t ver = w->stored_imgsz ? DATASET_FORMAT_VERSION : DATASET_FORMAT_VERSION_ORIGINAL,
            nc = w->nc;
    int32_t stored = w->stored_imgsz;
    if (stored && (write_num_attr(w->file, "stored_imgsz", H5T_NATIVE_INT32, &stored) ||
                   write_str_attr(w->file, "stored_as", w->stored_as))) {
        h5fail(w, err, errlen, "writing file attributes");
        goto out;
    }
    if (write_num_attr(w->file, "format_version", H5T_NATIVE_INT32, &ver) ||
        write_num_attr(w->file, "num_classes", H5T_NATIVE_INT32, &nc) ||
        write_str_attr(w->file, "sha256", hex) || write_str_attr(w->file, "source", w->source) ||
        write_str_attr(w->file, "created", created) ||
        write_str_attr(w->file, "packer_version", DATASET_PACKER_VERSION)) {
        h5fail(w, err, errlen, "writing file attributes");
        goto out;
    }
    herr_t cl = H5Fclose(w->file);
    w->file = -1;
    if (cl < 0) {
        h5fail(w, err, errlen, "closing the file");
        goto out;
    }
    if (atomic_commit(w->tmp, w->path, err, errlen) != 0) goto out;
    if (hash_hex) memcpy(hash_hex, hex, 65);
    free(w->tmp);
    w->tmp = NULL; /* committed: nothing to remove */
    rc = 0;
out:
    dataset_writer_abort(w);
    return rc;
}

void dataset_writer_set_stored(dataset_writer *w, int imgsz, const char *as) {
    w->stored_imgsz = imgsz;
    free(w->stored_as);
    w->stored_as = xstrdup(as);
}

void dataset_writer_abort(dataset_writer *w) {
    if (!w) return;
    if (w->images >= 0) H5Dclose(w->images);
    if (w->grp >= 0) H5Gclose(w->grp);
    if (w->vlen_u8 >= 0) H5Tclose(w->vlen_u8);
    if (w->file >= 0) H5Fclose(w->file);
    if (w->tmp) atomic_abort(w->tmp);
    if (w->hash) {
        char junk[65];
        sha256_end(w->hash, junk);
    }
    free_tables(w);
    for (int i = 0; i < w->nc; i++) free(w->names[i]);
    free(w->names), free(w->path), free(w->tmp), free(w->source), free(w->stored_as), free(w);
}
