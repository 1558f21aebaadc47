/* `coordinator ckpt ...` and `runs ...` through the real binary, on run folders written by
 * tests/ckpt_fixture.h (suite ckptcli): output contents, --json that parses, exit codes, bad
 * usage; version references (ckpt_ref.h); and readers in a loop while a real training run
 * writes versions. */
#include "coordinator/ckpt_file.h"
#include "coordinator/ckpt_ref.h"
#include "coordinator/ckpt_store.h"
#include "coordinator/run_lock.h"
#include "tests/ckpt_fixture.h"
#include "tests/runs.h"
#include "tests/testenv.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char dir[64];
static char out[1 << 20], errtext[1 << 16];

static char exe[PATH_MAX]; /* bin/coordinator, absolute: tests may chdir */

static void make_dir(void) {
    fixture_suite_dirs(dir, sizeof dir, "ckptcli", exe, sizeof exe);
}

static void remove_dir(void) {
    test_remove_dir(dir);
}

TestSuite(ckptcli, .init = make_dir, .fini = remove_dir, .timeout = 300);

static void slurp(const char *path, char *buf, size_t n) {
    FILE *f = fopen(path, "r");
    size_t k = f ? fread(buf, 1, n - 1, f) : 0;
    if (f) fclose(f);
    buf[k] = 0;
}

/* Runs `coordinator <args>` in dir; stdout into out, stderr into errtext; the exit code. */
static int cli(const char *fmt, ...) {
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    int rc = run_sh("cd %s && %s %s > out.txt 2> err.txt", dir, exe, args);
    char p[128];
    snprintf(p, sizeof p, "%s/out.txt", dir);
    slurp(p, out, sizeof out);
    snprintf(p, sizeof p, "%s/err.txt", dir);
    slurp(p, errtext, sizeof errtext);
    return rc;
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* The line of out that starts with prefix ("" when none). */
static const char *line_of(const char *text, const char *prefix, char *buf, size_t n) {
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, prefix, strlen(prefix))) {
            const char *e = strchr(p, '\n');
            snprintf(buf, n, "%.*s", (int)(e ? e - p : (long)strlen(p)), p);
            return buf;
        }
    buf[0] = 0;
    return buf;
}

static void two_runs(void) {
    fixture_run(dir, "a", &(fixture_run_opts){.versions = 3, .lr0 = 0.01, .best = 2, .seed = 1});
    char parent[128];
    snprintf(parent, sizeof parent, "%s/a/weights/v0002.h5", dir);
    fixture_run(dir, "b",
                &(fixture_run_opts){.versions = 2,
                                    .lr0 = 0.02,
                                    .parent_path = parent,
                                    .dataset_sha =
                                        "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdc"
                                        "dcdcdcdcdcdcd",
                                    .seed = 2});
}

static char *content_hash(const char *run, int v) {
    static char hash[65];
    char path[256], err[512];
    snprintf(path, sizeof path, "%s/%s/weights/v%04d.h5", dir, run, v);
    ckpt_file *f = ckpt_open(path, err, sizeof err);
    cr_assert(f, "%s", err);
    snprintf(hash, sizeof hash, "%s", ckpt_file_meta(f)->content_sha256);
    ckpt_close(f);
    return hash;
}

Test(ckptcli, ls_lists_versions_metrics_hashes_and_tags) {
    two_runs();
    cr_assert_eq(cli("ckpt tag a v1 production"), 0, "%s", errtext);
    cr_assert_eq(cli("ckpt ls a"), 0, "%s", errtext);
    cr_assert_eq(count_lines(out), 4, "a header and 3 rows:\n%s", out);
    char l[512], want[32];
    line_of(out, "v0001", l, sizeof l);
    cr_assert(strstr(l, "production") && strstr(l, "0.1000"), "%s", l);
    snprintf(want, sizeof want, "%.12s", content_hash("a", 1));
    cr_assert(strstr(l, want), "short hash %s in: %s", want, l);
    line_of(out, "v0002", l, sizeof l);
    cr_assert(strstr(l, "best") && !strstr(l, "last") && strstr(l, "0.2000"), "%s", l);
    line_of(out, "v0003", l, sizeof l);
    cr_assert(strstr(l, "last") && !strstr(l, "best") && strstr(l, "3/3") == NULL, "%s", l);
    cr_assert(strstr(l, "    3       2/2"), "epoch and step columns: %s", l);

    cr_assert_eq(cli("ckpt ls a --json"), 0, "%s", errtext);
    cJSON *j = cJSON_Parse(out);
    cr_assert(cJSON_IsArray(j) && cJSON_GetArraySize(j) == 3, "%s", out);
    cJSON *v2 = cJSON_GetArrayItem(j, 1);
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(v2, "best")));
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItem(v2, "last")));
    cJSON *m = cJSON_GetObjectItem(v2, "metrics");
    cr_assert_float_eq(cJSON_GetObjectItem(m, "metrics/mAP50-95(B)")->valuedouble, fixture_map(2),
                       1e-12);
    cr_assert_float_eq(cJSON_GetObjectItem(m, "fitness")->valuedouble, fixture_fitness(2), 1e-12);
    cr_assert_str_eq(cJSON_GetObjectItem(v2, "content_sha256")->valuestring, content_hash("a", 2));
    cJSON *tags = cJSON_GetObjectItem(cJSON_GetArrayItem(j, 0), "tags");
    cr_assert_str_eq(cJSON_GetArrayItem(tags, 0)->valuestring, "production");
    cJSON_Delete(j);
}

Test(ckptcli, show_gives_metadata_lineage_across_runs_and_tensor_statistics) {
    two_runs();
    cr_assert_eq(cli("ckpt show b"), 0, "%s", errtext);
    cr_assert(strstr(out, "b:v0002"), "last by default:\n%s", out);
    cr_assert(strstr(out, "position    epoch 2 of 2, step 2 of 2, validated, run finished here"),
              "%s", out);
    cr_assert(strstr(out, "mAP50-95 0.20000"), "%s", out);
    cr_assert(strstr(out, "sha256 cdcdcdcd"), "dataset hash:\n%s", out);
    cr_assert(strstr(out, "precision   bf16 convolutions (fixture)"), "what ran:\n%s", out);
    /* the chain: b:v0001, then run a (b was resumed from a's v0002), down to a's first */
    const char *l1 = strstr(out, "b:v0001"), *l2 = strstr(out, "a:v0002"),
               *l3 = strstr(out, "a:v0001");
    cr_assert(l1 && l2 && l3 && l1 < l2 && l2 < l3, "lineage order:\n%s", out);
    cr_assert(strstr(l3, "first version"), "%s", out);

    cr_assert_eq(cli("ckpt show b v1 --json --tensors match=ema/model.0.conv.weight"), 0, "%s",
                 errtext);
    cJSON *j = cJSON_Parse(out);
    cr_assert(j, "%s", out);
    cr_assert_eq(cJSON_GetObjectItem(j, "version")->valueint, 1);
    cJSON *lin = cJSON_GetObjectItem(j, "lineage");
    cr_assert_str_eq(cJSON_GetObjectItem(lin, "precision")->valuestring,
                     "bf16 convolutions (fixture)");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "chain")), 2, "a:v0002, a:v0001");
    cJSON *ts = cJSON_GetObjectItem(j, "tensors");
    cr_assert_eq(cJSON_GetArraySize(ts), 1);
    cJSON *t = cJSON_GetArrayItem(ts, 0);
    /* the statistics, computed here from the file */
    char path[256], err[512];
    snprintf(path, sizeof path, "%s/b/weights/v0001.h5", dir);
    ckpt_file *f = ckpt_open(path, err, sizeof err);
    cr_assert(f, "%s", err);
    int i = ckpt_find_tensor(f, "ema/model.0.conv.weight");
    float v[16 * 27];
    cr_assert_eq(ckpt_read_tensor(f, i, v, err, sizeof err), 0, "%s", err);
    double s = 0, ss = 0, lo = v[0], hi = v[0];
    for (int k = 0; k < 16 * 27; k++) s += v[k], lo = fmin(lo, v[k]), hi = fmax(hi, v[k]);
    double mean = s / (16 * 27);
    for (int k = 0; k < 16 * 27; k++) ss += (v[k] - mean) * (v[k] - mean);
    cr_assert_float_eq(cJSON_GetObjectItem(t, "mean")->valuedouble, mean, 1e-9);
    cr_assert_float_eq(cJSON_GetObjectItem(t, "std")->valuedouble, sqrt(ss / (16 * 27 - 1)), 1e-9);
    cr_assert_float_eq(cJSON_GetObjectItem(t, "min")->valuedouble, lo, 0);
    cr_assert_float_eq(cJSON_GetObjectItem(t, "max")->valuedouble, hi, 0);
    cr_assert_str_eq(cJSON_GetObjectItem(t, "sha256")->valuestring, ckpt_tensor_at(f, i)->sha256);
    cJSON *shape = cJSON_GetObjectItem(t, "shape");
    cr_assert_eq(cJSON_GetArrayItem(shape, 0)->valueint, 16);
    cr_assert_eq(cJSON_GetArrayItem(shape, 1)->valueint, 3);
    ckpt_close(f);
    cJSON_Delete(j);
}

Test(ckptcli, diff_of_one_run_and_across_runs) {
    two_runs();
    cr_assert_eq(cli("ckpt diff a v1 v3 --json --all"), 0, "%s", errtext);
    cJSON *j = cJSON_Parse(out);
    cr_assert(j, "%s", out);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "args")), 0, "same run, same args");
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "dataset"), "same")));
    cJSON *mets = cJSON_GetObjectItem(j, "metrics"), *it;
    bool seen = false;
    cJSON_ArrayForEach(it, mets) if (!strcmp(cJSON_GetObjectItem(it, "name")->valuestring,
                                             "metrics/mAP50-95(B)")) {
        cr_assert_float_eq(cJSON_GetObjectItem(it, "delta")->valuedouble,
                           fixture_map(3) - fixture_map(1), 1e-12);
        seen = true;
    }
    cr_assert(seen);
    cJSON *ts = cJSON_GetObjectItem(j, "tensors");
    int n = cJSON_GetArraySize(ts);
    cr_assert_eq(n, cJSON_GetObjectItem(j, "tensors_compared")->valueint);
    cr_assert_gt(n, 300, "every ema tensor of yolov8n");
    for (int k = 1; k < n; k++)
        cr_assert_geq(cJSON_GetObjectItem(cJSON_GetArrayItem(ts, k - 1), "rel_l2")->valuedouble,
                      cJSON_GetObjectItem(cJSON_GetArrayItem(ts, k), "rel_l2")->valuedouble,
                      "largest first");
    cJSON_Delete(j);
    /* the relative change of one tensor, computed here */
    char pa[256], pb[256], err[512];
    snprintf(pa, sizeof pa, "%s/a/weights/v0001.h5", dir);
    snprintf(pb, sizeof pb, "%s/a/weights/v0003.h5", dir);
    ckpt_file *fa = ckpt_open(pa, err, sizeof err), *fb = ckpt_open(pb, err, sizeof err);
    cr_assert(fa && fb, "%s", err);
    float va[64], vb[64];
    cr_assert_eq(ckpt_read_tensor(fa, ckpt_find_tensor(fa, "ema/model.0.bn.bias"), va, err, 512),
                 0);
    cr_assert_eq(ckpt_read_tensor(fb, ckpt_find_tensor(fb, "ema/model.0.bn.bias"), vb, err, 512),
                 0);
    double d = 0, a2 = 0;
    for (int k = 0; k < 16; k++) d += (vb[k] - va[k]) * (vb[k] - va[k]), a2 += va[k] * va[k];
    ckpt_close(fa);
    ckpt_close(fb);
    cr_assert_eq(cli("ckpt diff a:v1 a:v3 group=ema --all"), 0, "%s", errtext);
    char l[512];
    line_of(strstr(out, "  ema/model.0.bn.bias ") ? strstr(out, "  ema/model.0.bn.bias ") : "",
            "  ema/model", l, sizeof l);
    cr_assert(l[0], "model.0.bn.bias listed:\n%.2000s", out);
    cr_assert_float_eq(atof(strrchr(l, ' ') + 1), sqrt(d / a2), 1e-5 * sqrt(d / a2), "%s", l);

    /* across runs: the arguments and the dataset that differ */
    cr_assert_eq(cli("ckpt diff a:v2 b@best"), 0, "%s", errtext);
    line_of(strstr(out, "  lr0") ? strstr(out, "  lr0") : "", "  lr0", l, sizeof l);
    cr_assert(strstr(l, "0.01 -> 0.02"), "lr0 row: '%s'\n%s", l, out);
    cr_assert(strstr(out, "dataset sha256  DIFFERS: abab"), "%s", out);
    cr_assert(strstr(out, "a: ") && strstr(out, "a:v0002") && strstr(out, "b:v0002"), "%s", out);
}

/* Overwrites the first float of dataset `name` in file without touching its sha256. */
static void damage(const char *file, const char *name) {
    hid_t f = H5Fopen(file, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT), sp = H5Dget_space(d);
    hsize_t one = 1, pos[4] = {0};
    hid_t ms = H5Screate_simple(1, &one, NULL);
    cr_assert_geq(H5Sselect_elements(sp, H5S_SELECT_SET, 1, pos), 0);
    float v = 12345.0f;
    cr_assert_geq(H5Dwrite(d, H5T_NATIVE_FLOAT, ms, sp, H5P_DEFAULT, &v), 0);
    H5Sclose(ms), H5Sclose(sp), H5Dclose(d), H5Fclose(f);
}

Test(ckptcli, verify_names_each_bad_tensor_and_file) {
    two_runs();
    cr_assert_eq(cli("ckpt verify a"), 0, "%s", errtext);
    cr_assert(strstr(out, "v0001.h5: ok") && strstr(out, "3 version(s) checked: all intact"), "%s",
              out);
    char p[256];
    snprintf(p, sizeof p, "%s/a/weights/v0002.h5", dir);
    damage(p, "ema/model.0.conv.weight");
    damage(p, "model/model.2.cv1.conv.weight");
    snprintf(p, sizeof p, "%s/a/weights/v0003.h5", dir);
    cr_assert_eq(truncate(p, 4000), 0);
    cr_assert_eq(cli("ckpt verify a"), 1, "%s", out);
    cr_assert(strstr(out, "v0001.h5: ok"), "%s", out);
    cr_assert(strstr(out, "v0002.h5: DAMAGED"), "%s", out);
    cr_assert(strstr(out, "tensor ema/model.0.conv.weight: sha256 mismatch"), "%s", out);
    cr_assert(strstr(out, "tensor model/model.2.cv1.conv.weight: sha256 mismatch"), "%s", out);
    cr_assert(strstr(out, "v0003.h5: DAMAGED") && strstr(out, "truncated"), "%s", out);
    cr_assert_eq(count_lines(errtext), 1, "one summary line on stderr: %s", errtext);
    cr_assert_eq(cli("ckpt verify a v1"), 0, "%s", out);
    cr_assert_eq(cli("ckpt verify a:v2 --json"), 1);
    cJSON *j = cJSON_Parse(out);
    cr_assert(j, "%s", out);
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItem(j, "ok")));
    cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "versions"), 0);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(v, "problems")), 2,
                 "two tensors (the listing holds their stored hashes: intact):\n%s", out);
    cJSON_Delete(j);
    /* a link to a version that is gone, and a tag to one */
    snprintf(p, sizeof p, "%s/a/weights/v0003.h5", dir);
    cr_assert_eq(cli("ckpt tag a v3 gone"), 0, "%s", errtext);
    cr_assert_eq(unlink(p), 0);
    cr_assert_eq(cli("ckpt verify a"), 1);
    cr_assert(strstr(out, "last.h5 -> v0003.h5: the version it points at does not exist"), "%s",
              out);
    cr_assert(strstr(out, "tag gone -> v0003: that version does not exist"), "%s", out);
}

Test(ckptcli, tag_untag_and_prune) {
    fixture_run(dir, "a", &(fixture_run_opts){.versions = 5, .lr0 = 0.01, .best = 2, .seed = 1});
    cr_assert_eq(cli("ckpt tag a v1 production"), 0, "%s", errtext);
    cr_assert(strstr(out, "production -> v0001"), "%s", out);
    cr_assert_eq(cli("ckpt tag a:v3 production"), 0, "%s", errtext);
    cr_assert(strstr(out, "production moved from v0001 to v0003"), "%s", out);
    cr_assert_eq(cli("ckpt show a@production --json"), 0, "%s", errtext);
    cJSON *j = cJSON_Parse(out);
    cr_assert_eq(cJSON_GetObjectItem(j, "version")->valueint, 3);
    cJSON_Delete(j);
    /* keep=1: v5 (newest, last), v2 (best) and v3 (tagged) stay */
    cr_assert_eq(cli("ckpt prune a keep=1"), 0, "%s", errtext);
    cr_assert(strstr(out, "v0001.h5") && strstr(out, "v0004.h5") &&
                  strstr(out, "2 version(s) removed"),
              "%s", out);
    char p[256];
    for (int v = 1; v <= 5; v++) {
        snprintf(p, sizeof p, "%s/a/weights/v%04d.h5", dir, v);
        cr_assert_eq(access(p, F_OK) == 0, v == 2 || v == 3 || v == 5, "v%d", v);
    }
    cr_assert_eq(cli("ckpt untag a production"), 0, "%s", errtext);
    cr_assert_eq(cli("ckpt prune a keep=1"), 0, "%s", errtext);
    snprintf(p, sizeof p, "%s/a/weights/v0003.h5", dir);
    cr_assert_neq(access(p, F_OK), 0, "untagged: pruned");
    /* a live run holds the folder: refused, nothing removed */
    fixture_run(dir, "b", &(fixture_run_opts){.versions = 3, .lr0 = 0.01, .best = 3, .seed = 1});
    char run[128], err[512];
    snprintf(run, sizeof run, "%s/b", dir);
    int fd = run_lock_acquire(run, err, sizeof err);
    cr_assert_geq(fd, 0, "%s", err);
    cr_assert_eq(cli("ckpt prune b keep=1"), 1);
    cr_assert(strstr(errtext, "in use") && strstr(errtext, "prune after it ends"), "%s", errtext);
    snprintf(p, sizeof p, "%s/b/weights/v0001.h5", dir);
    cr_assert_eq(access(p, F_OK), 0);
    close(fd);
}

Test(ckptcli, runs_ls_and_compare) {
    two_runs();
    char p[256];
    snprintf(p, sizeof p, "%s/notarun", dir);
    cr_assert_eq(mkdir(p, 0755), 0);
    cr_assert_eq(cli("runs ls ."), 0, "%s", errtext);
    char l[512];
    cr_assert_eq(count_lines(out), 3, "header, a, b (notarun is no run):\n%s", out);
    line_of(out, "a ", l, sizeof l);
    cr_assert(strstr(l, "finished") && strstr(l, "3/3") && strstr(l, "0.2000"), "best mAP: %s", l);
    line_of(out, "b ", l, sizeof l);
    cr_assert(strstr(l, "cdcdcdcdcdcd") && strstr(l, "2/2"), "%s", l);
    cr_assert_eq(cli("runs ls . --json"), 0, "%s", errtext);
    cJSON *j = cJSON_Parse(out);
    cr_assert(cJSON_IsArray(j) && cJSON_GetArraySize(j) == 2, "%s", out);
    cJSON *a = cJSON_GetArrayItem(j, 0);
    cr_assert_str_eq(cJSON_GetObjectItem(a, "name")->valuestring, "a");
    cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "args"), "lr0")->valuestring,
                     "0.01");
    cJSON_Delete(j);
    cr_assert_eq(cli("runs compare a b"), 0, "%s", errtext);
    line_of(strstr(out, "  lr0") ? strstr(out, "  lr0") : "", "  lr0", l, sizeof l);
    cr_assert(strstr(l, "0.01") && strstr(l, "0.02"), "'%s'\n%s", l, out);
    line_of(out, "best mAP50-95", l, sizeof l);
    cr_assert(strstr(l, "0.20000") && strstr(l, "0.20000 "), "%s", l);
    line_of(out, "training time", l, sizeof l);
    cr_assert(strstr(l, "4.5 s") && strstr(l, "3.0 s"), "elapsed of the newest version: %s", l);
    line_of(out, "dataset sha256", l, sizeof l);
    cr_assert(strstr(l, "abababababab") && strstr(l, "cdcdcdcdcdcd"), "%s", l);
    cr_assert_eq(cli("runs compare a b --json"), 0, "%s", errtext);
    j = cJSON_Parse(out);
    cr_assert(cJSON_IsArray(j) && cJSON_GetArraySize(j) == 2, "%s", out);
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 1), "epochs_done")->valueint, 2);
    cJSON_Delete(j);
}

/* Every subcommand: --help on stdout with exit 0; bad usage: exit 2 and one line on stderr. */
Test(ckptcli, help_and_bad_usage) {
    two_runs();
    const char *subs[] = {"ckpt ls",  "ckpt show",  "ckpt diff",  "ckpt verify", "ckpt export",
                          "ckpt tag", "ckpt untag", "ckpt prune", "runs ls",     "runs compare"};
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++) {
        cr_assert_eq(cli("%s --help", subs[i]), 0, "%s --help", subs[i]);
        char want[64];
        snprintf(want, sizeof want, "usage: coordinator %s ", subs[i]);
        cr_assert(strstr(out, want), "%s --help:\n%s", subs[i], out);
    }
    cr_assert_eq(cli("ckpt --help"), 0);
    cr_assert(strstr(out, "prune"), "%s", out);
    const struct {
        const char *args, *names;
    } bad[] = {
        {"ckpt", "missing subcommand"},
        {"ckpt bogus a", "unknown subcommand 'bogus'"},
        {"ckpt ls", "missing arguments"},
        {"ckpt ls nowhere", "nowhere: no such run folder"},
        {"ckpt ls a b", "unexpected argument 'b'"},
        {"ckpt ls a --bogus", "unknown option '--bogus'"},
        {"ckpt show a v9", "v0009.h5 does not exist"},
        {"ckpt show a@nope", "no version, tag or file 'nope'"},
        {"ckpt show a:v1 v2", "already names a version"},
        {"ckpt show a colour=red", "unknown argument 'colour'"},
        {"ckpt diff a", "missing arguments"},
        {"ckpt diff a v1 v2 top=-1", "top=-1"},
        {"ckpt diff a v1 v2 group=adam", "group=adam"},
        {"ckpt verify a:v7", "v0007.h5 does not exist"},
        {"ckpt export a format=onnx out=x.onnx", "format=onnx"},
        {"ckpt export a format=h5", "out=FILE is required"},
        {"ckpt tag a v1 best", "reserved"},
        {"ckpt tag a v1 'bad tag'", "only letters"},
        {"ckpt tag a production", "is a run folder: name a version"},
        {"ckpt untag a nope", "no tag 'nope'"},
        {"ckpt prune a", "keep=K is required"},
        {"ckpt prune a keep=0", "keep=0"},
        {"runs", "missing subcommand"},
        {"runs ls nowhere", "no such project folder"},
        {"runs compare a", "missing arguments"},
        {"runs compare a nowhere", "nowhere: no such run folder"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_eq(cli("%s", bad[i].args), 2, "%s: exit 2 (stderr: %s)", bad[i].args, errtext);
        cr_assert_eq(count_lines(errtext), 1, "%s: one line, got:\n%s", bad[i].args, errtext);
        cr_assert(strstr(errtext, bad[i].names), "%s: '%s' in: %s", bad[i].args, bad[i].names,
                  errtext);
        cr_assert_eq(out[0], 0, "%s: nothing on stdout: %s", bad[i].args, out);
    }
}

Test(ckptcli, references_resolve_every_spelling) {
    two_runs();
    cr_assert_eq(chdir(dir), 0);
    cr_assert_eq(run_sh("cd a/weights && ln -s v0001.h5 epoch0.h5"), 0);
    char err[1200];
    cr_assert_eq(cli("ckpt tag a v3 prod"), 0, "%s", errtext);
    const struct {
        const char *spec, *ref;
        int version;
        const char *label;
    } ok[] = {
        {"a", NULL, 3, "a:v0003"},
        {"a/", NULL, 3, "a:v0003"},
        {"a:v2", NULL, 2, "a:v0002"},
        {"a:2", NULL, 2, "a:v0002"},
        {"a:v0002.h5", NULL, 2, "a:v0002"},
        {"a:best", NULL, 2, "a:v0002"},
        {"a@best", NULL, 2, "a:v0002"},
        {"a@prod", NULL, 3, "a:v0003"},
        {"a", "v1", 1, "a:v0001"},
        {"a", "prod", 3, "a:v0003"},
        {"a/weights/v0002.h5", NULL, 2, "a:v0002"},
        {"a/weights/best.h5", NULL, 2, "a:v0002"},
        {"a/weights/epoch0.h5", NULL, 1, "a:v0001"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        ckpt_ref r;
        cr_assert_eq(ckpt_ref_resolve(ok[i].spec, ok[i].ref, "last", &r, err, sizeof err), 0,
                     "%s %s: %s", ok[i].spec, ok[i].ref ? ok[i].ref : "", err);
        cr_assert_eq(r.version, ok[i].version, "%s", ok[i].spec);
        cr_assert_str_eq(r.label, ok[i].label, "%s", ok[i].spec);
        cr_assert_str_eq(r.run_dir, "a", "%s", ok[i].spec);
        cr_assert_eq(access(r.path, F_OK), 0, "%s -> %s", ok[i].spec, r.path);
        cr_assert_eq(ckpt_store_parse_name(r.path), ok[i].version, "%s -> %s", ok[i].spec, r.path);
    }
    /* a version file outside any run: no run, its path as label */
    cr_assert_eq(run_sh("cp a/weights/v0002.h5 copy.h5"), 0);
    ckpt_ref r;
    cr_assert_eq(ckpt_ref_resolve("copy.h5", NULL, "last", &r, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(r.run_dir, "");
    cr_assert_eq(r.version, 0);
    cr_assert_str_eq(r.label, "copy.h5");
    const char *bad[][3] = {{"a:v9", NULL, "v0009.h5 does not exist"},
                            {"a@nope", NULL, "no version, tag or file 'nope'"},
                            {"a:", NULL, "nothing after ':'"},
                            {"nowhere", NULL, "no such run folder or version file"},
                            {"nowhere:v1", NULL, "no such run folder or version file"},
                            {"copy.h5", "v1", "is a version file"},
                            {"a:v1", "v2", "already names a version"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_eq(ckpt_ref_resolve(bad[i][0], bad[i][1], "last", &r, err, sizeof err), -1, "%s",
                     bad[i][0]);
        cr_assert(strstr(err, bad[i][2]), "%s: %s", bad[i][0], err);
    }
    cr_assert_eq(ckpt_ref_resolve("a", NULL, NULL, &r, err, sizeof err), -1);
    cr_assert(strstr(err, "is a run folder"), "%s", err);
}

/* Seconds one reader round (ls, verify, show) takes here on a run of 3 yolov8n versions written
 * in scratch: each version's write is slowed by that much, so that the readers see the versions
 * come one by one (in the sanitizer build, with its slow stack unwinding on every malloc, a round
 * takes seconds). */
static double reader_round_s(const char *scratch) {
    fixture_run(scratch, "probe", &(fixture_run_opts){.versions = 3, .lr0 = 0.01, .seed = 1});
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    cr_assert_eq(cli("ckpt ls %s/probe --json", scratch), 0, "%s", errtext);
    cr_assert_eq(cli("ckpt verify %s/probe", scratch), 0, "%s", errtext);
    cr_assert_eq(cli("ckpt show %s/probe --json", scratch), 0, "%s", errtext);
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
}

/* Readers while a run writes: ls, verify and show in a loop against a real training run that
 * writes a version per epoch (its writes slowed so that they overlap the readers). Every reader
 * exits 0 with whole versions only, the number of versions never goes down, and the loop saw the
 * run at several version counts (so it did overlap the writes). */
Test(ckptcli, readers_never_see_a_partial_version_while_a_run_writes, .timeout = 600) {
    char data[64];
    run_make_data(data, sizeof data, "yolo-ckptlive", 16, 8);
    double delay = fmax(0.5, reader_round_s(data));
    cr_log_info("each version's write is slowed by %.2f s", delay);
    cr_assert_eq(run_sh("(YOLO_TEST_CKPT_DELAY_S=%.2f %s train data=%s/s.h5 model=yolov8n.yaml "
                        "epochs=6 imgsz=64 batch=8 nbs=8 workers=1 threads=1 project=%s name=r "
                        "> %s/train.log 2>&1; echo $? > %s/rc.txt) &",
                        delay, exe, data, dir, data, data),
                 0);
    char rcfile[128], run[128];
    snprintf(rcfile, sizeof rcfile, "%s/rc.txt", data);
    snprintf(run, sizeof run, "%s/r", dir);
    int rounds = 0, last_n = 0, distinct = 0;
    while (access(rcfile, F_OK) != 0) {
        int rc = cli("ckpt ls r --json");
        if (rc == 2 && strstr(errtext, "no such run folder")) { /* not created yet */
            usleep(100000);
            continue;
        }
        cr_assert_eq(rc, 0, "ls: %s", errtext);
        cJSON *j = cJSON_Parse(out), *it;
        cr_assert(cJSON_IsArray(j), "ls --json: %s", out);
        int n = cJSON_GetArraySize(j);
        cJSON_ArrayForEach(it, j) cr_assert_null(cJSON_GetObjectItem(it, "error"), "%s", out);
        cJSON_Delete(j);
        cr_assert_geq(n, last_n, "versions never disappear (keep=0)");
        distinct += n != last_n;
        last_n = n;
        rc = cli("ckpt verify r");
        cr_assert_eq(rc, 0, "verify while writing:\n%s%s", out, errtext);
        if (n > 0) {
            rc = cli("ckpt show r --json");
            cr_assert_eq(rc, 0, "show: %s", errtext);
            j = cJSON_Parse(out);
            cr_assert(j, "show --json: %s", out);
            cJSON_Delete(j);
        }
        rounds++;
    }
    cr_assert_eq(run_read_rc(rcfile), 0, "training failed: see %s/train.log", data);
    cr_assert_eq(cli("ckpt verify r"), 0, "%s", out);
    cr_assert_eq(cli("ckpt ls r --json"), 0);
    cJSON *j = cJSON_Parse(out);
    cr_assert_eq(cJSON_GetArraySize(j), 6, "one version per epoch");
    cJSON_Delete(j);
    cr_log_info("%d reader rounds; saw %d different version counts", rounds, distinct);
    cr_assert_geq(distinct, 3, "the readers overlapped the writes (%d rounds)", rounds);
    run_sh("rm -rf %s", data);
}
