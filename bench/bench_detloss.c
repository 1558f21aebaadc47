/* Detection loss (kernels/detloss.h) at training size: 640x640 (A = 8400 anchors), batch 16,
 * nc 80, 20 boxes per image, yolov8 (reg_max 16) and yolo26 E2E (reg_max 1, two branches).
 * Baseline in the same process: the loss with 1 thread; then with kernels_threads() = 2.
 * Best of 3 steps. Timings on a shared 2-core VM are noisy. */
#include "common/timer.h"
#include "kernels/detloss.h"
#include "kernels/threads.h"

#include <stdio.h>
#include <stdlib.h>

#define B 16
#define NC 80
#define PER_IMAGE 20

static uint32_t state = 1;
static float urand(void) {
    state = state * 1664525u + 1013904223u;
    return (float)(state >> 8) / 16777216.0f;
}

static double best_of(int reps, detloss_ctx *ctx, int R, int A, const float *anc, const float *str,
                      const float *x, float *g, const float *t) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        detloss_out o;
        double t0 = now_seconds();
        int rc;
        if (R == 16) {
            detloss_hyp h = detloss_hyp_default(NC, 16);
            rc =
                detloss_branch(ctx, &h, B, A, x, anc, str, B * PER_IMAGE, t, 640, 640, NULL, g, &o);
        } else {
            detloss_hyp hm = detloss_hyp_default(NC, 1), ho = detloss_hyp_one2one(NC, 1);
            rc = detloss_e2e(ctx, &hm, &ho, DETLOSS_E2E_O2M_INIT, DETLOSS_E2E_O2O_INIT, B, A, x, x,
                             anc, str, B * PER_IMAGE, t, 640, 640, g, g, &o, NULL);
        }
        double dt = now_seconds() - t0;
        if (rc) {
            fprintf(stderr, "bench_detloss: loss failed\n");
            exit(1);
        }
        if (dt < best) best = dt;
    }
    return best;
}

int main(void) {
    const int hs[3] = {80, 40, 20};
    const float ls[3] = {8, 16, 32};
    const int A = detloss_make_anchors(3, hs, hs, ls, NULL, NULL);
    float *anc = malloc(sizeof(float) * 2 * A), *str = malloc(sizeof(float) * A);
    detloss_make_anchors(3, hs, hs, ls, anc, str);
    const size_t np = (size_t)B * A * (64 + NC);
    float *x = malloc(np * sizeof(float)), *g = malloc(np * sizeof(float));
    float *t = malloc(sizeof(float) * 6 * B * PER_IMAGE);
    if (!anc || !str || !x || !g || !t) {
        fprintf(stderr, "bench_detloss: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < np; i++) x[i] = 2 * urand() - 1;
    for (int i = 0; i < B * PER_IMAGE; i++) {
        float *r = t + 6 * i;
        r[0] = (float)(i / PER_IMAGE), r[1] = (float)(int)(urand() * NC);
        r[2] = 0.2f + 0.6f * urand(), r[3] = 0.2f + 0.6f * urand();
        r[4] = 0.02f + 0.3f * urand(), r[5] = 0.02f + 0.3f * urand();
    }
    detloss_ctx *ctx = detloss_create();
    for (int R = 16; R >= 1; R -= 15) {
        kernels_set_threads(1);
        double t1 = best_of(3, ctx, R, A, anc, str, x, g, t);
        kernels_set_threads(2);
        double t2 = best_of(3, ctx, R, A, anc, str, x, g, t);
        printf("detloss %-12s B=%d A=%d nc=%d: 1 thread %.1f ms (%.2f M anchor-images/s), "
               "2 threads %.1f ms, speedup x%.2f\n",
               R == 16 ? "v8 reg_max16" : "yolo26 e2e", B, A, NC, t1 * 1e3, B * A / t1 / 1e6,
               t2 * 1e3, t1 / t2);
    }
    detloss_destroy(ctx);
    free(anc), free(str), free(x), free(g), free(t);
    return 0;
}
