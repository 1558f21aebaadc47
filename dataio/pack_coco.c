/* Packer for COCO instances json (images, annotations, categories) with an image folder. */
#include "common/log.h"
#include "dataio/pack.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct category {
    long id;
    char *name;
} category;

typedef struct id_index {
    long id;
    int index;
} id_index;

static int cmp_cat(const void *a, const void *b) {
    long x = ((const category *)a)->id, y = ((const category *)b)->id;
    return (x > y) - (x < y);
}

static int cmp_id(const void *a, const void *b) {
    long x = ((const id_index *)a)->id, y = ((const id_index *)b)->id;
    return (x > y) - (x < y);
}

static int find_id(const id_index *t, int n, long id) {
    id_index key = {id, 0};
    const id_index *r = bsearch(&key, t, (size_t)n, sizeof *t, cmp_id);
    return r ? r->index : -1;
}

/* An integer-valued number (ids, sizes) within +-2^53, where doubles hold integers exactly. */
static bool get_long(const cJSON *o, const char *key, long *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || !(fabs(v->valuedouble) <= 9007199254740992.0) ||
        v->valuedouble != floor(v->valuedouble))
        return false;
    *out = (long)v->valuedouble;
    return true;
}

static cJSON *parse_json(const char *path, const char *text, size_t n, char *err, size_t errlen) {
    cJSON *j = cJSON_ParseWithLength(text, n);
    if (!j) {
        const char *at = cJSON_GetErrorPtr();
        errf(err, errlen, "%s: invalid json near byte %ld", path, at ? (long)(at - text) : -1L);
    }
    return j;
}

static cJSON *load_json(const char *path, char *err, size_t errlen) {
    uint8_t *text;
    size_t n;
    if (pack_read_file(path, &text, &n, err, errlen) != 0) return NULL;
    cJSON *j = parse_json(path, (const char *)text, n, err, errlen);
    free(text);
    return j;
}

/* Sorted categories of one json. */
static int read_categories(const char *path, const cJSON *root, category **out, int *n, char *err,
                           size_t errlen) {
    const cJSON *cats = cJSON_GetObjectItemCaseSensitive(root, "categories");
    if (!cJSON_IsArray(cats) || cJSON_GetArraySize(cats) < 1)
        return errf(err, errlen, "%s: categories: expected a non-empty array", path);
    int k = cJSON_GetArraySize(cats), i = 0;
    if (k > DATASET_MAX_CLASSES)
        return errf(err, errlen, "%s: %d categories, more than the %d a dataset may have", path, k,
                    DATASET_MAX_CLASSES);
    category *c = xcalloc((size_t)k, sizeof *c);
    const cJSON *it;
    cJSON_ArrayForEach(it, cats) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(it, "name");
        if (!get_long(it, "id", &c[i].id) || !cJSON_IsString(nm)) {
            for (int j = 0; j < i; j++) free(c[j].name);
            free(c);
            return errf(err, errlen, "%s: categories[%d]: needs an integer id and a name", path, i);
        }
        c[i++].name = xstrdup(nm->valuestring);
    }
    qsort(c, (size_t)k, sizeof *c, cmp_cat);
    for (i = 1; i < k; i++)
        if (c[i].id == c[i - 1].id) {
            errf(err, errlen, "%s: categories: id %ld appears twice", path, c[i].id);
            for (int j = 0; j < k; j++) free(c[j].name);
            free(c);
            return -1;
        }
    *out = c, *n = k;
    return 0;
}

typedef struct coco_image {
    const char *file;
    long width, height;
    int nbox, cap;
    float *boxes;
} coco_image;

/* One split's images and their normalised, clipped boxes (file names point into the json). */
typedef struct coco_split {
    int n;
    coco_image *im;
} coco_split;

static void coco_split_free(coco_split *sp) {
    for (int i = 0; i < sp->n; i++) free(sp->im[i].boxes);
    free(sp->im);
    sp->im = NULL;
    sp->n = 0;
}

/* COCO [x, y, w, h] in pixels -> normalised [cx, cy, w, h]; false when not finite or absurdly far
 * outside the image (a corrupt value rather than a box that clipping could mend). */
static bool coco_box(const double v[4], const coco_image *m, float b[4]) {
    double cx = (v[0] + v[2] / 2) / m->width, cy = (v[1] + v[3] / 2) / m->height;
    double w = v[2] / m->width, h = v[3] / m->height;
    if (!(fabs(cx) <= 1e3 && fabs(cy) <= 1e3 && w <= 1e3 && h <= 1e3)) return false;
    b[0] = (float)cx, b[1] = (float)cy, b[2] = (float)w, b[3] = (float)h;
    return true;
}

static int coco_parse_split(pack_ctx *c, const char *path, const cJSON *root, const category *cats,
                            int nc, coco_split *sp, pack_stats *st, char *err, size_t errlen) {
    sp->n = 0, sp->im = NULL;
    const cJSON *images = cJSON_GetObjectItemCaseSensitive(root, "images");
    const cJSON *anns = cJSON_GetObjectItemCaseSensitive(root, "annotations");
    if (!cJSON_IsArray(images) || cJSON_GetArraySize(images) < 1)
        return errf(err, errlen, "%s: images: expected a non-empty array", path);
    if (anns && !cJSON_IsArray(anns))
        return errf(err, errlen, "%s: annotations: expected an array", path);
    int n = cJSON_GetArraySize(images), i = 0, rc = 0;
    coco_image *im = xcalloc((size_t)n, sizeof *im);
    id_index *ids = xcalloc((size_t)n, sizeof *ids);
    sp->n = n, sp->im = im;
    const cJSON *it;
    cJSON_ArrayForEach(it, images) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(it, "file_name");
        if (!get_long(it, "id", &ids[i].id) || !cJSON_IsString(fn) ||
            !get_long(it, "width", &im[i].width) || !get_long(it, "height", &im[i].height) ||
            im[i].width <= 0 || im[i].height <= 0 || im[i].width > 1000000 ||
            im[i].height > 1000000) {
            rc =
                errf(err, errlen,
                     "%s: images[%d]: needs id, file_name, width and height (1..1000000)", path, i);
            goto out;
        }
        im[i].file = fn->valuestring, ids[i].index = i;
        i++;
    }
    qsort(ids, (size_t)n, sizeof *ids, cmp_id);
    for (i = 1; i < n; i++)
        if (ids[i].id == ids[i - 1].id) {
            rc = errf(err, errlen, "%s: images: id %ld appears twice", path, ids[i].id);
            goto out;
        }
    i = 0;
    cJSON_ArrayForEach(it, anns) {
        long img_id, cat_id, crowd = 0;
        const cJSON *bb = cJSON_GetObjectItemCaseSensitive(it, "bbox");
        const cJSON *cr = cJSON_GetObjectItemCaseSensitive(it, "iscrowd");
        if (!get_long(it, "image_id", &img_id) || !get_long(it, "category_id", &cat_id)) {
            rc = errf(err, errlen, "%s: annotations[%d]: needs image_id and category_id", path, i);
            goto out;
        }
        if (cr && !get_long(it, "iscrowd", &crowd)) {
            rc = errf(err, errlen, "%s: annotations[%d].iscrowd: expected 0 or 1", path, i);
            goto out;
        }
        int idx = find_id(ids, n, img_id);
        category key = {cat_id, NULL};
        const category *cat = bsearch(&key, cats, (size_t)nc, sizeof *cats, cmp_cat);
        if (idx < 0 || !cat) {
            rc = errf(err, errlen, "%s: annotations[%d]: unknown %s id %ld", path, i,
                      idx < 0 ? "image" : "category", idx < 0 ? img_id : cat_id);
            goto out;
        }
        double v[4];
        int nv = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, bb) if (nv < 4 && cJSON_IsNumber(x)) v[nv++] = x->valuedouble;
        if (!cJSON_IsArray(bb) || cJSON_GetArraySize(bb) != 4 || nv != 4) {
            rc = errf(err, errlen, "%s: annotations[%d].bbox: expected [x, y, w, h]", path, i);
            goto out;
        }
        i++;
        if (crowd) {
            st->crowd++; /* crowd regions are not instances: kept out of training labels */
            continue;
        }
        if (v[2] <= 0 || v[3] <= 0) {
            st->dropped++;
            continue;
        }
        coco_image *m = &im[idx];
        float b[5] = {(float)(cat - cats)};
        if (!coco_box(v, m, b + 1)) {
            rc = errf(err, errlen,
                      "%s: annotations[%d].bbox [%g, %g, %g, %g] is not a box in the "
                      "%ldx%ld image %s",
                      path, i - 1, v[0], v[1], v[2], v[3], m->width, m->height, m->file);
            goto out;
        }
        char where[600];
        snprintf(where, sizeof where, "%s: annotations[%d] (%s)", path, i - 1, m->file);
        if (!pack_clip_box(c, b + 1, where)) continue;
        if (m->nbox == m->cap) {
            m->cap = m->cap ? 2 * m->cap : 16;
            m->boxes = xrealloc(m->boxes, (size_t)m->cap * 5 * sizeof *m->boxes);
        }
        memcpy(m->boxes + m->nbox++ * 5, b, sizeof b);
    }
out:
    free(ids);
    if (rc) coco_split_free(sp);
    return rc;
}

static int pack_coco_split(pack_ctx *c, dataset_writer *w, split_id s, const char *path,
                           const cJSON *root, const char *img_dir, const category *cats, int nc,
                           pack_stats *st, char *err, size_t errlen) {
    coco_split sp;
    int rc = coco_parse_split(c, path, root, cats, nc, &sp, st, err, errlen);
    if (rc) return rc;
    coco_image *im = sp.im;
    int n = sp.n;
    if ((rc = dataset_writer_begin_split(w, s, err, errlen)) != 0) goto out;
    for (int i = 0; i < n && rc == 0; i++) {
        size_t plen = strlen(img_dir) + strlen(im[i].file) + 2;
        char *p = xmalloc(plen);
        snprintf(p, plen, "%s/%s", img_dir, im[i].file);
        uint8_t *bytes;
        size_t nbytes;
        image_encoding enc;
        int h, wd;
        int r = pack_load_image(c, p, &bytes, &nbytes, &enc, &h, &wd, err, errlen);
        if (r == 0 && (h != im[i].height || wd != im[i].width)) {
            rc = errf(err, errlen, "%s: image is %dx%d but %s says %ldx%ld", p, wd, h, path,
                      im[i].width, im[i].height);
            free(bytes);
            r = 1;
        }
        if (r < 0) rc = -1;
        if (r == 0) {
            rc = dataset_writer_add(w, bytes, nbytes, enc, h, wd, im[i].boxes, im[i].nbox,
                                    im[i].file, err, errlen);
            st->images[s]++, st->boxes[s] += im[i].nbox, st->background += im[i].nbox == 0;
            free(bytes);
        }
        free(p);
    }
out:
    coco_split_free(&sp);
    return rc;
}

int pack_coco_check_text(pack_ctx *c, const char *text, size_t n, const char *name, char *err,
                         size_t errlen) {
    cJSON *root = parse_json(name, text, n, err, errlen);
    if (!root) return -1;
    category *cats = NULL;
    int nc = 0, rc = read_categories(name, root, &cats, &nc, err, errlen);
    coco_split sp = {0};
    if (rc == 0)
        rc = coco_parse_split(c, name, root, cats, nc, &sp, pack_ctx_stats(c), err, errlen);
    coco_split_free(&sp);
    for (int i = 0; i < nc; i++) free(cats[i].name);
    free(cats);
    cJSON_Delete(root);
    return rc;
}

int pack_coco(const char *const json[SPLIT_COUNT], const char *const images_dir[SPLIT_COUNT],
              const char *out, bool skip_bad, pack_stats *st, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    if (!json[SPLIT_TRAIN]) return errf(err, errlen, "coco: a train json is required");
    cJSON *roots[SPLIT_COUNT] = {0};
    category *cats = NULL;
    int nc = 0, rc = -1;
    dataset_writer *w = NULL;
    pack_ctx *c = NULL;
    for (int s = 0; s < SPLIT_COUNT; s++) {
        if (!json[s]) continue;
        if (!(roots[s] = load_json(json[s], err, errlen))) goto out;
        category *cs = NULL;
        int k = 0;
        if (read_categories(json[s], roots[s], &cs, &k, err, errlen) != 0) goto out;
        if (!cats) {
            cats = cs, nc = k;
            continue;
        }
        bool same = k == nc;
        for (int i = 0; same && i < k; i++)
            same = cs[i].id == cats[i].id && !strcmp(cs[i].name, cats[i].name);
        for (int i = 0; i < k; i++) free(cs[i].name);
        free(cs);
        if (!same) {
            errf(err, errlen, "%s: categories differ from those of %s", json[s], json[0]);
            goto out;
        }
    }
    const char **names = xcalloc((size_t)nc, sizeof *names);
    for (int i = 0; i < nc; i++) names[i] = cats[i].name;
    char source[1024];
    snprintf(source, sizeof source, "coco json %s", json[SPLIT_TRAIN]);
    w = dataset_writer_create(out, nc, names, source, err, errlen);
    free(names);
    if (!w) goto out;
    c = pack_ctx_new(st, skip_bad);
    for (int s = 0; s < SPLIT_COUNT; s++)
        if (roots[s] && pack_coco_split(c, w, (split_id)s, json[s], roots[s], images_dir[s], cats,
                                        nc, st, err, errlen) != 0)
            goto out;
    if (st->crowd)
        log_warn("%lld crowd annotation(s) kept out of the labels", (long long)st->crowd);
    if (st->background) log_warn("%lld image(s) without annotations", (long long)st->background);
    rc = dataset_writer_finish(w, st->hash, err, errlen);
    w = NULL;
out:
    dataset_writer_abort(w);
    pack_ctx_free(c);
    for (int i = 0; i < nc; i++) free(cats[i].name);
    free(cats);
    for (int s = 0; s < SPLIT_COUNT; s++) cJSON_Delete(roots[s]);
    return rc;
}
