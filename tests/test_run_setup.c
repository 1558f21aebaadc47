#include "coordinator/preflight.h"
#include "coordinator/results_csv.h"
#include "coordinator/rundir.h"
#include "coordinator/shard_plan.h"
#include "common/train_args.h"
#include "dataio/pack.h"
#include "worker/device.h"

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
               {"device=tpu", "device=tpu"},
               {"device=0,", "device=0,"},
               {"device=0,0", "listed twice"},
               {"device=cuda:x", "expected cpu, cuda"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *argv[] = {"data=/etc/hostname", bad[i].arg};
        cr_assert_eq(parse(&a, err, 2, argv), -1, "%s should fail", bad[i].arg);
        cr_assert(strstr(err, bad[i].expect), "'%s' names the problem: %s", bad[i].arg, err);
    }
    char *indiv[] = {"data=/etc/hostname", "batch=10", "workers=4"};
    cr_assert_eq(parse(&a, err, 3, indiv), -1);
    cr_assert(strstr(err, "batch=8") && strstr(err, "12"), "suggests divisible values: %s", err);
}

/* device= in Ultralytics' syntax: what each form selects (whether the GPUs exist is checked by
 * the workers and before launch, not by the parser). */
Test(runsetup, device_forms_and_amp_bf16) {
    train_args a;
    char err[256];
    int ids[4] = {-9, -9, -9, -9};
    struct {
        char *arg;
        int n, first, second;
    } forms[] = {{"device=cpu", 0, -9, -9},   {"device=cuda", -1, -9, -9},
                 {"device=cuda:3", 1, 3, -9}, {"device=0", 1, 0, -9},
                 {"device=0,1", 2, 0, 1},     {"device=2,0", 2, 2, 0}};
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        char *argv[] = {"data=/etc/hostname", forms[i].arg};
        cr_assert_eq(parse(&a, err, 2, argv), 0, "%s: %s", forms[i].arg, err);
        for (int k = 0; k < 4; k++) ids[k] = -9;
        cr_assert_eq(train_args_gpus(&a, ids, 4), forms[i].n, "%s", forms[i].arg);
        cr_assert_eq(ids[0], forms[i].first, "%s", forms[i].arg);
        cr_assert_eq(ids[1], forms[i].second, "%s", forms[i].arg);
    }
    char *bf16_cpu[] = {"data=/etc/hostname", "amp=bf16"}; /* CPU: bf16 convolutions */
    cr_assert_eq(parse(&a, err, 2, bf16_cpu), 0, "%s", err);
    cr_assert(train_args_bf16(&a));
    char *bf16_gpu[] = {"data=/etc/hostname", "amp=bf16", "device=0"};
    cr_assert_eq(parse(&a, err, 3, bf16_gpu), 0, "%s", err);
}

/* deterministic= on a GPU: True (the default) takes cuDNN's heuristic choices among deterministic
 * algorithms (no timing: the same choices every run); False times them and allows every
 * algorithm. The GPU index and amp's precision pass through. */
Test(runsetup, deterministic_picks_how_cudnn_chooses) {
    train_args a;
    char err[256];
    char *def[] = {"data=/etc/hostname", "device=1"};
    cr_assert_eq(parse(&a, err, 2, def), 0, "%s", err);
    cr_assert(a.deterministic, "Ultralytics' default");
    backend_cuda_opts o = device_cuda_options(1, device_precision(&a, NULL), a.deterministic);
    cr_assert_eq(o.device, 1);
    cr_assert_eq(o.precision, BACKEND_PRECISION_BF16, "amp=True");
    cr_assert_eq(o.search, BACKEND_CONV_HEURISTIC);
    cr_assert_not(o.nondeterministic);
    cr_assert_eq(o.depthwise, BACKEND_DEPTHWISE_AUTO);
    char *fast[] = {"data=/etc/hostname", "device=0", "deterministic=False", "amp=False"};
    cr_assert_eq(parse(&a, err, 4, fast), 0, "%s", err);
    o = device_cuda_options(0, device_precision(&a, NULL), a.deterministic);
    cr_assert_eq(o.precision, BACKEND_PRECISION_TF32, "amp=False");
    cr_assert_eq(o.search, BACKEND_CONV_FIND);
    cr_assert(o.nondeterministic);
}

/* amp= on the CPU: True (the default) and fp16 train bf16 convolutions only where every worker's
 * CPU multiplies bf16 natively; False and fp32 always fp32; bf16 always bf16. The line says which
 * and names the reason. */
Test(runsetup, amp_on_the_cpu_follows_native_bf16) {
    struct {
        const char *amp;
        bool native;
        conv2d_prec want;
        const char *says;
    } cases[] = {
        {NULL, true, CONV2D_BF16, "AVX512_BF16"},    {NULL, false, CONV2D_FP32, "no AVX512_BF16"},
        {"amp=fp16", true, CONV2D_BF16, "amp=fp16"}, {"amp=False", true, CONV2D_FP32, "amp=False"},
        {"amp=fp32", true, CONV2D_FP32, "amp=fp32"}, {"amp=bf16", true, CONV2D_BF16, "amp=bf16"},
        {"amp=bf16", false, CONV2D_BF16, "emulated"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        train_args a;
        char err[256], why[160];
        char *argv[] = {"data=/etc/hostname", (char *)cases[i].amp};
        cr_assert_eq(parse(&a, err, cases[i].amp ? 2 : 1, argv), 0, "%s", err);
        conv2d_prec p = device_cpu_precision(&a, cases[i].native, why, sizeof why);
        cr_assert_eq(p, cases[i].want, "%s native %d: %s", a.amp, cases[i].native, why);
        cr_assert(strstr(why, p == CONV2D_BF16 ? "bf16" : "fp32"), "names it: %s", why);
        cr_assert(strstr(why, cases[i].says), "says why (%s): %s", cases[i].says, why);
    }
}

/* batch=64 on a 16-image train split: lowered to the split (Ultralytics' min(batch, len(dataset)))
 * with a warning naming both numbers, and then a multiple of workers; nothing silent. */
Test(runsetup, batch_larger_than_the_split_is_lowered_with_a_warning) {
    char dir[256], data[400], arg[420], err[512];
    test_temp_dir(dir, sizeof dir, "batchlow");
    snprintf(data, sizeof data, "%s/s.h5", dir);
    int count[SPLIT_COUNT] = {16, 4, 0};
    pack_stats st;
    cr_assert_eq(pack_synth(data, count, 64, 2, 0, &st, err, sizeof err), 0, "%s", err);
    snprintf(arg, sizeof arg, "data=%s", data);
    char logp[300];
    snprintf(logp, sizeof logp, "%s/stderr.txt", dir);
    struct {
        char *batch, *workers;
        long want;
    } cases[] = {{"batch=64", "workers=1", 16}, {"batch=60", "workers=3", 15}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        train_args a;
        char *argv[] = {arg, cases[i].batch, cases[i].workers};
        cr_assert_eq(parse(&a, err, 3, argv), 0, "%s", err);
        fflush(stderr);
        int saved = dup(2);
        FILE *lf = fopen(logp, "w");
        cr_assert(lf);
        dup2(fileno(lf), 2);
        dataset *ds = NULL;
        int rc = preflight_train(&a, (int)a.workers, 0, NULL, &ds, err, sizeof err);
        fflush(stderr);
        dup2(saved, 2);
        close(saved);
        fclose(lf);
        cr_assert_eq(rc, 0, "%s", err);
        dataset_close(ds);
        cr_assert_eq(a.batch, cases[i].want, "%s %s: batch %ld", cases[i].batch, cases[i].workers,
                     a.batch);
        char text[1024] = "", want[64];
        FILE *r = fopen(logp, "r");
        cr_assert(r);
        size_t n = fread(text, 1, sizeof text - 1, r);
        text[n] = 0;
        fclose(r);
        snprintf(want, sizeof want, "using batch=%ld", cases[i].want);
        cr_assert(strstr(text, "is more than the 16 training images") && strstr(text, want),
                  "the warning names both numbers: %s", text);
    }
    test_remove_dir(dir);
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
