/* One whole training step of a model (forward in train mode + backward from a random head-output
 * gradient; no loss, no optimizer) at a few image sizes. Prints images/s, the share of time in
 * convolutions, and the ratio to a forward-only pass measured in the same process (baseline).
 * Usage: bench_train_step [model=yolov8n.yaml] [imgsz=160,320] [batch=16] [steps=3] [threads=1]
 *   threads=0 uses every core OpenMP reports. Default 1: on a machine shared by several
 *   processes, libgomp's spinning barriers make 2 threads ~10x slower unless
 *   OMP_WAIT_POLICY=passive is set. */
#include "common/kv.h"
#include "common/log.h"
#include "common/rng.h"
#include "common/timer.h"
#include "kernels/threads.h"
#include "worker/model.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int run_size(model *m, int imgsz, int batch, int steps) {
    char err[512];
    if (model_plan(m, batch, imgsz, imgsz, err, sizeof err)) {
        log_error("%s", err);
        return 1;
    }
    size_t nimg = (size_t)batch * imgsz * imgsz * 3;
    size_t nout = (size_t)batch * model_num_anchors(m) * model_out_channels(m);
    float *img = xmalloc(nimg * sizeof *img), *d[2];
    rng g = rng_keyed(1, (uint64_t)imgsz, 0);
    for (size_t i = 0; i < nimg; i++) img[i] = (float)rng_uniform(&g);
    for (int b = 0; b < 2; b++) {
        d[b] = xmalloc(nout * sizeof *d[b]);
        for (size_t i = 0; i < nout; i++) d[b][i] = (float)(1e-3 * rng_normal(&g));
    }
    int nb = model_num_branches(m);
    /* warm-up (oneDNN primitive creation, page faults) */
    model_zero_grad(m);
    model_forward(m, img, true);
    model_backward(m, d[0], nb > 1 ? d[1] : NULL);
    double tf = 0, tt = 0, conv = 0, other = 0;
    for (int s = 0; s < steps; s++) {
        double t0 = now_seconds();
        model_forward(m, img, true);
        tf += now_seconds() - t0;
    }
    for (int s = 0; s < steps; s++) {
        double t0 = now_seconds();
        model_zero_grad(m);
        model_forward(m, img, true);
        model_backward(m, d[0], nb > 1 ? d[1] : NULL);
        tt += now_seconds() - t0;
        double c, o;
        model_timing(m, &c, &o);
        conv += c;
        other += o;
    }
    double fwd_ips = batch * steps / tf, step_ips = batch * steps / tt;
    printf("%-8s imgsz %4d batch %3d: train step %7.2f images/s (%.3f s/step), forward only "
           "%7.2f images/s; step/forward time %.2fx; conv %.0f%% / other ops %.0f%% of the step; "
           "arena %.0f MB\n",
           model_config(m)->name, imgsz, batch, step_ips, tt / steps, fwd_ips, tf > 0 ? tt / tf : 0,
           100 * conv / (conv + other), 100 * other / (conv + other),
           model_arena_bytes(m) / 1048576.0);
    char kinds[512];
    printf("  last step by op kind (s, forward/backward): %s\n",
           model_timing_text(m, kinds, sizeof kinds));
    free(img);
    free(d[0]);
    free(d[1]);
    return 0;
}

int main(int argc, char **argv) {
    log_set_program("bench_train_step");
    kv_args a;
    char err[512];
    if (kv_parse(argc - 1, argv + 1, &a, err, sizeof err)) {
        log_error("%s", err);
        return 2;
    }
    const char *spec, *sizes;
    long batch, steps, threads;
    if (kv_get_str(&a, "model", "yolov8n.yaml", &spec) ||
        kv_get_str(&a, "imgsz", "160,320", &sizes) ||
        kv_get_long(&a, "batch", 16, &batch, err, sizeof err) ||
        kv_get_long(&a, "steps", 3, &steps, err, sizeof err) ||
        kv_get_long(&a, "threads", 1, &threads, err, sizeof err) ||
        kv_check_unused(&a, err, sizeof err)) {
        log_error("%s", err);
        return 2;
    }
    kernels_set_threads(threads > 0 ? (int)threads : omp_get_num_procs());
    model *m = model_create(spec, 80, 0, err, sizeof err);
    if (!m) {
        log_error("%s", err);
        return 2;
    }
    printf("bench_train_step: %s, %zu params, %d threads (timings are noisy on a shared machine)\n",
           spec, model_num_params(m), kernels_threads());
    char *list = xstrdup(sizes), *save = NULL;
    int rc = 0;
    for (char *t = strtok_r(list, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save)) {
        long s;
        if (!parse_long(t, &s) || s < 32 || s % 32) {
            log_error("imgsz=%s: expected multiples of 32", sizes);
            rc = 2;
            break;
        }
        rc = run_size(m, (int)s, (int)batch, (int)steps);
    }
    free(list);
    model_free(m);
    kv_free(&a);
    return rc;
}
