/* Stop signals in a training run (train_state.h): noted once, turned into CTRL_STOP at the next
 * step boundary (or a stop at an epoch boundary, where the epoch's version was just queued), and
 * the end of such a run: one line naming the signal and the version to resume from, a "preempted"
 * event, exit status EXIT_STOPPED_BY_SIGNAL (common/stop_signal.h). */
#include "common/log.h"
#include "common/stop_signal.h"
#include "coordinator/ckpt_store.h"
#include "coordinator/rank_watch.h"
#include "coordinator/train_state.h"

#include <signal.h>
#include <stdio.h>

/* "the coordinator (rank 0, host vm, pid 12)" or the worker's description. */
static void who(int rank, char *out, size_t n) {
    const rank_info *r = rank_watch_rank(rank);
    if (rank > 0)
        rank_watch_describe(rank, out, n);
    else if (r)
        snprintf(out, n, "the coordinator (rank 0, host %s, pid %d)", r->host, (int)r->pid);
    else
        snprintf(out, n, "the coordinator");
}

void train_state_note_signal(train_state *st, int sig, int rank) {
    if (st->stop_signal || !sig) return;
    st->stop_signal = sig;
    st->stop_signal_rank = rank;
    char w[320], msg[512];
    who(rank, w, sizeof w);
    snprintf(msg, sizeof msg,
             "%s received by %s: saving a version at the next step boundary, then stopping%s",
             stop_signal_name(sig), w,
             sig == SIGINT ? " (Ctrl-C again stops at once, without it)" : "");
    log_warn("%s", msg);
    if (st->tel) telemetry_publish_warning(st->tel, msg);
}

bool train_state_signal_at_boundary(train_state *st) {
    if (stop_signal_first()) train_state_note_signal(st, stop_signal_first(), 0);
    return st->stop_signal != 0;
}

int train_state_finish_stopped(train_state *st) {
    const char *dir = st->args->save_dir, *sig = stop_signal_name(st->stop_signal);
    char w[320], saved[2300], msg[5000], version[32] = "";
    who(st->stop_signal_rank, w, sizeof w);
    int newest = st->last_version ? st->last_version : ckpt_store_max_version(dir);
    if (newest) snprintf(version, sizeof version, "v%04d", newest);
    if (st->last_version)
        snprintf(saved, sizeof saved, "version %s/weights/%s.h5 (%s) saved", dir, version,
                 st->last_version_where);
    else if (newest)
        snprintf(saved, sizeof saved, "no new version since %s/weights/%s.h5", dir, version);
    else
        snprintf(saved, sizeof saved, "nothing saved yet (no step was trained)");
    snprintf(msg, sizeof msg,
             "stopped by %s (received by %s): %s; continue with: coordinator train resume=%s "
             "(exit status %d)",
             sig, w, saved, newest ? dir : "auto", EXIT_STOPPED_BY_SIGNAL);
    printf("\n%s\n", msg);
    fflush(stdout);
    if (st->tel) telemetry_publish_preempted(st->tel, msg, sig, st->stop_signal_rank, version);
    return EXIT_STOPPED_BY_SIGNAL;
}
