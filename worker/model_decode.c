/* Eval-mode decode of the head outputs (the backend's detect_decode: Ultralytics'
 * Detect._inference) into host memory: xyxy for the one2one branch (the end-to-end head), xywh
 * for the one2many branch of every model (it goes to NMS, also for yolo26); and the end-to-end
 * top-k post-process on the host. */
#include "common/log.h"
#include "worker/model_internal.h"

#include <math.h>
#include <stdlib.h>

static detect_decode_desc decode_desc(const model *m, int branch) {
    return (detect_decode_desc){.rows = m->batch * m->anchors,
                                .anchors = m->anchors,
                                .reg_max = m->cfg.reg_max,
                                .nc = m->cfg.nc,
                                .ld = m->no,
                                .xyxy = branch == MODEL_ONE2ONE};
}

/* Decodes branch into out (device memory), or into m->decoded (allocated once per plan) when out
 * is NULL; returns where the rows are. */
static float *decode_on_backend(model *m, int branch, float *out, const char *who) {
    const float *o = model_output(m, branch);
    if (!o) FATAL("%s: no branch %d", who, branch);
    detect_decode_desc d = decode_desc(m, branch);
    if (!out) {
        if (!m->decoded)
            m->decoded = backend_alloc(m->be, (size_t)d.rows * (4 + d.nc) * sizeof *m->decoded);
        out = m->decoded;
    }
    backend_detect_decode(m->be, &d, o, m->anchor_pts_dev, m->anchor_str_dev, out);
    return out;
}

void model_decode(model *m, int branch, float *out) {
    if (backend_memory_is_host(m->be)) { /* straight into the caller's memory */
        decode_on_backend(m, branch, out, "model_decode");
        backend_synchronize(m->be);
        return;
    }
    const float *dec = decode_on_backend(m, branch, NULL, "model_decode");
    backend_to_host(m->be, out, dec, (size_t)m->batch * m->anchors * (4 + m->cfg.nc) * sizeof *out);
}

void model_detect(model *m, int branch, const nms_cfg *cfg, detection *det, int32_t *counts) {
    const float *dec = decode_on_backend(m, branch, NULL, "model_detect");
    const int B = m->batch, room = cfg->max_det > 0 ? cfg->max_det : 0;
    backend_nms_desc nd = {.images = B,
                           .anchors = m->anchors,
                           .nc = m->cfg.nc,
                           .one2one = branch == MODEL_ONE2ONE,
                           .cfg = *cfg};
    if (backend_memory_is_host(m->be)) { /* written in place */
        backend_nms(m->be, &nd, dec, det, counts);
        backend_synchronize(m->be);
        return;
    }
    if (m->det_room < room || m->det_images < B || !m->det_counts_dev) {
        backend_free(m->be, m->det_dev);
        backend_free(m->be, m->det_counts_dev);
        m->det_dev = backend_alloc(m->be, (size_t)B * (room ? room : 1) * sizeof *m->det_dev);
        m->det_counts_dev = backend_alloc(m->be, (size_t)B * sizeof *m->det_counts_dev);
        m->det_room = room;
        m->det_images = B;
    }
    nd.cfg.max_det = room; /* the rows of det_dev are room apart, as det's */
    backend_nms(m->be, &nd, dec, m->det_dev, m->det_counts_dev);
    backend_to_host(m->be, counts, m->det_counts_dev, (size_t)B * sizeof *counts);
    for (int b = 0; b < B; b++)
        if (counts[b] > 0)
            backend_to_host(m->be, det + (size_t)b * room, m->det_dev + (size_t)b * room,
                            (size_t)counts[b] * sizeof *det);
}

typedef struct scored {
    float s;
    int i;
} scored;

/* descending score, then ascending index */
static int by_score(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return x->i - y->i;
}

void model_topk_e2e(int batch, int anchors, int nc, int k, const float *decoded, float *out) {
    int no = 4 + nc;
    if (k > anchors) k = anchors;
    scored *a = xmalloc((size_t)anchors * sizeof *a), *p = xmalloc((size_t)k * nc * sizeof *p);
    for (int b = 0; b < batch; b++) {
        const float *d = decoded + (size_t)b * anchors * no;
        for (int i = 0; i < anchors; i++) {
            float mx = d[(size_t)i * no + 4];
            for (int c = 1; c < nc; c++) mx = fmaxf(mx, d[(size_t)i * no + 4 + c]);
            a[i] = (scored){mx, i};
        }
        qsort(a, (size_t)anchors, sizeof *a, by_score);
        for (int j = 0; j < k; j++)
            for (int c = 0; c < nc; c++)
                p[j * nc + c] = (scored){d[(size_t)a[j].i * no + 4 + c], j * nc + c};
        qsort(p, (size_t)k * nc, sizeof *p, by_score);
        for (int j = 0; j < k; j++) {
            int anchor = a[p[j].i / nc].i, cls = p[j].i % nc;
            float *o = out + ((size_t)b * k + j) * 6;
            for (int q = 0; q < 4; q++) o[q] = d[(size_t)anchor * no + q];
            o[4] = p[j].s;
            o[5] = (float)cls;
        }
    }
    free(a);
    free(p);
}
