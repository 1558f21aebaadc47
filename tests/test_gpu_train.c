/* The GPU training path against the CPU reference. Built everywhere; where there is no GPU every
 * test here reports itself skipped with the reason (never passed). tests/gpu/run.sh runs them on a
 * GPU machine.
 *
 *   loss op        backend_detloss on the GPU (kernels/cuda/detloss.cu) against the CPU's, same
 *                  head outputs and targets: items, sums, foreground count, every gradient;
 *   whole step     same weights, same uint8 batch and targets, the trainer's calls
 *                  (model_forward_u8, head_loss, model_backward_from_head_grads, clip, SGD step):
 *                  loss items, every parameter's gradient, BN running stats, the updated weights;
 *   amp            the bf16 step (the bf16 graph, as the trainer configures it: worker/device.h)
 *                  against the fp32 step on the GPU and against the CPU's bf16 graph step;
 *   NCCL           the all-reduce on the GPU (tests/mpi/nccl_check.c, 1 rank, 2 when 2 GPUs);
 *   2 GPUs         2 workers on 2 GPUs train like 1 worker with 2 micro-batches (only with 2);
 *   train device=0 a short `coordinator train device=0` run ends well with finite losses.
 *
 * Tolerances (fp32: the GPU's convolutions run in fp32 FMA arithmetic without TF32, the CPU's
 * through oneDNN or our GEMM, in another order): loss items 1e-4 relative; each gradient tensor
 * max|gpu - cpu| <= 2e-3 of max|cpu| (BN over 4 images amplifies rounding); BN stats 1e-4;
 * weights after one SGD step 1e-5 of the tensor's max. */
#include "common/kv.h"
#include "common/rng.h"
#include "common/train_args.h"
#include "kernels/backend_cuda.h"
#include "kernels/threads.h"
#include "runs.h"
#include "tests/testenv.h"
#include "worker/device.h"
#include "worker/head_loss.h"
#include "worker/model.h"
#include "worker/train_setup.h"

#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The CUDA backend on GPU 0, or the test is skipped (with why). */
static backend *gpu_or_skip(backend_precision p) {
    char why[256], err[512];
    if (backend_cuda_device_count(why, sizeof why) == 0) cr_skip_test("no GPU: %s", why);
    backend *be =
        backend_cuda_create(&(backend_cuda_opts){.device = 0, .precision = p}, err, sizeof err);
    cr_assert(be, "%s", err);
    return be;
}

static double rel_diff(const float *a, const float *ref, size_t n) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - ref[i]));
        s = fmax(s, fabs((double)ref[i]));
    }
    return s > 0 ? d / s : d;
}

static void expect_close(const char *what, double got, double ref, double tol) {
    double rel = fabs(got - ref) / fmax(fabs(ref), 1e-12);
    cr_expect(rel <= tol, "%s: GPU %.9g, CPU %.9g (rel %.3g > %.1g)", what, got, ref, rel, tol);
}

/* ---- the loss op ------------------------------------------------------------------------ */

static void loss_case(int reg_max, int branches, bool v190) {
    backend *gpu = gpu_or_skip(BACKEND_PRECISION_FP32);
    backend *cpu = backend_cpu_create(&(backend_cpu_opts){.threads = 0});
    const int B = 4, nc = 5, hs[3] = {20, 10, 5}, no = 4 * reg_max + nc;
    const float ls[3] = {8, 16, 32};
    int A = detloss_make_anchors(3, hs, hs, ls, NULL, NULL);
    float *anc = malloc(sizeof(float) * 2 * A), *str = malloc(sizeof(float) * A);
    detloss_make_anchors(3, hs, hs, ls, anc, str);
    size_t np = (size_t)B * A * no;
    float *preds[2], *g_cpu[2], *g_gpu[2], *d_preds[2], *d_g[2];
    rng r = rng_keyed(7, (uint64_t)reg_max, (uint64_t)branches);
    for (int b = 0; b < 2; b++) {
        preds[b] = malloc(np * sizeof(float));
        g_cpu[b] = malloc(np * sizeof(float));
        g_gpu[b] = malloc(np * sizeof(float));
        for (size_t i = 0; i < np; i++) preds[b][i] = (float)(2 * rng_normal(&r) - 1);
        d_preds[b] = backend_alloc(gpu, np * sizeof(float));
        d_g[b] = backend_alloc(gpu, np * sizeof(float));
        backend_to_device(gpu, d_preds[b], preds[b], np * sizeof(float));
    }
    float t[40 * 6];
    int nt = 0;
    for (int b = 0; b < B - 1; b++) /* the last image has no targets */
        for (int k = 0; k < 3 + 3 * b; k++, nt++) {
            float *q = t + 6 * nt;
            q[0] = (float)b, q[1] = (float)((b + k) % nc),
            q[2] = 0.2f + 0.6f * (float)rng_uniform(&r);
            q[3] = 0.2f + 0.6f * (float)rng_uniform(&r),
            q[4] = 0.03f + 0.4f * (float)rng_uniform(&r);
            q[5] = 0.03f + 0.4f * (float)rng_uniform(&r);
        }
    float cw[5] = {0.7f, 1.3f, 1, 0.9f, 1.1f};
    backend_detloss_desc d = {
        .branches = branches,
        .h = {detloss_hyp_default(nc, reg_max), detloss_hyp_one2one(nc, reg_max)},
        .o2m = DETLOSS_E2E_O2M_INIT,
        .o2o = DETLOSS_E2E_O2O_INIT,
        .B = B,
        .A = A,
        .img_h = 160,
        .img_w = 160,
        .anchor_points = anc,
        .strides = str,
        .ntargets = nt,
        .targets = t,
        .grad_scale = 2};
    for (int k = 0; k < 2; k++) {
        d.h[k].stal_min = v190 ? 16 : 8;
        d.h[k].bce_torch2 = v190;
        d.h[k].cls_weight = v190 ? cw : NULL;
    }
    double rc[BACKEND_DETLOSS_RESULTS] = {0}, rg[BACKEND_DETLOSS_RESULTS],
           rg2[BACKEND_DETLOSS_RESULTS];
    backend_detloss(cpu, &d, (const float *const *)preds, g_cpu, rc);
    /* the GPU: anchors and head outputs in its memory */
    float *d_anc = backend_alloc(gpu, sizeof(float) * 2 * A),
          *d_str = backend_alloc(gpu, sizeof(float) * A);
    backend_to_device(gpu, d_anc, anc, sizeof(float) * 2 * A);
    backend_to_device(gpu, d_str, str, sizeof(float) * A);
    d.anchor_points = d_anc, d.strides = d_str;
    double *d_res = backend_alloc(gpu, sizeof rg);
    for (int run = 0; run < 2; run++) { /* twice: the same bits (fixed-order sums) */
        backend_zero(gpu, d_res, sizeof rg);
        backend_detloss(gpu, &d, (const float *const *)d_preds, d_g, d_res);
        backend_to_host(gpu, run ? rg2 : rg, d_res, sizeof rg);
    }
    cr_expect_eq(memcmp(rg, rg2, sizeof rg), 0, "two GPU runs give the same results");
    cr_assert_eq(rg[BACKEND_DETLOSS_NUM_FG], rc[BACKEND_DETLOSS_NUM_FG], "foreground anchors");
    cr_assert_gt(rc[BACKEND_DETLOSS_NUM_FG], 0);
    static const char *names[BACKEND_DETLOSS_RESULTS] = {"box item",   "cls item", "dfl item",
                                                         "box sum",    "cls sum",  "dfl sum",
                                                         "target sum", "fg",       "total"};
    for (int k = 0; k < BACKEND_DETLOSS_RESULTS; k++) expect_close(names[k], rg[k], rc[k], 1e-5);
    for (int b = 0; b < branches; b++) {
        backend_to_host(gpu, g_gpu[b], d_g[b], np * sizeof(float));
        double rel = rel_diff(g_gpu[b], g_cpu[b], np);
        cr_log_info("loss reg_max %d branch %d: gradient max|diff|/max|ref| %.3g", reg_max, b, rel);
        cr_expect_leq(rel, 1e-5, "branch %d gradient: %.3g", b, rel);
    }
    for (int b = 0; b < 2; b++) {
        free(preds[b]), free(g_cpu[b]), free(g_gpu[b]);
        backend_free(gpu, d_preds[b]), backend_free(gpu, d_g[b]);
    }
    backend_free(gpu, d_anc), backend_free(gpu, d_str), backend_free(gpu, d_res);
    free(anc), free(str);
    backend_destroy(gpu);
    backend_destroy(cpu);
}

Test(gpu_train, loss_op_matches_cpu_v8_8_4_33, .timeout = 120) {
    loss_case(16, 1, false);
}
Test(gpu_train, loss_op_matches_cpu_e2e_8_4_190_class_weights, .timeout = 120) {
    loss_case(1, 2, true);
}

/* ---- a whole training step -------------------------------------------------------------- */

typedef struct step_out {
    double res[BACKEND_DETLOSS_RESULTS];
    float *grads, *bufs, *params; /* host copies after the backward, then after the SGD step */
} step_out;

static void parse_args(train_args *a) {
    char err[256];
    char *argv[] = {"data=/etc/hostname", "optimizer=SGD", "lr0=0.01", "batch=4", "nbs=4",
                    "warmup_epochs=0"};
    kv_args kv;
    cr_assert_eq(kv_parse(6, argv, &kv, err, sizeof err), 0, "%s", err);
    cr_assert_eq(train_args_parse(&kv, a, err, sizeof err), 0, "%s", err);
    kv_free(&kv);
}

/* One optimizer step of one micro-batch on be, as the trainer computes it; prec: the model's
 * convolutions (the trainer's choice for a GPU: device_gpu_conv_precision). */
static void one_step_prec(backend *be, conv2d_prec prec, const char *yaml, const uint8_t *img,
                          int B, int S, int nt, const float *t, step_out *o) {
    char err[512];
    train_args a;
    parse_args(&a);
    model *m = model_create_on(be, yaml, 3, 11, err, sizeof err);
    cr_assert(m, "%s", err);
    model_set_conv_precision(m, prec);
    cr_assert_eq(model_plan(m, B, S, S, err, sizeof err), 0, "%s", err);
    optimizer opt;
    sched_cfg sc;
    int acc;
    model_info mi;
    cr_assert_eq(train_setup_optimizer(m, &a, 64, &opt, &sc, &acc, &mi, err, sizeof err), 0, "%s",
                 err);
    detloss_hyp h[2];
    train_setup_loss(&a, 3, model_config(m)->reg_max, &h[0], &h[1]);
    double *res = backend_alloc(be, sizeof o->res);
    backend_zero(be, res, sizeof o->res);
    model_zero_grad(m);
    model_forward_u8(m, img, true);
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
    model_backward_from_head_grads(m);
    size_t np = model_num_params(m), nb = model_num_buffer_floats(m);
    o->grads = malloc(np * sizeof(float));
    o->params = malloc(np * sizeof(float));
    o->bufs = malloc((nb + 1) * sizeof(float));
    backend_to_host(be, o->res, res, sizeof o->res);
    backend_to_host(be, o->grads, model_grads(m), np * sizeof(float));
    model_buffers_to_host(m, o->bufs);
    backend_clip_grad_norm(be, model_grads(m), np, OPTIM_CLIP_MAX_NORM);
    backend_optim_step(be, &opt, model_params(m), model_grads(m));
    model_params_to_host(m, o->params);
    backend_free(be, res);
    train_free_optimizer(m, &opt);
    model_free(m);
}

/* ... with the trainer's choice of convolutions for be */
static void one_step(backend *be, const char *yaml, const uint8_t *img, int B, int S, int nt,
                     const float *t, step_out *o) {
    const backend_cuda_opts *co = backend_cuda_options(be);
    conv2d_prec prec = co ? device_gpu_conv_precision(be, co->precision) : CONV2D_FP32;
    one_step_prec(be, prec, yaml, img, B, S, nt, t, o);
}

static double cosine(const float *a, const float *b, size_t n) {
    double dot = 0, na = 0, nb = 0;
    for (size_t i = 0; i < n; i++) {
        dot += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
    }
    return dot / sqrt(na * nb);
}

static void make_batch(int B, int S, uint8_t **img, float *t, int *nt) {
    size_t n = (size_t)B * S * S * 3;
    *img = malloc(n);
    rng r = rng_keyed(3, (uint64_t)S, 1);
    for (size_t i = 0; i < n; i++) (*img)[i] = (uint8_t)(rng_uniform(&r) * 256);
    *nt = 0;
    for (int b = 0; b < B; b++)
        for (int k = 0; k < 2 + b; k++, (*nt)++) {
            float *q = t + 6 * *nt;
            q[0] = (float)b, q[1] = (float)(k % 3), q[2] = 0.25f + 0.5f * (float)rng_uniform(&r);
            q[3] = 0.25f + 0.5f * (float)rng_uniform(&r),
            q[4] = 0.1f + 0.3f * (float)rng_uniform(&r);
            q[5] = 0.1f + 0.3f * (float)rng_uniform(&r);
        }
}

static void free_step(step_out *o) {
    free(o->grads), free(o->bufs), free(o->params);
}

static void step_case(const char *yaml) {
    backend *gpu = gpu_or_skip(BACKEND_PRECISION_FP32);
    kernels_set_threads(0);
    backend *cpu = backend_cpu_create(&(backend_cpu_opts){.threads = 0});
    const int B = 4, S = 128;
    uint8_t *img;
    float t[64 * 6];
    int nt;
    make_batch(B, S, &img, t, &nt);
    step_out c, g;
    one_step(cpu, yaml, img, B, S, nt, t, &c);
    one_step(gpu, yaml, img, B, S, nt, t, &g);
    for (int k = 0; k < 3; k++) expect_close("loss item", g.res[k], c.res[k], 1e-4);
    expect_close("total", g.res[BACKEND_DETLOSS_TOTAL], c.res[BACKEND_DETLOSS_TOTAL], 1e-4);
    cr_expect_eq(g.res[BACKEND_DETLOSS_NUM_FG], c.res[BACKEND_DETLOSS_NUM_FG]);
    /* every gradient tensor (a bucket of the all-reduce holds whole tensors' ranges) */
    char err[256];
    model *m = model_create(yaml, 3, 11, err, sizeof err);
    cr_assert(m, "%s", err);
    double worst = 0, worst_p = 0;
    const char *wname = "", *wpname = "";
    for (int i = 0; i < model_num_param_tensors(m); i++) {
        const model_tensor *pt = model_param_tensor(m, i);
        if (!pt->trainable) continue;
        double r = rel_diff(g.grads + pt->offset, c.grads + pt->offset, pt->numel);
        if (r > worst) worst = r, wname = pt->name;
        cr_expect_leq(r, 2e-3, "gradient of %s: max|gpu - cpu| = %.3g of its max", pt->name, r);
        double rp = rel_diff(g.params + pt->offset, c.params + pt->offset, pt->numel);
        if (rp > worst_p) worst_p = rp, wpname = pt->name;
        cr_expect_leq(rp, 1e-5, "%s after the SGD step: %.3g of its max", pt->name, rp);
    }
    double rb = rel_diff(g.bufs, c.bufs, model_num_buffer_floats(m));
    cr_expect_leq(rb, 1e-4, "BN running stats: %.3g", rb);
    cr_log_info("%s step, GPU fp32 vs CPU: loss %.6g vs %.6g; worst gradient %s %.3g; worst "
                "weight after SGD %s %.3g; BN stats %.3g",
                yaml, g.res[BACKEND_DETLOSS_TOTAL], c.res[BACKEND_DETLOSS_TOTAL], wname, worst,
                wpname, worst_p, rb);
    model_free(m);
    free_step(&c), free_step(&g), free(img);
    backend_destroy(gpu);
    backend_destroy(cpu);
}

Test(gpu_train, step_matches_cpu_yolov8n, .timeout = 300) {
    step_case("yolov8n.yaml");
}
Test(gpu_train, step_matches_cpu_yolo26n, .timeout = 300) {
    step_case("yolo26n.yaml");
}

/* amp: the bf16 step (the bf16 graph: BN + SiLU writing the bf16 copies the convolutions read)
 * against the fp32 step, both on the GPU, and against the CPU's bf16 graph step: the loss within
 * 2 %, the gradient as a whole pointing the same way (cosine >= 0.99). */
Test(gpu_train, amp_step_close_to_fp32, .timeout = 300) {
    backend *g32 = gpu_or_skip(BACKEND_PRECISION_FP32);
    char err[512];
    backend *g16 = backend_cuda_create(
        &(backend_cuda_opts){.device = 0, .precision = BACKEND_PRECISION_BF16}, err, sizeof err);
    cr_assert(g16, "%s", err);
    cr_assert_eq(device_gpu_conv_precision(g16, BACKEND_PRECISION_BF16), CONV2D_BF16,
                 "the CUDA backend lacks the bf16 graph's ops at bf16");
    cr_assert_eq(device_gpu_conv_precision(g32, BACKEND_PRECISION_FP32), CONV2D_FP32);
    kernels_set_threads(0);
    backend *cpu = backend_cpu_create(&(backend_cpu_opts){.threads = 0});
    uint8_t *img;
    float t[64 * 6];
    int nt;
    make_batch(4, 128, &img, t, &nt);
    step_out a, b, c;
    one_step(g32, "yolov8n.yaml", img, 4, 128, nt, t, &a);
    one_step(g16, "yolov8n.yaml", img, 4, 128, nt, t, &b);
    one_step_prec(cpu, CONV2D_BF16, "yolov8n.yaml", img, 4, 128, nt, t, &c);
    expect_close("amp total loss", b.res[BACKEND_DETLOSS_TOTAL], a.res[BACKEND_DETLOSS_TOTAL],
                 2e-2);
    expect_close("amp total loss vs the CPU's bf16", b.res[BACKEND_DETLOSS_TOTAL],
                 c.res[BACKEND_DETLOSS_TOTAL], 2e-2);
    model *m = model_create("yolov8n.yaml", 3, 11, err, sizeof err);
    size_t n = model_num_params(m);
    double cos32 = cosine(a.grads, b.grads, n), cos_cpu = cosine(c.grads, b.grads, n);
    cr_log_info("amp (bf16 graph) vs fp32: total loss %.6g vs %.6g, gradient cosine %.5f; vs the "
                "CPU's bf16 graph: loss %.6g, cosine %.5f",
                b.res[BACKEND_DETLOSS_TOTAL], a.res[BACKEND_DETLOSS_TOTAL], cos32,
                c.res[BACKEND_DETLOSS_TOTAL], cos_cpu);
    cr_expect_geq(cos32, 0.99, "gradient cosine vs fp32 %.5f", cos32);
    cr_expect_geq(cos_cpu, 0.99, "gradient cosine vs the CPU's bf16 %.5f", cos_cpu);
    model_free(m);
    free_step(&a), free_step(&b), free_step(&c), free(img);
    backend_destroy(cpu);
    backend_destroy(g16);
    backend_destroy(g32);
}

/* ---- NCCL, 2 GPUs, the real command ------------------------------------------------------ */

Test(gpu_train, nccl_allreduce_on_the_gpu, .timeout = 180) {
    char why[256], out[16384];
    int n = backend_cuda_device_count(why, sizeof why);
    if (n == 0) cr_skip_test("no GPU: %s", why);
    int np = n >= 2 ? 2 : 1;
    int rc = run_mpi_program("nccl_check", np, out, sizeof out);
    cr_assert_eq(rc, 0, "nccl_check -np %d:\n%s", np, out);
    char want[64];
    snprintf(want, sizeof want, "nccl_check: OK np=%d gpu=1", np);
    cr_assert(strstr(out, want), "expected '%s' in:\n%s", want, out);
}

/* 2 workers on 2 GPUs (NCCL) against 1 worker on 1 GPU with 2 micro-batches of the same global
 * batches: the same weights up to the GPU's rounding (ncclAvg of 2 ranks and the sum of two
 * micro-batches are both exact here, but cuDNN's sums over a different batch split are not). */
Test(gpu_train, two_gpus_equal_one_gpu_two_micro_batches, .timeout = 600) {
    char why[256];
    int n = backend_cuda_device_count(why, sizeof why);
    if (n < 2) cr_skip_test("needs 2 GPUs (%s)", n ? "1 GPU here" : why);
    char dir[PATH_MAX], pa[PATH_MAX + 32], pb[PATH_MAX + 32];
    run_make_data(dir, sizeof dir, "yolo-gpu2", 40, 8);
    test_mpi_env();
    const char *args = "model=yolov8n.yaml epochs=1 imgsz=64 batch=8 nbs=8 threads=1 "
                       "loader_threads=1 exist_ok=True";
    cr_assert_eq(run_sh("timeout 300 \"$YOLO_COORD\" train data=%s/s.h5 %s device=0,1 workers=2 "
                        "project=%s name=multi > %s/multi.log 2>&1",
                        dir, args, dir, dir),
                 0, "2 GPUs: see %s/multi.log", dir);
    cr_assert_eq(run_sh("timeout 300 \"$YOLO_COORD\" train data=%s/s.h5 %s device=0 workers=1 "
                        "micro_batch=4 project=%s name=micro > %s/micro.log 2>&1",
                        dir, args, dir, dir),
                 0, "1 GPU: see %s/micro.log", dir);
    snprintf(pa, sizeof pa, "%s/multi/weights/last.h5", dir);
    snprintf(pb, sizeof pb, "%s/micro/weights/last.h5", dir);
    run_cmp c = run_compare_weights(pa, pb);
    cr_log_info("2 GPUs vs 1 GPU x 2 micro-batches: %d tensors, max rel diff %.3g (%s)", c.tensors,
                c.max_rel_param, c.worst);
    cr_assert_eq(c.missing, 0);
    cr_assert_gt(c.tensors, 100);
    cr_assert_leq(c.max_rel_param, 1e-4, "max rel diff %.3g in %s", c.max_rel_param, c.worst);
    test_remove_dir(dir);
}

/* `coordinator train device=0` end to end (mpirun, loader, GPU step, NCCL of one rank,
 * validation, checkpoints): exit 0 and finite losses in results.csv. */
Test(gpu_train, train_device0_end_to_end, .timeout = 600) {
    char why[256];
    if (backend_cuda_device_count(why, sizeof why) == 0) cr_skip_test("no GPU: %s", why);
    char dir[PATH_MAX], csv[PATH_MAX + 32];
    run_make_data(dir, sizeof dir, "yolo-gpu1", 32, 8);
    test_mpi_env();
    cr_assert_eq(run_sh("timeout 300 \"$YOLO_COORD\" train data=%s/s.h5 model=yolov8n.yaml "
                        "epochs=2 imgsz=64 batch=8 device=0 plots=False project=%s name=r > "
                        "%s/r.log 2>&1",
                        dir, dir, dir),
                 0, "see %s/r.log", dir);
    snprintf(csv, sizeof csv, "%s/r/results.csv", dir);
    FILE *f = fopen(csv, "r");
    cr_assert(f, "%s", csv);
    char line[2048];
    int rows = 0;
    cr_assert(fgets(line, sizeof line, f), "header");
    while (fgets(line, sizeof line, f)) {
        double ep, tm, box, cls, dfl;
        cr_assert_eq(sscanf(line, "%lf,%lf,%lf,%lf,%lf", &ep, &tm, &box, &cls, &dfl), 5, "%s",
                     line);
        cr_expect(isfinite(box) && isfinite(cls) && isfinite(dfl) && cls > 0, "%s", line);
        rows++;
    }
    fclose(f);
    cr_expect_eq(rows, 2, "one row per epoch");
    test_remove_dir(dir);
}
