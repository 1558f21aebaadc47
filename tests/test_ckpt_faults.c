/* Checkpoint writes failing while a run trains, on a real filesystem: weights/ is a small tmpfs
 * mounted in a private mount namespace (`unshare -Urm`, or `unshare -m` as root; the test is
 * skipped with the reason where neither may mount), either too small for a second version (full
 * disk) or remounted read-only after the first version. The error reaches the terminal and the
 * PUB socket (a `watch` sees the warning), training goes on to its last epoch, the version
 * written before is intact (it verifies), no temporary file is left, and since the last version
 * could not be written the run exits 1 naming the newest version on disk. The tmpfs vanishes with
 * the namespace, so the job's shell copies weights/ out before it ends. */
#include "coordinator/ckpt_file.h"
#include "runs.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A command prefix that runs a shell in a private mount namespace, or NULL (why says why). */
static const char *private_mounts(const char *dir, char *why, size_t n) {
    static const char *const ways[] = {"unshare -Urm", "unshare -m"};
    for (int i = 0; i < 2; i++)
        if (run_sh("%s sh -c 'mkdir -p %s/probe && mount -t tmpfs -o size=1m tmpfs %s/probe' "
                   ">/dev/null 2>&1",
                   ways[i], dir, dir) == 0)
            return ways[i];
    snprintf(why, n,
             "cannot mount a tmpfs in a private mount namespace here (unshare -Urm and "
             "unshare -m refused): no small or read-only filesystem to fill");
    return NULL;
}

/* Runs a 2-worker, 3-epoch job whose weights/ is a tmpfs of `size` inside the namespace; `after`
 * is shell run once the first version exists (or ""). Output: <name>.log, <name>.rc, and
 * <name>/weights-after (a copy of weights/ when the job ended). A watcher's output: watch.out. */
static void run_job(const char *ns, const char *dir, const char *name, const char *size,
                    const char *after) {
    char script[4096], w[256];
    snprintf(w, sizeof w, "%s/%s/weights", dir, name);
    cr_assert_eq(run_sh("mkdir -p %s", w), 0);
    snprintf(script, sizeof script,
             "mount -t tmpfs -o size=%s tmpfs %s || exit 90; "
             "timeout 300 \"$YOLO_COORD\" train data=%s/s.h5 model=yolov8n.yaml imgsz=64 "
             "batch=8 nbs=8 threads=1 loader_threads=1 bucket_mb=0.25 workers=2 epochs=3 "
             "exist_ok=True project=%s name=%s > %s/%s.log 2>&1 & pid=$!; "
             "for i in $(seq 1200); do [ -e %s/v0001.h5 ] && break; sleep 0.1; done; %s; "
             "wait $pid; echo $? > %s/%s.rc; cp -a %s %s/%s/weights-after",
             size, w, dir, dir, name, dir, name, w, after, dir, name, w, dir, name);
    FILE *f;
    char sp[256];
    snprintf(sp, sizeof sp, "%s/%s.sh", dir, name);
    cr_assert((f = fopen(sp, "w")));
    fputs(script, f);
    fclose(f);
    cr_assert_eq(run_sh("(%s sh %s; echo $? > %s/%s.ns) > /dev/null 2>&1 &", ns, sp, dir, name), 0);
    char p[256];
    snprintf(p, sizeof p, "%s/%s/endpoints.json", dir, name);
    cr_assert(run_wait_file(p, 120), "the run started; see %s/%s.log", dir, name);
    cr_assert_eq(
        run_sh("(timeout 300 \"$YOLO_COORD\" watch %s/%s > %s/watch.out 2>&1 &)", dir, name, dir),
        0);
    snprintf(p, sizeof p, "%s/%s.ns", dir, name);
    cr_assert(run_wait_file(p, 600), "the job ends");
    usleep(300000);
    cr_assert_eq(run_read_rc(p), 0, "the namespace script ran; see %s", sp);
}

/* What every failure case must show. `cause`: the system error expected in the message. */
static void check_outcome(const char *dir, const char *name, const char *cause) {
    char p[256], log[256], err[512];
    snprintf(log, sizeof log, "%s/%s.log", dir, name);
    snprintf(p, sizeof p, "%s/%s.rc", dir, name);
    int rc = run_read_rc(p);
    cr_assert_eq(rc, 1, "the last version could not be written: exit 1 (got %d); see %s", rc, log);
    cr_assert(run_file_has(log, "not written") && run_file_has(log, cause),
              "terminal names the failure (%s); see %s", cause, log);
    cr_assert(run_file_has(log, "3 epochs completed"), "training went on to the end; see %s", log);
    cr_assert(run_file_has(log, "the newest version on disk is"), "says what is left; see %s", log);
    snprintf(p, sizeof p, "%s/%s/results.csv", dir, name);
    cr_assert_eq(run_sh("test $(wc -l < %s) -eq 4", p), 0, "3 epoch rows");
    snprintf(p, sizeof p, "%s/watch.out", dir);
    cr_assert(run_wait_text(p, "not written", 30), "the PUB socket carried the warning (%s)", p);
    /* every version that exists is whole; nothing half-written is left */
    snprintf(p, sizeof p, "%s/%s/weights-after/v0001.h5", dir, name);
    ckpt_file *f = ckpt_open(p, err, sizeof err);
    cr_assert(f, "the first version survives: %s", err);
    cr_assert_eq(ckpt_verify(f, NULL, NULL, err, sizeof err), 0, "%s", err);
    ckpt_close(f);
    cr_assert_eq(run_sh("ls -A %s/%s/weights-after | grep -q tmp", dir, name), 1,
                 "no temporary file left");
    cr_assert_eq(run_sh("test -e %s/%s/weights-after/v0003.h5", dir, name), 1,
                 "the last version is absent");
}

Test(ckptfault, full_weights_folder_reports_and_training_goes_on, .timeout = 900) {
    char dir[64], why[256];
    run_make_data(dir, sizeof dir, "yolo-ckptfull", 40, 8);
    const char *ns = private_mounts(dir, why, sizeof why);
    if (!ns) {
        run_sh("rm -rf %s", dir);
        cr_skip_test("%s", why);
    }
    /* a yolov8n version at nc=3 is about 49 MB: 60 MB hold one */
    run_job(ns, dir, "full", "60m", "true");
    check_outcome(dir, "full", "No space left on device");
    run_sh("rm -rf %s", dir);
}

Test(ckptfault, read_only_weights_folder_reports_and_training_goes_on, .timeout = 900) {
    char dir[64], why[256], after[512];
    run_make_data(dir, sizeof dir, "yolo-ckptro", 40, 8);
    const char *ns = private_mounts(dir, why, sizeof why);
    if (!ns) {
        run_sh("rm -rf %s", dir);
        cr_skip_test("%s", why);
    }
    /* read-only once v0001 is there (a remount waits while a file is open for writing) */
    snprintf(after, sizeof after,
             "for i in $(seq 200); do mount -o remount,ro %s/ro/weights && break; sleep 0.1; done",
             dir);
    run_job(ns, dir, "ro", "400m", after);
    check_outcome(dir, "ro", "Read-only file system");
    run_sh("rm -rf %s", dir);
}
