/* The versions of one run: listing, references, links, tags and retention (ckpt_store.h). */
#include "coordinator/ckpt_store.h"

#include "common/atomic_file.h"
#include "common/log.h"
#include "coordinator/ckpt_file.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static void weights_dir(const char *run_dir, char *out, size_t n) {
    snprintf(out, n, "%s/weights", run_dir);
}

void ckpt_store_version_path(const char *run_dir, int version, char *out, size_t n) {
    snprintf(out, n, "%s/weights/v%04d.h5", run_dir, version);
}

int ckpt_store_parse_name(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (base[0] != 'v' || !isdigit((unsigned char)base[1])) return 0;
    char *end;
    long v = strtol(base + 1, &end, 10);
    if (strcmp(end, ".h5") || v <= 0 || v > 100000000) return 0;
    return (int)v;
}

/* "v3", "3", "v0003", "v0003.h5" -> 3; 0 otherwise. */
static int parse_ref_number(const char *ref) {
    const char *p = ref[0] == 'v' ? ref + 1 : ref;
    if (!isdigit((unsigned char)*p)) return 0;
    char *end;
    long v = strtol(p, &end, 10);
    if ((*end && strcmp(end, ".h5")) || v <= 0 || v > 100000000) return 0;
    return (int)v;
}

/* The version a link in weights/ points to (0 when not a link to a version). */
static int link_target(const char *wdir, const char *name) {
    char p[4500], target[512];
    if (snprintf(p, sizeof p, "%s/%s", wdir, name) >= (int)sizeof p) return 0;
    ssize_t k = readlink(p, target, sizeof target - 1);
    if (k <= 0) return 0;
    target[k] = 0;
    return ckpt_store_parse_name(target);
}

static void append_csv(char *buf, size_t n, const char *item) {
    size_t len = strlen(buf);
    snprintf(buf + len, n - len, "%s%s", len ? "," : "", item);
}

static int cmp_entry(const void *a, const void *b) {
    return ((const ckpt_entry *)a)->version - ((const ckpt_entry *)b)->version;
}

static ckpt_entry *find_entry(ckpt_entry *e, int n, int version) {
    ckpt_entry key = {.version = version};
    return bsearch(&key, e, (size_t)n, sizeof *e, cmp_entry);
}

int ckpt_store_list(const char *run_dir, ckpt_entry **out, int *n, char *err, size_t errlen) {
    char wdir[4200];
    weights_dir(run_dir, wdir, sizeof wdir);
    *out = NULL;
    *n = 0;
    DIR *d = opendir(wdir);
    if (!d) {
        if (errno == ENOENT) return 0;
        return errf(err, errlen, "%s: cannot list: %s", wdir, strerror(errno));
    }
    int cap = 0;
    ckpt_entry *e = NULL;
    struct dirent *de;
    while ((de = readdir(d))) {
        int v = ckpt_store_parse_name(de->d_name);
        char p[4500];
        struct stat st;
        if (!v || snprintf(p, sizeof p, "%s/%s", wdir, de->d_name) >= (int)sizeof p ||
            strlen(p) >= sizeof e->path || lstat(p, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (*n == cap) e = xrealloc(e, (size_t)(cap = cap ? 2 * cap : 64) * sizeof *e);
        ckpt_entry *x = &e[(*n)++];
        memset(x, 0, sizeof *x);
        x->version = v;
        snprintf(x->file, sizeof x->file, "%.31s", de->d_name);
        memcpy(x->path, p, strlen(p) + 1);
        x->size = (int64_t)st.st_size;
    }
    if (e) qsort(e, (size_t)*n, sizeof *e, cmp_entry);
    rewinddir(d);
    while ((de = readdir(d))) { /* links: last, best, epoch{e} */
        int v = link_target(wdir, de->d_name);
        ckpt_entry *x = v ? find_entry(e, *n, v) : NULL;
        if (!x) continue;
        if (!strcmp(de->d_name, "last.h5"))
            x->last = true;
        else if (!strcmp(de->d_name, "best.h5"))
            x->best = true;
        else
            append_csv(x->links, sizeof x->links, de->d_name);
    }
    closedir(d);
    ckpt_tag *tags = NULL;
    int nt = 0;
    if (ckpt_tags_read(run_dir, &tags, &nt, err, errlen) != 0) {
        free(e);
        *n = 0;
        return -1;
    }
    for (int i = 0; i < nt; i++) {
        ckpt_entry *x = find_entry(e, *n, tags[i].version);
        if (x) append_csv(x->tags, sizeof x->tags, tags[i].name);
    }
    free(tags);
    *out = e;
    return 0;
}

int ckpt_store_max_version(const char *run_dir) {
    ckpt_entry *e;
    int n;
    if (ckpt_store_list(run_dir, &e, &n, NULL, 0) != 0) return 0;
    int v = n ? e[n - 1].version : 0;
    free(e);
    return v;
}

int ckpt_store_resolve(const char *run_dir, const char *ref, char *out, size_t n, char *err,
                       size_t errlen) {
    char wdir[4200];
    weights_dir(run_dir, wdir, sizeof wdir);
    int v = 0;
    if (!strcmp(ref, "best") || !strcmp(ref, "last")) {
        char name[16];
        snprintf(name, sizeof name, "%s.h5", ref);
        v = link_target(wdir, name);
        if (!v) return errf(err, errlen, "%s: no %s version yet", run_dir, ref);
    } else if ((v = parse_ref_number(ref)) == 0) {
        ckpt_tag *tags = NULL;
        int nt = 0;
        if (ckpt_tags_read(run_dir, &tags, &nt, err, errlen) != 0) return -1;
        for (int i = 0; i < nt && !v; i++)
            if (!strcmp(tags[i].name, ref)) v = tags[i].version;
        free(tags);
    }
    if (!v) {
        struct stat st;
        if (stat(ref, &st) == 0 && S_ISREG(st.st_mode)) {
            if (snprintf(out, n, "%s", ref) >= (int)n) return errf(err, errlen, "path too long");
            return 0;
        }
        return errf(err, errlen, "%s: no version, tag or file '%s'", run_dir, ref);
    }
    ckpt_store_version_path(run_dir, v, out, n);
    if (access(out, F_OK) != 0) return errf(err, errlen, "%s: v%04d.h5 does not exist", run_dir, v);
    return 0;
}

int ckpt_store_newest_complete(const char *run_dir, void (*note)(void *ctx, const char *line),
                               void *ctx, char *path, size_t n, int *version, char *err,
                               size_t errlen) {
    ckpt_entry *e;
    int ne;
    if (ckpt_store_list(run_dir, &e, &ne, err, errlen) != 0) return -1;
    if (ne == 0) {
        free(e);
        return errf(err, errlen, "%s: no checkpoint version in %s/weights", run_dir, run_dir), 1;
    }
    char first_failure[700] = "";
    for (int i = ne - 1; i >= 0; i--) {
        char why[600];
        ckpt_file *f = ckpt_open(e[i].path, why, sizeof why);
        int bad = f ? ckpt_verify(f, NULL, NULL, why, sizeof why) : 1;
        ckpt_close(f);
        if (!bad) {
            snprintf(path, n, "%s", e[i].path);
            *version = e[i].version;
            free(e);
            return 0;
        }
        if (!first_failure[0]) snprintf(first_failure, sizeof first_failure, "%s", why);
        if (note) {
            char line[800];
            if (i > 0)
                snprintf(line, sizeof line, "%s; trying %s", why, e[i - 1].file);
            else
                snprintf(line, sizeof line, "%s; no older version", why);
            note(ctx, line);
        }
    }
    free(e);
    errf(err, errlen, "%s: no complete checkpoint version (newest: %s)", run_dir, first_failure);
    return 1;
}

static int fsync_dir(const char *dir, char *err, size_t errlen) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return errf(err, errlen, "%s: open: %s", dir, strerror(errno));
    int rc = fsync(fd) == 0 || errno == EINVAL ? 0 : -1;
    int e = errno;
    close(fd);
    return rc ? errf(err, errlen, "%s: fsync: %s", dir, strerror(e)) : 0;
}

int ckpt_store_link(const char *run_dir, const char *name, int version, char *err, size_t errlen) {
    char wdir[4200], tmp[4400], dst[4400], target[32];
    weights_dir(run_dir, wdir, sizeof wdir);
    snprintf(target, sizeof target, "v%04d.h5", version);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp.%ld", wdir, name, (long)getpid());
    snprintf(dst, sizeof dst, "%s/%s", wdir, name);
    unlink(tmp);
    if (symlink(target, tmp) != 0)
        return errf(err, errlen, "%s: cannot create link: %s", tmp, strerror(errno));
    if (rename(tmp, dst) != 0) {
        int e = errno;
        unlink(tmp);
        return errf(err, errlen, "%s: cannot replace link: %s", dst, strerror(e));
    }
    return fsync_dir(wdir, err, errlen);
}

/* flock on weights/.lock: tag changes and pruning exclude each other (the CLI and a live run). */
static int store_lock(const char *run_dir, char *err, size_t errlen) {
    char p[4300];
    snprintf(p, sizeof p, "%s/weights/.lock", run_dir);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return errf(err, errlen, "%s: %s", p, strerror(errno));
    while (flock(fd, LOCK_EX) != 0)
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            return errf(err, errlen, "%s: flock: %s", p, strerror(e));
        }
    return fd;
}

static void store_unlock(int fd) {
    if (fd >= 0) close(fd); /* releases the flock */
}

static bool in_list(const int *v, int n, int x) {
    for (int i = 0; i < n; i++)
        if (v[i] == x) return true;
    return false;
}

int ckpt_store_prune(const char *run_dir, int keep, const int *protect, int nprotect,
                     void (*removed)(void *ctx, const char *path), void *ctx, char *err,
                     size_t errlen) {
    if (keep <= 0) return 0;
    int fd = store_lock(run_dir, err, errlen);
    if (fd < 0) return -1;
    ckpt_entry *e;
    int n, deleted = 0, rc = 0;
    if (ckpt_store_list(run_dir, &e, &n, err, errlen) != 0) {
        store_unlock(fd);
        return -1;
    }
    /* the K newest stay; older ones go unless linked, tagged or protected */
    for (int i = n - 1 - keep; i >= 0; i--) {
        ckpt_entry *x = &e[i];
        if (x->last || x->best || x->links[0] || x->tags[0] ||
            in_list(protect, nprotect, x->version))
            continue;
        if (unlink(x->path) != 0) {
            rc = errf(err, errlen, "%s: cannot delete: %s", x->path, strerror(errno));
            break;
        }
        deleted++;
        if (removed) removed(ctx, x->path);
    }
    free(e);
    if (deleted && rc == 0) {
        char wdir[4200];
        weights_dir(run_dir, wdir, sizeof wdir);
        rc = fsync_dir(wdir, err, errlen);
    }
    store_unlock(fd);
    return rc ? -1 : deleted;
}

void ckpt_store_clean_temporaries(const char *run_dir) {
    char wdir[4200];
    weights_dir(run_dir, wdir, sizeof wdir);
    DIR *d = opendir(wdir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] == '.' && strstr(de->d_name, ".tmp.")) {
            char p[4500];
            if (snprintf(p, sizeof p, "%s/%s", wdir, de->d_name) < (int)sizeof p && unlink(p) == 0)
                log_info("removed %s (left by an interrupted write)", p);
        }
    closedir(d);
}

/* ---- tags --------------------------------------------------------------------------------- */

static void tags_path(const char *run_dir, char *out, size_t n) {
    snprintf(out, n, "%s/weights/" CKPT_TAGS_FILE, run_dir);
}

int ckpt_tags_read(const char *run_dir, ckpt_tag **out, int *n, char *err, size_t errlen) {
    char p[4300];
    tags_path(run_dir, p, sizeof p);
    *out = NULL;
    *n = 0;
    FILE *f = fopen(p, "rb");
    if (!f) return errno == ENOENT ? 0 : errf(err, errlen, "%s: %s", p, strerror(errno));
    char *buf = xmalloc(1 << 20);
    size_t len = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    buf[len] = 0;
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return errf(err, errlen, "%s: not a JSON object of tag -> version", p);
    }
    int cap = cJSON_GetArraySize(j);
    ckpt_tag *t = xcalloc((size_t)(cap ? cap : 1), sizeof *t);
    cJSON *it;
    cJSON_ArrayForEach(it, j) {
        int v = cJSON_IsString(it) ? parse_ref_number(it->valuestring) : 0;
        if (!v || strlen(it->string) >= sizeof t->name) {
            cJSON_Delete(j);
            free(t);
            return errf(err, errlen, "%s: bad entry '%.60s'", p, it->string);
        }
        snprintf(t[*n].name, sizeof t->name, "%s", it->string);
        t[(*n)++].version = v;
    }
    cJSON_Delete(j);
    *out = t;
    return 0;
}

static int tags_write(const char *run_dir, const ckpt_tag *t, int n, char *err, size_t errlen) {
    cJSON *j = cJSON_CreateObject();
    for (int i = 0; i < n; i++) {
        char v[32];
        snprintf(v, sizeof v, "v%04d", t[i].version);
        cJSON_AddStringToObject(j, t[i].name, v);
    }
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    char p[4300];
    tags_path(run_dir, p, sizeof p);
    int rc = atomic_write_file(p, text, strlen(text), err, errlen);
    cJSON_free(text);
    return rc;
}

static int valid_tag(const char *name, char *err, size_t errlen) {
    size_t len = strlen(name);
    if (len == 0 || len > 63) return errf(err, errlen, "tag '%s': 1 to 63 characters", name);
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
            return errf(err, errlen, "tag '%s': only letters, digits, '.', '_' and '-'", name);
    if (!strcmp(name, "best") || !strcmp(name, "last") || parse_ref_number(name))
        return errf(err, errlen, "tag '%s': reserved (best, last and version names)", name);
    return 0;
}

/* Under the folder's lock: reads the tags, sets (version > 0) or removes (version 0) one, writes
 * them back. */
static int edit_tag(const char *run_dir, const char *name, int version, char *err, size_t errlen) {
    int fd = store_lock(run_dir, err, errlen);
    if (fd < 0) return -1;
    ckpt_tag *t;
    int n;
    int rc = ckpt_tags_read(run_dir, &t, &n, err, errlen);
    if (rc == 0) {
        int i = 0;
        while (i < n && strcmp(t[i].name, name)) i++;
        if (version > 0) {
            if (i == n) {
                t = xrealloc(t, (size_t)(n + 1) * sizeof *t);
                snprintf(t[n++].name, sizeof t->name, "%s", name);
            }
            t[i].version = version;
        } else if (i == n) {
            rc = errf(err, errlen, "%s: no tag '%s'", run_dir, name);
        } else {
            memmove(&t[i], &t[i + 1], (size_t)(n - i - 1) * sizeof *t);
            n--;
        }
        if (rc == 0) rc = tags_write(run_dir, t, n, err, errlen);
        free(t);
    }
    store_unlock(fd);
    return rc;
}

int ckpt_tag_set(const char *run_dir, const char *name, int version, char *err, size_t errlen) {
    if (valid_tag(name, err, errlen) != 0) return -1;
    char p[4300];
    ckpt_store_version_path(run_dir, version, p, sizeof p);
    if (access(p, F_OK) != 0) return errf(err, errlen, "%s: no such version", p);
    return edit_tag(run_dir, name, version, err, errlen);
}

int ckpt_tag_remove(const char *run_dir, const char *name, char *err, size_t errlen) {
    return edit_tag(run_dir, name, 0, err, errlen);
}
