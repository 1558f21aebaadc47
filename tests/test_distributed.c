/* Distributed training through the real `coordinator train` command (coordinator + N workers under
 * mpirun, each run wrapped in `timeout`):
 *   - N workers x k images train exactly like 1 worker x N micro-batches of k images on the same
 *     global batches (weights/last.h5 compared tensor by tensor);
 *   - validation split over 2 workers gives the same metrics as on one worker;
 *   - a silent worker is named in a warning and, past stall_abort, the job aborts naming it. */
#include "runs.h"

#include <criterion/criterion.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Small runs: 40 train images, batch 8, nbs 8 (an optimizer step every step): 5 steps. */
#define RUN_ARGS                                                                                   \
    "model=yolov8n.yaml epochs=1 imgsz=64 batch=8 nbs=8 threads=1 loader_threads=1 "               \
    "bucket_mb=0.25 exist_ok=True"

/* Runs one training job; returns its exit code. Output goes to <dir>/<name>.log. */
static int train(const char *dir, const char *name, const char *env, const char *extra) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s timeout 120 \"$YOLO_COORD\" train data=%s/s.h5 " RUN_ARGS
             " project=%s name=%s %s > %s/%s.log 2>&1",
             env ? env : "", dir, dir, name, extra, dir, name);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Columns 6..12 of results.csv row 1 (precision, recall, mAP50, mAP50-95, val box/cls/dfl). */
static void read_metrics(const char *path, double v[7]) {
    FILE *f = fopen(path, "r");
    cr_assert(f, "%s missing", path);
    char line[1024];
    cr_assert(fgets(line, sizeof line, f) && fgets(line, sizeof line, f), "%s: one row", path);
    fclose(f);
    double r[12];
    cr_assert_eq(sscanf(line, "%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &r[0], &r[1],
                        &r[2], &r[3], &r[4], &r[5], &r[6], &r[7], &r[8], &r[9], &r[10], &r[11]),
                 12, "%s: %s", path, line);
    for (int k = 0; k < 7; k++) v[k] = r[5 + k];
}

static void check_equivalent(int workers) {
    char dir[64], extra[128], pa[256], pb[256];
    /* 2 workers: 5 steps (40 images); 4 workers: 2 steps (16 images), see below. */
    run_make_data(dir, sizeof dir, "yolo-dist", workers == 2 ? 40 : 16, 8);
    int share = 8 / workers;
    /* 4 workers: the rounding argument below needs warmup steps (8.4.33 warms up for at least
     * 100 iterations; 8.4.190 has no warmup in a 1-epoch run, so its first step is a full one) */
    const char *ver = workers == 4 ? "ultralytics=8.4.33" : "";
    snprintf(extra, sizeof extra, "workers=%d %s", workers, ver);
    cr_assert_eq(train(dir, "multi", NULL, extra), 0, "%d workers: see %s/multi.log", workers, dir);
    snprintf(extra, sizeof extra, "workers=1 micro_batch=%d %s", share, ver);
    cr_assert_eq(train(dir, "micro", NULL, extra), 0, "1 worker: see %s/micro.log", dir);
    snprintf(pa, sizeof pa, "%s/multi/weights/last.h5", dir);
    snprintf(pb, sizeof pb, "%s/micro/weights/last.h5", dir);
    run_cmp c = run_compare_weights(pa, pb);
    cr_log_info("%d workers x %d vs 1 x %d micro-batches of %d: %d parameter tensors, max rel diff "
                "%.3g (%s); %d BN buffers, max rel diff %.3g",
                workers, share, workers, share, c.tensors, c.max_rel_param, c.worst, c.buffers,
                c.max_rel_buffer);
    cr_assert_eq(c.missing, 0, "same tensors in both files");
    cr_assert_gt(c.tensors, 100, "parameters compared");
    cr_assert_gt(c.buffers, 50, "buffers compared");
    if (workers == 2) {
        /* The all-reduce computes g1 + g2 (x2 then /2 are exact) and the single worker adds its
         * two micro-batch gradients the same way: the same float operations, bit for bit. */
        cr_assert_eq(c.max_rel_param, 0.0, "parameters bitwise equal: max rel diff %.3g in %s",
                     c.max_rel_param, c.worst);
    } else {
        /* MPI sums 4 ranks pairwise, (g1 + g2) + (g3 + g4); the single worker sums in sequence,
         * ((g1 + g2) + g3) + g4: the gradients differ by rounding (~1 ulp). After 2 warmup steps
         * (the first moves only biases) parameters differ by < 1e-6 of each tensor's max.
         * Training then amplifies the difference (AdamW moves an element by about lr * sign(g)
         * wherever g is near zero; BN feeds it forward): after 5 steps we measured up to 3e-4 of
         * the max of tiny BN-bias tensors (4e-8 absolute), so this case runs 2 steps. */
        cr_assert_leq(c.max_rel_param, 1e-5, "parameters: max relative difference %.3g in %s",
                      c.max_rel_param, c.worst);
    }
    /* Buffers are NOT expected to match: the running stats are worker 0's, which saw only its own
     * share (one BN update per step), while the single worker updates them once per micro-batch
     * (N updates per step, over all images). They must differ, and only at the scale of the
     * statistics of different images. */
    cr_assert_gt(c.max_rel_buffer, 1e-4, "BN running stats come from different images");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(distributed, two_workers_equal_one_worker_two_micro_batches, .timeout = 300) {
    check_equivalent(2);
}

Test(distributed, four_workers_equal_one_worker_four_micro_batches, .timeout = 300) {
    check_equivalent(4);
}

/* The trainer's GPU paths (batch ring with page-locked buffers and uploads ahead, forward from
 * device memory, the loss on the backend writing device head gradients, device result buffer)
 * over the CPU backend's device-memory mode: 2 workers train bit for bit as on host memory. */
Test(distributed, device_memory_paths_train_bit_for_bit_like_host_memory, .timeout = 300) {
    char dir[64], pa[256], pb[256];
    run_make_data(dir, sizeof dir, "yolo-devmem", 24, 8);
    cr_assert_eq(train(dir, "host", NULL, "workers=2"), 0, "see %s/host.log", dir);
    cr_assert_eq(train(dir, "dev", "YOLO_TEST_DEVICE_MEMORY=1", "workers=2"), 0, "see %s/dev.log",
                 dir);
    snprintf(pa, sizeof pa, "%s/host/weights/last.h5", dir);
    snprintf(pb, sizeof pb, "%s/dev/weights/last.h5", dir);
    run_cmp c = run_compare_weights(pa, pb);
    cr_assert_eq(c.missing, 0);
    cr_assert_gt(c.tensors, 100);
    cr_assert_eq(c.max_rel_param, 0.0, "parameters: %.3g in %s", c.max_rel_param, c.worst);
    cr_assert_eq(c.max_rel_buffer, 0.0, "BN buffers: %.3g", c.max_rel_buffer);
    /* every column but the time: losses, metrics, learning rates */
    cr_assert_eq(run_sh("cut -d, -f1,3- %s/host/results.csv > %s/a.csv && cut -d, -f1,3- "
                        "%s/dev/results.csv > %s/b.csv && cmp -s %s/a.csv %s/b.csv",
                        dir, dir, dir, dir, dir, dir),
                 0, "the same losses and metrics in results.csv (%s)", dir);
    run_sh("rm -rf %s", dir);
}

/* The same 2-worker training twice (deterministic: same weights, checked); the val split (40
 * images, 3 chunks of VAL_CHUNK=16) once divided over both workers, once all on worker 0 (test
 * knob YOLO_TEST_VAL_ON_ONE_WORKER): metrics and val losses must be identical. */
Test(distributed, validation_split_over_workers_equals_one_worker, .timeout = 300) {
    char dir[64], pa[256], pb[256];
    run_make_data(dir, sizeof dir, "yolo-dist", 40, 40);
    cr_assert_eq(train(dir, "split", NULL, "workers=2 conf=0.00001"), 0, "see %s/split.log", dir);
    cr_assert_eq(train(dir, "one", "YOLO_TEST_VAL_ON_ONE_WORKER=1", "workers=2 conf=0.00001"), 0,
                 "see %s/one.log", dir);
    snprintf(pa, sizeof pa, "%s/split/weights/last.h5", dir);
    snprintf(pb, sizeof pb, "%s/one/weights/last.h5", dir);
    run_cmp c = run_compare_weights(pa, pb);
    cr_assert(c.missing == 0 && c.max_rel_param == 0 && c.max_rel_buffer == 0,
              "the two runs validate the same weights");
    double a[7], b[7];
    snprintf(pa, sizeof pa, "%s/split/results.csv", dir);
    snprintf(pb, sizeof pb, "%s/one/results.csv", dir);
    read_metrics(pa, a);
    read_metrics(pb, b);
    cr_log_info("P %g R %g mAP50 %g mAP50-95 %g val loss %g %g %g", a[0], a[1], a[2], a[3], a[4],
                a[5], a[6]);
    for (int k = 0; k < 7; k++) cr_assert_eq(a[k], b[k], "column %d: %g vs %g", 6 + k, a[k], b[k]);
    cr_assert_gt(a[4] + a[5] + a[6], 0, "val loss computed");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Starts a training job in the background; its exit code goes to <dir>/<name>.rc. */
static void train_bg(const char *dir, const char *name, const char *env, const char *extra) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "(%s timeout 120 \"$YOLO_COORD\" train data=%s/s.h5 " RUN_ARGS
             " project=%s name=%s %s > %s/%s.log 2>&1; echo $? > %s/%s.rc) &",
             env ? env : "", dir, dir, name, extra, dir, name, dir, name);
    cr_assert_eq(system(cmd), 0);
}

/* A live 2-worker run: `watch` prints its steps, `ctl status` answers, `ctl save` writes a version
 * mid-epoch, `ctl stop` ends it early with exit 0 and a version; watch sees "finished", exits 0. */
Test(distributed, watch_and_stop_a_live_run, .timeout = 300) {
    char dir[64], path[256], cmd[1024];
    run_make_data(dir, sizeof dir, "yolo-dist", 40, 8);
    train_bg(dir, "live", NULL, "workers=2 epochs=50 val=False");
    snprintf(path, sizeof path, "%s/live/endpoints.json", dir);
    cr_assert(run_wait_file(path, 90), "endpoints.json written; see %s/live.log", dir);
    snprintf(cmd, sizeof cmd,
             "(timeout 120 \"$YOLO_COORD\" watch %s/live > %s/watch.out 2>&1; echo $? > "
             "%s/watch.rc) &",
             dir, dir, dir);
    cr_assert_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/watch.out", dir);
    bool stepping = false;
    for (int i = 0; i < 300 && !stepping; i++, usleep(200000))
        stepping = run_file_has(path, " step ");
    cr_assert(stepping, "watch prints step lines");
    snprintf(cmd, sizeof cmd, "\"$YOLO_COORD\" ctl %s/live status > %s/status.out", dir, dir);
    cr_assert_eq(system(cmd), 0, "ctl status");
    snprintf(path, sizeof path, "%s/status.out", dir);
    cr_assert(run_file_has(path, "\"running\""), "status says running");
    /* save: last.h5 at the next step boundary, mid-epoch (the log line comes from that path) */
    snprintf(cmd, sizeof cmd, "\"$YOLO_COORD\" ctl %s/live save > /dev/null", dir);
    cr_assert_eq(system(cmd), 0, "ctl save");
    snprintf(path, sizeof path, "%s/live.log", dir);
    bool saved = false;
    for (int i = 0; i < 300 && !saved; i++, usleep(200000))
        saved = run_file_has(path, " written (save, epoch ");
    cr_assert(saved, "save wrote a mid-epoch checkpoint; see %s/live.log", dir);
    snprintf(path, sizeof path, "%s/live/weights/last.h5", dir);
    cr_assert(run_wait_file(path, 1), "last.h5 after save");
    snprintf(cmd, sizeof cmd, "\"$YOLO_COORD\" ctl %s/live stop > /dev/null", dir);
    cr_assert_eq(system(cmd), 0, "ctl stop");
    snprintf(path, sizeof path, "%s/live.rc", dir);
    cr_assert(run_wait_file(path, 90), "the run ends after stop");
    usleep(300000);
    cr_assert_eq(run_read_rc(path), 0, "stopped run exits 0; see %s/live.log", dir);
    snprintf(path, sizeof path, "%s/live/weights/last.h5", dir);
    cr_assert(run_wait_file(path, 1), "last.h5 written on stop");
    snprintf(path, sizeof path, "%s/live.log", dir);
    cr_assert(run_file_has(path, "stop requested"), "the coordinator saw the stop");
    cr_assert(!run_file_has(path, "50 epochs completed"), "stopped early");
    snprintf(path, sizeof path, "%s/watch.rc", dir);
    cr_assert(run_wait_file(path, 30), "watch exits when the run finishes");
    usleep(300000);
    cr_assert_eq(run_read_rc(path), 0, "watch exit code");
    snprintf(path, sizeof path, "%s/watch.out", dir);
    cr_assert(run_file_has(path, "finished:"), "watch saw the finished event");
    cr_assert(run_file_has(path, "checkpoint v0001 written"), "watch saw the checkpoint event");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Rank 2 sleeps 3 s once (after its all-reduce, so only its report is late): with stall_warn=1 the
 * coordinator names it on the terminal and on the PUB socket, and the run still succeeds. */
Test(distributed, stalled_worker_is_named_in_a_warning, .timeout = 300) {
    char dir[64], path[256], cmd[1024];
    run_make_data(dir, sizeof dir, "yolo-dist", 40, 8);
    train_bg(dir, "slow", "YOLO_TEST_STALL_RANK=2 YOLO_TEST_STALL_SECONDS=3",
             "workers=2 epochs=1 val=False stall_warn=1 stall_abort=60");
    snprintf(path, sizeof path, "%s/slow/endpoints.json", dir);
    cr_assert(run_wait_file(path, 90), "endpoints.json written; see %s/slow.log", dir);
    snprintf(cmd, sizeof cmd, "timeout 120 \"$YOLO_COORD\" watch %s/slow > %s/watch.out 2>&1", dir,
             dir);
    cr_assert_eq(system(cmd), 0, "watch exits 0 on finished");
    snprintf(path, sizeof path, "%s/slow.rc", dir);
    cr_assert(run_wait_file(path, 60));
    usleep(300000);
    cr_assert_eq(run_read_rc(path), 0, "a stall below stall_abort is only a warning");
    snprintf(path, sizeof path, "%s/slow.log", dir);
    cr_assert(run_file_has(path, "no step report from rank 2 (host "),
              "terminal warning names rank 2 and its host");
    snprintf(path, sizeof path, "%s/watch.out", dir);
    cr_assert(run_file_has(path, "warning: no step report from rank 2 (host "),
              "PUB warning names rank 2");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Rank 2 sleeps 60 s: past stall_abort=3 the job aborts with a non-zero exit naming rank 2. */
Test(distributed, stalled_worker_aborts_the_job, .timeout = 300) {
    char dir[64], path[256];
    run_make_data(dir, sizeof dir, "yolo-dist", 40, 8);
    int rc = train(dir, "hung", "YOLO_TEST_STALL_RANK=2 YOLO_TEST_STALL_SECONDS=60",
                   "workers=2 epochs=1 val=False stall_warn=1 stall_abort=3");
    cr_assert_neq(rc, 0, "aborted job exits non-zero");
    cr_assert_neq(rc, 124, "aborted by the coordinator, not by the test's timeout");
    snprintf(path, sizeof path, "%s/hung.log", dir);
    cr_assert(run_file_has(path, "rank 2 (host ") && run_file_has(path, "sent no step report for"),
              "names rank 2");
    cr_assert(run_file_has(path, "ending the job"), "says it ends the job");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* tests/mpi/overlap_check.c under mpirun -np 2: the model's backward hook marks every gradient
 * float once, every bucket starts during backward, and the result equals a blocking all-reduce
 * bit for bit (yolov8n and yolo26n). */
Test(distributed, backward_hook_starts_every_bucket_during_backward, .timeout = 120) {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    setenv("OMPI_MCA_btl", "self,vader", 0);
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 0);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    cr_assert(n > 0);
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    cr_assert(slash);
    *slash = 0;
    char cmd[PATH_MAX + 160];
    snprintf(cmd, sizeof cmd, "timeout 60 mpirun -np 2 '%s/mpi/overlap_check' 2>&1", exe);
    FILE *p = popen(cmd, "r");
    cr_assert(p, "popen %s", cmd);
    static char out[16384];
    size_t len = fread(out, 1, sizeof out - 1, p);
    out[len] = 0;
    int st = pclose(p);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "overlap_check failed:\n%s", out);
    cr_assert(strstr(out, "overlap_check: OK np=2"), "expected OK in:\n%s", out);
}
