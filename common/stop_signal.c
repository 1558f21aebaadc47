#include "common/stop_signal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MAX_UNLINK 8
#define PATH_CAP 4096

/* Everything the handler reads is set up before it is installed or written with signals blocked;
 * it calls only async-signal-safe functions (write, unlink, kill, _exit). */
static volatile sig_atomic_t first_sig, n_int, n_term, n_usr1;
static stop_signal_opts opts;
static char unlink_paths[MAX_UNLINK][PATH_CAP];
static volatile sig_atomic_t n_unlink, quiet;
static int line_fds[2] = {-1, -1};
static char line_interrupt[256], line_peer_gone[256];

static void write_all(int fd, const char *s) {
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t k = write(fd, s, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return;
        s += k;
        n -= (size_t)k;
    }
}

static _Noreturn void end_at_once(int sig, const char *line) {
    if (!quiet && line_fds[0] < 0) write_all(STDERR_FILENO, line);
    for (int i = 0; i < 2 && !quiet; i++)
        if (line_fds[i] >= 0) write_all(line_fds[i], line);
    for (int i = 0; i < n_unlink; i++) unlink(unlink_paths[i]);
    _exit(128 + sig);
}

static bool peer_gone(void) {
    return opts.peer_pid > 0 && kill(opts.peer_pid, 0) != 0 && errno == ESRCH;
}

static void on_signal(int sig) {
    int saved = errno;
    if (!first_sig) first_sig = sig;
    if (sig == SIGINT) n_int++;
    if (sig == SIGTERM) n_term++;
    if (sig == SIGUSR1) n_usr1++;
    if (peer_gone()) end_at_once(sig, line_peer_gone);
    if (sig == SIGINT && n_int > 1 && opts.second_interrupt_exits) end_at_once(sig, line_interrupt);
    errno = saved;
}

void stop_signal_install(const stop_signal_opts *o) {
    opts = *o;
    const char *p = o->program ? o->program : "yolo";
    snprintf(line_interrupt, sizeof line_interrupt,
             "%s: second SIGINT: stopping at once (steps since the last version are lost)\n", p);
    snprintf(line_peer_gone, sizeof line_peer_gone,
             "%s: stop signal and the coordinator (pid %d) is gone: exiting\n", p, o->peer_pid);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask);
    const int sigs[] = {SIGINT, SIGTERM, SIGUSR1};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) sigaction(sigs[i], &sa, NULL);
}

void stop_signal_quiet(void) {
    quiet = 1;
}

int stop_signal_first(void) {
    return first_sig;
}
int stop_signal_received(int sig) {
    return sig == SIGINT ? n_int : sig == SIGTERM ? n_term : sig == SIGUSR1 ? n_usr1 : 0;
}

/* Changes what the handler reads: with the stop signals blocked, so it never sees half. */
static void block(sigset_t *old) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    sigaddset(&s, SIGTERM);
    sigaddset(&s, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &s, old);
}

void stop_signal_unlink_on_exit(const char *path) {
    sigset_t old;
    block(&old);
    if (n_unlink < MAX_UNLINK && strlen(path) < PATH_CAP)
        snprintf(unlink_paths[n_unlink++], PATH_CAP, "%s", path);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void stop_signal_write_on_exit(int fd) {
    sigset_t old;
    block(&old);
    if (fd >= 0 && line_fds[1] < 0) line_fds[line_fds[0] < 0 ? 0 : 1] = fd;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

const char *stop_signal_name(int sig) {
    switch (sig) {
    case SIGINT:
        return "SIGINT";
    case SIGTERM:
        return "SIGTERM";
    case SIGUSR1:
        return "SIGUSR1";
    case SIGUSR2:
        return "SIGUSR2";
    case SIGKILL:
        return "SIGKILL";
    case SIGHUP:
        return "SIGHUP";
    case SIGSEGV:
        return "SIGSEGV";
    case SIGABRT:
        return "SIGABRT";
    case SIGBUS:
        return "SIGBUS";
    default:
        return "a signal";
    }
}
