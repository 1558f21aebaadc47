#include "pyenv.h"

#include "testenv.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

bool test_pyenv_python(const char *kind, char *python, size_t n, char *reason, size_t rn) {
    char cmd[1400], line[1024] = "", dir[1024] = "";
    /* the checkout's script, whatever the working directory (testenv.h) */
    snprintf(cmd, sizeof cmd, "bash '%s' %s 2>&1", repo_path("scripts/pyenv.sh"), kind);
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(reason, rn, "cannot run scripts/pyenv.sh");
        return false;
    }
    while (fgets(line, sizeof line, p)) memcpy(dir, line, sizeof dir); /* the last line */
    int rc = pclose(p);
    dir[strcspn(dir, "\n")] = 0;
    if (rc != 0) {
        snprintf(reason, rn, "Python environment '%s' unavailable (PyPI unreachable?): %s", kind,
                 dir);
        return false;
    }
    /* the script prints its default folders relative to the checkout */
    snprintf(python, n, "%s/bin/python", dir[0] == '/' ? dir : repo_path(dir));
    if (access(python, X_OK) != 0) {
        snprintf(reason, rn, "%s: not an executable python", python);
        return false;
    }
    return true;
}
