#include "coordinator/val_plan.h"

#include "common/log.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double ar;
    int32_t i;
} keyed;

static int by_ratio(const void *pa, const void *pb) {
    const keyed *a = pa, *b = pb;
    if (a->ar != b->ar) return a->ar < b->ar ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* ceil(s * imgsz / stride + pad) * stride, in numpy's float64 order of operations */
static int32_t side(double s, int imgsz, int stride, double pad) {
    return (int32_t)ceil(s * imgsz / stride + pad) * stride;
}

int val_plan_make(val_plan *p, int n, const int *heights, const int *widths, int imgsz, int stride,
                  int batch, double pad, int *bad) {
    memset(p, 0, sizeof *p);
    for (int i = 0; i < n; i++)
        if (heights[i] <= 0 || widths[i] <= 0) {
            if (bad) *bad = i;
            return -1;
        }
    keyed *k = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *k);
    for (int i = 0; i < n; i++) k[i] = (keyed){(double)heights[i] / (double)widths[i], i};
    qsort(k, (size_t)n, sizeof *k, by_ratio);
    p->n = n;
    p->order = xmalloc((size_t)(n > 0 ? n : 1) * sizeof *p->order);
    for (int i = 0; i < n; i++) p->order[i] = k[i].i;
    p->nbatches = n > 0 ? (n + batch - 1) / batch : 0;
    p->batches = xcalloc((size_t)(p->nbatches > 0 ? p->nbatches : 1), sizeof *p->batches);
    for (int b = 0; b < p->nbatches; b++) {
        int lo = b * batch, hi = lo + batch < n ? lo + batch : n;
        double mini = k[lo].ar, maxi = k[hi - 1].ar, sh = 1, sw = 1;
        if (maxi < 1)
            sh = maxi;
        else if (mini > 1)
            sw = 1 / mini;
        p->batches[b] = (val_batch){.start = lo,
                                    .count = hi - lo,
                                    .h = side(sh, imgsz, stride, pad),
                                    .w = side(sw, imgsz, stride, pad)};
    }
    free(k);
    return 0;
}

void val_plan_free(val_plan *p) {
    free(p->order);
    free(p->batches);
    memset(p, 0, sizeof *p);
}
