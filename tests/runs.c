#include "runs.h"
#include "tests/testenv.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

void run_make_data(char *dir, size_t n, const char *prefix, int ntrain, int nval) {
    test_temp_dir(dir, n, strncmp(prefix, "yolo-", 5) ? prefix : prefix + 5);
    int rc = run_sh("\"$YOLO_COORD\" data synth out=%s/s.h5 train=%d val=%d imgsz=64 classes=3 "
                    "seed=3 >/dev/null",
                    dir, ntrain, nval);
    cr_assert_eq(rc, 0, "synth");
}

int run_sh(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    cr_assert_lt(k, (int)sizeof cmd, "command too long");
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

bool run_wait_file(const char *path, double seconds) {
    for (double t = 0; t < seconds; t += 0.1) {
        if (access(path, F_OK) == 0) return true;
        usleep(100000);
    }
    return false;
}

bool run_file_has(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strstr(buf, needle) != NULL;
}

bool run_wait_text(const char *path, const char *needle, double seconds) {
    for (double t = 0; t < seconds; t += 0.1) {
        if (run_file_has(path, needle)) return true;
        usleep(100000);
    }
    return false;
}

int run_read_rc(const char *path) {
    FILE *f = fopen(path, "r");
    int rc = -1;
    if (f && fscanf(f, "%d", &rc) != 1) rc = -1;
    if (f) fclose(f);
    return rc;
}

/* Session id of a process (field 6 of /proc/<pid>/stat), -1 when gone. */
static pid_t session_of(pid_t pid) {
    char p[64], buf[1024];
    snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(p, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *rp = strrchr(buf, ')'); /* the command name may hold spaces */
    int ppid, pgrp, sid;
    char state;
    if (!rp || sscanf(rp + 2, "%c %d %d %d", &state, &ppid, &pgrp, &sid) != 4) return -1;
    return state == 'Z' ? -1 : sid;
}

static int signal_session(pid_t sid) {
    DIR *d = opendir("/proc");
    cr_assert(d);
    int k = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        pid_t pid = (pid_t)atoi(de->d_name);
        if (pid > 0 && session_of(pid) == sid && kill(pid, SIGKILL) == 0) k++;
    }
    closedir(d);
    return k;
}

int run_kill_session(pid_t sid, double seconds) {
    cr_assert_gt(sid, 1);
    int killed = signal_session(sid);
    for (double t = 0; t < seconds; t += 0.1) {
        usleep(100000);
        if (signal_session(sid) == 0) return killed;
    }
    cr_assert_fail("processes of session %d still alive after SIGKILL", (int)sid);
    return killed;
}

const char *run_test_python(char *why, size_t n) {
    static char py[1200];
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "'%s' test 2>&1", repo_path("scripts/pyenv.sh"));
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    char line[1024], last[1024] = "";
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = 0;
        if (line[0]) snprintf(last, sizeof last, "%s", line);
    }
    int st = pclose(p);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        snprintf(why, n, "no Python test environment (scripts/pyenv.sh test: %s)", last);
        return NULL;
    }
    snprintf(py, sizeof py, "%s/bin/python", last);
    if (access(py, X_OK) != 0) {
        snprintf(why, n, "%s not found", py);
        return NULL;
    }
    return py;
}
