/* A model over a dataset split or image files, through validate_run (eval_run.h). */
#include "lifecycle/eval_run.h"

#include "common/log.h"
#include "common/protocol.h"
#include "common/timer.h"
#include "coordinator/val_plan.h"
#include "dataio/augment.h"
#include "dataio/decode.h"
#include "dataio/loader.h"
#include "dataio/pack_cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define STRIDE 32

static bool is_hdf5(const char *path) {
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    unsigned char b[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    return n == sizeof b && !memcmp(b, sig, sizeof sig);
}

static bool has_ext(const char *p, const char *ext) {
    size_t n = strlen(p), k = strlen(ext);
    return n > k && !strcasecmp(p + n - k, ext);
}

int eval_source_open(const char *spec, const char *split, eval_source *s, char *err,
                     size_t errlen) {
    memset(s, 0, sizeof *s);
    snprintf(s->spec, sizeof s->spec, "%s", spec);
    s->split = SPLIT_VAL;
    if (split && strcmp(split, "val")) {
        if (!strcmp(split, "train"))
            s->split = SPLIT_TRAIN;
        else if (!strcmp(split, "test"))
            s->split = SPLIT_TEST;
        else
            return errf(err, errlen, "split=%s: expected train, val or test", split);
    }
    struct stat st;
    if (stat(spec, &st) != 0) return errf(err, errlen, "%s: %s", spec, strerror(errno));
    bool yaml = has_ext(spec, ".yaml") || has_ext(spec, ".yml");
    if (S_ISDIR(st.st_mode) || (!yaml && !is_hdf5(spec))) {
        if (image_files_list(spec, &s->files, err, errlen) != 0) return -1;
        s->n = s->files.n;
        return 0;
    }
    pack_cache_result pr;
    if (pack_cache_resolve(spec, NULL, s->path, sizeof s->path, &pr, err, errlen) != 0) return -1;
    if (pr == PACK_CACHE_PACKED) log_info("packed %s into %s", spec, s->path);
    if (!(s->ds = dataset_open(s->path, err, errlen))) return -1;
    s->n = dataset_split_size(s->ds, s->split);
    if (s->n < 1) {
        errf(err, errlen, "%s: split '%s' is empty or absent", s->path, split_name(s->split));
        eval_source_close(s);
        return -1;
    }
    return 0;
}

void eval_source_close(eval_source *s) {
    if (s->ds) dataset_close(s->ds);
    image_files_free(&s->files);
    memset(s, 0, sizeof *s);
}

bool eval_source_labelled(const eval_source *s) {
    return s->ds != NULL;
}

void eval_source_name(const eval_source *s, int i, char *out, size_t n) {
    if (!s->ds) {
        snprintf(out, n, "%s", s->files.path[i]);
        return;
    }
    if (dataset_filename(s->ds, s->split, i, out, n) != 0 || !out[0])
        snprintf(out, n, "%s/%06d", split_name(s->split), i);
}

int eval_source_size(eval_source *s, int i, int *h, int *w, char *err, size_t errlen) {
    if (s->ds) {
        if (dataset_image_size(s->ds, s->split, i, h, w) != 0 || *h <= 0 || *w <= 0)
            return errf(err, errlen, "%s: %s image %d has no valid size", s->path,
                        split_name(s->split), i);
        return 0;
    }
    uint8_t *b;
    size_t nb;
    if (image_files_read(s->files.path[i], &b, &nb, err, errlen) != 0) return -1;
    int enc = image_sniff_encoding(b, nb), rc = 0;
    char e2[256];
    if (!enc || image_decode_size(b, nb, (image_encoding)enc, h, w, e2, sizeof e2) != 0)
        rc = errf(err, errlen, "%s: not a JPEG or PNG image%s%s", s->files.path[i], enc ? ": " : "",
                  enc ? e2 : "");
    free(b);
    return rc;
}

int eval_source_image(eval_source *s, int i, uint8_t **rgb, int *h, int *w, char *err,
                      size_t errlen) {
    *rgb = NULL;
    dataset_sample smp = {0};
    char e2[256];
    int rc;
    if (s->ds) {
        if (dataset_read(s->ds, s->split, i, &smp, err, errlen) != 0) return -1;
    } else {
        if (image_files_read(s->files.path[i], &smp.bytes, &smp.nbytes, err, errlen) != 0)
            return -1;
        smp.encoding = (image_encoding)image_sniff_encoding(smp.bytes, smp.nbytes);
    }
    *h = smp.height, *w = smp.width; /* raw RGB carries no header */
    rc = image_decode(smp.bytes, smp.nbytes, smp.encoding, 0, 0, rgb, h, w, e2, sizeof e2);
    if (rc != 0) {
        char name[1024];
        eval_source_name(s, i, name, sizeof name);
        errf(err, errlen, "%s: %s", name, e2);
    }
    dataset_sample_free(&smp);
    return rc;
}

/* ---- the run ------------------------------------------------------------------------------- */

static int ceil_stride(int v) {
    return (v + STRIDE - 1) / STRIDE * STRIDE;
}

void eval_predict_canvas(int h0, int w0, int imgsz, int *h, int *w) {
    int lh, lw;
    augment_load_size(h0, w0, imgsz, &lh, &lw);
    *h = ceil_stride(lh), *w = ceil_stride(lw);
}

/* Indices in processing order and the batches: rectangular validation batches of a dataset
 * split, or one image per batch in its own smallest stride-multiple canvas. */
static int make_batches(eval_source *s, const eval_opts *o, int32_t **idx, val_shape **shapes,
                        int *nb, char *err, size_t errlen) {
    int n = s->n, *h = xmalloc((size_t)n * sizeof *h), *w = xmalloc((size_t)n * sizeof *w);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) rc = eval_source_size(s, i, &h[i], &w[i], err, errlen);
    *idx = xmalloc((size_t)n * sizeof **idx);
    if (rc == 0 && s->ds) {
        val_plan p;
        rc = val_plan_make(&p, n, h, w, o->imgsz, STRIDE, o->batch, 0.5, NULL);
        if (rc != 0) rc = errf(err, errlen, "%s: an image has no valid size", s->path);
        if (rc == 0) {
            memcpy(*idx, p.order, (size_t)n * sizeof **idx);
            *nb = p.nbatches;
            *shapes = xmalloc((size_t)p.nbatches * sizeof **shapes);
            for (int b = 0; b < p.nbatches; b++)
                (*shapes)[b] = (val_shape){p.batches[b].count, p.batches[b].h, p.batches[b].w};
            val_plan_free(&p);
        }
    } else if (rc == 0) {
        *nb = n;
        *shapes = xmalloc((size_t)n * sizeof **shapes);
        for (int i = 0; i < n; i++) {
            int ch, cw;
            eval_predict_canvas(h[i], w[i], o->imgsz, &ch, &cw);
            (*idx)[i] = i;
            (*shapes)[i] = (val_shape){1, ch, cw};
        }
    }
    free(h);
    free(w);
    return rc;
}

static void on_image(void *ctx, int index, const detection *det, int nd, const letterbox_info *lb) {
    eval_result *r = ctx;
    if (index < 0 || index >= r->n) return;
    eval_det *d = xmalloc((size_t)(nd > 0 ? nd : 1) * sizeof *d);
    for (int k = 0; k < nd; k++) {
        float b[4] = {det[k].x1, det[k].y1, det[k].x2, det[k].y2};
        letterbox_undo_box(lb, b, d[k].xyxy);
        d[k].cls = det[k].cls;
        d[k].conf = det[k].conf;
    }
    free(r->dets[index]);
    r->dets[index] = d;
    r->ndets[index] = nd;
}

static loader *make_loader(eval_source *s, const eval_opts *o, char *err, size_t errlen) {
    loader_config lc = loader_config_defaults();
    lc.imgsz = o->imgsz;
    lc.augment = 0;
    lc.max_batch = VAL_CHUNK;
    lc.max_side = o->imgsz + STRIDE; /* rectangular batches: pad 0.5 adds up to one stride */
    lc.nthreads = o->loader_threads > 0 ? o->loader_threads : 2;
    lc.depth = 4;
    if (s->ds) return loader_create(s->path, s->split, &lc, err, errlen);
    return loader_create_source(image_files_source(&s->files, s->spec), &lc, err, errlen);
}

int eval_run(eval_model *em, eval_source *src, const eval_opts *o, eval_result *r, char *err,
             size_t errlen) {
    memset(r, 0, sizeof *r);
    r->n = src->n;
    r->dets = xcalloc((size_t)r->n, sizeof *r->dets);
    r->ndets = xcalloc((size_t)r->n, sizeof *r->ndets);
    r->counts = xcalloc(2 * (size_t)em->nc, sizeof *r->counts);
    val_plot_data_init(&r->plots, em->nc);
    if (src->ds && dataset_num_classes(src->ds) != em->nc)
        return errf(err, errlen, "%s has %d classes, the model %d: not the data it was made for",
                    src->path, dataset_num_classes(src->ds), em->nc);
    int32_t *idx = NULL;
    val_shape *shapes = NULL;
    int nb = 0;
    double t0 = now_seconds();
    int rc = make_batches(src, o, &idx, &shapes, &nb, err, errlen);
    loader *ld = rc == 0 ? make_loader(src, o, err, errlen) : NULL;
    if (rc == 0 && !ld) rc = -1;
    if (rc == 0) {
        const ul_behaviour *beh = ul_behaviour_of(em->ultralytics);
        validator v = {.m = em->m,
                       .ld = ld,
                       .chunk = VAL_CHUNK,
                       .nc = em->nc,
                       .imgsz = o->imgsz,
                       .one2one = eval_model_one2one(em, o->nms),
                       .match = beh->match_greedy ? VAL_MATCH_GREEDY : VAL_MATCH_IOU_SORTED,
                       .conf = o->conf,
                       .iou = o->iou,
                       .max_det = o->max_det,
                       .on_image = on_image,
                       .on_image_ctx = r,
                       .timing = &r->timing};
        val_summary s;
        val_record *recs = NULL;
        rc = validate_run(&v, 0, idx, src->n, shapes, nb, &s, &recs, r->counts,
                          o->plots ? &r->plots : NULL, err, errlen);
        r->wall_s = now_seconds() - t0;
        if (rc == 0 && nb > 0) r->last_h = shapes[nb - 1].h, r->last_w = shapes[nb - 1].w;
        if (rc == 0 && src->ds) {
            for (int c = 0; c < em->nc; c++) r->instances += r->counts[c];
            val_ap_rule rule =
                beh->ap_drop_after_last_recall ? VAL_AP_DROP_AFTER_LAST_RECALL : VAL_AP_TO_ONE;
            rc = val_metrics_compute_with(rule, recs, (size_t)s.records, r->counts, em->nc, &r->m,
                                          err, errlen);
            r->labelled = rc == 0;
        }
        free(recs);
    }
    loader_destroy(ld);
    free(idx);
    free(shapes);
    return rc;
}

void eval_result_free(eval_result *r) {
    for (int i = 0; r->dets && i < r->n; i++) free(r->dets[i]);
    free(r->dets);
    free(r->ndets);
    free(r->counts);
    if (r->labelled) val_metrics_free(&r->m);
    val_plot_data_free(&r->plots);
    memset(r, 0, sizeof *r);
}

void eval_print_speed(const eval_result *r, bool with_loss, int batch) {
    const val_timing *t = &r->timing;
    double k = t->images > 0 ? 1e3 / t->images : 0;
    if (with_loss)
        printf("Speed: %.1fms preprocess, %.1fms inference, %.1fms loss, %.1fms postprocess per "
               "image\n",
               t->preprocess * k, t->inference * k, t->loss * k, t->postprocess * k);
    else
        printf("Speed: %.1fms preprocess, %.1fms inference, %.1fms postprocess per image at shape "
               "(%d, 3, %d, %d)\n",
               t->preprocess * k, t->inference * k, t->postprocess * k, batch, r->last_h,
               r->last_w);
    printf("Throughput: %d images in %.2f s, %.1f images/s\n", t->images, r->wall_s,
           r->wall_s > 0 ? t->images / r->wall_s : 0.0);
    fflush(stdout);
}
