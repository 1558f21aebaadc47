#include "dataio/image_files.h"

#include "common/log.h"
#include "dataio/decode.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static bool image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot &&
           (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png"));
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int image_files_list(const char *path, image_files *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    struct stat st;
    if (stat(path, &st) != 0) return errf(err, errlen, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        out->n = 1;
        out->path = xmalloc(sizeof *out->path);
        out->path[0] = xstrdup(path);
        return 0;
    }
    DIR *d = opendir(path);
    if (!d) return errf(err, errlen, "%s: %s", path, strerror(errno));
    int cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || !image_name(e->d_name)) continue;
        if (out->n == cap) {
            cap = cap ? 2 * cap : 64;
            out->path = xrealloc(out->path, (size_t)cap * sizeof *out->path);
        }
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        out->path[out->n] = xmalloc(len);
        snprintf(out->path[out->n], len, "%s/%s", path, e->d_name);
        out->n++;
    }
    closedir(d);
    if (out->n == 0) {
        image_files_free(out);
        return errf(err, errlen, "%s: no .jpg, .jpeg or .png files in this folder", path);
    }
    qsort(out->path, (size_t)out->n, sizeof *out->path, by_name);
    return 0;
}

void image_files_free(image_files *f) {
    for (int i = 0; i < f->n; i++) free(f->path[i]);
    free(f->path);
    memset(f, 0, sizeof *f);
}

int image_files_read(const char *path, uint8_t **bytes, size_t *n, char *err, size_t errlen) {
    *bytes = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return errf(err, errlen, "%s: %s", path, strerror(errno));
    int rc = 0;
    long len = -1;
    if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        rc = errf(err, errlen, "%s: %s", path, strerror(errno));
    if (rc == 0) {
        *bytes = xmalloc((size_t)len + 1);
        if (fread(*bytes, 1, (size_t)len, f) != (size_t)len)
            rc = errf(err, errlen, "%s: read failed: %s", path,
                      ferror(f) ? strerror(errno) : "short");
        *n = (size_t)len;
    }
    if (fclose(f) != 0 && rc == 0) rc = errf(err, errlen, "%s: %s", path, strerror(errno));
    if (rc) {
        free(*bytes);
        *bytes = NULL;
    }
    return rc;
}

typedef struct files_source {
    image_files f;
    char name[600];
} files_source;

static int fs_read(void *ctx, int index, dataset_sample *out, char *err, size_t errlen) {
    files_source *s = ctx;
    memset(out, 0, sizeof *out);
    const char *p = s->f.path[index];
    if (image_files_read(p, &out->bytes, &out->nbytes, err, errlen) != 0) return -1;
    out->index = index;
    out->encoding = (image_encoding)image_sniff_encoding(out->bytes, out->nbytes);
    char e2[256];
    if (!out->encoding || image_decode_size(out->bytes, out->nbytes, out->encoding, &out->height,
                                            &out->width, e2, sizeof e2) != 0) {
        free(out->bytes);
        out->bytes = NULL;
        return errf(err, errlen, "%s: not a JPEG or PNG image%s%s", p, out->encoding ? ": " : "",
                    out->encoding ? e2 : "");
    }
    return 0;
}

static int fs_decode(void *ctx, const dataset_sample *s, int min_h, int min_w, uint8_t **rgb,
                     int *h, int *w, char *err, size_t errlen) {
    files_source *fs = ctx;
    char e2[256];
    if (image_decode(s->bytes, s->nbytes, s->encoding, min_h, min_w, rgb, h, w, e2, sizeof e2))
        return errf(err, errlen, "%s: %s", fs->f.path[s->index], e2);
    return 0;
}

static void fs_free(void *ctx, dataset_sample *s) {
    (void)ctx;
    dataset_sample_free(s);
}

static void fs_close(void *ctx) {
    files_source *s = ctx;
    image_files_free(&s->f);
    free(s);
}

sample_source image_files_source(const image_files *f, const char *name) {
    files_source *s = xcalloc(1, sizeof *s);
    s->f.n = f->n;
    s->f.path = xmalloc((size_t)(f->n > 0 ? f->n : 1) * sizeof *s->f.path);
    for (int i = 0; i < f->n; i++) s->f.path[i] = xstrdup(f->path[i]);
    snprintf(s->name, sizeof s->name, "%s", name);
    return (sample_source){.ctx = s,
                           .name = s->name,
                           .size = f->n,
                           .read = fs_read,
                           .decode = fs_decode,
                           .free_sample = fs_free,
                           .close = fs_close};
}
