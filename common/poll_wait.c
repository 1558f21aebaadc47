#include "common/poll_wait.h"

#include <stdbool.h>
#include <sys/prctl.h>
#include <time.h>

static double clamp(double x, double lo, double hi) {
    return x < lo ? lo : x > hi ? hi : x;
}

double poll_pause_s(double elapsed_s, double due_s) {
    double pause = elapsed_s < due_s ? (due_s - elapsed_s) / 8 : (elapsed_s - due_s) / 16;
    return clamp(pause, POLL_FINE_S, POLL_MAX_S);
}

double poll_expected_period_s(double last_gap_s, double gap_before_s) {
    if (!(last_gap_s > 0) || !(gap_before_s > 0)) return 0;
    return last_gap_s < gap_before_s ? last_gap_s : gap_before_s;
}

void poll_sleep(double seconds) {
    static _Thread_local bool slack_set;
    if (!slack_set) {
        slack_set = true;
        (void)prctl(PR_SET_TIMERSLACK, 5000UL); /* best effort: the default only sleeps longer */
    }
    if (!(seconds > 0)) return;
    struct timespec t = {.tv_sec = (time_t)seconds,
                         .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};
    (void)nanosleep(&t, NULL); /* a signal ends the pause early: the caller looks at it */
}
