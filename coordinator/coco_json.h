/* Predictions in COCO's results format, as Ultralytics' save_json writes predictions.json: a list
 * of {"image_id": the file stem (a number when it is all digits), "file_name", "category_id":
 * the class index (Ultralytics maps to COCO's 91 ids only for COCO's own val2017), "bbox": [x, y,
 * w, h] in original pixels rounded to 3 decimals, "score": rounded to 5}. Written by training
 * (save_json=True, the last validation) and by `val save_json=True`, from the same records. */
#pragma once
#include <stddef.h>

#include "common/val_record.h"
#include "dataio/dataset.h"

/* dets[n] (val_plot_det: image index of `split`, class, conf, xyxy in original pixels), in any
 * order: written by image index, each image's predictions in the order given (score order).
 * Atomically; 0 or -1 with err. */
int coco_predictions_write(const char *path, dataset *ds, split_id split, const val_plot_det *dets,
                           size_t n, char *err, size_t errlen);
