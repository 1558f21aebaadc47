#include "coordinator/rank_watch.h"

#include "common/log.h"
#include "common/poll_wait.h"
#include "common/stop_signal.h"
#include "common/timer.h"
#include "coordinator/launch.h"

#include <mpi.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define LIVENESS_PERIOD_S 0.5

typedef struct last_step {
    int epoch, step; /* 1-based; 0: no step reported yet */
} last_step;

static struct {
    int size;
    rank_info *ranks;
    last_step *last;
    double warn_s, abort_s;
    telemetry *tel;
    void (*on_fail)(void *);
    void *ctx;
    double t_reports, gap, gap_before; /* when the last step's reports were all in; the gaps */
} g = {.warn_s = 60, .abort_s = 600};

void rank_watch_start(void) {
    CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &g.size));
    g.ranks = xcalloc((size_t)g.size, sizeof *g.ranks);
    g.last = xcalloc((size_t)g.size, sizeof *g.last);
    rank_info me;
    rank_info_self(&me);
    CHECK_MPI(
        MPI_Allgather(&me, sizeof me, MPI_BYTE, g.ranks, sizeof me, MPI_BYTE, MPI_COMM_WORLD));
    /* mpirun gone (even by SIGKILL): a careful stop, which finds the workers gone and ends */
    pid_t parent = getppid();
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) log_warn("prctl(PR_SET_PDEATHSIG) failed");
    if (getppid() != parent) raise(SIGTERM);
    /* output to a launcher that is gone must not end the process before it has cleaned up */
    signal(SIGPIPE, SIG_IGN);
    stop_signal_install(
        &(stop_signal_opts){.second_interrupt_exits = true, .program = log_program()});
}

void rank_watch_limits(double warn_s, double abort_s) {
    g.warn_s = warn_s;
    g.abort_s = abort_s;
}

void rank_watch_telemetry(telemetry *t) {
    g.tel = t;
}

void rank_watch_on_fail(void (*fn)(void *ctx), void *ctx) {
    g.on_fail = fn;
    g.ctx = ctx;
}

const rank_info *rank_watch_rank(int rank) {
    return rank >= 0 && rank < g.size ? &g.ranks[rank] : NULL;
}

void rank_watch_log_ranks(void) {
    if (g.size < 1) return;
    char line[2048];
    size_t len = (size_t)snprintf(line, sizeof line, "ranks: coordinator %s:%d, workers",
                                  g.ranks[0].host, (int)g.ranks[0].pid);
    for (int r = 1; r < g.size && r <= 16 && len < sizeof line - 100; r++)
        len += (size_t)snprintf(line + len, sizeof line - len, " %s:%d", g.ranks[r].host,
                                (int)g.ranks[r].pid);
    if (g.size > 17) snprintf(line + len, sizeof line - len, " and %d more", g.size - 17);
    log_info("%s", line);
}

void rank_watch_describe(int rank, char *out, size_t n) {
    const rank_info *r = rank_watch_rank(rank);
    if (!r) {
        snprintf(out, n, "rank %d", rank);
        return;
    }
    const last_step *l = &g.last[rank];
    char step[64] = "no step reported yet";
    if (l->epoch > 0)
        snprintf(step, sizeof step, "last reported epoch %d step %d", l->epoch, l->step);
    snprintf(out, n, "rank %d (host %s, pid %d, %s)", rank, r->host, (int)r->pid, step);
}

/* Kills the workers on this host that are still running: the job has failed, they hold nothing
 * that can still be saved, and one may sit in an all-reduce with a dead peer where no message
 * reaches it. Remote ones end with MPI_Abort. */
static void kill_local_workers(void) {
    for (int r = 1; r < g.size; r++)
        if (rank_info_alive(&g.ranks[r]) == 1) kill(g.ranks[r].pid, SIGKILL);
}

/* `who` names the ranks to blame; rank < 1: no one rank is (telemetry's rank_failure names none).
 */
static _Noreturn void fail_as(int rank, const char *who, const char *why) {
    char msg[2048];
    snprintf(msg, sizeof msg, "%s %s: ending the job", who, why);
    log_error("%s", msg);
    if (g.tel) {
        const rank_info *r = rank_watch_rank(rank);
        telemetry_publish_rank_failure(g.tel, msg, rank, r ? r->host : "", r ? r->pid : 0,
                                       g.last[rank].epoch, g.last[rank].step);
    }
    if (g.on_fail) {
        void (*fn)(void *) = g.on_fail;
        g.on_fail = NULL; /* once, even if finishing fails again */
        fn(g.ctx);
    }
    fflush(NULL);
    kill_local_workers();
    launch_report_status(1);
    MPI_Abort(MPI_COMM_WORLD, 1);
    _exit(1); /* MPI_Abort does not return */
}

/* rank < 1: no one rank is to blame (a collective that never completed): "the workers". */
static _Noreturn void fail(int rank, const char *why) {
    char who[256];
    if (rank >= 1)
        rank_watch_describe(rank, who, sizeof who);
    else
        snprintf(who, sizeof who, "the workers (ranks 1-%d)", g.size - 1);
    fail_as(rank, who, why);
}

/* The first worker whose process is gone, or 0. */
static int dead_worker(void) {
    for (int r = 1; r < g.size; r++)
        if (rank_info_alive(&g.ranks[r]) == 0) return r;
    return 0;
}

/* PROBES: Open MPI's MPI_Test, MPI_Testall and MPI_Iprobe look for the message first and only
 * then advance the transports, so a message that arrived while the waiting rank slept is seen by
 * the second call after the pause, not the first: each probe below is two calls, which saves a
 * whole pause of latency per message (measured: the step report's round trip, docs/training.md). */

/* The clock of one wait: liveness of every worker twice a second (a dead peer can be why the
 * awaited rank is silent), control requests served meanwhile. */
typedef struct wait_clock {
    double t0, t_live, t_poll;
    bool warned;
} wait_clock;

static int signals_seen;

/* A stop signal counts as a reason to look at once: mpirun tearing the job down after a worker
 * died signals the coordinator, and gives it seconds. */
static bool new_signal(void) {
    int n = stop_signal_received(SIGINT) + stop_signal_received(SIGTERM) +
            stop_signal_received(SIGUSR1);
    bool changed = n != signals_seen;
    signals_seen = n;
    return changed;
}

static double tick(wait_clock *c) {
    double t = now_seconds();
    if (t - c->t_live > LIVENESS_PERIOD_S || new_signal()) {
        c->t_live = t;
        int dead = dead_worker();
        if (dead) fail(dead, "died (its process is gone)");
    }
    if (g.tel && t - c->t_poll > 0.05) { /* answer `ctl status` while waiting */
        char e[256];
        if (telemetry_poll(g.tel, e, sizeof e) < 0) log_warn("telemetry: %s", e);
        c->t_poll = t;
    }
    return t - c->t0;
}

static void stall_warning(const char *who, const char *what, double waited) {
    char msg[2048];
    snprintf(msg, sizeof msg, "no %s from %s for %.0f s (stall_warn=%g)", what, who, waited,
             g.warn_s);
    log_warn("%s", msg);
    if (g.tel) telemetry_publish_warning(g.tel, msg);
}

static _Noreturn void stalled(int rank, const char *what, double waited) {
    char why[256];
    snprintf(why, sizeof why, "sent no %s for %.0f s (stall_abort=%g)", what, waited, g.abort_s);
    fail(rank, why);
}

/* Receives and drops every message (src, tag) already here; true when there was one. */
static bool drop_all(int src, int tag) {
    bool any = false;
    for (;;) {
        int flag = 0;
        CHECK_MPI(MPI_Iprobe(src, tag, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE));
        if (!flag) return any;
        int32_t beat;
        CHECK_MPI(MPI_Recv(&beat, 1, MPI_INT32_T, src, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
        any = true;
    }
}

/* Waits with the stall limits for (src, tag) to arrive, or with req for that receive to complete
 * (a probe sees a large message when its first part arrives: a blocking receive after it would
 * wait forever for the rest across a lost link); progress_tag >= 0: heartbeats restart the clock.
 */
static void wait_message(int src, int tag, MPI_Request *req, int progress_tag, const char *what) {
    double t0 = now_seconds();
    wait_clock c = {.t0 = t0, .t_live = t0, .t_poll = t0};
    for (;;) {
        int flag = 0;
        for (int k = 0; k < 2 && !flag; k++) /* twice: see PROBES */
            if (req)
                CHECK_MPI(MPI_Test(req, &flag, MPI_STATUS_IGNORE));
            else
                CHECK_MPI(MPI_Iprobe(src, tag, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE));
        if (flag) break;
        if (progress_tag >= 0 && drop_all(src, progress_tag))
            c.t0 = now_seconds(), c.warned = false;
        double el = tick(&c);
        if (el > g.abort_s) stalled(src, what, el);
        if (el > g.warn_s && !c.warned) {
            char who[256];
            rank_watch_describe(src, who, sizeof who);
            stall_warning(who, what, el);
            c.warned = true;
        }
        poll_sleep(poll_pause_s(el, 0));
    }
    if (progress_tag >= 0) drop_all(src, progress_tag);
}

void rank_watch_wait(int src, int tag, const char *what) {
    wait_message(src, tag, NULL, -1, what);
}

void rank_watch_wait_progress(int src, int tag, int progress_tag, const char *what) {
    wait_message(src, tag, NULL, progress_tag, what);
}

void rank_watch_recv(void *buf, int count, MPI_Datatype type, int src, int tag, const char *what) {
    MPI_Request req;
    CHECK_MPI(MPI_Irecv(buf, count, type, src, tag, MPI_COMM_WORLD, &req));
    wait_message(src, tag, &req, -1, what);
}

void rank_watch_collective(MPI_Request *req, const char *what) {
    double t0 = now_seconds();
    wait_clock c = {.t0 = t0, .t_live = t0, .t_poll = t0};
    for (;;) {
        int flag = 0;
        for (int k = 0; k < 2 && !flag; k++) /* twice: see PROBES */
            CHECK_MPI(MPI_Test(req, &flag, MPI_STATUS_IGNORE));
        if (flag) return;
        double el = tick(&c);
        if (el > g.abort_s) {
            char why[256];
            snprintf(why, sizeof why, "did not all send their %s for %.0f s (stall_abort=%g)", what,
                     el, g.abort_s);
            fail(0, why);
        }
        if (el > g.warn_s && !c.warned) {
            char who[64];
            snprintf(who, sizeof who, "all of the workers (ranks 1-%d)", g.size - 1);
            stall_warning(who, what, el);
            c.warned = true;
        }
        poll_sleep(poll_pause_s(el, 0));
    }
}

static bool step_before(last_step a, last_step b) {
    return a.epoch < b.epoch || (a.epoch == b.epoch && a.step < b.step);
}

/* Whom to blame among the ranks whose report is still missing (their requests are tested, so the
 * reports that did arrive are recorded as they come): the one whose reports stopped first, when
 * exactly one did, described in `who` and returned. Ranks silent since the same step cannot be told
 * apart from here (a lost link leaves its peer waiting in the all-reduce, silent too): then `who`
 * lists every silent rank, and the result is 0. */
static int blame(MPI_Request *req, int workers, const step_report *r, char *who, size_t n) {
    int first = 0, silent = 0, ties = 0;
    for (int w = 0; w < workers; w++) {
        int f = 0;
        if (req[w] != MPI_REQUEST_NULL) {
            CHECK_MPI(MPI_Test(&req[w], &f, MPI_STATUS_IGNORE));
            if (f) g.last[w + 1] = (last_step){r[w].epoch + 1, r[w].step + 1};
        }
        if (req[w] == MPI_REQUEST_NULL) continue;
        silent++;
        if (!first || step_before(g.last[w + 1], g.last[first]))
            first = w + 1, ties = 0;
        else if (!step_before(g.last[first], g.last[w + 1]))
            ties++;
    }
    if (silent == 1 || !ties) {
        rank_watch_describe(first, who, n);
        return first;
    }
    size_t len = 0;
    int shown = 0;
    for (int w = 0; w < workers && len + 200 < n; w++) {
        if (req[w] == MPI_REQUEST_NULL) continue;
        if (shown++) len += (size_t)snprintf(who + len, n - len, shown == silent ? " and " : ", ");
        rank_watch_describe(w + 1, who + len, n - len);
        len += strlen(who + len);
    }
    if (shown < silent) snprintf(who + len, n - len, " and %d more", silent - shown);
    return 0;
}

void rank_watch_reports(int workers, step_report *r) {
    MPI_Request *req = xcalloc((size_t)workers, sizeof *req);
    for (int w = 0; w < workers; w++)
        CHECK_MPI(
            MPI_Irecv(&r[w], sizeof *r, MPI_BYTE, w + 1, TAG_REPORT, MPI_COMM_WORLD, &req[w]));
    double t0 = now_seconds();
    wait_clock c = {.t0 = t0, .t_live = t0, .t_poll = t0};
    /* steps repeat: the reports are due one period after the last ones */
    double period = poll_expected_period_s(g.gap, g.gap_before);
    double due = period > 0 ? g.t_reports + period - t0 : 0;
    for (;;) {
        int flag = 0;
        for (int k = 0; k < 2 && !flag; k++) /* twice: see PROBES */
            CHECK_MPI(MPI_Testall(workers, req, &flag, MPI_STATUSES_IGNORE));
        if (flag) break;
        double el = tick(&c);
        if (el > g.abort_s || (el > g.warn_s && !c.warned)) {
            char who[1024], why[256];
            int rank = blame(req, workers, r, who, sizeof who);
            if (el > g.abort_s) {
                snprintf(why, sizeof why, "sent no step report for %.0f s (stall_abort=%g)%s", el,
                         g.abort_s,
                         rank ? ""
                              : ", silent since the same step: one of them may only be "
                                "waiting for another in the all-reduce");
                fail_as(rank, who, why);
            }
            stall_warning(who, "step report", el);
            c.warned = true;
        }
        poll_sleep(poll_pause_s(el, due));
    }
    double t = now_seconds();
    g.gap_before = g.gap;
    g.gap = g.t_reports > 0 ? t - g.t_reports : 0;
    g.t_reports = t;
    for (int w = 0; w < workers; w++) g.last[w + 1] = (last_step){r[w].epoch + 1, r[w].step + 1};
    free(req);
}
