/* Where a worker's training steps go, phase by phase, for profiling the gap between end-to-end
 * training and the forward+backward micro-benchmark (docs/training.md, "Where an epoch goes").
 * Off unless YOLO_PHASE_TIMES=1 is set in the worker's environment; then each epoch ends with one
 * line on stderr. Phases are wall seconds taken on the host: on the CPU backend each kernel has
 * finished when its call returns, so they add up to the step; on a GPU they time the enqueueing. */
#pragma once
#include <stdbool.h>

typedef enum step_phase {
    PHASE_WAIT,     /* loader_next: the batch (a stall when the loader is behind) */
    PHASE_FORWARD,  /* model forward in train mode (with the bf16 weight copies) */
    PHASE_LOSS,     /* detection loss and the head gradients */
    PHASE_BACKWARD, /* backward, gradient accumulation, marking all-reduce buckets */
    PHASE_REDUCE,   /* waiting for the gradient all-reduce */
    PHASE_OPTIM,    /* optim_update: clip, step, zero the gradients, EMA of the parameters */
    PHASE_EMA,      /* the EMA blend of the BN buffers */
    PHASE_REPORT,   /* the step report to the coordinator and its answer */
    PHASE_OTHER,    /* the rest of the step: schedule, labels, loss items to the host */
    PHASE_COUNT
} step_phase;

typedef struct step_phases {
    bool on;
    double s[PHASE_COUNT];
    double t_mark; /* end of the last phase timed */
    double epoch_wall0, proc_cpu0, loader_cpu0;
    int steps;
} step_phases;

/* Reads YOLO_PHASE_TIMES once. */
void step_phases_init(step_phases *p);
/* Zeroes the sums; loader_cpu: the train loader's CPU seconds so far (loader_stage_times). */
void step_phases_epoch_begin(step_phases *p, double loader_cpu);
/* Starts timing at this moment (the beginning of a step). */
void step_phases_start(step_phases *p);
/* Adds the time since the last mark to phase ph and moves the mark. No-op when off. */
void step_phases_mark(step_phases *p, step_phase ph);
/* One line on stderr: per-phase seconds and per step, the loader's and the process's CPU. */
void step_phases_epoch_end(step_phases *p, int epoch, double loader_cpu);
