/* The checkpoint reader on a corrupted valid version. A small version (a conv weight, a bias, an
 * int64 counter, an optimizer moment, full metadata) is written once with ckpt_write; each input is
 * a list of edits written into a copy through HDF5 (structure-aware: the values our reader trusts,
 * not HDF5's own metadata, which is HDF5's to parse): numeric attributes, string attributes,
 * attributes removed, tensor elements, and a tensor replaced by one of another type or rank. Then
 * the reader does what resume does: open, verify, read every tensor. Either ckpt_open refuses it in
 * one line, or verify reports one-line problems, and a version that verifies reads back whole.
 *
 * Edit format, repeated: op (1 byte), index (2 bytes), value (8 bytes); for op 2 (a string
 * attribute) the rest of the input is the new text. */
#include "coordinator/ckpt_file.h"
#include "tests/fuzz/fuzz_common.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint8_t *base;
static size_t base_n;
static char base_sha[4][65]; /* each tensor's sha256 in the base version */

static const char *const tensors[] = {"model/model.0.conv.weight", "ema/model.0.conv.bias",
                                      "model/model.0.bn.num_batches_tracked",
                                      "optimizer/state/model.0.conv.bias/exp_avg"};

/* (group, attribute) pairs the reader parses; the group "/" is the root. */
static const char *const attrs[][2] = {{"/", "format_version"},
                                       {"/", "version"},
                                       {"/", "content_sha256"},
                                       {"/", "format"},
                                       {"train", "epoch"},
                                       {"train", "steps"},
                                       {"train", "images_seen"},
                                       {"train", "elapsed_s"},
                                       {"train", "epoch_loss_sum"},
                                       {"train", "best_fitness"},
                                       {"data", "batch"},
                                       {"data", "fraction"},
                                       {"optimizer", "ngroups"},
                                       {"optimizer", "type"},
                                       {"metrics", "has_row"},
                                       {"metrics", "epoch"},
                                       {"lineage", "model_yaml"},
                                       {"lineage", "args_yaml"},
                                       {"lineage", "dataset_sha256"},
                                       {"train", "grad_accum_ranks"}};
#define NATTRS (sizeof attrs / sizeof *attrs)

static void make_base(void) {
    static float w[2 * 3 * 3 * 3], b[2] = {1.5f, -2};
    static int64_t nbt = 42;
    for (size_t i = 0; i < sizeof w / sizeof *w; i++) w[i] = (float)i * 0.5f - 3;
    ckpt_meta m;
    memset(&m, 0, sizeof m);
    m.version = 3;
    snprintf(m.reason, sizeof m.reason, "save");
    m.epoch = 2, m.epochs = 5, m.step = 1, m.steps = 4, m.batch = 8, m.n_train = 32;
    m.fraction = 1, m.best_fitness = -INFINITY, m.ngroups = 2;
    snprintf(m.optimizer, sizeof m.optimizer, "SGD");
    for (int g = 0; g < 2; g++) {
        snprintf(m.group[g].tag, sizeof m.group[g].tag, "%s", g ? "bias" : "weight");
        m.group[g].lr = 0.01;
    }
    m.has_row = true;
    m.row.epoch = 1;
    m.row.n_lr = 2;
    ckpt_meta_set(&m.results_csv, "epoch,time\n1,2\n");
    ckpt_meta_set(&m.model_yaml, "nc: 2\nbackbone: []\n");
    ckpt_meta_set(&m.args_yaml, "epochs: 5\nbatch: 8\n");
    ckpt_meta_set(&m.model, "yolov8n.yaml");
    snprintf(m.dataset_sha256, sizeof m.dataset_sha256, "%064d", 0);
    ckpt_tensor t[4] = {
        {.name = "", .ndim = 4, .shape = {2, 3, 3, 3}, .data = w},
        {.name = "", .ndim = 1, .shape = {2}, .data = b},
        {.name = "", .dtype = CKPT_I64, .ndim = 0, .data = &nbt},
        {.name = "", .ndim = 1, .shape = {2}, .data = b},
    };
    for (int i = 0; i < 4; i++) snprintf(t[i].name, sizeof t[i].name, "%s", tensors[i]);
    char err[512];
    const char *p = fuzz_path("base.h5");
    char path[512];
    snprintf(path, sizeof path, "%s", p);
    if (ckpt_write(path, &m, t, 4, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz: %s\n", err);
        abort();
    }
    ckpt_meta_free(&m);
    for (int i = 0; i < 4; i++) memcpy(base_sha[i], t[i].sha256, sizeof base_sha[i]);
    base = fuzz_read_file(path, &base_n);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* An attribute rewritten with a value of the attribute's own type (numbers: v as int64 or its bits
 * as a double; strings: text). */
static void write_attr(hid_t f, unsigned idx, int64_t v, const char *text) {
    const char *const *a = attrs[idx % NATTRS];
    /* through the object: HDF5 1.10 cannot write an attribute opened with H5Aopen_by_name */
    hid_t obj = H5Oopen(f, a[0], H5P_DEFAULT);
    if (obj < 0) return;
    hid_t at = H5Aopen(obj, a[1], H5P_DEFAULT);
    if (at < 0) {
        H5Oclose(obj);
        return;
    }
    hid_t ty = H5Aget_type(at), sp = H5Aget_space(at);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    H5T_class_t cls = H5Tget_class(ty);
    if (cls == H5T_STRING && text) {
        hid_t st = H5Tcopy(H5T_C_S1);
        H5Tset_size(st, H5T_VARIABLE);
        if (H5Tis_variable_str(ty) > 0) {
            H5Awrite(at, st, &text);
        } else { /* a fixed-size string: the text, cut or padded to its size */
            size_t size = H5Tget_size(ty);
            char *buf = calloc(1, size + 1);
            if (buf) memcpy(buf, text, strnlen(text, size)), H5Awrite(at, ty, buf);
            free(buf);
        }
        H5Tclose(st);
    } else if ((cls == H5T_INTEGER || cls == H5T_FLOAT) && n > 0 && n <= 16) {
        /* in the attribute's own (native) type: v's low bytes for an integer (little-endian),
         * v's bits as a double, or as a float, for a floating-point one */
        hid_t nt = H5Tget_native_type(ty, H5T_DIR_ASCEND);
        size_t size = H5Tget_size(nt);
        double d;
        memcpy(&d, &v, sizeof d);
        float f32 = (float)d;
        uint8_t buf[16 * 8];
        for (hssize_t i = 0; i < n && size <= 8; i++)
            memcpy(buf + i * size,
                   cls == H5T_INTEGER ? (const void *)&v
                   : size == 8        ? (const void *)&d
                                      : (const void *)&f32,
                   size);
        if (size <= 8) H5Awrite(at, nt, buf);
        H5Tclose(nt);
    }
    H5Sclose(sp);
    H5Tclose(ty);
    H5Aclose(at);
    H5Oclose(obj);
}

static void delete_attr(hid_t f, unsigned idx) {
    const char *const *a = attrs[idx % NATTRS];
    H5Adelete_by_name(f, a[0], a[1], H5P_DEFAULT);
}

/* One element of a tensor (flat index wraps): v as int64 for int64 tensors, its low 32 bits as a
 * float otherwise. */
static void write_element(hid_t f, unsigned idx, int64_t v) {
    hid_t d = H5Dopen2(f, tensors[idx % 4], H5P_DEFAULT);
    if (d < 0) return;
    hid_t sp = H5Dget_space(d), ty = H5Dget_type(d);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    int rank = H5Sget_simple_extent_ndims(sp);
    if (n > 0 && rank >= 0 && rank <= 4) {
        hsize_t dims[4] = {1, 1, 1, 1}, pos[4] = {0}, flat = (idx >> 2) % (hsize_t)n, one = 1;
        H5Sget_simple_extent_dims(sp, dims, NULL);
        for (int k = rank - 1; k >= 0; k--) pos[k] = flat % dims[k], flat /= dims[k];
        hid_t ms = H5Screate_simple(1, &one, NULL);
        if (rank > 0) H5Sselect_elements(sp, H5S_SELECT_SET, 1, pos);
        float fv;
        memcpy(&fv, &v, sizeof fv);
        if (H5Tget_class(ty) == H5T_INTEGER)
            H5Dwrite(d, H5T_NATIVE_INT64, ms, sp, H5P_DEFAULT, &v);
        else
            H5Dwrite(d, H5T_NATIVE_FLOAT, ms, sp, H5P_DEFAULT, &fv);
        H5Sclose(ms);
    }
    H5Tclose(ty);
    H5Sclose(sp);
    H5Dclose(d);
}

/* A tensor replaced by a dataset of another type (v & 3) and rank ((v >> 2) % 6, each dimension
 * 1..4), with the original tensor's sha256 attribute when (v >> 5) & 1. */
static void replace_tensor(hid_t f, unsigned idx, int64_t v) {
    const char *name = tensors[idx % 4];
    static const hid_t *types[] = {&H5T_NATIVE_FLOAT_g, &H5T_NATIVE_INT64_g, &H5T_NATIVE_DOUBLE_g,
                                   &H5T_NATIVE_UINT8_g};
    const char *sha = base_sha[idx % 4];
    if (H5Ldelete(f, name, H5P_DEFAULT) < 0) return;
    int rank = (int)((uint64_t)v >> 2) % 6;
    hsize_t dims[5];
    for (int k = 0; k < rank; k++) dims[k] = 1 + (((uint64_t)v >> (8 + 2 * k)) & 3);
    hid_t sp = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t d = H5Dcreate2(f, name, *types[v & 3], sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (d >= 0) {
        if (((uint64_t)v >> 5) & 1) {
            hid_t st = H5Tcopy(H5T_C_S1), as = H5Screate(H5S_SCALAR);
            H5Tset_size(st, H5T_VARIABLE);
            hid_t a = H5Acreate2(d, "sha256", st, as, H5P_DEFAULT, H5P_DEFAULT);
            const char *p = sha;
            if (a >= 0) H5Awrite(a, st, &p), H5Aclose(a);
            H5Sclose(as);
            H5Tclose(st);
        }
        H5Dclose(d);
    }
    H5Pclose(lcpl);
    H5Sclose(sp);
}

static void apply_edits(const char *path, const uint8_t *d, size_t n) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) abort();
    while (n >= 11) {
        uint8_t op = d[0];
        unsigned idx = (unsigned)d[1] | (unsigned)d[2] << 8;
        int64_t v;
        memcpy(&v, d + 3, 8);
        switch (op % 5) {
        case 0:
            write_attr(f, idx, v, NULL);
            break;
        case 1:
            delete_attr(f, idx);
            break;
        case 2: { /* the rest of the input becomes one string attribute */
            char *text = fuzz_text(d + 11, n - 11);
            write_attr(f, idx, v, text);
            free(text);
            n = 0;
            continue;
        }
        case 3:
            write_element(f, idx, v);
            break;
        default:
            replace_tensor(f, idx, v);
        }
        d += 11, n -= 11;
    }
    H5Fclose(f);
}

static void check_report(void *ctx, const char *line) {
    (void)ctx;
    fuzz_check_one_line(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) fuzz_init(), make_base(), ready = 1;
    const char *p = fuzz_edited_copy("work.h5", base, base_n, apply_edits, data, size);
    char err[512] = "";
    ckpt_file *f = ckpt_open(p, err, sizeof err);
    if (!f) {
        fuzz_check_one_line(err);
        return 0;
    }
    const ckpt_meta *m = ckpt_file_meta(f);
    if (!m->model_yaml || !m->args_yaml || !m->results_csv) __builtin_trap();
    int problems = ckpt_verify(f, check_report, NULL, err, sizeof err);
    if (problems) fuzz_check_one_line(err);
    for (int i = 0; i < ckpt_num_tensors(f); i++) {
        const ckpt_tensor *t = ckpt_tensor_at(f, i);
        if (t->ndim < 0 || t->ndim > 4) __builtin_trap(); /* the reader's own limit */
        int64_t numel = ckpt_tensor_numel(t);
        if (numel < 0 || numel > (1 << 20)) continue; /* bigger than any edit makes */
        void *buf = malloc((size_t)(numel ? numel : 1) * ckpt_dtype_size(t->dtype));
        if (!buf) abort();
        int rc = ckpt_read_tensor(f, i, buf, err, sizeof err);
        if (rc) fuzz_check_one_line(err);
        if (rc && !problems) __builtin_trap(); /* verified, then unreadable */
        free(buf);
    }
    ckpt_close(f);
    return 0;
}
