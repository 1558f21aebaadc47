/* The `ultralytics=` setting (suite `ulversion`): the release table, the arguments each release
 * has, and the schedule, early-stopping and close_mosaic rules that differ between 8.4.33 and
 * 8.4.190, with hand-derived values for small and large datasets. */
#include "common/pyrepr.h"
#include "common/train_args.h"
#include "common/ultralytics_version.h"
#include "coordinator/train_prep.h"
#include "kernels/schedule.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse(train_args *a, char *err, int n, char **argv) {
    kv_args kv;
    if (kv_parse(n, argv, &kv, err, 512) != 0) return -1;
    int rc = train_args_parse(&kv, a, err, 512);
    kv_free(&kv);
    return rc;
}

static char *yaml_of(const train_args *a) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    train_args_write_yaml(a, f);
    fclose(f);
    return buf;
}

Test(ulversion, names_default_and_unknown_release_refused) {
    cr_assert_str_eq(ul_version_name(UL_8_4_33), "8.4.33");
    cr_assert_str_eq(ul_version_name(UL_8_4_190), "8.4.190");
    cr_assert_eq(UL_VERSION_DEFAULT, UL_8_4_190, "follows the release pip installs today");
    ul_version v;
    cr_assert_eq(ul_version_parse("8.4.33", &v), 0);
    cr_assert_eq(v, UL_8_4_33);
    cr_assert_eq(ul_version_parse("8.4", &v), -1);
    train_args a;
    char err[512];
    char *def[] = {"data=/etc/hostname"};
    cr_assert_eq(parse(&a, err, 1, def), 0, "%s", err);
    cr_assert_eq(a.ultralytics, UL_8_4_190);
    char *bad[] = {"data=/etc/hostname", "ultralytics=8.3.40"};
    cr_assert_eq(parse(&a, err, 2, bad), -1);
    cr_assert(strstr(err, "ultralytics=8.3.40") && strstr(err, "8.4.33, 8.4.190"),
              "names the value and the supported releases: %s", err);
}

Test(ulversion, args_yaml_records_the_release_and_its_keys) {
    train_args a;
    char err[512];
    char *v190[] = {"data=/etc/hostname", "cls_pw=0.5", "nms=False"};
    cr_assert_eq(parse(&a, err, 3, v190), 0, "%s", err);
    char *y = yaml_of(&a);
    cr_assert(strstr(y, "\nultralytics: 8.4.190\n"), "%s", y);
    cr_assert(strstr(y, "\ncls_pw: 0.5\n") && strstr(y, "\nnms: false\n") &&
              strstr(y, "\ncls_remap: true\n") && strstr(y, "\nchannels_last: null\n"));
    free(y);
    char *v33[] = {"data=/etc/hostname", "ultralytics=8.4.33"};
    cr_assert_eq(parse(&a, err, 2, v33), 0, "%s", err);
    y = yaml_of(&a);
    cr_assert(strstr(y, "\nultralytics: 8.4.33\n"));
    cr_assert(!strstr(y, "cls_pw") && !strstr(y, "\nnms:") && !strstr(y, "cls_remap"),
              "8.4.33 has none of the 8.4.190 keys: %s", y);
    free(y);
}

Test(ulversion, new_arguments_work_or_are_refused_by_name) {
    train_args a;
    char err[512];
    struct {
        const char *arg, *expect;
    } bad[] = {
        {"amp=half", "amp=half"},                  /* not a value Ultralytics knows */
        {"cls_pw=1.5", "cls_pw=1.5"},              /* Ultralytics asserts 0 <= cls_pw <= 1 */
        {"nms=maybe", "nms=maybe"},                /* True, False or None */
        {"optimizer=RAdam", "does not implement"}, /* theirs, not ours */
        {"fraction=2.5", "fraction=2.5"},          /* a count must be whole */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *argv[] = {"data=/etc/hostname", (char *)bad[i].arg};
        cr_assert_eq(parse(&a, err, 2, argv), -1, "%s should be refused", bad[i].arg);
        cr_assert(strstr(err, bad[i].expect), "%s: %s", bad[i].arg, err);
    }
    /* 8.4.190 keys under 8.4.33: refused with the release that has them */
    const char *new_keys[] = {"cls_pw=0.2", "cls_remap=False", "channels_last=True", "nms=False"};
    for (size_t i = 0; i < 4; i++) {
        char *argv[] = {"data=/etc/hostname", "ultralytics=8.4.33", (char *)new_keys[i]};
        cr_assert_eq(parse(&a, err, 3, argv), -1, "%s under 8.4.33", new_keys[i]);
        cr_assert(strstr(err, "8.4.33") && strstr(err, "8.4.190"), "%s", err);
    }
    char *amp33[] = {"data=/etc/hostname", "ultralytics=8.4.33", "amp=fp16"};
    cr_assert_eq(parse(&a, err, 3, amp33), -1, "amp is a bool in 8.4.33");
    char *ok[] = {"data=/etc/hostname", "amp=fp32", "channels_last=True", "cls_remap=False",
                  "optimizer=musgd",    "nms=None", "pretrained=False"};
    cr_assert_eq(parse(&a, err, 7, ok), 0, "%s", err);
    cr_assert(!train_args_bf16(&a));
    cr_assert_str_eq(a.optimizer, "MuSGD", "case-insensitive, as Ultralytics");
    cr_assert_eq(a.nms, -1);
    cr_assert_eq(a.channels_last, 1);
    cr_assert(!a.cls_remap);
    char *bf[] = {"data=/etc/hostname", "amp=bf16"}; /* mixed-precision convolutions */
    cr_assert_eq(parse(&a, err, 2, bf), 0, "%s", err);
    cr_assert(train_args_bf16(&a));
    /* deprecated end2end maps onto nms in 8.4.190 */
    char *e2e[] = {"data=/etc/hostname", "end2end=True"};
    cr_assert_eq(parse(&a, err, 2, e2e), 0, "%s", err);
    cr_assert_eq(a.nms, 0);
    cr_assert(train_args_val_one2one(&a));
}

Test(ulversion, validation_head_of_yolo26) {
    train_args a;
    char err[512];
    char *d190[] = {"data=/etc/hostname"};
    cr_assert_eq(parse(&a, err, 1, d190), 0);
    cr_assert(!train_args_val_one2one(&a), "8.4.190 default: one-to-many + NMS");
    char *t190[] = {"data=/etc/hostname", "nms=True"};
    cr_assert_eq(parse(&a, err, 2, t190), 0);
    cr_assert(!train_args_val_one2one(&a), "nms=True (embed on export) validates with NMS too");
    char *f190[] = {"data=/etc/hostname", "nms=False"};
    cr_assert_eq(parse(&a, err, 2, f190), 0);
    cr_assert(train_args_val_one2one(&a), "nms=False: one-to-one head + top-k");
    char *d33[] = {"data=/etc/hostname", "ultralytics=8.4.33"};
    cr_assert_eq(parse(&a, err, 2, d33), 0);
    cr_assert(train_args_val_one2one(&a), "8.4.33 always validates yolo26 end to end");
}

Test(ulversion, fraction_images_per_release) {
    train_args a;
    char err[512];
    char *v[] = {"data=/etc/hostname", "fraction=0.25"};
    cr_assert_eq(parse(&a, err, 2, v), 0);
    cr_assert_eq(train_args_train_images(&a, 10), 2, "round(2.5) is 2 (half to even)");
    cr_assert_eq(train_args_train_images(&a, 14), 4, "round(3.5) is 4");
    cr_assert_eq(train_args_train_images(&a, 2), 1, "8.4.190: at least 1 (round(0.5) = 0)");
    char *cnt[] = {"data=/etc/hostname", "fraction=7"};
    cr_assert_eq(parse(&a, err, 2, cnt), 0, "%s", err);
    cr_assert_eq(train_args_train_images(&a, 100), 7, "8.4.190: an integer > 1 is a count");
    cr_assert_eq(train_args_train_images(&a, 5), 5);
    char *c33[] = {"data=/etc/hostname", "ultralytics=8.4.33", "fraction=7"};
    cr_assert_eq(parse(&a, err, 3, c33), -1, "8.4.33 has no image counts: %s", err);
    char *f33[] = {"data=/etc/hostname", "ultralytics=8.4.33", "fraction=0.35"};
    cr_assert_eq(parse(&a, err, 3, f33), 0);
    cr_assert_eq(train_args_train_images(&a, 10), 4, "round(3.5) = 4, not floor 3");
}

Test(ulversion, python_float_repr) {
    char b[64];
    struct {
        double x;
        const char *s;
    } c[] = {{0.01, "0.01"},
             {0.0005, "0.0005"},
             {1e-05, "1e-05"},
             {0.9, "0.9"},
             {0.937, "0.937"},
             {1.0, "1.0"},
             {0.001429, "0.001429"},
             {100.0, "100.0"},
             {1e16, "1e+16"},
             {0.1 + 0.2, "0.30000000000000004"},
             {-2.5, "-2.5"},
             {0.0, "0.0"},
             {123456.789, "123456.789"},
             {0.0001, "0.0001"}};
    for (size_t i = 0; i < sizeof c / sizeof *c; i++)
        cr_assert_str_eq(py_float_repr(c[i].x, b, sizeof b), c[i].s, "repr(%.17g)", c[i].x);
}

/* ---- schedule: warmup length, accumulation and its ramp ------------------------------------- */

static sched_cfg cfg_for(ul_version v, int epochs, int batch, double warmup_epochs) {
    sched_cfg c = sched_defaults(epochs, batch);
    c.warmup_epochs = warmup_epochs;
    c.warmup_leaves_last_epoch = ul_behaviour_of(v)->warmup_leaves_last_epoch;
    return c;
}

/* Runs the trainer's loop of iteration ni over `epochs` x nb with sched_apply and
 * sched_should_step, as worker/trainer.c does; returns the optimizer steps, and the accumulate
 * of each of the first 8 iterations in acc_seen. */
static int simulate(ul_version v, int epochs, int batch, long nb, double we, int time_mode,
                    int acc_seen[8]) {
    sched_cfg c = cfg_for(v, epochs, batch, we);
    int acc = sched_accumulate_capped(&c, ul_behaviour_of(v)->accumulate_capped, nb, time_mode);
    c.accumulate_target = ul_behaviour_of(v)->accumulate_capped ? acc : 0;
    optim_group g[OPTIM_MAX_GROUPS];
    optimizer o = {.kind = OPTIM_SGD, .ngroups = optim_default_groups(OPTIM_SGD, 0.01, 0.9, 0, g)};
    memcpy(o.group, g, sizeof g);
    long last = -1, ni = 0;
    int steps = 0;
    for (int e = 0; e < epochs; e++) {
        long nw = sched_warmup_iters(&c, nb);
        for (long i = 0; i < nb; i++, ni++) {
            acc = sched_apply(&c, e, ni, nw, acc, &o);
            if (ni < 8) acc_seen[ni] = acc;
            if (sched_should_step(ni, last, acc)) steps++, last = ni;
        }
    }
    return steps;
}

Test(ulversion, warmup_iterations_small_and_large_datasets) {
    /* small: 16 images, batch 8 -> nb 2 */
    sched_cfg c33 = cfg_for(UL_8_4_33, 2, 8, 3.0), c190 = cfg_for(UL_8_4_190, 2, 8, 3.0);
    cr_assert_eq(sched_warmup_iters(&c33, 2), 100, "8.4.33: at least 100 iterations");
    cr_assert_eq(sched_warmup_iters(&c190, 2), 2, "8.4.190: min(3, epochs - 1) = 1 epoch of 2");
    c190.epochs = 1;
    cr_assert_eq(sched_warmup_iters(&c190, 2), -1, "8.4.190: no warmup when epochs = 1");
    c190.epochs = 100;
    cr_assert_eq(sched_warmup_iters(&c190, 2), 6);
    c190.warmup_epochs = 1.25; /* 1.25 * 2 = 2.5 rounds half to even */
    cr_assert_eq(sched_warmup_iters(&c190, 2), 2);
    c190.warmup_epochs = 0;
    cr_assert_eq(sched_warmup_iters(&c190, 2), -1);
    /* large: 100000 images, batch 16 -> nb 6250: both give 3 epochs of iterations */
    c33 = cfg_for(UL_8_4_33, 100, 16, 3.0), c190 = cfg_for(UL_8_4_190, 100, 16, 3.0);
    cr_assert_eq(sched_warmup_iters(&c33, 6250), 18750);
    cr_assert_eq(sched_warmup_iters(&c190, 6250), 18750);
    /* time mode re-estimates epochs: 8.4.190's warmup follows (epochs 2 -> 1 epoch) */
    c190.epochs = 2;
    cr_assert_eq(sched_warmup_iters(&c190, 6250), 6250);
    c33.epochs = 2;
    cr_assert_eq(sched_warmup_iters(&c33, 6250), 18750, "8.4.33 ignores epochs");
}

Test(ulversion, accumulate_cap_and_ramp_small_and_large_datasets) {
    /* small: nb 2, epochs 2, batch 8: nominal round(64 / 8) = 8, capped at nb * epochs = 4 */
    sched_cfg c = cfg_for(UL_8_4_190, 2, 8, 3.0);
    cr_assert_eq(sched_accumulate(&c), 8);
    cr_assert_eq(sched_accumulate_capped(&c, 1, 2, 0), 4);
    cr_assert_eq(sched_accumulate_capped(&c, 1, 2, 1), 8, "time mode: no cap");
    cr_assert_eq(sched_accumulate_capped(&c, 0, 2, 0), 8, "8.4.33: no cap");
    /* weight decay scales with the nominal accumulate, before the cap */
    cr_assert_float_eq(sched_weight_decay(&c, 0.0005, sched_accumulate(&c)), 0.0005, 1e-18);
    int seen[8] = {0};
    /* 8.4.190: warmup nw = 2 ramps accumulate 1, round(2.5) = 2, 4 over ni 0..2, then stays 4:
     * one optimizer step (at ni 0) in the 4 iterations */
    int steps = simulate(UL_8_4_190, 2, 8, 2, 3.0, 0, seen);
    cr_assert_eq(seen[0], 1);
    cr_assert_eq(seen[1], 2);
    cr_assert_eq(seen[2], 4);
    cr_assert_eq(seen[3], 4);
    cr_assert_eq(steps, 1);
    /* 8.4.33: 100 warmup iterations ramping to 64 / 8 = 8: accumulate is still 1 at ni 0..7, so
     * every iteration steps */
    steps = simulate(UL_8_4_33, 2, 8, 2, 3.0, 0, seen);
    for (int i = 0; i < 4; i++) cr_assert_eq(seen[i], 1, "ni %d", i);
    cr_assert_eq(steps, 4);
    /* one epoch in 8.4.190: no warmup, accumulate = min(8, 2) = 2 from the first iteration */
    steps = simulate(UL_8_4_190, 1, 8, 2, 3.0, 0, seen);
    cr_assert_eq(seen[0], 2);
    cr_assert_eq(steps, 1, "ni 1 steps");
    /* large dataset: the cap never bites; both ramp to 4 (batch 16) */
    c = cfg_for(UL_8_4_190, 100, 16, 3.0);
    cr_assert_eq(sched_accumulate_capped(&c, 1, 6250, 0), 4);
    int s33 = simulate(UL_8_4_33, 3, 16, 6250, 3.0, 0, seen),
        s190 = simulate(UL_8_4_190, 3, 16, 6250, 3.0, 0, seen);
    cr_assert_gt(s33, 3 * 6250 / 4, "more steps while accumulate ramps up: %d", s33);
    cr_assert_gt(s190, 3 * 6250 / 4);
}

Test(ulversion, warmup_ramp_target_differs_when_nbs_over_batch_is_fractional) {
    /* batch 24: nbs / batch = 2.67; 8.4.33 ramps to 2.67, 8.4.190 to round(2.67) = 3. Midway
     * (ni 50 of 100) 8.4.33 gives round(1.83) = 2, 8.4.190 round(2.0) = 2; at ni 70: round(2.17)
     * = 2 against round(2.4) = 2; at ni 80 round(2.33) = 2 against round(2.6) = 3. */
    optim_group g[OPTIM_MAX_GROUPS];
    optimizer o = {.kind = OPTIM_SGD, .ngroups = optim_default_groups(OPTIM_SGD, 0.01, 0.9, 0, g)};
    memcpy(o.group, g, sizeof g);
    sched_cfg c33 = cfg_for(UL_8_4_33, 100, 24, 3.0), c190 = cfg_for(UL_8_4_190, 100, 24, 3.0);
    c190.accumulate_target = sched_accumulate_capped(&c190, 1, 1000, 0);
    cr_assert_eq(c190.accumulate_target, 3);
    cr_assert_eq(sched_apply(&c33, 0, 80, 100, 1, &o), 2);
    cr_assert_eq(sched_apply(&c190, 0, 80, 100, 1, &o), 3);
    cr_assert_eq(sched_apply(&c33, 0, 100, 100, 1, &o), 3, "round(2.67) at the end");
    cr_assert_eq(sched_apply(&c190, 0, 100, 100, 1, &o), 3);
}

/* ---- close_mosaic ---------------------------------------------------------------------------- */

static int first_closed(ul_version v, long epochs, long close, long *n_closed) {
    train_args a = {.ultralytics = v, .close_mosaic = close};
    bool off = false;
    int first = -1;
    *n_closed = 0;
    for (long e = 0; e < epochs; e++) {
        off = train_prep_mosaic_closed(&a, e, epochs, off);
        if (off && first < 0) first = (int)e;
        *n_closed += off;
    }
    return first;
}

Test(ulversion, close_mosaic_small_and_large_runs) {
    long n;
    cr_assert_eq(first_closed(UL_8_4_190, 100, 10, &n), 90);
    cr_assert_eq(n, 10);
    cr_assert_eq(first_closed(UL_8_4_33, 100, 10, &n), 90);
    cr_assert_eq(n, 10);
    /* close_mosaic >= epochs: 8.4.190 closes from the first epoch, 8.4.33 never */
    cr_assert_eq(first_closed(UL_8_4_190, 5, 10, &n), 0);
    cr_assert_eq(n, 5);
    cr_assert_eq(first_closed(UL_8_4_33, 5, 10, &n), -1);
    cr_assert_eq(first_closed(UL_8_4_33, 10, 10, &n), 0, "equal: epoch 0 == 10 - 10");
    cr_assert_eq(first_closed(UL_8_4_190, 5, 0, &n), -1, "close_mosaic=0: never");
    cr_assert_eq(first_closed(UL_8_4_33, 5, 0, &n), -1);
    /* `time` re-estimates epochs between epochs: 8.4.190 closes once it is past the boundary,
     * 8.4.33 only on the exact epoch (so it can miss it); once closed it stays closed */
    train_args a190 = {.ultralytics = UL_8_4_190, .close_mosaic = 2};
    train_args a33 = {.ultralytics = UL_8_4_33, .close_mosaic = 2};
    long est[] = {10, 4, 3, 9, 9}; /* epochs as re-estimated before epochs 0..4 */
    bool off190 = false, off33 = false;
    bool want190[] = {false, false, true, true, true}; /* epoch 2 >= 4 - 2 */
    for (int e = 0; e < 5; e++) {
        off190 = train_prep_mosaic_closed(&a190, e, est[e], off190);
        off33 = train_prep_mosaic_closed(&a33, e, est[e], off33);
        cr_assert_eq(off190, want190[e], "8.4.190 epoch %d", e);
        cr_assert(!off33, "8.4.33 epoch %d: epoch == epochs - 2 never happens here", e);
    }
}

/* ---- early stopping -------------------------------------------------------------------------- */

Test(ulversion, early_stopping_rule) {
    early_stop es = {.best = 0, .best_epoch = -1};
    double fit[] = {0, 0, 0.3, 0.2, 0.3, 0.25};
    bool due[6];
    for (int e = 0; e < 6; e++) {
        train_prep_early_stop_update(&es, e, fit[e]);
        due[e] = train_prep_early_stop_due(&es, e, 2);
    }
    cr_assert_eq(es.best_epoch, 2, "a tie (0.3 at epoch 4) is no improvement");
    cr_assert(!due[0] && !due[1] && !due[2] && !due[3], "zero fitness moves the best along");
    cr_assert(due[4] && due[5], "2 epochs without improvement after epoch 2");
    early_stop z = {.best = 0, .best_epoch = -1};
    for (int e = 0; e < 10; e++) {
        train_prep_early_stop_update(&z, e, 0.0);
        cr_assert(!train_prep_early_stop_due(&z, e, 2), "never while the best is 0");
    }
    cr_assert(!train_prep_early_stop_due(&es, 5, 0), "patience 0: never");
}
