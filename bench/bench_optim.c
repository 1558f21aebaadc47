/* Optimizer-step, EMA and clipping throughput on a yolov8n-sized flat buffer (3.16M floats), as
 * ratios to a plain saxpy pass over the same buffers measured here; and Newton-Schulz (MuSGD) on a
 * 256 x 2304 matrix (a 256x256x3x3 conv), fp32 and bf16-emulated. Usage: bench_optim [threads] */
#include "common/timer.h"
#include "kernels/optim.h"
#include "kernels/threads.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 3157200

static double best_of(int reps, void (*fn)(void *), void *arg) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_seconds();
        fn(arg);
        double t = now_seconds() - t0;
        if (t < best) best = t;
    }
    return best;
}

typedef struct {
    float *p, *g, *e;
    optimizer *o;
} ctx;

static void run_saxpy(void *a) {
    ctx *c = a;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < N; i++) c->p[i] += -0.01f * c->g[i];
}
static void run_step(void *a) {
    ctx *c = a;
    optim_step(c->o, c->p, c->g);
}
static void run_ema(void *a) {
    ctx *c = a;
    ema_blend(c->e, c->p, N, 0.5);
}
static void run_clip(void *a) {
    ctx *c = a;
    optim_clip_grad_norm(c->g, N, 1e30);
}
/* what the trainer runs after backward: the ops in turn, and fused (optim_update) */
static void run_in_turn(void *a) {
    ctx *c = a;
    optim_clip_grad_norm(c->g, N, 1e30);
    optim_step(c->o, c->p, c->g);
    memset(c->g, 0, N * sizeof *c->g);
    ema_blend(c->e, c->p, N, 0.5);
}
static void run_fused(void *a) {
    ctx *c = a;
    optim_update(c->o, c->p, c->g, 1e30, c->e, 0.5);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    kernels_set_threads(threads);
    float *p = malloc(N * sizeof *p), *g = malloc(N * sizeof *g), *e = malloc(N * sizeof *e);
    for (size_t i = 0; i < N; i++) {
        p[i] = 0.01f * (float)(i % 97);
        g[i] = 1e-3f * (float)((int)(i % 13) - 6);
        e[i] = p[i];
    }
    /* one tensor per 64k floats in groups 0..2, like a real table */
    int nt = (N + 65535) / 65536;
    optim_tensor *t = calloc((size_t)nt, sizeof *t);
    for (int i = 0; i < nt; i++) {
        size_t off = (size_t)i * 65536, n = off + 65536 <= N ? 65536 : N - off;
        t[i] =
            (optim_tensor){.offset = off, .numel = n, .ndim = 1, .shape = {(int)n}, .group = i % 3};
    }
    optim_group gr[OPTIM_MAX_GROUPS];
    ctx c = {p, g, e, NULL};
    printf("threads %d, %d floats (timings are noisy on a shared machine)\n", threads, N);
    double base = best_of(10, run_saxpy, &c);
    printf("  saxpy baseline      %7.2f ms  %6.2f GB/s (3 streams)\n", base * 1e3,
           3.0 * N * 4 / base / 1e9);
    const char *names[2] = {"SGD (nesterov)", "AdamW"};
    optim_kind kinds[2] = {OPTIM_SGD, OPTIM_ADAMW};
    for (int k = 0; k < 2; k++) {
        optimizer o;
        int ng = optim_default_groups(kinds[k], 0.01, 0.9, 5e-4, gr);
        if (optim_init(&o, kinds[k], N, t, nt, gr, ng, NULL, 0)) return 1;
        c.o = &o;
        double s = best_of(10, run_step, &c);
        printf("  %-19s %7.2f ms  %.2fx saxpy\n", names[k], s * 1e3, s / base);
        double t = best_of(10, run_in_turn, &c), f = best_of(10, run_fused, &c);
        printf("  %-5s clip+step+zero+EMA: in turn %7.2f ms, fused %7.2f ms (%.2fx)\n", names[k],
               t * 1e3, f * 1e3, t / f);
        optim_free(&o);
    }
    double s = best_of(10, run_ema, &c);
    printf("  EMA blend           %7.2f ms  %.2fx saxpy\n", s * 1e3, s / base);
    s = best_of(10, run_clip, &c);
    printf("  grad-norm clip      %7.2f ms  %.2fx saxpy\n", s * 1e3, s / base);

    enum { R = 256, C = 2304 };
    float *x = malloc((size_t)R * C * sizeof *x), *w = malloc(optim_ns5_work_floats(R, C) * 4);
    double flops = 5.0 * (2.0 * R * R * C * 2 + 2.0 * R * R * R);
    for (int bf = 0; bf < 2; bf++) {
        double best = 1e30;
        for (int r = 0; r < 3; r++) {
            for (size_t i = 0; i < (size_t)R * C; i++)
                x[i] = (float)((i * 2654435761u) % 1000) - 500;
            double t0 = now_seconds();
            optim_ns5(x, R, C, bf, w);
            double dt = now_seconds() - t0;
            if (dt < best) best = dt;
        }
        printf("  NS5 %dx%d %-5s   %7.2f ms  %6.2f GFLOP/s\n", R, C, bf ? "bf16" : "fp32",
               best * 1e3, flops / best / 1e9);
    }
    free(x);
    free(w);
    free(t);
    free(p);
    free(g);
    free(e);
    return 0;
}
