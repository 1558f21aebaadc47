/* End to end, in small: synthesize a dataset, train yolov8n for a few epochs through the real
 * command (coordinator + 1 worker under mpirun), and check that it learns: the training loss falls
 * and mAP50 rises well above its first-epoch value. About a minute each on 2 cores. */
#include "tests/oracle.h"
#include "tests/testenv.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EPOCHS 16

/* Per-epoch total training loss and mAP50 from an Ultralytics-format results.csv: exactly n rows.
 */
static void read_results(const char *path, int n, double *loss, double *map50) {
    FILE *f = fopen(path, "r");
    cr_assert(f, "%s missing", path);
    char line[1024];
    cr_assert(fgets(line, sizeof line, f), "header");
    cr_assert(strstr(line, "metrics/mAP50(B)"), "Ultralytics columns: %s", line);
    int rows = 0;
    while (rows < n && fgets(line, sizeof line, f)) {
        double v[9];
        int k = sscanf(line, "%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &v[0], &v[1], &v[2], &v[3],
                       &v[4], &v[5], &v[6], &v[7], &v[8]);
        cr_assert_eq(k, 9, "row %d: %s", rows + 1, line);
        cr_assert_eq((int)v[0], rows + 1, "epoch column");
        loss[rows] = v[2] + v[3] + v[4];
        map50[rows] = v[7];
        rows++;
    }
    fclose(f);
    cr_assert_eq(rows, n, "one row per epoch");
}

/* Synthesizes 512 train / 64 val images of synth_px, trains `model` for `epochs` at imgsz through
 * the real command into dir/run (SGD, no mosaic: the quickest learner), reads its results. */
static void train_small(const char *dir, const char *model, int synth_px, int imgsz, int epochs,
                        const char *extra, double *loss, double *map50) {
    char cmd[2048], path[512];
    cr_assert(epochs <= MAX_EPOCHS);
    snprintf(cmd, sizeof cmd,
             "'%s' data synth out=%s/s.h5 train=512 val=64 imgsz=%d classes=3 seed=1 >/dev/null",
             bin_path("coordinator"), dir, synth_px);
    cr_assert_eq(system(cmd), 0, "synth");
    snprintf(cmd, sizeof cmd,
             "'%s' train data=%s/s.h5 model=%s epochs=%d imgsz=%d batch=16 nbs=16 workers=1 "
             "mosaic=0 optimizer=SGD lr0=0.01 warmup_epochs=1 %s project=%s name=run "
             "> %s/log.txt 2>&1",
             bin_path("coordinator"), dir, model, epochs, imgsz, extra, dir, dir);
    int rc = system(cmd);
    cr_assert_eq(rc, 0, "training exited %d; see %s/log.txt", rc, dir);
    snprintf(path, sizeof path, "%s/run/results.csv", dir);
    read_results(path, epochs, loss, map50);
    cr_log_info("%s loss %.3f -> %.3f, mAP50 %.3f -> %.3f", model, loss[0], loss[epochs - 1],
                map50[0], map50[epochs - 1]);
}

Test(trainlearns, yolov8n_on_synthetic_shapes, .timeout = 600) {
    enum { E = 10 };
    char dir[256], path[512];
    test_temp_dir(dir, sizeof dir, "learn");
    double loss[MAX_EPOCHS], map50[MAX_EPOCHS];
    train_small(dir, "yolov8n.yaml", 128, 96, E, "", loss, map50);
    cr_assert_lt(loss[E - 1], 0.7 * loss[0], "training loss falls: %.3f -> %.3f", loss[0],
                 loss[E - 1]);
    cr_assert_gt(map50[E - 1], map50[0] + 0.25, "mAP50 rises: %.3f -> %.3f", map50[0],
                 map50[E - 1]);
    snprintf(path, sizeof path, "%s/run/weights/best.h5", dir);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "best weights written");
    fclose(f);
    snprintf(path, sizeof path, "%s/run/args.yaml", dir);
    f = fopen(path, "r");
    cr_assert(f, "args.yaml written");
    fclose(f);
    /* the run says which precision its convolutions used (amp=True: bf16 where the CPU has it) */
    snprintf(path, sizeof path, "grep -q 'precision: .* convolutions' '%s/run/train.log'", dir);
    cr_assert_eq(system(path), 0, "train.log names the precision (%s/run)", dir);
    test_remove_dir(dir);
}

/* yolo26n (end-to-end head, reg_max 1) through the real command, small: 512 images at imgsz 64 for
 * 12 epochs (about a minute). Its one-to-one head, which validation decodes, produces boxes later
 * than yolov8n's (mAP50 ~0 for the first 6 epochs here), so the bar is lower than yolov8n's. */
Test(trainlearns, yolo26n_on_synthetic_shapes, .timeout = 600) {
    enum { E = 12 };
    char dir[256], path[512];
    test_temp_dir(dir, sizeof dir, "learn26");
    double loss[MAX_EPOCHS], map50[MAX_EPOCHS];
    train_small(dir, "yolo26n.yaml", 64, 64, E, "threads=1", loss, map50);
    cr_assert_lt(loss[E - 1], 0.8 * loss[0], "loss falls: %.3f -> %.3f", loss[0], loss[E - 1]);
    cr_assert_gt(map50[E - 1], map50[0] + 0.08, "mAP50 rises: %.3f -> %.3f", map50[0],
                 map50[E - 1]);
    snprintf(path, sizeof path, "%s/run/weights/last.h5", dir);
    size_t cnt = 0, dims[4];
    int nd = 0;
    float *w = oracle_read_f32(path, "ema/model.23.one2one_cv3.0.2.bias", &cnt, &nd, dims);
    cr_assert(w, "one-to-one class head in %s", path);
    cr_assert_eq(cnt, 3, "nc=3 from the dataset");
    free(w);
    test_remove_dir(dir);
}

/* data=<dataset.yaml> end to end on coco8 (80 class names, 4+4 images; a copy in a read-only
 * folder): packed into the cache folder on first use, one epoch at imgsz 64, nc=80 reaches the
 * model (the saved class head has 80 outputs), and the run directory holds train.log with the val
 * table. */
Test(trainlearns, coco8_yaml_one_epoch, .timeout = 300) {
    const char *src = shared_path("data/coco8");
    cr_assert(src, "shared coco8 missing");
    char dir[256], cmd[2048], path[512], ro[300];
    test_temp_dir(dir, sizeof dir, "coco8");
    snprintf(ro, sizeof ro, "%s/coco8", dir);
    test_copy(src, ro);
    snprintf(cmd, sizeof cmd, "chmod a-w '%s'", ro);
    cr_assert_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "XDG_CACHE_HOME=%s/cache '%s' train data=%s/coco8.yaml model=yolov8n.yaml epochs=1 "
             "imgsz=64 batch=2 workers=1 threads=1 project=%s name=run > %s/log.txt 2>&1",
             dir, bin_path("coordinator"), ro, dir, dir);
    int rc = system(cmd);
    cr_assert_eq(rc, 0, "training exited %d; see %s/log.txt", rc, dir);
    snprintf(path, sizeof path, "%s/run/results.csv", dir);
    FILE *f = fopen(path, "r");
    cr_assert(f, "%s missing", path);
    char line[1024];
    int rows = 0;
    while (fgets(line, sizeof line, f)) rows++;
    fclose(f);
    cr_assert_eq(rows, 2, "header and one epoch row");
    snprintf(cmd, sizeof cmd, "ls %s/cache/yolo-cluster/coco8-*.h5 >/dev/null", dir);
    cr_assert_eq(system(cmd), 0, "the pack was cached in the cache folder");
    snprintf(path, sizeof path, "%s/run/weights/last.h5", dir);
    size_t n = 0, dims[4];
    int nd = 0;
    float *w = oracle_read_f32(path, "ema/model.22.cv3.0.2.bias", &n, &nd, dims);
    cr_assert(w, "class head bias in %s", path);
    cr_assert_eq(n, 80, "nc from the dataset: 80 class outputs, got %zu", n);
    free(w);
    snprintf(cmd, sizeof cmd,
             "grep -q '80 classes' %s/run/train.log && grep -q ' all ' %s/run/train.log && "
             "! grep -q \"$(printf '\\r')\" %s/run/train.log",
             dir, dir, dir);
    cr_assert_eq(system(cmd), 0, "train.log has the start line and the val table, no redraws");
    test_remove_dir(dir);
}
