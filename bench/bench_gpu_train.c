/* The GPU training step, as one worker of `coordinator train device=0` runs it: the next batch
 * copied into the page-locked ring and uploaded on the copy stream while the step computes, then
 * the uint8 -> float normalisation, forward, the loss on the device, backward, gradient clip, SGD
 * step and EMA blend on the flat buffers; only the loss items come back. Synthetic batches (the
 * loader is not timed: bench_loader does that), 4..12 random boxes per image.
 *
 * Per configuration (model x precision): images/s over `steps` timed steps after `warmup`, the
 * step split by CUDA events into data wait (the compute stream waiting for the upload) / forward /
 * loss / backward / all-reduce (one GPU: none) / optimizer, the share of convolutions, the GPU
 * memory the step holds, and the model FLOP utilisation against the GPU's datasheet peak for the
 * precision (3 x the forward's conv FLOPs per image, Ultralytics' GFLOPs convention).
 * deterministic= as train's (default True: cuDNN's heuristic algorithm choices, as the trainer and
 * Ultralytics' default make them; False: timed, the fastest). Under deterministic=False, the
 * depthwise convs' implementation that the backend's AUTO chose per shape and direction, with
 * our kernel's time against cuDNN's (the one conv comparison that is not cuDNN against itself).
 * One machine-readable line each:  RESULT <model> <fp32|tf32|amp> <images/s> <ms/step> <MiB>
 * (the precision label gets "-timed" under deterministic=False).
 * tests/gpu/run.sh divides ours by bench_gpu_ultralytics.py's (same GPU, models, imgsz, batch).
 *
 * Usage: bench_gpu_train [model=yolov8n.yaml,yolo26n.yaml] [imgsz=640] [batch=64]
 *        [precision=fp32,amp] [steps=20] [warmup=3] [deterministic=True] [device=0]
 * Without a GPU it says why and exits 0. device=cpu runs the same code on the CPU backend in its
 * device-memory mode (every copy a GPU needs is taken): the rehearsal's check of this program. */
#include "common/kv.h"
#include "common/log.h"
#include "common/rng.h"
#include "common/timer.h"
#include "common/train_args.h"
#include "kernels/backend_cuda.h"
#include "kernels/optim.h"
#include "worker/batch_ring.h"
#include "worker/device.h"
#include "worker/head_loss.h"
#include "worker/model.h"
#include "worker/train_setup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

enum { EV_PRE, EV_IN, EV_FWD, EV_LOSS, EV_BWD, EV_OPT, EV_COUNT };

typedef struct cfg {
    const char *yaml;
    backend_precision prec;
    const char *label;
    int imgsz, batch, steps, warmup, device; /* device -1: the CPU backend (device memory mode) */
    bool deterministic; /* train's deterministic=: cuDNN heuristics, or timed (worker/device.h) */
} cfg;

/* Datasheet dense peak (TFLOP/s) of the GPUs we are lent, by precision; 0 when unknown. */
static double peak_tflops(const char *gpu, backend_precision p) {
    struct {
        const char *name;
        double fp32, tf32, bf16;
    } t[] = {{"H200", 66.9, 494.7, 989.4},
             {"H100 80GB HBM3", 66.9, 494.7, 989.4}, /* SXM5 */
             {"H100 PCIe", 51.2, 378.0, 756.0},
             {"H100", 66.9, 494.7, 989.4},
             {"A100", 19.5, 156.0, 312.0}};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        if (strstr(gpu, t[i].name))
            return p == BACKEND_PRECISION_FP32   ? t[i].fp32
                   : p == BACKEND_PRECISION_TF32 ? t[i].tf32
                                                 : t[i].bf16;
    return 0;
}

static void gpu_name(int device, char *name, size_t n, size_t *free_b) {
    snprintf(name, n, device < 0 ? "cpu" : "?");
    *free_b = 0;
    if (device < 0) return;
#ifdef HAVE_CUDA
    struct cudaDeviceProp p;
    size_t total;
    if (cudaGetDeviceProperties(&p, device) == cudaSuccess) snprintf(name, n, "%s", p.name);
    if (cudaSetDevice(device) != cudaSuccess || cudaMemGetInfo(free_b, &total) != cudaSuccess)
        *free_b = 0;
#else
    (void)device;
#endif
}

static float *random_targets(int B, int nc, int *nt) {
    rng r = rng_keyed(5, (uint64_t)B, 0);
    float *t = xmalloc((size_t)B * 12 * 6 * sizeof *t);
    *nt = 0;
    for (int b = 0; b < B; b++) {
        int k = 4 + (int)(rng_uniform(&r) * 9);
        for (int i = 0; i < k; i++, (*nt)++) {
            float *q = t + 6 * *nt, w = 0.05f + 0.4f * (float)rng_uniform(&r),
                  h = 0.05f + 0.4f * (float)rng_uniform(&r);
            q[0] = (float)b, q[1] = (float)(int)(rng_uniform(&r) * nc);
            q[2] = w / 2 + (1 - w) * (float)rng_uniform(&r);
            q[3] = h / 2 + (1 - h) * (float)rng_uniform(&r), q[4] = w, q[5] = h;
        }
    }
    return t;
}

/* The depthwise shapes' implementation as the backend's AUTO chose it at planning, with the two
 * times it compared (our kernel against cuDNN's chosen algorithm, both timed by the backend the
 * same way; cudnnFind's own time of that algorithm beside them). */
static void print_depthwise(const backend *be, const char *model, const char *label) {
    enum { MAX = 64 };
    static const char *const dir[3] = {"fwd", "bwd-data", "bwd-filter"};
    backend_depthwise_choice ch[MAX];
    int n = backend_cuda_depthwise_choices(be, ch, MAX);
    if (n == 0) return;
    printf("  depthwise convs of %s %s (AUTO, per shape and direction: ms of ours / cuDNN's, "
           "ratio, cudnnFind's ms, chosen):\n",
           model, label);
    for (int i = 0; i < n && i < MAX; i++) {
        const conv2d_desc *d = &ch[i].d;
        printf("    n%d %dx%dx%d k%d s%d:", d->n, d->h, d->w, d->cin, d->kh, d->stride);
        for (int k = 0; k < 3; k++) {
            if (ch[i].timed)
                printf(" %s %.3f/%.3f (x%.2f, find %.3f) %s;", dir[k], ch[i].own_ms[k],
                       ch[i].cudnn_ms[k], ch[i].own_ms[k] / ch[i].cudnn_ms[k], ch[i].find_ms[k],
                       backend_depthwise_name(ch[i].use[k]));
            else
                printf(" %s untimed %s;", dir[k], backend_depthwise_name(ch[i].use[k]));
        }
        printf("\n");
    }
}

static int bench_one(const cfg *c) {
    char err[512], gpu[256];
    size_t free0, free1;
    gpu_name(c->device, gpu, sizeof gpu, &free0);
    backend_cuda_opts co = device_cuda_options(c->device, c->prec, c->deterministic);
    backend *be = c->device < 0 ? backend_cpu_create(&(backend_cpu_opts){.device_memory = true})
                                : backend_cuda_create(&co, err, sizeof err);
    if (!be) {
        log_error("%s", err);
        return 1;
    }
    const int nc = 80, B = c->batch, S = c->imgsz;
    model *m = model_create_on(be, c->yaml, nc, 0, err, sizeof err);
    model *ema = m ? model_create_on(be, c->yaml, nc, 0, err, sizeof err) : NULL;
    /* amp trains the bf16 graph, as the trainer does (worker/device.h); the EMA copy only blends */
    if (m) model_set_conv_precision(m, device_gpu_conv_precision(be, c->prec));
    if (!m || !ema || model_plan(m, B, S, S, err, sizeof err) != 0) {
        log_error("%s", err);
        return 1;
    }
    /* SGD as Ultralytics' optimizer=SGD, nominal batch = batch (a step every step) */
    char bs[32], *argv[] = {"data=/etc/hostname", "optimizer=SGD", "lr0=0.01", bs, "nbs=64",
                            "warmup_epochs=0"};
    snprintf(bs, sizeof bs, "batch=%d", B);
    kv_args kv;
    train_args a;
    optimizer opt;
    sched_cfg sc;
    int acc;
    model_info mi;
    if (kv_parse(6, argv, &kv, err, sizeof err) || train_args_parse(&kv, &a, err, sizeof err) ||
        train_setup_optimizer(m, &a, 100000, &opt, &sc, &acc, &mi, err, sizeof err)) {
        log_error("%s", err);
        return 1;
    }
    kv_free(&kv);
    detloss_hyp h[2];
    train_setup_loss(&a, nc, model_config(m)->reg_max, &h[0], &h[1]);
    size_t img_bytes = model_input_bytes_u8(m), np = model_num_params(m);
    uint8_t *img = xmalloc(img_bytes);
    rng r = rng_keyed(9, (uint64_t)S, (uint64_t)B);
    for (size_t i = 0; i < img_bytes; i++) img[i] = (uint8_t)(rng_uniform(&r) * 256);
    int nt;
    float *t = random_targets(B, nc, &nt);
    batch_ring *ring = batch_ring_create(be, 2, img_bytes);
    double *res = backend_alloc(be, BACKEND_DETLOSS_RESULTS * sizeof *res);
    backend_event *ev[EV_COUNT];
    for (int i = 0; i < EV_COUNT; i++) ev[i] = backend_event_create(be);
    double sum[EV_COUNT] = {0}, conv = 0, other = 0, t0 = 0, res_h[BACKEND_DETLOSS_RESULTS];
    model_ema me;
    ema_init(&me);
    int slot = batch_ring_put(ring, img, img_bytes);
    for (int s = 0; s < c->warmup + c->steps; s++) {
        if (s == c->warmup) {
            backend_synchronize(be);
            t0 = now_seconds();
        }
        backend_event_record(be, ev[EV_PRE]);
        const uint8_t *dev = batch_ring_take(ring, slot);
        backend_event_record(be, ev[EV_IN]);
        backend_zero(be, res, BACKEND_DETLOSS_RESULTS * sizeof *res);
        model_zero_grad(m);
        model_forward_u8_device(m, dev, true);
        backend_event_record(be, ev[EV_FWD]);
        head_loss(m,
                  &(head_loss_args){.h_o2m = &h[0],
                                    .h_o2o = &h[1],
                                    .o2m = DETLOSS_E2E_O2M_INIT,
                                    .o2o = DETLOSS_E2E_O2O_INIT,
                                    .img_h = S,
                                    .img_w = S,
                                    .ntargets = nt,
                                    .targets = t,
                                    .grad_scale = 1,
                                    .grad = true},
                  res);
        backend_event_record(be, ev[EV_LOSS]);
        model_backward_from_head_grads(m);
        batch_ring_release(ring, slot);
        backend_event_record(be, ev[EV_BWD]);
        backend_clip_grad_norm(be, model_grads(m), np, OPTIM_CLIP_MAX_NORM);
        backend_optim_step(be, &opt, model_params(m), model_grads(m));
        double d = ema_advance(&me);
        backend_ema_blend(be, model_params(ema), model_params(m), np, d);
        backend_ema_blend(be, model_buffers(ema), model_buffers(m), model_num_buffer_floats(m), d);
        backend_event_record(be, ev[EV_OPT]);
        slot = batch_ring_put(ring, img, img_bytes);   /* the next batch, during this step */
        backend_to_host(be, res_h, res, sizeof res_h); /* the step's one copy back */
        if (s < c->warmup) continue;
        for (int i = EV_IN; i < EV_COUNT; i++)
            sum[i] += backend_event_elapsed(be, ev[i - 1], ev[i]);
        double cs, os;
        model_timing(m, &cs, &os);
        conv += cs, other += os;
    }
    double wall = (now_seconds() - t0) / c->steps;
    gpu_name(c->device, gpu, sizeof gpu, &free1);
    double mib = free0 > free1 ? (double)(free0 - free1) / 1048576.0 : 0;
    double macs, bias;
    model_conv_macs(m, S, S, &macs, &bias);
    double flops = 3.0 * (2 * macs + bias) * B, peak = peak_tflops(gpu, c->prec);
    const char *name = model_config(m)->name;
    printf("%s %s imgsz %d batch %d on %s: %.1f images/s (%.1f ms/step), loss %.4f\n", name,
           c->label, S, B, gpu, B / wall, wall * 1e3, res_h[BACKEND_DETLOSS_TOTAL]);
    printf("  step (ms, mean of %d): data wait %.2f, forward %.2f, loss %.2f, backward %.2f, "
           "all-reduce 0 (one GPU), optimizer+EMA %.2f; host/other %.2f\n",
           c->steps, 1e3 * sum[EV_IN] / c->steps, 1e3 * sum[EV_FWD] / c->steps,
           1e3 * sum[EV_LOSS] / c->steps, 1e3 * sum[EV_BWD] / c->steps,
           1e3 * sum[EV_OPT] / c->steps,
           1e3 * (wall - (sum[EV_IN] + sum[EV_FWD] + sum[EV_LOSS] + sum[EV_BWD] + sum[EV_OPT]) /
                             c->steps));
    char kinds[512];
    printf("  convolutions %.0f%% of forward+backward; last step by op (s fwd/bwd): %s\n",
           100 * conv / (conv + other), model_timing_text(m, kinds, sizeof kinds));
    printf("  GPU memory held: %.0f MiB (model arena %.0f MiB); %.1f TFLOP/s (%.2f GFLOP per "
           "image, x3 for training)",
           mib, model_arena_bytes(m) / 1048576.0, flops / wall / 1e12, (2 * macs + bias) / 1e9);
    if (peak > 0)
        printf(", MFU %.1f%% of %s's %.0f TFLOP/s %s peak\n", 100 * flops / wall / 1e12 / peak, gpu,
               peak, backend_precision_name(c->prec));
    else
        printf(" (no datasheet peak known for %s)\n", gpu);
    print_depthwise(be, name, c->label);
    printf("RESULT %s %s %.1f %.1f %.0f\n", name, c->label, B / wall, wall * 1e3, mib);
    fflush(stdout);
    for (int i = 0; i < EV_COUNT; i++) backend_event_destroy(be, ev[i]);
    backend_free(be, res);
    batch_ring_free(ring);
    train_free_optimizer(m, &opt);
    model_free(m);
    model_free(ema);
    backend_destroy(be);
    free(img);
    free(t);
    return 0;
}

int main(int argc, char **argv) {
    log_set_program("bench_gpu_train");
    kv_args a;
    char err[512] = "", why[256];
    if (kv_parse(argc - 1, argv + 1, &a, err, sizeof err)) {
        log_error("%s", err);
        return 2;
    }
    const char *models, *precs, *dev;
    long imgsz, batch, steps, warmup, device = -1;
    bool deterministic;
    if (kv_get_str(&a, "model", "yolov8n.yaml,yolo26n.yaml", &models) ||
        kv_get_str(&a, "precision", "fp32,amp", &precs) ||
        kv_get_long(&a, "imgsz", 640, &imgsz, err, sizeof err) ||
        kv_get_long(&a, "batch", 64, &batch, err, sizeof err) ||
        kv_get_long(&a, "steps", 20, &steps, err, sizeof err) ||
        kv_get_long(&a, "warmup", 3, &warmup, err, sizeof err) ||
        kv_get_bool(&a, "deterministic", true, &deterministic, err, sizeof err) ||
        kv_get_str(&a, "device", "0", &dev) || kv_check_unused(&a, err, sizeof err) ||
        (strcmp(dev, "cpu") && (!parse_long(dev, &device) || device < 0))) {
        if (!err[0]) snprintf(err, sizeof err, "device=%s: expected cpu or a GPU index", dev);
        log_error("%s", err);
        return 2;
    }
    if (imgsz < 32 || imgsz % 32 || batch < 1 || steps < 1 || warmup < 1) {
        log_error("need imgsz a multiple of 32, batch >= 1, steps >= 1, warmup >= 1");
        return 2;
    }
    if (device >= 0 && backend_cuda_device_count(why, sizeof why) == 0) {
        printf("bench_gpu_train: skipped: %s\n", why);
        kv_free(&a);
        return 0;
    }
    int rc = 0;
    char *ml = xstrdup(models), *sm = NULL;
    for (char *mname = strtok_r(ml, ",", &sm); mname && !rc; mname = strtok_r(NULL, ",", &sm)) {
        char *pl = xstrdup(precs), *sp = NULL;
        for (char *p = strtok_r(pl, ",", &sp); p && !rc; p = strtok_r(NULL, ",", &sp)) {
            cfg c = {.yaml = mname,
                     .label = p,
                     .imgsz = (int)imgsz,
                     .batch = (int)batch,
                     .steps = (int)steps,
                     .warmup = (int)warmup,
                     .device = (int)device,
                     .deterministic = deterministic};
            if (!strcmp(p, "fp32"))
                c.prec = BACKEND_PRECISION_FP32;
            else if (!strcmp(p, "tf32"))
                c.prec = BACKEND_PRECISION_TF32;
            else if (!strcmp(p, "amp") || !strcmp(p, "bf16"))
                c.prec = BACKEND_PRECISION_BF16, c.label = "amp";
            else {
                log_error("precision=%s: expected fp32, tf32 or amp", p);
                rc = 2;
                break;
            }
            if (!deterministic) /* its own RESULT label: run.sh's ratios take the default's */
                c.label = c.prec == BACKEND_PRECISION_FP32   ? "fp32-timed"
                          : c.prec == BACKEND_PRECISION_TF32 ? "tf32-timed"
                                                             : "amp-timed";
            rc = bench_one(&c);
        }
        free(pl);
    }
    free(ml);
    kv_free(&a);
    return rc;
}
