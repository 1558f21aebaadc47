/* results.csv exactly as Ultralytics writes it for detection: header once, one row per epoch,
 * values pre-rounded to 5 decimals (losses and metrics) and printed with %.6g (errata 7). */
#pragma once
#include <stddef.h>
#include <stdio.h>

typedef struct epoch_row {
    int epoch;       /* 1-based */
    double time;     /* seconds since training started */
    double train[3]; /* box, cls, dfl */
    double precision, recall, map50, map50_95;
    double val[3]; /* box, cls, dfl */
    double lr[8];
    int n_lr;               /* 3 for SGD/AdamW, 8 for MuSGD */
    const char *third_loss; /* column name stem: "dfl_loss" (NULL) or "l1_loss" */
} epoch_row;

#define RESULTS_MAX_COLUMNS 20

/* The row as results.csv's columns, in file order: epoch, time, the three train losses,
 * precision, recall, mAP50, mAP50-95, the three val losses (indices 2..11), then lr/pg0..: names[i]
 * (static strings) and values[i], unrounded. Returns the count. */
int results_csv_columns(const epoch_row *r, const char **names, double *values);

/* The header line (the row's third loss name and n_lr learning-rate columns) and one row, each
 * ending in a newline. */
void results_csv_header(const epoch_row *r, FILE *f);
void results_csv_row(const epoch_row *r, FILE *f);

/* Appends one row to path, writing the header first when the file is new. 0 or -1 with err. */
int results_csv_append(const char *path, const epoch_row *r, char *err, size_t errlen);
