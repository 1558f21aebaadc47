/* The pack cache behind train data=<dataset.yaml>: first use packs beside the yaml, the second
 * reuses the file untouched, touching a label file re-packs, a read-only source folder (the
 * shared coco8) caches elsewhere and leaves the folder as it was, a foreign dataset file beside the
 * yaml is never overwritten. */
#include "dataio/pack.h"
#include "dataio/pack_cache.h"
#include "tests/testenv.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void sh(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

static struct stat stat_of(const char *p) {
    struct stat sb;
    cr_assert_eq(stat(p, &sb), 0, "%s exists", p);
    return sb;
}

static pack_cache_result resolve(const char *yaml, const char *cache, char *out) {
    pack_cache_result r;
    char err[512] = "";
    cr_assert_eq(pack_cache_resolve(yaml, cache, out, 1024, &r, err, sizeof err), 0, "%s", err);
    return r;
}

Test(packcache, pack_reuse_repack_on_touch) {
    const char *src = shared_path("data/coco8");
    cr_assert(src, "shared coco8 missing");
    char dir[256], yaml[512], cache[512], out[1024], h5[512], copy[512];
    test_temp_dir(dir, sizeof dir, "packcache");
    snprintf(copy, sizeof copy, "%s/coco8", dir);
    test_copy(src, copy);
    snprintf(yaml, sizeof yaml, "%s/coco8/coco8.yaml", dir);
    snprintf(cache, sizeof cache, "%s/cache", dir);
    snprintf(h5, sizeof h5, "%s/coco8/coco8.h5", dir);

    cr_assert_eq(resolve(yaml, cache, out), PACK_CACHE_PACKED, "first use packs");
    cr_assert_str_eq(out, h5, "cached beside the yaml");
    struct stat first = stat_of(h5);

    cr_assert_eq(resolve(yaml, cache, out), PACK_CACHE_REUSED, "unchanged source: reused");
    cr_assert_str_eq(out, h5);
    struct stat again = stat_of(h5);
    cr_assert(again.st_ino == first.st_ino && again.st_mtim.tv_sec == first.st_mtim.tv_sec &&
                  again.st_mtim.tv_nsec == first.st_mtim.tv_nsec,
              "reuse leaves the file untouched");

    /* Touch one label file (a later mtime, same bytes): the fingerprint changes. */
    char label[600];
    snprintf(label, sizeof label, "%s/coco8/labels/train/000000000009.txt", dir);
    struct stat lb = stat_of(label);
    struct timespec ts[2] = {lb.st_atim, lb.st_mtim};
    ts[1].tv_sec += 10;
    cr_assert_eq(utimensat(AT_FDCWD, label, ts, 0), 0);
    cr_assert_eq(resolve(yaml, cache, out), PACK_CACHE_PACKED, "touched label: re-packed");
    cr_assert_str_eq(out, h5);
    cr_assert_neq(stat_of(h5).st_ino, first.st_ino, "a new file was renamed into place");
    cr_assert_eq(resolve(yaml, cache, out), PACK_CACHE_REUSED, "and reused after that");

    /* A dataset file beside the yaml that the cache did not write is never overwritten. */
    char yaml2[512], foreign[512];
    snprintf(yaml2, sizeof yaml2, "%s/other/coco8.yaml", dir);
    snprintf(foreign, sizeof foreign, "%s/other/coco8.h5", dir);
    sh("mkdir -p %s/other && sed 's|^path:.*|path: ../coco8|' %s/coco8/coco8.yaml > %s", dir, dir,
       yaml2);
    pack_stats st;
    char err[512];
    cr_assert_eq(pack_ultralytics(yaml2, foreign, false, &st, err, sizeof err), 0, "%s", err);
    struct stat fb = stat_of(foreign);
    cr_assert_eq(resolve(yaml2, cache, out), PACK_CACHE_PACKED);
    cr_assert(strncmp(out, cache, strlen(cache)) == 0, "packed into the cache folder: %s", out);
    cr_assert_eq(stat_of(foreign).st_ino, fb.st_ino, "foreign file untouched");
    cr_assert_eq(resolve(yaml2, cache, out), PACK_CACHE_REUSED, "the cache-folder pack is reused");

    /* A .h5 is used as it is. */
    cr_assert_eq(resolve(h5, cache, out), PACK_CACHE_AS_IS);
    cr_assert_str_eq(out, h5);
    test_remove_dir(dir);
}

Test(packcache, read_only_source_folder_caches_elsewhere) {
    const char *src = shared_path("data/coco8");
    cr_assert(src, "shared coco8 missing");
    /* A copy whose folder has no write bits (the state of a read-only shared folder, whatever the
     * real one's bits are) */
    char dir[256], ro[512], yaml[600], cache[512], out[1024], beside[600];
    test_temp_dir(dir, sizeof dir, "packcache-ro");
    snprintf(ro, sizeof ro, "%s/coco8", dir);
    snprintf(cache, sizeof cache, "%s/cache", dir);
    test_copy(src, ro);
    sh("chmod a-w '%s'", ro);
    snprintf(yaml, sizeof yaml, "%s/coco8.yaml", ro);
    snprintf(beside, sizeof beside, "%s/coco8.h5", ro);
    cr_assert_eq(resolve(yaml, cache, out), PACK_CACHE_PACKED);
    cr_assert(strncmp(out, cache, strlen(cache)) == 0 && strstr(out, "/coco8-"),
              "cached in the given folder: %s", out);
    cr_assert_neq(access(beside, F_OK), 0, "nothing written beside the read-only yaml");
    cr_assert_eq(resolve(yaml, cache, out), PACK_CACHE_REUSED);
    test_remove_dir(dir);
}
