/* Internals shared by the `coordinator ckpt ...` subcommands (cmd_ckpt*.c): each subcommand's
 * entry point, version resolution from the command line, and the JSON/text pieces several of them
 * print. Not for use outside cmd_ckpt*.c and cmd_runs.c. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coordinator/ckpt_file.h"
#include "coordinator/ckpt_ref.h"
#include "coordinator/cli.h"

struct cJSON;

/* The subcommands: the arguments after their name; the exit code (0, 1 failure, 2 bad usage). */
int ckpt_cmd_ls(int argc, char **argv);
int ckpt_cmd_show(int argc, char **argv);
int ckpt_cmd_diff(int argc, char **argv);
int ckpt_cmd_verify(int argc, char **argv);
int ckpt_cmd_export(int argc, char **argv);
int ckpt_cmd_tag(int argc, char **argv);
int ckpt_cmd_untag(int argc, char **argv);
int ckpt_cmd_prune(int argc, char **argv);

/* The version named by a->pos[first] (a run, "run:ref", "run@tag", a file), with a->pos[first+1]
 * as its reference when `two_words` and it is given. 0, or 2 with the usage line printed
 * (a reference that does not resolve is bad usage: exit 2). */
int ckpt_cli_resolve(const cli_spec *spec, const cli_args *a, int first, bool two_words,
                     const char *deflt, ckpt_ref *ref);
/* Opens a version; NULL with one line on stderr naming it. */
ckpt_file *ckpt_cli_open(const char *path);

/* Tensor i of f as doubles (float32 or int64 values; checked against its sha256): a malloc'd
 * array of *n values, or NULL with one line in err. */
double *ckpt_cli_read_values(ckpt_file *f, int i, int64_t *n, char *err, size_t errlen);

/* The version validated its own epoch (its metrics are measured at it, not carried over). */
bool ckpt_meta_validated(const ckpt_meta *m);
/* "2026-12-07 11:34:05" from the ISO 8601 "2026-12-07T11:34:05Z". */
void ckpt_cli_time(const char *iso, char *out, size_t n);
/* The results.csv row of m (null when it has none) as {column: value}. */
struct cJSON *ckpt_row_json(const ckpt_meta *m);
/* A version's summary: number, reason, created, position, metrics, best, hashes, lineage. */
struct cJSON *ckpt_meta_json(const ckpt_meta *m);
