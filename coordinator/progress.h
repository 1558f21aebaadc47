/* What a YOLO user expects on the terminal: a progress line per epoch (losses, instances, size,
 * images/s, ETA), redrawn in place on a terminal and printed every few seconds otherwise; the
 * validation table per class; a final summary. */
#pragma once
#include <stdbool.h>

typedef struct progress {
    const char *third_loss; /* "dfl_loss" (NULL) or "l1_loss"; set before progress_epoch_begin */
    int epoch, epochs, steps, imgsz;
    double t_start, t_last_print;
    bool tty;
} progress;

void progress_epoch_begin(progress *p, int epoch, int epochs, int steps, int imgsz);
/* After step `step` (0-based): mean losses so far, instances of this step, images/s. */
void progress_step(progress *p, int step, const double mean_loss[3], int instances,
                   double images_per_s, bool force);
void progress_epoch_end(progress *p);
void progress_val_header(void);
void progress_val_row(const char *cls, int images, int instances, double p, double r, double m50,
                      double m5095);
