#include "tests/pyref.h"
#include "tests/testenv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

const char *pyref_bench_python(char *why, size_t n) {
    static char py[1100];
    const char *env = getenv("YOLO_BENCH_VENV");
    const char *dir = env && env[0] ? env : repo_path("build/venv-bench");
    char pins[1100], line[256];
    snprintf(pins, sizeof pins, "%.1000s/.yolo-pins", dir);
    FILE *f = fopen(pins, "r");
    if (!f) {
        snprintf(why, n,
                 "no Ultralytics 8.4.190 environment at %s (run scripts/pyenv.sh bench, or set "
                 "YOLO_BENCH_VENV)",
                 dir);
        return NULL;
    }
    int found = 0;
    while (fgets(line, sizeof line, f)) found |= !strncmp(line, "ultralytics==8.4.190", 20);
    fclose(f);
    snprintf(py, sizeof py, "%.1000s/bin/python", dir);
    if (!found || access(py, X_OK) != 0) {
        snprintf(why, n, "%s is not an Ultralytics 8.4.190 environment (%s)", dir,
                 found ? "no bin/python" : "its pins have no ultralytics==8.4.190");
        return NULL;
    }
    return py;
}

int pyref_run(const char *python, const char *script, const char *in, const char *out, char *why,
              size_t n) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' '%s' >'%s.log' 2>&1", python, script, in, out, out);
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        snprintf(why, n, "%s failed (status %d); see %s.log", script, st, out);
        return -1;
    }
    return 0;
}
