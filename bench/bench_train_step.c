/* One training step of a model at a few image sizes: forward in train mode, the detection loss on
 * synthetic targets (as the trainer computes it, on the host) and backward; no optimizer. Prints
 * images/s (best step and mean), the share of time in convolutions, the per-op-kind split and the
 * ratio to a forward-only pass measured in the same process (baseline), and one machine-readable
 * line per size for bench/vs_ultralytics.sh:
 *   RESULT <model> <imgsz> <batch> <threads> <best img/s> <mean img/s> <cpu share> <precision>
 * (cpu share: process CPU time / (wall time x threads) over the timed steps; well below 1 means
 * the cores were busy with something else or the threads waited).
 *
 * The targets are the ones bench/ul_fwdbwd.py gives Ultralytics: image i holds 2 + i % 4 boxes
 * from one linear congruential sequence (synthetic_targets below), classes j % 3.
 *
 * Usage: bench_train_step [model=yolov8n.yaml] [imgsz=160,320] [batch=16] [steps=3] [threads=1]
 *                         [loss=true] [nc=3] [clock=wall|cpu] [precision=fp32|bf16|auto]
 *                         [fuse=true]
 *   threads=0 uses every core OpenMP reports. loss=false backpropagates a random head gradient.
 *   clock=cpu times steps by process CPU time / threads (for 1 thread on a shared machine).
 *   precision=bf16: mixed-precision convolutions (model_set_conv_precision), as amp=bf16 trains;
 *   auto: what amp=True (the trainer's default) trains with on this CPU: bf16 where it multiplies
 *   bf16 natively (bf16_cpu_has_native), else fp32. fuse=false: bf16 conversions as separate
 *   passes (model_set_bf16_fusion; the same bits), for before/after timings
 * (bench/bf16_fuse_ab.sh).
 */
#include "common/kv.h"
#include "common/log.h"
#include "common/rng.h"
#include "common/timer.h"
#include "common/ultralytics_version.h"
#include "kernels/bf16.h"
#include "kernels/detloss.h"
#include "kernels/threads.h"
#include "worker/allreduce_mpi.h"
#include "worker/model.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Rows (batch_idx, cls, cx, cy, w, h), normalised; returns the count (at most 5 per image). The
 * same sequence as bench/ul_fwdbwd.py's targets(): s = (s * 1103515245 + 12345) mod 2^31 from
 * s = 12345. */
static int synthetic_targets(int batch, float *t) {
    unsigned long long s = 12345;
    int n = 0;
#define NEXT() (s = (s * 1103515245ULL + 12345ULL) % 2147483648ULL, (double)s / 2147483648.0)
    for (int i = 0; i < batch; i++)
        for (int j = 0; j < 2 + i % 4; j++, n++) {
            double w = 0.1 + 0.3 * NEXT(), h = 0.1 + 0.3 * NEXT();
            double cx = w / 2 + (1 - w) * NEXT(), cy = h / 2 + (1 - h) * NEXT();
            float *r = t + n * 6;
            r[0] = (float)i, r[1] = (float)(j % 3), r[2] = (float)cx, r[3] = (float)cy;
            r[4] = (float)w, r[5] = (float)h;
        }
#undef NEXT
    return n;
}

typedef struct bench_cfg {
    int batch, steps, threads, loss, cpu_clock, nc;
    const char *prec; /* fp32 or bf16 */
} bench_cfg;

typedef struct step_ctx {
    model *m;
    detloss_ctx *loss;
    detloss_hyp h_o2m, h_o2o;
    float *dout[2];
    float *targets;
    int ntargets, imgsz, batch;
} step_ctx;

/* Forward, loss (or the fixed random head gradient) and backward of one batch. */
static void train_step(step_ctx *s, const uint8_t *img, bool loss) {
    model *m = s->m;
    model_zero_grad(m);
    model_forward_u8(m, img, true);
    if (loss) {
        int A = model_num_anchors(m), B = s->batch;
        float S = (float)s->imgsz;
        detloss_out o;
        if (model_num_branches(m) == 2)
            detloss_e2e(s->loss, &s->h_o2m, &s->h_o2o, DETLOSS_E2E_O2M_INIT, DETLOSS_E2E_O2O_INIT,
                        B, A, model_output_host(m, 0), model_output_host(m, 1),
                        model_anchor_points(m), model_anchor_strides(m), s->ntargets, s->targets, S,
                        S, s->dout[0], s->dout[1], &o, NULL);
        else
            detloss_branch(s->loss, &s->h_o2m, B, A, model_output_host(m, 0),
                           model_anchor_points(m), model_anchor_strides(m), s->ntargets, s->targets,
                           S, S, NULL, s->dout[0], &o);
    }
    model_backward(m, s->dout[0], model_num_branches(m) > 1 ? s->dout[1] : NULL);
}

static int run_size(step_ctx *s, const bench_cfg *c, int imgsz) {
    model *m = s->m;
    char err[512];
    if (model_plan(m, c->batch, imgsz, imgsz, err, sizeof err)) {
        log_error("%s", err);
        return 1;
    }
    s->imgsz = imgsz;
    s->batch = c->batch;
    size_t nimg = (size_t)c->batch * imgsz * imgsz * 3;
    size_t nout = (size_t)c->batch * model_num_anchors(m) * model_out_channels(m);
    uint8_t *img = xmalloc(nimg);
    rng g = rng_keyed(1, (uint64_t)imgsz, 0);
    for (size_t i = 0; i < nimg; i++) img[i] = (uint8_t)(rng_uniform(&g) * 256);
    for (int b = 0; b < 2; b++) {
        s->dout[b] = xmalloc(nout * sizeof *s->dout[b]);
        for (size_t i = 0; i < nout; i++) s->dout[b][i] = (float)(1e-3 * rng_normal(&g));
    }
    /* warm-up (oneDNN primitive creation, page faults) */
    for (int w = 0; w < 2; w++) train_step(s, img, c->loss);
    double tf = 1e30;
    for (int k = 0; k < 2; k++) {
        double w0 = now_seconds(), c0 = cpu_seconds();
        model_forward_u8(m, img, true);
        double t = c->cpu_clock ? (cpu_seconds() - c0) / c->threads : now_seconds() - w0;
        if (t < tf) tf = t;
    }
    double best = 1e30, sum = 0, conv = 0, other = 0, wall = 0, cpu = 0;
    for (int k = 0; k < c->steps; k++) {
        double w0 = now_seconds(), c0 = cpu_seconds();
        train_step(s, img, c->loss);
        double dw = now_seconds() - w0, dc = cpu_seconds() - c0;
        wall += dw;
        cpu += dc;
        double t = c->cpu_clock ? dc / c->threads : dw;
        sum += t;
        if (t < best) best = t;
        double cv, o;
        model_timing(m, &cv, &o);
        conv += cv;
        other += o;
    }
    double best_ips = c->batch / best, mean_ips = c->batch * c->steps / sum;
    double share = cpu / (wall * c->threads);
    printf("%-8s imgsz %4d batch %3d: train step%s %7.2f images/s best, %7.2f mean (%.3f s "
           "best step); forward only %7.2f images/s; step/forward %.2fx; conv %.0f%% / other "
           "%.0f%% of the step; CPU share %.2f; arena %.0f MB\n",
           model_config(m)->name, imgsz, c->batch, c->loss ? " with loss" : "", best_ips, mean_ips,
           best, c->batch / tf, best / tf, 100 * conv / (conv + other),
           100 * other / (conv + other), share, model_arena_bytes(m) / 1048576.0);
    char kinds[512];
    printf("  last step by op kind (s, forward/backward): %s\n",
           model_timing_text(m, kinds, sizeof kinds));
    printf("RESULT %s %d %d %d %.3f %.3f %.3f %s\n", model_config(m)->name, imgsz, c->batch,
           c->threads, best_ips, mean_ips, share, c->prec);
    fflush(stdout);
    free(img);
    free(s->dout[0]);
    free(s->dout[1]);
    return 0;
}

int main(int argc, char **argv) {
    log_set_program("bench_train_step");
    allreduce_tune_malloc(); /* as the trainer: large buffers stay mapped between steps */
    kv_args a;
    char err[512];
    if (kv_parse(argc - 1, argv + 1, &a, err, sizeof err)) {
        log_error("%s", err);
        return 2;
    }
    const char *spec, *sizes, *clock, *prec;
    long batch, steps, threads, nc;
    bool loss, fuse;
    if (kv_get_str(&a, "model", "yolov8n.yaml", &spec) ||
        kv_get_str(&a, "imgsz", "160,320", &sizes) ||
        kv_get_long(&a, "batch", 16, &batch, err, sizeof err) ||
        kv_get_long(&a, "steps", 3, &steps, err, sizeof err) ||
        kv_get_long(&a, "threads", 1, &threads, err, sizeof err) ||
        kv_get_long(&a, "nc", 3, &nc, err, sizeof err) ||
        kv_get_bool(&a, "loss", true, &loss, err, sizeof err) ||
        kv_get_bool(&a, "fuse", true, &fuse, err, sizeof err) ||
        kv_get_str(&a, "clock", "wall", &clock) || kv_get_str(&a, "precision", "fp32", &prec) ||
        kv_check_unused(&a, err, sizeof err)) {
        log_error("%s", err);
        return 2;
    }
    if (strcmp(clock, "wall") && strcmp(clock, "cpu")) {
        log_error("clock=%s: expected wall or cpu", clock);
        return 2;
    }
    if (!strcmp(prec, "auto")) prec = bf16_cpu_has_native() ? "bf16" : "fp32";
    if (strcmp(prec, "fp32") && strcmp(prec, "bf16")) {
        log_error("precision=%s: expected fp32, bf16 or auto", prec);
        return 2;
    }
    if (batch < 1 || steps < 1 || nc < 1 || threads < 0) {
        log_error("batch, steps and nc must be >= 1, threads >= 0");
        return 2;
    }
    bench_cfg c = {.batch = (int)batch,
                   .steps = (int)steps,
                   .threads = threads > 0 ? (int)threads : omp_get_num_procs(),
                   .loss = loss,
                   .cpu_clock = !strcmp(clock, "cpu"),
                   .nc = (int)nc,
                   .prec = prec};
    kernels_set_threads(c.threads);
    step_ctx s = {0};
    s.m = model_create(spec, c.nc, 0, err, sizeof err);
    if (!s.m) {
        log_error("%s", err);
        return 2;
    }
    model_set_conv_precision(s.m, strcmp(prec, "bf16") ? CONV2D_FP32 : CONV2D_BF16);
    model_set_bf16_fusion(s.m, fuse);
    /* the loss settings of the default release (8.4.190), default gains */
    const ul_behaviour *beh = ul_behaviour_of(UL_VERSION_DEFAULT);
    int reg_max = model_config(s.m)->reg_max;
    s.h_o2m = detloss_hyp_default(c.nc, reg_max);
    s.h_o2o = detloss_hyp_one2one(c.nc, reg_max);
    s.h_o2m.stal_min = s.h_o2o.stal_min = beh->stal_min;
    s.h_o2m.bce_torch2 = s.h_o2o.bce_torch2 = beh->bce_torch2;
    s.loss = detloss_create();
    s.targets = xmalloc((size_t)c.batch * 6 * 6 * sizeof *s.targets);
    s.ntargets = synthetic_targets(c.batch, s.targets);
    printf("bench_train_step: %s, nc %d, %zu params, %d threads, %s convolutions%s, %s clock "
           "(timings are noisy on a shared machine)\n",
           spec, c.nc, model_num_params(s.m), kernels_threads(), prec,
           strcmp(prec, "bf16") ? ""
           : fuse               ? " (fused conversions)"
                                : " (separate conversions)",
           clock);
    char *list = xstrdup(sizes), *save = NULL;
    int rc = 0;
    for (char *t = strtok_r(list, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save)) {
        long sz;
        if (!parse_long(t, &sz) || sz < 32 || sz % 32) {
            log_error("imgsz=%s: expected multiples of 32", sizes);
            rc = 2;
            break;
        }
        rc = run_size(&s, &c, (int)sz);
    }
    free(list);
    free(s.targets);
    detloss_destroy(s.loss);
    model_free(s.m);
    kv_free(&a);
    return rc;
}
