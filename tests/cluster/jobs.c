#include "jobs.h"

#include "../runs.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void job_make_dir(char *dir, size_t n, const char *prefix) {
    snprintf(dir, n, "/tmp/%s-XXXXXX", prefix);
    cr_assert(mkdtemp(dir), "mkdtemp %s", dir);
    cr_assert_eq(run_sh("./bin/coordinator data synth out=%s/s.h5 train=64 val=8 imgsz=64 "
                        "classes=2 seed=3 >/dev/null",
                        dir),
                 0, "synthetic data");
}

void job_start(job *j, const char *dir, const char *name, const char *env, const char *args) {
    memset(j, 0, sizeof *j);
    snprintf(j->dir, sizeof j->dir, "%s", dir);
    snprintf(j->name, sizeof j->name, "%s", name);
    snprintf(j->log, sizeof j->log, "%s/%s.log", dir, name);
    snprintf(j->rc, sizeof j->rc, "%s/%s.rc", dir, name);
    char sid[256];
    snprintf(sid, sizeof sid, "%s/%s.sid", dir, name);
    cr_assert_eq(
        run_sh("setsid sh -c 'echo $$ > %s; %s ./bin/coordinator train data=%s/s.h5 " JOB_ARGS
               " project=%s name=%s %s >> %s 2>&1; echo $? > %s' "
               ">/dev/null 2>&1 </dev/null &",
               sid, env, dir, dir, name, args, j->log, j->rc),
        0);
    cr_assert(run_wait_file(sid, 30), "job %s started", name);
    usleep(100000);
    j->session = (pid_t)run_read_rc(sid);
    cr_assert_gt(j->session, 1);
}

int job_run(const char *dir, const char *name, const char *env, const char *args) {
    return run_sh("%s timeout 600 ./bin/coordinator train data=%s/s.h5 " JOB_ARGS
                  " project=%s name=%s %s >> %s/%s.log 2>&1",
                  env, dir, dir, name, args, dir, name);
}

void job_wait_text(const job *j, const char *text, double seconds) {
    cr_assert(run_wait_text(j->log, text, seconds), "'%s' did not appear; see %s", text, j->log);
}

int job_wait_end(const job *j, double seconds) {
    cr_assert(run_wait_file(j->rc, seconds), "job %s did not end within %.0f s; see %s", j->name,
              seconds, j->log);
    usleep(100000); /* the shell writes the number after creating the file */
    return run_read_rc(j->rc);
}

/* Parent, session and state of a process (from /proc/<pid>/stat); false when it is gone. */
static bool proc_stat(pid_t pid, pid_t *ppid, pid_t *sid, char *state, char *comm, size_t n) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    char *l = strchr(buf, '('), *r = strrchr(buf, ')');
    int pp = 0, pg = 0, s = 0;
    if (!l || !r || sscanf(r + 2, "%c %d %d %d", state, &pp, &pg, &s) != 4) return false;
    snprintf(comm, n, "%.*s", (int)(r - l - 1), l + 1);
    *ppid = pp;
    *sid = s;
    return true;
}

/* The k-th live child of parent whose command is comm (0 when none). */
static pid_t child(pid_t parent, const char *comm, int k) {
    if (parent <= 0) return 0;
    DIR *d = opendir("/proc");
    cr_assert(d);
    pid_t found = 0;
    struct dirent *de;
    while (!found && (de = readdir(d))) {
        pid_t pid = (pid_t)atoi(de->d_name), pp, sid;
        char st, name[64];
        if (pid > 0 && proc_stat(pid, &pp, &sid, &st, name, sizeof name) && pp == parent &&
            st != 'Z' && !strcmp(name, comm) && k-- == 0)
            found = pid;
    }
    closedir(d);
    return found;
}

pid_t job_launcher(const job *j) {
    return child(j->session, "coordinator", 0);
}
pid_t job_mpirun(const job *j) {
    return child(job_launcher(j), "mpirun", 0);
}
pid_t job_coordinator(const job *j) {
    return child(job_mpirun(j), "coordinator", 0);
}
pid_t job_worker(const job *j, int k) {
    return child(job_mpirun(j), "worker", k);
}

pid_t job_worker_rank(const job *j, int rank) {
    for (int k = 0; k < 64; k++) {
        pid_t pid = job_worker(j, k);
        if (!pid) return 0;
        char path[64], env[1 << 16];
        snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t len = fread(env, 1, sizeof env - 1, f);
        fclose(f);
        env[len] = 0;
        for (size_t i = 0; i < len; i += strlen(env + i) + 1) /* NUL-separated NAME=value */
            if (!strncmp(env + i, "OMPI_COMM_WORLD_RANK=", 21) && atoi(env + i + 21) == rank)
                return pid;
    }
    return 0;
}

int job_processes(const job *j, pid_t *out, int max) {
    DIR *d = opendir("/proc");
    cr_assert(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        pid_t pid = (pid_t)atoi(de->d_name), pp, sid;
        char st, name[64];
        if (pid > 0 && pid != j->session && proc_stat(pid, &pp, &sid, &st, name, sizeof name) &&
            sid == j->session && st != 'Z' && n < max)
            out[n++] = pid;
    }
    closedir(d);
    return n;
}

void job_assert_no_process_left(const job *j, double seconds) {
    pid_t left[64];
    int n = 0;
    for (double t = 0; t <= seconds; t += 0.2) {
        if ((n = job_processes(j, left, 64)) == 0) return;
        usleep(200000);
    }
    char names[512] = "";
    size_t len = 0;
    for (int i = 0; i < n && len < sizeof names - 80; i++) {
        pid_t pp, sid;
        char st, name[64] = "?";
        proc_stat(left[i], &pp, &sid, &st, name, sizeof name);
        len += (size_t)snprintf(names + len, sizeof names - len, " %s(%d)", name, (int)left[i]);
    }
    run_kill_session(j->session, 30); /* no stray process outlives the test */
    cr_assert_fail("processes of job %s left after %.0f s:%s", j->name, seconds, names);
}

void job_version_path(char *out, size_t n, const char *dir, const char *name, const char *file) {
    snprintf(out, n, "%s/%s/weights/%s", dir, name, file);
}

int job_verify_versions(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s/weights", dir, name);
    DIR *d = opendir(path);
    int n = 0, v;
    struct dirent *de;
    while (d && (de = readdir(d))) n += sscanf(de->d_name, "v%d.h5", &v) == 1;
    if (d) closedir(d);
    if (n > 0)
        cr_assert_eq(run_sh("./build/tests/ckpt-check verify %s/v*.h5 >> %s/verify.log", path, dir),
                     0, "every version of %s verifies; see %s/verify.log", name, dir);
    return n;
}

void job_assert_same_weights(const char *a, const char *b) {
    char out[512];
    snprintf(out, sizeof out, "%s.same", a);
    cr_assert_eq(run_sh("./build/tests/ckpt-check same %s %s > %s", a, b, out), 0,
                 "%s and %s differ; see %s", a, b, out);
}

int job_newest_version(const char *dir, const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s/weights", dir, name);
    DIR *d = opendir(path);
    if (!d) return 0;
    int newest = 0, v;
    struct dirent *de;
    while ((de = readdir(d)))
        if (sscanf(de->d_name, "v%d.h5", &v) == 1 && v > newest) newest = v;
    closedir(d);
    return newest;
}

void job_assert_endpoints_removed(const char *dir, const char *name) {
    cr_assert_neq(run_sh("for f in %s/%s/endpoints.json %s/%s/*.sock %s/%s/.telemetry/*.sock; do "
                         "[ -e \"$f\" ] && exit 0; done; exit 1",
                         dir, name, dir, name, dir, name),
                  0, "endpoints.json and the sockets of %s/%s are removed", dir, name);
}

int job_assert_ended_clean(const job *j, double seconds) {
    job_assert_no_process_left(j, seconds);
    job_assert_endpoints_removed(j->dir, j->name);
    return job_verify_versions(j->dir, j->name);
}

void job_watch_start(const job *j) {
    char out[300];
    snprintf(out, sizeof out, "%s/%s.watch", j->dir, j->name);
    cr_assert_eq(run_sh("(./bin/coordinator watch %s/%s > %s 2>&1; echo $? > %s.rc) "
                        ">/dev/null 2>&1 </dev/null &",
                        j->dir, j->name, out, out),
                 0);
    cr_assert(run_wait_text(out, "watching ", 60), "watch connects; see %s", out);
    usleep(500000); /* its subscription reaches the PUB socket */
}

int job_watch_end(const job *j, double seconds, char *out, size_t n) {
    char rc[320];
    snprintf(out, n, "%s/%s.watch", j->dir, j->name);
    snprintf(rc, sizeof rc, "%s.rc", out);
    cr_assert(run_wait_file(rc, seconds), "watch ended; see %s", out);
    usleep(100000);
    return run_read_rc(rc);
}
