#include "worker/validate.h"

#include "common/log.h"
#include "common/timer.h"
#include "worker/head_loss.h"
#include "worker/val_plot_collect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The val loss: Ultralytics computes the items over each whole rectangular batch (one target-score
 * sum), then averages them over batches. The backend adds every chunk's sums to v->loss_res (for
 * end2end models the one2one branch's, as the items); the batch's items come from them. */
static void chunk_loss(validator *v, int h, int w, const float *labels, int nlabels) {
    head_loss(v->m,
              &(head_loss_args){.h_o2m = v->h_o2m,
                                .h_o2o = v->h_o2o,
                                .o2m = DETLOSS_E2E_O2M_INIT,
                                .o2o = DETLOSS_E2E_O2O_INIT,
                                .img_h = h,
                                .img_w = w,
                                .ntargets = nlabels,
                                .targets = labels,
                                .grad_scale = 1,
                                .grad = false},
              v->loss_res);
}

static void batch_items(validator *v, double items[3]) {
    double r[BACKEND_DETLOSS_RESULTS];
    backend_to_host(model_backend(v->m), r, v->loss_res, sizeof r);
    const detloss_hyp *h = model_num_branches(v->m) == 2 ? v->h_o2o : v->h_o2m;
    float tss = (float)r[BACKEND_DETLOSS_TARGET_RAW];
    if (tss < 1) tss = 1;
    const float gain[3] = {h->box, h->cls, h->dfl};
    for (int k = 0; k < 3; k++)
        items[k] = (double)(((float)r[BACKEND_DETLOSS_LOSS_SUM + k] / tss) * gain[k]);
}

static nms_cfg val_nms_cfg(const validator *v) {
    nms_cfg cfg = nms_val_defaults();
    cfg.conf_thres = v->conf;
    cfg.iou_thres = v->iou;
    cfg.max_det = v->max_det;
    return cfg;
}

/* Per image of the chunk: ground truth in canvas pixels, the class counts, and matching of its
 * post-processed detections (dets[i * max_det ...], ndet[i]); records appended to *recs. */
static void match_chunk(validator *v, const loader_batch *bt, const detection *dets,
                        const int32_t *ndet, val_summary *s, val_record **recs, size_t *cap,
                        int64_t *counts, val_plot_data *plots) {
    int *gt_cls = xmalloc((size_t)(bt->nlabels + 1) * sizeof *gt_cls);
    float *gt_box = xmalloc((size_t)(bt->nlabels + 1) * 4 * sizeof *gt_box);
    bool *seen = xmalloc((size_t)v->nc * sizeof *seen);
    for (int i = 0, l = 0; i < bt->n; i++) {
        int ngt = 0;
        memset(seen, 0, (size_t)v->nc * sizeof *seen);
        for (; l < bt->nlabels && (int)bt->labels[l * 6] == i; l++, ngt++) {
            const float *r = bt->labels + l * 6;
            int c = (int)r[1];
            float W = (float)bt->w, H = (float)bt->h;
            gt_cls[ngt] = c;
            gt_box[ngt * 4 + 0] = (r[2] - r[4] / 2) * W;
            gt_box[ngt * 4 + 1] = (r[3] - r[5] / 2) * H;
            gt_box[ngt * 4 + 2] = (r[2] + r[4] / 2) * W;
            gt_box[ngt * 4 + 3] = (r[3] + r[5] / 2) * H;
            if (c >= 0 && c < v->nc) {
                counts[c]++;
                if (!seen[c]) seen[c] = true, counts[v->nc + c]++;
            }
        }
        const detection *det = dets + (size_t)i * v->max_det;
        int nd = ndet[i];
        if ((size_t)s->records + (size_t)nd > *cap) {
            *cap = 2 * *cap + (size_t)nd + 256;
            *recs = xrealloc(*recs, *cap * sizeof **recs);
        }
        val_match_with(v->match, det, nd, gt_box, gt_cls, ngt, *recs + s->records);
        if (plots)
            val_plot_collect_image(plots, bt->indices[i], det, nd, gt_box, gt_cls, ngt,
                                   &bt->info[i], v->conf);
        if (v->on_image) v->on_image(v->on_image_ctx, bt->indices[i], det, nd, &bt->info[i]);
        s->records += nd;
        s->images++;
    }
    free(seen);
    free(gt_cls);
    free(gt_box);
}

int validate_run(validator *v, int epoch, const int32_t *idx, int n, const val_shape *batches,
                 int nb, val_summary *s, val_record **recs, int64_t *counts, val_plot_data *plots,
                 char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    memset(counts, 0, 2 * (size_t)v->nc * sizeof *counts);
    *recs = NULL;
    int total = 0;
    for (int b = 0; b < nb; b++) total += batches[b].count;
    if (total != n)
        return errf(err, errlen, "validation: batches hold %d images, plan has %d", total, n);
    /* queue every chunk of every batch; the loader works ahead */
    int64_t step = 0;
    for (int b = 0, off = 0; b < nb; off += batches[b].count, b++)
        for (int lo = 0; lo < batches[b].count; lo += v->chunk) {
            int c = batches[b].count - lo < v->chunk ? batches[b].count - lo : v->chunk;
            if (loader_submit_shape(v->ld, step++, epoch, idx + off + lo, c, batches[b].h,
                                    batches[b].w, err, errlen) != 0)
                return -1;
        }
    size_t cap = 0;
    const nms_cfg cfg = val_nms_cfg(v);
    detection *det = NULL;
    int32_t *ndet = NULL;
    int rc = 0, ph = 0, pw = 0, pn = 0; /* the shape the model is planned for */
    for (int b = 0; b < nb && rc == 0; b++) {
        if (v->loss_res)
            backend_zero(model_backend(v->m), v->loss_res,
                         BACKEND_DETLOSS_RESULTS * sizeof *v->loss_res);
        for (int lo = 0; lo < batches[b].count && rc == 0; lo += v->chunk) {
            loader_batch bt;
            if (loader_next(v->ld, &bt, err, errlen) != 0) {
                rc = -1;
                break;
            }
            if ((bt.n != pn || bt.h != ph || bt.w != pw) &&
                model_plan_eval(v->m, bt.n, bt.h, bt.w, err, errlen) != 0) {
                rc = -1;
                break;
            }
            pn = bt.n, ph = bt.h, pw = bt.w;
            double t0 = now_seconds();
            model_forward_u8(v->m, bt.images, false);
            det = xrealloc(det, (size_t)bt.n * (v->max_det > 0 ? v->max_det : 1) * sizeof *det);
            ndet = xrealloc(ndet, (size_t)bt.n * sizeof *ndet);
            double t1 = now_seconds();
            if (v->loss_res) chunk_loss(v, bt.h, bt.w, bt.labels, bt.nlabels);
            double t2 = now_seconds();
            /* decode and NMS / top-k on the backend: only the kept detections come back */
            model_detect(v->m, v->one2one ? MODEL_ONE2ONE : MODEL_ONE2MANY, &cfg, det, ndet);
            match_chunk(v, &bt, det, ndet, s, recs, &cap, counts, plots);
            if (v->timing) {
                v->timing->preprocess += bt.prep_s;
                v->timing->inference += t1 - t0;
                v->timing->loss += t2 - t1;
                v->timing->postprocess += now_seconds() - t2;
                v->timing->images += bt.n;
            }
        }
        if (rc) break;
        if (v->loss_res) {
            double items[3];
            batch_items(v, items);
            for (int k = 0; k < 3; k++) s->loss_sum[k] += items[k];
        }
        s->batches++;
        if (v->batch_done) v->batch_done(v->batch_ctx);
    }
    free(ndet);
    free(det);
    s->ok = rc == 0;
    if (rc) snprintf(s->error, sizeof s->error, "%.199s", err);
    return rc;
}
