#include "coordinator/launch.h"

#include "common/log.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* This program's path (the coordinator binary), or `self` when /proc says nothing. */
static void self_path(const char *self, char *exe, size_t n) {
    ssize_t k = readlink("/proc/self/exe", exe, n - 1);
    if (k <= 0)
        snprintf(exe, n, "%s", self);
    else
        exe[k] = 0;
}

int worker_binary(char *out, size_t n, char *err, size_t errlen) {
    char exe[PATH_MAX];
    self_path("coordinator", exe, sizeof exe);
    char *copy = xstrdup(exe);
    int len = snprintf(out, n, "%s/worker", dirname(copy));
    free(copy);
    if (len < 0 || (size_t)len >= n) return errf(err, errlen, "%s: path too long", exe);
    if (access(out, X_OK) != 0)
        return errf(err, errlen, "%s: worker binary not found next to the coordinator", out);
    return 0;
}

int exec_sibling(const char *program, int argc, char **argv) {
    char exe[PATH_MAX], sib[PATH_MAX + 64];
    self_path("coordinator", exe, sizeof exe);
    char *copy = xstrdup(exe);
    snprintf(sib, sizeof sib, "%s/%s", dirname(copy), program);
    free(copy);
    char **av = xcalloc((size_t)argc + 2, sizeof *av);
    av[0] = sib;
    for (int i = 0; i < argc; i++) av[i + 1] = argv[i];
    fflush(NULL);
    execv(sib, av);
    log_error("%s: cannot run (%s); it is built next to the coordinator by make", sib,
              strerror(errno));
    free(av);
    return 2;
}

int launch_mpmd(const char *self, int workers, int argc, char **argv) {
    char exe[PATH_MAX], worker[PATH_MAX + 16], err[PATH_MAX + 64];
    self_path(self, exe, sizeof exe);
    if (worker_binary(worker, sizeof worker, err, sizeof err) != 0) {
        log_error("%s", err);
        return 2;
    }
    char np[32];
    snprintf(np, sizeof np, "%d", workers);
    /* mpirun as root needs the explicit allowance; more ranks than cores need oversubscribe. */
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 0);
    setenv("OMPI_MCA_btl", "self,vader", 0);
    /* Open MPI binds each rank to ONE core when there are at most 2 ranks: a single worker's
     * threads=2 then share a core (measured: no faster than threads=1). Workers size their own
     * thread pools, so no binding. */
    setenv("OMPI_MCA_hwloc_base_binding_policy", "none", 0);
    /* libgomp spins ~300000 iterations at every barrier before it sleeps; on a machine other
     * processes share, a waiting thread then burns the core its partner needs (measured on the
     * loaded 2-core machine, yolov8n bf16 at 160: a 2-thread step took 2.3x the CPU time of a
     * 1-thread one, 1.04x with passive waiting). A short spin still catches the partner on a quiet
     * machine. The user's own setting wins. */
    if (!getenv("OMP_WAIT_POLICY")) setenv("GOMP_SPINCOUNT", "10000", 0);
    char **av = xcalloc((size_t)argc + 16, sizeof *av);
    int k = 0;
    av[k++] = "mpirun";
    /* Our ranks print the one line that says what went wrong; without -q Open MPI adds a dozen
     * lines of its own after it (a non-zero exit, an abort). A crash is summarised below. */
    av[k++] = "-q";
    av[k++] = "-np";
    av[k++] = "1";
    av[k++] = exe;
    av[k++] = "train";
    for (int i = 0; i < argc; i++) av[k++] = argv[i];
    av[k++] = ":";
    av[k++] = "-np";
    av[k++] = np;
    av[k++] = worker;
    av[k] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        log_error("fork: %s", strerror(errno));
        return 2;
    }
    if (pid == 0) {
        execvp("mpirun", av);
        log_error("mpirun: cannot run (is Open MPI installed? make deps): %s", strerror(errno));
        _exit(127);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) {
            log_error("waitpid: %s", strerror(errno));
            return 2;
        }
    free(av);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (rc > 2 && rc != 127) /* 0 done, 1 failed, 2 refused: the ranks said why */
        log_error("the training job ended with status %d: a rank crashed or was killed (its "
                  "messages are above)",
                  rc);
    return rc;
}
