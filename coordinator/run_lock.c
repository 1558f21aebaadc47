#include "coordinator/run_lock.h"

#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

static int busy(const char *run_dir, int fd, char *err, size_t errlen) {
    char holder[256] = "";
    ssize_t k = pread(fd, holder, sizeof holder - 1, 0);
    holder[k > 0 ? k : 0] = 0;
    holder[strcspn(holder, "\n")] = 0;
    return errf(err, errlen,
                "%s is in use by another run (%s); wait for it to end or pick another "
                "name",
                run_dir, holder[0] ? holder : "holder unknown");
}

/* Opens the lock file: a folder that does not exist holds no lock (create: make the file). */
static int open_lock(const char *run_dir, int flags, char *err, size_t errlen) {
    char p[4200];
    if (snprintf(p, sizeof p, "%s/" RUN_LOCK_FILE, run_dir) >= (int)sizeof p)
        return errf(err, errlen, "%s: path too long", run_dir), -2;
    int fd = open(p, flags | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ENOENT && !(flags & O_CREAT)) return -3;
    if (fd < 0) return errf(err, errlen, "%s: cannot open: %s", p, strerror(errno)), -2;
    return fd;
}

int run_lock_acquire(const char *run_dir, char *err, size_t errlen) {
    int fd = open_lock(run_dir, O_RDWR | O_CREAT, err, errlen);
    if (fd < 0) return -1;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        int rc = e == EWOULDBLOCK ? busy(run_dir, fd, err, errlen)
                                  : errf(err, errlen, "%s: flock: %s", run_dir, strerror(e));
        close(fd);
        return rc;
    }
    char host[128] = "?", when[32], text[256];
    gethostname(host, sizeof host - 1);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int n = snprintf(text, sizeof text, "pid %ld on %s since %s\n", (long)getpid(), host, when);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)n, 0) != n)
        log_warn("%s/" RUN_LOCK_FILE ": cannot record the holder", run_dir);
    return fd; /* held until the process ends */
}

int run_lock_check(const char *run_dir, char *err, size_t errlen) {
    int fd = open_lock(run_dir, O_RDONLY, err, errlen);
    if (fd == -3) return 0;
    if (fd < 0) return -1;
    int rc = 0;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0)
        rc = errno == EWOULDBLOCK ? busy(run_dir, fd, err, errlen) : 0;
    close(fd); /* also releases the probe's own lock */
    return rc;
}
