/* `coordinator ckpt export` (suite ckptexport): the safetensors file as the `safetensors` package
 * reads it (PyPI test environment), the h5 weights file through our reader, a damaged version
 * refused, and Ultralytics 8.4.190 loading the export (scripts/safetensors_to_ultralytics.py) and
 * computing the same outputs as our model on one batch (skipped with the reason where torch +
 * Ultralytics are not installed: tests/pyref.h). */
#include "coordinator/ckpt_file.h"
#include "coordinator/ckpt_weights.h"
#include "tests/ckpt_fixture.h"
#include "tests/pyref.h"
#include "tests/testenv.h"
#include "tests/runs.h"

#include <criterion/criterion.h>
#include <hdf5.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64], exe[PATH_MAX];

static void make_dir(void) {
    fixture_suite_dirs(dir, sizeof dir, "ckptexp", exe, sizeof exe);
}

static void remove_dir(void) {
    test_remove_dir(dir);
}

TestSuite(ckptexport, .init = make_dir, .fini = remove_dir, .timeout = 600);

static ckpt_file *open_version(int v) {
    char p[256], err[512];
    snprintf(p, sizeof p, "%s/a/weights/v%04d.h5", dir, v);
    ckpt_file *f = ckpt_open(p, err, sizeof err);
    cr_assert(f, "%s", err);
    return f;
}

static const char *reader =
    "import hashlib, json, sys\n"
    "from safetensors import safe_open\n"
    "from safetensors.numpy import load_file\n"
    "d = load_file(sys.argv[1])\n"
    "with safe_open(sys.argv[1], 'np') as f:\n"
    "    meta = f.metadata()\n"
    "print('meta', meta['nc'], meta['imgsz'], meta['model'], json.loads(meta['names'])[2],\n"
    "      meta['source'])\n"
    "for k in sorted(d):\n"
    "    v = d[k]\n"
    "    print(k, v.dtype, list(v.shape), hashlib.sha256(v.tobytes()).hexdigest())\n";

Test(ckptexport, safetensors_read_by_the_safetensors_package) {
    char why[512];
    const char *py = run_test_python(why, sizeof why);
    if (!py) cr_skip_test("%s", why);
    fixture_run(dir, "a", &(fixture_run_opts){.versions = 2, .lr0 = 0.01, .best = 1, .seed = 4});
    cr_assert_eq(run_sh("cd %s && %s ckpt export a format=safetensors out=m.safetensors > ex.txt "
                        "2>&1",
                        dir, exe),
                 0, "see %s/ex.txt", dir);
    cr_assert(run_file_has(strcat(strcpy(why, dir), "/ex.txt"), "a:v0001 -> m.safetensors"),
              "best is v0001");
    char script[128], listing[128];
    snprintf(script, sizeof script, "%s/read.py", dir);
    FILE *f = fopen(script, "w");
    fputs(reader, f);
    fclose(f);
    snprintf(listing, sizeof listing, "%s/list.txt", dir);
    cr_assert_eq(run_sh("%s %s %s/m.safetensors > %s 2>&1", py, script, dir, listing), 0, "see %s",
                 listing);
    /* every EMA tensor of the version, same bytes (sha256), dtype and shape; nothing else */
    ckpt_file *v = open_version(1);
    int ema = 0;
    f = fopen(listing, "r");
    char line[1024], name[256], dtype[16], shape[64], sha[65];
    cr_assert(fgets(line, sizeof line, f));
    cr_assert(strstr(line, "meta 3 64 yolov8n.yaml triangle a:v0001"), "%s", line);
    int rows = 0;
    while (fgets(line, sizeof line, f)) {
        cr_assert_eq(sscanf(line, "%255s %15s %63[^]]] %64s", name, dtype, shape, sha), 4, "%s",
                     line);
        char full[300];
        snprintf(full, sizeof full, "ema/%s", name);
        int i = ckpt_find_tensor(v, full);
        cr_assert_geq(i, 0, "%s is an EMA tensor of the version", name);
        const ckpt_tensor *t = ckpt_tensor_at(v, i);
        cr_assert_str_eq(sha, t->sha256, "%s: same bytes", name);
        cr_assert_str_eq(dtype, t->dtype == CKPT_I64 ? "int64" : "float32", "%s", name);
        rows++;
    }
    fclose(f);
    for (int i = 0; i < ckpt_num_tensors(v); i++)
        ema += !strncmp(ckpt_tensor_at(v, i)->name, "ema/", 4);
    cr_assert_eq(rows, ema, "all %d EMA tensors exported", ema);
    ckpt_close(v);
}

Test(ckptexport, h5_weights_file_holds_the_ema_and_verifies) {
    fixture_run(dir, "a", &(fixture_run_opts){.versions = 2, .lr0 = 0.01, .seed = 4});
    cr_assert_eq(run_sh("cd %s && %s ckpt export a:v2 format=h5 out=w.h5 > /dev/null", dir, exe),
                 0);
    char p[256], err[1024];
    snprintf(p, sizeof p, "%s/w.h5", dir);
    ckpt_weights *w = ckpt_weights_open(p, err, sizeof err);
    cr_assert(w, "%s", err);
    cr_assert_eq(ckpt_weights_verify(w, NULL, NULL, err, sizeof err), 0, "%s", err);
    const ckpt_weights_info *info = ckpt_weights_meta(w);
    cr_assert_eq(info->nc, 3);
    cr_assert_eq(info->imgsz, 64, "the version's training size (its args.yaml)");
    cr_assert_eq(info->format_version, CKPT_WEIGHTS_FORMAT_VERSION);
    cr_assert_str_eq(info->model, "yolov8n.yaml");
    cr_assert_str_eq(info->names, "[\"circle\",\"rectangle\",\"triangle\"]");
    cr_assert(strstr(info->source, "a:v0002 (content sha256 "), "%s", info->source);
    cr_assert(strstr(info->model_yaml, "backbone:"));
    ckpt_file *v = open_version(2);
    int ema = 0;
    for (int i = 0; i < ckpt_num_tensors(v); i++) {
        const ckpt_tensor *t = ckpt_tensor_at(v, i);
        if (strncmp(t->name, "ema/", 4)) continue;
        ema++;
        char name[300];
        snprintf(name, sizeof name, "model/%s", t->name + 4);
        int k = 0;
        while (k < ckpt_weights_num_tensors(w) && strcmp(ckpt_weights_tensor_at(w, k)->name, name))
            k++;
        cr_assert_lt(k, ckpt_weights_num_tensors(w), "%s", name);
        cr_assert_str_eq(ckpt_weights_tensor_at(w, k)->sha256, t->sha256, "%s", name);
    }
    cr_assert_eq(ckpt_weights_num_tensors(w), ema);
    ckpt_close(v);
    ckpt_weights_close(w);
    /* the checkpoint reader names it for what it is, and the other way round */
    cr_assert_null(ckpt_open(p, err, sizeof err));
    cr_assert(strstr(err, "a weights file"), "%s", err);
    snprintf(p, sizeof p, "%s/a/weights/v0001.h5", dir);
    cr_assert_null(ckpt_weights_open(p, err, sizeof err));
    cr_assert(strstr(err, "a checkpoint version, not a weights file"), "%s", err);
}

Test(ckptexport, a_damaged_version_is_not_exported) {
    fixture_run(dir, "a", &(fixture_run_opts){.versions = 1, .lr0 = 0.01, .seed = 4});
    char p[256];
    snprintf(p, sizeof p, "%s/a/weights/v0001.h5", dir);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "ema/model.4.m.0.cv2.conv.weight", H5P_DEFAULT), sp = H5Dget_space(d);
    hsize_t one = 1, pos[4] = {0};
    hid_t ms = H5Screate_simple(1, &one, NULL);
    H5Sselect_elements(sp, H5S_SELECT_SET, 1, pos);
    float bad = 7;
    cr_assert_geq(H5Dwrite(d, H5T_NATIVE_FLOAT, ms, sp, H5P_DEFAULT, &bad), 0);
    H5Sclose(ms), H5Sclose(sp), H5Dclose(d), H5Fclose(f);
    for (int k = 0; k < 2; k++) {
        const char *fmt = k ? "h5" : "safetensors";
        int rc = run_sh("cd %s && %s ckpt export a format=%s out=x.out > out.txt 2> err.txt", dir,
                        exe, fmt);
        cr_assert_eq(rc, 1, "%s", fmt);
        snprintf(p, sizeof p, "%s/err.txt", dir);
        cr_assert(run_file_has(p, "tensor ema/model.4.m.0.cv2.conv.weight: sha256 mismatch"));
        cr_assert(run_file_has(p, "a:v0001: not exported"));
        snprintf(p, sizeof p, "%s/x.out", dir);
        cr_assert_neq(access(p, F_OK), 0, "nothing written");
    }
}

/* Random images [b][h][w][3] in [0, 1], also into dir/images.raw. */
static float *write_images(int b, int h, int w) {
    size_t n = (size_t)b * h * w * 3;
    float *x = malloc(n * sizeof *x);
    unsigned s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        x[i] = (float)((s >> 8) & 0xff) / 255.0f;
    }
    char p[256];
    snprintf(p, sizeof p, "%s/images.raw", dir);
    fixture_write_raw(p, x, n);
    return x;
}

Test(ckptexport, ultralytics_loads_the_export_and_its_outputs_match_ours) {
    char why[512];
    const char *py = pyref_bench_python(why, sizeof why);
    if (!py) cr_skip_test("%s", why);
    fixture_run(dir, "a", &(fixture_run_opts){.versions = 1, .lr0 = 0.01, .seed = 9});
    cr_assert_eq(run_sh("cd %s && %s ckpt export a best format=safetensors out=m.safetensors > "
                        "/dev/null",
                        dir, exe),
                 0);
    char pt[256], in[256], out[256], st[256];
    snprintf(st, sizeof st, "%s/m.safetensors", dir);
    snprintf(pt, sizeof pt, "%s/m.pt", dir);
    cr_assert_eq(
        pyref_run(py, repo_path("scripts/safetensors_to_ultralytics.py"), st, pt, why, sizeof why),
        0, "%s", why);
    enum { B = 2, H = 96, W = 64 };
    float *x = write_images(B, H, W);
    snprintf(in, sizeof in, "%s/fwd.txt", dir);
    FILE *f = fopen(in, "w");
    fprintf(f, "pt %s\nimages %s/images.raw %d %d %d\n", pt, dir, B, H, W);
    fclose(f);
    snprintf(out, sizeof out, "%s/ul_out.raw", dir);
    cr_assert_eq(pyref_run(py, repo_path("tests/py/ul_forward.py"), in, out, why, sizeof why), 0,
                 "%s", why);
    char version[256];
    snprintf(version, sizeof version, "%s/a/weights/best.h5", dir);
    size_t n;
    float *ours = fixture_forward(version, B, H, W, x, &n);
    double range, worst = fixture_max_diff(out, ours, n, &range);
    cr_log_info("export -> Ultralytics: max |ours - Ultralytics| %.3g of output range %.3g", worst,
                range);
    cr_assert_lt(worst, FIXTURE_OUTPUT_TOL * range, "max abs difference %g (range %g)", worst,
                 range);
    free(ours);
    free(x);
}
