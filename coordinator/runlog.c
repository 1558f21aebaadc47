#include "coordinator/runlog.h"

#include "common/log.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LINE_CAP 16384

static struct {
    bool active;
    int orig[2]; /* the real fds 1 and 2 */
    int rd[2];   /* read ends of the pipes now behind fds 1 and 2 */
    bool tty[2];
    FILE *file;
    pthread_t thread;
    char line[2][LINE_CAP];
    size_t len[2];
} g;

/* Sends bytes on to the real fd; the file gets complete lines, a '\r' restarting the line. */
static void pass_on(int s, const char *buf, size_t n) {
    for (size_t off = 0; off < n;) {
        ssize_t k = write(g.orig[s], buf + off, n - off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break; /* the terminal went away: keep logging to the file */
        off += (size_t)k;
    }
    for (size_t i = 0; i < n; i++) {
        char c = buf[i];
        if (c == '\r')
            g.len[s] = 0;
        else if (c == '\n') {
            fwrite(g.line[s], 1, g.len[s], g.file);
            fputc('\n', g.file);
            g.len[s] = 0;
        } else if (g.len[s] < LINE_CAP)
            g.line[s][g.len[s]++] = c;
    }
    fflush(g.file);
}

static void *tee_main(void *arg) {
    (void)arg;
    struct pollfd p[2] = {{.fd = g.rd[0], .events = POLLIN}, {.fd = g.rd[1], .events = POLLIN}};
    int open_ends = 2;
    char buf[8192];
    while (open_ends > 0) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int s = 0; s < 2; s++) {
            if (p[s].fd < 0 || !(p[s].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t k = read(p[s].fd, buf, sizeof buf);
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) {
                p[s].fd = -1; /* poll ignores negative fds */
                open_ends--;
                continue;
            }
            pass_on(s, buf, (size_t)k);
        }
    }
    for (int s = 0; s < 2; s++)
        if (g.len[s]) {
            fwrite(g.line[s], 1, g.len[s], g.file);
            fputc('\n', g.file);
            g.len[s] = 0;
        }
    fflush(g.file);
    return NULL;
}

int runlog_open(const char *dir, char *err, size_t errlen) {
    if (g.active) return 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/train.log", dir);
    g.file = fopen(path, "a");
    if (!g.file) return errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    fflush(stdout);
    fflush(stderr);
    int wr[2] = {-1, -1};
    for (int s = 0; s < 2; s++) {
        int pf[2];
        g.tty[s] = isatty(s + 1);
        g.orig[s] = dup(s + 1);
        if (g.orig[s] < 0 || pipe(pf) != 0) {
            int e = errno;
            for (int t = 0; t <= s; t++) {
                if (g.orig[t] >= 0) close(g.orig[t]);
                if (t < s) close(g.rd[t]), close(wr[t]);
            }
            fclose(g.file);
            return errf(err, errlen, "%s: cannot set up the log pipe: %s", path, strerror(e));
        }
        g.rd[s] = pf[0];
        wr[s] = pf[1];
    }
    /* Swap the pipes in only once everything exists, so a failure leaves the fds untouched. */
    for (int s = 0; s < 2; s++) {
        if (dup2(wr[s], s + 1) < 0) FATAL("dup2: %s", strerror(errno));
        close(wr[s]);
    }
    /* stdout is now a pipe: keep it line-buffered so the terminal sees lines as before. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (pthread_create(&g.thread, NULL, tee_main, NULL) != 0) FATAL("pthread_create failed");
    g.active = true;
    return 0;
}

void runlog_close(void) {
    if (!g.active) return;
    fflush(stdout);
    fflush(stderr);
    /* Restoring fds 1 and 2 drops the last write ends: the tee thread sees end of file. */
    for (int s = 0; s < 2; s++) dup2(g.orig[s], s + 1);
    pthread_join(g.thread, NULL);
    for (int s = 0; s < 2; s++) {
        close(g.orig[s]);
        close(g.rd[s]);
    }
    fclose(g.file);
    g.active = false;
}

void runlog_raw_fds(int *terminal, int *file) {
    *terminal = g.active ? g.orig[1] : -1;
    *file = g.active ? fileno(g.file) : -1;
}

bool runlog_isatty(int fd) {
    if (g.active && (fd == 1 || fd == 2)) return g.tty[fd - 1];
    return isatty(fd);
}
