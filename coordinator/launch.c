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

bool launched_by_mpi(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK") ||
           getenv("SLURM_STEP_ID");
}

/* This binary's path (self when /proc is not there) and bin/<name> beside it. */
static void self_and_sibling(const char *self, const char *name, char *exe, size_t n, char *sib,
                             size_t sn) {
    ssize_t k = readlink("/proc/self/exe", exe, n - 1);
    if (k <= 0)
        snprintf(exe, n, "%s", self);
    else
        exe[k] = 0;
    char *copy = xstrdup(exe);
    snprintf(sib, sn, "%s/%s", dirname(copy), name);
    free(copy);
}

int exec_sibling(const char *program, int argc, char **argv) {
    char exe[PATH_MAX], sib[PATH_MAX + 64];
    self_and_sibling("coordinator", program, exe, sizeof exe, sib, sizeof sib);
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
    char exe[PATH_MAX], worker[PATH_MAX + 16];
    self_and_sibling(self, "worker", exe, sizeof exe, worker, sizeof worker);
    if (access(worker, X_OK) != 0) {
        log_error("%s: worker binary not found next to the coordinator", worker);
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
    char **av = xcalloc((size_t)argc + 16, sizeof *av);
    int k = 0;
    av[k++] = "mpirun";
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
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
