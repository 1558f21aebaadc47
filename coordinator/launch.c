#include "coordinator/launch.h"

#include "common/log.h"
#include "common/stop_signal.h"
#include "common/timer.h"
#include "coordinator/ckpt_store.h"
#include "coordinator/telemetry.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* Seconds mpirun waits between its SIGTERM and SIGKILL to the ranks when it tears a job down
 * (a rank died or exited non-zero): time for the coordinator to name the rank and finish the
 * versions it queued. Open MPI's default is 1 s; mpirun spends about twice this on every such
 * teardown, which is why a careful stop does not go through one (launch_report_status). */
#define MPIRUN_SIGKILL_TIMEOUT "3"
/* After a second stop signal: how long the coordinator has to remove its endpoints before the
 * launcher kills mpirun (the ranks die with it). */
#define AT_ONCE_GRACE_S 1.0
#define STATUS_ENV "YOLO_LAUNCH_STATUS"

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

/* The environment of a single-host job: loopback only, the ranks' own timing of a stop. */
static void single_host_environment(const char *dir) {
    /* mpirun as root needs the explicit allowance; more ranks than cores need oversubscribe. */
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 0);
    setenv("OMPI_MCA_btl", "self,vader", 0);
    setenv("OMPI_MCA_btl_tcp_if_include", "lo", 0);
    setenv("OMPI_MCA_oob_tcp_if_include", "lo", 0);
    setenv("OMPI_MCA_odls_base_sigkill_timeout", MPIRUN_SIGKILL_TIMEOUT, 0);
    /* Open MPI binds each rank to ONE core when there are at most 2 ranks: a single worker's
     * threads=2 then share a core (measured: no faster than threads=1). Workers size their own
     * thread pools, so no binding. */
    setenv("OMPI_MCA_hwloc_base_binding_policy", "none", 0);
    /* mpirun's out-of-band listener on loopback too (cluster/loopback/loopback_bind.c) */
    char shim[PATH_MAX + 32];
    snprintf(shim, sizeof shim, "%s/yolo-loopback.so", dir);
    if (access(shim, R_OK) != 0) {
        log_warn("%s missing (make): mpirun's out-of-band port listens on every interface", shim);
        return;
    }
    const char *before = getenv("LD_PRELOAD");
    char *preload = xmalloc(strlen(shim) + (before ? strlen(before) : 0) + 2);
    sprintf(preload, "%s%s%s", shim, before && before[0] ? " " : "", before ? before : "");
    setenv("YOLO_PRELOAD_BEFORE", before ? before : "", 1);
    setenv("LD_PRELOAD", preload, 1);
    free(preload);
}

/* The coordinator rank: mpirun's child running this same binary (0 while not started). */
static pid_t find_coordinator(pid_t mpirun, const char *exe) {
    DIR *d = opendir("/proc");
    if (!d) return 0;
    pid_t found = 0;
    struct dirent *de;
    while (!found && (de = readdir(d))) {
        int pid = atoi(de->d_name);
        if (pid <= 0) continue;
        char path[64], buf[512], link[PATH_MAX];
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        const char *p = strrchr(buf, ')');
        int ppid = 0;
        if (!p || sscanf(p + 2, "%*c %d", &ppid) != 1 || ppid != mpirun) continue;
        snprintf(path, sizeof path, "/proc/%d/exe", pid);
        ssize_t k = readlink(path, link, sizeof link - 1);
        if (k > 0 && (link[k] = 0, !strcmp(link, exe))) found = pid;
    }
    closedir(d);
    return found;
}

/* The coordinator tells the launcher its run folder and, at the end, its exit status through a
 * file of the launcher's (an anonymous memory file, named by its /proc path in YOLO_LAUNCH_STATUS):
 * the rank itself then exits 0, because a rank that exits non-zero makes mpirun tear the job down,
 * which takes seconds. Lines "run <folder>" and "status <n>". Returns the descriptor, -1 when there
 * is none (mpirun's own status counts then). */
static int status_channel(void) {
    int fd = memfd_create("yolo-launch-status", MFD_CLOEXEC);
    if (fd < 0) return -1;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)getpid(), fd);
    setenv(STATUS_ENV, path, 1);
    return fd;
}

/* Appends one line to the launcher's file; false when there is no launcher or it failed. */
static bool tell_launcher(const char *line) {
    const char *path = getenv(STATUS_ENV);
    if (!path) return false;
    int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) return false;
    size_t n = strlen(line);
    bool ok = write(fd, line, n) == (ssize_t)n;
    close(fd);
    return ok;
}

void launch_report_run_dir(const char *dir) {
    char *line = xmalloc(strlen(dir) + 8);
    sprintf(line, "run %s\n", dir);
    tell_launcher(line);
    free(line);
}

int launch_report_status(int rc) {
    char line[32];
    snprintf(line, sizeof line, "status %d\n", rc);
    return tell_launcher(line) ? 0 : rc;
}

/* What the coordinator told (launch_report_*): its status (-1: none) and run folder ("": none). */
static int read_report(int fd, char *run, size_t n) {
    run[0] = 0;
    if (fd < 0) return -1;
    FILE *f = fdopen(dup(fd), "r");
    if (!f) return -1;
    rewind(f);
    int status = -1;
    char line[PATH_MAX + 16];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!strncmp(line, "run ", 4)) snprintf(run, n, "%.*s", (int)n - 1, line + 4);
        if (!strncmp(line, "status ", 7)) status = atoi(line + 7);
    }
    fclose(f);
    return status;
}

/* A coordinator that never finished (killed) could not say so: the launcher does, in train.log
 * and on the terminal, and removes the endpoints it left once its process is gone. */
static void note_unfinished(const char *run, int mpirun_rc) {
    int newest = ckpt_store_max_version(run);
    char line[2 * PATH_MAX + 256], path[PATH_MAX + 16]; /* the run folder appears twice */
    int n = snprintf(line, sizeof line,
                     "the job ended before the coordinator finished (mpirun status %d%s); ",
                     mpirun_rc, mpirun_rc > 128 ? ": a rank was killed by a signal" : "");
    if (newest)
        snprintf(line + n, sizeof line - (size_t)n,
                 "newest version %s/weights/v%04d.h5; continue with: coordinator train resume=%s",
                 run, newest, run);
    else
        snprintf(line + n, sizeof line - (size_t)n, "no version was written");
    log_error("%s", line);
    snprintf(path, sizeof path, "%s/train.log", run);
    FILE *f = fopen(path, "a");
    if (f) {
        fprintf(f, "%s: error: %s\n", log_program(), line);
        fclose(f);
    }
    telemetry_remove_stale(run);
}

/* The job's status: the coordinator's own when it could report one (also when it ended a failed
 * job), else mpirun's (a rank crashed or was killed). A coordinator that never finished leaves its
 * endpoints behind: removed here, once its process is gone. */
static int job_status(int fd, int mpirun_rc) {
    char run[PATH_MAX];
    int status = read_report(fd, run, sizeof run);
    if (status < 0 && run[0]) note_unfinished(run, mpirun_rc);
    if (status < 0 && !run[0] && mpirun_rc > 2 && mpirun_rc != 127) /* 127: said at exec */
        log_error("the training job ended with status %d: a rank crashed or was killed (its "
                  "messages are above)",
                  mpirun_rc);
    return status >= 0 ? status : mpirun_rc;
}

/* Whether SIGTERM is pending for mpirun (it keeps it blocked: start_mpirun). */
static bool term_pending(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    unsigned long long mask = 0;
    bool pending = false;
    while (!pending && fgets(line, sizeof line, f))
        if (sscanf(line, "ShdPnd: %llx", &mask) == 1 || sscanf(line, "SigPnd: %llx", &mask) == 1)
            pending = mask & (1ULL << (SIGTERM - 1));
    fclose(f);
    return pending;
}

static pid_t start_mpirun(char **av) {
    pid_t launcher = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        log_error("fork: %s", strerror(errno));
        return -1;
    }
    if (pid > 0) {
        setpgid(pid, pid); /* also here: no signal may find it in our group */
        return pid;
    }
    /* Its own process group: the terminal's Ctrl-C reaches the launcher alone, which decides.
     * Dying with the launcher: mpirun then tears the job down. stdin: not the terminal, which a
     * background process group may not read. */
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != launcher) _exit(1);
    /* SIGTERM stays blocked in mpirun (it keeps the mask; its ranks get a clean one): mpirun would
     * answer it by killing every rank a second later. The launcher sees it pending and passes it
     * to the coordinator, which saves and stops. */
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, NULL);
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) dup2(null, 0);
    execvp("mpirun", av);
    log_error("mpirun: cannot run (is Open MPI installed? make deps): %s", strerror(errno));
    _exit(127);
}

/* A stop signal for the job, forwarded once (later ones only escalate). */
typedef struct supervisor {
    pid_t mpirun;
    const char *exe;
    bool forwarded, at_once, term_seen;
    int usr1;
    double kill_at;
} supervisor;

static void forward(supervisor *s, int sig, const char *from) {
    pid_t coord = find_coordinator(s->mpirun, s->exe);
    if (!s->forwarded)
        log_warn("%s%s: asking the job to save a version and stop%s", stop_signal_name(sig), from,
                 sig == SIGUSR1 ? "" : " (the same signal again stops it at once)");
    if (coord > 0)
        kill(coord, sig);
    else if (!s->forwarded)
        kill(s->mpirun, SIGKILL); /* no coordinator yet: nothing trained, nothing to save */
    s->forwarded = true;
}

static void escalate(supervisor *s) {
    s->at_once = true;
    log_warn("stopping the job at once (steps since the last version are lost)");
    pid_t coord = find_coordinator(s->mpirun, s->exe);
    if (coord > 0) { /* its second SIGINT: the endpoints go, then the process */
        kill(coord, SIGINT);
        kill(coord, SIGINT);
    }
    s->kill_at = now_seconds() + AT_ONCE_GRACE_S;
}

/* One look at the signals received since the last: the launcher's own, and a SIGTERM sent to
 * mpirun (pending there: it is blocked). */
static void pass_on_signals(supervisor *s) {
    int stops = stop_signal_received(SIGINT) + stop_signal_received(SIGTERM);
    int usr1 = stop_signal_received(SIGUSR1);
    if (stops > 0 && !s->forwarded) forward(s, stop_signal_first(), "");
    if (usr1 > s->usr1) forward(s, SIGUSR1, "");
    s->usr1 = usr1;
    if (!s->term_seen && term_pending(s->mpirun)) {
        s->term_seen = true;
        forward(s, SIGTERM, " (to mpirun)");
    }
    if (stops + s->term_seen >= 2 && !s->at_once) escalate(s);
    if (s->kill_at > 0 && now_seconds() > s->kill_at) {
        kill(s->mpirun, SIGKILL); /* the ranks die with it (their parent-death signal) */
        s->kill_at = 0;
    }
}

/* Waits for mpirun, passing stop signals on as launch.h says. Returns the job's exit status. */
static int supervise(pid_t mpirun, const char *exe, int status_fd) {
    supervisor s = {.mpirun = mpirun, .exe = exe};
    int st = 0;
    for (;;) {
        pid_t r = waitpid(mpirun, &st, WNOHANG);
        if (r == mpirun) break;
        if (r < 0 && errno != EINTR) {
            log_error("waitpid: %s", strerror(errno));
            return 2;
        }
        pass_on_signals(&s);
        usleep(20000);
    }
    int rc = job_status(status_fd, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    return s.at_once && rc != 0 && rc != EXIT_STOPPED_BY_SIGNAL ? 128 + SIGINT : rc;
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
    char *copy = xstrdup(exe);
    single_host_environment(dirname(copy));
    free(copy);
    char np[32];
    snprintf(np, sizeof np, "%d", workers);
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
    stop_signal_install(
        &(stop_signal_opts){.second_interrupt_exits = false, .program = log_program()});
    int status_fd = status_channel();
    pid_t pid = start_mpirun(av);
    free(av);
    int rc = pid < 0 ? 2 : supervise(pid, exe, status_fd);
    if (status_fd >= 0) close(status_fd);
    return rc;
}
