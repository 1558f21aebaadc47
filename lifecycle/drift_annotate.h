/* The images of new data most worth annotating, written so that `data pack` takes them as they
 * are: <dir>/images/<name> (copies of the files, or the dataset's images as PNG / JPEG),
 * <dir>/labels/<stem>.txt with the model's confident boxes as pre-annotations for the annotator
 * to correct (YOLO format), <dir>/annotate.txt (the ranked list, most worth first),
 * annotate_train.txt / annotate_val.txt (the same images, every fifth of the ranking to val) and
 * <dir>/annotate.yaml (a dataset yaml over those two lists with the model's class names).
 *
 * Ranking: least confident first, score = 1 - the image's highest detection confidence (an image
 * where the model finds nothing scores 1); ties keep the source order. */
#pragma once
#include <stddef.h>

#include "lifecycle/eval_run.h"

typedef struct drift_pick {
    int index;
    double score;
} drift_pick;

/* The k (or fewer) images ranked as above, from each image's highest confidence. *out malloc'd. */
int drift_rank(const double *max_conf, int n, int k, drift_pick **out);

/* Writes the files above for picks[n]. conf: the boxes kept as pre-annotations. 0 or -1. */
int drift_write_annotation_set(const char *dir, eval_source *src, const eval_result *r,
                               const eval_model *em, const drift_pick *picks, int n, float conf,
                               char *err, size_t errlen);
