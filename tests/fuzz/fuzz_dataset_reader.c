/* The dataset reader on a corrupted valid file. A small synthetic dataset is made once; each input
 * is a list of edits written into a copy through HDF5 (structure-aware: the values our reader
 * trusts, not HDF5's own metadata, which is HDF5's to parse): attributes (num_classes,
 * format_version), entries of a split's tables (encoding, height, width, label_offsets, labels),
 * and an image's bytes. Then the reader does what `data verify` and the loader do: open, read every
 * sample (through HDF5, and with pread as the loader does: both must agree), decode it, read
 * labels, sizes and names. Either dataset_open refuses it in one line, or every read is safe:
 * one-line errors, no crash, no sanitizer report.
 *
 * Edit format, repeated: op (1 byte), index (2 bytes), value (8 bytes); for op 7 (image bytes) the
 * rest of the input is the new bytes. */
#include "dataio/dataset.h"
#include "dataio/decode.h"
#include "dataio/pack.h"
#include "tests/fuzz/fuzz_common.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint8_t *base;
static size_t base_n;

static void make_base(void) {
    int count[SPLIT_COUNT] = {4, 3, 0};
    pack_stats st;
    char err[512];
    const char *p = fuzz_path("base.h5");
    if (pack_synth(p, count, 32, 3, 7, &st, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz: %s\n", err);
        abort();
    }
    base = fuzz_read_file(p, &base_n);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* One element of a 1-d or 2-d table: the flat index wraps around the table's size. */
static void write_element(hid_t f, const char *name, hid_t mtype, unsigned idx, const void *v) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return;
    hid_t sp = H5Dget_space(d);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    int rank = H5Sget_simple_extent_ndims(sp);
    if (n > 0 && rank >= 1 && rank <= 2) {
        hsize_t dims[2] = {1, 1}, pos[2];
        H5Sget_simple_extent_dims(sp, dims, NULL);
        hsize_t flat = idx % (hsize_t)n;
        pos[0] = rank == 2 ? flat / dims[1] : flat;
        pos[1] = rank == 2 ? flat % dims[1] : 0;
        hsize_t one = 1;
        hid_t ms = H5Screate_simple(1, &one, NULL);
        H5Sselect_elements(sp, H5S_SELECT_SET, 1, pos);
        H5Dwrite(d, mtype, ms, sp, H5P_DEFAULT, v);
        H5Sclose(ms);
    }
    H5Sclose(sp);
    H5Dclose(d);
}

static void write_attr(hid_t obj, const char *name, int64_t v) {
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return;
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
}

static void write_image(hid_t f, const char *split, unsigned idx, const uint8_t *bytes, size_t n) {
    char name[64];
    snprintf(name, sizeof name, "/%s/images", split);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return;
    hid_t sp = H5Dget_space(d), vt = H5Tvlen_create(H5T_NATIVE_UINT8);
    hssize_t count = H5Sget_simple_extent_npoints(sp);
    if (count > 0) {
        hsize_t pos = idx % (hsize_t)count, one = 1;
        hid_t ms = H5Screate_simple(1, &one, NULL);
        H5Sselect_elements(sp, H5S_SELECT_SET, 1, &pos);
        hvl_t v = {.len = n, .p = (void *)bytes};
        H5Dwrite(d, vt, ms, sp, H5P_DEFAULT, &v);
        H5Sclose(ms);
    }
    H5Tclose(vt);
    H5Sclose(sp);
    H5Dclose(d);
}

static void apply_edits(const char *path, const uint8_t *d, size_t n) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) abort();
    static const char *tables[] = {"encoding", "height", "width", "label_offsets", "labels"};
    const hid_t *types[] = {&H5T_NATIVE_UINT8_g, &H5T_NATIVE_INT32_g, &H5T_NATIVE_INT32_g,
                            &H5T_NATIVE_INT64_g, &H5T_NATIVE_FLOAT_g};
    while (n >= 11) {
        uint8_t op = d[0];
        unsigned idx = (unsigned)d[1] | (unsigned)d[2] << 8;
        int64_t v;
        memcpy(&v, d + 3, 8);
        const char *split = op & 0x80 ? "val" : "train";
        switch ((op & 0x7f) % 8) {
        case 0:
            write_attr(f, "num_classes", v);
            break;
        case 1:
            write_attr(f, "format_version", v);
            break;
        case 7: /* the rest of the input becomes one image's bytes */
            write_image(f, split, idx, d + 11, n - 11);
            n = 0;
            continue;
        default: {
            int t = (op & 0x7f) % 8 - 2;
            char name[64];
            snprintf(name, sizeof name, "/%s/%s", split, tables[t]);
            uint8_t u8 = (uint8_t)v;
            int32_t i32 = (int32_t)v;
            float f32;
            memcpy(&f32, &v, sizeof f32);
            const void *val = t == 0   ? (const void *)&u8
                              : t <= 2 ? (const void *)&i32
                              : t == 3 ? (const void *)&v
                                       : (const void *)&f32;
            write_element(f, name, *types[t], idx, val);
        }
        }
        d += 11, n -= 11;
    }
    H5Fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) fuzz_init(), make_base(), ready = 1;
    const char *p = fuzz_edited_copy("work.h5", base, base_n, apply_edits, data, size);
    char err[512] = "";
    dataset *ds = dataset_open(p, err, sizeof err);
    if (!ds) {
        fuzz_check_one_line(err);
        return 0;
    }
    int nc = dataset_num_classes(ds);
    for (int s = 0; s < SPLIT_COUNT; s++)
        for (int i = 0; i < dataset_split_size(ds, (split_id)s); i++) {
            dataset_sample smp, direct;
            /* the read without HDF5 (pread) either declines or gives HDF5's bytes */
            int drc = dataset_read_unlocked(ds, (split_id)s, i, &direct, err, sizeof err);
            if (drc < 0) __builtin_trap(); /* i is in range */
            if (dataset_read(ds, (split_id)s, i, &smp, err, sizeof err) != 0) {
                fuzz_check_one_line(err);
                if (drc == 0) dataset_sample_free(&direct);
                continue;
            }
            if (drc == 0 &&
                (direct.nbytes != smp.nbytes || memcmp(direct.bytes, smp.bytes, smp.nbytes) != 0))
                __builtin_trap();
            if (drc == 0) dataset_sample_free(&direct);
            uint8_t *rgb = NULL;
            int h = smp.height, w = smp.width;
            if (image_decode(smp.bytes, smp.nbytes, smp.encoding, 0, 0, &rgb, &h, &w, err,
                             sizeof err) != 0)
                fuzz_check_one_line(err);
            free(rgb);
            for (int b = 0; b < smp.nboxes; b++)
                if (!(smp.labels[b * 5] >= 0 && smp.labels[b * 5] < nc)) __builtin_trap();
            dataset_sample_free(&smp);
            const float *lab;
            int nb, hh, ww;
            char name[256];
            dataset_labels(ds, (split_id)s, i, &lab, &nb);
            dataset_image_size(ds, (split_id)s, i, &hh, &ww);
            dataset_filename(ds, (split_id)s, i, name, sizeof name);
        }
    dataset_close(ds);
    return 0;
}
