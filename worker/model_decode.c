/* Eval-mode decode of the head outputs (the backend's detect_decode: Ultralytics'
 * Detect._inference) into host memory: xyxy for the one2one branch (the end-to-end head), xywh
 * for the one2many branch of every model (it goes to NMS, also for yolo26); and the end-to-end
 * top-k post-process on the host. */
#include "common/log.h"
#include "worker/model_internal.h"

#include <math.h>
#include <stdlib.h>

void model_decode(model *m, int branch, float *out) {
    const float *o = model_output(m, branch);
    if (!o) FATAL("model_decode: no branch %d", branch);
    detect_decode_desc d = {.rows = m->batch * m->anchors,
                            .anchors = m->anchors,
                            .reg_max = m->cfg.reg_max,
                            .nc = m->cfg.nc,
                            .ld = m->no,
                            .xyxy = branch == MODEL_ONE2ONE};
    size_t bytes = (size_t)d.rows * (4 + d.nc) * sizeof *out;
    if (backend_memory_is_host(m->be)) { /* straight into the caller's memory */
        backend_detect_decode(m->be, &d, o, m->anchor_pts_dev, m->anchor_str_dev, out);
        backend_synchronize(m->be);
        return;
    }
    if (!m->decoded) m->decoded = backend_alloc(m->be, bytes);
    backend_detect_decode(m->be, &d, o, m->anchor_pts_dev, m->anchor_str_dev, m->decoded);
    backend_to_host(m->be, out, m->decoded, bytes);
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
