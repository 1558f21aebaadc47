#include "common/atomic_file.h"

#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *atomic_tmp_path(const char *final_path) {
    char *a = xstrdup(final_path), *b = xstrdup(final_path);
    const char *dir = dirname(a), *base = basename(b);
    size_t n = strlen(dir) + strlen(base) + 64;
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s/.%s.tmp.%ld", dir, base, (long)getpid());
    free(a);
    free(b);
    return tmp;
}

static int fsync_path(const char *path, int flags, char *err, size_t errlen) {
    int fd = open(path, flags);
    if (fd < 0) return errf(err, errlen, "%s: open for fsync: %s", path, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    /* Some filesystems refuse fsync on directories (EINVAL); the rename is still atomic there. */
    if (rc != 0 && !(e == EINVAL && (flags & O_DIRECTORY)))
        return errf(err, errlen, "%s: fsync: %s", path, strerror(e));
    return 0;
}

int atomic_commit(const char *tmp_path, const char *final_path, char *err, size_t errlen) {
    if (fsync_path(tmp_path, O_RDONLY, err, errlen) != 0) return -1;
    if (rename(tmp_path, final_path) != 0)
        return errf(err, errlen, "%s: rename from %s: %s", final_path, tmp_path, strerror(errno));
    char *a = xstrdup(final_path);
    int rc = fsync_path(dirname(a), O_RDONLY | O_DIRECTORY, err, errlen);
    free(a);
    return rc;
}

void atomic_abort(const char *tmp_path) {
    if (tmp_path) unlink(tmp_path);
}

int atomic_write_file_mode(const char *path, const void *data, size_t n, int mode, char *err,
                           size_t errlen) {
    char *tmp = atomic_tmp_path(path);
    unlink(tmp);
    /* With a mode, exactly those bits from the start (fchmod: the umask does not apply), so a
     * private file is never readable by others, not even briefly. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode < 0 ? 0666 : mode);
    FILE *f = NULL;
    if (fd >= 0 && (mode < 0 || fchmod(fd, (mode_t)mode) == 0)) f = fdopen(fd, "wb");
    if (!f) {
        errf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        if (fd >= 0) close(fd);
        atomic_abort(tmp);
        free(tmp);
        return -1;
    }
    int ok = fwrite(data, 1, n, f) == n;
    int e = errno;
    if (fclose(f) != 0 && ok) ok = 0, e = errno;
    if (!ok) {
        errf(err, errlen, "%s: write failed: %s", path, strerror(e));
        atomic_abort(tmp);
        free(tmp);
        return -1;
    }
    int rc = atomic_commit(tmp, path, err, errlen);
    if (rc != 0) atomic_abort(tmp);
    free(tmp);
    return rc;
}

int atomic_write_file(const char *path, const void *data, size_t n, char *err, size_t errlen) {
    return atomic_write_file_mode(path, data, n, -1, err, errlen);
}
