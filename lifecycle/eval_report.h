/* What the evaluation commands write: Ultralytics' validation table, COCO-format predictions,
 * the validation plots (the charts training draws, coordinator/charts.h), prediction JSON lines
 * and annotated images. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "lifecycle/eval_run.h"

/* The table as Ultralytics' val prints it: the header, "all", then each class with ground truth
 * (when there are several classes). */
void eval_print_table(const eval_model *em, const eval_result *r);

/* predictions.json as Ultralytics' save_json writes it: a list of {image_id (the file stem, a
 * number when it is one), file_name, category_id (the class index), bbox [x, y, w, h] in original
 * pixels rounded to 3 decimals, score rounded to 5}. 0 or -1 with err. */
int eval_write_coco_json(const char *path, eval_source *src, const eval_result *r, char *err,
                         size_t errlen);

/* PR_curve.png, F1/P/R_curve.png, confusion_matrix(_normalized).png and the val_batchK mosaics
 * of the split, into dir (a labelled run with plots data). */
int eval_write_plots(const char *dir, const eval_model *em, eval_source *src, const eval_result *r,
                     char *err, size_t errlen);

/* One JSON line per detection: {"file", "index", "class", "name", "confidence", "xyxy"}. */
void eval_write_jsonl(FILE *f, const eval_model *em, eval_source *src, const eval_result *r,
                      float conf);
/* Image i with its detections above conf drawn (chart_annotated) into dir, under the image's
 * file name (.png for images without a JPEG/PNG name). The path written goes to out. */
int eval_write_annotated(const char *dir, const eval_model *em, eval_source *src,
                         const eval_result *r, int i, float conf, char *out, size_t n, char *err,
                         size_t errlen);
