/* Whole-model finite-difference check (suite `model`): a width-reduced yolo26-style network
 * (tests/fixtures/tiny-yolo26n.yaml: every module type, end2end head) at 64x64, batch 2, train
 * mode. Scalar L = sum(out_o2m * r1) + sum(out_o2o * r2) with fixed random r, accumulated in
 * double; the analytic gradient is model_backward(r1, r2). The one2one head reads DETACHED
 * features, so for everything outside one2one_* the analytic gradient is that of the one2many term
 * alone (the function itself still depends on those parameters through the one2one head):
 * differences for those use L_o2m only, and for one2one_* parameters the full L. Central
 * differences on sampled parameters (the largest-gradient element of sampled tensors, so the signal
 * is well above float noise) and on input pixels. Steps: 3e-4 for parameters (larger steps cross
 * max-pool switches and BN curvature: at 3e-3 the first conv's difference is off by 20%; at 1e-4
 * float noise shows) and 1e-2 for pixels (their gradients are small, so float noise dominates below
 * ~3e-3). */
#include "common/rng.h"
#include "kernels/threads.h"
#include "worker/model.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/testenv.h"

#define B 2
#define S 64

typedef struct fd_ctx {
    model *m;
    float *img, *r[2];
    size_t nout;
    bool o2m_only;
} fd_ctx;

static double loss(fd_ctx *c) {
    model_forward(c->m, c->img, true);
    double L = 0;
    for (int br = 0; br < (c->o2m_only ? 1 : model_num_branches(c->m)); br++) {
        const float *o = model_output(c->m, br);
        for (size_t i = 0; i < c->nout; i++) L += (double)o[i] * c->r[br][i];
    }
    return L;
}

static double central(fd_ctx *c, float *x, double h) {
    float x0 = *x;
    *x = (float)(x0 + h);
    double hp = (double)*x - x0;
    double lp = loss(c);
    *x = (float)(x0 - h);
    double hm = x0 - (double)*x;
    double lm = loss(c);
    *x = x0;
    return (lp - lm) / (hp + hm);
}

/* oneDNN follows OpenMP's default (every core); libgomp's spinning barriers make that very slow
 * on a loaded shared machine, so these tests pin one thread as the worker does per rank. */
static void one_thread(void) {
    kernels_set_threads(1);
}

Test(model, whole_model_finite_differences, .init = one_thread, .timeout = 120) {
    char err[512];
    model *m = model_create(fixture_path("tiny-yolo26n.yaml"), 0, 7, err, sizeof err);
    cr_assert(m, "%s", err);
    cr_assert_eq(model_plan(m, B, S, S, err, sizeof err), 0, "%s", err);
    cr_assert_eq(model_num_branches(m), 2);
    model_want_input_grad(m, true);
    fd_ctx c = {.m = m};
    c.nout = (size_t)B * model_num_anchors(m) * model_out_channels(m);
    rng g = rng_keyed(11, 0, 0);
    c.img = malloc((size_t)B * S * S * 3 * sizeof *c.img);
    for (size_t i = 0; i < (size_t)B * S * S * 3; i++) c.img[i] = (float)rng_uniform(&g);
    for (int br = 0; br < 2; br++) {
        c.r[br] = malloc(c.nout * sizeof *c.r[br]);
        for (size_t i = 0; i < c.nout; i++) c.r[br][i] = (float)rng_normal(&g);
    }
    /* analytic */
    model_zero_grad(m);
    loss(&c);
    model_backward(m, c.r[0], c.r[1]);
    size_t np = model_num_params(m);
    float *grad = malloc(np * sizeof *grad);
    memcpy(grad, model_grads(m), np * sizeof *grad);
    size_t nimg = (size_t)B * S * S * 3;
    float *gimg = malloc(nimg * sizeof *gimg);
    memcpy(gimg, model_input_grad(m), nimg * sizeof *gimg);
    double gmax = 0;
    for (size_t i = 0; i < np; i++) gmax = fmax(gmax, fabs(grad[i]));
    cr_assert(gmax > 0);

    /* parameters: every 9th tensor, its largest-gradient element, plus a random element in every
     * other one of those */
    float *p = model_params(m);
    int checked = 0, bad = 0;
    double worst = 0;
    const char *worst_name = "";
    for (int t = 0; t < model_num_param_tensors(m); t += 9) {
        const model_tensor *T = model_param_tensor(m, t);
        size_t best = 0;
        for (size_t k = 1; k < T->numel; k++)
            if (fabs(grad[T->offset + k]) > fabs(grad[T->offset + best])) best = k;
        size_t picks[2] = {best, (size_t)rng_int(&g, (int)T->numel)};
        for (int q = 0; q < (t % 18 ? 1 : 2); q++) {
            size_t i = T->offset + picks[q];
            double h = 3e-4;
            c.o2m_only = !strstr(T->name, "one2one_");
            double fd = central(&c, &p[i], h), an = grad[i];
            /* relative to the element, with a floor tied to the largest gradient of the model */
            double err_rel = fabs(fd - an) / fmax(fabs(an), 1e-2 * gmax);
            if (err_rel > worst) worst = err_rel, worst_name = T->name;
            if (err_rel > 2e-2) {
                bad++;
                cr_log_warn("%s[%zu]: fd %.6g analytic %.6g", T->name, picks[q], fd, an);
            }
            checked++;
        }
    }
    cr_log_info("whole-model FD: %d parameter elements, worst rel %.3g (%s)", checked, worst,
                worst_name);
    cr_assert_eq(bad, 0, "%d of %d parameter elements off by more than 2%%", bad, checked);

    /* input pixels: the largest-gradient pixel and some random ones */
    double imax = 0;
    size_t ibest = 0;
    for (size_t i = 0; i < nimg; i++)
        if (fabs(gimg[i]) > imax) imax = fabs(gimg[i]), ibest = i;
    cr_assert(imax > 0, "input gradient is zero");
    double iworst = 0;
    c.o2m_only = true;
    for (int q = 0; q < 8; q++) {
        size_t i = q == 0 ? ibest : (size_t)rng_int(&g, (int)nimg);
        double fd = central(&c, &c.img[i], 1e-2), an = gimg[i];
        double e = fabs(fd - an) / fmax(fabs(an), 1e-2 * imax);
        iworst = fmax(iworst, e);
        cr_assert(e <= 2e-2, "pixel %zu: fd %.6g analytic %.6g", i, fd, an);
    }
    cr_log_info("whole-model FD: 8 input pixels, worst rel %.3g", iworst);
    free(grad);
    free(gimg);
    free(c.img);
    free(c.r[0]);
    free(c.r[1]);
    model_free(m);
}

/* The one2one head runs on detached features: its gradient must not reach the backbone. */
Test(model, one2one_is_detached, .init = one_thread) {
    char err[512];
    model *m = model_create(fixture_path("tiny-yolo26n.yaml"), 0, 3, err, sizeof err);
    cr_assert(m, "%s", err);
    cr_assert_eq(model_plan(m, B, S, S, err, sizeof err), 0, "%s", err);
    size_t nout = (size_t)B * model_num_anchors(m) * model_out_channels(m);
    float *img = calloc((size_t)B * S * S * 3, sizeof *img), *r = malloc(nout * sizeof *r);
    rng g = rng_keyed(5, 0, 0);
    for (size_t i = 0; i < (size_t)B * S * S * 3; i++) img[i] = (float)rng_uniform(&g);
    for (size_t i = 0; i < nout; i++) r[i] = (float)rng_normal(&g);
    model_zero_grad(m);
    model_forward(m, img, true);
    model_backward(m, NULL, r);
    int nonzero_o2o = 0;
    for (int t = 0; t < model_num_param_tensors(m); t++) {
        const model_tensor *T = model_param_tensor(m, t);
        double s = 0;
        for (size_t k = 0; k < T->numel; k++) s += fabs(model_grads(m)[T->offset + k]);
        if (strstr(T->name, "one2one_"))
            nonzero_o2o += s > 0;
        else
            cr_assert_eq(s, 0.0, "%s got gradient from the one2one branch", T->name);
    }
    cr_assert(nonzero_o2o > 10);
    free(img);
    free(r);
    model_free(m);
}

/* Non-square input, another family and scale: anchors, finite outputs, and every conv weight
 * reached by the backward (a disconnected op would leave a zero gradient). */
Test(model, yolo11s_non_square_every_weight_has_gradient, .init = one_thread, .timeout = 120) {
    char err[512];
    model *m = model_create("yolo11s.yaml", 5, 1, err, sizeof err);
    cr_assert(m, "%s", err);
    cr_assert_eq(model_plan(m, 2, 64, 96, err, sizeof err), 0, "%s", err);
    cr_assert_eq(model_num_anchors(m), 8 * 12 + 4 * 6 + 2 * 3);
    cr_assert_eq(model_out_channels(m), 64 + 5);
    const float *pts = model_anchor_points(m), *st = model_anchor_strides(m);
    cr_assert(pts[2 * 95] == 11.5f && pts[2 * 95 + 1] == 7.5f && st[95] == 8.0f);
    cr_assert(pts[2 * 96] == 0.5f && st[96] == 16.0f && st[125] == 32.0f);
    size_t nimg = (size_t)2 * 64 * 96 * 3, nout = (size_t)2 * 126 * 69;
    float *img = malloc(nimg * sizeof *img), *d = malloc(nout * sizeof *d);
    rng g = rng_keyed(9, 0, 0);
    for (size_t i = 0; i < nimg; i++) img[i] = (float)rng_uniform(&g);
    for (size_t i = 0; i < nout; i++) d[i] = (float)rng_normal(&g);
    model_zero_grad(m);
    model_forward(m, img, true);
    for (size_t i = 0; i < nout; i++) cr_assert(isfinite(model_output(m, 0)[i]));
    model_backward(m, d, NULL);
    for (int t = 0; t < model_num_param_tensors(m); t++) {
        const model_tensor *T = model_param_tensor(m, t);
        if (T->role != MODEL_WEIGHT || !T->trainable) continue;
        double s = 0;
        for (size_t k = 0; k < T->numel; k++) s += fabs(model_grads(m)[T->offset + k]);
        cr_assert(s > 0 && isfinite(s), "%s: gradient sum %g", T->name, s);
    }
    free(img);
    free(d);
    model_free(m);
}
