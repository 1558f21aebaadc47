/* Internals shared by ckpt_file.c (writing), ckpt_read.c (reading) and ckpt_weights.c (the
 * weights files): HDF5 attribute helpers, the file writer and tensor reader both formats use, the
 * table of metadata attributes, and the canonical content listing that content_sha256 hashes.
 * Not for use outside coordinator/ckpt_*.c. */
#pragma once
#include "coordinator/ckpt_file.h"

#include <hdf5.h>

/* Attributes: scalar (n == 0) or 1-d arrays of n values. 0 or -1. */
int h5_attr_put(hid_t obj, const char *name, hid_t type, const void *val, hsize_t n);
int h5_attr_put_str(hid_t obj, const char *name, const char *s); /* variable-length UTF-8 */
/* -1 when absent or of another shape. A string attribute of any HDF5 string type: *out malloc'd. */
int h5_attr_get(hid_t obj, const char *name, hid_t memtype, void *val, hsize_t n);
int h5_attr_get_str(hid_t obj, const char *name, char **out);

/* Metadata <-> attributes, every field of ckpt_meta in one table. write: creates the groups
 * (train, rng, data, ema, optimizer, optimizer/param_groups/<i>, metrics, lineage) as needed. */
int ckpt_meta_write(hid_t file, const ckpt_meta *m, char *err, size_t errlen);
int ckpt_meta_read(hid_t file, ckpt_meta *m, char *err, size_t errlen);

/* sha256 over the canonical listing: every metadata field (by group, name and exact value) and
 * every tensor's name, dtype, shape and sha256 (tensors sorted by name). */
void ckpt_content_digest(const ckpt_meta *m, const ckpt_tensor *t, int n, char hex[65]);
int ckpt_tensor_cmp(const void *a, const void *b); /* by name, for qsort */
hid_t ckpt_h5_type(ckpt_dtype d);                  /* the little-endian file type */
/* The innermost HDF5 error of the last failure (e.g. the system error of a failed write). */
void ckpt_h5_error(char *buf, size_t n);

/* "2026-12-07T11:34:05Z", now. */
void ckpt_iso_now(char *buf, size_t n);
/* Fills every tensor's sha256 from its data. */
void ckpt_hash_tensors(ckpt_tensor *t, int n);

/* Writes an HDF5 file atomically (built in memory, then temporary name, fsync, rename, fsync of
 * the folder): the attributes through attrs->write, then the tensors (datasets at their names,
 * each with its "sha256" attribute, which must be filled). 0 or -1 with one line in err. */
typedef struct ckpt_h5_attrs {
    int (*write)(hid_t file, void *ctx, char *err, size_t errlen);
    void *ctx;
} ckpt_h5_attrs;
int ckpt_h5_write(const char *path, const ckpt_h5_attrs *attrs, const ckpt_tensor *t, int n,
                  char *err, size_t errlen);

/* Reading: opens path read-only after checking the HDF5 signature ("not an HDF5 file",
 * "truncated or damaged HDF5 file (...)"); -1 with one line in err. */
hid_t ckpt_h5_open(const char *path, char *err, size_t errlen);
/* Every dataset of the file as a tensor (name, dtype, shape, stored sha256), sorted by name;
 * *t malloc'd. 0, or -1 with err naming the object. */
int ckpt_h5_list_tensors(hid_t f, ckpt_tensor **t, int *n, char *err, size_t errlen);
/* Reads t's values into out and checks them against its sha256 (a mismatch names the tensor). */
int ckpt_h5_read_tensor(hid_t f, const char *path, const ckpt_tensor *t, void *out, char *err,
                        size_t errlen);
