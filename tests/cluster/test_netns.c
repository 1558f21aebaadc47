/* Several hosts on one machine (root only): three network namespaces with their own addresses
 * and hostnames (tests/cluster/netns-hosts.sh; mpirun reaches them through netns-rsh.sh as it
 * would through ssh). cluster/mpirun/train.sh puts the coordinator on h0 and one worker on each of
 * h1 and h2 (MPI over TCP):
 *   - the run's final weights are bit-identical to the same run on one host;
 *   - h2's link taken down mid-run, after rank 1 reported a step and before rank 2 did: the
 *     coordinator names rank 2 (host h2), and only it, past stall_abort and ends; once the link is
 * back mpirun ends too, nothing is left in any host; resuming the run finishes with the same
 * weights as the uninterrupted one. */
#include "jobs.h"

#include "coordinator/ckpt_file.h"
#include "../runs.h"

#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EPOCHS "epochs=4"

static char prefix[32];

static void hosts_down(void) {
    if (!prefix[0]) return;
    /* anything still running in a host goes first (by pid), then the namespaces */
    run_sh("for p in $(bash tests/cluster/netns-hosts.sh pids %s 3); do kill -KILL $p; done; "
           "sleep 1; bash tests/cluster/netns-hosts.sh down %s 3",
           prefix, prefix);
    prefix[0] = 0;
}

/* The shell command that runs cluster/mpirun/train.sh from h0 with `env` and `args`, into
 * dir/name.log (mpirun's remote shell passes its environment on to every host). */
static void multi_host_command(char *cmd, size_t n, const char *dir, const char *name,
                               const char *env, const char *args) {
    char here[512];
    cr_assert(getcwd(here, sizeof here));
    snprintf(cmd, n,
             "cd %s && %s OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
             "YOLO_NETNS_PREFIX=%s OMPI_MCA_plm_rsh_agent=%s/tests/cluster/netns-rsh.sh "
             "YOLO_COORDINATOR_HOST=h0 YOLO_IFACE=10.77.0.0/24 "
             "ip netns exec %s-h0 unshare --uts sh -c 'hostname h0; exec "
             "cluster/mpirun/train.sh %s/hosts data=%s/s.h5 " JOB_ARGS " project=%s name=%s "
             "%s' >> %s/%s.log 2>&1",
             here, env, prefix, here, prefix, dir, dir, dir, name, args, dir, name);
}

static void assert_nothing_left(void) {
    for (int i = 0; i < 100; i++) {
        if (run_sh("test -z \"$(bash tests/cluster/netns-hosts.sh pids %s 3)\"", prefix) == 0)
            return;
        usleep(300000);
    }
    cr_assert_fail("processes left in the hosts: see `ip netns pids %s-h0` ..", prefix);
}

Test(netns, three_hosts_train_as_one_and_a_lost_link_is_named, .timeout = 1800,
     .fini = hosts_down) {
    if (geteuid() != 0) cr_skip_test("network namespaces need root");
    snprintf(prefix, sizeof prefix, "yc%d", (int)getpid() % 100000);
    if (run_sh("bash tests/cluster/netns-hosts.sh up %s 3 > /dev/null 2>&1", prefix) != 0) {
        hosts_down();
        cr_skip_test("cannot make network namespaces here (ip netns add failed)");
    }
    char dir[128], cmd[8192], a[512], b[512];
    job_make_dir(dir, sizeof dir, "yolo-netns");
    cr_assert_eq(run_sh("printf 'h1 slots=1\\nh2 slots=1\\n' > %s/hosts", dir), 0);
    const char *stall = "stall_warn=5 stall_abort=20";
    char args[128];
    snprintf(args, sizeof args, EPOCHS " %s", stall);
    cr_assert_eq(job_run(dir, "ref", "", args), 0, "one host; see %s/ref.log", dir);

    multi_host_command(cmd, sizeof cmd, dir, "multi", "", args);
    cr_assert_eq(run_sh("timeout 600 sh -c \"%s\"", cmd), 0, "three hosts; see %s/multi.log", dir);
    snprintf(a, sizeof a, "%s/multi/train.log", dir);
    cr_assert(run_file_has(a, "ranks: coordinator h0:") && run_file_has(a, " h1:") &&
                  run_file_has(a, " h2:"),
              "the coordinator on h0, workers on h1 and h2; see %s", a);
    job_version_path(a, sizeof a, dir, "ref", "last.h5");
    job_version_path(b, sizeof b, dir, "multi", "last.h5");
    job_assert_same_weights(a, b);

    /* h2's link goes down mid-epoch: while rank 2 stalls (10 s, after step 2 of epoch 1, once)
     * with rank 1's report for that step already in, so rank 2's reports surely stopped first;
     * a version after step 1 is there to resume from */
    multi_host_command(cmd, sizeof cmd, dir, "cut",
                       "YOLO_TEST_STALL_RANK=2 YOLO_TEST_STALL_SECONDS=10 YOLO_TEST_SAVE_AT=1:1",
                       args);
    cr_assert_eq(
        run_sh("(timeout 900 sh -c \"%s\"; echo $? > %s/cut.rc) >/dev/null 2>&1 &", cmd, dir), 0);
    snprintf(a, sizeof a, "%s/cut.log", dir);
    cr_assert(run_wait_text(a, "test: rank 2 stalls ", 600), "trains; see %s", a);
    cr_assert_eq(run_sh("ip -n %s-br link set %s-b2 down", prefix, prefix), 0);
    snprintf(b, sizeof b, "%s/cut/train.log", dir);
    cr_assert(run_wait_text(b, "training failed after", 300), "the coordinator ends; see %s", b);
    cr_assert(run_file_has(b, "rank 2 (host h2, pid ") && run_file_has(b, "(stall_abort=20)"),
              "naming rank 2 on h2; see %s", b);
    cr_assert(!run_file_has(b, "rank 1 (host h1, pid "),
              "rank 1, which reported that step, is not named; see %s", b);
    job_assert_endpoints_removed(dir, "cut");
    cr_assert_eq(run_sh("ip -n %s-br link set %s-b2 up", prefix, prefix), 0);
    snprintf(a, sizeof a, "%s/cut.rc", dir);
    cr_assert(run_wait_file(a, 300), "mpirun ends once h2 is reachable again");
    usleep(200000);
    cr_assert_neq(run_read_rc(a), 0, "the job failed");
    assert_nothing_left();
    job_verify_versions(dir, "cut");
    char resume[256];
    snprintf(resume, sizeof resume, "resume=%s/cut", dir);
    cr_assert_eq(job_run(dir, "cut", "", resume), 0, "resume on one host finishes");
    job_version_path(a, sizeof a, dir, "ref", "last.h5");
    job_version_path(b, sizeof b, dir, "cut", "last.h5");
    job_assert_same_weights(a, b);
    hosts_down();
    run_sh("rm -rf %s", dir);
}
