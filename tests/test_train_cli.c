/* The train command from the outside: bad arguments are refused before anything is created. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/testenv.h"

/* Runs a shell command; returns its exit code and its stderr's first line in out. */
static int run(const char *cmd, char *out, size_t n) {
    char full[2048];
    snprintf(full, sizeof full, "%s 2>&1 >/dev/null", cmd);
    FILE *p = popen(full, "r");
    cr_assert(p);
    out[0] = 0;
    if (!fgets(out, (int)n, p)) out[0] = 0;
    char sink[512];
    while (fgets(sink, sizeof sink, p)) {
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(traincli, bad_arguments_exit_2_and_create_nothing) {
    char dir[256];
    test_temp_dir(dir, sizeof dir, "traincli");
    const char *coord = bin_path("coordinator");
    char data[300], cmd[2048], out[512];
    snprintf(data, sizeof data, "%s/d.h5", dir);
    FILE *f = fopen(data, "w"); /* exists; never opened: every case fails before that */
    cr_assert(f);
    fclose(f);
    struct {
        const char *args, *expect;
    } cases[] = {
        {"epochs=-3", "epochs=-3"},
        {"batch=0", "batch=0"},
        {"lr0=fast", "lr0=fast"},
        {"bogus_key=1", "bogus_key"},
        {"batch=10 workers=4", "not divisible"},
        {"micro_batch=3", "micro_batch=3"},
        {"cache=disk", "cache=disk"},
        {"cache=sometimes", "cache=sometimes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(cmd, sizeof cmd, "'%s' train data=%s project=%s/runs name=x %s", coord, data, dir,
                 cases[i].args);
        int rc = run(cmd, out, sizeof out);
        cr_assert_eq(rc, 2, "%s: exit %d (%s)", cases[i].args, rc, out);
        cr_assert(strstr(out, cases[i].expect), "%s: message names it: %s", cases[i].args, out);
        cr_assert(!strchr(out, '\n') || strchr(out, '\n') == out + strlen(out) - 1, "one line");
    }
    snprintf(cmd, sizeof cmd, "'%s' train data=%s/missing.h5 project=%s/runs", coord, dir, dir);
    cr_assert_eq(run(cmd, out, sizeof out), 2);
    cr_assert(strstr(out, "missing.h5"), "%s", out);
    char runs[300];
    snprintf(runs, sizeof runs, "%s/runs", dir);
    struct stat st;
    cr_assert_neq(stat(runs, &st), 0, "no run directory was created");
    test_remove_dir(dir);
}
