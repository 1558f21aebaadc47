/* cluster/slurm/train.sbatch through a real Slurm (cluster/slurm/harness.sh: munged, slurmctld and
 * slurmd on this machine, root only): a 2-worker CPU job (srun --mpi=pmix --multi-prog) is
 *   - requeued with `scontrol requeue` while it trains (Slurm's SIGTERM: a version, exit 75, Slurm
 *     requeues it), and, separately,
 *   - sent the preemption warning (SIGUSR1 to the batch shell, as --signal=B:USR1@120 does: a
 *     version, exit 75, the script requeues the job);
 * each time the job starts again by itself, resumes with resume=auto and finishes, with final
 * weights bit-identical to the same run done without interruption. */
#include "jobs.h"

#include "../runs.h"

#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EPOCHS "epochs=4"
#define STALL "stall_warn=30 stall_abort=120"

static char state[256]; /* the harness's folder, for the teardown */

static void stop_harness(void) {
    if (state[0]) run_sh("bash cluster/slurm/harness.sh stop %s >> %s.log 2>&1", state, state);
}

/* sbatch's job id; its output goes to dir/<name>.out. */
static int submit(const char *dir, const char *name) {
    char model[PATH_MAX], out[512], cmd[2 * PATH_MAX];
    cr_assert(realpath("tests/fixtures/tiny-yolo26n.yaml", model));
    snprintf(out, sizeof out, "%s/%s.jobid", dir, name);
    snprintf(cmd, sizeof cmd,
             "YOLO_BIN=$(pwd)/bin sbatch --parsable --ntasks=2 --chdir=%s --output=%s/%s.out "
             "--job-name=%s cluster/slurm/train.sbatch data=%s/s.h5 model=%s imgsz=64 batch=8 "
             "threads=1 loader_threads=1 plots=False " EPOCHS " " STALL " project=%s name=%s > %s",
             dir, dir, name, name, dir, model, dir, name, out);
    cr_assert_eq(run_sh("%s", cmd), 0, "sbatch");
    int id = run_read_rc(out);
    cr_assert_gt(id, 0, "a job id");
    return id;
}

/* Waits until Slurm no longer lists the job; returns `scontrol show job` in out. */
static void wait_done(int id, const char *dir, const char *name, char *out, size_t n) {
    snprintf(out, n, "%s/%s.state", dir, name);
    for (int i = 0; i < 900; i++) {
        if (run_sh("test -z \"$(squeue -h -j %d -o %%T 2>/dev/null)\"", id) == 0) break;
        usleep(500000);
    }
    cr_assert_eq(run_sh("scontrol show job %d > %s", id, out), 0);
}

static void interrupted_job_resumes(const char *dir, const char *name, const char *interrupt) {
    int id = submit(dir, name);
    char log[256], st[256], a[512], b[512];
    snprintf(log, sizeof log, "%s/%s.out", dir, name);
    cr_assert(run_wait_text(log, " 2/4 ", 600), "job %d trains; see %s", id, log);
    cr_assert_eq(run_sh(interrupt, id), 0, "%s", interrupt);
    wait_done(id, dir, name, st, sizeof st);
    cr_assert(run_file_has(st, "JobState=COMPLETED") && run_file_has(st, "ExitCode=0:0"),
              "the job completed in the end; see %s and %s", st, log);
    cr_assert(run_file_has(st, "Restarts=1"), "after one requeue; see %s", st);
    cr_assert(run_file_has(log, "stopped by ") && run_file_has(log, "resuming "),
              "it stopped with a version and resumed from it; see %s", log);
    job_verify_versions(dir, name);
    job_version_path(a, sizeof a, dir, "ref", "last.h5");
    job_version_path(b, sizeof b, dir, name, "last.h5");
    job_assert_same_weights(a, b);
}

Test(slurm, requeued_and_preempted_jobs_resume_bit_identical, .timeout = 1800,
     .fini = stop_harness) {
    if (geteuid() != 0) cr_skip_test("the Slurm harness runs its daemons as root");
    if (run_sh("command -v slurmctld && command -v slurmd && command -v munged") != 0)
        cr_skip_test("Slurm is not installed (bash scripts/install-deps.sh cluster)");
    char dir[128];
    job_make_dir(dir, sizeof dir, "yolo-slurm");
    cr_assert_eq(job_run(dir, "ref", "", EPOCHS " " STALL), 0, "see %s/ref.log", dir);
    snprintf(state, sizeof state, "%s/harness", dir);
    cr_assert_eq(run_sh("bash cluster/slurm/harness.sh start %s > %s.log 2>&1", state, state), 0,
                 "the harness starts; see %s.log", state);
    char conf[300];
    snprintf(conf, sizeof conf, "%s/slurm.conf", state);
    setenv("SLURM_CONF", conf, 1);
    interrupted_job_resumes(dir, "requeued", "scontrol requeue %d");
    interrupted_job_resumes(dir, "preempted", "scancel --batch --signal=USR1 %d");
    stop_harness();
    state[0] = 0;
    run_sh("rm -rf %s", dir);
}
