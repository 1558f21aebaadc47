/* End to end, in small: synthesize a dataset, train yolov8n for a few epochs through the real
 * command (coordinator + 1 worker under mpirun), and check that it learns: the training loss falls
 * and mAP50 rises well above its first-epoch value. About a minute on 2 cores. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EPOCHS 6

static void read_results(const char *path, double loss[EPOCHS], double map50[EPOCHS]) {
    FILE *f = fopen(path, "r");
    cr_assert(f, "%s missing", path);
    char line[1024];
    cr_assert(fgets(line, sizeof line, f), "header");
    cr_assert(strstr(line, "metrics/mAP50(B)"), "Ultralytics columns: %s", line);
    int n = 0;
    while (n < EPOCHS && fgets(line, sizeof line, f)) {
        double v[9];
        int k = sscanf(line, "%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &v[0], &v[1], &v[2], &v[3],
                       &v[4], &v[5], &v[6], &v[7], &v[8]);
        cr_assert_eq(k, 9, "row %d: %s", n + 1, line);
        cr_assert_eq((int)v[0], n + 1, "epoch column");
        loss[n] = v[2] + v[3] + v[4];
        map50[n] = v[7];
        n++;
    }
    fclose(f);
    cr_assert_eq(n, EPOCHS, "one row per epoch");
}

Test(trainlearns, yolov8n_on_synthetic_shapes, .timeout = 600) {
    char dir[] = "/tmp/yolo-learn-XXXXXX", cmd[2048];
    cr_assert(mkdtemp(dir));
    snprintf(cmd, sizeof cmd,
             "./bin/coordinator data synth out=%s/s.h5 train=512 val=64 imgsz=128 classes=3 "
             "seed=1 >/dev/null",
             dir);
    cr_assert_eq(system(cmd), 0, "synth");
    snprintf(cmd, sizeof cmd,
             "./bin/coordinator train data=%s/s.h5 model=yolov8n.yaml epochs=%d imgsz=96 "
             "batch=16 nbs=16 workers=1 mosaic=0 optimizer=SGD lr0=0.01 warmup_epochs=1 "
             "project=%s name=run > %s/log.txt 2>&1",
             dir, EPOCHS, dir, dir);
    int rc = system(cmd);
    cr_assert_eq(rc, 0, "training exited %d; see %s/log.txt", rc, dir);
    double loss[EPOCHS], map50[EPOCHS];
    char path[512];
    snprintf(path, sizeof path, "%s/run/results.csv", dir);
    read_results(path, loss, map50);
    cr_log_info("loss %.3f -> %.3f, mAP50 %.3f -> %.3f", loss[0], loss[EPOCHS - 1], map50[0],
                map50[EPOCHS - 1]);
    cr_assert_lt(loss[EPOCHS - 1], 0.7 * loss[0], "training loss falls: %.3f -> %.3f", loss[0],
                 loss[EPOCHS - 1]);
    cr_assert_gt(map50[EPOCHS - 1], map50[0] + 0.25, "mAP50 rises: %.3f -> %.3f", map50[0],
                 map50[EPOCHS - 1]);
    snprintf(path, sizeof path, "%s/run/weights/best.h5", dir);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "best weights written");
    fclose(f);
    snprintf(path, sizeof path, "%s/run/args.yaml", dir);
    f = fopen(path, "r");
    cr_assert(f, "args.yaml written");
    fclose(f);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}
