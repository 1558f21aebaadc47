/* Throughput of the CPU layout/normalisation kernels at YOLO training shapes (batch 8, 640 input),
 * against baselines measured in this process: memcpy of the same bytes for the memory-bound ops,
 * one dnnl_sgemm of the same FLOPs for attention. Usage: bench_ops [threads] (default 1). */
#include "common/log.h"
#include "common/timer.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/batchnorm.h"
#include "kernels/batchnorm_silu.h"
#include "kernels/dfl.h"
#include "kernels/pool.h"
#include "kernels/tensor_ops.h"
#include "kernels/threads.h"

#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *rand_buf(size_t n) {
    float *p = xmalloc(n * sizeof(float));
    unsigned s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)(s >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
    }
    return p;
}

/* Seconds per call: best of a few repeats. */
#define TIME_BEST(secs, reps, stmt)                                                                \
    do {                                                                                           \
        secs = 1e30;                                                                               \
        for (int r_ = 0; r_ < (reps); r_++) {                                                      \
            double t0_ = now_seconds();                                                            \
            stmt;                                                                                  \
            double t_ = now_seconds() - t0_;                                                       \
            if (t_ < secs) secs = t_;                                                              \
        }                                                                                          \
    } while (0)

static void report(const char *name, double secs, double bytes, double base_secs) {
    printf("%-34s %8.3f ms  %7.2f GB/s  %5.2fx memcpy time\n", name, secs * 1e3, bytes / secs / 1e9,
           secs / base_secs);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    kernels_set_threads(threads);
    printf("bench_ops: %d thread(s); timings are noisy on a shared machine\n", threads);
    int reps = 5;

    /* BN + SiLU at the first stem layer: 8 x 320 x 320 x 16 would be 52 MB; use layer 1's shape */
    int n = 8, h = 160, w = 160, c = 32, m = n * h * w;
    size_t sz = (size_t)m * c;
    float *x = rand_buf(sz), *y = rand_buf(sz), *dy = rand_buf(sz), *dx = rand_buf(sz);
    float *g = rand_buf(c), *b = rand_buf(c), *mean = rand_buf(c), *istd = rand_buf(c);
    float *rm = rand_buf(c), *rv = rand_buf(c), *dg = rand_buf(2 * c);
    for (int i = 0; i < c; i++) rv[i] = 1.0f;
    double base, t;
    TIME_BEST(base, reps, memcpy(y, x, sz * sizeof(float)));
    double mb = 2.0 * sz * sizeof(float);
    printf("shape 8x160x160x32 (%.0f MB per tensor); memcpy %.3f ms, %.2f GB/s\n", sz * 4 / 1e6,
           base * 1e3, mb / base / 1e9);
    TIME_BEST(t, reps,
              batchnorm_forward_train(m, c, x, g, b, BN_EPS, BN_MOMENTUM, rm, rv, mean, istd, y));
    report("batchnorm_forward_train", t, 3.0 * sz * 4, base);
    TIME_BEST(t, reps, batchnorm_backward(m, c, x, g, mean, istd, dy, dx, dg, dg + c));
    report("batchnorm_backward", t, 5.0 * sz * 4, base);
    /* the fused BN + SiLU backward as the model ran it (dx zeroed, then accumulated) and as it
     * runs it now where it is dx's first producer (written); bytes: x, dy, dx once each */
    TIME_BEST(t, reps,
              (memset(dx, 0, sz * sizeof *dx),
               batchnorm_silu_backward(m, c, x, g, b, mean, istd, dy, dx, dg, dg + c)));
    report("zero + batchnorm_silu_backward", t, 3.0 * sz * 4, base);
    double t_acc = t;
    TIME_BEST(t, reps, batchnorm_silu_backward_set(m, c, x, g, b, mean, istd, dy, dx, dg, dg + c));
    report("batchnorm_silu_backward_set", t, 3.0 * sz * 4, base);
    printf("%-34s %8.2fx the time of zero + batchnorm_silu_backward\n", "", t / t_acc);
    TIME_BEST(t, reps, silu_forward(sz, x, y));
    report("silu_forward", t, mb, base);
    TIME_BEST(t, reps, silu_backward(sz, x, dy, dx));
    report("silu_backward", t, 4.0 * sz * 4, base);
    TIME_BEST(t, reps, add_forward(sz, x, dy, y));
    report("add_forward", t, 3.0 * sz * 4, base);

    /* upsample 8 x 40 x 40 x 256 -> 80 x 80 (neck) */
    int uh = 40, uw = 40, uc = 256;
    size_t usz = (size_t)n * uh * uw * uc;
    float *ux = rand_buf(usz), *uy = rand_buf(4 * usz), *udx = rand_buf(usz);
    float *uy2 = rand_buf(4 * usz);
    TIME_BEST(base, reps, memcpy(uy2, uy, usz * 4 * sizeof(float)));
    TIME_BEST(t, reps, upsample2x_forward(n, uh, uw, uc, ux, uy));
    report("upsample2x_forward 40x40x256", t, 5.0 * usz * 4, base);
    TIME_BEST(t, reps, upsample2x_backward(n, uh, uw, uc, uy, udx));
    report("upsample2x_backward", t, 6.0 * usz * 4, base);

    /* SPPF pool: 8 x 20 x 20 x 128, k5 s1 p2 */
    int ph = 20, pw = 20, pc = 128;
    size_t psz = (size_t)n * ph * pw * pc;
    float *px = rand_buf(psz), *py = rand_buf(psz), *pdx = rand_buf(psz);
    int32_t *am = xmalloc(psz * sizeof(int32_t));
    TIME_BEST(base, reps, memcpy(py, px, psz * sizeof(float)));
    TIME_BEST(t, reps, maxpool_forward(n, ph, pw, pc, 5, 1, 2, px, py, am));
    report("maxpool_forward SPPF 20x20x128", t, 3.0 * psz * 4, base);
    TIME_BEST(t, reps, maxpool_backward(n, ph, pw, pc, py, am, pdx));
    report("maxpool_backward", t, 4.0 * psz * 4, base);

    /* attention at P5 of a 640 input: hw 400, dim 128 (2 heads, kd 32, hd 64) */
    attention_desc a = {n, 400, 2, 32, 64, 1.0f / sqrtf(32.0f)};
    size_t nq = (size_t)n * 400 * 256, no = (size_t)n * 400 * 128;
    float *qkv = rand_buf(nq), *out = rand_buf(no), *vout = rand_buf(no), *dq = rand_buf(nq);
    float *probs = xmalloc((size_t)n * 2 * 400 * 400 * sizeof(float));
    double fwd_flops = 2.0 * n * 2 * 400.0 * 400 * (32 + 64);
    double bwd_flops = 2.0 * n * 2 * 400.0 * 400 * (64 + 64 + 32 + 32);
    /* baseline: one sgemm of the forward's FLOPs, square-ish: 400 x 400 x (n * 2 * 96) */
    int kk = n * 2 * 96;
    float *ga = rand_buf((size_t)400 * kk), *gb = rand_buf((size_t)kk * 400),
          *gc = rand_buf(400 * 400);
    TIME_BEST(base, reps,
              if (dnnl_sgemm('N', 'N', 400, 400, kk, 1.0f, ga, kk, gb, 400, 0.0f, gc, 400) !=
                  dnnl_success) FATAL("dnnl_sgemm failed"));
    printf("attention hw=400 dim=128 batch 8; sgemm of the same FLOPs: %.3f ms, %.1f GFLOP/s\n",
           base * 1e3, fwd_flops / base / 1e9);
    TIME_BEST(t, reps, attention_forward(&a, qkv, out, vout, probs));
    printf("%-34s %8.3f ms  %7.1f GFLOP/s  %5.2fx sgemm time\n", "attention_forward", t * 1e3,
           fwd_flops / t / 1e9, t / base);
    TIME_BEST(t, reps, attention_backward(&a, qkv, probs, out, vout, dq));
    printf("%-34s %8.3f ms  %7.1f GFLOP/s  %5.2fx sgemm time\n", "attention_backward", t * 1e3,
           bwd_flops / t / 1e9, t / base);

    /* DFL over the 8400 anchors of a 640 input, batch 8 */
    int rows = n * 8400;
    float *lg = rand_buf((size_t)rows * 64), *dist = rand_buf((size_t)rows * 4);
    float *dl = rand_buf((size_t)rows * 64);
    TIME_BEST(base, reps, memcpy(dl, lg, (size_t)rows * 64 * sizeof(float)));
    TIME_BEST(t, reps, dfl_forward(rows, 16, lg, 64, dist));
    report("dfl_forward 8x8400", t, (double)rows * 68 * 4, base);
    TIME_BEST(t, reps, dfl_backward(rows, 16, lg, 64, dist, dl));
    report("dfl_backward", t, (double)rows * 132 * 4, base);

    free(x), free(y), free(dy), free(dx), free(g), free(b), free(mean), free(istd), free(rm);
    free(rv), free(dg), free(ux), free(uy), free(uy2), free(udx), free(px), free(py), free(pdx),
        free(am);
    free(qkv), free(out), free(vout), free(dq), free(probs), free(ga), free(gb), free(gc), free(lg);
    free(dist), free(dl);
    return 0;
}
