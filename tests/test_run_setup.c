#include "coordinator/results_csv.h"
#include "coordinator/rundir.h"
#include "coordinator/shard_plan.h"
#include "common/train_args.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/testenv.h"

static int parse(train_args *a, char *err, int n, char **argv) {
    kv_args kv;
    if (kv_parse(n, argv, &kv, err, 256) != 0) return -1;
    int rc = train_args_parse(&kv, a, err, 256);
    kv_free(&kv);
    return rc;
}

Test(runsetup, train_args_defaults_and_errors) {
    train_args a;
    char err[256];
    char *ok[] = {"data=/etc/hostname", "epochs=3", "lr0=0.02", "cos_lr=True"};
    cr_assert_eq(parse(&a, err, 4, ok), 0, "%s", err);
    cr_assert_eq(a.epochs, 3);
    cr_assert_eq(a.batch, 16, "Ultralytics default batch");
    cr_assert_float_eq(a.momentum, 0.937, 1e-12);
    cr_assert(a.cos_lr);
    struct {
        char *arg, *expect;
    } bad[] = {{"epochs=-1", "epochs=-1"},
               {"batch=0", "batch=0"},
               {"lr0=abc", "lr0=abc"},
               {"colour=red", "colour"},
               {"data=/nonexistent.h5", "not found"},
               {"optimizer=Lion", "optimizer=Lion"},
               {"device=cuda", "not implemented"},
               {"device=tpu", "device=tpu"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *argv[] = {"data=/etc/hostname", bad[i].arg};
        cr_assert_eq(parse(&a, err, 2, argv), -1, "%s should fail", bad[i].arg);
        cr_assert(strstr(err, bad[i].expect), "'%s' names the problem: %s", bad[i].arg, err);
    }
    char *indiv[] = {"data=/etc/hostname", "batch=10", "workers=4"};
    cr_assert_eq(parse(&a, err, 3, indiv), -1);
    cr_assert(strstr(err, "batch=8") && strstr(err, "12"), "suggests divisible values: %s", err);
}

Test(runsetup, args_yaml_lists_every_key) {
    train_args a;
    char err[256];
    char *argv[] = {"data=/etc/hostname", "epochs=7"};
    cr_assert_eq(parse(&a, err, 2, argv), 0, "%s", err);
    strcpy(a.save_dir, "runs/x");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    train_args_write_yaml(&a, f);
    fclose(f);
    cr_assert(strstr(buf, "\nepochs: 7\n"));
    cr_assert(strstr(buf, "\nlr0: 0.01\n"));
    cr_assert(strstr(buf, "\nsave_dir: runs/x\n"));
    free(buf);
}

/* A resumed run parses its args.yaml text back: every number must come back exactly. */
Test(runsetup, args_yaml_reads_back_exactly) {
    train_args a, b;
    char err[256];
    char *argv[] = {"data=/etc/hostname", "lr0=0.0123456789012345",      "momentum=0.1",
                    "weight_decay=3e-7",  "fraction=0.3333333333333333", "epochs=7"};
    cr_assert_eq(parse(&a, err, 6, argv), 0, "%s", err);
    char *text = train_args_yaml_text(&a);
    kv_args kv = {0};
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *colon = strstr(line, ": ");
        cr_assert(colon, "%s", line);
        *colon = 0;
        if (strcmp(line, "save_dir") && strcmp(colon + 2, "null")) kv_set(&kv, line, colon + 2);
    }
    free(text);
    cr_assert_eq(train_args_parse(&kv, &b, err, sizeof err), 0, "%s", err);
    kv_free(&kv);
    cr_assert_eq(b.lr0, a.lr0, "lr0 %.17g vs %.17g", b.lr0, a.lr0);
    cr_assert_eq(b.fraction, a.fraction);
    cr_assert_eq(b.weight_decay, a.weight_decay);
    cr_assert_eq(b.momentum, 0.1);
    cr_assert_eq(b.epochs, 7);
}

Test(runsetup, rundir_increments) {
    char dir[256], out[512], err[256];
    test_temp_dir(dir, sizeof dir, "rundir");
    cr_assert_eq(rundir_create(dir, "exp", false, out, sizeof out, err, sizeof err), 0, "%s", err);
    cr_assert(strstr(out, "/exp") && !strstr(out, "exp2"));
    cr_assert_eq(rundir_create(dir, "exp", false, out, sizeof out, err, sizeof err), 0);
    cr_assert(strstr(out, "/exp2"), "%s", out);
    cr_assert_eq(rundir_create(dir, "exp", false, out, sizeof out, err, sizeof err), 0);
    cr_assert(strstr(out, "/exp3"), "%s", out);
    cr_assert_eq(rundir_create(dir, "exp", true, out, sizeof out, err, sizeof err), 0);
    cr_assert(!strstr(out, "exp4") && strstr(out, "/exp"), "exist_ok reuses: %s", out);
    test_remove_dir(dir);
}

Test(runsetup, results_csv_format) {
    char dir[256], path[300], err[256];
    test_temp_dir(dir, sizeof dir, "results");
    snprintf(path, sizeof path, "%s/results.csv", dir);
    epoch_row r = {.epoch = 1,
                   .time = 12.3456789,
                   .train = {1.234567, 2, 3},
                   .map50 = 0.123456,
                   .n_lr = 3,
                   .lr = {0.0001234567, 0.1, 0.2}};
    cr_assert_eq(results_csv_append(path, &r, err, sizeof err), 0, "%s", err);
    r.epoch = 2;
    cr_assert_eq(results_csv_append(path, &r, err, sizeof err), 0, "%s", err);
    FILE *f = fopen(path, "r");
    char line[512];
    cr_assert(fgets(line, sizeof line, f));
    cr_assert_str_eq(line, "epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,"
                           "metrics/precision(B),metrics/recall(B),metrics/mAP50(B),"
                           "metrics/mAP50-95(B),val/box_loss,val/cls_loss,val/dfl_loss,lr/pg0,"
                           "lr/pg1,lr/pg2\n");
    cr_assert(fgets(line, sizeof line, f));
    cr_assert_str_eq(line, "1,12.3457,1.23457,2,3,0,0,0.12346,0,0,0,0,0.000123457,0.1,0.2\n");
    cr_assert(fgets(line, sizeof line, f) && line[0] == '2', "one header, then rows");
    fclose(f);
    test_remove_dir(dir);
}

Test(runsetup, shard_plan_same_global_batches_for_any_worker_count) {
    shard_plan p1, p2, p4;
    cr_assert_eq(shard_plan_make(&p1, 37, 8, 1, 5, 3), 0);
    cr_assert_eq(shard_plan_make(&p2, 37, 8, 2, 5, 3), 0);
    cr_assert_eq(shard_plan_make(&p4, 37, 8, 4, 5, 3), 0);
    cr_assert_eq(p1.steps, 5);
    int seen[37] = {0};
    for (int s = 0; s < p1.steps; s++) {
        const int32_t *g = shard_plan_slice(&p1, s, 0);
        for (int w = 0; w < 4; w++) {
            const int32_t *x = shard_plan_slice(&p4, s, w);
            for (int i = 0; i < 2; i++) cr_assert_eq(x[i], g[w * 2 + i]);
        }
        for (int w = 0; w < 2; w++)
            cr_assert_eq(memcmp(shard_plan_slice(&p2, s, w), g + 4 * w, 4 * sizeof *g), 0);
        for (int i = 0; i < 8; i++) seen[g[i]]++;
    }
    for (int i = 0; i < 37; i++) cr_assert(seen[i] >= 1, "sample %d in the epoch", i);
    shard_plan other;
    cr_assert_eq(shard_plan_make(&other, 37, 8, 1, 5, 4), 0);
    cr_assert_neq(memcmp(other.order, p1.order, 8 * sizeof *p1.order), 0, "epochs reshuffle");
    shard_plan_free(&p1), shard_plan_free(&p2), shard_plan_free(&p4), shard_plan_free(&other);
}
