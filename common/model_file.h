/* Where a model yaml is: model=yolov8n.yaml without a '/' is looked up in models/ (then next to
 * the binary, ../models); with a '/' it is a path. If that exact file is missing, the "unified"
 * file with the scale letter removed (yolov8.yaml) is used, as Ultralytics does. Shared by the
 * worker (which builds the model) and the coordinator (which records the yaml text in checkpoints
 * and checks it on resume). */
#pragma once
#include <stdbool.h>
#include <stddef.h>

/* Writes the file's path to out; false when no readable file is found. */
bool model_file_find(const char *spec, char *out, size_t n);
/* The found file's whole text (malloc'd) and its path; NULL with one line in err. */
char *model_file_read(const char *spec, char *path, size_t n, char *err, size_t errlen);
/* The scale letter a model name carries, as Ultralytics' guess_model_scale reads it from the file
 * name's stem: "yolo", optional "e-", optional "v", digits, one of nslmx ("yolov8n.yaml" -> 'n');
 * 0 when none. */
char model_file_scale(const char *name);
