/* Stop signals through the real commands (bin/coordinator train as the launcher, mpirun, the
 * coordinator rank and 2 workers, CPU):
 *   - SIGTERM to the launcher, SIGUSR1 to a worker, SIGTERM to mpirun: a version at the next step
 *     boundary, exit 75, a clear line, no process left, endpoints removed; resuming finishes with
 *     weights bit-identical to the uninterrupted run;
 *   - a second SIGINT stops at once (exit 130), nothing left running, what was written verifies;
 *   - every socket of a single-host job is on loopback, mpirun's own included. */
#include "jobs.h"

#include "../runs.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EPOCHS "epochs=4"
#define STALL "stall_warn=30 stall_abort=120"

/* The uninterrupted run every interrupted one is compared with: dir/ref. */
static void reference(const char *dir) {
    cr_assert_eq(job_run(dir, "ref", "", EPOCHS " " STALL), 0, "see %s/ref.log", dir);
}

/* Signals `target` of a job while rank 1 stalls in its first epoch (JOB_STALL_ENV) and checks the
 * careful stop; then resumes it and compares the final weights with the reference. Returns nothing:
 * asserts. */
static void stop_and_resume(const char *prefix, int sig, pid_t (*target)(const job *),
                            const char *received_by) {
    char dir[128], a[512], b[512];
    job_make_dir(dir, sizeof dir, prefix);
    reference(dir);
    job j;
    job_start(&j, dir, "run", JOB_STALL_ENV, EPOCHS " " STALL);
    job_wait_text(&j, JOB_STALLED, 300);
    job_watch_start(&j);
    pid_t p = target(&j);
    cr_assert_gt(p, 0, "the process to signal is running");
    cr_assert_eq(kill(p, sig), 0);
    int rc = job_wait_end(&j, 300);
    cr_assert_eq(rc, 75, "stopped after saving: exit 75 (got %d); see %s", rc, j.log);
    char watch[320];
    cr_assert_eq(job_watch_end(&j, 60, watch, sizeof watch), 75,
                 "watch ends on preempted with 75; see %s", watch);
    cr_assert(run_file_has(watch, "preempted: ") && run_file_has(watch, "stopped by "),
              "the preempted event on the PUB socket; see %s", watch);
    cr_assert(run_file_has(j.log, "stopped by ") && run_file_has(j.log, received_by),
              "the line names the signal and who received it; see %s", j.log);
    snprintf(a, sizeof a, "%s/run/train.log", dir);
    cr_assert(run_file_has(a, "stopped by "), "train.log has the line too");
    int n = job_assert_ended_clean(&j, 30);
    cr_assert_geq(n, 1, "a version was saved");
    char resume[256];
    snprintf(resume, sizeof resume, "resume=%s/run", dir);
    cr_assert_eq(job_run(dir, "run", "", resume), 0, "resume finishes; see %s", j.log);
    job_version_path(a, sizeof a, dir, "ref", "last.h5");
    job_version_path(b, sizeof b, dir, "run", "last.h5");
    job_assert_same_weights(a, b);
    run_sh("rm -rf %s", dir);
}

Test(signals, sigterm_to_the_launcher_saves_stops_and_resumes_bit_identical, .timeout = 900) {
    stop_and_resume("yolo-sig-term", SIGTERM, job_launcher, "received by the coordinator");
}

/* the stalled one: the signal also ends its stall */
static pid_t stalled_worker(const job *j) {
    return job_worker_rank(j, 1);
}

Test(signals, sigusr1_to_a_worker_stops_the_job_with_a_version, .timeout = 900) {
    stop_and_resume("yolo-sig-usr1", SIGUSR1, stalled_worker, "received by rank 1 ");
}

Test(signals, sigterm_to_mpirun_stops_the_job_with_a_version, .timeout = 900) {
    stop_and_resume("yolo-sig-mpirun", SIGTERM, job_mpirun, "received by the coordinator");
}

Test(signals, second_sigint_stops_at_once, .timeout = 600) {
    char dir[128];
    job_make_dir(dir, sizeof dir, "yolo-sig-int2");
    job j;
    job_start(&j, dir, "run", "", "epochs=50 " STALL);
    job_wait_text(&j, " 2/50 ", 300);
    pid_t l = job_launcher(&j);
    cr_assert_gt(l, 0);
    cr_assert_eq(kill(l, SIGINT), 0);
    usleep(50000);
    cr_assert_eq(kill(l, SIGINT), 0);
    int rc = job_wait_end(&j, 120);
    cr_assert_eq(rc, 130, "stopped at once: exit 130 (got %d); see %s", rc, j.log);
    cr_assert(run_file_has(j.log, "stopping the job at once"), "says so; see %s", j.log);
    job_assert_ended_clean(&j, 30);
    run_sh("rm -rf %s", dir);
}

/* Local addresses of the job's TCP and UDP sockets (ss, by process id): every one on loopback. */
Test(signals, a_single_host_job_keeps_every_socket_on_loopback, .timeout = 600) {
    char dir[128], out[256];
    job_make_dir(dir, sizeof dir, "yolo-sig-lo");
    job j;
    job_start(&j, dir, "run", "", "epochs=50 " STALL);
    job_wait_text(&j, " 2/50 ", 300);
    pid_t pids[64];
    int n = job_processes(&j, pids, 64);
    cr_assert_geq(n, 5, "launcher, mpirun, coordinator and 2 workers");
    snprintf(out, sizeof out, "%s/sockets.txt", dir);
    cr_assert_eq(run_sh("ss -tuanpH > %s", out), 0, "ss runs");
    FILE *f = fopen(out, "r");
    cr_assert(f);
    char line[1024];
    int seen = 0, listening = 0;
    while (fgets(line, sizeof line, f)) {
        bool ours = false;
        for (int i = 0; i < n && !ours; i++) {
            char key[32];
            snprintf(key, sizeof key, "pid=%d,", (int)pids[i]);
            ours = strstr(line, key) != NULL;
        }
        if (!ours) continue;
        char proto[16], state[32], local[128];
        cr_assert_eq(sscanf(line, "%15s %31s %*s %*s %127s", proto, state, local), 3, "%s", line);
        seen++;
        listening += !strcmp(state, "LISTEN");
        cr_assert(!strncmp(local, "127.", 4) || !strncmp(local, "[::1]", 5) ||
                      !strncmp(local, "[::ffff:127.", 12),
                  "not on loopback: %s", line);
    }
    fclose(f);
    cr_log_info("%d sockets of the job, %d listening, all on loopback", seen, listening);
    cr_assert_geq(listening, 2, "mpirun's listeners were seen (and checked)");
    pid_t l = job_launcher(&j);
    cr_assert_eq(kill(l, SIGTERM), 0);
    cr_assert_eq(job_wait_end(&j, 300), 75);
    job_assert_no_process_left(&j, 30);
    run_sh("rm -rf %s", dir);
}
