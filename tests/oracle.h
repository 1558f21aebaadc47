/* Test helper: read whole datasets and attributes from the PyTorch oracle files in
 * the shared folder's data/oracle (tests/testenv.h finds it). See that folder's README for the
 * layout. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

/* Path of an oracle file, e.g. oracle_path("yolov8n-nc3-64.h5"); NULL when not found. */
const char *oracle_path(const char *file);

/* Reads a float32 (or converts an integer) dataset. Returns malloc'd data (caller frees) and its
 * element count; dims (up to 8) and ndim when non-NULL. NULL when the dataset does not exist. */
float *oracle_read_f32(const char *file, const char *dset, size_t *count, int *ndim, size_t *dims);
bool oracle_has(const char *file, const char *dset);
/* Names of the members of a group (malloc'd array of malloc'd strings; *n set). */
char **oracle_list(const char *file, const char *group, int *n);
void oracle_free_list(char **names, int n);
/* max|x| */
double max_abs_f32(const float *x, size_t n);
/* max|a-b| / max|b| */
double rel_max_diff(const float *a, const float *b, size_t n);
/* OIHW -> OHWI (our conv layout), NCHW -> NHWC */
void nchw_to_nhwc(const float *src, float *dst, int n, int c, int h, int w);
void nhwc_to_nchw(const float *src, float *dst, int n, int h, int w, int c);
