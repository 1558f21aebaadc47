#include "coordinator/rundir.h"

#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int mkdir_p(const char *path, char *err, size_t errlen) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return errf(err, errlen, "%s: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return errf(err, errlen, "%s: cannot create directory: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return errf(err, errlen, "%s: cannot create directory: %s", buf, strerror(errno));
    return 0;
}

/* Claims the folder: mkdir succeeds for exactly one of several runs started at once. */
static int claim(const char *path, bool exist_ok, char *err, size_t errlen) {
    if (mkdir(path, 0755) == 0) return 0;
    if (errno == ENOENT) { /* name=a/b: make the folders above first */
        char parent[4096];
        snprintf(parent, sizeof parent, "%s", path);
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent) {
            *slash = 0;
            if (mkdir_p(parent, err, errlen) != 0) return -1;
            if (mkdir(path, 0755) == 0) return 0;
        }
    }
    if (errno == EEXIST) return exist_ok ? 0 : 1;
    return errf(err, errlen, "%s: cannot create directory: %s", path, strerror(errno));
}

int rundir_claim(const char *project, const char *name, bool exist_ok, char *out, size_t outlen,
                 char *err, size_t errlen) {
    if (snprintf(out, outlen, "%s/%s", project, name) >= (int)outlen)
        return errf(err, errlen, "%s/%s: path too long", project, name);
    int rc = claim(out, exist_ok, err, errlen);
    for (int i = 2; rc == 1 && i < 10000; i++) {
        snprintf(out, outlen, "%s/%s%d", project, name, i);
        rc = claim(out, false, err, errlen);
    }
    if (rc == 1) return errf(err, errlen, "%s/%s: no free run name up to 9999", project, name);
    return rc;
}

int rundir_create(const char *project, const char *name, bool exist_ok, char *out, size_t outlen,
                  char *err, size_t errlen) {
    if (rundir_claim(project, name, exist_ok, out, outlen, err, errlen) != 0) return -1;
    char w[4096];
    if (snprintf(w, sizeof w, "%s/weights", out) >= (int)sizeof w)
        return errf(err, errlen, "%s: path too long", out);
    return mkdir_p(w, err, errlen);
}
