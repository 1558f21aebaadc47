/* The versions of one run, in <run>/weights/:
 *   v0001.h5, v0002.h5, ...   one checkpoint each (ckpt_file.h); numbers only grow
 *   last.h5, best.h5          relative symbolic links to the newest / best version
 *   epoch{e}.h5               links kept by save_period (Ultralytics' epoch{e}.pt)
 *   tags.json                 user tags: {"production": "v0005", ...} (`ckpt tag`)
 *   .lock                     flock'd while tags change or versions are pruned
 * Links are replaced atomically (a new link under a temporary name renamed over the old one)
 * and only ever point at a version that is already complete on disk, so a reader that opens
 * last.h5 or best.h5 always gets a whole version. Temporary files of an interrupted write are
 * dot-files (".v0004.h5.tmp.<pid>") that no listing shows.
 *
 * For the CLI: ckpt_store_list (one entry per version, with its links and tags),
 * ckpt_store_resolve ("v3", "3", "best", "last", a tag, a file name or path -> a path),
 * ckpt_store_newest_complete (verified, falling back), ckpt_tag_set / ckpt_tag_remove,
 * ckpt_store_prune. Open a version with ckpt_open (ckpt_file.h). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CKPT_TAGS_FILE "tags.json"

typedef struct ckpt_entry {
    int version;
    char file[32];   /* "v0003.h5" */
    char path[4200]; /* <run>/weights/v0003.h5 */
    int64_t size;    /* bytes */
    bool last, best; /* what last.h5 / best.h5 point to */
    char links[256]; /* other links to it, comma separated ("epoch4.h5") */
    char tags[512];  /* user tags, comma separated */
} ckpt_entry;

/* Every version file in <run>/weights, by increasing number (no file is opened). An absent
 * weights folder is an empty list; 0 or -1 with err. *out is malloc'd. */
int ckpt_store_list(const char *run_dir, ckpt_entry **out, int *n, char *err, size_t errlen);
/* "<run>/weights/v%04d.h5" */
void ckpt_store_version_path(const char *run_dir, int version, char *out, size_t n);
/* The largest version number present (0 when none). */
int ckpt_store_max_version(const char *run_dir);
/* A version number from a file name "v0003.h5" (any path; 0 when it is not one). */
int ckpt_store_parse_name(const char *path);

/* A reference to a version of run_dir: "v3", "3", "v0003", "v0003.h5", "best", "last", a user
 * tag, or an existing file path. Writes the version file's path (links followed). 0, or -1 with
 * one line naming what was not found. */
int ckpt_store_resolve(const char *run_dir, const char *ref, char *out, size_t n, char *err,
                       size_t errlen);

/* The newest version that opens and verifies (every tensor's and the content's sha256). Each
 * version skipped is reported through note ("v0007.h5: <reason>; trying v0006.h5"). Writes its
 * path and number. 0; 1 when there is no complete version (err says why, naming the newest
 * failure if any); -1 on other errors. */
int ckpt_store_newest_complete(const char *run_dir, void (*note)(void *ctx, const char *line),
                               void *ctx, char *path, size_t n, int *version, char *err,
                               size_t errlen);

/* Points <run>/weights/<name> (e.g. "last.h5") at version, atomically. 0 or -1 with err. */
int ckpt_store_link(const char *run_dir, const char *name, int version, char *err, size_t errlen);

/* Deletes versions so that at most `keep` (> 0) remain besides those never deleted: the newest,
 * every link target (last, best, epoch{e}), every tagged version, and the versions in protect[]
 * (e.g. the parent of a live resume). Each deleted file is reported through removed. Returns the
 * number deleted, or -1 with err. */
int ckpt_store_prune(const char *run_dir, int keep, const int *protect, int nprotect,
                     void (*removed)(void *ctx, const char *path), void *ctx, char *err,
                     size_t errlen);

/* Removes the temporary files an interrupted write left in <run>/weights (call only while
 * holding the run lock: no other writer can be active). */
void ckpt_store_clean_temporaries(const char *run_dir);

/* ---- tags --------------------------------------------------------------------------------- */
typedef struct ckpt_tag {
    char name[64];
    int version;
} ckpt_tag;

/* Tags of the run (an absent tags.json is no tags). *out malloc'd. 0 or -1 with err. */
int ckpt_tags_read(const char *run_dir, ckpt_tag **out, int *n, char *err, size_t errlen);
/* Sets (or moves) a tag to version; names are [A-Za-z0-9._-], at most 63 characters, not "best",
 * "last" or a version name. 0 or -1 with err. */
int ckpt_tag_set(const char *run_dir, const char *name, int version, char *err, size_t errlen);
/* 0, or -1 with err (also when the tag does not exist). */
int ckpt_tag_remove(const char *run_dir, const char *name, char *err, size_t errlen);
