/* Packer for Ultralytics-layout datasets: a dataset yaml, images/ and labels/ folders. */
#include "common/kv.h"
#include "common/log.h"
#include "dataio/pack.h"

#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

typedef struct strlist {
    char **v;
    int n, cap;
} strlist;

static void sl_push(strlist *l, char *owned) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = xrealloc(l->v, (size_t)l->cap * sizeof *l->v);
    }
    l->v[l->n++] = owned;
}

static void sl_free(strlist *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    *l = (strlist){0};
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *join(const char *dir, const char *rel) {
    if (rel[0] == '/' || !dir || !*dir) return xstrdup(rel);
    size_t n = strlen(dir) + strlen(rel) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, rel);
    return p;
}

static char *dir_of(const char *path) {
    char *a = xstrdup(path), *d = xstrdup(dirname(a));
    free(a);
    return d;
}

/* The extensions Ultralytics lists as images; those we cannot decode fail (or are skipped) at
 * decode time, as any undecodable image does. */
static bool is_image_name(const char *name) {
    static const char *ext[] = {"bmp", "dng",  "jpeg", "jpg", "mpo", "png",
                                "tif", "tiff", "webp", "pfm", "heic"};
    const char *dot = strrchr(name, '.');
    if (!dot) return false;
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++)
        if (!strcasecmp(dot + 1, ext[i])) return true;
    return false;
}

static int walk_dir(const char *dir, strlist *out, char *err, size_t errlen) {
    DIR *d = opendir(dir);
    if (!d) return errf(err, errlen, "%s: cannot list: %s", dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *p = join(dir, e->d_name);
        struct stat sb;
        if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            rc = walk_dir(p, out, err, errlen);
            free(p);
        } else if (is_image_name(e->d_name)) {
            sl_push(out, p);
        } else {
            free(p);
        }
    }
    closedir(d);
    return rc;
}

/* A list file: one image path per line, relative ones relative to the list file's folder. */
static int read_list_file(const char *path, strlist *out, char *err, size_t errlen) {
    uint8_t *data;
    size_t n;
    if (pack_read_file(path, &data, &n, err, errlen) != 0) return -1;
    char *dir = dir_of(path), *save = NULL;
    for (char *line = strtok_r((char *)data, "\r\n", &save); line;
         line = strtok_r(NULL, "\r\n", &save)) {
        while (*line == ' ' || *line == '\t') line++;
        size_t len = strlen(line);
        while (len && (line[len - 1] == ' ' || line[len - 1] == '\t')) line[--len] = 0;
        if (!len || !is_image_name(line)) continue;
        sl_push(out, join(dir, line[0] == '.' && line[1] == '/' ? line + 2 : line));
    }
    free(dir);
    free(data);
    return 0;
}

static int collect_entry(const char *yaml, const char *key, const char *root, const char *entry,
                         strlist *out, char *err, size_t errlen) {
    char *p = join(root, entry);
    struct stat sb;
    int rc;
    if (stat(p, &sb) != 0)
        rc = errf(err, errlen, "%s: %s: '%s' does not exist", yaml, key, p);
    else if (S_ISDIR(sb.st_mode))
        rc = walk_dir(p, out, err, errlen);
    else
        rc = read_list_file(p, out, err, errlen);
    free(p);
    return rc;
}

/* ---- yaml ------------------------------------------------------------------------------------ */

static bool is_null(const yaml_node_t *n) {
    if (!n) return true;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return !*v || !strcmp(v, "~") || !strcasecmp(v, "null");
}

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map, const char *key) {
    if (!map || map->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && !strcmp((const char *)k->data.scalar.value, key))
            return yaml_document_get_node(doc, p->value);
    }
    return NULL;
}

static const char *scalar(const yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* names: a list, or a map {0: a, 1: b, ...} with every id 0..K-1 present once. */
static int read_names(const char *yaml, yaml_document_t *doc, yaml_node_t *root, strlist *names,
                      char *err, size_t errlen) {
    yaml_node_t *nn = map_get(doc, root, "names"), *ncn = map_get(doc, root, "nc");
    long nc = -1;
    if (!is_null(ncn) &&
        (!scalar(ncn) || !parse_long(scalar(ncn), &nc) || nc < 1 || nc > DATASET_MAX_CLASSES))
        return errf(err, errlen, "%s: nc: expected an integer in 1..%d", yaml, DATASET_MAX_CLASSES);
    if (nn && nn->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = nn->data.sequence.items.start; it < nn->data.sequence.items.top;
             it++) {
            const char *s = scalar(yaml_document_get_node(doc, *it));
            if (!s) return errf(err, errlen, "%s: names[%d]: expected a string", yaml, names->n);
            sl_push(names, xstrdup(s));
        }
    } else if (nn && nn->type == YAML_MAPPING_NODE) {
        int k = (int)(nn->data.mapping.pairs.top - nn->data.mapping.pairs.start);
        names->v = xcalloc((size_t)k, sizeof *names->v), names->n = names->cap = k;
        for (yaml_node_pair_t *p = nn->data.mapping.pairs.start; p < nn->data.mapping.pairs.top;
             p++) {
            const char *ks = scalar(yaml_document_get_node(doc, p->key));
            const char *vs = scalar(yaml_document_get_node(doc, p->value));
            long id;
            if (!ks || !parse_long(ks, &id) || id < 0 || id >= k || !vs)
                return errf(err, errlen,
                            "%s: names: key '%s' is not a class id in 0..%d with a "
                            "name",
                            yaml, ks ? ks : "?", k - 1);
            if (names->v[id]) return errf(err, errlen, "%s: names: id %ld given twice", yaml, id);
            names->v[id] = xstrdup(vs);
        }
    } else if (!is_null(nn)) {
        return errf(err, errlen, "%s: names: expected a list or a map of id: name", yaml);
    } else if (nc > 0) {
        for (long i = 0; i < nc; i++) {
            char b[32];
            snprintf(b, sizeof b, "class%ld", i);
            sl_push(names, xstrdup(b));
        }
    }
    if (names->n < 1) return errf(err, errlen, "%s: no class names (names: or nc:)", yaml);
    if (names->n > DATASET_MAX_CLASSES)
        return errf(err, errlen, "%s: %d class names, more than the %d a dataset may have", yaml,
                    names->n, DATASET_MAX_CLASSES);
    if (nc > 0 && nc != names->n)
        return errf(err, errlen, "%s: nc=%ld but names has %d entries", yaml, nc, names->n);
    return 0;
}

/* ---- labels ---------------------------------------------------------------------------------- */

static char *label_path(const char *img) {
    const char *sa = "/images/";
    char *out = xmalloc(strlen(img) + 16);
    const char *last = NULL;
    for (const char *p = strstr(img, sa); p; p = strstr(p + 1, sa)) last = p;
    if (last) {
        size_t pre = (size_t)(last - img);
        memcpy(out, img, pre);
        strcpy(out + pre, "/labels/");
        strcat(out, last + strlen(sa));
    } else {
        strcpy(out, img);
    }
    char *dot = strrchr(out, '.'), *slash = strrchr(out, '/');
    if (dot && (!slash || dot > slash)) *dot = 0;
    strcat(out, ".txt");
    return out;
}

int pack_parse_label_text(pack_ctx *c, char *text, const char *path, int nc, float **lab, int *cap,
                          int *nb, char *err, size_t errlen) {
    *nb = 0;
    int rc = 0, lineno = 0;
    char *save = NULL;
    for (char *line = text; line && rc == 0; line = save) {
        char *nl = strchr(line, '\n');
        save = nl ? nl + 1 : NULL;
        if (nl) *nl = 0;
        lineno++;
        char *tok[6], *ts = NULL;
        int nt = 0;
        for (char *t = strtok_r(line, " \t\r", &ts); t; t = strtok_r(NULL, " \t\r", &ts))
            if (nt < 6)
                tok[nt++] = t;
            else
                nt++;
        if (nt == 0) continue;
        if (nt != 5) {
            rc = errf(err, errlen, "%s:%d: expected 5 fields (class cx cy w h), got %d", path,
                      lineno, nt);
            break;
        }
        double v[5];
        for (int k = 0; k < 5 && rc == 0; k++)
            if (!parse_double(tok[k], &v[k]))
                rc = errf(err, errlen, "%s:%d: field %d '%s' is not a number", path, lineno, k + 1,
                          tok[k]);
        if (rc) break;
        if (!(v[0] >= 0 && v[0] < nc) || v[0] != floor(v[0])) {
            rc = errf(err, errlen, "%s:%d: class %s is not an integer in 0..%d (nc=%d)", path,
                      lineno, tok[0], nc - 1, nc);
            break;
        }
        if (v[3] < 0 || v[4] < 0) {
            rc = errf(err, errlen, "%s:%d: negative box width or height", path, lineno);
            break;
        }
        /* normalised: anything this far outside [0, 1] is not a box that clipping could mend */
        if (fabs(v[1]) > 1e3 || fabs(v[2]) > 1e3 || v[3] > 1e3 || v[4] > 1e3) {
            rc = errf(err, errlen,
                      "%s:%d: box (%s %s %s %s) is far outside the image (normalised "
                      "coordinates are in 0..1)",
                      path, lineno, tok[1], tok[2], tok[3], tok[4]);
            break;
        }
        if (*nb == *cap) {
            *cap = *cap ? 2 * *cap : 64;
            *lab = xrealloc(*lab, (size_t)*cap * 5 * sizeof **lab);
        }
        float *b = *lab + *nb * 5;
        for (int k = 0; k < 5; k++) b[k] = (float)v[k];
        char where[600];
        snprintf(where, sizeof where, "%s:%d", path, lineno);
        if (pack_clip_box(c, b + 1, where)) (*nb)++;
    }
    return rc;
}

/* Parses a label file into *lab (grown as needed). 0, or -1 with "file:line: ..." in err.
 * A missing file is not an error: *found is set false (a background image). */
static int read_labels(pack_ctx *c, const char *path, int nc, float **lab, int *cap, int *nb,
                       bool *found, char *err, size_t errlen) {
    *nb = 0, *found = false;
    struct stat sb;
    if (stat(path, &sb) != 0) return 0;
    uint8_t *data;
    size_t n;
    if (pack_read_file(path, &data, &n, err, errlen) != 0) return -1;
    *found = true;
    int rc = pack_parse_label_text(c, (char *)data, path, nc, lab, cap, nb, err, errlen);
    free(data);
    return rc;
}

/* ---- the packer ------------------------------------------------------------------------------ */

static int pack_split(pack_ctx *c, dataset_writer *w, split_id s, const char *yaml,
                      const char *root, yaml_document_t *doc, yaml_node_t *entry, int nc,
                      pack_stats *st, char *err, size_t errlen) {
    const char *key = split_name(s);
    strlist imgs = {0};
    int rc = 0;
    if (entry->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = entry->data.sequence.items.start;
             rc == 0 && it < entry->data.sequence.items.top; it++) {
            const char *e = scalar(yaml_document_get_node(doc, *it));
            rc = e ? collect_entry(yaml, key, root, e, &imgs, err, errlen)
                   : errf(err, errlen, "%s: %s: list items must be paths", yaml, key);
        }
    } else if (scalar(entry)) {
        rc = collect_entry(yaml, key, root, scalar(entry), &imgs, err, errlen);
    } else {
        rc = errf(err, errlen, "%s: %s: expected a path or a list of paths", yaml, key);
    }
    if (rc == 0 && imgs.n == 0) rc = errf(err, errlen, "%s: %s: no images found", yaml, key);
    if (rc == 0) rc = dataset_writer_begin_split(w, s, err, errlen);
    if (imgs.n) qsort(imgs.v, (size_t)imgs.n, sizeof *imgs.v, cmp_str);
    float *lab = NULL;
    int cap = 0;
    size_t rl = strlen(root);
    for (int i = 0; rc == 0 && i < imgs.n; i++) {
        uint8_t *bytes;
        size_t nbytes;
        image_encoding enc;
        int h, wd, nb;
        bool found;
        int r = pack_load_image(c, imgs.v[i], &bytes, &nbytes, &enc, &h, &wd, err, errlen);
        if (r < 0) rc = -1;
        if (r != 0) continue;
        char *lp = label_path(imgs.v[i]);
        rc = read_labels(c, lp, nc, &lab, &cap, &nb, &found, err, errlen);
        free(lp);
        if (rc == 0) {
            const char *name = imgs.v[i];
            if (rl && !strncmp(name, root, rl) && name[rl] == '/') name += rl + 1;
            rc = dataset_writer_add(w, bytes, nbytes, enc, h, wd, lab, nb, name, err, errlen);
            st->images[s]++, st->boxes[s] += nb, st->background += nb == 0;
        }
        free(bytes);
    }
    free(lab);
    sl_free(&imgs);
    return rc;
}

int pack_ultralytics(const char *yaml_path, const char *out, bool skip_bad, pack_stats *st,
                     char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    uint8_t *text;
    size_t n;
    if (pack_read_file(yaml_path, &text, &n, err, errlen) != 0) return -1;
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        free(text);
        return errf(err, errlen, "%s: cannot create a yaml parser", yaml_path);
    }
    yaml_parser_set_input_string(&parser, text, n);
    if (!yaml_parser_load(&parser, &doc)) {
        errf(err, errlen, "%s:%zu: yaml: %s", yaml_path, parser.problem_mark.line + 1,
             parser.problem ? parser.problem : "parse error");
        yaml_parser_delete(&parser);
        free(text);
        return -1;
    }
    yaml_parser_delete(&parser);
    free(text);
    int rc = -1;
    strlist names = {0};
    char *root = NULL;
    pack_ctx *c = NULL;
    dataset_writer *w = NULL;
    yaml_node_t *top = yaml_document_get_root_node(&doc);
    if (!top || top->type != YAML_MAPPING_NODE) {
        errf(err, errlen, "%s: expected a mapping (path, train, val, names)", yaml_path);
        goto out;
    }
    char *ydir = dir_of(yaml_path);
    yaml_node_t *pn = map_get(&doc, top, "path");
    if (!is_null(pn) && !scalar(pn)) {
        free(ydir);
        errf(err, errlen, "%s: path: expected a folder", yaml_path);
        goto out;
    }
    root = is_null(pn) ? xstrdup(ydir) : join(ydir, scalar(pn));
    free(ydir);
    if (read_names(yaml_path, &doc, top, &names, err, errlen) != 0) goto out;
    yaml_node_t *entries[SPLIT_COUNT];
    for (int s = 0; s < SPLIT_COUNT; s++) {
        entries[s] = map_get(&doc, top, split_name((split_id)s));
        if (is_null(entries[s])) entries[s] = NULL;
    }
    if (!entries[SPLIT_TRAIN] || !entries[SPLIT_VAL]) {
        errf(err, errlen, "%s: both 'train' and 'val' are required", yaml_path);
        goto out;
    }
    char source[1024];
    snprintf(source, sizeof source, "ultralytics yaml %s", yaml_path);
    w = dataset_writer_create(out, names.n, (const char *const *)names.v, source, err, errlen);
    if (!w) goto out;
    c = pack_ctx_new(st, skip_bad);
    for (int s = 0; s < SPLIT_COUNT; s++)
        if (entries[s] && pack_split(c, w, (split_id)s, yaml_path, root, &doc, entries[s], names.n,
                                     st, err, errlen) != 0)
            goto out;
    if (st->background)
        log_warn("%lld background image(s) without labels", (long long)st->background);
    rc = dataset_writer_finish(w, st->hash, err, errlen);
    w = NULL;
out:
    dataset_writer_abort(w);
    pack_ctx_free(c);
    sl_free(&names);
    free(root);
    yaml_document_delete(&doc);
    return rc;
}

/* ---- source fingerprint (the pack cache, dataio/pack_cache.h) -------------------------------- */

static void fp_file(sha256_ctx *h, const char *path) {
    struct stat sb;
    int64_t v[3] = {-1, -1, -1}; /* absent: a label file appearing changes the fingerprint too */
    if (stat(path, &sb) == 0) {
        v[0] = (int64_t)sb.st_size;
        v[1] = (int64_t)sb.st_mtim.tv_sec;
        v[2] = (int64_t)sb.st_mtim.tv_nsec;
    }
    sha256_update(h, path, strlen(path) + 1);
    sha256_update(h, v, sizeof v);
}

int pack_ultralytics_fingerprint(const char *yaml_path, char hex[65], char *err, size_t errlen) {
    uint8_t *text;
    size_t n;
    if (pack_read_file(yaml_path, &text, &n, err, errlen) != 0) return -1;
    sha256_ctx *h = sha256_begin();
    sha256_update(h, DATASET_PACKER_VERSION, sizeof DATASET_PACKER_VERSION);
    sha256_update(h, text, n);
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc = -1;
    if (!yaml_parser_initialize(&parser)) {
        free(text);
        sha256_end(h, hex);
        return errf(err, errlen, "%s: cannot create a yaml parser", yaml_path);
    }
    yaml_parser_set_input_string(&parser, text, n);
    if (!yaml_parser_load(&parser, &doc)) {
        errf(err, errlen, "%s:%zu: yaml: %s", yaml_path, parser.problem_mark.line + 1,
             parser.problem ? parser.problem : "parse error");
        yaml_parser_delete(&parser);
        free(text);
        sha256_end(h, hex);
        return -1;
    }
    yaml_parser_delete(&parser);
    free(text);
    yaml_node_t *top = yaml_document_get_root_node(&doc);
    char *root = NULL;
    if (!top || top->type != YAML_MAPPING_NODE) {
        errf(err, errlen, "%s: expected a mapping (path, train, val, names)", yaml_path);
        goto out;
    }
    char *ydir = dir_of(yaml_path);
    yaml_node_t *pn = map_get(&doc, top, "path");
    root = is_null(pn) ? xstrdup(ydir) : scalar(pn) ? join(ydir, scalar(pn)) : NULL;
    free(ydir);
    if (!root) {
        errf(err, errlen, "%s: path: expected a folder", yaml_path);
        goto out;
    }
    rc = 0;
    /* Every image the packer would read and its label file: path, size, modification time. List
     * files and folders enter through the lists they produce. */
    for (int s = 0; rc == 0 && s < SPLIT_COUNT; s++) {
        yaml_node_t *e = map_get(&doc, top, split_name((split_id)s));
        if (is_null(e)) continue;
        strlist imgs = {0};
        const char *key = split_name((split_id)s);
        if (e->type == YAML_SEQUENCE_NODE) {
            for (yaml_node_item_t *it = e->data.sequence.items.start;
                 rc == 0 && it < e->data.sequence.items.top; it++) {
                const char *p = scalar(yaml_document_get_node(&doc, *it));
                rc = p ? collect_entry(yaml_path, key, root, p, &imgs, err, errlen)
                       : errf(err, errlen, "%s: %s: list items must be paths", yaml_path, key);
            }
        } else if (scalar(e)) {
            rc = collect_entry(yaml_path, key, root, scalar(e), &imgs, err, errlen);
        } else {
            rc = errf(err, errlen, "%s: %s: expected a path or a list of paths", yaml_path, key);
        }
        if (imgs.n) qsort(imgs.v, (size_t)imgs.n, sizeof *imgs.v, cmp_str);
        sha256_update(h, key, strlen(key) + 1);
        for (int i = 0; rc == 0 && i < imgs.n; i++) {
            char *lp = label_path(imgs.v[i]);
            fp_file(h, imgs.v[i]);
            fp_file(h, lp);
            free(lp);
        }
        sl_free(&imgs);
    }
out:
    sha256_end(h, hex);
    free(root);
    yaml_document_delete(&doc);
    return rc;
}
