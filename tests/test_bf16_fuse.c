/* The bf16 conversion fusion (suite bf16_fuse; worker/model_fuse.c, model_set_bf16_fusion): whole
 * training steps of bf16 models with the BN + SiLU ops writing the bf16 copies (activations for
 * the convolutions, dy for the conv before them) against the separate to_bf16 passes: loss items,
 * head outputs, every parameter gradient and BN buffer bit for bit over two steps (an SGD update
 * between them), and an eval forward. The graph check reads the op list (worker/model_internal.h)
 * to see that the fusion is in effect. Also the GPU worker's amp configuration
 * (device_gpu_conv_precision) over the CPU backend in device-memory mode: the same graph and the
 * same bits as the CPU's own bf16 steps. */
#include "common/rng.h"
#include "kernels/backend.h"
#include "kernels/backend_impl.h"
#include "kernels/detloss.h"
#include "worker/device.h"
#include "worker/head_loss.h"
#include "worker/model.h"
#include "worker/model_internal.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

enum { B = 2, S = 96, STEPS = 2 };

typedef struct run_out {
    double res[STEPS][BACKEND_DETLOSS_RESULTS];
    float *out[STEPS + 1], *grads[STEPS], *bufs[STEPS];
    size_t nout, np, nb, arena;
    int to_bf16_ops, fused_outputs, skipped_outputs, fused_dy;
} run_out;

static void make_batch(uint8_t **img, float *t, int *nt) {
    size_t n = (size_t)B * S * S * 3;
    *img = malloc(n);
    rng r = rng_keyed(4, 5, 6);
    for (size_t i = 0; i < n; i++) (*img)[i] = (uint8_t)(rng_uniform(&r) * 256);
    *nt = 0;
    for (int b = 0; b < B; b++)
        for (int k = 0; k < 2 + b; k++, (*nt)++) {
            float *q = t + 6 * *nt;
            q[0] = (float)b, q[1] = (float)(k % 3);
            q[2] = 0.25f + 0.5f * (float)rng_uniform(&r);
            q[3] = 0.25f + 0.5f * (float)rng_uniform(&r);
            q[4] = 0.1f + 0.3f * (float)rng_uniform(&r);
            q[5] = 0.1f + 0.3f * (float)rng_uniform(&r);
        }
}

static void count_fusions(const model *m, run_out *o) {
    for (int i = 0; i < m->nops; i++) {
        const op *p = &m->ops[i];
        o->to_bf16_ops += p->kind == OP_TO_BF16;
        o->fused_outputs += p->kind == OP_BN_SILU && p->yb >= 0;
        o->skipped_outputs += p->skip_y;
        o->fused_dy += p->kind == OP_CONV && p->dyb_ready;
    }
}

static float *output_copy(model *m, size_t n) {
    float *c = malloc(n * sizeof *c);
    memcpy(c, model_output_host(m, 0), n * sizeof *c);
    return c;
}

/* be NULL: the default CPU backend */
static void run_on(backend *on, conv2d_prec prec, const char *yaml, bool fuse, const uint8_t *img,
                   const float *t, int nt, run_out *o) {
    char err[512];
    model *m = on ? model_create_on(on, yaml, 3, 11, err, sizeof err)
                  : model_create(yaml, 3, 11, err, sizeof err);
    cr_assert(m, "%s", err);
    model_set_conv_precision(m, prec);
    model_set_bf16_fusion(m, fuse);
    cr_assert_eq(model_plan(m, B, S, S, err, sizeof err), 0, "%s", err);
    count_fusions(m, o);
    o->arena = model_arena_bytes(m);
    int reg_max = model_config(m)->reg_max;
    detloss_hyp h[2] = {detloss_hyp_default(3, reg_max), detloss_hyp_one2one(3, reg_max)};
    backend *be = model_backend(m);
    double *res = backend_alloc(be, sizeof o->res[0]);
    o->nout = (size_t)B * model_num_anchors(m) * model_out_channels(m);
    o->np = model_num_params(m);
    o->nb = model_num_buffer_floats(m);
    float *p = malloc(o->np * sizeof *p);
    for (int s = 0; s < STEPS; s++) {
        backend_zero(be, res, sizeof o->res[s]);
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
        backend_to_host(be, o->res[s], res, sizeof o->res[s]);
        o->out[s] = output_copy(m, o->nout);
        o->grads[s] = malloc(o->np * sizeof(float));
        backend_to_host(be, o->grads[s], model_grads(m), o->np * sizeof(float));
        o->bufs[s] = malloc((o->nb + 1) * sizeof(float));
        model_buffers_to_host(m, o->bufs[s]);
        model_params_to_host(m, p); /* plain SGD, so that step 2 runs on other weights */
        for (size_t i = 0; i < o->np; i++) p[i] -= 0.05f * o->grads[s][i];
        model_params_from_host(m, p);
    }
    model_forward_u8(m, img, false);
    o->out[STEPS] = output_copy(m, o->nout);
    free(p);
    backend_free(be, res);
    model_free(m);
}

static void run(const char *yaml, bool fuse, const uint8_t *img, const float *t, int nt,
                run_out *o) {
    run_on(NULL, CONV2D_BF16, yaml, fuse, img, t, nt, o);
}

static void assert_same(const char *yaml, const char *what, int step, const void *a, const void *b,
                        size_t n, size_t size) {
    if (!memcmp(a, b, n * size)) return;
    size_t i = 0;
    while (!memcmp((const char *)a + i * size, (const char *)b + i * size, size)) i++;
    cr_assert_fail("%s step %d: %s differ first at [%zu] of %zu", yaml, step, what, i, n);
}

static void same_steps(const char *yaml, const run_out *a, const run_out *b) {
    for (int s = 0; s < STEPS; s++) {
        assert_same(yaml, "loss items", s, a->res[s], b->res[s], BACKEND_DETLOSS_RESULTS,
                    sizeof(double));
        assert_same(yaml, "head outputs", s, a->out[s], b->out[s], a->nout, sizeof(float));
        assert_same(yaml, "gradients", s, a->grads[s], b->grads[s], a->np, sizeof(float));
        assert_same(yaml, "BN buffers", s, a->bufs[s], b->bufs[s], a->nb, sizeof(float));
    }
    assert_same(yaml, "eval outputs", STEPS, a->out[STEPS], b->out[STEPS], a->nout, sizeof(float));
}

static void free_out(run_out *o) {
    for (int s = 0; s < STEPS; s++) free(o->out[s]), free(o->grads[s]), free(o->bufs[s]);
    free(o->out[STEPS]);
}

static void fused_equals_separate(const char *yaml) {
    uint8_t *img;
    float t[6 * 16];
    int nt;
    make_batch(&img, t, &nt);
    run_out o[2] = {0};
    for (int f = 0; f < 2; f++) run(yaml, f, img, t, nt, &o[f]);
    cr_log_info("%s: to_bf16 ops %d -> %d; BN + SiLU writing the shadow %d (no float output %d); "
                "conv dy from the BN + SiLU %d; arena %.1f -> %.1f MB",
                yaml, o[0].to_bf16_ops, o[1].to_bf16_ops, o[1].fused_outputs, o[1].skipped_outputs,
                o[1].fused_dy, o[0].arena / 1048576.0, o[1].arena / 1048576.0);
    cr_assert_eq(o[0].fused_outputs + o[0].fused_dy + o[0].skipped_outputs, 0,
                 "fusion off, yet fused ops");
    cr_assert_gt(o[1].fused_outputs, 10, "%s: the fusion is not in effect", yaml);
    cr_assert_eq(o[1].to_bf16_ops, o[0].to_bf16_ops - o[1].fused_outputs);
    cr_assert_gt(o[1].skipped_outputs, 0);
    cr_assert_gt(o[1].fused_dy, 10);
    cr_assert_leq(o[1].arena, o[0].arena, "float outputs nothing reads take more memory");
    same_steps(yaml, &o[0], &o[1]);
    cr_assert_gt(o[0].res[0][BACKEND_DETLOSS_TOTAL], 0, "no loss");
    for (int f = 0; f < 2; f++) free_out(&o[f]);
    free(img);
}

Test(bf16_fuse, yolov8n_steps_bit_identical_to_separate_conversions, .timeout = 240) {
    fused_equals_separate("yolov8n.yaml");
}

Test(bf16_fuse, yolo26n_steps_bit_identical_to_separate_conversions, .timeout = 240) {
    fused_equals_separate("yolo26n.yaml");
}

/* ---- the GPU worker's amp configuration, on the CPU backend in device-memory mode ---- */

static void destroy_shell(backend *be) {
    free(be);
}

Test(bf16_fuse, gpu_amp_configuration_trains_the_cpus_bf16_graph, .timeout = 240) {
    backend *host = backend_cpu_create(&(backend_cpu_opts){.conv_impl = CONV2D_AUTO});
    backend *dev =
        backend_cpu_create(&(backend_cpu_opts){.conv_impl = CONV2D_AUTO, .device_memory = true});
    /* the trainer's choice for a GPU backend (worker/device.h): the bf16 graph with amp only, and
     * only where the backend has its convolutions */
    cr_assert_eq(device_gpu_conv_precision(dev, BACKEND_PRECISION_BF16), CONV2D_BF16);
    cr_assert_eq(device_gpu_conv_precision(dev, BACKEND_PRECISION_TF32), CONV2D_FP32);
    cr_assert_eq(device_gpu_conv_precision(dev, BACKEND_PRECISION_FP32), CONV2D_FP32);
    backend *lacking = calloc(1, sizeof *lacking);
    *lacking = *dev;
    lacking->iface.destroy = destroy_shell;
    lacking->iface.conv2d_backward_bf16 = NULL;
    backend_register(lacking);
    cr_assert_eq(device_gpu_conv_precision(lacking, BACKEND_PRECISION_BF16), CONV2D_FP32);
    backend_destroy(lacking);
    /* steps of that configuration against the CPU's own bf16 steps (host memory): same bits */
    const char *yaml = "yolov8n.yaml";
    uint8_t *img;
    float t[6 * 16];
    int nt;
    make_batch(&img, t, &nt);
    run_out cpu = {0}, gpu_cfg = {0};
    run_on(host, CONV2D_BF16, yaml, true, img, t, nt, &cpu);
    run_on(dev, device_gpu_conv_precision(dev, BACKEND_PRECISION_BF16), yaml, true, img, t, nt,
           &gpu_cfg);
    cr_log_info("amp on a device-memory backend: BN + SiLU writing the shadow %d (no float output "
                "%d), conv dy from the BN + SiLU %d, to_bf16 ops left %d",
                gpu_cfg.fused_outputs, gpu_cfg.skipped_outputs, gpu_cfg.fused_dy,
                gpu_cfg.to_bf16_ops);
    cr_assert_gt(gpu_cfg.fused_outputs, 10, "the fused bf16 graph is not built");
    cr_assert_gt(gpu_cfg.skipped_outputs, 0);
    cr_assert_gt(gpu_cfg.fused_dy, 10);
    cr_assert_eq(gpu_cfg.fused_outputs, cpu.fused_outputs);
    cr_assert_eq(gpu_cfg.to_bf16_ops, cpu.to_bf16_ops);
    cr_assert_eq(gpu_cfg.arena, cpu.arena);
    same_steps(yaml, &cpu, &gpu_cfg);
    cr_assert_gt(cpu.res[0][BACKEND_DETLOSS_TOTAL], 0, "no loss");
    free_out(&cpu), free_out(&gpu_cfg);
    free(img);
    backend_destroy(host);
    backend_destroy(dev);
}
