#include "worker/step_phases.h"

#include "common/log.h"
#include "common/timer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const phase_names[PHASE_COUNT] = {
    "wait",          "forward", "loss",   "backward", "all-reduce",
    "optimizer+ema", "bn-ema",  "report", "other",
};

static double process_cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void step_phases_init(step_phases *p) {
    memset(p, 0, sizeof *p);
    const char *e = getenv("YOLO_PHASE_TIMES");
    p->on = e && *e && strcmp(e, "0") != 0;
}

void step_phases_epoch_begin(step_phases *p, double loader_cpu) {
    if (!p->on) return;
    memset(p->s, 0, sizeof p->s);
    p->steps = 0;
    p->epoch_wall0 = now_seconds();
    p->proc_cpu0 = process_cpu();
    p->loader_cpu0 = loader_cpu;
}

void step_phases_start(step_phases *p) {
    if (!p->on) return;
    p->t_mark = now_seconds();
    p->steps++;
}

void step_phases_mark(step_phases *p, step_phase ph) {
    if (!p->on) return;
    double t = now_seconds();
    p->s[ph] += t - p->t_mark;
    p->t_mark = t;
}

void step_phases_epoch_end(step_phases *p, int epoch, double loader_cpu) {
    if (!p->on || p->steps == 0) return;
    double wall = now_seconds() - p->epoch_wall0, sum = 0;
    char line[1024];
    int len = 0;
    for (int k = 0; k < PHASE_COUNT; k++) {
        sum += p->s[k];
        len += snprintf(line + len, sizeof line - (size_t)len, " %s %.3f (%.2f ms)", phase_names[k],
                        p->s[k], 1e3 * p->s[k] / p->steps);
    }
    log_info("phases epoch %d: %d steps, %.3f s (%.3f s in steps):%s; loader CPU %.3f s, process "
             "CPU %.3f s",
             epoch + 1, p->steps, wall, sum, line, loader_cpu - p->loader_cpu0,
             process_cpu() - p->proc_cpu0);
}
