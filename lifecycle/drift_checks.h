/* The checks of `drift`: what a model's predictions and the images look like on reference data
 * (what it was validated on) and on new data, compared statistic by statistic, each with its
 * value and its threshold (drift_stats.h). */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "lifecycle/eval_run.h"

/* One side's numbers. */
typedef struct drift_side {
    int n;              /* images */
    double *brightness; /* [n] mean luma */
    double *contrast;   /* [n] luma standard deviation */
    double *size;       /* [n] sqrt(width * height) */
    int nc;
    double *max_conf;   /* [n] the image's highest detection confidence (0: none) */
    double *class_conf; /* [n][nc] its highest confidence per predicted class (0: none) */
} drift_side;

/* Image statistics of every image of src, and each image's highest confidences from r (nc
 * classes). 0 or -1 with err (an image that does not decode). */
int drift_side_collect(eval_source *src, const eval_result *r, int nc, drift_side *s, char *err,
                       size_t errlen);
void drift_side_free(drift_side *s);

typedef struct drift_check {
    char what[96]; /* "confidence (all classes)", "confidence circle", "brightness", ... */
    char stat[16]; /* "PSI", "KS", "share" */
    double value, threshold;
    size_t n, m;     /* sample sizes (reference, new) */
    bool tested;     /* false: too few values (DRIFT_MIN_SAMPLES) */
    bool drift;      /* value > threshold */
    char detail[96]; /* e.g. "mean 121.3 -> 60.2" */
} drift_check;

typedef struct drift_settings {
    float conf;          /* a confident detection (class frequencies, no-detection share) */
    double no_det_delta; /* threshold on the change of the no-confident-detection share */
} drift_settings;

/* Every check, in report order, into *out (malloc'd, *n of them). Every sample has one value per
 * image (detections of one image are not independent draws): the confidence checks compare each
 * image's highest confidence, overall and per class; the class frequencies count images in
 * which a class is predicted above conf. */
void drift_run_checks(const drift_settings *st, char *const *names, const drift_side *rs,
                      const drift_side *cs, drift_check **out, int *n);
