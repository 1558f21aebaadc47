/* Exact resume through the real commands (coordinator + workers under mpirun, CPU):
 *   - a 2-worker run killed with SIGKILL (every process of the job) right after a mid-epoch
 *     version, then resumed, ends bit-identical to the same run uninterrupted (every tensor of
 *     the final version: model, EMA, optimizer; results.csv but its wall-clock time column);
 *   - resumed on 1 worker with 2 micro-batches instead: parameters and optimizer state
 *     bit-identical (as the distributed tests find for 2 workers vs 1 x 2 micro-batches); the BN
 *     running statistics differ by design (see there), so validation metrics are not compared;
 *   - a `ctl save` version taken mid-epoch while an optimizer step is half accumulated resumes
 *     exactly too;
 *   - refusals before launch (exit 2, one line, nothing written), resume=auto, and the run lock.
 * Small runs: 40 images at imgsz 64, batch 8 (5 steps an epoch). */
#include "coordinator/ckpt_file.h"
#include "kernels/bf16.h"
#include "runs.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARGS                                                                                       \
    "model=yolov8n.yaml imgsz=64 batch=8 threads=1 loader_threads=1 bucket_mb=0.25 exist_ok=True"

static int train(const char *dir, const char *name, const char *env, const char *extra) {
    return run_sh("%s timeout 300 \"$YOLO_COORD\" train data=%s/s.h5 " ARGS
                  " project=%s name=%s %s >> %s/%s.log 2>&1",
                  env, dir, dir, name, extra, dir, name);
}

/* Starts a job in its own session (setsid) in the background; returns the session id. */
static pid_t train_bg(const char *dir, const char *name, const char *env, const char *extra) {
    char sidf[256];
    snprintf(sidf, sizeof sidf, "%s/%s.sid", dir, name);
    cr_assert_eq(run_sh("setsid sh -c 'echo $$ > %s; %s exec timeout 300 \"$YOLO_COORD\" train "
                        "data=%s/s.h5 " ARGS " project=%s name=%s %s' >> %s/%s.log 2>&1 &",
                        sidf, env, dir, dir, name, extra, dir, name),
                 0);
    cr_assert(run_wait_file(sidf, 30), "job started");
    usleep(100000);
    int sid = run_read_rc(sidf);
    cr_assert_gt(sid, 1);
    return (pid_t)sid;
}

static void version_path(char *out, size_t n, const char *dir, const char *run, int v) {
    snprintf(out, n, "%s/%s/weights/v%04d.h5", dir, run, v);
}

typedef bool (*tensor_filter)(const char *name);

static bool every_tensor(const char *name) {
    (void)name;
    return true;
}

/* Parameters and optimizer state: what 1 worker x 2 micro-batches reproduces bit for bit. */
static bool params_and_optimizer(const char *name) {
    return !strstr(name, "running_") && !strstr(name, "num_batches_tracked");
}

/* Compares the selected tensors of two versions (each read and checked against its sha256);
 * returns how many differ (the first named in worst). */
static int differing_tensors(const char *pa, const char *pb, tensor_filter keep, int *compared,
                             char *worst, size_t wn) {
    char err[512];
    ckpt_file *a = ckpt_open(pa, err, sizeof err), *b = ckpt_open(pb, err, sizeof err);
    cr_assert(a && b, "open %s and %s: %s", pa, pb, err);
    int bad = 0;
    *compared = 0;
    worst[0] = 0;
    for (int i = 0; i < ckpt_num_tensors(a); i++) {
        const ckpt_tensor *t = ckpt_tensor_at(a, i);
        if (!keep(t->name)) continue;
        int j = ckpt_find_tensor(b, t->name);
        cr_assert_geq(j, 0, "%s has no %s", pb, t->name);
        size_t bytes = (size_t)ckpt_tensor_numel(t) * ckpt_dtype_size(t->dtype);
        char *x = malloc(bytes + 8), *y = malloc(bytes + 8);
        cr_assert_eq(ckpt_read_tensor(a, i, x, err, sizeof err), 0, "%s", err);
        cr_assert_eq(ckpt_read_tensor(b, j, y, err, sizeof err), 0, "%s", err);
        if (memcmp(x, y, bytes) && !bad++) snprintf(worst, wn, "%s", t->name);
        (*compared)++;
        free(x);
        free(y);
    }
    cr_assert_eq(ckpt_num_tensors(a), ckpt_num_tensors(b), "same tensor count");
    ckpt_close(a);
    ckpt_close(b);
    return bad;
}

/* results.csv with the wall-clock column (time) removed, or only the given columns (1-based). */
static void csv_columns(const char *path, const int *cols, int ncols, char *out, size_t n) {
    FILE *f = fopen(path, "r");
    cr_assert(f, "%s missing", path);
    char line[2048];
    size_t len = 0;
    out[0] = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        int col = 1;
        for (char *tok = strtok(line, ","); tok; tok = strtok(NULL, ","), col++) {
            bool take = false;
            if (!cols) take = col != 2;
            for (int k = 0; k < ncols && !take; k++) take = cols[k] == col;
            if (take) len += (size_t)snprintf(out + len, n - len, "%s,", tok);
        }
        len += (size_t)snprintf(out + len, n - len, "\n");
    }
    fclose(f);
}

static const ckpt_meta *open_meta(ckpt_file **f, const char *path) {
    char err[512];
    *f = ckpt_open(path, err, sizeof err);
    cr_assert(*f, "%s", err);
    return ckpt_file_meta(*f);
}

/* The reference run and the one killed after its mid-epoch version (v0002 = after step 2 of
 * epoch 2; v0001 is epoch 1's). */
static void reference_and_killed(const char *dir, const char *extra) {
    cr_assert_eq(train(dir, "ref", "YOLO_TEST_SAVE_AT=2:2", extra), 0, "see %s/ref.log", dir);
    pid_t sid = train_bg(dir, "b", "YOLO_TEST_SAVE_AT=2:2 YOLO_TEST_HOLD_AFTER_VERSION=2", extra);
    char log[256], p[256];
    snprintf(log, sizeof log, "%s/b.log", dir);
    cr_assert(run_wait_text(log, "holding after v0002", 240), "reached v0002; see %s", log);
    int killed = run_kill_session(sid, 30);
    cr_assert_geq(killed, 4, "launcher, mpirun, coordinator and workers killed (%d)", killed);
    version_path(p, sizeof p, dir, "b", 3);
    cr_assert_neq(access(p, F_OK), 0, "nothing after v0002");
    ckpt_file *f;
    version_path(p, sizeof p, dir, "b", 2);
    const ckpt_meta *m = open_meta(&f, p);
    cr_assert_str_eq(m->reason, "save");
    cr_assert(m->epoch == 2 && m->step == 2 && m->steps == 5 && !m->epoch_complete);
    ckpt_close(f);
}

/* Kill after the mid-epoch version, resume: the final version equals the uninterrupted run's. */
static void kill_and_resume(const char *extra) {
    char dir[64], pa[256], pb[256], worst[256];
    run_make_data(dir, sizeof dir, "yolo-resume", 40, 8);
    reference_and_killed(dir, extra);
    char rb[160];
    snprintf(rb, sizeof rb, "resume=%s/b", dir);
    cr_assert_eq(train(dir, "b", "", rb), 0, "resume: see %s/b.log", dir);
    snprintf(pa, sizeof pa, "%s/b.log", dir);
    cr_assert(run_file_has(pa, "resuming ") && run_file_has(pa, "v0002.h5"),
              "says what it resumes");
    cr_assert(!run_file_has(pa, "was trained with"), "the same arithmetic: no warning");
    /* ref: v1 epoch 1, v2 save, v3 epoch 2, v4 epoch 3; resumed: the same numbers */
    version_path(pa, sizeof pa, dir, "ref", 4);
    version_path(pb, sizeof pb, dir, "b", 4);
    int n = 0, bad = differing_tensors(pa, pb, every_tensor, &n, worst, sizeof worst);
    cr_log_info("final version: %d tensors compared, %d differ", n, bad);
    cr_assert_gt(n, 1000, "model, EMA and optimizer tensors");
    cr_assert_eq(bad, 0, "bit-identical to the uninterrupted run; first difference: %s", worst);
    ckpt_file *fa, *fb;
    const ckpt_meta *ma = open_meta(&fa, pa), *mb = open_meta(&fb, pb);
    cr_assert(mb->finished && mb->epoch == 3 && mb->iterations == ma->iterations);
    cr_assert_eq(mb->optimizer_steps, ma->optimizer_steps);
    cr_assert_eq(mb->ema_updates, ma->ema_updates);
    ckpt_close(fa);
    ckpt_close(fb);
    version_path(pb, sizeof pb, dir, "b", 3);
    open_meta(&fb, pb);
    cr_assert_str_eq(ckpt_file_meta(fb)->parent_version, "v0002", "lineage through the kill");
    ckpt_close(fb);
    static char ca[8192], cb[8192];
    snprintf(pa, sizeof pa, "%s/ref/results.csv", dir);
    snprintf(pb, sizeof pb, "%s/b/results.csv", dir);
    csv_columns(pa, NULL, 0, ca, sizeof ca);
    csv_columns(pb, NULL, 0, cb, sizeof cb);
    cr_assert_str_eq(cb, ca, "results.csv equal but for the time column");
    cr_assert_eq(run_sh("test $(wc -l < %s) -eq 4", pb), 0, "header and 3 rows, none repeated");
    run_sh("rm -rf %s", dir);
}

Test(resume, sigkill_after_a_mid_epoch_version_then_resume_is_bit_identical, .timeout = 900) {
    kill_and_resume("workers=2 epochs=3 nbs=8");
}

/* With mosaic on (close_mosaic=0) partners come from pools reaching 15 global batches back,
 * across the epoch boundary: the resumed workers rebuild them from the plans they receive. */
Test(resume, with_mosaic_the_resumed_run_draws_the_same_partners, .timeout = 900) {
    kill_and_resume("workers=2 epochs=3 nbs=8 close_mosaic=0");
}

Test(resume, on_one_worker_with_two_micro_batches_matches_two_workers, .timeout = 900) {
    char dir[64], pa[256], pb[256], worst[256];
    run_make_data(dir, sizeof dir, "yolo-resume1", 40, 8);
    reference_and_killed(dir, "workers=2 epochs=3 nbs=8");
    char rb[200];
    snprintf(rb, sizeof rb, "resume=%s/b workers=1 micro_batch=4", dir);
    cr_assert_eq(train(dir, "b", "", rb), 0, "resume on 1 worker: see %s/b.log", dir);
    version_path(pa, sizeof pa, dir, "ref", 4);
    version_path(pb, sizeof pb, dir, "b", 4);
    int n = 0, bad = differing_tensors(pa, pb, params_and_optimizer, &n, worst, sizeof worst);
    cr_log_info("1 worker x 2 micro-batches after the resume: %d parameter/optimizer tensors, %d "
                "differ",
                n, bad);
    cr_assert_gt(n, 700, "parameters (model, EMA) and optimizer moments");
    cr_assert_eq(bad, 0, "bit-identical parameters and optimizer state; first difference: %s",
                 worst);
    ckpt_file *f;
    cr_assert_eq(open_meta(&f, pb)->world_size, 1, "written by the 1-worker job");
    ckpt_close(f);
    /* training losses (columns 3-5) and learning rates (13-15) the same, to the printed digit */
    static char ca[8192], cb[8192];
    int cols[] = {1, 3, 4, 5, 13, 14, 15};
    snprintf(pa, sizeof pa, "%s/ref/results.csv", dir);
    snprintf(pb, sizeof pb, "%s/b/results.csv", dir);
    csv_columns(pa, cols, 7, ca, sizeof ca);
    csv_columns(pb, cols, 7, cb, sizeof cb);
    cr_assert_str_eq(cb, ca);
    run_sh("rm -rf %s", dir);
}

/* A run saved in bf16 (amp=True on an AVX512_BF16 CPU), resumed where the workers' CPUs are
 * taken for ones without (YOLO_TEST_CPU_NO_BF16: the default is then fp32): the resume goes on,
 * says in one warning that it no longer matches the uninterrupted run, and the new versions
 * record fp32. */
Test(resume, a_change_of_arithmetic_is_warned_and_recorded, .timeout = 900) {
    if (!bf16_cpu_has_native()) cr_skip_test("this CPU has no AVX512_BF16: amp=True trains fp32");
    char dir[64], p[256];
    run_make_data(dir, sizeof dir, "yolo-resumeprec", 40, 8);
    pid_t sid = train_bg(dir, "b", "YOLO_TEST_SAVE_AT=1:2 YOLO_TEST_HOLD_AFTER_VERSION=1",
                         "workers=1 epochs=2");
    char log[256];
    snprintf(log, sizeof log, "%s/b.log", dir);
    cr_assert(run_wait_text(log, "holding after v0001", 240), "reached v0001; see %s", log);
    cr_assert_geq(run_kill_session(sid, 30), 3, "job killed");
    ckpt_file *f;
    version_path(p, sizeof p, dir, "b", 1);
    cr_assert_eq(strncmp(open_meta(&f, p)->precision, "bf16 ", 5), 0, "saved in bf16: %s",
                 ckpt_file_meta(f)->precision);
    ckpt_close(f);
    char rb[160];
    snprintf(rb, sizeof rb, "resume=%s/b", dir);
    cr_assert_eq(train(dir, "b", "YOLO_TEST_CPU_NO_BF16=1", rb), 0, "resume: see %s", log);
    cr_assert(run_file_has(log, "resume: v0001 was trained with bf16 arithmetic, this run "
                                "computes in fp32"),
              "the change is said; see %s", log);
    version_path(p, sizeof p, dir, "b", 3);
    cr_assert_eq(strncmp(open_meta(&f, p)->precision, "fp32 ", 5), 0, "v0003 records fp32: %s",
                 ckpt_file_meta(f)->precision);
    cr_assert(ckpt_file_meta(f)->finished);
    ckpt_close(f);
    run_sh("rm -rf %s", dir);
}

/* batch 8, nbs 24, no warmup: an optimizer step every 3 steps, so a save after step 1 or 2 of
 * epoch 1 holds both workers' half-accumulated gradients. Rank 2 stalls 5 s at step 2 so that the
 * `ctl save` lands mid-epoch. The run then finishes; resuming from the save version must end with
 * the same final version as the run itself. */
Test(resume, ctl_save_mid_epoch_resumes_exactly, .timeout = 900) {
    char dir[64], p[256], pa[256], pb[256], worst[256];
    run_make_data(dir, sizeof dir, "yolo-resumectl", 40, 8);
    const char *extra = "workers=2 epochs=2 nbs=24 warmup_epochs=0";
    cr_assert_eq(run_sh("(YOLO_TEST_STALL_RANK=2 YOLO_TEST_STALL_SECONDS=5 timeout 300 "
                        "\"$YOLO_COORD\" train data=%s/s.h5 " ARGS
                        " project=%s name=live %s > %s/live.log 2>&1; echo $? > %s/live.rc) &",
                        dir, dir, extra, dir, dir),
                 0);
    snprintf(p, sizeof p, "%s/live/endpoints.json", dir);
    cr_assert(run_wait_file(p, 120), "endpoints.json; see %s/live.log", dir);
    cr_assert_eq(run_sh("\"$YOLO_COORD\" ctl %s/live save > /dev/null", dir), 0, "ctl save");
    snprintf(p, sizeof p, "%s/live.rc", dir);
    cr_assert(run_wait_file(p, 240), "the run ends");
    usleep(300000);
    cr_assert_eq(run_read_rc(p), 0, "see %s/live.log", dir);
    ckpt_file *f;
    version_path(p, sizeof p, dir, "live", 1);
    const ckpt_meta *m = open_meta(&f, p);
    cr_log_info("ctl save landed after step %d of epoch %d; pending gradient sums of %d ranks",
                m->step, m->epoch, m->grad_accum_ranks);
    cr_assert_str_eq(m->reason, "save");
    cr_assert(m->epoch == 1 && m->step < m->steps, "mid-epoch");
    cr_assert_eq(m->grad_accum_ranks, 2, "an optimizer step was half accumulated");
    ckpt_close(f);
    /* the run's own final version is v0003 (v2 = end of epoch 1); keep its results */
    version_path(pa, sizeof pa, dir, "live", 3);
    open_meta(&f, pa);
    cr_assert(ckpt_file_meta(f)->finished);
    ckpt_close(f);
    cr_assert_eq(run_sh("cp %s/live/results.csv %s/ref.csv", dir, dir), 0);
    char rb[200];
    snprintf(rb, sizeof rb, "resume=%s/live/weights/v0001.h5", dir);
    cr_assert_eq(train(dir, "live", "", rb), 0, "resume: see %s/live.log", dir);
    version_path(pb, sizeof pb, dir, "live", 5);
    int n = 0, bad = differing_tensors(pa, pb, every_tensor, &n, worst, sizeof worst);
    cr_log_info("resumed from the ctl save version: %d tensors, %d differ", n, bad);
    cr_assert_eq(bad, 0, "bit-identical; first difference: %s", worst);
    open_meta(&f, pb);
    cr_assert_str_eq(ckpt_file_meta(f)->parent_version, "v0004");
    ckpt_close(f);
    version_path(p, sizeof p, dir, "live", 4);
    open_meta(&f, p);
    cr_assert_str_eq(ckpt_file_meta(f)->parent_version, "v0001", "branches from the save");
    ckpt_close(f);
    static char ca[8192], cb[8192];
    snprintf(pa, sizeof pa, "%s/ref.csv", dir);
    snprintf(pb, sizeof pb, "%s/live/results.csv", dir);
    csv_columns(pa, NULL, 0, ca, sizeof ca);
    csv_columns(pb, NULL, 0, cb, sizeof cb);
    cr_assert_str_eq(cb, ca, "results.csv continued from the save, equal but for time");
    run_sh("rm -rf %s", dir);
}

/* Exit code and first coordinator line on stderr of a train command. */
static int train_msg(const char *dir, const char *args, char *out, size_t n) {
    int rc = run_sh("timeout 300 \"$YOLO_COORD\" train data=%s/s.h5 " ARGS
                    " project=%s %s > /dev/null 2> %s/msg.txt",
                    dir, dir, args, dir);
    char p[256];
    snprintf(p, sizeof p, "%s/msg.txt", dir);
    FILE *f = fopen(p, "r");
    cr_assert(f);
    out[0] = 0;
    char line[1024];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "coordinator:", 12)) {
            snprintf(out, n, "%s", line);
            break;
        }
    fclose(f);
    return rc;
}

static int count_versions(const char *dir, const char *run) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "ls %s/%s/weights 2>/dev/null | grep -c '^v.*\\.h5$'", dir, run);
    FILE *p = popen(cmd, "r");
    int n = 0;
    if (fscanf(p, "%d", &n) != 1) n = 0;
    pclose(p);
    return n;
}

Test(resume, impossible_resumes_are_refused_before_launch, .timeout = 900) {
    char dir[64], out[1024], args[1024];
    run_make_data(dir, sizeof dir, "yolo-resumeno", 16, 8);
    cr_assert_eq(run_sh("\"$YOLO_COORD\" data synth out=%s/other.h5 train=16 val=8 imgsz=64 "
                        "classes=3 seed=4 >/dev/null && cp models/yolov8.yaml %s/yolov8.yaml",
                        dir, dir),
                 0);
    /* a 1-epoch run with a mid-epoch version v0001 and the final v0002; the model from a copy of
     * the yaml, so that the test can change it */
    snprintf(args, sizeof args, "workers=1 epochs=1 model=%s/yolov8n.yaml", dir);
    cr_assert_eq(train(dir, "r", "YOLO_TEST_SAVE_AT=1:1", args), 0, "see %s/r.log", dir);
    cr_assert_eq(count_versions(dir, "r"), 2);
    struct {
        const char *args, *expect;
    } cases[] = {
        {"resume=%s/nope", "no such run folder or version file"},
        {"resume=%s/s.h5", "not a yolo-cluster checkpoint"},
        {"resume=%s/r", "finished at epoch 1 of 1"},
        {"resume=True name=nope", "no run folder"},
        {"resume=%s/r/weights/v0001.h5 model=yolov8s.yaml", "model=yolov8s.yaml differs"},
        {"resume=%s/r/weights/v0001.h5 lr0=0.02", "lr0=0.02 differs"},
        {"resume=%s/r/weights/v0001.h5 data=%s/other.h5", "is not the one"},
        {"resume=%s/r/weights/v0001.h5 epochs=9", "epochs=9 differs"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char a[1024], c[700];
        snprintf(c, sizeof c, cases[i].args, dir, dir);
        snprintf(a, sizeof a, "model=%s/yolov8n.yaml %s", dir, c); /* the run's, unless c says */
        int rc = train_msg(dir, a, out, sizeof out);
        cr_assert_eq(rc, 2, "%s: exit %d (%s)", a, rc, out);
        cr_assert(strstr(out, cases[i].expect), "%s: %s", a, out);
    }
    /* the yaml the run was trained with changes: refused */
    cr_assert_eq(run_sh("echo '# edited' >> %s/yolov8.yaml", dir), 0);
    snprintf(args, sizeof args, "resume=%s/r/weights/v0001.h5 model=%s/yolov8n.yaml", dir, dir);
    cr_assert_eq(train_msg(dir, args, out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "differs from the one v0001.h5 was trained with"), "%s", out);
    /* a run folder without a complete version: the damaged newest is named */
    cr_assert_eq(run_sh("mkdir -p %s/d/weights && head -c 5000 %s/r/weights/v0002.h5 > "
                        "%s/d/weights/v0001.h5",
                        dir, dir, dir),
                 0);
    snprintf(args, sizeof args, "resume=%s/d", dir);
    cr_assert_eq(train_msg(dir, args, out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "no complete checkpoint version") && strstr(out, "truncated"), "%s", out);
    cr_assert_eq(count_versions(dir, "r"), 2, "no refusal wrote a version");
    cr_assert_eq(run_sh("test ! -e %s/nope && test ! -e %s/d/results.csv", dir, dir), 0,
                 "no refusal made a run folder or results");
    /* resume=auto: a finished run has nothing to do (exit 0); a folder without versions starts
     * fresh in exactly that folder */
    snprintf(args, sizeof args, "resume=auto name=r model=%s/yolov8n.yaml", dir);
    cr_assert_eq(train_msg(dir, args, out, sizeof out), 0);
    cr_assert_eq(run_sh("mkdir -p %s/fresh/weights", dir), 0);
    cr_assert_eq(train(dir, "fresh", "", "resume=auto workers=1 epochs=1"), 0, "see %s/fresh.log",
                 dir);
    cr_assert_eq(count_versions(dir, "fresh"), 1, "trained in fresh/, not fresh2/");
    run_sh("rm -rf %s", dir);
}

/* A live run holds its folder: a second run there is refused; `ctl stop` leaves a version that
 * resume=auto continues to the end. */
Test(resume, second_run_on_a_live_folder_is_refused_and_stop_resumes, .timeout = 900) {
    char dir[64], p[256], out[1024];
    run_make_data(dir, sizeof dir, "yolo-resumelock", 40, 8);
    cr_assert_eq(run_sh("(YOLO_TEST_STALL_RANK=1 YOLO_TEST_STALL_SECONDS=6 timeout 300 "
                        "\"$YOLO_COORD\" train data=%s/s.h5 " ARGS
                        " project=%s name=lk workers=1 epochs=2 val=False > %s/lk.log 2>&1; "
                        "echo $? > %s/lk.rc) &",
                        dir, dir, dir, dir),
                 0);
    snprintf(p, sizeof p, "%s/lk/endpoints.json", dir);
    cr_assert(run_wait_file(p, 120), "live; see %s/lk.log", dir);
    int rc = train_msg(dir, "name=lk workers=1 epochs=1", out, sizeof out);
    cr_assert_eq(rc, 2, "second run: exit %d (%s)", rc, out);
    cr_assert(strstr(out, "in use by another run") && strstr(out, "pid "), "%s", out);
    cr_assert_eq(run_sh("\"$YOLO_COORD\" ctl %s/lk stop > /dev/null", dir), 0);
    snprintf(p, sizeof p, "%s/lk.rc", dir);
    cr_assert(run_wait_file(p, 240));
    usleep(300000);
    cr_assert_eq(run_read_rc(p), 0, "stopped cleanly; see %s/lk.log", dir);
    ckpt_file *f;
    snprintf(p, sizeof p, "%s/lk/weights/last.h5", dir);
    const ckpt_meta *m = open_meta(&f, p);
    cr_assert_str_eq(m->reason, "stop");
    cr_assert(!m->finished && m->epoch == 1, "resumable, in epoch 1");
    ckpt_close(f);
    cr_assert_eq(train(dir, "lk", "", "resume=auto"), 0, "see %s/lk.log", dir);
    snprintf(p, sizeof p, "%s/lk/weights/last.h5", dir);
    m = open_meta(&f, p);
    cr_assert(m->finished && m->epoch == 2, "continued to the end");
    ckpt_close(f);
    snprintf(p, sizeof p, "%s/lk/results.csv", dir);
    cr_assert_eq(run_sh("test $(wc -l < %s) -eq 3", p), 0, "2 epoch rows");
    run_sh("rm -rf %s", dir);
}
