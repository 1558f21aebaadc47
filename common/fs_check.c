#include "common/fs_check.h"

#include "common/log.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool dir_writable(const char *dir) {
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode) || access(dir, W_OK | X_OK) != 0) return false;
    if (geteuid() == 0) return (sb.st_mode & (S_IWUSR | S_IWGRP | S_IWOTH)) != 0;
    return true;
}

int dir_creatable(const char *path, char *err, size_t errlen) {
    char buf[PATH_MAX];
    if (!path[0]) return errf(err, errlen, "an empty folder name");
    /* room for the files under it (weights/epochN.h5, endpoints, temporaries) */
    if (strlen(path) + 64 >= sizeof buf) return errf(err, errlen, "%s: path too long", path);
    snprintf(buf, sizeof buf, "%s", path);
    /* walk up to the nearest existing component */
    for (;;) {
        struct stat sb;
        if (stat(buf, &sb) == 0) {
            if (!S_ISDIR(sb.st_mode))
                return errf(err, errlen, "%s: exists and is not a folder", buf);
            if (!dir_writable(buf)) return errf(err, errlen, "%s: folder is not writable", buf);
            return 0;
        }
        if (errno == ENOTDIR) { /* a file further up: find it for the message */
            char *s = strrchr(buf, '/');
            if (!s || s == buf) return errf(err, errlen, "%s: not a folder", path);
            *s = 0;
            continue;
        }
        if (errno != ENOENT) return errf(err, errlen, "%s: %s", buf, strerror(errno));
        char *s = strrchr(buf, '/');
        while (s && s > buf && s[1] == 0) { /* trailing slashes */
            *s = 0;
            s = strrchr(buf, '/');
        }
        if (!s) return dir_writable(".") ? 0 : errf(err, errlen, ".: folder is not writable");
        if (s == buf) return errf(err, errlen, "/: folder is not writable");
        *s = 0;
    }
}
