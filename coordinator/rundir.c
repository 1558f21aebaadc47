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

static bool exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

int rundir_create(const char *project, const char *name, bool exist_ok, char *out, size_t outlen,
                  char *err, size_t errlen) {
    if (snprintf(out, outlen, "%s/%s", project, name) >= (int)outlen)
        return errf(err, errlen, "%s/%s: path too long", project, name);
    if (!exist_ok && exists(out)) {
        int i;
        for (i = 2; i < 10000; i++) {
            snprintf(out, outlen, "%s/%s%d", project, name, i);
            if (!exists(out)) break;
        }
        if (i == 10000)
            return errf(err, errlen, "%s/%s: no free run name up to 9999", project, name);
    }
    char w[4096];
    if (snprintf(w, sizeof w, "%s/weights", out) >= (int)sizeof w)
        return errf(err, errlen, "%s: path too long", out);
    return mkdir_p(w, err, errlen);
}
