/* Import and fine-tuning (suite ckptimport): an Ultralytics .pt written by Ultralytics itself
 * converts (scripts/ultralytics_to_weights.py), loads into our model, and gives Ultralytics'
 * outputs on a coco8 batch; `train model=<weights file>` fine-tunes from it and records it in
 * lineage (skipped with the reason where torch + Ultralytics are not installed, tests/pyref.h).
 * Without torch: fine-tuning from a checkpoint version and from an exported weights file, with
 * Ultralytics 8.4.190's class-branch width rule and cls_remap by class name (and 8.4.33's plain
 * intersection), the refusals, and the imgsz a fine-tuning run defaults to (the weights'). */
#include "common/sha256.h"
#include "coordinator/ckpt_file.h"
#include "coordinator/model_source.h"
#include "coordinator/model_weights.h"
#include "dataio/loader.h"
#include "tests/ckpt_fixture.h"
#include "tests/pyref.h"
#include "tests/testenv.h"
#include "tests/runs.h"

#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64], exe[PATH_MAX];

static void make_dir(void) {
    fixture_suite_dirs(dir, sizeof dir, "ckptimp", exe, sizeof exe);
}

static void remove_dir(void) {
    test_remove_dir(dir);
}

TestSuite(ckptimport, .init = make_dir, .fini = remove_dir, .timeout = 900);

/* The shared coco8 folder (testenv); the test is skipped with the reason where it is absent. */
static const char *coco8_dir(void) {
    static char d[PATH_MAX];
    const char *s = shared_path("data/coco8");
    if (!s) cr_skip_test("the shared coco8 folder is absent (YOLO_SHARED or ../shared)");
    snprintf(d, sizeof d, "%s", s);
    return d;
}

/* A copy of the shared coco8 in dir/coco8 with its yaml pointing there. */
static void copy_coco8(void) {
    cr_assert_eq(run_sh("cp -R %s %s/coco8 && chmod -R u+w %s/coco8", coco8_dir(), dir, dir), 0,
                 "copy coco8 from %s", coco8_dir());
    cr_assert_eq(run_sh("sed -i 's|^path:.*|path: %s/coco8|' %s/coco8/coco8.yaml", dir, dir), 0);
}

static void file_sha256(const char *path, char hex[65]) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s", path);
    sha256_ctx *c = sha256_begin();
    char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0) sha256_update(c, buf, k);
    fclose(f);
    sha256_end(c, hex);
}

/* One coco8 validation batch through our loader (letterboxed to imgsz), as floats in [0, 1];
 * also written raw to dir/images.raw for the reference. */
static float *coco8_batch(const char *h5, int imgsz, int *n) {
    char err[1024];
    loader_config lc = loader_config_defaults();
    lc.imgsz = imgsz;
    lc.augment = 0;
    lc.max_batch = 4;
    lc.nthreads = 1;
    loader *L = loader_create(h5, SPLIT_VAL, &lc, err, sizeof err);
    cr_assert(L, "%s", err);
    int idx[4] = {0, 1, 2, 3};
    cr_assert_eq(loader_submit(L, 0, 0, idx, 4, err, sizeof err), 0, "%s", err);
    loader_batch b;
    cr_assert_eq(loader_next(L, &b, err, sizeof err), 0, "%s", err);
    cr_assert(b.h == imgsz && b.w == imgsz);
    size_t count = (size_t)b.n * b.h * b.w * 3;
    float *x = malloc(count * sizeof *x);
    for (size_t i = 0; i < count; i++) x[i] = b.images[i] / 255.0f;
    *n = b.n;
    loader_destroy(L);
    char p[256];
    snprintf(p, sizeof p, "%s/images.raw", dir);
    fixture_write_raw(p, x, count);
    return x;
}

Test(ckptimport, ultralytics_pt_converts_loads_matches_and_fine_tunes) {
    char why[512];
    const char *py = pyref_bench_python(why, sizeof why);
    if (!py) cr_skip_test("%s", why);
    copy_coco8();
    char cfg[128], data[256], pt[256], h5[256];
    snprintf(cfg, sizeof cfg, "%s/ulcfg", dir);
    setenv("YOLO_CONFIG_DIR", cfg, 1); /* Ultralytics' settings: not the home folder */
    setenv("YOLO_OFFLINE", "1", 1);
    snprintf(data, sizeof data, "%s/coco8/coco8.yaml", dir);
    snprintf(pt, sizeof pt, "%s/best.pt", dir);
    cr_assert_eq(pyref_run(py, repo_path("tests/py/ul_train_coco8.py"), data, pt, why, sizeof why),
                 0, "%s", why);
    snprintf(h5, sizeof h5, "%s/best.h5", dir);
    cr_assert_eq(
        pyref_run(py, repo_path("scripts/ultralytics_to_weights.py"), pt, h5, why, sizeof why), 0,
        "%s", why);
    model_weights mw;
    cr_assert_eq(model_weights_load(h5, &mw, NULL, NULL, why, sizeof why), 0, "%s", why);
    cr_assert_eq(mw.imgsz, 64, "the .pt's training size (train_args imgsz) is kept");
    model_weights_free(&mw);
    /* our forward on one coco8 batch, with the converted weights, against Ultralytics' on the .pt
     */
    cr_assert_eq(run_sh("cd %s && %s data pack data=coco8/coco8.yaml out=coco8.h5 > pack.txt 2>&1",
                        dir, exe),
                 0, "see %s/pack.txt", dir);
    char c8[256], in[256], out[256];
    snprintf(c8, sizeof c8, "%s/coco8.h5", dir);
    int n = 0;
    float *x = coco8_batch(c8, 128, &n);
    snprintf(in, sizeof in, "%s/fwd.txt", dir);
    FILE *f = fopen(in, "w");
    fprintf(f, "pt %s\nimages %s/images.raw %d 128 128\n", pt, dir, n);
    fclose(f);
    snprintf(out, sizeof out, "%s/ul_out.raw", dir);
    cr_assert_eq(pyref_run(py, repo_path("tests/py/ul_forward.py"), in, out, why, sizeof why), 0,
                 "%s", why);
    size_t count;
    float *ours = fixture_forward(h5, n, 128, 128, x, &count); /* asserts 355/355 loaded */
    double range, worst = fixture_max_diff(out, ours, count, &range);
    cr_log_info("Ultralytics .pt -> weights file: max |ours - Ultralytics| %.3g of output range "
                "%.3g (%d coco8 images at 128)",
                worst, range, n);
    cr_assert_lt(worst, FIXTURE_OUTPUT_TOL * range, "max abs difference %g (range %g)", worst,
                 range);
    free(ours);
    free(x);

    /* fine-tuning from it: every tensor loads (same classes), the run names it in lineage */
    cr_assert_eq(run_sh("cd %s && %s train model=best.h5 data=coco8.h5 epochs=1 imgsz=64 batch=4 "
                        "workers=1 threads=1 project=%s name=ft > ft.txt 2>&1",
                        dir, exe, dir),
                 0, "see %s/ft.txt", dir);
    snprintf(in, sizeof in, "%s/ft.txt", dir);
    cr_assert(run_file_has(in, "Transferred 355/355 items from pretrained weights"), "see %s", in);
    char sha[65], p[256], err[1024];
    file_sha256(h5, sha);
    snprintf(p, sizeof p, "%s/ft/weights/v0001.h5", dir);
    ckpt_file *v = ckpt_open(p, err, sizeof err);
    cr_assert(v, "%s", err);
    const ckpt_meta *m = ckpt_file_meta(v);
    cr_assert_str_eq(m->pretrained_sha256, sha, "the weights file's hash in lineage");
    cr_assert(m->pretrained && strstr(m->pretrained, "/best.h5"), "%s", m->pretrained);
    cr_assert_str_eq(m->parent_version, "best.h5");
    cr_assert(strstr(m->model_yaml, "scale: n"), "the architecture, self-contained");
    ckpt_close(v);
    cr_assert_eq(run_sh("cd %s && %s ckpt show ft > show.txt 2>&1", dir, exe), 0);
    snprintf(p, sizeof p, "%s/show.txt", dir);
    cr_assert(run_file_has(p, "weights file: Ultralytics best.pt (sha256 "), "see %s", p);
    cr_assert(run_file_has(p, "fine-tuned  from "), "see %s", p);
}

/* ---- without torch ----------------------------------------------------------------------------
 */

/* A YOLO-format dataset of 4 coco8 images with 3 classes named by `names` (yaml mapping lines),
 * packed into dir/<name>.h5. */
static void small_dataset(const char *name, const char *names) {
    char d[256];
    snprintf(d, sizeof d, "%s/%s", dir, name);
    cr_assert_eq(run_sh("mkdir -p %s/images/train %s/images/val %s/labels/train %s/labels/val && "
                        "for s in train val; do i=0; for img in %s/images/train/*.jpg; "
                        "do cp $img %s/images/$s/; b=$(basename $img .jpg); "
                        "echo \"$((i %% 3)) 0.5 0.5 0.3 0.4\" > %s/labels/$s/$b.txt; "
                        "i=$((i+1)); done; done",
                        d, d, d, d, coco8_dir(), d, d),
                 0);
    char y[300];
    snprintf(y, sizeof y, "%s/data.yaml", d);
    FILE *f = fopen(y, "w");
    fprintf(f, "path: %s\ntrain: images/train\nval: images/val\nnames:\n%s", d, names);
    fclose(f);
    cr_assert_eq(
        run_sh("%s data pack data=%s out=%s/%s.h5 > %s/pack.txt 2>&1", exe, y, dir, name, d), 0,
        "see %s/pack.txt", d);
}

/* 80 class names: COCO's first six (person, bicycle, car, ...), then class6 .. class79. */
static char *coco80_names(void) {
    static const char *first[] = {"person", "bicycle", "car", "motorcycle", "airplane", "bus"};
    static char json[4096];
    size_t k = (size_t)snprintf(json, sizeof json, "[");
    for (int i = 0; i < 80; i++) {
        char name[32];
        if (i < 6)
            snprintf(name, sizeof name, "%s", first[i]);
        else
            snprintf(name, sizeof name, "class%d", i);
        k += (size_t)snprintf(json + k, sizeof json - k, "%s\"%s\"", i ? "," : "", name);
    }
    snprintf(json + k, sizeof json - k, "]");
    return json;
}

/* The line of a file holding needle ("" when none). */
static const char *line_with(const char *path, const char *needle) {
    static char line[2048];
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, needle)) {
            fclose(f);
            return line;
        }
    if (f) fclose(f);
    return "";
}

/* The float values of a version's tensor. */
static float *tensor_of(const char *path, const char *name, int64_t *n) {
    char err[1024];
    ckpt_file *f = ckpt_open(path, err, sizeof err);
    cr_assert(f, "%s", err);
    int i = ckpt_find_tensor(f, name);
    cr_assert_geq(i, 0, "%s in %s", name, path);
    *n = ckpt_tensor_numel(ckpt_tensor_at(f, i));
    float *v = malloc((size_t)*n * sizeof *v);
    cr_assert_eq(ckpt_read_tensor(f, i, v, err, sizeof err), 0, "%s", err);
    ckpt_close(f);
    return v;
}

Test(ckptimport, fine_tuning_keeps_the_class_branch_width_and_remaps_rows_by_name) {
    /* source: 80 classes (Detect's class branch 80 wide), names with person, car among them */
    fixture_run(dir, "src",
                &(fixture_run_opts){
                    .versions = 1, .lr0 = 0.01, .seed = 7, .nc = 80, .names_json = coco80_names()});
    cr_assert_eq(run_sh("cd %s && %s ckpt export src format=h5 out=src.h5 > /dev/null", dir, exe),
                 0);
    /* target: 3 classes, two of them named as source classes (case and spaces differ) */
    small_dataset("tgt", "  0: car\n  1: ' Person'\n  2: widget\n");
    /* lr0=0, no warmup: the loaded weights stay as loaded, so the version shows them */
    cr_assert_eq(run_sh("cd %s && %s train model=src.h5 data=tgt.h5 epochs=1 imgsz=64 batch=4 "
                        "optimizer=SGD lr0=0 warmup_epochs=0 workers=1 threads=1 project=%s "
                        "name=ft > ft.txt 2>&1",
                        dir, exe, dir),
                 0, "see %s/ft.txt", dir);
    char log[256];
    snprintf(log, sizeof log, "%s/ft.txt", dir);
    cr_assert(run_file_has(log, "Detect class branch built 80 wide (the pretrained weights'), not "
                                "64 (the yaml rule for 3 classes)"),
              "see %s", log);
    cr_assert(run_file_has(log, "Remapped 2/3 cls head rows from pretrained weights by class name"),
              "see %s", log);
    cr_assert(run_file_has(log, "Transferred 355/355 items from pretrained weights"), "see %s",
              log);
    /* the class rows: car <- source row 2, person <- row 0, widget keeps its initialisation */
    char src[256], ft[256];
    snprintf(src, sizeof src, "%s/src/weights/v0001.h5", dir);
    snprintf(ft, sizeof ft, "%s/ft/weights/v0001.h5", dir);
    for (int lvl = 0; lvl < 3; lvl++) {
        char name[96], sname[96];
        snprintf(name, sizeof name, "model/model.22.cv3.%d.2.weight", lvl);
        snprintf(sname, sizeof sname, "ema/model.22.cv3.%d.2.weight", lvl);
        int64_t ns, nt;
        float *s = tensor_of(src, sname, &ns), *t = tensor_of(ft, name, &nt);
        cr_assert_eq(ns, 80 * 80);
        cr_assert_eq(nt, 3 * 80, "[3, 80, 1, 1]: the source width");
        cr_assert_arr_eq(t, s + 2 * 80, 80 * sizeof *t, "car row, level %d", lvl);
        cr_assert_arr_eq(t + 80, s, 80 * sizeof *t, "person row, level %d", lvl);
        cr_assert(memcmp(t + 160, s, 80 * sizeof *t) && memcmp(t + 160, s + 160, 80 * 4),
                  "widget row is not a source row");
        free(s);
        free(t);
        snprintf(name, sizeof name, "model/model.22.cv3.%d.0.conv.weight", lvl);
        snprintf(sname, sizeof sname, "ema/model.22.cv3.%d.0.conv.weight", lvl);
        s = tensor_of(src, sname, &ns);
        t = tensor_of(ft, name, &nt);
        cr_assert_eq(ns, nt);
        cr_assert_arr_eq(t, s, (size_t)nt * sizeof *t, "hidden class-branch layer transferred");
        free(s);
        free(t);
    }
    /* 8.4.33: a plain intersection by name and shape: no rebuild, no remap */
    cr_assert_eq(run_sh("cd %s && %s train model=src.h5 data=tgt.h5 epochs=1 imgsz=64 batch=4 "
                        "ultralytics=8.4.33 workers=1 threads=1 project=%s name=ft33 > ft33.txt "
                        "2>&1",
                        dir, exe, dir),
                 0, "see %s/ft33.txt", dir);
    snprintf(log, sizeof log, "%s/ft33.txt", dir);
    cr_assert(!run_file_has(log, "Remapped") && !run_file_has(log, "class branch built"), "%s",
              log);
    /* per level the class branch's two convs (weight + BN weight, bias, mean, var) and the last
     * conv's weight and bias have other shapes: 3 x 12 = 36 of 355 stay initialised */
    cr_assert(run_file_has(log, "Transferred 319/355 items"), "%s", line_with(log, "Transferred"));
}

Test(ckptimport, pretrained_from_a_version_and_the_refusals) {
    fixture_run(dir, "src", &(fixture_run_opts){.versions = 2, .lr0 = 0.01, .seed = 3});
    small_dataset("tgt", "  0: circle\n  1: rectangle\n  2: triangle\n");
    /* pretrained=<a run's version> into model=<yaml>: the version's EMA; lineage into that run */
    cr_assert_eq(run_sh("cd %s && %s train model=yolov8n.yaml pretrained=src/weights/best.h5 "
                        "data=tgt.h5 epochs=1 imgsz=64 batch=4 workers=1 threads=1 project=%s "
                        "name=ft > ft.txt 2>&1",
                        dir, exe, dir),
                 0, "see %s/ft.txt", dir);
    char p[256];
    snprintf(p, sizeof p, "%s/ft.txt", dir);
    cr_assert(run_file_has(p, "Transferred 355/355 items"), "see %s", p);
    cr_assert(!run_file_has(p, "Remapped"), "same names in the same order: a plain copy");
    cr_assert_eq(run_sh("cd %s && %s ckpt show ft > show.txt 2>&1", dir, exe), 0);
    snprintf(p, sizeof p, "%s/show.txt", dir);
    cr_assert(run_file_has(p, "src:v0002") && run_file_has(p, "src:v0001"),
              "the chain goes on into the source run: see %s", p);
    /* refusals before launch: exit 2, one line, no run folder */
    const struct {
        const char *args, *names;
    } bad[] = {
        {"model=nothere.h5", "model=nothere.h5: no such weights file"},
        {"model=broken.h5", "truncated"},
        {"pretrained=nothere.h5", "pretrained=nothere.h5: no such weights file"},
        {"model=tgt.h5", "not a yolo-cluster"},
        {"model=yolov8n.pt", "convert it first: python scripts/ultralytics_to_weights.py"},
    };
    cr_assert_eq(run_sh("cd %s && touch yolov8n.pt && cp src/weights/v0001.h5 broken.h5 && "
                        "truncate -s 5000 broken.h5",
                        dir),
                 0);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = run_sh("cd %s && %s train %s data=tgt.h5 epochs=1 imgsz=64 batch=4 project=%s "
                        "name=bad > bad.txt 2>&1",
                        dir, exe, bad[i].args, dir);
        snprintf(p, sizeof p, "%s/bad.txt", dir);
        cr_assert_eq(rc, 2, "%s: exit 2", bad[i].args);
        cr_assert(run_file_has(p, bad[i].names), "%s: '%s' (see %s)", bad[i].args, bad[i].names, p);
        snprintf(p, sizeof p, "%s/bad", dir);
        cr_assert_neq(access(p, F_OK), 0, "%s: no run folder", bad[i].args);
    }
    /* the launcher's model and memory check builds the architecture the version records */
    int rc = run_sh("cd %s && %s train model=src/weights/best.h5 data=tgt.h5 epochs=1 imgsz=8192 "
                    "batch=4 project=%s name=big > big.txt 2>&1",
                    dir, exe, dir);
    snprintf(p, sizeof p, "%s/big.txt", dir);
    cr_assert_eq(rc, 2, "see %s", p);
    cr_assert(run_file_has(p, "GiB of memory per worker"), "see %s", p);
    cr_assert(!run_file_has(p, "rank 1:"), "refused before launch, not by a worker: see %s", p);
    snprintf(p, sizeof p, "%s/big", dir);
    cr_assert_neq(access(p, F_OK), 0, "no run folder");
}

/* Ultralytics 8.4.190 (Model._load keeps the checkpoint's imgsz among its overrides, train()
 * puts only the caller's arguments above them): `train model=<weights>` without imgsz= trains at
 * the imgsz the weights record, and says so; imgsz= always wins; model=<yaml> with
 * pretrained=<weights> keeps 640. The fixture's runs record imgsz 64. */
Test(ckptimport, fine_tuning_defaults_imgsz_to_the_weights_training_imgsz) {
    fixture_run(dir, "src", &(fixture_run_opts){.versions = 1, .lr0 = 0.01, .seed = 5});
    cr_assert_eq(run_sh("cd %s && %s ckpt export src format=h5 out=src.h5 > /dev/null", dir, exe),
                 0);
    small_dataset("tgt", "  0: circle\n  1: rectangle\n  2: triangle\n");
    char file[256], version[256], data[256], from[4200];
    snprintf(file, sizeof file, "%s/src.h5", dir);
    snprintf(version, sizeof version, "%s/src/weights/v0001.h5", dir);
    snprintf(data, sizeof data, "%s/tgt.h5", dir);
    cr_assert_eq(model_weights_recorded_imgsz(file), 64, "a weights file (format 2)");
    cr_assert_eq(model_weights_recorded_imgsz(version), 64, "a version (its args.yaml)");
    cr_assert_eq(model_weights_recorded_imgsz(data), -1, "a dataset file is neither");
    const struct {
        const char *model, *pretrained;
        bool given;
        long want;
        const char *from;
    } cases[] = {
        {file, "True", false, 64, file},
        {version, "True", false, 64, version},
        {file, "False", false, 64, file}, /* the architecture only: the overrides still hold */
        {file, "True", true, 96, ""},     /* imgsz=96 given: it wins */
        {"yolov8n.yaml", "True", false, 640, ""},
        {"yolov8n.yaml", file, false, 640, ""}, /* pretrained=<weights> into a yaml: 640 */
        {"nothere.h5", "True", false, 640, ""}, /* refused later, by model_source_resolve */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        train_args a = {.imgsz = cases[i].given ? 96 : 640};
        snprintf(a.model, sizeof a.model, "%s", cases[i].model);
        snprintf(a.pretrained, sizeof a.pretrained, "%s", cases[i].pretrained);
        bool took = model_source_default_imgsz(&a, cases[i].given, from, sizeof from);
        cr_assert_eq(a.imgsz, cases[i].want, "case %zu (%s): imgsz %ld", i, cases[i].model,
                     a.imgsz);
        cr_assert_eq(took, cases[i].from[0] != 0, "case %zu", i);
        cr_assert_str_eq(from, cases[i].from, "case %zu", i);
    }
    /* the command: no imgsz= -> 64 from the weights file, in the log and in args.yaml */
    cr_assert_eq(run_sh("cd %s && %s train model=src.h5 data=tgt.h5 epochs=1 batch=4 workers=1 "
                        "threads=1 project=%s name=ft > ft.txt 2>&1",
                        dir, exe, dir),
                 0, "see %s/ft.txt", dir);
    char log[256], args[256];
    snprintf(log, sizeof log, "%s/ft.txt", dir);
    cr_assert(run_file_has(log, "imgsz=64: the training imgsz recorded in src.h5"), "see %s", log);
    cr_assert(run_file_has(log, "imgsz 64 (the training imgsz of src.h5)"), "see %s", log);
    snprintf(args, sizeof args, "%s/ft/args.yaml", dir);
    cr_assert(run_file_has(args, "imgsz: 64"), "see %s", args);
    /* imgsz= given wins in the command too (8192: refused by the launcher's memory estimate,
     * so nothing trains) */
    int rc = run_sh("cd %s && %s train model=src.h5 data=tgt.h5 epochs=1 imgsz=8192 batch=4 "
                    "project=%s name=big > big.txt 2>&1",
                    dir, exe, dir);
    snprintf(log, sizeof log, "%s/big.txt", dir);
    cr_assert_eq(rc, 2, "imgsz=8192 given wins over the weights' 64: refused; see %s", log);
    cr_assert(run_file_has(log, "GiB of memory per worker") &&
                  !run_file_has(log, "the training imgsz recorded"),
              "see %s", log);
}

/* cls_remap's conditions (Ultralytics' _remap_cls_by_names): by name, case and surrounding spaces
 * ignored; not at all with placeholder names on either side, with no match, or when the names
 * are the same in the same order. */
Test(ckptimport, class_map_follows_ultralytics_rules) {
    model_weights w = {.names = "[\"person\",\"bicycle\",\"car\"]"};
    int map[4];
    const char *tgt[] = {"Car ", "widget", " PERSON"};
    cr_assert_eq(model_weights_cls_map(&w, tgt, 3, map), 2);
    cr_assert(map[0] == 2 && map[1] == -1 && map[2] == 0);
    const char *same[] = {"person", "bicycle", "car"};
    cr_assert_eq(model_weights_cls_map(&w, same, 3, map), 0, "identity: a plain copy");
    const char *fewer[] = {"person", "bicycle"};
    cr_assert_eq(model_weights_cls_map(&w, fewer, 2, map), 2, "another count: remapped");
    const char *none[] = {"a", "b", "c"};
    cr_assert_eq(model_weights_cls_map(&w, none, 3, map), 0, "nothing matches");
    const char *placeholders[] = {"0", "1", "2"};
    cr_assert_eq(model_weights_cls_map(&w, placeholders, 3, map), 0, "placeholder target names");
    model_weights ph = {.names = "[\"0\",\"1\",\"2\",\"3\"]"};
    cr_assert_eq(model_weights_cls_map(&ph, tgt, 3, map), 0, "placeholder source names");
}

/* A fine-tuned run whose class branch has the source's width resumes with that width (the
 * version's tensors say which), after the weights file is gone: the version holds everything. */
Test(ckptimport, a_fine_tuned_run_resumes_without_its_weights_file) {
    fixture_run(dir, "src",
                &(fixture_run_opts){
                    .versions = 1, .lr0 = 0.01, .seed = 7, .nc = 80, .names_json = coco80_names()});
    cr_assert_eq(run_sh("cd %s && %s ckpt export src format=h5 out=src.h5 > /dev/null", dir, exe),
                 0);
    small_dataset("tgt", "  0: car\n  1: person\n  2: widget\n");
    char sidf[128], log[128];
    snprintf(sidf, sizeof sidf, "%s/ft.sid", dir);
    snprintf(log, sizeof log, "%s/ft.log", dir);
    cr_assert_eq(run_sh("cd %s && setsid sh -c 'echo $$ > %s; YOLO_TEST_HOLD_AFTER_VERSION=1 exec "
                        "timeout 300 %s train model=src.h5 data=tgt.h5 epochs=2 imgsz=64 batch=4 "
                        "workers=1 threads=1 project=%s name=ft' > %s 2>&1 &",
                        dir, sidf, exe, dir, log),
                 0);
    cr_assert(run_wait_text(log, "holding after v0001", 240), "reached v0001; see %s", log);
    cr_assert_geq(run_kill_session((pid_t)run_read_rc(sidf), 30), 3);
    cr_assert_eq(run_sh("rm %s/src.h5", dir), 0);
    cr_assert_eq(run_sh("cd %s && %s train resume=ft > resume.txt 2>&1", dir, exe), 0,
                 "see %s/resume.txt", dir);
    char v2[256];
    snprintf(v2, sizeof v2, "%s/ft/weights/v0002.h5", dir);
    int64_t n;
    float *w = tensor_of(v2, "ema/model.22.cv3.1.2.weight", &n);
    cr_assert_eq(n, 3 * 80, "the class branch kept the source's width 80");
    free(w);
    char err[512];
    ckpt_file *f = ckpt_open(v2, err, sizeof err);
    cr_assert(f, "%s", err);
    cr_assert(strstr(ckpt_file_meta(f)->pretrained, "/src.h5"), "still names its weights file");
    cr_assert_str_eq(ckpt_file_meta(f)->parent_version, "v0001");
    ckpt_close(f);
}
