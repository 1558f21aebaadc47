#include "lifecycle/drift_annotate.h"

#include "common/atomic_file.h"
#include "common/log.h"
#include "coordinator/plot.h"
#include "coordinator/rundir.h"
#include "dataio/decode.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int by_score(const void *pa, const void *pb) {
    const drift_pick *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return a->index - b->index;
}

int drift_rank(const double *max_conf, int n, int k, drift_pick **out) {
    drift_pick *p = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *p);
    for (int i = 0; i < n; i++) p[i] = (drift_pick){i, 1.0 - max_conf[i]};
    qsort(p, (size_t)n, sizeof *p, by_score);
    *out = p;
    return k < n ? k : n;
}

/* The file name an image gets in images/: its index (names may repeat across folders), its own
 * stem, and ext. */
static void image_name(eval_source *src, int i, const char *ext, char *out, size_t n) {
    char name[4200];
    eval_source_name(src, i, name, sizeof name);
    const char *base = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
    const char *dot = strrchr(base, '.');
    int len = dot ? (int)(dot - base) : (int)strlen(base);
    snprintf(out, n, "%06d_%.*s%s", i, len > 200 ? 200 : len, base, ext);
}

/* The image's bytes as they are (a file, or a dataset's JPEG/PNG), or raw RGB as PNG. */
static int write_image(eval_source *src, int i, const char *path, char *err, size_t errlen) {
    if (!src->ds) {
        uint8_t *b;
        size_t n;
        if (image_files_read(src->files.path[i], &b, &n, err, errlen) != 0) return -1;
        int rc = atomic_write_file(path, b, n, err, errlen);
        free(b);
        return rc;
    }
    dataset_sample smp;
    if (dataset_read(src->ds, src->split, i, &smp, err, errlen) != 0) return -1;
    int rc;
    if (smp.encoding != IMG_RAW_RGB) {
        rc = atomic_write_file(path, smp.bytes, smp.nbytes, err, errlen);
    } else {
        plot_canvas *c = plot_canvas_new(smp.width, smp.height, 72);
        if (!c) {
            dataset_sample_free(&smp);
            return errf(err, errlen, "%s: cannot allocate the image", path);
        }
        plot_image(c, smp.bytes, smp.width, smp.height, 0, 0, smp.width, smp.height);
        rc = plot_canvas_save_png(c, path, err, errlen);
        plot_canvas_free(c);
    }
    dataset_sample_free(&smp);
    return rc;
}

/* YOLO label lines: class cx cy w h, normalised to the image. */
static int write_labels(const char *path, const eval_result *r, int i, int h, int w, float conf,
                        char *err, size_t errlen) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) FATAL("open_memstream failed");
    for (int k = 0; k < r->ndets[i]; k++) {
        const eval_det *d = &r->dets[i][k];
        if (!(d->conf > conf)) continue;
        double cx = (d->xyxy[0] + d->xyxy[2]) / 2 / w, cy = (d->xyxy[1] + d->xyxy[3]) / 2 / h;
        double bw = (d->xyxy[2] - d->xyxy[0]) / w, bh = (d->xyxy[3] - d->xyxy[1]) / h;
        if (bw > 0 && bh > 0) fprintf(f, "%d %.6f %.6f %.6f %.6f\n", d->cls, cx, cy, bw, bh);
    }
    fclose(f);
    int rc = atomic_write_file(path, buf, len, err, errlen);
    free(buf);
    return rc;
}

int drift_write_annotation_set(const char *dir, eval_source *src, const eval_result *r,
                               const eval_model *em, const drift_pick *picks, int n, float conf,
                               char *err, size_t errlen) {
    char images[PATH_MAX], labels[PATH_MAX];
    snprintf(images, sizeof images, "%s/images", dir);
    snprintf(labels, sizeof labels, "%s/labels", dir);
    if (mkdir_p(images, err, errlen) != 0 || mkdir_p(labels, err, errlen) != 0) return -1;
    /* the ranked list, and the same images split for packing: every fifth to val */
    char *list = NULL, *tl = NULL, *vl = NULL;
    size_t len = 0, tlen = 0, vlen = 0;
    FILE *lf = open_memstream(&list, &len), *tf = open_memstream(&tl, &tlen),
         *vf = open_memstream(&vl, &vlen);
    if (!lf || !tf || !vf) FATAL("open_memstream failed");
    int rc = 0;
    for (int k = 0; k < n && rc == 0; k++) {
        int i = picks[k].index, h, w;
        char name[600], path[PATH_MAX + 700];
        char ext[16] = ".png"; /* raw RGB is written as PNG */
        if (src->ds) {
            dataset_sample smp;
            if ((rc = dataset_read(src->ds, src->split, i, &smp, err, errlen)) != 0) break;
            if (smp.encoding == IMG_JPEG) snprintf(ext, sizeof ext, ".jpg");
            dataset_sample_free(&smp);
        } else {
            const char *dot = strrchr(src->files.path[i], '.'),
                       *sl = strrchr(src->files.path[i], '/');
            if (dot && (!sl || dot > sl)) snprintf(ext, sizeof ext, "%.15s", dot);
        }
        image_name(src, i, ext, name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", images, name);
        if ((rc = write_image(src, i, path, err, errlen)) != 0) break;
        if ((rc = eval_source_size(src, i, &h, &w, err, errlen)) != 0) break;
        fprintf(lf, "images/%s\n", name);
        fprintf(k % 5 == 4 || n < 2 ? vf : tf, "images/%s\n", name);
        if (n < 2) fprintf(tf, "images/%s\n", name); /* one image: both splits */
        char *dot = strrchr(name, '.');
        if (dot) *dot = 0;
        snprintf(path, sizeof path, "%s/%s.txt", labels, name);
        rc = write_labels(path, r, i, h, w, conf, err, errlen);
    }
    fclose(lf), fclose(tf), fclose(vf);
    char path[PATH_MAX + 32];
    const char *files[3] = {"annotate.txt", "annotate_train.txt", "annotate_val.txt"};
    const char *texts[3] = {list, tl, vl};
    size_t lens[3] = {len, tlen, vlen};
    for (int i = 0; i < 3 && rc == 0; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        rc = atomic_write_file(path, texts[i], lens[i], err, errlen);
    }
    free(list), free(tl), free(vl);
    if (rc != 0) return -1;
    /* the dataset yaml data pack reads: the list as both splits, the model's class names */
    char *y = NULL;
    size_t ylen = 0;
    FILE *yf = open_memstream(&y, &ylen);
    if (!yf) FATAL("open_memstream failed");
    fprintf(yf,
            "# Images %s was least sure about (least confident first), with its boxes as\n"
            "# pre-annotations in labels/: correct them, then\n"
            "#   coordinator data pack data=%s/annotate.yaml out=<new.h5>\n"
            "train: annotate_train.txt\nval: annotate_val.txt\nnames:\n",
            em->label, dir);
    for (int c = 0; c < em->nc; c++) fprintf(yf, "  %d: \"%s\"\n", c, em->names[c]);
    fclose(yf);
    snprintf(path, sizeof path, "%s/annotate.yaml", dir);
    rc = atomic_write_file(path, y, ylen, err, errlen);
    free(y);
    return rc;
}
