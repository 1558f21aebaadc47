/* Convolution throughput against this machine's measured fp32 FMA peak.
 * (a) peak: an AVX-512 (else AVX2) FMA loop with 12 independent accumulators, per thread count;
 * (b) forward and backward (dx + dw) of every distinct conv shape of yolov8n at imgsz 320, batch 8.
 * Usage: bench_conv [threads=1,2] [compare=false] [clock=wall|cpu] [mintime=0.15] [imgsz=320]
 *                   [batch=8] [peak_only=false] [precision=fp32|bf16] [pointwise=false]
 *   peak_only=true prints only the peaks (fp32 FMA, and bf16 dot products where the CPU has
 *   AVX512_BF16), one PEAK line per thread count.
 *   pointwise=true (AVX512_BF16 CPUs): every distinct 1x1 conv of yolov8n and yolo26n in bf16 with
 *   pre-converted inputs (as a model runs them), forward, dx =, dx += and dw += each, on oneDNN's
 *   convolution primitives, oneDNN's matmul and the AUTO choice, in GFLOP/s and % of the bf16 dot
 *   peak, with the sums of their times per implementation.
 *   compare=true also times the forced GEMM and forced oneDNN implementations of every shape.
 *   precision=bf16: CONV2D_BF16 convolutions from float inputs (each call converts x / dy, as the
 *   Detect heads' biased convs do), against the bf16 dot-product peak where the CPU has one. */
#include "common/kv.h"
#include "common/log.h"
#include "common/rng.h"
#include "common/timer.h"
#include "kernels/bf16.h"
#include "kernels/conv2d.h"
#include "kernels/gemm.h"
#include "kernels/threads.h"

#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- FMA peak ------------------------------------------------------------------------------- */

/* Independent accumulators kept in named registers (an array may stay in memory): 12 chains
 * cover FMA latency x pipes on current x86 (4 x 2 on Zen, 4 x 2 on Intel) and, with the two
 * constants, fit in AVX2's 16 ymm registers. */
#define FMA_ACC 12
#define FMA12(FMA)                                                                                 \
    a0 = FMA(a0, m, c), a1 = FMA(a1, m, c), a2 = FMA(a2, m, c), a3 = FMA(a3, m, c);                \
    a4 = FMA(a4, m, c), a5 = FMA(a5, m, c), a6 = FMA(a6, m, c), a7 = FMA(a7, m, c);                \
    a8 = FMA(a8, m, c), a9 = FMA(a9, m, c), a10 = FMA(a10, m, c), a11 = FMA(a11, m, c)

__attribute__((target("avx512f"))) static float fma_loop_avx512(long iters) {
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-6f);
    __m512 a0 = _mm512_set1_ps(0), a1 = _mm512_set1_ps(1), a2 = _mm512_set1_ps(2),
           a3 = _mm512_set1_ps(3), a4 = _mm512_set1_ps(4), a5 = _mm512_set1_ps(5),
           a6 = _mm512_set1_ps(6), a7 = _mm512_set1_ps(7), a8 = _mm512_set1_ps(8),
           a9 = _mm512_set1_ps(9), a10 = _mm512_set1_ps(10), a11 = _mm512_set1_ps(11);
    for (long i = 0; i < iters; i++) {
        FMA12(_mm512_fmadd_ps);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    return _mm512_reduce_add_ps(s);
}
/* The same with AVX512_BF16 dot products (vdpbf16ps: 32 bf16 products added pairwise into 16 fp32
 * lanes per instruction, 64 FLOP). */
__attribute__((target("avx512f,avx512bf16"))) static float bf16_loop(long iters) {
    const __m512bh m = (__m512bh)_mm512_set1_epi16(0x3f80), c = (__m512bh)_mm512_set1_epi16(0x3a80);
    __m512 a0 = _mm512_set1_ps(0), a1 = _mm512_set1_ps(1), a2 = _mm512_set1_ps(2),
           a3 = _mm512_set1_ps(3), a4 = _mm512_set1_ps(4), a5 = _mm512_set1_ps(5),
           a6 = _mm512_set1_ps(6), a7 = _mm512_set1_ps(7), a8 = _mm512_set1_ps(8),
           a9 = _mm512_set1_ps(9), a10 = _mm512_set1_ps(10), a11 = _mm512_set1_ps(11);
#define DPBF16(acc, x, y) _mm512_dpbf16_ps(acc, x, y)
    for (long i = 0; i < iters; i++) {
        FMA12(DPBF16);
    }
#undef DPBF16
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    return _mm512_reduce_add_ps(s);
}
__attribute__((target("avx2,fma"))) static float fma_loop_avx2(long iters) {
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-6f);
    __m256 a0 = _mm256_set1_ps(0), a1 = _mm256_set1_ps(1), a2 = _mm256_set1_ps(2),
           a3 = _mm256_set1_ps(3), a4 = _mm256_set1_ps(4), a5 = _mm256_set1_ps(5),
           a6 = _mm256_set1_ps(6), a7 = _mm256_set1_ps(7), a8 = _mm256_set1_ps(8),
           a9 = _mm256_set1_ps(9), a10 = _mm256_set1_ps(10), a11 = _mm256_set1_ps(11);
    for (long i = 0; i < iters; i++) {
        FMA12(_mm256_fmadd_ps);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float t[8], r = 0;
    _mm256_storeu_ps(t, s);
    for (int k = 0; k < 8; k++) r += t[k];
    return r;
}

/* clock=cpu: process CPU time, which leaves out the time other people's jobs hold our core (for
 * threads=1; with more threads it also counts OpenMP's spin-waiting, so it is divided by the
 * thread count and is only a rough guide). */
static int g_cpu_clock, g_threads = 1;
static conv2d_prec g_prec = CONV2D_FP32;
static double tick(void) {
    if (!g_cpu_clock) return now_seconds();
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return ((double)t.tv_sec + 1e-9 * (double)t.tv_nsec) / g_threads;
}

static volatile float g_sink;

/* GFLOP/s of `threads` threads each running the FMA loop (best of 5); avx512 == 2: the bf16 dot
 * product loop. */
static double fma_peak(int threads, int avx512) {
    const long iters = 10 * 1000 * 1000;
    const int lanes = avx512 == 2 ? 32 : avx512 ? 16 : 8;
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = tick();
#pragma omp parallel num_threads(threads)
        {
            float s = avx512 == 2 ? bf16_loop(iters)
                      : avx512    ? fma_loop_avx512(iters)
                                  : fma_loop_avx2(iters);
#pragma omp atomic
            g_sink += s;
        }
        double t = tick() - t0;
        double gf = (double)threads * iters * FMA_ACC * lanes * 2 / t * 1e-9;
        if (gf > best) best = gf;
    }
    return best;
}

/* ---- yolov8n conv shapes -------------------------------------------------------------------- */

typedef struct layer {
    const char *name;
    int div; /* input size = imgsz / div */
    int cin, cout, k, s, g;
    int bias; /* Detect's last 1x1 convs have a bias */
} layer;

/* Every conv of yolov8n (architecture note 3.1 and 4.1, nc = 80), in model order, duplicates
 * included (they are folded below and counted). Extra rows at the end: yolo11n's depthwise. */
static const layer LAYERS[] = {
    {"0 Conv stem*", 1, 3, 16, 3, 2, 1, 0},      {"1 Conv", 2, 16, 32, 3, 2, 1, 0},
    {"2 C2f.cv1", 4, 32, 32, 1, 1, 1, 0},        {"2 C2f.m.cv1/cv2", 4, 16, 16, 3, 1, 1, 0},
    {"2 C2f.m.cv1/cv2", 4, 16, 16, 3, 1, 1, 0},  {"2 C2f.cv2", 4, 48, 32, 1, 1, 1, 0},
    {"3 Conv", 4, 32, 64, 3, 2, 1, 0},           {"4 C2f.cv1", 8, 64, 64, 1, 1, 1, 0},
    {"4/15 C2f.m", 8, 32, 32, 3, 1, 1, 0},       {"4/15 C2f.m", 8, 32, 32, 3, 1, 1, 0},
    {"4/15 C2f.m", 8, 32, 32, 3, 1, 1, 0},       {"4/15 C2f.m", 8, 32, 32, 3, 1, 1, 0},
    {"4 C2f.cv2", 8, 128, 64, 1, 1, 1, 0},       {"5 Conv", 8, 64, 128, 3, 2, 1, 0},
    {"6 C2f.cv1", 16, 128, 128, 1, 1, 1, 0},     {"6/12/18 C2f.m", 16, 64, 64, 3, 1, 1, 0},
    {"6/12/18 C2f.m", 16, 64, 64, 3, 1, 1, 0},   {"6/12/18 C2f.m", 16, 64, 64, 3, 1, 1, 0},
    {"6/12/18 C2f.m", 16, 64, 64, 3, 1, 1, 0},   {"6 C2f.cv2", 16, 256, 128, 1, 1, 1, 0},
    {"7 Conv", 16, 128, 256, 3, 2, 1, 0},        {"8 C2f.cv1", 32, 256, 256, 1, 1, 1, 0},
    {"8/21 C2f.m", 32, 128, 128, 3, 1, 1, 0},    {"8/21 C2f.m", 32, 128, 128, 3, 1, 1, 0},
    {"8/21 C2f.cv2", 32, 384, 256, 1, 1, 1, 0},  {"9 SPPF.cv1", 32, 256, 128, 1, 1, 1, 0},
    {"9 SPPF.cv2", 32, 512, 256, 1, 1, 1, 0},    {"12 C2f.cv1", 16, 384, 128, 1, 1, 1, 0},
    {"6/12/18 C2f.m", 16, 64, 64, 3, 1, 1, 0},   {"6/12/18 C2f.m", 16, 64, 64, 3, 1, 1, 0},
    {"12/18 C2f.cv2", 16, 192, 128, 1, 1, 1, 0}, {"15 C2f.cv1", 8, 192, 64, 1, 1, 1, 0},
    {"4/15 C2f.m", 8, 32, 32, 3, 1, 1, 0},       {"4/15 C2f.m", 8, 32, 32, 3, 1, 1, 0},
    {"15 C2f.cv2", 8, 96, 64, 1, 1, 1, 0},       {"16 Conv", 8, 64, 64, 3, 2, 1, 0},
    {"18 C2f.cv1", 16, 192, 128, 1, 1, 1, 0},    {"6/12/18 C2f.m", 16, 64, 64, 3, 1, 1, 0},
    {"6/12/18 C2f.m", 16, 64, 64, 3, 1, 1, 0},   {"12/18 C2f.cv2", 16, 192, 128, 1, 1, 1, 0},
    {"19 Conv", 16, 128, 128, 3, 2, 1, 0},       {"21 C2f.cv1", 32, 384, 256, 1, 1, 1, 0},
    {"8/21 C2f.m", 32, 128, 128, 3, 1, 1, 0},    {"8/21 C2f.m", 32, 128, 128, 3, 1, 1, 0},
    {"8/21 C2f.cv2", 32, 384, 256, 1, 1, 1, 0},  {"22 P3 box.0/1", 8, 64, 64, 3, 1, 1, 0},
    {"22 P3 box.0/1", 8, 64, 64, 3, 1, 1, 0},    {"22 P3 box.2", 8, 64, 64, 1, 1, 1, 1},
    {"22 P3 cls.0", 8, 64, 80, 3, 1, 1, 0},      {"22 P3 cls.1", 8, 80, 80, 3, 1, 1, 0},
    {"22 P3 cls.2", 8, 80, 80, 1, 1, 1, 1},      {"22 P4 box.0", 16, 128, 64, 3, 1, 1, 0},
    {"6/12/18 C2f.m", 16, 64, 64, 3, 1, 1, 0}, /* P4 box.1 */
    {"22 P4 box.2", 16, 64, 64, 1, 1, 1, 1},     {"22 P4 cls.0", 16, 128, 80, 3, 1, 1, 0},
    {"22 P4 cls.1", 16, 80, 80, 3, 1, 1, 0},     {"22 P4 cls.2", 16, 80, 80, 1, 1, 1, 1},
    {"22 P5 box.0", 32, 256, 64, 3, 1, 1, 0},    {"22 P5 box.1", 32, 64, 64, 3, 1, 1, 0},
    {"22 P5 box.2", 32, 64, 64, 1, 1, 1, 1},     {"22 P5 cls.0", 32, 256, 80, 3, 1, 1, 0},
    {"22 P5 cls.1", 32, 80, 80, 3, 1, 1, 0},     {"22 P5 cls.2", 32, 80, 80, 1, 1, 1, 1},
};
#define NLAYERS_V8N (sizeof LAYERS / sizeof *LAYERS)
static const layer EXTRA[] = {
    {"x yolo11n DWConv P3", 8, 64, 64, 3, 1, 64, 0},
    {"x yolo11n DWConv P4", 16, 128, 128, 3, 1, 128, 0},
    {"x yolo11n DWConv P5", 32, 256, 256, 3, 1, 256, 0},
};

typedef struct timing {
    double fwd_ms, bwd_ms, bd_ms, bw_ms; /* bd/bw: dx only, dw only (when asked) */
} timing;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Fastest of repeated single calls of fn(arg) (other people's jobs only ever slow a call down):
 * at least 3, until mintime seconds are spent (default 0.15), at most 100. */
#define MAX_REPS 100
static double g_mintime = 0.15;
static double fastest_ms(void (*fn)(void *), void *arg) {
    double t[MAX_REPS], spent = 0;
    int n = 0;
    for (int warm = 0; warm < 2; warm++) fn(arg);
    while (n < MAX_REPS && (n < 3 || spent < g_mintime)) {
        double t0 = tick();
        fn(arg);
        t[n] = tick() - t0;
        spent += t[n++];
    }
    qsort(t, n, sizeof *t, cmp_double);
    return t[0] * 1e3;
}

/* op: 0 forward, 1 backward dx + dw, 2 dx only, 3 dw only (default context). */
typedef struct conv_call {
    const conv2d_desc *d;
    int op;
    const float *x, *w, *b;
    float *y, *dx, *dw, *db, *ws;
} conv_call;
static void run_conv_call(void *arg) {
    const conv_call *c = arg;
    if (c->op)
        conv2d_backward(c->d, c->x, c->w, c->y, c->op == 3 ? NULL : c->dx,
                        c->op == 2 ? NULL : c->dw, c->db, c->ws);
    else
        conv2d_forward(c->d, c->x, c->w, c->b, c->y, c->ws);
}
static double time_call(const conv2d_desc *d, int op, const float *x, const float *w,
                        const float *b, float *y, float *dx, float *dw, float *db, float *ws) {
    conv_call c = {d, op, x, w, b, y, dx, dw, db, ws};
    return fastest_ms(run_conv_call, &c);
}

static float *rand_buf(size_t n, uint64_t key) {
    float *p = xmalloc(n * sizeof *p);
    rng r = rng_keyed(42, key, n);
    for (size_t i = 0; i < n; i++) p[i] = (float)rng_range(&r, -1.0, 1.0);
    return p;
}

static timing time_shape(const conv2d_desc *d, int bias, int need_dx, conv2d_impl impl, int split,
                         const char **path) {
    conv2d_set_impl(impl);
    size_t nx = (size_t)d->n * d->h * d->w * d->cin, ny = (size_t)d->n * d->oh * d->ow * d->cout;
    size_t nw = (size_t)d->cout * d->kh * d->kw * (d->cin / d->groups);
    float *x = rand_buf(nx, 1), *w = rand_buf(nw, 2), *b = rand_buf(d->cout, 3);
    float *y = rand_buf(ny, 4), *dx = xcalloc(nx, 4), *dw = xcalloc(nw, 4),
          *db = xcalloc(d->cout, 4);
    float *ws = xmalloc((conv2d_workspace_floats(d) + 1) * sizeof(float));
    *path = conv2d_path(d);
    timing t = {0};
    t.fwd_ms = time_call(d, 0, x, w, bias ? b : NULL, y, dx, dw, bias ? db : NULL, ws);
    t.bwd_ms =
        time_call(d, need_dx ? 1 : 3, x, w, bias ? b : NULL, y, dx, dw, bias ? db : NULL, ws);
    if (split) {
        t.bd_ms = time_call(d, 2, x, w, NULL, y, dx, dw, NULL, ws);
        t.bw_ms = time_call(d, 3, x, w, NULL, y, dx, dw, NULL, ws);
    }
    free(x), free(w), free(b), free(y), free(dx), free(dw), free(db), free(ws);
    conv2d_set_impl(CONV2D_AUTO);
    return t;
}

static int same_layer(const layer *a, const layer *b) {
    return a->div == b->div && a->cin == b->cin && a->cout == b->cout && a->k == b->k &&
           a->s == b->s && a->g == b->g && a->bias == b->bias;
}

static void run_threads(int threads, int avx512, int compare, int imgsz, int batch) {
    kernels_set_threads(threads);
    g_threads = threads;
    /* bf16: the dot-product peak where the CPU has AVX512_BF16 */
    int bf16_peak = g_prec == CONV2D_BF16 && avx512 && __builtin_cpu_supports("avx512bf16");
    double peak = fma_peak(threads, bf16_peak ? 2 : avx512);
    printf("\n== %d thread%s: measured FMA peak %.1f GFLOP/s (%.1f per thread), gemm: %s\n",
           threads, threads > 1 ? "s" : "", peak, peak / threads, gemm_backend());
    printf("%-20s %4s %4s %4s %2s %4s %3s | %7s %6s %5s | %7s %6s %5s |", "layer (n)", "in", "cin",
           "cout", "k", "s", "g", "fwd ms", "GF/s", "%pk", "bwd ms", "GF/s", "%pk");
    if (compare) printf("  gemm: fwd    dx     dw  onednn: fwd  dx     dw   |");
    printf(" path\n");
    double total_ms = 0, total_gflop = 0;
    size_t nall = NLAYERS_V8N + sizeof EXTRA / sizeof *EXTRA;
    for (size_t i = 0; i < nall; i++) {
        const layer *L = i < NLAYERS_V8N ? &LAYERS[i] : &EXTRA[i - NLAYERS_V8N];
        int count = 0, seen = 0;
        if (i < NLAYERS_V8N) {
            for (size_t j = 0; j < NLAYERS_V8N; j++) {
                if (same_layer(&LAYERS[j], L)) count++;
                if (j < i && same_layer(&LAYERS[j], L)) seen = 1;
            }
            if (seen) continue;
        }
        int hin = imgsz / L->div;
        int need_dx = L->cin != 3; /* the stem's input is the image: training needs no dx */
        conv2d_desc d = conv2d_make(batch, hin, hin, L->cin, L->cout, L->k, L->s, L->k / 2, L->g);
        d.prec = g_prec;
        const char *path;
        timing t = time_shape(&d, L->bias, need_dx, CONV2D_AUTO, 0, &path);
        char pathbuf[256];
        snprintf(pathbuf, sizeof pathbuf, "%s", path);
        double gf = 2 * conv2d_macs(&d) * 1e-9;
        double bgf = need_dx ? 2 * gf : gf;
        double ff = gf / (t.fwd_ms * 1e-3), fb = bgf / (t.bwd_ms * 1e-3);
        char name[32];
        snprintf(name, sizeof name, "%s (%d)", L->name, count);
        printf("%-20s %4d %4d %4d %2d %4d %3d | %7.3f %6.1f %4.0f%% | %7.3f %6.1f %4.0f%% |", name,
               hin, L->cin, L->cout, L->k, L->s, L->g, t.fwd_ms, ff, 100 * ff / peak, t.bwd_ms, fb,
               100 * fb / peak);
        if (compare) {
            const char *p1, *p2;
            timing tg = time_shape(&d, L->bias, need_dx, CONV2D_GEMM, 1, &p1);
            timing to = time_shape(&d, L->bias, need_dx, CONV2D_ONEDNN, 1, &p2);
            printf(" %6.2f %6.2f %6.2f  %6.2f %6.2f %6.2f |", tg.fwd_ms, tg.bd_ms, tg.bw_ms,
                   to.fwd_ms, to.bd_ms, to.bw_ms);
        }
        printf(" %s\n", pathbuf);
        if (i < NLAYERS_V8N) {
            total_ms += count * (t.fwd_ms + t.bwd_ms);
            total_gflop += count * (gf + bgf);
        }
    }
    printf("yolov8n all convs (with repeats), fwd + bwd(dx+dw), batch %d @ %d: %.1f ms, %.1f "
           "GFLOP, %.1f GFLOP/s = %.0f%% of peak\n",
           batch, imgsz, total_ms, total_gflop, total_gflop / (total_ms * 1e-3),
           100 * total_gflop / (total_ms * 1e-3) / peak);
}

/* ---- pointwise=true: the 1x1 stride-1 bf16 convs, per implementation --------------------------
 */

/* The distinct 1x1 convs of yolov8n and yolo26n (nc 80): input size imgsz / div, in which model.
 * yolo26n's C3k / PSA / head ones from its yaml (scale n: width 0.25, depth 0.5). */
typedef struct pw_shape {
    const char *where;
    int div, cin, cout;
} pw_shape;
static const pw_shape PW_SHAPES[] = {
    {"both C2f/C3k2.cv1", 4, 32, 32},
    {"v8n C2f.cv2", 4, 48, 32},
    {"26n C3k2.cv2", 4, 48, 64},
    {"both cv1, head", 8, 64, 64},
    {"v8n C2f.cv2", 8, 128, 64},
    {"both C2f.cv2", 8, 96, 64},
    {"26n C3k2.cv2", 8, 96, 128},
    {"v8n C2f.cv1", 8, 192, 64},
    {"26n C3k2.cv1", 8, 256, 64},
    {"26n C3k", 8, 32, 16},
    {"26n C3k", 8, 32, 32},
    {"v8n head cls.2", 8, 80, 80},
    {"26n head cls", 8, 64, 80},
    {"both cv1", 16, 128, 128},
    {"v8n C2f.cv2", 16, 256, 128},
    {"both cv2", 16, 192, 128},
    {"both cv1", 16, 384, 128},
    {"26n C3k", 16, 64, 32},
    {"26n C3k, head", 16, 64, 64},
    {"26n head cls", 16, 128, 80},
    {"both cv1", 32, 256, 256},
    {"both cv2", 32, 384, 256},
    {"both SPPF.cv1", 32, 256, 128},
    {"both SPPF.cv2", 32, 512, 256},
    {"26n C3k, PSA", 32, 128, 128},
    {"26n C3k", 32, 128, 64},
    {"26n PSA qkv/ffn", 32, 128, 256},
    {"26n head cls", 32, 256, 80},
};
#define PW_NSHAPES (sizeof PW_SHAPES / sizeof *PW_SHAPES)

/* The ops as a model runs them: bf16 inputs converted beforehand (its shadow slots).
 * op: 0 forward, 1 dx = (backward-data writing), 2 dx +=, 3 dw +=. */
typedef struct pw_call {
    conv2d_ctx *ctx;
    const conv2d_desc *d;
    int op;
    const uint16_t *xb, *dyb;
    const float *w;
    float *y, *dx, *dw, *ws;
} pw_call;
static void run_pw_call(void *arg) {
    const pw_call *c = arg;
    if (c->op == 0)
        conv2d_ctx_forward_bf16(c->ctx, c->d, c->xb, c->w, NULL, c->y, c->ws);
    else if (c->op < 3)
        conv2d_ctx_backward_bf16(c->ctx, c->d, NULL, c->w, c->dyb, c->dx, c->op == 1, NULL, c->ws);
    else
        conv2d_ctx_backward_bf16(c->ctx, c->d, c->xb, NULL, c->dyb, NULL, 0, c->dw, c->ws);
}

#define PW_IMPLS 3
static const conv2d_impl PW_IMPL[PW_IMPLS] = {CONV2D_ONEDNN, CONV2D_MATMUL, CONV2D_AUTO};
static const char *const PW_IMPL_NAME[PW_IMPLS] = {"onednn conv", "onednn matmul", "auto"};

static void run_pointwise(int threads, int imgsz, int batch) {
    kernels_set_threads(threads);
    g_threads = threads;
    double peak = fma_peak(threads, 2);
    printf("\n== %d thread%s, imgsz %d, batch %d: measured bf16 dot peak %.1f GFLOP/s\n", threads,
           threads > 1 ? "s" : "", imgsz, batch, peak);
    printf("%-18s %6s %4s %4s %-13s | %13s | %13s | %13s | %13s | path\n", "1x1 conv", "rows",
           "cin", "cout", "impl", "fwd GF/s %pk", "dx= GF/s %pk", "dx+= GF/s %pk", "dw+= GF/s %pk");
    double total[PW_IMPLS][4] = {{0}};
    conv2d_ctx *ctx[PW_IMPLS];
    for (int k = 0; k < PW_IMPLS; k++) ctx[k] = conv2d_ctx_create(PW_IMPL[k]);
    for (size_t i = 0; i < PW_NSHAPES; i++) {
        const pw_shape *S = &PW_SHAPES[i];
        int hin = imgsz / S->div;
        conv2d_desc d = conv2d_make(batch, hin, hin, S->cin, S->cout, 1, 1, 0, 1);
        d.prec = CONV2D_BF16;
        size_t nx = conv2d_x_elems(&d), ny = conv2d_y_elems(&d), nw = conv2d_w_elems(&d);
        float *x = rand_buf(nx, 1), *w = rand_buf(nw, 2), *dy = rand_buf(ny, 3);
        float *y = xcalloc(ny, 4), *dx = xcalloc(nx, 4), *dw = xcalloc(nw, 4);
        uint16_t *xb = xmalloc(nx * 2), *dyb = xmalloc(ny * 2);
        bf16_from_f32(nx, x, xb);
        bf16_from_f32(ny, dy, dyb);
        double gf = 2 * conv2d_macs(&d) * 1e-9;
        for (int k = 0; k < PW_IMPLS; k++) {
            float *ws = xmalloc((conv2d_ctx_workspace_floats(ctx[k], &d) + 1) * sizeof(float));
            printf("%-18s %6zu %4d %4d %-13s |", k ? "" : S->where, conv2d_y_elems(&d) / S->cout,
                   S->cin, S->cout, PW_IMPL_NAME[k]);
            for (int op = 0; op < 4; op++) {
                pw_call c = {ctx[k], &d, op, xb, dyb, w, y, dx, dw, ws};
                double ms = fastest_ms(run_pw_call, &c), r = gf / (ms * 1e-3);
                total[k][op] += ms;
                printf(" %6.1f %4.0f%% |", r, 100 * r / peak);
            }
            printf(" %s\n", conv2d_ctx_path(ctx[k], &d));
            free(ws);
        }
        free(x), free(w), free(dy), free(y), free(dx), free(dw), free(xb), free(dyb);
    }
    printf("sum over the shapes above (each once), ms:        fwd      dx=     dx+=     dw+=\n");
    for (int k = 0; k < PW_IMPLS; k++) {
        printf("  %-13s %34.3f %8.3f %8.3f %8.3f", PW_IMPL_NAME[k], total[k][0], total[k][1],
               total[k][2], total[k][3]);
        if (k)
            printf("   (x%.2f %.2f %.2f %.2f of onednn conv's time)", total[k][0] / total[0][0],
                   total[k][1] / total[0][1], total[k][2] / total[0][2], total[k][3] / total[0][3]);
        printf("\n");
        conv2d_ctx_destroy(ctx[k]);
    }
}

int main(int argc, char **argv) {
    log_set_program("bench_conv");
    kv_args a;
    char err[256];
    const char *threads_s;
    bool compare, peak_only, pointwise;
    const char *clock_s, *prec_s;
    long imgsz, batch;
    if (kv_parse(argc - 1, argv + 1, &a, err, sizeof err) ||
        kv_get_str(&a, "threads", "1,2", &threads_s) ||
        kv_get_bool(&a, "compare", false, &compare, err, sizeof err) ||
        kv_get_bool(&a, "peak_only", false, &peak_only, err, sizeof err) ||
        kv_get_bool(&a, "pointwise", false, &pointwise, err, sizeof err) ||
        kv_get_str(&a, "clock", "wall", &clock_s) ||
        kv_get_double(&a, "mintime", 0.15, &g_mintime, err, sizeof err) ||
        kv_get_long(&a, "imgsz", 320, &imgsz, err, sizeof err) ||
        kv_get_long(&a, "batch", 8, &batch, err, sizeof err) ||
        kv_get_str(&a, "precision", "fp32", &prec_s) || kv_check_unused(&a, err, sizeof err)) {
        log_error("%s (usage: bench_conv [threads=1,2] [compare=false] [clock=wall] [imgsz=320] "
                  "[batch=8])",
                  err);
        return 2;
    }
    if (strcmp(clock_s, "wall") && strcmp(clock_s, "cpu")) {
        log_error("clock=%s: expected wall or cpu", clock_s);
        return 2;
    }
    g_cpu_clock = !strcmp(clock_s, "cpu");
    if (strcmp(prec_s, "fp32") && strcmp(prec_s, "bf16")) {
        log_error("precision=%s: expected fp32 or bf16", prec_s);
        return 2;
    }
    g_prec = strcmp(prec_s, "bf16") ? CONV2D_FP32 : CONV2D_BF16;
    if (imgsz < 32 || imgsz % 32 || batch < 1) {
        log_error("imgsz=%ld batch=%ld: imgsz must be a positive multiple of 32, batch >= 1", imgsz,
                  batch);
        return 2;
    }
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f");
    if (peak_only) { /* one line per thread count, for bench/vs_ultralytics.sh */
        int bf16 = avx512 && __builtin_cpu_supports("avx512bf16");
        char pb[64];
        snprintf(pb, sizeof pb, "%s", threads_s);
        for (char *tok = strtok(pb, ","); tok; tok = strtok(NULL, ",")) {
            long t;
            if (!parse_long(tok, &t) || t < 1 || t > 256) {
                log_error("threads=%s: expected a comma-separated list of thread counts",
                          threads_s);
                return 2;
            }
            g_threads = (int)t;
            printf("PEAK threads %ld fp32_fma %s %.1f GFLOP/s", t, avx512 ? "AVX-512" : "AVX2",
                   fma_peak((int)t, avx512));
            if (bf16) printf(" bf16_dot AVX512_BF16 %.1f GFLOP/s", fma_peak((int)t, 2));
            printf("\n");
        }
        kv_free(&a);
        return 0;
    }
    if (pointwise && !(avx512 && __builtin_cpu_supports("avx512bf16"))) {
        log_error("pointwise=true needs a CPU with AVX512_BF16");
        return 2;
    }
    if (pointwise) {
        printf("bench_conv pointwise: 1x1 bf16 convs, NHWC, bf16 inputs converted beforehand; "
               "%%pk = GFLOP/s / measured bf16 dot peak for the same thread count. Timings: "
               "fastest of several calls, %s clock; the machine is shared, so expect noise.\n",
               g_cpu_clock ? "process CPU time / threads" : "wall");
    } else {
        printf("bench_conv: yolov8n convs, imgsz %ld, batch %ld, %s NHWC; peak loop %s x %d "
               "accumulators. Timings: fastest of several calls, %s clock; the machine is shared, "
               "so expect noise.\n",
               imgsz, batch, prec_s, avx512 ? "AVX-512" : "AVX2", FMA_ACC,
               g_cpu_clock ? "process CPU time / threads" : "wall");
        printf("%%pk = GFLOP/s / measured FMA peak for the same thread count; bwd = dx + dw (+ "
               "dbias), 2x the forward FLOPs. (n) = occurrences in the model. * stem: bwd = dw "
               "only (its input is the image; training needs no dx).\n");
    }
    char buf[64];
    snprintf(buf, sizeof buf, "%s", threads_s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        long t;
        if (!parse_long(tok, &t) || t < 1 || t > 256) {
            log_error("threads=%s: expected a comma-separated list of thread counts", threads_s);
            return 2;
        }
        if (pointwise)
            run_pointwise((int)t, (int)imgsz, (int)batch);
        else
            run_threads((int)t, avx512, compare, (int)imgsz, (int)batch);
    }
    kv_free(&a);
    conv2d_cache_clear();
    return 0;
}
