/* Optimizers, clipping, EMA and the LR schedule against hand-computed values. */
#include "kernels/optim.h"
#include "kernels/schedule.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL 2e-6

static optim_tensor tensor1d(size_t off, int n, int group) {
    return (optim_tensor){
        .offset = off, .numel = (size_t)n, .ndim = 1, .shape = {n}, .group = group};
}

/* Flat buffer: [w0 w1 | gap (frozen) | bn0 | b0]; groups weight (wd 0.1), bn, bias (no decay). */
Test(optim, sgd_nesterov_three_steps_and_decay_only_on_weight_group) {
    optim_group g[OPTIM_MAX_GROUPS];
    int ng = optim_default_groups(OPTIM_SGD, 0.1, 0.9, 0.1, g);
    cr_assert_eq(ng, 3);
    cr_assert_eq(g[0].tag, PG_WEIGHT);
    cr_assert_eq(g[1].tag, PG_BN);
    cr_assert_eq(g[2].tag, PG_BIAS);
    cr_assert_float_eq(g[0].weight_decay, 0.1, 1e-15);
    cr_assert_float_eq(g[1].weight_decay, 0.0, 1e-15);
    cr_assert_float_eq(g[2].weight_decay, 0.0, 1e-15);
    optim_tensor t[3] = {tensor1d(0, 2, 0), tensor1d(3, 1, 1), tensor1d(4, 1, 2)};
    optimizer o;
    char err[256];
    cr_assert_eq(optim_init(&o, OPTIM_SGD, 5, t, 3, g, ng, err, sizeof err), 0, "%s", err);
    float p[5] = {1.0f, -2.0f, 7.0f, 1.0f, 0.5f};
    const float gr[5] = {0.5f, 0.25f, 3.0f, 0.5f, 1.0f};
    /* lr 0.1, mu 0.9, nesterov: g' = g + wd p; m = mu m + g'; p -= lr (g' + mu m)
     * w0 (wd .1): g'=.6 m=.6 upd=1.14 p=.886 | g'=.5886 m=1.1286 upd=1.60434 p=.725566
     *             | g'=.5725566 m=1.5882966 upd=2.00202354 p=.525363646
     * w1 (wd .1): g'=.05 m=.05 upd=.095 p=-2.0095 | g'=.04905 m=.09405 upd=.133695 p=-2.0228695
     *             | g'=.04771305 m=.13235805 upd=.166835295 p=-2.0395530295
     * bn0 (same p, g as w0, no decay): m=.5 upd=.95 p=.905 | m=.95 upd=1.355 p=.7695
     *             | m=1.355 upd=1.7195 p=.59755
     * b0: m=1 upd=1.9 p=.31 | m=1.9 upd=2.71 p=.039 | m=2.71 upd=3.439 p=-.3049 */
    const double w0[3] = {0.886, 0.725566, 0.525363646};
    const double w1[3] = {-2.0095, -2.0228695, -2.0395530295};
    const double bn[3] = {0.905, 0.7695, 0.59755};
    const double b0[3] = {0.31, 0.039, -0.3049};
    for (int s = 0; s < 3; s++) {
        optim_step(&o, p, gr);
        cr_assert_float_eq(p[0], w0[s], TOL, "step %d w0 %.9g", s + 1, p[0]);
        cr_assert_float_eq(p[1], w1[s], TOL, "step %d w1 %.9g", s + 1, p[1]);
        cr_assert_float_eq(p[3], bn[s], TOL, "step %d bn %.9g", s + 1, p[3]);
        cr_assert_float_eq(p[4], b0[s], TOL, "step %d bias %.9g", s + 1, p[4]);
        cr_assert_eq(p[2], 7.0f, "an entry outside every tensor is frozen");
    }
    cr_assert_float_eq(o.m1[4], 2.71, TOL, "momentum_buffer after 3 steps");
    optim_free(&o);
}

Test(optim, sgd_without_nesterov) {
    optim_group g = {.tag = PG_BIAS, .lr = 0.1, .initial_lr = 0.1, .momentum = 0.9};
    optim_tensor t = tensor1d(0, 1, 0);
    optimizer o;
    cr_assert_eq(optim_init(&o, OPTIM_SGD, 1, &t, 1, &g, 1, NULL, 0), 0);
    o.nesterov = 0;
    float p = 0.5f, gr = 1.0f;
    /* p -= lr m: m = 1, 1.9, 2.71 -> p = .4, .21, -.061 */
    const double want[3] = {0.4, 0.21, -0.061};
    for (int s = 0; s < 3; s++) {
        optim_step(&o, &p, &gr);
        cr_assert_float_eq(p, want[s], TOL, "step %d: %.9g", s + 1, p);
    }
    optim_free(&o);
}

Test(optim, adamw_three_steps) {
    optim_group g[OPTIM_MAX_GROUPS];
    int ng = optim_default_groups(OPTIM_ADAMW, 0.01, 0.9, 0.1, g);
    optim_tensor t[2] = {tensor1d(0, 1, 0), tensor1d(1, 1, 2)};
    optimizer o;
    cr_assert_eq(optim_init(&o, OPTIM_ADAMW, 2, t, 2, g, ng, NULL, 0), 0);
    cr_assert_float_eq(o.eps, 1e-8, 1e-20);
    cr_assert_float_eq(o.beta2, 0.999, 1e-15);
    float p[2] = {1.0f, 0.0f};
    /* weight (wd .1, lr .01), constant g = .5: the bias-corrected moments are exactly g and g^2, so
     * each step is p = p (1 - lr wd) - lr g / (|g| + 1e-8):
     *   .999 - .0099999998 = .9890000002;  .98801100 - .01 = .9780110004;  .9670329896
     * bias (no decay), g = 1 then 0: step 1: m=.1 v=.001, mhat=vhat=1: p = -.01/(1+1e-8) =
     * -.0099999999 step 2: m=.09 v=.000999, mhat=.09/.19=.47368421 vhat=.000999/.001999=.49974987,
     *   sqrt=.70692989: p = -.0099999999 - .01*.47368421/.70692989 = -.0167005824 */
    const double w[3] = {0.9890000002, 0.9780110004, 0.9670329896};
    const double b[2] = {-0.0099999999, -0.0167005824};
    float gr[2] = {0.5f, 1.0f};
    for (int s = 0; s < 3; s++) {
        if (s == 1) gr[1] = 0.0f;
        optim_step(&o, p, gr);
        cr_assert_float_eq(p[0], w[s], TOL, "step %d weight %.10g", s + 1, p[0]);
        if (s < 2) cr_assert_float_eq(p[1], b[s], TOL, "step %d bias %.10g", s + 1, p[1]);
    }
    cr_assert_eq(o.step, 3);
    optim_free(&o);
}

/* ---- MuSGD --------------------------------------------------------------------------------- */

/* Householder reflection I - 2 v v^T / (v^T v), n x n row-major: an orthogonal matrix. */
static void householder(const double *v, int n, double *h) {
    double vv = 0;
    for (int i = 0; i < n; i++) vv += v[i] * v[i];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) h[i * n + j] = (i == j) - 2 * v[i] * v[j] / vv;
}

/* NS5 acts on each singular value alone: sigma -> a s + b s^3 + c s^5, five times. */
static double ns5_scalar(double s) {
    for (int i = 0; i < 5; i++) s = 3.4445 * s - 4.7750 * s * s * s + 2.0315 * pow(s, 5);
    return s;
}

Test(optim, newton_schulz_gives_near_unit_singular_values) {
    enum { R = 4, C = 6 };
    const double sv[R] = {3.0, 2.0, 1.5, 1.0};
    const double u1[R] = {1, -2, 0.5, 1}, v1[C] = {0.3, 1, -1, 2, 0.5, -0.7};
    double U[R * R], V[C * C];
    householder(u1, R, U);
    householder(v1, C, V);
    /* G = U diag(sv) V[:, :R]^T; then U^T NS5(G) V must be diag(ns5_scalar(sv / |G|_F)) */
    float G[R * C], Gt[C * R];
    double fro = 0;
    for (int i = 0; i < R; i++) fro += sv[i] * sv[i];
    fro = sqrt(fro);
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) {
            double s = 0;
            for (int k = 0; k < R; k++) s += U[i * R + k] * sv[k] * V[j * C + k];
            G[i * C + j] = (float)s;
            Gt[j * R + i] = (float)s;
        }
    for (int bf = 0; bf < 2; bf++) {
        float X[R * C], Xt[C * R];
        memcpy(X, G, sizeof X);
        memcpy(Xt, Gt, sizeof Xt);
        float work[256];
        cr_assert_leq(optim_ns5_work_floats(R, C), 256);
        optim_ns5(X, R, C, bf, work);
        optim_ns5(Xt, C, R, bf, work); /* rows > cols: transposed inside, same answer transposed */
        const double tol = bf ? 0.04 : 1e-4;
        for (int i = 0; i < R; i++) {
            for (int j = 0; j < C; j++) {
                cr_assert_float_eq(Xt[j * R + i], X[i * C + j], bf ? 0.02 : 1e-5);
                if (j >= R) continue;
                double d = 0;
                for (int a = 0; a < R; a++)
                    for (int b = 0; b < C; b++) d += U[a * R + i] * X[a * C + b] * V[b * C + j];
                double want = i == j ? ns5_scalar(sv[i] / fro) : 0.0;
                cr_assert_float_eq(d, want, tol, "bf16 %d: (U^T O V)[%d][%d] = %g, want %g", bf, i,
                                   j, d, want);
                if (i == j) cr_assert(d > 0.6 && d < 1.25, "singular value %g not near 1", d);
            }
        }
    }
}

Test(optim, bf16_rounding_is_nearest_even) {
    cr_assert_eq(optim_bf16_round(1.0f), 1.0f);
    /* 1 + 2^-8 is halfway between bf16 1 and 1 + 2^-7: ties to even (1) */
    cr_assert_eq(optim_bf16_round(1.0f + 0x1p-8f), 1.0f);
    cr_assert_eq(optim_bf16_round(1.0f + 0x1p-8f + 0x1p-20f), 1.0f + 0x1p-7f);
    cr_assert_eq(optim_bf16_round(1.0f + 3 * 0x1p-8f), 1.0f + 0x1p-6f); /* tie, odd -> even */
    cr_assert(isnan(optim_bf16_round(NAN)));
}

/* One MuSGD step on a 2x3 weight with g = 2E, E = [[1,0,0],[0,1,0]] (orthonormal rows):
 *   m1 = .1 g = .2E;  u = lerp(g, m1, .9) = .38E;  NS5(u) = f E, f = ns5_scalar(.38/(.38 sqrt2 +
 * 1e-7)) = 1.10811136 (both singular values equal 1/sqrt2);  scale sqrt(max(1, 2/3)) = 1 p1 = p -
 * .2 lr f E;  then SGD on p1: g' = g + wd p1, m2 = g', p2 = p1 - lr (g' + .9 m2) A 1-D tensor of
 * the same optimizer gets plain Nesterov SGD. */
Test(optim, musgd_step_by_hand) {
    optim_group g[OPTIM_MAX_GROUPS];
    int ng = optim_default_groups(OPTIM_MUSGD, 0.01, 0.9, 0.01, g);
    cr_assert_eq(ng, 8);
    int gm = optim_group_index(OPTIM_MUSGD, PG_MUON, 0),
        gb = optim_group_index(OPTIM_MUSGD, PG_BIAS, 0);
    cr_assert_eq(gm, 7);
    cr_assert_eq(gb, 5);
    cr_assert(g[gm].use_muon);
    optim_tensor t[2] = {{.offset = 0, .numel = 6, .ndim = 2, .shape = {2, 3}, .group = gm},
                         tensor1d(6, 1, gb)};
    for (int bf = 0; bf < 2; bf++) {
        optimizer o;
        cr_assert_eq(optim_init(&o, OPTIM_MUSGD, 7, t, 2, g, ng, NULL, 0), 0);
        o.ns_bf16 = bf;
        float p[7] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.5f};
        const float gr[7] = {2, 0, 0, 0, 2, 0, 1.0f};
        const double E[6] = {1, 0, 0, 0, 1, 0};
        double f = ns5_scalar(0.38 / (0.38 * sqrt(2.0) + 1e-7));
        cr_assert_float_eq(f, 1.10811136, 1e-7);
        double want[7];
        for (int i = 0; i < 6; i++) {
            double p1 = p[i] - 0.2 * 0.01 * f * E[i];
            double gp = gr[i] + 0.01 * p1;
            want[i] = p1 - 0.01 * (gp + 0.9 * gp);
        }
        want[6] = 0.5 - 0.01 * 1.9; /* Nesterov SGD, first step */
        optim_step(&o, p, gr);
        for (int i = 0; i < 7; i++)
            cr_assert_float_eq(p[i], want[i], bf ? 2e-4 : TOL, "bf16 %d p[%d] = %.9g want %.9g", bf,
                               i, p[i], want[i]);
        cr_assert_float_eq(o.m1[0], 0.2, 1e-7, "Muon EMA buffer");
        cr_assert_float_eq(o.m2[0], 2 + 0.01 * (0.1 - 0.2 * 0.01 * f), 1e-6, "SGD buffer");
        optim_free(&o);
    }
}

/* The scale factor uses the gradient's last two dims: a (2,1,3,1) conv weight (kh/kw = 3) gets
 * sqrt(3) times the Muon step of a (2,1,1,3) one with the same numbers. */
Test(optim, musgd_conv_scale_quirk) {
    optim_group g = {
        .tag = PG_MUON, .lr = 0.01, .initial_lr = 0.01, .momentum = 0.9, .use_muon = 1};
    float pa[6] = {0}, pb[6] = {0};
    const float gr[6] = {2, 0, 0, 0, 2, 0};
    optim_tensor ta = {.numel = 6, .ndim = 4, .shape = {2, 1, 3, 1}, .group = 0};
    optim_tensor tb = {.numel = 6, .ndim = 4, .shape = {2, 1, 1, 3}, .group = 0};
    optimizer oa, ob;
    cr_assert_eq(optim_init(&oa, OPTIM_MUSGD, 6, &ta, 1, &g, 1, NULL, 0), 0);
    cr_assert_eq(optim_init(&ob, OPTIM_MUSGD, 6, &tb, 1, &g, 1, NULL, 0), 0);
    oa.ns_bf16 = ob.ns_bf16 = 0;
    optim_step(&oa, pa, gr);
    optim_step(&ob, pb, gr);
    double f = ns5_scalar(0.38 / (0.38 * sqrt(2.0) + 1e-7));
    /* same SGD part (wd 0); Muon parts -.002 f sqrt3 vs -.002 f */
    cr_assert_float_eq(pa[0] - pb[0], -0.002 * f * (sqrt(3.0) - 1), 1e-6);
    cr_assert_float_eq(pa[4] - pb[4], -0.002 * f * (sqrt(3.0) - 1), 1e-6);
    cr_assert_float_eq(pa[1], pb[1], 1e-9);
    optim_free(&oa);
    optim_free(&ob);
}

Test(optim, init_rejects_bad_tables) {
    optim_group g = {.lr = 0.1};
    optim_tensor t = {.offset = 4, .numel = 3, .ndim = 1, .shape = {3}, .group = 0};
    optimizer o;
    char err[200];
    cr_assert_eq(optim_init(&o, OPTIM_SGD, 6, &t, 1, &g, 1, err, sizeof err), -1);
    cr_assert(strstr(err, "tensor 0"), "%s", err);
    t.offset = 0;
    t.shape[0] = 2;
    cr_assert_eq(optim_init(&o, OPTIM_SGD, 6, &t, 1, &g, 1, err, sizeof err), -1);
    cr_assert(strstr(err, "numel"), "%s", err);
    t.shape[0] = 3;
    t.group = 1;
    cr_assert_eq(optim_init(&o, OPTIM_SGD, 6, &t, 1, &g, 1, err, sizeof err), -1);
    cr_assert(strstr(err, "group"), "%s", err);
}

Test(optim, grad_clip_global_norm) {
    float g[4] = {3, 0, 0, 4}; /* norm 5 < 10: untouched */
    cr_assert_float_eq(optim_clip_grad_norm(g, 4, OPTIM_CLIP_MAX_NORM), 5.0, 1e-12);
    cr_assert_eq(g[0], 3.0f);
    cr_assert_eq(g[3], 4.0f);
    float h[4] = {30, 0, 0, 40}; /* norm 50: scaled by 10/(50 + 1e-6) */
    cr_assert_float_eq(optim_clip_grad_norm(h, 4, 10.0), 50.0, 1e-12);
    cr_assert_float_eq(h[0], 6.0, 1e-6);
    cr_assert_float_eq(h[3], 8.0, 1e-6);
    cr_assert(h[3] < 8.0f, "factor is below 1 by the 1e-6 guard");
    /* global over everything: 100000 entries of 0.1 -> norm 10*sqrt(10) */
    size_t n = 100000;
    float *big = malloc(n * sizeof *big);
    for (size_t i = 0; i < n; i++) big[i] = 0.1f;
    double tot = optim_clip_grad_norm(big, n, 10.0);
    cr_assert_float_eq(tot, 10 * sqrt(10.0), 1e-4);
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)big[i] * big[i];
    cr_assert_float_eq(sqrt(s), 10.0, 1e-4);
    free(big);
}

Test(optim, ema_decay_and_update) {
    model_ema e;
    ema_init(&e);
    /* d = .9999 (1 - exp(-u/2000)) */
    cr_assert_float_eq(ema_decay_at(&e, 1), 4.99825033e-4, 1e-12);
    cr_assert_float_eq(ema_decay_at(&e, 2000), 0.632057347, 1e-9);
    cr_assert_float_eq(ema_decay_at(&e, 10000), 0.993162727, 1e-9);
    float ep[2] = {1, 1}, mp[2] = {0, 2}, eb[1] = {4}, mb[1] = {0};
    float *ema[2] = {ep, eb};
    const float *mod[2] = {mp, mb};
    size_t n[2] = {2, 1};
    double d = ema_update(&e, 2, ema, mod, n);
    cr_assert_eq(e.updates, 1);
    cr_assert_float_eq(d, 4.99825033e-4, 1e-12);
    cr_assert_float_eq(ep[0], d, 1e-9, "ema = d*1 + (1-d)*0");
    cr_assert_float_eq(ep[1], d + 2 * (1 - d), 1e-6);
    cr_assert_float_eq(eb[0], 4 * d, 1e-8, "BN buffers are averaged too");
    d = ema_update(&e, 2, ema, mod, n);
    cr_assert_eq(e.updates, 2);
    cr_assert_float_eq(d, 0.9999 * (1 - exp(-2.0 / 2000)), 1e-12);
}

Test(optim, param_groups_and_auto_rule) {
    cr_assert_eq(optim_tag_of("model.0.conv.weight", 4, 0, 0), PG_WEIGHT);
    cr_assert_eq(optim_tag_of("model.0.bn.weight", 1, 1, 0), PG_BN);
    cr_assert_eq(optim_tag_of("model.0.bn.bias", 1, 1, 0), PG_BIAS);
    cr_assert_eq(optim_tag_of("model.22.cv2.0.2.bias", 1, 0, 0), PG_BIAS);
    cr_assert_eq(optim_tag_of("model.0.conv.weight", 4, 0, 1), PG_MUON);
    cr_assert_eq(optim_tag_of("model.0.bn.weight", 1, 1, 1), PG_BN);
    cr_assert_eq(optim_tag_of("model.9.logit_scale", 1, 0, 0), PG_BN);
    cr_assert(optim_lr3x_match("model.23.one2one_cv3.0.0.conv.weight"));
    cr_assert(optim_lr3x_match("model.23.cv3.2.2.bias"));
    cr_assert(!optim_lr3x_match("model.22.cv3.0.0.conv.weight"));
    cr_assert(!optim_lr3x_match("model.23.cv2.0.0.conv.weight"));
    optim_group g[OPTIM_MAX_GROUPS];
    cr_assert_eq(optim_default_groups(OPTIM_MUSGD, 0.01, 0.9, 5e-4, g), 8);
    for (int i = 0; i < 8; i++) {
        cr_assert_float_eq(g[i].initial_lr, i % 2 ? 0.01 : 0.03, 1e-15, "group %d", i);
        cr_assert_eq(g[i].use_muon, i >= 6);
        cr_assert_float_eq(g[i].weight_decay, (i < 2 || i >= 6) ? 5e-4 : 0.0, 1e-15);
    }
    cr_assert_eq(optim_group_index(OPTIM_MUSGD, PG_BN, 1), 2);
    cr_assert_eq(optim_group_index(OPTIM_SGD, PG_BIAS, 0), 2);
    /* iterations = ceil(n / max(batch, nbs)) * epochs */
    cr_assert_eq(optim_auto_iterations(118287, 16, 64, 100), 1849 * 100);
    cr_assert_eq(optim_auto_iterations(128, 256, 64, 10), 10);
    double lr, mom;
    cr_assert_eq(optim_auto(184900, 80, &lr, &mom), OPTIM_MUSGD);
    cr_assert_float_eq(lr, 0.01, 1e-15);
    cr_assert_float_eq(mom, 0.9, 1e-15);
    cr_assert_eq(optim_auto(10000, 80, &lr, &mom), OPTIM_ADAMW, "> 10000, not >=");
    cr_assert_eq(lr, 0.000119); /* round(0.01/84, 6) */
    optim_auto(100, 1, &lr, &mom);
    cr_assert_eq(lr, 0.002);
    optim_auto(100, 3, &lr, &mom);
    cr_assert_eq(lr, 0.001429);
    optim_auto(100, 0, &lr, &mom); /* unknown nc counts as 10 */
    cr_assert_eq(lr, 0.000714);
}

/* ---- schedule ------------------------------------------------------------------------------ */

Test(optim, lr_lambda_linear_and_cosine) {
    sched_cfg c = sched_defaults(100, 16);
    cr_assert_float_eq(sched_lf(&c, 0), 1.0, 1e-15);
    cr_assert_float_eq(sched_lf(&c, 50), 0.505, 1e-15);
    cr_assert_float_eq(sched_lf(&c, 99), 0.0199, 1e-15, "last epoch is lrf + (1-lrf)/E");
    c.cos_lr = 1;
    cr_assert_float_eq(sched_lf(&c, 0), 1.0, 1e-15);
    cr_assert_float_eq(sched_lf(&c, 50), 0.505, 1e-12);
    cr_assert_float_eq(sched_lf(&c, 25), 1 - 0.99 * (1 - sqrt(0.5)) / 2, 1e-12);
    cr_assert_float_eq(sched_lf(&c, 100), 0.01, 1e-12);
}

Test(optim, accumulate_decay_and_warmup_length) {
    sched_cfg c = sched_defaults(100, 16);
    cr_assert_eq(sched_accumulate(&c), 4);
    cr_assert_float_eq(sched_weight_decay(&c, 5e-4, 4), 5e-4, 1e-15);
    c.batch = 24; /* 2.67 -> 3 */
    cr_assert_eq(sched_accumulate(&c), 3);
    cr_assert_float_eq(sched_weight_decay(&c, 5e-4, 3), 5.625e-4, 1e-15);
    c.batch = 128; /* 0.5 -> 0 (half to even) -> 1 */
    cr_assert_eq(sched_accumulate(&c), 1);
    cr_assert_float_eq(sched_weight_decay(&c, 5e-4, 1), 1e-3, 1e-15);
    c.batch = 25; /* 64/25 = 2.56 -> 3 */
    cr_assert_eq(sched_accumulate(&c), 3);
    cr_assert_eq(sched_round_half_even(2.5), 2);
    cr_assert_eq(sched_round_half_even(3.5), 4);
    cr_assert_eq(sched_round_half_even(-2.5), -2);
    cr_assert_eq(sched_round_half_even(2.4999), 2);
    cr_assert_eq(sched_warmup_iters(&c, 10), 100, "at least 100");
    cr_assert_eq(sched_warmup_iters(&c, 1000), 3000);
    c.warmup_epochs = 0.5;
    cr_assert_eq(sched_warmup_iters(&c, 501), 250, "250.5 -> 250");
    cr_assert_eq(sched_warmup_iters(&c, 503), 252, "251.5 -> 252");
    c.warmup_epochs = 0;
    cr_assert_eq(sched_warmup_iters(&c, 1000), -1);
    /* accumulate 4 from last_opt_step -1: steps after iterations 3, 7, 11, ... */
    long last = -1;
    int steps_at[3], k = 0;
    for (long ni = 0; ni < 12; ni++)
        if (sched_should_step(ni, last, 4)) steps_at[k++] = (int)(last = ni);
    cr_assert_eq(k, 3);
    cr_assert_eq(steps_at[0], 3);
    cr_assert_eq(steps_at[2], 11);
}

/* SGD groups at lr 0.01, 100 epochs, nb = 50 batches/epoch -> nw = max(150, 100) = 150, batch 16 ->
 * nbs/batch = 4. */
Test(optim, warmup_lr_momentum_accumulate) {
    optim_group g[OPTIM_MAX_GROUPS];
    int ng = optim_default_groups(OPTIM_SGD, 0.01, 0.9, 5e-4, g);
    optim_tensor t = tensor1d(0, 1, 0);
    optimizer o;
    cr_assert_eq(optim_init(&o, OPTIM_SGD, 1, &t, 1, g, ng, NULL, 0), 0);
    sched_cfg c = sched_defaults(100, 16);
    long nw = sched_warmup_iters(&c, 50);
    cr_assert_eq(nw, 150);
    /* ni 0: weight/bn lr 0, bias lr warmup_bias_lr 0.1, momentum 0.8, accumulate 1 */
    int acc = sched_apply(&c, 0, 0, nw, 4, &o);
    cr_assert_eq(acc, 1);
    cr_assert_float_eq(o.group[0].lr, 0.0, 1e-15);
    cr_assert_float_eq(o.group[1].lr, 0.0, 1e-15);
    cr_assert_float_eq(o.group[2].lr, 0.1, 1e-15);
    cr_assert_float_eq(o.group[0].momentum, 0.8, 1e-15);
    /* ni 75 (epoch 1): target .01 lf(1) = .009901; weight .009901/2 = .0049505;
     * bias .1 + (.009901 - .1)/2 = .0549505; momentum .8 + .137/2 = .8685;
     * accumulate round(1 + 3/2 = 2.5) = 2 (half to even) */
    acc = sched_apply(&c, 1, 75, nw, acc, &o);
    cr_assert_eq(acc, 2);
    cr_assert_float_eq(o.group[0].lr, 0.0049505, 1e-12);
    cr_assert_float_eq(o.group[1].lr, 0.0049505, 1e-12);
    cr_assert_float_eq(o.group[2].lr, 0.0549505, 1e-12);
    cr_assert_float_eq(o.group[2].momentum, 0.8685, 1e-12);
    /* ni 150 = nw (epoch 3): every group at .01 lf(3) = .009703, momentum .937, accumulate 4 */
    acc = sched_apply(&c, 3, 150, nw, acc, &o);
    cr_assert_eq(acc, 4);
    for (int i = 0; i < 3; i++) {
        cr_assert_float_eq(o.group[i].lr, 0.009703, 1e-12);
        cr_assert_float_eq(o.group[i].momentum, 0.937, 1e-12);
    }
    /* after warmup: lr from the lambda, momentum and accumulate left alone */
    o.group[0].momentum = 0.5;
    acc = sched_apply(&c, 4, 200, nw, acc, &o);
    cr_assert_eq(acc, 4);
    cr_assert_float_eq(o.group[2].lr, 0.01 * 0.9604, 1e-12);
    cr_assert_float_eq(o.group[0].momentum, 0.5, 1e-15);
    /* no warmup at all: momentum keeps the constructor's 0.9 (the quirk, seen from the other side)
     */
    optim_group g2[OPTIM_MAX_GROUPS];
    optim_default_groups(OPTIM_SGD, 0.01, 0.9, 5e-4, g2);
    memcpy(o.group, g2, sizeof g2[0] * 3);
    c.warmup_epochs = 0;
    acc = sched_apply(&c, 0, 0, sched_warmup_iters(&c, 50), 4, &o);
    cr_assert_eq(acc, 4);
    cr_assert_float_eq(o.group[0].momentum, 0.9, 1e-15);
    cr_assert_float_eq(o.group[2].lr, 0.01, 1e-15);
    optim_free(&o);
    /* AdamW has no momentum key: warmup leaves beta1 alone */
    ng = optim_default_groups(OPTIM_ADAMW, 0.001, 0.9, 5e-4, g);
    cr_assert_eq(optim_init(&o, OPTIM_ADAMW, 1, &t, 1, g, ng, NULL, 0), 0);
    c = sched_defaults(100, 16);
    sched_apply(&c, 0, 10, 150, 4, &o);
    cr_assert_float_eq(o.group[0].momentum, 0.9, 1e-15);
    cr_assert_float_eq(o.group[0].lr, 0.001 * 10 / 150, 1e-15);
    optim_free(&o);
}

#include "tests/oracle.h"

/* yolov8n's 184 parameter tensors (oracle file, state_dict names) grouped as build_optimizer does
 * give Ultralytics' well-known log line "57 weight(decay=0.0), 64 weight(decay=0.0005), 63
 * bias(decay=0.0)". Then one clipped SGD step over the flat buffer with the oracle's gradients,
 * the frozen DFL conv left out of the table: it must not move, every other tensor must. */
Test(optim, yolov8n_groups_match_ultralytics_and_step_real_table) {
    const char *f = oracle_path("yolov8n-nc3-64.h5");
    cr_assert(f, "oracle file not found");
    int nn = 0;
    char **names = oracle_list(f, "/params", &nn);
    cr_assert_eq(nn, 184);
    int count[4] = {0}, nt = 0, dfl = -1;
    optim_tensor *t = calloc((size_t)nn, sizeof *t);
    float **vals = calloc((size_t)nn, sizeof *vals), **grads = calloc((size_t)nn, sizeof *grads);
    size_t *numel = calloc((size_t)nn, sizeof *numel), total = 0;
    for (int i = 0; i < nn; i++) {
        char path[256];
        size_t dims[8];
        int nd;
        snprintf(path, sizeof path, "/params/%s", names[i]);
        vals[i] = oracle_read_f32(f, path, &numel[i], &nd, dims);
        cr_assert(vals[i], "%s", path);
        optim_tag tag = optim_tag_of(names[i], nd, strstr(names[i], ".bn.") != NULL, 0);
        count[tag]++;
        snprintf(path, sizeof path, "/grads/%s", names[i]);
        grads[i] = oracle_read_f32(f, path, NULL, NULL, NULL);
        if (strstr(names[i], ".dfl")) {
            dfl = i;
            cr_assert_null(grads[i], "the frozen DFL weight has no gradient");
        } else {
            cr_assert(grads[i], "%s", path);
            t[nt] = (optim_tensor){.offset = total, .numel = numel[i], .ndim = nd, .group = tag};
            for (int d = 0; d < nd; d++) t[nt].shape[d] = (int)dims[d];
            nt++;
        }
        total += numel[i];
    }
    cr_assert_eq(count[PG_BN], 57);
    cr_assert_eq(count[PG_WEIGHT], 64);
    cr_assert_eq(count[PG_BIAS], 63);
    cr_assert_geq(dfl, 0);
    float *p = malloc(total * sizeof *p), *g = calloc(total, sizeof *g);
    float *p0 = malloc(total * sizeof *p0);
    for (size_t i = 0, off = 0; i < (size_t)nn; off += numel[i], i++) {
        memcpy(p + off, vals[i], numel[i] * sizeof *p);
        if (grads[i]) memcpy(g + off, grads[i], numel[i] * sizeof *g);
    }
    memcpy(p0, p, total * sizeof *p);
    optim_group gr[OPTIM_MAX_GROUPS];
    int ng = optim_default_groups(OPTIM_SGD, 0.01, 0.937, 5e-4, gr);
    optimizer o;
    char err[200];
    cr_assert_eq(optim_init(&o, OPTIM_SGD, total, t, nt, gr, ng, err, sizeof err), 0, "%s", err);
    double norm = optim_clip_grad_norm(g, total, OPTIM_CLIP_MAX_NORM);
    cr_assert(isfinite(norm) && norm > 0);
    optim_step(&o, p, g);
    /* every trainable tensor gets a momentum buffer (= its clipped gradient plus decay; some
     * updates are below the float spacing of their weights, so p itself may not change) */
    int moved = 0, buffered = 0;
    for (size_t i = 0, off = 0; i < (size_t)nn; off += numel[i], i++) {
        int same = memcmp(p + off, p0 + off, numel[i] * sizeof *p) == 0;
        double mm = 0;
        for (size_t k = 0; k < numel[i]; k++) mm += fabs(o.m1[off + k]);
        if ((int)i == dfl) {
            cr_assert(same, "the DFL weight moved");
            cr_assert_eq(mm, 0.0);
        } else {
            moved += !same;
            buffered += mm > 0;
        }
    }
    cr_assert_eq(buffered, nn - 1, "every trainable tensor takes a step");
    cr_assert_gt(moved, nn / 2, "most weights change: %d", moved);
    optim_free(&o);
    for (int i = 0; i < nn; i++) {
        free(vals[i]);
        free(grads[i]);
    }
    oracle_free_list(names, nn);
    free(vals);
    free(grads);
    free(numel);
    free(t);
    free(p);
    free(g);
    free(p0);
}
