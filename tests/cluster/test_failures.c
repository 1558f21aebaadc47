/* Failures that lose nothing, through the real commands (launcher, mpirun, coordinator, 2 workers):
 *   - a worker killed (SIGKILL) mid-step: the job ends within the stall limits naming the rank
 *     (host, pid, last step) in train.log and on the terminal; every version verifies; resume=auto
 *     finishes with the uninterrupted run's weights;
 *   - a hung worker (SIGSTOP): named as silent past stall_abort, the job ends;
 *   - the coordinator killed: no worker left; the launcher says so in train.log and removes the
 *     endpoints; resume finishes;
 *   - the launcher killed (SIGKILL): nothing of the job survives it;
 *   - the newest version damaged: ckpt-check names it, resume=auto falls back to the previous
 *     complete version, says so, and finishes with the uninterrupted run's weights. */
#include "jobs.h"

#include "../runs.h"

#include "coordinator/ckpt_file.h"

#include <criterion/criterion.h>
#include <hdf5.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EPOCHS "epochs=4"
/* generous: a loaded machine must not make a healthy rank look hung */
#define STALL_ABORT 40
#define STALL "stall_warn=10 stall_abort=40"

static void resume_matches_reference(const char *dir, const char *name) {
    char a[512], b[512], args[256];
    cr_assert_eq(job_run(dir, "ref", "", EPOCHS " " STALL), 0, "see %s/ref.log", dir);
    snprintf(args, sizeof args, "resume=auto " EPOCHS " " STALL);
    cr_assert_eq(job_run(dir, name, "", args), 0, "resume=auto finishes; see %s/%s.log", dir, name);
    job_version_path(a, sizeof a, dir, "ref", "last.h5");
    job_version_path(b, sizeof b, dir, name, "last.h5");
    job_assert_same_weights(a, b);
}

/* Rank 1 stalls in the first epoch (JOB_STALL_ENV), after a version at step 1 (so that one
 * remains to fall back to, or to resume from) */
#define HIT_ENV JOB_STALL_ENV " YOLO_TEST_SAVE_AT=1:1"

/* Starts dir/run, waits for rank 1's stall and sends sig to target. */
static void start_and_hit(job *j, const char *dir, int sig, pid_t (*target)(const job *)) {
    job_start(j, dir, "run", HIT_ENV, EPOCHS " " STALL);
    job_wait_text(j, JOB_STALLED, 300);
    pid_t p = target(j);
    cr_assert_gt(p, 0, "the process to hit is running");
    cr_assert_eq(kill(p, sig), 0);
}

static pid_t stalled_worker(const job *j) {
    return job_worker_rank(j, 1);
}

Test(failures, a_killed_worker_is_named_and_resume_finishes_bit_identical, .timeout = 900) {
    char dir[128], tlog[256];
    job_make_dir(dir, sizeof dir, "yolo-fail-worker");
    job j;
    job_start(&j, dir, "run", HIT_ENV, EPOCHS " " STALL);
    job_wait_text(&j, JOB_STALLED, 300);
    job_watch_start(&j);
    pid_t w = stalled_worker(&j);
    cr_assert_gt(w, 0, "a worker is running");
    cr_assert_eq(kill(w, SIGKILL), 0);
    int rc = job_wait_end(&j, STALL_ABORT + 120);
    cr_assert(rc != 0 && rc != 75, "the job failed (status %d); see %s", rc, j.log);
    char watch[320];
    cr_assert_eq(job_watch_end(&j, 60, watch, sizeof watch), 1, "watch ends on failed; see %s",
                 watch);
    cr_assert(run_file_has(watch, "failed: rank ") && run_file_has(watch, "died (its process"),
              "the failed event on the PUB socket names the rank; see %s", watch);
    snprintf(tlog, sizeof tlog, "%s/run/train.log", dir);
    cr_assert(run_file_has(tlog, "died (its process is gone)") && run_file_has(tlog, "(host "),
              "train.log names the rank, its host and pid; see %s", tlog);
    cr_assert(run_file_has(tlog, "last reported epoch"), "and the last step it reported");
    cr_assert(run_file_has(j.log, "died (its process is gone)"), "so does the terminal");
    job_assert_ended_clean(&j, 30);
    resume_matches_reference(dir, "run");
    run_sh("rm -rf %s", dir);
}

Test(failures, a_hung_worker_is_named_past_stall_abort, .timeout = 900) {
    char dir[128], tlog[256];
    job_make_dir(dir, sizeof dir, "yolo-fail-hung");
    job j;
    start_and_hit(&j, dir, SIGSTOP, stalled_worker);
    int rc = job_wait_end(&j, 2 * STALL_ABORT + 120);
    cr_assert_eq(rc, 1, "the coordinator ended the job (status %d); see %s", rc, j.log);
    snprintf(tlog, sizeof tlog, "%s/run/train.log", dir);
    cr_assert(run_file_has(tlog, "(stall_abort=40): ending the job") &&
                  run_file_has(tlog, "(host "),
              "train.log names the silent rank; see %s", tlog);
    job_assert_ended_clean(&j, 30);
    run_sh("rm -rf %s", dir);
}

Test(failures, a_killed_coordinator_leaves_no_worker, .timeout = 900) {
    char dir[128], tlog[256];
    job_make_dir(dir, sizeof dir, "yolo-fail-coord");
    job j;
    start_and_hit(&j, dir, SIGKILL, job_coordinator);
    int rc = job_wait_end(&j, 2 * STALL_ABORT + 120);
    cr_assert_neq(rc, 0, "see %s", j.log);
    job_assert_ended_clean(&j, 2 * STALL_ABORT);
    snprintf(tlog, sizeof tlog, "%s/run/train.log", dir);
    cr_assert(run_file_has(tlog, "the job ended before the coordinator finished"),
              "the launcher says so in train.log; see %s", tlog);
    resume_matches_reference(dir, "run");
    run_sh("rm -rf %s", dir);
}

Test(failures, a_killed_launcher_takes_the_whole_job_with_it, .timeout = 900) {
    char dir[128];
    job_make_dir(dir, sizeof dir, "yolo-fail-launcher");
    job j;
    start_and_hit(&j, dir, SIGKILL, job_launcher);
    job_wait_end(&j, 60);
    job_assert_ended_clean(&j, STALL_ABORT);
    run_sh("rm -rf %s", dir);
}

/* Flips bytes in the data of one tensor of a version (the first EMA tensor: its file offset
 * from HDF5), as a failing disk would; returns the tensor's name. */
static const char *damage(const char *path) {
    static char name[256];
    char err[512];
    ckpt_file *f = ckpt_open(path, err, sizeof err);
    cr_assert(f, "%s", err);
    int i = 0;
    while (i < ckpt_num_tensors(f) && strncmp(ckpt_tensor_at(f, i)->name, "ema/", 4)) i++;
    cr_assert_lt(i, ckpt_num_tensors(f), "an EMA tensor");
    snprintf(name, sizeof name, "%s", ckpt_tensor_at(f, i)->name);
    ckpt_close(f);
    hid_t h = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert_geq(h, 0);
    hid_t d = H5Dopen2(h, name, H5P_DEFAULT);
    cr_assert_geq(d, 0, "%s", name);
    haddr_t at = H5Dget_offset(d);
    H5Dclose(d);
    H5Fclose(h);
    cr_assert_neq(at, HADDR_UNDEF, "%s is stored contiguously", name);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    unsigned char b[16];
    cr_assert_eq(pread(fd, b, sizeof b, (off_t)at), (ssize_t)sizeof b);
    for (size_t k = 0; k < sizeof b; k++) b[k] ^= 0x5a;
    cr_assert_eq(pwrite(fd, b, sizeof b, (off_t)at), (ssize_t)sizeof b);
    close(fd);
    return name;
}

Test(failures, a_damaged_newest_version_is_named_and_resume_falls_back, .timeout = 900) {
    char dir[128], v[512], out[256];
    job_make_dir(dir, sizeof dir, "yolo-fail-damage");
    job j;
    start_and_hit(&j, dir, SIGTERM, job_launcher);
    cr_assert_eq(job_wait_end(&j, 300), 75, "see %s", j.log);
    int newest = job_newest_version(dir, "run");
    cr_assert_geq(newest, 2, "two versions at least, so one remains to fall back to");
    char file[32];
    snprintf(file, sizeof file, "v%04d.h5", newest);
    job_version_path(v, sizeof v, dir, "run", file);
    const char *tensor = damage(v);
    snprintf(out, sizeof out, "%s/verify-damaged.txt", dir);
    cr_assert_neq(run_sh("./build/tests/ckpt-check verify %s > %s", v, out), 0,
                  "verify fails on the damaged version");
    cr_assert(run_file_has(out, file) && run_file_has(out, tensor) &&
                  run_file_has(out, "sha256 mismatch"),
              "and names it, the tensor and what is wrong; see %s", out);
    resume_matches_reference(dir, "run");
    char log[256];
    snprintf(log, sizeof log, "%s/run.log", dir);
    cr_assert(run_file_has(log, file) && run_file_has(log, "; trying v"),
              "resume=auto says it falls back from %s; see %s", file, log);
    run_sh("rm -rf %s", dir);
}
