/* Checkpoint metadata: one table maps every ckpt_meta field to an HDF5 attribute, so writing,
 * reading and the content digest cannot disagree about what a version holds. */
#include "coordinator/ckpt_internal.h"

#include "common/log.h"
#include "common/sha256.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- attribute helpers -------------------------------------------------------------------- */

int h5_attr_put(hid_t obj, const char *name, hid_t type, const void *val, hsize_t n) {
    hid_t s = n ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_SCALAR);
    if (s < 0) return -1;
    hid_t a = H5Acreate2(obj, name, type, s, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a >= 0 && H5Awrite(a, type, val) >= 0 ? 0 : -1;
    if (a >= 0 && H5Aclose(a) < 0) rc = -1;
    H5Sclose(s);
    return rc;
}

static hid_t vlen_utf8(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return -1;
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

int h5_attr_put_str(hid_t obj, const char *name, const char *s) {
    hid_t t = vlen_utf8();
    if (t < 0) return -1;
    const char *v = s ? s : "";
    int rc = h5_attr_put(obj, name, t, &v, 0);
    H5Tclose(t);
    return rc;
}

int h5_attr_get(hid_t obj, const char *name, hid_t memtype, void *val, hsize_t n) {
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t s = H5Aget_space(a);
    hssize_t k = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
    int nd = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
    int rc = -1;
    if (k == (hssize_t)(n ? n : 1) && nd == (n ? 1 : 0) && H5Aread(a, memtype, val) >= 0) rc = 0;
    if (s >= 0) H5Sclose(s);
    H5Aclose(a);
    return rc;
}

int h5_attr_get_str(hid_t obj, const char *name, char **out) {
    *out = NULL;
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t ft = H5Aget_type(a), s = H5Aget_space(a);
    int rc = -1;
    if (ft >= 0 && s >= 0 && H5Tget_class(ft) == H5T_STRING &&
        H5Sget_simple_extent_npoints(s) == 1) {
        if (H5Tis_variable_str(ft) > 0) {
            hid_t mt = vlen_utf8();
            char *v = NULL;
            if (mt >= 0 && H5Aread(a, mt, &v) >= 0) {
                *out = xstrdup(v ? v : "");
                H5free_memory(v);
                rc = 0;
            }
            if (mt >= 0) H5Tclose(mt);
        } else {
            size_t len = H5Tget_size(ft);
            hid_t mt = H5Tcopy(H5T_C_S1);
            char *v = xcalloc(len + 1, 1);
            if (mt >= 0 && H5Tset_size(mt, len + 1) >= 0 && H5Aread(a, mt, v) >= 0) {
                *out = v;
                rc = 0;
            } else {
                free(v);
            }
            if (mt >= 0) H5Tclose(mt);
        }
    }
    if (ft >= 0) H5Tclose(ft);
    if (s >= 0) H5Sclose(s);
    H5Aclose(a);
    return rc;
}

hid_t ckpt_h5_type(ckpt_dtype d) {
    return d == CKPT_I64 ? H5T_STD_I64LE : H5T_IEEE_F32LE;
}

/* ---- the table ---------------------------------------------------------------------------- */

typedef enum { F_INT, F_I64, F_DBL, F_DBL3, F_STR, F_HEAP, F_BOOL, F_CONST } ftype;

typedef struct field {
    const char *group; /* "" = root */
    const char *name;
    ftype type;
    size_t off, size;  /* size: F_STR capacity */
    const char *value; /* F_CONST: a fixed description, written for readers */
    bool optional;     /* a string added after format 1 first shipped: written, read and hashed
                          only when not empty, so earlier versions keep reading and verifying */
} field;

#define O(m) offsetof(ckpt_meta, m)
#define FI(g, n, m)                                                                                \
    { g, n, F_INT, O(m), 0, NULL, false }
#define FL(g, n, m)                                                                                \
    { g, n, F_I64, O(m), 0, NULL, false }
#define FD(g, n, m)                                                                                \
    { g, n, F_DBL, O(m), 0, NULL, false }
#define FS(g, n, m)                                                                                \
    { g, n, F_STR, O(m), sizeof(((ckpt_meta *)0)->m), NULL, false }
#define FH(g, n, m)                                                                                \
    { g, n, F_HEAP, O(m), 0, NULL, false }
#define FC(g, n, v)                                                                                \
    { g, n, F_CONST, 0, 0, v, false }
#define FSO(g, n, m)                                                                               \
    { g, n, F_STR, O(m), sizeof(((ckpt_meta *)0)->m), NULL, true }
#define FHO(g, n, m)                                                                               \
    { g, n, F_HEAP, O(m), 0, NULL, true }

static const field fields[] = {
    FC("", "format", CKPT_FORMAT),
    FI("", "format_version", format_version),
    FI("", "version", version),
    FS("", "reason", reason),
    FS("", "created", created),
    FC("", "layout",
       "tensors in PyTorch layout (OIHW convs) under Ultralytics state_dict names; "
       "float32/int64 little-endian; each has a sha256 attribute over its bytes"),
    FI("train", "epoch", epoch),
    FI("train", "epochs", epochs),
    FI("train", "step", step),
    FI("train", "steps", steps),
    FI("train", "epoch_complete", epoch_complete),
    FI("train", "finished", finished),
    FL("train", "images_seen", images_seen),
    FL("train", "iterations", iterations),
    FL("train", "last_opt_step", last_opt_step),
    FL("train", "warmup_iters", warmup_iters),
    FI("train", "accumulate", accumulate),
    FI("train", "e2e_updates", e2e_updates),
    FI("train", "grad_accum_ranks", grad_accum_ranks),
    FD("train", "elapsed_s", elapsed_s),
    {"train", "epoch_loss_sum", F_DBL3, O(epoch_loss_sum), 0, NULL, false},
    FD("train", "best_fitness", best_fitness),
    FI("train", "best_epoch", best_epoch),
    FD("train", "best_map50", best_map50),
    FD("train", "best_map50_95", best_map50_95),
    FD("train", "early_stop_best", early_stop_best),
    FI("train", "early_stop_epoch", early_stop_epoch),
    FI("train", "mosaic_closed", mosaic_closed),
    FL("train", "bn_batches_model", bn_batches_model),
    FL("rng", "seed", seed),
    FC("rng", "scheme",
       "counter-based (common/rng.h): every draw is keyed by (seed, epoch, sample index), so the "
       "seed and the data position are the whole random state"),
    FI("data", "n_train", n_train),
    FI("data", "batch", batch),
    FD("data", "fraction", fraction),
    FC("data", "shard_plan",
       "epoch permutation keyed by (seed, epoch), cut into global batches of `batch`; the next "
       "global batch is train/step of train/epoch"),
    FL("ema", "updates", ema_updates),
    FL("ema", "bn_batches", bn_batches_ema),
    FS("optimizer", "type", optimizer),
    FL("optimizer", "steps", optimizer_steps),
    FI("optimizer", "ngroups", ngroups),
    {"metrics", "has_row", F_BOOL, O(has_row), 0, NULL, false},
    FD("metrics", "fitness", fitness),
    FH("metrics", "results_csv", results_csv),
    FS("lineage", "parent_version", parent_version),
    FH("lineage", "parent_run", parent_run),
    FS("lineage", "dataset_sha256", dataset_sha256),
    FH("lineage", "dataset", dataset),
    FH("lineage", "model", model),
    FH("lineage", "model_yaml", model_yaml),
    FH("lineage", "args_yaml", args_yaml),
    FS("lineage", "code_version", code_version),
    FI("lineage", "world_size", world_size),
    FI("lineage", "micro_batch", micro_batch),
    FS("lineage", "host", host),
    FHO("lineage", "class_names", class_names),
    FHO("lineage", "pretrained", pretrained),
    FSO("lineage", "pretrained_sha256", pretrained_sha256),
    FSO("lineage", "precision", precision),
};
#define NFIELDS (sizeof fields / sizeof *fields)

/* The results.csv row as /metrics attributes named like its columns. */
typedef struct row_col {
    const char *name;
    size_t off;
} row_col;
#define R(m) offsetof(epoch_row, m)
/* "%s": the third loss's name (dfl_loss, or l1_loss for YOLO26 under 8.4.190) */
static const row_col row_cols[] = {
    {"time", R(time)},
    {"train/box_loss", R(train[0])},
    {"train/cls_loss", R(train[1])},
    {"train/%s", R(train[2])},
    {"metrics/precision(B)", R(precision)},
    {"metrics/recall(B)", R(recall)},
    {"metrics/mAP50(B)", R(map50)},
    {"metrics/mAP50-95(B)", R(map50_95)},
    {"val/box_loss", R(val[0])},
    {"val/cls_loss", R(val[1])},
    {"val/%s", R(val[2])},
};

/* A column's attribute name for a row. */
static const char *col_name(const row_col *c, const epoch_row *r, char *buf, size_t n) {
    if (!strstr(c->name, "%s")) return c->name;
    snprintf(buf, n, !strncmp(c->name, "train/", 6) ? "train/%s" : "val/%s",
             r->third_loss ? r->third_loss : "dfl_loss");
    return buf;
}
#define NROWCOLS (sizeof row_cols / sizeof *row_cols)

static const char *const group_names[] = {"train",     "rng",     "data",   "ema",
                                          "optimizer", "metrics", "lineage"};

/* An optional field left empty: not in the file, not in the digest. */
static bool absent(const field *f, const ckpt_meta *m) {
    if (!f->optional) return false;
    const char *p = (const char *)m + f->off;
    const char *s = f->type == F_HEAP ? *(char *const *)p : p;
    return !s || !*s;
}

/* ---- writing ------------------------------------------------------------------------------ */

static int put_field(hid_t g, const field *f, const ckpt_meta *m) {
    const char *p = (const char *)m + f->off;
    switch (f->type) {
    case F_INT:
        return h5_attr_put(g, f->name, H5T_NATIVE_INT, p, 0);
    case F_I64:
        return h5_attr_put(g, f->name, H5T_NATIVE_INT64, p, 0);
    case F_DBL:
        return h5_attr_put(g, f->name, H5T_NATIVE_DOUBLE, p, 0);
    case F_DBL3:
        return h5_attr_put(g, f->name, H5T_NATIVE_DOUBLE, p, 3);
    case F_BOOL: {
        int v = *(const bool *)p;
        return h5_attr_put(g, f->name, H5T_NATIVE_INT, &v, 0);
    }
    case F_STR:
        return h5_attr_put_str(g, f->name, p);
    case F_HEAP:
        return h5_attr_put_str(g, f->name, *(char *const *)p);
    case F_CONST:
        return h5_attr_put_str(g, f->name, f->value);
    }
    return -1;
}

static hid_t open_or_create_group(hid_t file, const char *path) {
    if (H5Lexists(file, path, H5P_DEFAULT) > 0) return H5Gopen2(file, path, H5P_DEFAULT);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (lcpl < 0) return -1;
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t g = H5Gcreate2(file, path, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    return g;
}

static int write_groups(hid_t file, const ckpt_meta *m) {
    for (int i = 0; i < m->ngroups && i < CKPT_MAX_GROUPS; i++) {
        char path[64];
        snprintf(path, sizeof path, "optimizer/param_groups/%d", i);
        hid_t g = open_or_create_group(file, path);
        if (g < 0) return -1;
        const ckpt_param_group *pg = &m->group[i];
        int rc = h5_attr_put_str(g, "tag", pg->tag) ||
                 h5_attr_put(g, "lr", H5T_NATIVE_DOUBLE, &pg->lr, 0) ||
                 h5_attr_put(g, "initial_lr", H5T_NATIVE_DOUBLE, &pg->initial_lr, 0) ||
                 h5_attr_put(g, "momentum", H5T_NATIVE_DOUBLE, &pg->momentum, 0) ||
                 h5_attr_put(g, "weight_decay", H5T_NATIVE_DOUBLE, &pg->weight_decay, 0) ||
                 h5_attr_put(g, "use_muon", H5T_NATIVE_INT, &pg->use_muon, 0);
        H5Gclose(g);
        if (rc) return -1;
    }
    return 0;
}

static int write_row(hid_t file, const ckpt_meta *m) {
    if (!m->has_row) return 0;
    hid_t g = H5Gopen2(file, "metrics", H5P_DEFAULT);
    if (g < 0) return -1;
    int rc = h5_attr_put(g, "epoch", H5T_NATIVE_INT, &m->row.epoch, 0);
    char nb[40];
    for (size_t i = 0; i < NROWCOLS && !rc; i++)
        rc = h5_attr_put(g, col_name(&row_cols[i], &m->row, nb, sizeof nb), H5T_NATIVE_DOUBLE,
                         (const char *)&m->row + row_cols[i].off, 0);
    for (int i = 0; i < m->row.n_lr && i < 8 && !rc; i++) {
        char name[32];
        snprintf(name, sizeof name, "lr/pg%d", i);
        rc = h5_attr_put(g, name, H5T_NATIVE_DOUBLE, &m->row.lr[i], 0);
    }
    H5Gclose(g);
    return rc;
}

int ckpt_meta_write(hid_t file, const ckpt_meta *m, char *err, size_t errlen) {
    for (size_t i = 0; i < sizeof group_names / sizeof *group_names; i++) {
        hid_t g = open_or_create_group(file, group_names[i]);
        if (g < 0) return errf(err, errlen, "cannot create group /%s", group_names[i]);
        H5Gclose(g);
    }
    for (size_t i = 0; i < NFIELDS; i++) {
        const field *f = &fields[i];
        if (absent(f, m)) continue;
        hid_t g = f->group[0] ? H5Gopen2(file, f->group, H5P_DEFAULT) : file;
        int rc = g >= 0 ? put_field(g, f, m) : -1;
        if (f->group[0] && g >= 0) H5Gclose(g);
        if (rc) return errf(err, errlen, "cannot write attribute /%s@%s", f->group, f->name);
    }
    if (write_groups(file, m) || write_row(file, m))
        return errf(err, errlen, "cannot write the optimizer groups or the metrics row");
    return 0;
}

/* ---- reading ------------------------------------------------------------------------------ */

static int get_field(hid_t g, const field *f, ckpt_meta *m) {
    char *p = (char *)m + f->off;
    switch (f->type) {
    case F_INT:
        return h5_attr_get(g, f->name, H5T_NATIVE_INT, p, 0);
    case F_I64:
        return h5_attr_get(g, f->name, H5T_NATIVE_INT64, p, 0);
    case F_DBL:
        return h5_attr_get(g, f->name, H5T_NATIVE_DOUBLE, p, 0);
    case F_DBL3:
        return h5_attr_get(g, f->name, H5T_NATIVE_DOUBLE, p, 3);
    case F_BOOL: {
        int v = 0;
        if (h5_attr_get(g, f->name, H5T_NATIVE_INT, &v, 0)) return -1;
        *(bool *)p = v != 0;
        return 0;
    }
    case F_STR: {
        char *s = NULL;
        if (h5_attr_get_str(g, f->name, &s)) return -1;
        snprintf(p, f->size, "%s", s);
        free(s);
        return 0;
    }
    case F_HEAP:
        return h5_attr_get_str(g, f->name, (char **)p);
    case F_CONST:
        return 0; /* descriptions for readers; not part of the state */
    }
    return -1;
}

static int read_groups(hid_t file, ckpt_meta *m) {
    if (m->ngroups < 0 || m->ngroups > CKPT_MAX_GROUPS) return -1;
    for (int i = 0; i < m->ngroups; i++) {
        char path[64];
        snprintf(path, sizeof path, "optimizer/param_groups/%d", i);
        hid_t g = H5Gopen2(file, path, H5P_DEFAULT);
        if (g < 0) return -1;
        ckpt_param_group *pg = &m->group[i];
        char *tag = NULL;
        int rc = h5_attr_get_str(g, "tag", &tag) ||
                 h5_attr_get(g, "lr", H5T_NATIVE_DOUBLE, &pg->lr, 0) ||
                 h5_attr_get(g, "initial_lr", H5T_NATIVE_DOUBLE, &pg->initial_lr, 0) ||
                 h5_attr_get(g, "momentum", H5T_NATIVE_DOUBLE, &pg->momentum, 0) ||
                 h5_attr_get(g, "weight_decay", H5T_NATIVE_DOUBLE, &pg->weight_decay, 0) ||
                 h5_attr_get(g, "use_muon", H5T_NATIVE_INT, &pg->use_muon, 0);
        if (tag) snprintf(pg->tag, sizeof pg->tag, "%s", tag);
        free(tag);
        H5Gclose(g);
        if (rc) return -1;
    }
    return 0;
}

static int read_row(hid_t file, ckpt_meta *m) {
    if (!m->has_row) return 0;
    hid_t g = H5Gopen2(file, "metrics", H5P_DEFAULT);
    if (g < 0) return -1;
    int rc = h5_attr_get(g, "epoch", H5T_NATIVE_INT, &m->row.epoch, 0);
    m->row.third_loss = H5Aexists(g, "train/l1_loss") > 0 ? "l1_loss" : NULL;
    char nb[40];
    for (size_t i = 0; i < NROWCOLS && !rc; i++)
        rc = h5_attr_get(g, col_name(&row_cols[i], &m->row, nb, sizeof nb), H5T_NATIVE_DOUBLE,
                         (char *)&m->row + row_cols[i].off, 0);
    m->row.n_lr = 0;
    for (int i = 0; i < 8 && !rc; i++) {
        char name[32];
        snprintf(name, sizeof name, "lr/pg%d", i);
        if (H5Aexists(g, name) <= 0) break;
        rc = h5_attr_get(g, name, H5T_NATIVE_DOUBLE, &m->row.lr[i], 0);
        m->row.n_lr = i + 1;
    }
    H5Gclose(g);
    return rc;
}

int ckpt_meta_read(hid_t file, ckpt_meta *m, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    for (size_t i = 0; i < NFIELDS; i++) {
        const field *f = &fields[i];
        hid_t g = f->group[0] ? H5Gopen2(file, f->group, H5P_DEFAULT) : file;
        if (f->optional && g >= 0 && H5Aexists(g, f->name) <= 0) {
            if (f->group[0]) H5Gclose(g);
            continue;
        }
        int rc = g >= 0 ? get_field(g, f, m) : -1;
        if (f->group[0] && g >= 0) H5Gclose(g);
        if (rc) {
            ckpt_meta_free(m);
            return errf(err, errlen, "attribute /%s@%s missing or malformed", f->group, f->name);
        }
    }
    if (read_groups(file, m) || read_row(file, m)) {
        ckpt_meta_free(m);
        return errf(err, errlen, "optimizer groups or metrics row missing or malformed");
    }
    return 0;
}

void ckpt_meta_free(ckpt_meta *m) {
    for (size_t i = 0; i < NFIELDS; i++)
        if (fields[i].type == F_HEAP) {
            char **p = (char **)((char *)m + fields[i].off);
            free(*p);
            *p = NULL;
        }
}

void ckpt_meta_set(char **field, const char *value) {
    free(*field);
    *field = xstrdup(value ? value : "");
}

/* ---- the content digest ------------------------------------------------------------------- */

static void put_text(sha256_ctx *c, const char *s) {
    sha256_update(c, s, strlen(s));
}

/* "group@name=<value>\n" with strings length-prefixed and doubles in hex (exact). */
static void digest_field(sha256_ctx *c, const field *f, const ckpt_meta *m) {
    const char *p = (const char *)m + f->off;
    char buf[160];
    snprintf(buf, sizeof buf, "%s@%s=", f->group, f->name);
    put_text(c, buf);
    const char *s = NULL;
    switch (f->type) {
    case F_INT:
        snprintf(buf, sizeof buf, "%d", *(const int *)p);
        break;
    case F_I64:
        snprintf(buf, sizeof buf, "%" PRId64, *(const int64_t *)p);
        break;
    case F_DBL:
        snprintf(buf, sizeof buf, "%a", *(const double *)p);
        break;
    case F_DBL3: {
        const double *d = (const double *)p;
        snprintf(buf, sizeof buf, "%a,%a,%a", d[0], d[1], d[2]);
        break;
    }
    case F_BOOL:
        snprintf(buf, sizeof buf, "%d", *(const bool *)p ? 1 : 0);
        break;
    case F_STR:
        s = p;
        break;
    case F_HEAP:
        s = *(char *const *)p ? *(char *const *)p : "";
        break;
    case F_CONST:
        s = f->value;
        break;
    }
    if (s) {
        snprintf(buf, sizeof buf, "%zu:", strlen(s));
        put_text(c, buf);
        put_text(c, s);
    } else {
        put_text(c, buf);
    }
    put_text(c, "\n");
}

static int ptr_cmp(const void *a, const void *b) {
    return ckpt_tensor_cmp(*(const ckpt_tensor *const *)a, *(const ckpt_tensor *const *)b);
}

void ckpt_content_digest(const ckpt_meta *m, const ckpt_tensor *t, int n, char hex[65]) {
    sha256_ctx *c = sha256_begin();
    char buf[512];
    for (size_t i = 0; i < NFIELDS; i++)
        if (!absent(&fields[i], m)) digest_field(c, &fields[i], m);
    for (int i = 0; i < m->ngroups && i < CKPT_MAX_GROUPS; i++) {
        const ckpt_param_group *g = &m->group[i];
        snprintf(buf, sizeof buf, "group %d %zu:%s lr=%a initial_lr=%a momentum=%a wd=%a muon=%d\n",
                 i, strlen(g->tag), g->tag, g->lr, g->initial_lr, g->momentum, g->weight_decay,
                 g->use_muon);
        put_text(c, buf);
    }
    if (m->has_row) {
        snprintf(buf, sizeof buf, "row epoch=%d", m->row.epoch);
        put_text(c, buf);
        char nb[40];
        for (size_t i = 0; i < NROWCOLS; i++) {
            snprintf(buf, sizeof buf, " %s=%a", col_name(&row_cols[i], &m->row, nb, sizeof nb),
                     *(const double *)((const char *)&m->row + row_cols[i].off));
            put_text(c, buf);
        }
        for (int i = 0; i < m->row.n_lr && i < 8; i++) {
            snprintf(buf, sizeof buf, " lr/pg%d=%a", i, m->row.lr[i]);
            put_text(c, buf);
        }
        put_text(c, "\n");
    }
    /* tensors in name order, whatever order the caller holds them in */
    const ckpt_tensor **order = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *order);
    for (int i = 0; i < n; i++) order[i] = &t[i];
    qsort(order, (size_t)n, sizeof *order, ptr_cmp);
    for (int i = 0; i < n; i++) {
        const ckpt_tensor *x = order[i];
        int k = snprintf(buf, sizeof buf, "tensor %s %s [", x->name,
                         x->dtype == CKPT_I64 ? "int64" : "float32");
        for (int d = 0; d < x->ndim; d++)
            k += snprintf(buf + k, sizeof buf - (size_t)k, "%s%" PRId64, d ? "," : "", x->shape[d]);
        snprintf(buf + k, sizeof buf - (size_t)k, "] %s\n", x->sha256);
        put_text(c, buf);
    }
    free(order);
    sha256_end(c, hex);
}

int ckpt_tensor_cmp(const void *a, const void *b) {
    return strcmp(((const ckpt_tensor *)a)->name, ((const ckpt_tensor *)b)->name);
}

int64_t ckpt_tensor_numel(const ckpt_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

size_t ckpt_dtype_size(ckpt_dtype d) {
    return d == CKPT_I64 ? 8 : 4;
}
