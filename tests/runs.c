#include "runs.h"
#include "tests/testenv.h"

#include <criterion/criterion.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <dirent.h>
#include <hdf5.h>
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

typedef struct cmp_ctx {
    hid_t other;
    run_cmp r;
} cmp_ctx;

static float *read_all(hid_t f, const char *name, size_t *n) {
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return NULL;
    hid_t s = H5Dget_space(d);
    hssize_t k = H5Sget_simple_extent_npoints(s);
    float *v = malloc((size_t)(k > 0 ? k : 1) * sizeof *v);
    if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
        free(v);
        v = NULL;
    }
    H5Sclose(s);
    H5Dclose(d);
    *n = (size_t)k;
    return v;
}

static herr_t cmp_one(hid_t loc, const char *name, const H5L_info_t *info, void *op) {
    (void)info;
    cmp_ctx *c = op;
    size_t na = 0, nb = 0;
    float *a = read_all(loc, name, &na), *b = read_all(c->other, name, &nb);
    if (!a || !b || na != nb) {
        c->r.missing++;
        free(a);
        free(b);
        return 0;
    }
    double diff = 0, scale = 0;
    bool buffer = strstr(name, "running_") != NULL;
    for (size_t i = 0; i < na; i++) {
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)a[i]));
    }
    double rel = scale > 0 ? diff / scale : diff;
    double *worst = buffer ? &c->r.max_rel_buffer : &c->r.max_rel_param;
    if (!buffer && rel > *worst) snprintf(c->r.worst, sizeof c->r.worst, "%s", name);
    if (rel > *worst) *worst = rel;
    (buffer ? c->r.buffers++ : c->r.tensors++);
    free(a);
    free(b);
    return 0;
}

run_cmp run_compare_weights(const char *pa, const char *pb) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    cmp_ctx c = {0};
    hid_t fa = H5Fopen(pa, H5F_ACC_RDONLY, H5P_DEFAULT),
          fb = H5Fopen(pb, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(fa >= 0 && fb >= 0, "open %s and %s", pa, pb);
    /* the EMA model of each checkpoint (what Ultralytics validates and saves) */
    hid_t ga = H5Gopen2(fa, "ema", H5P_DEFAULT), gb = H5Gopen2(fb, "ema", H5P_DEFAULT);
    cr_assert(ga >= 0 && gb >= 0, "ema group in %s and %s", pa, pb);
    c.other = gb;
    cr_assert(H5Literate(ga, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, cmp_one, &c) >= 0);
    H5Gclose(ga);
    H5Gclose(gb);
    H5Fclose(fa);
    H5Fclose(fb);
    return c.r;
}

int run_mpi_program(const char *name, int np, char *out, size_t n) {
    test_mpi_env(); /* mpirun as root on a 2-core box (make test exports these too) */
    char prog[PATH_MAX + 64], cmd[PATH_MAX + 160];
    snprintf(prog, sizeof prog, "%s/mpi/%s", test_exe_dir(), name);
    cr_assert(access(prog, X_OK) == 0, "%s not built (make all builds it)", prog);
    snprintf(cmd, sizeof cmd, "timeout 120 mpirun -np %d '%s' 2>&1", np, prog);
    FILE *p = popen(cmd, "r");
    cr_assert(p, "popen %s", cmd);
    size_t len = fread(out, 1, n - 1, p);
    out[len] = 0;
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void run_flip_dataset_byte(const char *path, const char *dataset, long at) {
    hid_t h = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert_geq(h, 0, "%s", path);
    hid_t d = H5Dopen2(h, dataset, H5P_DEFAULT);
    cr_assert_geq(d, 0, "%s: %s", path, dataset);
    haddr_t off = H5Dget_offset(d);
    H5Dclose(d);
    H5Fclose(h);
    cr_assert_neq(off, HADDR_UNDEF, "%s: %s is not contiguous", path, dataset);
    FILE *f = fopen(path, "r+b");
    cr_assert(f, "%s", path);
    cr_assert_eq(fseek(f, (long)off + at, SEEK_SET), 0);
    int c = fgetc(f);
    cr_assert_neq(c, EOF);
    cr_assert_eq(fseek(f, (long)off + at, SEEK_SET), 0);
    cr_assert_neq(fputc(c ^ 0x40, f), EOF);
    cr_assert_eq(fclose(f), 0);
}

void run_set_int_attr(const char *path, const char *obj, const char *name, int v) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(f, 0, "%s", path);
    hid_t g = H5Oopen(f, obj, H5P_DEFAULT);
    cr_assert_geq(g, 0, "%s: %s", path, obj);
    hid_t a = H5Aopen(g, name, H5P_DEFAULT);
    cr_assert_geq(a, 0, "%s: %s@%s", path, obj, name);
    cr_assert_geq(H5Awrite(a, H5T_NATIVE_INT, &v), 0);
    H5Aclose(a);
    H5Oclose(g);
    cr_assert_geq(H5Fclose(f), 0);
}
