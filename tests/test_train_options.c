/* Training options that change what a run does: early stopping (patience) and periodic weights
 * (save_period). Tiny runs: an untrained model's fitness (mAP50-95) stays 0, and Ultralytics'
 * EarlyStopping never stops while its best fitness is 0 ("allow for early zero-fitness stage").
 * The rule itself, with fitness that rises and stalls, is tested in test_ultralytics_versions.c. */
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

Test(trainoptions, zero_fitness_never_stops_early_and_save_period_keeps_epochs, .timeout = 300) {
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
    /* fitness 0 every epoch: the best epoch moves along, patience=2 never runs out */
    cr_assert_eq(rows, 6, "all 6 epochs while fitness is 0, got %d rows", rows);
    snprintf(path, sizeof path, "%s/log.txt", dir);
    snprintf(cmd, sizeof cmd, "grep -q 'stopping training early' %s", path);
    cr_assert_neq(system(cmd), 0, "no early stop announced");
    for (int e = 0; e < 6; e++) {
        char rel[64];
        snprintf(rel, sizeof rel, "weights/epoch%d.h5", e);
        cr_assert(exists(run, rel), "save_period=1 keeps %s", rel);
    }
    cr_assert(!exists(run, "weights/epoch6.h5"), "no weights past the last epoch");
    cr_assert(exists(run, "weights/last.h5") && exists(run, "weights/best.h5"));
    test_remove_dir(dir);
}
