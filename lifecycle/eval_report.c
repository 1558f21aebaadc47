/* Tables, JSON and images of the evaluation commands (eval_report.h). */
#include "lifecycle/eval_report.h"

#include "common/atomic_file.h"
#include "common/log.h"
#include "coordinator/charts.h"
#include "coordinator/coco_json.h"
#include "coordinator/progress.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static double ap_mean(const double *ap) {
    double s = 0;
    for (int t = 0; t < VAL_NIOU; t++) s += ap[t];
    return s / VAL_NIOU;
}

void eval_print_table(const eval_model *em, const eval_result *r) {
    int nc = em->nc;
    progress_val_header();
    progress_val_row("all", r->n, (int)r->instances, r->m.precision, r->m.recall, r->m.map50,
                     r->m.map50_95);
    for (int c = 0; c < nc && nc > 1; c++)
        if (r->counts[c] > 0)
            progress_val_row(em->names[c], (int)r->counts[nc + c], (int)r->counts[c], r->m.p[c],
                             r->m.r[c], r->m.ap[c * VAL_NIOU], ap_mean(r->m.ap + c * VAL_NIOU));
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int eval_write_coco_json(const char *path, eval_source *src, const eval_result *r, char *err,
                         size_t errlen) {
    if (!src->ds) return errf(err, errlen, "save_json needs a dataset split");
    size_t n = 0;
    for (int i = 0; i < r->n; i++) n += (size_t)r->ndets[i];
    val_plot_det *d = xmalloc((n ? n : 1) * sizeof *d);
    size_t k = 0;
    for (int i = 0; i < r->n; i++)
        for (int j = 0; j < r->ndets[i]; j++) {
            const eval_det *e = &r->dets[i][j];
            d[k++] =
                (val_plot_det){i, e->cls, e->conf, e->xyxy[0], e->xyxy[1], e->xyxy[2], e->xyxy[3]};
        }
    int rc = coco_predictions_write(path, src->ds, src->split, d, n, err, errlen);
    free(d);
    return rc;
}

int eval_write_plots(const char *dir, const eval_model *em, eval_source *src, const eval_result *r,
                     char *err, size_t errlen) {
    if (!src->ds || !r->labelled) return errf(err, errlen, "plots need a labelled dataset split");
    chart_run cr;
    chart_run_init(&cr, dir, src->ds, em->imgsz);
    cr.split = src->split;
    chart_validation cv = {.m = &r->m,
                           .confusion = r->plots.confusion,
                           .ndets = r->plots.ndets,
                           .dets = r->plots.dets};
    int rc = chart_run_validation(&cr, &cv, err, errlen);
    chart_run_free(&cr);
    return rc;
}

/* A JSON string literal of s (cJSON's escaping). */
static void put_json_string(FILE *f, const char *s) {
    cJSON *j = cJSON_CreateString(s);
    char *t = cJSON_PrintUnformatted(j);
    fputs(t ? t : "\"\"", f);
    free(t);
    cJSON_Delete(j);
}

void eval_write_jsonl(FILE *f, const eval_model *em, eval_source *src, const eval_result *r,
                      float conf) {
    for (int i = 0; i < r->n; i++) {
        char name[4200];
        eval_source_name(src, i, name, sizeof name);
        for (int k = 0; k < r->ndets[i]; k++) {
            const eval_det *d = &r->dets[i][k];
            if (!(d->conf > conf)) continue;
            fputs("{\"file\": ", f);
            put_json_string(f, name);
            fprintf(f, ", \"index\": %d, \"class\": %d, \"name\": ", i, d->cls);
            put_json_string(f, d->cls >= 0 && d->cls < em->nc ? em->names[d->cls] : "?");
            fprintf(f, ", \"confidence\": %.9g, \"xyxy\": [%.9g, %.9g, %.9g, %.9g]}\n", d->conf,
                    d->xyxy[0], d->xyxy[1], d->xyxy[2], d->xyxy[3]);
        }
    }
}

int eval_write_annotated(const char *dir, const eval_model *em, eval_source *src,
                         const eval_result *r, int i, float conf, char *out, size_t n, char *err,
                         size_t errlen) {
    char name[4200], file[4200];
    eval_source_name(src, i, name, sizeof name);
    snprintf(file, sizeof file, "%s", base_name(name));
    size_t len = strlen(file);
    bool keep =
        (len > 4 && (!strcasecmp(file + len - 4, ".jpg") || !strcasecmp(file + len - 4, ".png"))) ||
        (len > 5 && !strcasecmp(file + len - 5, ".jpeg"));
    if (!keep) snprintf(file + len, sizeof file - len, ".png");
    if (snprintf(out, n, "%s/%s", dir, file) >= (int)n)
        return errf(err, errlen, "%s: path too long", dir);
    uint8_t *rgb;
    int h, w;
    if (eval_source_image(src, i, &rgb, &h, &w, err, errlen) != 0) return -1;
    chart_box *b = xmalloc((size_t)(r->ndets[i] + 1) * sizeof *b);
    size_t nb = 0;
    for (int k = 0; k < r->ndets[i]; k++) {
        const eval_det *d = &r->dets[i][k];
        if (d->conf > conf)
            b[nb++] =
                (chart_box){0, d->cls, d->conf, d->xyxy[0], d->xyxy[1], d->xyxy[2], d->xyxy[3]};
    }
    chart_tile t = {.rgb = rgb, .w = w, .h = h, .name = NULL};
    int rc = chart_annotated(&t, b, nb, (const char *const *)em->names, em->nc, out, err, errlen);
    free(b);
    free(rgb);
    return rc;
}
