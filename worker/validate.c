#include "worker/validate.h"

#include "common/log.h"
#include "kernels/nms.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Loss items of the eval-mode head outputs (Ultralytics computes the val loss on them; for
 * end-to-end models it logs the one2one items). */
static int val_loss(validator *v, int B, const float *labels, int nlabels, double sum[3], char *err,
                    size_t errlen) {
    const model_yaml *y = model_config(v->m);
    int A = model_num_anchors(v->m);
    detloss_out o;
    detloss_hyp h = detloss_hyp_default(v->nc, y->reg_max);
    int rc;
    if (model_num_branches(v->m) == 2) {
        detloss_hyp h2 = detloss_hyp_one2one(v->nc, y->reg_max);
        rc = detloss_e2e(v->loss, &h, &h2, 0.8f, 0.2f, B, A, model_output(v->m, MODEL_ONE2MANY),
                         model_output(v->m, MODEL_ONE2ONE), model_anchor_points(v->m),
                         model_anchor_strides(v->m), nlabels, labels, (float)v->imgsz,
                         (float)v->imgsz, NULL, NULL, &o, NULL);
    } else {
        rc = detloss_branch(v->loss, &h, B, A, model_output(v->m, MODEL_ONE2MANY),
                            model_anchor_points(v->m), model_anchor_strides(v->m), nlabels, labels,
                            (float)v->imgsz, (float)v->imgsz, NULL, NULL, &o);
    }
    if (rc != 0)
        return errf(err, errlen, "validation loss failed (nc=%d, reg_max=%d)", v->nc, y->reg_max);
    for (int k = 0; k < 3; k++) sum[k] += (double)o.items[k] * B;
    return 0;
}

int validate_run(validator *v, int epoch, const int32_t *idx, int n, val_summary *s,
                 val_record **recs, int64_t *counts, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    memset(counts, 0, 2 * (size_t)v->nc * sizeof *counts);
    *recs = NULL;
    int A = 0, no = 4 + v->nc, e2e = model_num_branches(v->m) == 2;
    size_t cap = 0;
    float *dec = NULL, *img = NULL;
    detection *det = xmalloc((size_t)v->max_det * sizeof *det);
    nms_cfg cfg = nms_val_defaults();
    cfg.conf_thres = v->conf;
    cfg.iou_thres = v->iou;
    cfg.max_det = v->max_det;
    int rc = 0;
    for (int lo = 0; lo < n && rc == 0; lo += v->chunk) {
        int b = n - lo < v->chunk ? n - lo : v->chunk;
        if (loader_submit(v->ld, lo, epoch, idx + lo, b, err, errlen) != 0) return -1;
    }
    int *gt_cls = NULL;
    float *gt_box = NULL;
    /* image_seen[c] == image number + 1: class c already counted for this image */
    int *image_seen = xcalloc((size_t)v->nc, sizeof *image_seen);
    int image_no = 0;
    for (int lo = 0; lo < n && rc == 0; lo += v->chunk) {
        loader_batch bt;
        if (loader_next(v->ld, &bt, err, errlen) != 0) {
            rc = -1;
            break;
        }
        if (bt.n != v->chunk && model_plan_eval(v->m, bt.n, v->imgsz, v->imgsz, err, errlen) != 0) {
            rc = -1;
            break;
        }
        size_t px = (size_t)bt.n * v->imgsz * v->imgsz * 3;
        img = xrealloc(img, px * sizeof *img);
        for (size_t i = 0; i < px; i++) img[i] = bt.images[i] * (1.0f / 255.0f);
        model_forward(v->m, img, false);
        A = model_num_anchors(v->m);
        dec = xrealloc(dec, (size_t)bt.n * A * no * sizeof *dec);
        model_decode(v->m, e2e ? MODEL_ONE2ONE : MODEL_ONE2MANY, dec);
        if (val_loss(v, bt.n, bt.labels, bt.nlabels, s->loss_sum, err, errlen) != 0) {
            rc = -1;
            break;
        }
        gt_cls = xrealloc(gt_cls, (size_t)(bt.nlabels + 1) * sizeof *gt_cls);
        gt_box = xrealloc(gt_box, (size_t)(bt.nlabels + 1) * 4 * sizeof *gt_box);
        for (int i = 0, l = 0; i < bt.n; i++) {
            int ngt = 0;
            image_no++;
            for (; l < bt.nlabels && (int)bt.labels[l * 6] == i; l++, ngt++) {
                const float *r = bt.labels + l * 6;
                int c = (int)r[1];
                float S = (float)v->imgsz;
                gt_cls[ngt] = c;
                gt_box[ngt * 4 + 0] = (r[2] - r[4] / 2) * S;
                gt_box[ngt * 4 + 1] = (r[3] - r[5] / 2) * S;
                gt_box[ngt * 4 + 2] = (r[2] + r[4] / 2) * S;
                gt_box[ngt * 4 + 3] = (r[3] + r[5] / 2) * S;
                if (c >= 0 && c < v->nc) {
                    counts[c]++;
                    if (image_seen[c] != image_no) image_seen[c] = image_no, counts[v->nc + c]++;
                }
            }
            const float *p = dec + (size_t)i * A * no;
            int nd = e2e ? topk_detect(p, A, v->nc, &cfg, det) : nms_detect(p, A, v->nc, &cfg, det);
            if ((size_t)s->records + (size_t)nd > cap) {
                cap = 2 * cap + (size_t)nd + 256;
                *recs = xrealloc(*recs, cap * sizeof **recs);
            }
            val_match(det, nd, gt_box, gt_cls, ngt, *recs + s->records);
            s->records += nd;
            s->images++;
        }
    }
    if (rc == 0 && n > 0 && (n % v->chunk) != 0)
        rc = model_plan_eval(v->m, v->chunk, v->imgsz, v->imgsz, err, errlen);
    free(gt_cls);
    free(gt_box);
    free(image_seen);
    free(dec);
    free(img);
    free(det);
    s->ok = rc == 0;
    if (rc) snprintf(s->error, sizeof s->error, "%.199s", err);
    return rc;
}
