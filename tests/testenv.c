#include "tests/testenv.h"

#include <criterion/criterion.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* snprintf into a PATH_MAX buffer, asserting that it fits */
static char *path_fmt(char *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, PATH_MAX, fmt, ap);
    va_end(ap);
    cr_assert(n >= 0 && n < PATH_MAX, "path too long: %s", b);
    return b;
}

static char *ring_next(void) {
    static char buf[16][PATH_MAX];
    static int next;
    return buf[next++ % 16];
}

static bool is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

const char *test_exe_dir(void) {
    static char dir[PATH_MAX];
    if (!dir[0]) {
        ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
        cr_assert(n > 0, "cannot read /proc/self/exe");
        dir[n] = 0;
        *strrchr(dir, '/') = 0;
    }
    return dir;
}

/* The checkout: the nearest folder above the test binary holding tests/fixtures and models. */
static const char *repo_root(void) {
    static char root[PATH_MAX];
    if (!root[0]) {
        char cand[PATH_MAX], probe[PATH_MAX];
        path_fmt(cand, "%s", test_exe_dir());
        for (int up = 0; up < 5; up++) {
            path_fmt(probe, "%s/tests/fixtures", cand);
            bool fixtures = is_dir(probe);
            path_fmt(probe, "%s/models", cand);
            if (fixtures && is_dir(probe)) {
                cr_assert(realpath(cand, root), "realpath %s", cand);
                return root;
            }
            char *s = strrchr(cand, '/');
            if (!s || s == cand) break;
            *s = 0;
        }
        cr_assert_fail("no checkout (tests/fixtures and models/) above %s", test_exe_dir());
    }
    return root;
}

const char *repo_path(const char *rel) {
    char *b = ring_next();
    path_fmt(b, "%s/%s", repo_root(), rel);
    return b;
}

const char *bin_path(const char *name) {
    char *b = ring_next();
    const char *dir = getenv("YOLO_BIN_DIR");
    if (dir && *dir)
        path_fmt(b, "%s/%s", dir, name);
    else
        path_fmt(b, "%s/bin/%s", repo_root(), name);
    cr_assert(access(b, X_OK) == 0, "%s not built (make all)", b);
    return b;
}

const char *fixture_path(const char *name) {
    char *b = ring_next();
    path_fmt(b, "%s/tests/fixtures/%s", repo_root(), name);
    return b;
}

const char *shared_path(const char *rel) {
    static char root[PATH_MAX];
    if (!root[0]) {
        const char *env = getenv("YOLO_SHARED");
        char cand[PATH_MAX];
        if (env && *env)
            path_fmt(cand, "%s", env);
        else
            path_fmt(cand, "%s/../shared", repo_root());
        if (!realpath(cand, root)) return NULL;
    }
    char *b = ring_next();
    path_fmt(b, "%s/%s", root, rel);
    return access(b, R_OK) == 0 ? b : NULL;
}

char *test_temp_dir(char *buf, size_t n, const char *tag) {
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    cr_assert((size_t)snprintf(buf, n, "%s/yolo-%s-XXXXXX", tmp, tag) < n, "temp path too long");
    cr_assert(mkdtemp(buf), "mkdtemp %s", buf);
    return buf;
}

void test_remove_dir(const char *dir) {
    cr_assert(strstr(dir, "/yolo-") && !strchr(dir, '\''), "not a test folder: %s", dir);
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "chmod -R u+rwx '%s' 2>/dev/null; rm -rf '%s'", dir, dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

void test_copy(const char *src, const char *dst) {
    char cmd[3 * PATH_MAX];
    snprintf(cmd, sizeof cmd, "cp -R '%s' '%s' && chmod -R u+w '%s'", src, dst, dst);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

int test_run(const char *cmd, char *out, size_t outlen) {
    char *full = malloc(strlen(cmd) + 16);
    cr_assert(full);
    sprintf(full, "(%s) 2>&1", cmd);
    FILE *p = popen(full, "r");
    cr_assert(p, "popen %s", cmd);
    size_t len = 0, got;
    char sink[4096];
    /* read everything (a full pipe would block the command); keep what fits */
    while ((got = fread(sink, 1, sizeof sink, p)) > 0) {
        size_t keep = len + got < outlen ? got : outlen - 1 - len;
        memcpy(out + len, sink, keep);
        len += keep;
    }
    out[len] = 0;
    int st = pclose(p);
    free(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void last_line(const char *text, char *line, size_t n) {
    size_t end = strlen(text);
    while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == '\r')) end--;
    size_t start = end;
    while (start > 0 && text[start - 1] != '\n') start--;
    size_t len = end - start < n - 1 ? end - start : n - 1;
    memcpy(line, text + start, len);
    line[len] = 0;
}

/* $YOLO_COORD and $YOLO_WORKER for shell commands ("$YOLO_COORD" train ...), set before any test
 * runs: the built programs next to this checkout (or in $YOLO_BIN_DIR). */
__attribute__((constructor)) static void export_programs(void) {
    char exe[PATH_MAX], path[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return;
    exe[n] = 0;
    const char *dir = getenv("YOLO_BIN_DIR");
    char bin[PATH_MAX];
    if (dir && *dir) {
        snprintf(bin, sizeof bin, "%s", dir);
    } else { /* <checkout>/build/tests/yolo-tests -> <checkout>/bin (the layout of `make`) */
        for (int up = 0; up < 3; up++) *strrchr(exe, '/') = 0;
        snprintf(bin, sizeof bin, "%.4000s/bin", exe);
    }
    snprintf(path, sizeof path, "%.4000s/coordinator", bin);
    setenv("YOLO_COORD", path, 0);
    snprintf(path, sizeof path, "%.4000s/worker", bin);
    setenv("YOLO_WORKER", path, 0);
}

void test_mpi_env(void) {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    setenv("OMPI_MCA_btl", "self,vader", 0);
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 0);
}
