/* The op harness (tests/backend_ops.h) as a Criterion suite, `backend_ops`:
 *  - the CPU backend in device-memory mode against the CPU backend, bit for bit: every case runs
 *    through the harness's copies, so the harness itself is exercised without a GPU;
 *  - a deliberately wrong backend: the harness must catch each planted error and report a missing
 *    op as not supported;
 *  - the bf16 limits against a CPU emulation of bf16 convolutions;
 *  - the CUDA backend against the CPU in fp32, tf32, bf16 and with cuDNN's depthwise, and its
 *    memory and events: skipped, with the reason, where there is no GPU. */
#include "kernels/backend_cuda.h"
#include "kernels/backend_impl.h"
#include "kernels/optim.h"
#include "tests/backend_ops.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct tally {
    int cases[BACKEND_OP_COUNT], pass, fail, unsupported;
    char first_fail[400];
    bool failed_op[BACKEND_OP_COUNT], unsupported_op[BACKEND_OP_COUNT];
} tally;

static void count(const bops_result *r, void *arg) {
    tally *t = arg;
    t->cases[r->op]++;
    if (r->status == BOPS_PASS) t->pass++;
    if (r->status == BOPS_NOT_SUPPORTED) {
        t->unsupported++;
        t->unsupported_op[r->op] = true;
        cr_log_info("%s (%s): not supported", backend_op_name(r->op), r->shape);
    }
    if (r->status == BOPS_FAIL) {
        t->fail++;
        t->failed_op[r->op] = true;
        if (!t->first_fail[0])
            snprintf(t->first_fail, sizeof t->first_fail, "%s (%s): %s", backend_op_name(r->op),
                     r->shape, r->detail);
    }
}

static backend *cpu(bool device_memory) {
    return backend_cpu_create(&(backend_cpu_opts){.threads = 1, .device_memory = device_memory});
}

Test(backend_ops, cpu_device_memory_mode_equals_cpu_bitwise, .timeout = 120) {
    backend *ref = cpu(false), *test = cpu(true);
    tally t = {0};
    int fails =
        bops_run(&(bops_opts){.ref = ref, .test = test, .exact = true, .seed = 1}, count, &t);
    cr_assert_eq(fails, 0, "%d failures; first: %s", fails, t.first_fail);
    cr_assert_eq(t.unsupported, 0);
    for (int op = 0; op < BACKEND_OP_COUNT; op++)
        cr_assert_geq(t.cases[op], 1, "no case for %s", backend_op_name((backend_op)op));
    char err[200] = "";
    cr_assert_eq(bops_check_memory(test, err, sizeof err), 0, "%s", err);
    backend_destroy(ref);
    backend_destroy(test);
}

/* A backend with planted errors: accumulate overwrites instead of adding, SiLU is off by 1e-3
 * relative, the batch-norm running variance is not updated, NMS loses each image's last kept
 * detection, the BN + SiLU eval's bf16 copy truncates, and add is missing. */
static backend *inner_of_wrong;
static void wrong_accumulate(backend *be, size_t n, const float *x, float *y) {
    (void)be;
    backend_copy(inner_of_wrong, y, x, n * sizeof *x);
}
static void wrong_silu(backend *be, size_t n, const float *x, float *y) {
    (void)be;
    backend_silu_forward(inner_of_wrong, n, x, y);
    backend_scale(inner_of_wrong, n, 1.001f, y);
}
static void wrong_bn(backend *be, int m, int c, const float *x, const float *g, const float *b,
                     float eps, float mom, float *rm, float *rv, float *sm, float *si, float *y) {
    (void)be, (void)rv;
    backend_batchnorm_forward_train(inner_of_wrong, m, c, x, g, b, eps, mom, rm, NULL, sm, si, y);
}
static void wrong_nms(backend *be, const backend_nms_desc *d, const float *pred, detection *dets,
                      int32_t *counts) {
    (void)be;
    backend_nms(inner_of_wrong, d, pred, dets, counts); /* host memory underneath */
    for (int b = 0; b < d->images; b++)
        if (counts[b] > 0) counts[b]--;
}
/* bf16 copies by truncation instead of rounding to nearest even: BOPS_BF16_OUTPUT_LIMIT must
 * catch it (device memory of the CPU backend is host memory underneath) */
static void wrong_bn_silu_eval_bf16(backend *be, int m, int c, const float *x, const float *g,
                                    const float *b, const float *rm, const float *rv, float eps,
                                    float *y, bf16 *yb) {
    (void)be;
    float *t = malloc((size_t)m * c * sizeof *t);
    backend_batchnorm_silu_forward_eval(inner_of_wrong, m, c, x, g, b, rm, rv, eps, t);
    for (size_t i = 0; i < (size_t)m * c; i++) {
        uint32_t u;
        memcpy(&u, t + i, 4);
        yb[i] = (bf16)(u >> 16);
    }
    if (y) memcpy(y, t, (size_t)m * c * sizeof *t);
    free(t);
}
static void destroy_wrong(backend *be) {
    free(be);
}

Test(backend_ops, harness_catches_planted_errors, .timeout = 120) {
    backend *ref = cpu(false);
    inner_of_wrong = cpu(true);
    backend *bad = calloc(1, sizeof *bad);
    *bad = *inner_of_wrong;
    bad->name = "wrong";
    bad->iface.destroy = destroy_wrong;
    bad->iface.accumulate = wrong_accumulate;
    bad->iface.silu_forward = wrong_silu;
    bad->iface.batchnorm_forward_train = wrong_bn;
    bad->iface.nms = wrong_nms;
    bad->iface.batchnorm_silu_forward_eval_bf16 = wrong_bn_silu_eval_bf16;
    bad->iface.add = NULL;
    backend_register(bad);
    for (int exact = 0; exact < 2; exact++) {
        tally t = {0};
        int fails =
            bops_run(&(bops_opts){.ref = ref, .test = bad, .exact = exact, .seed = 2}, count, &t);
        cr_assert_eq(fails, t.fail);
        for (int op = 0; op < BACKEND_OP_COUNT; op++) {
            bool planted = op == BACKEND_OP_ACCUMULATE || op == BACKEND_OP_SILU_FORWARD ||
                           op == BACKEND_OP_BATCHNORM_FORWARD_TRAIN || op == BACKEND_OP_NMS ||
                           op == BACKEND_OP_BATCHNORM_SILU_FORWARD_EVAL_BF16;
            cr_assert_eq(t.failed_op[op], planted, "%s %s (exact %d)", backend_op_name(op),
                         planted ? "not caught" : "failed", exact);
            cr_assert_eq(t.unsupported_op[op], op == BACKEND_OP_ADD, "%s", backend_op_name(op));
        }
    }
    backend_destroy(bad);
    backend_destroy(inner_of_wrong);
    backend_destroy(ref);
}

Test(backend_ops, nmse_and_nonfinite) {
    float r[4] = {1, 2, 3, 4}, t[4] = {1, 2, 3, 5};
    size_t bad = 9;
    cr_assert_float_eq(bops_nmse(t, r, 4, &bad), 1.0 / 30.0, 1e-15);
    cr_assert_eq(bad, 0);
    t[3] = NAN;
    bops_nmse(t, r, 4, &bad);
    cr_assert_eq(bad, 1, "a NaN where the reference is finite");
    r[3] = INFINITY, t[3] = INFINITY;
    cr_assert_eq(bops_nmse(t, r, 4, &bad), 0.0);
    cr_assert_eq(bad, 0, "both infinite is no mismatch");
    float z[2] = {0, 0}, e[2] = {0, 1e-3f};
    cr_assert_float_eq(bops_nmse(e, z, 2, NULL), 1e-6, 1e-12, "all-zero reference: plain sum");
    cr_assert_lt(bops_limit(BACKEND_OP_ADD, BACKEND_PRECISION_FP32),
                 bops_limit(BACKEND_OP_CONV2D_FORWARD, BACKEND_PRECISION_BF16));
}

/* ---- bf16 limits: a CPU emulation of the bf16 convolutions (inputs and result rounded to bf16,
 * fp32 sums) stays 10x under them, and they are not 100x above it ---- */

static void round_bf16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = optim_bf16_round(x[i]);
}
static float *urand(size_t n, unsigned seed) {
    float *x = malloc(n * sizeof *x);
    srand(seed);
    for (size_t i = 0; i < n; i++) x[i] = (float)rand() / RAND_MAX * 2 - 1;
    return x;
}

Test(backend_ops, bf16_limits_cover_an_emulation_of_bf16_convs, .timeout = 120) {
    bops_case cs[256]; /* bops_run's room */
    int n = bops_cases(cs, 256);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        if (cs[i].op != BACKEND_OP_CONV2D_FORWARD) continue;
        const int *p = cs[i].p;
        conv2d_desc d = conv2d_make(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8]);
        size_t nx = (size_t)d.n * d.h * d.w * d.cin, ny = (size_t)d.n * d.oh * d.ow * d.cout;
        size_t nw = (size_t)d.cout * d.kh * d.kw * (d.cin / d.groups);
        float *x = urand(nx, 1), *w = urand(nw, 2), *dy = urand(ny, 3);
        float *xb = malloc(nx * 4), *wb = malloc(nw * 4), *dyb = malloc(ny * 4);
        memcpy(xb, x, nx * 4), memcpy(wb, w, nw * 4), memcpy(dyb, dy, ny * 4);
        round_bf16(xb, nx), round_bf16(wb, nw), round_bf16(dyb, ny);
        float *y = malloc(ny * 4), *yb = malloc(ny * 4),
              *ws = malloc((conv2d_workspace_floats(&d) + 1) * 4);
        float *dx = calloc(nx, 4), *dxb = calloc(nx, 4), *dw = calloc(nw, 4), *dwb = calloc(nw, 4);
        conv2d_forward(&d, x, w, NULL, y, ws);
        conv2d_forward(&d, xb, wb, NULL, yb, ws);
        conv2d_backward(&d, x, w, dy, dx, dw, NULL, ws);
        conv2d_backward(&d, xb, wb, dyb, dxb, dwb, NULL, ws);
        round_bf16(yb, ny), round_bf16(dxb, nx), round_bf16(dwb, nw);
        double e[3] = {bops_nmse(yb, y, ny, NULL), bops_nmse(dxb, dx, nx, NULL),
                       bops_nmse(dwb, dw, nw, NULL)};
        cr_log_info("bf16 emulation %s: y %.3g dx %.3g dw %.3g", cs[i].shape, e[0], e[1], e[2]);
        for (int k = 0; k < 3; k++) {
            cr_assert_gt(e[k], 0.0, "the emulation rounds something");
            worst = e[k] > worst ? e[k] : worst;
        }
        free(x), free(w), free(dy), free(xb), free(wb), free(dyb), free(y), free(yb), free(ws);
        free(dx), free(dxb), free(dw), free(dwb);
    }
    cr_log_info("bf16 conv emulation: worst NMSE %.3g", worst);
    cr_assert_lt(worst * 10, bops_limit(BACKEND_OP_CONV2D_FORWARD, BACKEND_PRECISION_BF16),
                 "worst NMSE %.3g", worst);
    cr_assert_gt(worst * 100, bops_limit(BACKEND_OP_CONV2D_FORWARD, BACKEND_PRECISION_BF16),
                 "the limit is not loose beyond use: worst %.3g", worst);
}

/* ---- the CUDA backend (skipped without a GPU) ---- */

static backend *cuda_or_skip(backend_cuda_opts o) {
    char why[200] = "", err[300] = "";
    if (backend_cuda_device_count(why, sizeof why) == 0) cr_skip_test("needs a CUDA GPU: %s", why);
    backend *be = backend_cuda_create(&o, err, sizeof err);
    cr_assert_not_null(be, "%s", err);
    return be;
}

/* Ops the CUDA backend leaves out by design, each reported "not supported" by the harness: the
 * CPU's bf16 route (bf16 shadow copies of activations for oneDNN; on a GPU cuDNN takes the
 * precision instead, and the model fuses only where supported) and the write variant of the
 * backward data, which backend.c composes from zero + the accumulating op. */
/* The CUDA backend has every op but those it omits by design at a precision (bops_cuda_omits: the
 * bf16 graph's, outside bf16). At bf16 they are compared with the CPU's: the convolutions at the
 * bf16 conv limit, the bf16 outputs at BOPS_BF16_OUTPUT_LIMIT, the float outputs at the fp32
 * limit. */
static void cuda_against_cpu(backend_cuda_opts o) {
    backend *g = cuda_or_skip(o), *ref = cpu(false);
    tally t = {0};
    int fails = bops_run(&(bops_opts){.ref = ref, .test = g, .precision = o.precision, .seed = 3},
                         count, &t);
    cr_log_info("cuda %s: %d passed, %d failed, %d not supported",
                backend_precision_name(o.precision), t.pass, t.fail, t.unsupported);
    cr_assert_eq(fails, 0, "%d failures; first: %s", fails, t.first_fail);
    for (int op = 0; op < BACKEND_OP_COUNT; op++) {
        const char *name = backend_op_name((backend_op)op);
        if (bops_cuda_omits((backend_op)op, o.precision))
            cr_assert(t.unsupported_op[op] && !backend_supports(g, (backend_op)op),
                      "%s: said not supported (the bf16 graph's ops: bf16 precision only)", name);
        else
            cr_assert(!t.unsupported_op[op] && t.cases[op] >= 1, "the CUDA backend lacks %s", name);
    }
    backend_destroy(g);
    backend_destroy(ref);
}

/* fp32 with our depthwise kernel named (the tight comparison of ours); tf32 and bf16 take the
 * default AUTO, whatever it chose; cuDNN's depthwise below. */
Test(backend_ops, cuda_fp32_matches_cpu, .timeout = 300) {
    cuda_against_cpu((backend_cuda_opts){.precision = BACKEND_PRECISION_FP32,
                                         .depthwise = BACKEND_DEPTHWISE_OWN});
}
Test(backend_ops, cuda_tf32_matches_cpu, .timeout = 300) {
    cuda_against_cpu((backend_cuda_opts){.precision = BACKEND_PRECISION_TF32});
}
Test(backend_ops, cuda_bf16_matches_cpu, .timeout = 300) {
    cuda_against_cpu((backend_cuda_opts){.precision = BACKEND_PRECISION_BF16});
}
Test(backend_ops, cuda_cudnn_depthwise_and_heuristics_match_cpu, .timeout = 300) {
    cuda_against_cpu((backend_cuda_opts){.depthwise = BACKEND_DEPTHWISE_CUDNN,
                                         .search = BACKEND_CONV_HEURISTIC});
}

/* AUTO: a depthwise shape planned once is timed both ways per direction and its choice follows
 * backend_depthwise_pick of those times; planning it again, or running it, keeps the one choice;
 * a plain conv gets none. Under HEURISTIC nothing is timed and ours is taken. The outputs of the
 * chosen routes are the op harness's (cuda_tf32/bf16_matches_cpu run AUTO). */
Test(backend_ops, cuda_auto_depthwise_times_and_keeps_one_choice, .timeout = 120) {
    conv2d_desc dw = conv2d_make(8, 40, 40, 64, 64, 3, 1, 1, 64),
                plain = conv2d_make(8, 40, 40, 64, 64, 3, 1, 1, 1);
    for (int heur = 0; heur <= 1; heur++) {
        backend *g = cuda_or_skip(
            (backend_cuda_opts){.search = heur ? BACKEND_CONV_HEURISTIC : BACKEND_CONV_FIND});
        cr_assert_eq(backend_cuda_options(g)->depthwise, BACKEND_DEPTHWISE_AUTO, "the default");
        backend_depthwise_choice ch[4];
        backend_conv2d_workspace_floats(g, &plain);
        cr_assert_eq(backend_cuda_depthwise_choices(g, ch, 4), 0, "a plain conv has no choice");
        backend_conv2d_workspace_floats(g, &dw);
        backend_conv2d_workspace_floats(g, &dw);
        cr_assert_eq(backend_cuda_depthwise_choices(g, ch, 4), 1, "one choice per shape");
        backend_depthwise_choice first = ch[0];
        cr_assert_eq(first.timed, !heur);
        for (int k = 0; k < 3; k++) {
            if (heur) {
                cr_assert_eq(first.use[k], BACKEND_DEPTHWISE_OWN, "untimed: ours");
                continue;
            }
            cr_assert(first.own_ms[k] > 0 && first.cudnn_ms[k] > 0 && first.find_ms[k] >= 0,
                      "direction %d: %g %g %g ms", k, first.own_ms[k], first.cudnn_ms[k],
                      first.find_ms[k]);
            cr_assert_eq(first.use[k], backend_depthwise_pick(first.own_ms[k], first.cudnn_ms[k],
                                                              first.cudnn_deterministic[k], false));
            cr_log_info("auto depthwise direction %d: ours %.4f ms, cuDNN %.4f ms (find %.4f): %s",
                        k, first.own_ms[k], first.cudnn_ms[k], first.find_ms[k],
                        backend_depthwise_name(first.use[k]));
        }
        /* the ops run the shape without planning it anew */
        size_t nx = (size_t)8 * 40 * 40 * 64, nw = 64 * 9;
        float *x = backend_alloc(g, nx * sizeof *x), *y = backend_alloc(g, nx * sizeof *y),
              *w = backend_alloc(g, nw * sizeof *w), *gw = backend_alloc(g, nw * sizeof *gw);
        backend_zero(g, x, nx * sizeof *x);
        backend_zero(g, w, nw * sizeof *w);
        backend_zero(g, gw, nw * sizeof *gw);
        backend_conv2d_forward(g, &dw, x, w, NULL, y, NULL);
        backend_conv2d_backward_data(g, &dw, w, y, x, NULL);
        backend_conv2d_backward_filter(g, &dw, x, y, gw, NULL, NULL);
        backend_synchronize(g);
        cr_assert_eq(backend_cuda_depthwise_choices(g, ch, 4), 1);
        cr_assert_eq(memcmp(ch[0].use, first.use, sizeof first.use), 0, "the choice is kept");
        backend_free(g, x), backend_free(g, y), backend_free(g, w), backend_free(g, gw);
        backend_destroy(g);
    }
}

Test(backend_ops, cuda_memory_copies_and_events, .timeout = 60) {
    backend *g = cuda_or_skip((backend_cuda_opts){0});
    char err[200] = "";
    cr_assert_eq(bops_check_memory(g, err, sizeof err), 0, "%s", err);
    cr_assert_not(backend_memory_is_host(g));
    cr_assert_not_null(backend_cuda_options(g));
    for (int op = 0; op < BACKEND_OP_COUNT; op++)
        cr_assert(backend_supports(g, (backend_op)op), "cuda lacks %s",
                  backend_op_name((backend_op)op));
    backend_destroy(g);
}
