/* Eval-mode decode of the head outputs into boxes in pixels and class probabilities, as
 * Ultralytics' Detect._inference: DFL expectation (reg_max > 1) or raw distances (reg_max 1),
 * ltrb around the anchor centre, times the stride; xyxy for the one2one branch (the end-to-end
 * head), xywh for the one2many branch of every model (it goes to NMS, also for yolo26). */
#include "common/log.h"
#include "kernels/dfl.h"
#include "worker/model_internal.h"

#include <math.h>
#include <stdlib.h>

void model_decode(const model *m, int branch, float *out) {
    const float *o = model_output(m, branch);
    if (!o) FATAL("model_decode: no branch %d", branch);
    int A = m->anchors, no = m->no, nc = m->cfg.nc, rm = m->cfg.reg_max;
    size_t rows = (size_t)m->batch * A;
    float *dist = xmalloc(rows * 4 * sizeof *dist);
    if (rm > 1) {
        dfl_forward((int)rows, rm, o, no, dist);
    } else {
        for (size_t r = 0; r < rows; r++)
            for (int k = 0; k < 4; k++) dist[r * 4 + k] = o[r * no + k];
    }
    bool xyxy = branch == MODEL_ONE2ONE;
    for (size_t r = 0; r < rows; r++) {
        int a = (int)(r % (size_t)A);
        float ax = m->anchor_pts[2 * a], ay = m->anchor_pts[2 * a + 1], s = m->anchor_str[a];
        const float *d = dist + r * 4;
        float x1 = ax - d[0], y1 = ay - d[1], x2 = ax + d[2], y2 = ay + d[3];
        float *q = out + r * (size_t)(4 + nc);
        if (xyxy) {
            q[0] = x1 * s, q[1] = y1 * s, q[2] = x2 * s, q[3] = y2 * s;
        } else {
            q[0] = (x1 + x2) * 0.5f * s, q[1] = (y1 + y2) * 0.5f * s;
            q[2] = (x2 - x1) * s, q[3] = (y2 - y1) * s;
        }
        const float *cl = o + r * no + 4 * rm;
        for (int c = 0; c < nc; c++) q[4 + c] = 1.0f / (1.0f + expf(-cl[c]));
    }
    free(dist);
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
