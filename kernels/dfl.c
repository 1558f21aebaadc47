/* DFL decode: per side, softmax over reg_max bins, then the expected bin index. */
#include "kernels/dfl.h"

#include "common/log.h"
#include "kernels/fast_exp.h"
#include "kernels/threads.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>

#define DFL_PAR_MIN 512

/* p[b] = softmax(l)[b] (p has reg_max entries); returns sum_b b p[b]. */
static float side_softmax(int reg_max, const float *l, float *p) {
    float mx = l[0];
    for (int b = 1; b < reg_max; b++) mx = l[b] > mx ? l[b] : mx;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int b = 0; b < reg_max; b++) {
        p[b] = exp_fast(l[b] - mx);
        sum += p[b];
    }
    float inv = 1.0f / sum, e = 0.0f;
#pragma omp simd reduction(+ : e)
    for (int b = 0; b < reg_max; b++) {
        p[b] *= inv;
        e += (float)b * p[b];
    }
    return e;
}

void dfl_forward(int rows, int reg_max, const float *logits, int ld, float *dist) {
#pragma omp parallel num_threads(kernels_threads()) if (rows >= DFL_PAR_MIN)
    {
        float p[reg_max];
#pragma omp for schedule(static)
        for (int r = 0; r < rows; r++)
            for (int s = 0; s < 4; s++)
                dist[(size_t)r * 4 + s] =
                    side_softmax(reg_max, logits + (size_t)r * ld + s * reg_max, p);
    }
}

/* d dist / d l[b] = p[b] (b - dist). */
void dfl_backward(int rows, int reg_max, const float *logits, int ld, const float *ddist,
                  float *dlogits) {
#pragma omp parallel num_threads(kernels_threads()) if (rows >= DFL_PAR_MIN)
    {
        float p[reg_max];
#pragma omp for schedule(static)
        for (int r = 0; r < rows; r++)
            for (int s = 0; s < 4; s++) {
                const float *l = logits + (size_t)r * ld + s * reg_max;
                float *dl = dlogits + (size_t)r * ld + s * reg_max;
                float e = side_softmax(reg_max, l, p), g = ddist[(size_t)r * 4 + s];
                for (int b = 0; b < reg_max; b++) dl[b] += g * p[b] * ((float)b - e);
            }
    }
}

void detect_decode(const detect_decode_desc *d, const float *logits, const float *anchor_pts,
                   const float *anchor_str, float *out) {
    const int A = d->anchors, no = d->ld, nc = d->nc, rm = d->reg_max;
    const size_t rows = (size_t)d->rows;
    float *dist = xmalloc((rows + 1) * 4 * sizeof *dist);
    if (rm > 1) {
        dfl_forward(d->rows, rm, logits, no, dist);
    } else {
        for (size_t r = 0; r < rows; r++)
            for (int k = 0; k < 4; k++) dist[r * 4 + k] = logits[r * no + k];
    }
    for (size_t r = 0; r < rows; r++) {
        int a = (int)(r % (size_t)A);
        float ax = anchor_pts[2 * a], ay = anchor_pts[2 * a + 1], s = anchor_str[a];
        const float *ds = dist + r * 4;
        float x1 = ax - ds[0], y1 = ay - ds[1], x2 = ax + ds[2], y2 = ay + ds[3];
        float *q = out + r * (size_t)(4 + nc);
        if (d->xyxy) {
            q[0] = x1 * s, q[1] = y1 * s, q[2] = x2 * s, q[3] = y2 * s;
        } else {
            q[0] = (x1 + x2) * 0.5f * s, q[1] = (y1 + y2) * 0.5f * s;
            q[2] = (x2 - x1) * s, q[3] = (y2 - y1) * s;
        }
        const float *cl = logits + r * no + 4 * rm;
        for (int c = 0; c < nc; c++) q[4 + c] = 1.0f / (1.0f + expf(-cl[c]));
    }
    free(dist);
}
