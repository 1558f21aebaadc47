#include "dataio/pack_cache.h"

#include "common/fs_check.h"
#include "common/log.h"
#include "dataio/pack.h"

#include <errno.h>
#include <hdf5.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define FP_ATTR "source_fingerprint"

static bool is_yaml(const char *p) {
    const char *dot = strrchr(p, '.');
    return dot && (!strcasecmp(dot, ".yaml") || !strcasecmp(dot, ".yml"));
}

static bool exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

static int mkdir_p(const char *path, char *err, size_t errlen) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return errf(err, errlen, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p) continue;
        char c = *p;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return errf(err, errlen, "%s: cannot create directory: %s", buf, strerror(errno));
        if (!c) break;
        *p = c;
    }
    return 0;
}

/* The fingerprint stored in a dataset file; false when the file or the attribute is missing. */
static bool read_fp(const char *path, char fp[65]) {
    if (!exists(path)) return false;
    bool ok = false;
    H5E_BEGIN_TRY {
        hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f >= 0) {
            hid_t a = H5Aexists(f, FP_ATTR) > 0 ? H5Aopen(f, FP_ATTR, H5P_DEFAULT) : -1;
            if (a >= 0) {
                hid_t t = H5Tcopy(H5T_C_S1);
                H5Tset_size(t, 65);
                ok = H5Aread(a, t, fp) >= 0;
                fp[64] = 0;
                H5Tclose(t);
                H5Aclose(a);
            }
            H5Fclose(f);
        }
    }
    H5E_END_TRY;
    return ok;
}

static int write_fp(const char *path, const char fp[65], char *err, size_t errlen) {
    int rc = -1;
    H5E_BEGIN_TRY {
        hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
        if (f >= 0) {
            hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
            H5Tset_size(t, 65);
            hid_t a = H5Acreate2(f, FP_ATTR, t, sp, H5P_DEFAULT, H5P_DEFAULT);
            if (a >= 0 && H5Awrite(a, t, fp) >= 0) rc = 0;
            if (a >= 0) H5Aclose(a);
            H5Sclose(sp);
            H5Tclose(t);
            if (H5Fclose(f) < 0) rc = -1;
        }
    }
    H5E_END_TRY;
    return rc ? errf(err, errlen, "%s: cannot write the %s attribute", path, FP_ATTR) : 0;
}

/* <dir>/<stem>.h5 beside the yaml, and the cache-folder name. */
static int cache_names(const char *yaml, const char *cache_dir, char *beside, char *cached,
                       size_t n, char *dir_out, size_t dn, char *err, size_t errlen) {
    char *a = xstrdup(yaml), *b = xstrdup(yaml);
    const char *dir = dirname(a), *base = basename(b);
    char stem[256];
    snprintf(stem, sizeof stem, "%.*s", (int)(strrchr(base, '.') - base), base);
    char real[PATH_MAX], hex[65];
    if (!realpath(yaml, real)) snprintf(real, sizeof real, "%s", yaml);
    sha256_hex(real, strlen(real), hex);
    char cdir[PATH_MAX];
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (cache_dir)
        snprintf(cdir, sizeof cdir, "%s", cache_dir);
    else if (xdg && *xdg)
        snprintf(cdir, sizeof cdir, "%s/yolo-cluster", xdg);
    else
        snprintf(cdir, sizeof cdir, "%s/.cache/yolo-cluster", home && *home ? home : "/tmp");
    int rc = 0;
    if (snprintf(beside, n, "%s/%s.h5", dir, stem) >= (int)n ||
        snprintf(cached, n, "%s/%s-%.12s.h5", cdir, stem, hex) >= (int)n ||
        snprintf(dir_out, dn, "%s", dir) >= (int)dn)
        rc = errf(err, errlen, "%s: path too long", yaml);
    free(a);
    free(b);
    return rc;
}

int pack_cache_resolve(const char *data, const char *cache_dir, char *out, size_t outlen,
                       pack_cache_result *res, char *err, size_t errlen) {
    if (!is_yaml(data)) {
        *res = PACK_CACHE_AS_IS;
        if (snprintf(out, outlen, "%s", data) >= (int)outlen)
            return errf(err, errlen, "%s: path too long", data);
        return 0;
    }
    char fp[65], have[65], beside[PATH_MAX], cached[PATH_MAX], dir[PATH_MAX];
    if (pack_ultralytics_fingerprint(data, fp, err, errlen) != 0) return -1;
    if (cache_names(data, cache_dir, beside, cached, sizeof beside, dir, sizeof dir, err, errlen))
        return -1;
    const char *cand[2] = {beside, cached};
    for (int i = 0; i < 2; i++)
        if (read_fp(cand[i], have) && !strcmp(have, fp)) {
            *res = PACK_CACHE_REUSED;
            if (snprintf(out, outlen, "%s", cand[i]) >= (int)outlen)
                return errf(err, errlen, "%s: path too long", cand[i]);
            return 0;
        }
    /* Beside the yaml when the folder is writable and any file there is an old pack of ours. */
    const char *target = beside;
    if (!dir_writable(dir) || (exists(beside) && !read_fp(beside, have))) {
        target = cached;
        char *c = xstrdup(cached);
        int rc = mkdir_p(dirname(c), err, errlen);
        free(c);
        if (rc) return -1;
        log_info("%s: %s; caching the pack in %s", data,
                 dir_writable(dir) ? "a dataset file not packed from it is in the way"
                                   : "its folder is read-only",
                 cached);
    }
    if (snprintf(out, outlen, "%s", target) >= (int)outlen)
        return errf(err, errlen, "%s: path too long", target);
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.packing-%ld.h5", target, (long)getpid());
    pack_stats st;
    log_info("packing %s -> %s", data, target);
    if (pack_ultralytics(data, tmp, false, &st, err, errlen) != 0) return -1;
    if (write_fp(tmp, fp, err, errlen) != 0) {
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, target) != 0) {
        int e = errno;
        unlink(tmp);
        return errf(err, errlen, "%s: cannot rename to %s: %s", tmp, target, strerror(e));
    }
    log_info("packed %lld train / %lld val images, %lld boxes into %s",
             (long long)st.images[SPLIT_TRAIN], (long long)st.images[SPLIT_VAL],
             (long long)(st.boxes[0] + st.boxes[1] + st.boxes[2]), target);
    *res = PACK_CACHE_PACKED;
    return 0;
}
