/* The op harness's case of the `nms` op (validation NMS / top-k): decoded rows with tied scores
 * and repeated boxes, every detection slot and count fetched (the slots an image does not fill
 * must stay as they were). */
#include "tests/backend_ops.h"

#include "common/log.h"

#include <stdlib.h>

/* p = images anchors nc one2one agnostic multi_label max_det max_nms conf(x1000) */
void bops_run_nms(bops_env *e, const bops_case *c) {
    const int B = c->p[0], A = c->p[1], nc = c->p[2], no = 4 + nc, md = c->p[6];
    const size_t n = (size_t)B * A * no;
    float *h = xmalloc(n * sizeof *h), *u = xmalloc(n * sizeof *u);
    bops_host_rand(e, u, n, 0, 1);
    for (size_t i = 0; i < (size_t)B * A; i++) {
        float *r = h + i * no, *q = u + i * no;
        int proto = (int)(q[0] * 64) % 8; /* 8 boxes, each a few times: identical boxes */
        for (int k = 0; k < 4; k++) r[k] = (float)((proto * 37 + k * 11) % 50) + 8;
        if (c->p[3]) r[2] += r[0], r[3] += r[1];            /* one2one rows are x1, y1, x2, y2 */
        if (i % 3 == 0) r[0] += q[1] * 4, r[1] += q[2] * 4; /* and some that move */
        for (int k = 0; k < nc; k++) r[4 + k] = (float)(int)(q[4 + k] * 16) / 16; /* ties */
    }
    float *pred = bops_bytes(e, n * sizeof *pred);
    backend_to_device(e->be, pred, h, n * sizeof *h);
    nms_cfg cfg = nms_val_defaults();
    cfg.agnostic = c->p[4];
    cfg.multi_label = c->p[5];
    cfg.max_det = md;
    cfg.max_nms = c->p[7];
    cfg.conf_thres = (float)c->p[8] / 1000;
    backend_nms_desc d = {.images = B, .anchors = A, .nc = nc, .one2one = c->p[3], .cfg = cfg};
    detection *dets = bops_bytes(e, (size_t)B * md * sizeof *dets); /* zeroed */
    int32_t *counts = bops_bytes(e, (size_t)B * sizeof *counts);
    backend_nms(e->be, &d, pred, dets, counts);
    bops_take_i32(e, "counts", counts, (size_t)B);
    detection *hd = xmalloc(((size_t)B * md + 1) * sizeof *hd);
    backend_to_host(e->be, hd, dets, (size_t)B * md * sizeof *hd);
    float *flat = xmalloc(((size_t)B * md + 1) * 6 * sizeof *flat);
    for (size_t i = 0; i < (size_t)B * md; i++) {
        float *f = flat + 6 * i;
        f[0] = hd[i].x1, f[1] = hd[i].y1, f[2] = hd[i].x2, f[3] = hd[i].y2, f[4] = hd[i].conf;
        f[5] = (float)hd[i].cls;
    }
    float *d_flat = bops_zeros(e, (size_t)B * md * 6);
    backend_to_device(e->be, d_flat, flat, (size_t)B * md * 6 * sizeof *flat);
    bops_take(e, "detections", d_flat, (size_t)B * md * 6);
    free(flat);
    free(hd);
    free(u);
    free(h);
}
