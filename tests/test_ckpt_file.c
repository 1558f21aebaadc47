/* The checkpoint file format (coordinator/ckpt_file.h): round trip, and refusals of truncated,
 * foreign, newer-format and tampered files. */
#include "coordinator/ckpt_file.h"

#include <criterion/criterion.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static void mkdir_tmp(void) {
    snprintf(dir, sizeof dir, "/tmp/yolo-ckptfile-XXXXXX");
    cr_assert(mkdtemp(dir));
}

static void rm_tmp(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(ckptfile, .init = mkdir_tmp, .fini = rm_tmp);

static float w[2 * 3 * 3 * 3], b[2];
static int64_t nbt = 42;

/* A small version: a conv weight, a bias, a counter, an optimizer moment. */
static int fill(ckpt_meta *m, ckpt_tensor t[4]) {
    memset(m, 0, sizeof *m);
    m->version = 7;
    snprintf(m->reason, sizeof m->reason, "save");
    m->epoch = 3;
    m->epochs = 10;
    m->step = 2;
    m->steps = 5;
    m->images_seen = 123456789012LL;
    m->elapsed_s = 12.25;
    m->epoch_loss_sum[0] = 1.0 / 3;
    m->best_fitness = -INFINITY;
    m->seed = 5;
    m->ngroups = 3;
    snprintf(m->optimizer, sizeof m->optimizer, "AdamW");
    for (int g = 0; g < 3; g++) {
        snprintf(m->group[g].tag, sizeof m->group[g].tag, "%s", g == 0 ? "weight" : "bias");
        m->group[g].lr = 0.001 * (g + 1) / 3;
        m->group[g].momentum = 0.937;
    }
    m->has_row = true;
    m->row.epoch = 2;
    m->row.map50_95 = 0.123456789;
    m->row.n_lr = 3;
    m->row.lr[2] = 1e-3;
    m->fitness = 0.25;
    ckpt_meta_set(&m->results_csv, "epoch,time\n1,2\n2,4\n");
    ckpt_meta_set(&m->model_yaml, "nc: 80\nbackbone: []\n");
    ckpt_meta_set(&m->args_yaml, "epochs: 10\n");
    ckpt_meta_set(&m->model, "yolov8n.yaml");
    snprintf(m->dataset_sha256, sizeof m->dataset_sha256, "%064d", 0);
    for (size_t i = 0; i < sizeof w / sizeof *w; i++) w[i] = (float)i * 0.5f - 3;
    b[0] = 1.5f;
    b[1] = -2;
    t[0] = (ckpt_tensor){
        .name = "model/model.0.conv.weight", .ndim = 4, .shape = {2, 3, 3, 3}, .data = w};
    t[1] = (ckpt_tensor){.name = "ema/model.0.conv.bias", .ndim = 1, .shape = {2}, .data = b};
    t[2] = (ckpt_tensor){
        .name = "model/model.0.bn.num_batches_tracked", .dtype = CKPT_I64, .ndim = 0, .data = &nbt};
    t[3] = (ckpt_tensor){
        .name = "optimizer/state/model.0.conv.bias/exp_avg", .ndim = 1, .shape = {2}, .data = b};
    return 4;
}

static void write_one(const char *path) {
    ckpt_meta m;
    ckpt_tensor t[4];
    int n = fill(&m, t);
    char err[512];
    cr_assert_eq(ckpt_write(path, &m, t, n, err, sizeof err), 0, "%s", err);
    ckpt_meta_free(&m);
}

Test(ckptfile, round_trip_keeps_every_field_and_tensor) {
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/v0007.h5", dir);
    ckpt_meta m;
    ckpt_tensor t[4];
    int n = fill(&m, t);
    cr_assert_eq(ckpt_write(path, &m, t, n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(strlen(m.content_sha256), 64);
    cr_assert_eq(strlen(t[0].sha256), 64);
    ckpt_file *f = ckpt_open(path, err, sizeof err);
    cr_assert(f, "%s", err);
    const ckpt_meta *r = ckpt_file_meta(f);
    cr_assert_eq(r->format_version, CKPT_FORMAT_VERSION);
    cr_assert_eq(r->version, 7);
    cr_assert_str_eq(r->reason, "save");
    cr_assert_eq(r->images_seen, 123456789012LL);
    cr_assert_eq(r->epoch_loss_sum[0], 1.0 / 3, "doubles exact");
    cr_assert(isinf(r->best_fitness) && r->best_fitness < 0);
    cr_assert_eq(r->group[1].lr, 0.002 / 3);
    cr_assert_str_eq(r->group[2].tag, "bias");
    cr_assert(r->has_row && r->row.epoch == 2 && r->row.n_lr == 3);
    cr_assert_eq(r->row.map50_95, 0.123456789);
    cr_assert_str_eq(r->results_csv, "epoch,time\n1,2\n2,4\n");
    cr_assert_str_eq(r->model_yaml, m.model_yaml);
    cr_assert_str_eq(r->content_sha256, m.content_sha256);
    cr_assert_eq(ckpt_num_tensors(f), 4);
    for (int i = 1; i < 4; i++)
        cr_assert_lt(strcmp(ckpt_tensor_at(f, i - 1)->name, ckpt_tensor_at(f, i)->name), 0,
                     "sorted by name");
    int i = ckpt_find_tensor(f, "model/model.0.conv.weight");
    cr_assert_geq(i, 0);
    const ckpt_tensor *ti = ckpt_tensor_at(f, i);
    cr_assert(ti->ndim == 4 && ti->shape[0] == 2 && ti->shape[3] == 3 && ti->dtype == CKPT_F32);
    float got[54];
    cr_assert_eq(ckpt_read_tensor(f, i, got, err, sizeof err), 0, "%s", err);
    cr_assert_eq(memcmp(got, w, sizeof w), 0);
    int64_t c = 0;
    i = ckpt_find_tensor(f, "model/model.0.bn.num_batches_tracked");
    cr_assert(i >= 0 && ckpt_tensor_at(f, i)->dtype == CKPT_I64 && ckpt_tensor_at(f, i)->ndim == 0);
    cr_assert_eq(ckpt_read_tensor(f, i, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(c, 42);
    cr_assert_eq(ckpt_verify(f, NULL, NULL, err, sizeof err), 0, "%s", err);
    ckpt_close(f);
    ckpt_meta_free(&m);
    /* no temporary file is left beside it */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "test $(ls -A %s | wc -l) -eq 1", dir);
    cr_assert_eq(system(cmd), 0, "only v0007.h5 in the folder");
}

Test(ckptfile, truncated_file_is_refused) {
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/v0001.h5", dir);
    write_one(path);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(truncate(path, st.st_size / 2), 0);
    cr_assert_null(ckpt_open(path, err, sizeof err));
    cr_assert(strstr(err, "truncated"), "reason: %s", err);
    cr_assert_null(strchr(err, '\n'), "one line");
    cr_assert_eq(truncate(path, 4), 0);
    cr_assert_null(ckpt_open(path, err, sizeof err));
    cr_assert(strstr(err, "truncated"), "reason: %s", err);
}

Test(ckptfile, foreign_files_are_refused) {
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/text.h5", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs("this is not a checkpoint at all, just text\n", f);
    fclose(f);
    cr_assert_null(ckpt_open(path, err, sizeof err));
    cr_assert(strstr(err, "not an HDF5 file"), "%s", err);
    /* an HDF5 file of someone else's */
    snprintf(path, sizeof path, "%s/other.h5", dir);
    hid_t h = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(h >= 0);
    H5Fclose(h);
    cr_assert_null(ckpt_open(path, err, sizeof err));
    cr_assert(strstr(err, "not a yolo-cluster checkpoint"), "%s", err);
    cr_assert_null(ckpt_open("/nonexistent/v0001.h5", err, sizeof err));
    cr_assert(strstr(err, "/nonexistent/v0001.h5"), "names the file: %s", err);
}

/* Rewrites an int attribute in place (as a newer writer or a hand edit would). */
static void set_int_attr(const char *path, const char *obj, const char *name, int v) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert(f >= 0);
    hid_t g = H5Oopen(f, obj, H5P_DEFAULT);
    cr_assert(g >= 0, "%s", obj);
    hid_t a = H5Aopen(g, name, H5P_DEFAULT);
    cr_assert(a >= 0, "%s@%s", obj, name);
    cr_assert(H5Awrite(a, H5T_NATIVE_INT, &v) >= 0);
    H5Aclose(a);
    H5Oclose(g);
    H5Fclose(f);
}

Test(ckptfile, newer_format_is_refused) {
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/v0001.h5", dir);
    write_one(path);
    set_int_attr(path, "/", "format_version", CKPT_FORMAT_VERSION + 1);
    cr_assert_null(ckpt_open(path, err, sizeof err));
    cr_assert(strstr(err, "newer"), "%s", err);
}

Test(ckptfile, edited_metadata_fails_verification) {
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/v0001.h5", dir);
    write_one(path);
    set_int_attr(path, "train", "epoch", 9);
    ckpt_file *f = ckpt_open(path, err, sizeof err);
    cr_assert(f, "%s", err);
    cr_assert_eq(ckpt_verify(f, NULL, NULL, err, sizeof err), 1);
    cr_assert(strstr(err, "content_sha256"), "%s", err);
    ckpt_close(f);
}

static int nreports;
static char first_report[512];
static void collect(void *ctx, const char *line) {
    (void)ctx;
    if (!nreports++) snprintf(first_report, sizeof first_report, "%s", line);
}

Test(ckptfile, damaged_tensor_is_named) {
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/v0001.h5", dir);
    write_one(path);
    /* flip one byte inside the conv weight's data */
    hid_t h = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(h, "model/model.0.conv.weight", H5P_DEFAULT);
    haddr_t off = H5Dget_offset(d);
    H5Dclose(d);
    H5Fclose(h);
    cr_assert_neq(off, HADDR_UNDEF);
    FILE *f = fopen(path, "r+b");
    cr_assert(f);
    fseek(f, (long)off + 9, SEEK_SET);
    int c = fgetc(f);
    fseek(f, (long)off + 9, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
    ckpt_file *cf = ckpt_open(path, err, sizeof err);
    cr_assert(cf, "metadata intact: %s", err);
    nreports = 0;
    cr_assert_eq(ckpt_verify(cf, collect, NULL, err, sizeof err), 1);
    cr_assert_eq(nreports, 1);
    cr_assert(strstr(first_report, "model/model.0.conv.weight") && strstr(first_report, "sha256"),
              "%s", first_report);
    float buf[54];
    int i = ckpt_find_tensor(cf, "model/model.0.conv.weight");
    cr_assert_neq(ckpt_read_tensor(cf, i, buf, err, sizeof err), 0);
    cr_assert(strstr(err, "model/model.0.conv.weight"), "%s", err);
    ckpt_close(cf);
}

Test(ckptfile, failed_write_leaves_nothing) {
    char path[160], err[512];
    snprintf(path, sizeof path, "%s/missing-folder/v0001.h5", dir);
    ckpt_meta m;
    ckpt_tensor t[4];
    int n = fill(&m, t);
    cr_assert_neq(ckpt_write(path, &m, t, n, err, sizeof err), 0);
    cr_assert(strstr(err, "missing-folder"), "names the path: %s", err);
    ckpt_meta_free(&m);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "test $(ls -A %s | wc -l) -eq 0", dir);
    cr_assert_eq(system(cmd), 0, "nothing written");
}
