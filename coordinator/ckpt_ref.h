/* References to one checkpoint version, as every command that takes a model version spells them
 * (ckpt show/diff/export/verify, and val/predict/gate):
 *
 *   P/N                the run folder; its `deflt` version ("last" unless the command says)
 *   P/N:v3  P/N:3      version 3 of the run (also v0003, v0003.h5)
 *   P/N:best P/N:last  what weights/best.h5 / last.h5 point to
 *   P/N@production     a user tag (`ckpt tag`); ':' and '@' take the same references, '@' reads
 *                      better for tags: P/N@best, P/N:production work too
 *   path/v0003.h5      a version file anywhere (last.h5 / best.h5 links followed)
 *
 * and the two-word form of the CLI, `ckpt show P/N v3`: ckpt_ref_resolve(spec "P/N", ref "v3").
 * Resolution reads only names, links and tags.json (no version is opened), so it is cheap and
 * safe while a run writes: links only ever point at complete versions (ckpt_store.h). */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "coordinator/ckpt_file.h"

typedef struct ckpt_ref {
    char run_dir[4100]; /* the run folder; "" for a file outside any run's weights/ */
    char path[4200];    /* the version file, links followed (weights/v0003.h5) */
    int version;        /* N of vN; 0 for a file without a version name */
    char label[4400];   /* for output: "runs/detect/a:v0003", or the file's path */
} ckpt_ref;

/* spec as above; ref: a separate reference to apply to a run spec (NULL: the one in spec, else
 * deflt). 0, or -1 with one line in err ("runs/a: no version, tag or file 'v9'", "runs/x: no such
 * run folder or version file"). */
int ckpt_ref_resolve(const char *spec, const char *ref, const char *deflt, ckpt_ref *out, char *err,
                     size_t errlen);

/* Lineage: the file of the version m continues from (its parent_run and parent_version: the
 * previous version of the same run, the version a run was resumed from, or the weights file a run
 * was fine-tuned from). false when m is a first version. The file may no longer exist (pruned,
 * moved): the caller opens it and says so. */
bool ckpt_ref_parent(const ckpt_meta *m, char *path, size_t n);
