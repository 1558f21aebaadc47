#include "worker/coord_watch.h"

#include "common/log.h"
#include "common/poll_wait.h"
#include "common/protocol.h"
#include "common/rank_info.h"
#include "common/stop_signal.h"
#include "common/timer.h"

#include <mpi.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

static rank_info coordinator;
static double limit_s = 600;
static bool signal_reported;

void coord_watch_start(void) {
    int size = 0;
    CHECK_MPI(MPI_Comm_size(MPI_COMM_WORLD, &size));
    rank_info me, *all = xcalloc((size_t)size, sizeof *all);
    rank_info_self(&me);
    CHECK_MPI(MPI_Allgather(&me, sizeof me, MPI_BYTE, all, sizeof me, MPI_BYTE, MPI_COMM_WORLD));
    coordinator = all[0];
    free(all);
    /* A worker's state only matters to a live coordinator: when the launcher that started this
     * rank dies (even by SIGKILL), the rank goes with it. */
    pid_t parent = getppid();
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) log_warn("prctl(PR_SET_PDEATHSIG) failed");
    if (getppid() != parent) _exit(1); /* the launcher died before the line above */
    stop_signal_install(
        &(stop_signal_opts){.second_interrupt_exits = true,
                            .peer_pid = rank_info_local(&coordinator) ? coordinator.pid : 0,
                            .program = log_program()});
}

void coord_watch_limit(double abort_s) {
    limit_s = 2 * abort_s;
}

static _Noreturn void give_up(const char *why, const char *what, double waited) {
    log_error("the coordinator (rank 0, host %s, pid %d) %s while this worker waited %.0f s for "
              "%s: ending the job",
              coordinator.host, (int)coordinator.pid, why, waited, what);
    MPI_Abort(MPI_COMM_WORLD, 1);
    _exit(1); /* MPI_Abort does not return; the compiler does not know */
}

void coord_watch_wait(int tag, const char *what) {
    double t0 = now_seconds(), t_check = t0;
    for (;;) {
        int flag = 0;
        /* twice: Open MPI's probe looks first and advances the transports after, so a message that
         * came during the pause is seen by the second call (coordinator/rank_watch.c, PROBES) */
        for (int k = 0; k < 2 && !flag; k++)
            CHECK_MPI(MPI_Iprobe(0, tag, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE));
        if (flag) return;
        double t = now_seconds();
        if (t - t_check > 0.5) { /* /proc is cheap, but not every millisecond */
            t_check = t;
            if (rank_info_alive(&coordinator) == 0) give_up("is gone", what, t - t0);
        }
        if (t - t0 > limit_s) {
            char why[96];
            snprintf(why, sizeof why, "was silent for twice stall_abort=%g s", limit_s / 2);
            give_up(why, what, t - t0);
        }
        /* the answer to a step report comes at once: poll finely at first, then back off so that a
         * worker waiting through validation or a checkpoint write leaves the cores alone */
        poll_sleep(poll_pause_s(t - t0, 0));
    }
}

int coord_watch_take_signal(void) {
    int sig = stop_signal_first();
    if (!sig || signal_reported) return 0;
    signal_reported = true;
    return sig;
}
