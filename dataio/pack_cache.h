/* data=<dataset.yaml> for training: the yaml is packed to a dataset file on first use and the pack
 * is reused while its source is unchanged. The cache file is <yaml folder>/<stem>.h5, or, when that
 * folder is read-only (permission bits, honoured even for root) or holds a foreign <stem>.h5, it is
 * <cache dir>/<stem>-<12 hex of the yaml's real path>.h5 with cache dir
 * $XDG_CACHE_HOME/yolo-cluster or ~/.cache/yolo-cluster. "Unchanged" means the attribute
 * source_fingerprint of the file equals pack_ultralytics_fingerprint() of the yaml now (yaml bytes,
 * and path, size and mtime of every image and label file); anything else re-packs. */
#pragma once
#include <stddef.h>

typedef enum {
    PACK_CACHE_AS_IS,  /* data was not a yaml (a dataset file): out = data */
    PACK_CACHE_REUSED, /* a cached pack matched the fingerprint */
    PACK_CACHE_PACKED, /* packed now */
} pack_cache_result;

/* out: the dataset file to train on. cache_dir: the fallback folder (NULL = the default above).
 * 0, or -1 with one line in err (a bad yaml names the file and field). */
int pack_cache_resolve(const char *data, const char *cache_dir, char *out, size_t outlen,
                       pack_cache_result *res, char *err, size_t errlen);
