/* Training options that change what a run does: early stopping (patience) and periodic weights
 * (save_period). Tiny runs: an untrained model's fitness (mAP50-95) stays 0, so it never improves
 * after the first epoch. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/testenv.h"

static int count_rows(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int n = 0;
    char line[2048];
    while (fgets(line, sizeof line, f)) n++;
    fclose(f);
    return n - 1; /* header */
}

static int exists(const char *dir, const char *rel) {
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    return access(p, F_OK) == 0;
}

Test(trainoptions, patience_stops_and_save_period_keeps_epochs, .timeout = 300) {
    char dir[256], cmd[2048], run[512];
    test_temp_dir(dir, sizeof dir, "trainopt");
    const char *coord = bin_path("coordinator");
    snprintf(cmd, sizeof cmd,
             "'%s' data synth out=%s/s.h5 train=16 val=8 imgsz=64 classes=2 seed=0 >/dev/null",
             coord, dir);
    cr_assert_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "timeout 240 '%s' train data=%s/s.h5 model=yolov8n.yaml epochs=6 imgsz=64 batch=8 "
             "workers=1 threads=1 loader_threads=1 patience=2 save_period=1 project=%s name=r "
             "> %s/log.txt 2>&1",
             coord, dir, dir, dir);
    cr_assert_eq(system(cmd), 0, "see %s/log.txt", dir);
    snprintf(run, sizeof run, "%s/r", dir);
    char path[600];
    snprintf(path, sizeof path, "%s/results.csv", run);
    int rows = count_rows(path);
    /* best stays epoch 1 (index 0): stop after index 2, i.e. 3 epochs of the 6 */
    cr_assert_eq(rows, 3, "early stop after 3 epochs, got %d rows", rows);
    snprintf(path, sizeof path, "%s/log.txt", dir);
    snprintf(cmd, sizeof cmd, "grep -q 'stopping training early' %s", path);
    cr_assert_eq(system(cmd), 0, "the stop is announced");
    cr_assert(exists(run, "weights/epoch0.h5") && exists(run, "weights/epoch1.h5") &&
              exists(run, "weights/epoch2.h5"));
    cr_assert(!exists(run, "weights/epoch3.h5"), "no weights past the stop");
    cr_assert(exists(run, "weights/last.h5") && exists(run, "weights/best.h5"));
    test_remove_dir(dir);
}
