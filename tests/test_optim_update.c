/* optim_update (clip, step, zero, EMA in one pass) against the four operations in turn, bit for
 * bit; and the vector AdamW lanes against the scalar tail. */
#include "kernels/optim.h"
#include "kernels/threads.h"

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A table with every case the update distinguishes: a 4-D conv weight (Muon under MuSGD) larger
 * than one piece and than the parallel threshold, a frozen gap no tensor covers, BN weights, a
 * 2-D weight, biases of odd sizes, a tensor listed out of offset order, and a gap at the end. */
enum { NT = 6, N = 120000 };
static void table(optim_kind kind, optim_tensor t[NT]) {
    bool mu = kind == OPTIM_MUSGD;
    t[0] = (optim_tensor){.offset = 0, .numel = 36864, .ndim = 4, .shape = {64, 64, 3, 3}};
    t[0].group = optim_group_index(kind, mu ? PG_MUON : PG_WEIGHT, 0);
    t[1] = (optim_tensor){.offset = 36900, .numel = 37, .ndim = 1, .shape = {37}};
    t[1].group = optim_group_index(kind, PG_BN, 1);
    t[2] = (optim_tensor){.offset = 60000, .numel = 512, .ndim = 2, .shape = {32, 16}};
    t[2].group = optim_group_index(kind, mu ? PG_MUON : PG_WEIGHT, 1);
    t[3] = (optim_tensor){.offset = 36937, .numel = 20011, .ndim = 1, .shape = {20011}};
    t[3].group = optim_group_index(kind, PG_BIAS, 0);
    t[4] = (optim_tensor){.offset = 60512, .numel = 50000, .ndim = 1, .shape = {50000}};
    t[4].group = optim_group_index(kind, PG_BN, 0);
    t[5] = (optim_tensor){.offset = 110512, .numel = 9, .ndim = 1, .shape = {9}};
    t[5].group = optim_group_index(kind, PG_BIAS, 1);
}

static float urand(uint64_t *s, float scale) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return scale * ((float)(*s >> 40) / (float)(1 << 24) - 0.5f);
}

typedef struct {
    optimizer o;
    float *p, *g, *e;
} state;

static void state_init(state *s, optim_kind kind, int nesterov) {
    optim_group gr[OPTIM_MAX_GROUPS];
    int ng = optim_default_groups(kind, 0.01, 0.9, 5e-4, gr);
    optim_tensor t[NT];
    table(kind, t);
    char err[200];
    cr_assert_eq(optim_init(&s->o, kind, N, t, NT, gr, ng, err, sizeof err), 0, "%s", err);
    s->o.nesterov = nesterov;
    s->p = malloc(N * sizeof *s->p);
    s->g = malloc(N * sizeof *s->g);
    s->e = malloc(N * sizeof *s->e);
    uint64_t r = 7;
    for (size_t i = 0; i < N; i++) s->p[i] = urand(&r, 2), s->e[i] = urand(&r, 2);
}

static void state_free(state *s) {
    optim_free(&s->o);
    free(s->p);
    free(s->g);
    free(s->e);
}

static void fill_grads(float *g, int step, float scale) {
    uint64_t r = 1000 + (uint64_t)step;
    for (size_t i = 0; i < N; i++) g[i] = urand(&r, scale);
}

static void assert_same(const float *a, const float *b, size_t n, const char *what, int step) {
    for (size_t i = 0; i < n; i++)
        cr_assert(!memcmp(&a[i], &b[i], sizeof *a), "step %d %s[%zu]: fused %.9g, in turn %.9g",
                  step, what, i, (double)a[i], (double)b[i]);
}

/* Four steps with the gradient norm alternately above (clipped) and below max_norm. */
static void fused_equals_in_turn(optim_kind kind, int nesterov, int threads) {
    kernels_set_threads(threads);
    state f, t;
    state_init(&f, kind, nesterov);
    state_init(&t, kind, nesterov);
    for (int step = 0; step < 4; step++) {
        float scale = step % 2 ? 1e-3f : 1.0f; /* norm ~ 100 or ~ 0.1 against max_norm 10 */
        fill_grads(f.g, step, scale);
        fill_grads(t.g, step, scale);
        double d = 0.3 + 0.1 * step;
        double nf = optim_update(&f.o, f.p, f.g, 10.0, f.e, d);
        double nt = optim_clip_grad_norm(t.g, N, 10.0);
        optim_step(&t.o, t.p, t.g);
        memset(t.g, 0, N * sizeof *t.g);
        ema_blend(t.e, t.p, N, d);
        cr_assert(nf == nt, "step %d: norm %.17g against %.17g", step, nf, nt);
        assert_same(f.p, t.p, N, "params", step);
        assert_same(f.e, t.e, N, "ema", step);
        assert_same(f.g, t.g, N, "grads", step);
        assert_same(f.o.m1, t.o.m1, N, "m1", step);
        if (t.o.m2) assert_same(f.o.m2, t.o.m2, N, "m2", step);
        cr_assert_eq(f.o.step, t.o.step);
    }
    state_free(&f);
    state_free(&t);
}

Test(optim_update, adamw_equals_clip_step_zero_ema_bitwise) {
    fused_equals_in_turn(OPTIM_ADAMW, 1, 2);
    fused_equals_in_turn(OPTIM_ADAMW, 1, 1);
}
Test(optim_update, sgd_equals_clip_step_zero_ema_bitwise) {
    fused_equals_in_turn(OPTIM_SGD, 1, 2);
    fused_equals_in_turn(OPTIM_SGD, 0, 2);
}
Test(optim_update, musgd_equals_clip_step_zero_ema_bitwise) {
    fused_equals_in_turn(OPTIM_MUSGD, 1, 2);
}

/* Overlapping tensors (no table the trainer builds has them) take the ops in turn: still equal. */
Test(optim_update, overlapping_tensors_fall_back_to_the_ops_in_turn) {
    optim_group gr[OPTIM_MAX_GROUPS];
    int ng = optim_default_groups(OPTIM_ADAMW, 0.01, 0.9, 5e-4, gr);
    optim_tensor t[2] = {{.offset = 0, .numel = 100, .ndim = 1, .shape = {100}, .group = 0},
                         {.offset = 50, .numel = 100, .ndim = 1, .shape = {100}, .group = 2}};
    optimizer a, b;
    cr_assert_eq(optim_init(&a, OPTIM_ADAMW, 160, t, 2, gr, ng, NULL, 0), 0);
    cr_assert_eq(optim_init(&b, OPTIM_ADAMW, 160, t, 2, gr, ng, NULL, 0), 0);
    float pa[160], pb[160], ga[160], gb[160], ea[160], eb[160];
    for (int i = 0; i < 160; i++) {
        pa[i] = pb[i] = 0.01f * (float)i;
        ga[i] = gb[i] = 0.5f - 0.003f * (float)i;
        ea[i] = eb[i] = 1.0f;
    }
    optim_update(&a, pa, ga, 1.0, ea, 0.5);
    optim_clip_grad_norm(gb, 160, 1.0);
    optim_step(&b, pb, gb);
    memset(gb, 0, sizeof gb);
    ema_blend(eb, pb, 160, 0.5);
    cr_assert(!memcmp(pa, pb, sizeof pa) && !memcmp(ea, eb, sizeof ea) &&
              !memcmp(ga, gb, sizeof ga));
    optim_free(&a);
    optim_free(&b);
}

/* AdamW's vector lanes (the leading multiple of the vector width of each chunk) against its
 * scalar tail: 64 one-element tensors (always the scalar loop) hold the values of one 64-element
 * tensor (vector lanes where the CPU has them); after three steps each pair is bitwise equal. */
Test(optim_update, adamw_vector_lanes_equal_the_scalar_loop) {
    enum { K = 64 };
    optim_group gr[OPTIM_MAX_GROUPS];
    int ng = optim_default_groups(OPTIM_ADAMW, 0.01, 0.9, 5e-4, gr);
    optim_tensor t[K + 1];
    t[0] = (optim_tensor){.offset = 0, .numel = K, .ndim = 1, .shape = {K}, .group = 0};
    for (int i = 0; i < K; i++)
        t[i + 1] = (optim_tensor){
            .offset = (size_t)(K + i), .numel = 1, .ndim = 1, .shape = {1}, .group = 0};
    for (int hi = 0; hi < 2; hi++) { /* momentum 0.9 and 0.3: both of torch.lerp's branches */
        gr[0].momentum = hi ? 0.3 : 0.9;
        optimizer o;
        cr_assert_eq(optim_init(&o, OPTIM_ADAMW, 2 * K, t, K + 1, gr, ng, NULL, 0), 0);
        float p[2 * K];
        uint64_t r = 99;
        for (int i = 0; i < K; i++) p[i] = p[K + i] = urand(&r, 4);
        for (int s = 0; s < 3; s++) {
            float g[2 * K];
            for (int i = 0; i < K; i++) g[i] = g[K + i] = urand(&r, s == 2 ? 1e-6f : 3);
            optim_step(&o, p, g);
        }
        for (int i = 0; i < K; i++) {
            cr_assert(!memcmp(&p[i], &p[K + i], sizeof *p), "momentum branch %d p[%d]", hi, i);
            cr_assert(!memcmp(&o.m1[i], &o.m1[K + i], sizeof *p), "m1[%d]", i);
            cr_assert(!memcmp(&o.m2[i], &o.m2[K + i], sizeof *p), "m2[%d]", i);
        }
        optim_free(&o);
    }
}
