/* The CUDA kernels' device functions (kernels/cuda/ ..._hd.h), run on the host as the kernels run
 * them (every element; the reductions split into the same chunks and lanes and added in the same
 * order) and compared with the CPU kernels they must match (suite `cuda_hd`). Needs no GPU: this
 * is what the CUDA backend's arithmetic and index math are checked with here; the launches, the
 * cuDNN and cuBLAS calls and the memory traffic are checked by the op harness on a GPU
 * (tests/test_backend_ops.c). Bitwise where the order of the float operations is the CPU's. */
#include "common/rng.h"
#include "kernels/activation.h"
#include "kernels/batchnorm.h"
#include "kernels/batchnorm_silu.h"
#include "kernels/cuda/attention_hd.h"
#include "kernels/cuda/batchnorm_hd.h"
#include "kernels/cuda/conv2d_depthwise_hd.h"
#include "kernels/cuda/dfl_hd.h"
#include "kernels/cuda/elementwise_hd.h"
#include "kernels/cuda/layout_hd.h"
#include "kernels/cuda/optim_hd.h"
#include "kernels/cuda/pool_hd.h"
#include "kernels/pool.h"
#include "kernels/tensor_ops.h"
#include "kernels/threads.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void one_thread(void) {
    kernels_set_threads(1);
}

static float *rnd(size_t n, uint64_t seed, double lo, double hi) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    rng r = rng_keyed(seed, n, 11);
    for (size_t i = 0; i < n; i++) x[i] = (float)rng_range(&r, lo, hi);
    return x;
}
static float *dup(const float *x, size_t n) {
    float *y = malloc((n ? n : 1) * sizeof *y);
    memcpy(y, x, n * sizeof *y);
    return y;
}
static void same_bits(const float *a, const float *b, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++)
        cr_assert(!memcmp(a + i, b + i, sizeof *a), "%s[%zu]: device function %.9g, CPU %.9g", what,
                  i, a[i], b[i]);
}
static void close_rel(const float *a, const float *b, size_t n, double tol, const char *what) {
    for (size_t i = 0; i < n; i++)
        cr_assert(fabs((double)a[i] - b[i]) <= tol * (fabs((double)b[i]) + 1e-6),
                  "%s[%zu]: device function %.9g, CPU %.9g", what, i, a[i], b[i]);
}

/* |a - b| <= tol max|b|: sums whose order differs, with cancellation */
static void close_norm(const float *a, const float *b, size_t n, double tol, const char *what) {
    double mx = 0;
    for (size_t i = 0; i < n; i++) mx = fabs((double)b[i]) > mx ? fabs((double)b[i]) : mx;
    for (size_t i = 0; i < n; i++)
        cr_assert(fabs((double)a[i] - b[i]) <= tol * mx, "%s[%zu]: device function %.9g, CPU %.9g",
                  what, i, a[i], b[i]);
}

/* ---- elementwise and layout: bitwise ---- */

Test(cuda_hd, silu_forward_backward_bitwise, .init = one_thread) {
    enum { N = 20011 };
    float *x = rnd(N, 1, -30, 30), *dy = rnd(N, 2, -1, 1), *dx0 = rnd(N, 3, -1, 1);
    float ext[] = {0.0f, -0.0f, 88.5f, -88.5f, 1e-30f, -1e30f, 1e30f, 3.0f};
    memcpy(x, ext, sizeof ext);
    float *y = malloc(N * 4), *yd = malloc(N * 4), *dx = dup(dx0, N), *dxd = dup(dx0, N);
    silu_forward(N, x, y);
    silu_backward(N, x, dy, dx);
    for (size_t i = 0; i < N; i++) {
        yd[i] = silu_fwd_1(x[i]);
        dxd[i] += silu_bwd_1(x[i], dy[i]);
    }
    same_bits(yd, y, N, "silu y");
    same_bits(dxd, dx, N, "silu dx");
    uint8_t u8[300];
    for (int i = 0; i < 300; i++) u8[i] = (uint8_t)(i * 7);
    normalize_u8(300, u8, 1.0f / 255, y);
    for (int i = 0; i < 300; i++) yd[i] = normalize_u8_1(u8[i], 1.0f / 255);
    same_bits(yd, y, 300, "normalize_u8");
    free(x), free(dy), free(dx0), free(y), free(yd), free(dx), free(dxd);
}

Test(cuda_hd, upsample_and_strided_views_bitwise, .init = one_thread) {
    const int n = 2, h = 3, w = 5, c = 7;
    size_t nin = (size_t)n * h * w * c, nout = nin * 4;
    float *x = rnd(nin, 4, -1, 1), *dy = rnd(nout, 5, -1, 1), *dx0 = rnd(nin, 6, -1, 1);
    float *y = malloc(nout * 4), *yd = malloc(nout * 4), *dx = dup(dx0, nin), *dxd = dup(dx0, nin);
    upsample2x_forward(n, h, w, c, x, y);
    upsample2x_backward(n, h, w, c, dy, dx);
    for (size_t o = 0; o < nout; o++) yd[o] = x[upsample2x_src(o, h, w, c)];
    for (size_t i = 0; i < nin; i++) dxd[i] += upsample2x_grad(dy, i, h, w, c);
    same_bits(yd, y, nout, "upsample y");
    same_bits(dxd, dx, nin, "upsample dx");
    /* concat / slice backward: dx view [m][c] (ld cx, at off) += dy view [m][c] (ld ct) */
    const size_t m = 13;
    const int cs[3] = {3, 5, 2}, ct = 10;
    float *g = rnd(m * ct, 7, -1, 1), *a0 = rnd(m * 5, 8, -1, 1);
    float *a = dup(a0, m * 5), *b = dup(a0, m * 5);
    float *dxs[3] = {NULL, a, NULL};
    concat_backward(m, 3, cs, g, dxs);
    for (size_t i = 0; i < m * 5; i++) b[strided_at(i, 5, 5)] += g[3 + strided_at(i, 5, ct)];
    same_bits(b, a, m * 5, "concat dx");
    float *s = dup(g, m * ct), *sd = dup(g, m * ct);
    slice_channels_backward(m, ct, 4, 5, a0, s);
    for (size_t i = 0; i < m * 5; i++) sd[4 + strided_at(i, 5, ct)] += a0[strided_at(i, 5, 5)];
    same_bits(sd, s, m * ct, "slice dx");
    free(x), free(dy), free(dx0), free(y), free(yd), free(dx), free(dxd);
    free(g), free(a0), free(a), free(b), free(s), free(sd);
}

/* Values on a coarse grid (ties) and a few NaNs. */
static float *pool_input(size_t n, uint64_t seed) {
    float *x = rnd(n, seed, 0, 1);
    for (size_t i = 0; i < n; i++) x[i] = floorf(x[i] * 4) / 4;
    x[n / 3] = NAN;
    x[n / 2] = NAN;
    return x;
}

Test(cuda_hd, maxpool_forward_backward_bitwise, .init = one_thread) {
    const int geo[][3] = {{5, 1, 2}, {3, 2, 1}, {2, 2, 0}, {3, 1, 0}, {1, 1, 0}};
    for (size_t gi = 0; gi < sizeof geo / sizeof *geo; gi++) {
        const int n = 2, h = 9, w = 7, c = 5, k = geo[gi][0], st = geo[gi][1], pad = geo[gi][2];
        pool_geom g = pool_geom_make(n, h, w, c, k, st, pad);
        size_t nin = (size_t)n * h * w * c, nout = (size_t)n * g.oh * g.ow * c;
        float *x = pool_input(nin, 10 + gi), *dy = rnd(nout, 20 + gi, -1, 1);
        float *dx0 = rnd(nin, 30 + gi, -1, 1), *dx = dup(dx0, nin), *dxd = dup(dx0, nin);
        float *y = malloc(nout * 4), *yd = malloc(nout * 4);
        int32_t *am = malloc(nout * 4), *amd = malloc(nout * 4);
        maxpool_forward(n, h, w, c, k, st, pad, x, y, am);
        maxpool_backward(n, g.oh, g.ow, c, dy, am, dx);
        for (size_t o = 0; o < nout; o++) maxpool_fwd_1(&g, x, o, yd + o, amd + o);
        for (size_t i = 0; i < nin; i++) dxd[i] = maxpool_bwd_1(&g, dy, am, i, dxd[i]);
        cr_assert(!memcmp(am, amd, nout * 4), "argmax, k%d s%d p%d", k, st, pad);
        same_bits(yd, y, nout, "maxpool y");
        same_bits(dxd, dx, nin, "maxpool dx");
        free(x), free(dy), free(dx0), free(dx), free(dxd), free(y), free(yd), free(am), free(amd);
    }
}

/* ---- batch norm: the GPU's split of the sums, against the CPU ---- */

/* The sums of the bn_sums_k launch: chunks x lanes, lanes then chunks added in order. */
static void sim_sums(int m, int c, const float *a, const float *b, const float *shift, int sms,
                     double *s1, double *s2) {
    bn_split s = bn_split_rows(m, c, sms);
    cr_assert_geq(s.rows_per_chunk * (size_t)s.chunks, (size_t)m);
    cr_assert_lt(s.rows_per_chunk * (size_t)(s.chunks - 1), (size_t)m);
    for (int ch = 0; ch < c; ch++) {
        double t1 = 0, t2 = 0;
        for (int k = 0; k < s.chunks; k++) {
            size_t r0 = (size_t)k * s.rows_per_chunk, r1 = r0 + s.rows_per_chunk;
            if (r1 > (size_t)m) r1 = (size_t)m;
            double c1 = 0, c2 = 0;
            for (int l = 0; l < BN_LANES; l++) {
                double p1, p2;
                bn_lane_sums(a, b, b ? shift[ch] : 0.0f, c, ch, r0, r1, l, BN_LANES, &p1, &p2);
                c1 += p1, c2 += p2;
            }
            t1 += c1, t2 += c2;
        }
        s1[ch] = t1, s2[ch] = t2;
    }
}

static void bn_case(int m, int c, int sms) {
    size_t n = (size_t)m * c;
    float *x = rnd(n, 40, -2, 3), *dy = rnd(n, 41, -1, 1), *gamma = rnd(c, 42, 0.5, 1.5);
    float *beta = rnd(c, 43, -1, 1), *rm = rnd(c, 44, -1, 1), *rv = rnd(c, 45, 0.5, 2);
    float *rmd = dup(rm, c), *rvd = dup(rv, c), *dx0 = rnd(n, 46, -1, 1);
    float *y = malloc(n * 4), *yd = calloc(n, 4), *sm = malloc(c * 4), *si = malloc(c * 4);
    float *smd = calloc(c, 4), *sid = calloc(c, 4), *scale = malloc(c * 4);
    float *dx = dup(dx0, n), *dxd = dup(dx0, n), *dg = rnd(c, 47, -1, 1), *db = rnd(c, 48, -1, 1);
    float *dgd = dup(dg, c), *dbd = dup(db, c);
    double *s1 = malloc(c * 8), *s2 = malloc(c * 8);
    batchnorm_forward_train(m, c, x, gamma, beta, BN_EPS, BN_MOMENTUM, rm, rv, sm, si, y);
    sim_sums(m, c, x, NULL, NULL, sms, s1, s2);
    for (int ch = 0; ch < c; ch++)
        scale[ch] = bn_train_channel(s1[ch], s2[ch], m, gamma[ch], BN_EPS, BN_MOMENTUM, rmd + ch,
                                     rvd + ch, smd + ch, sid + ch);
    for (size_t i = 0; i < n; i++) yd[i] = bn_norm_1(x[i], smd[i % c], scale[i % c], beta[i % c]);
    /* only the order of double additions differs: the float results agree to an ulp or two */
    close_rel(smd, sm, c, 1e-6, "save_mean");
    close_rel(sid, si, c, 1e-6, "save_invstd");
    close_rel(rmd, rm, c, 1e-6, "running_mean");
    close_rel(rvd, rv, c, 1e-6, "running_var");
    close_rel(yd, y, n, 1e-5, "bn y");
    batchnorm_backward(m, c, x, gamma, sm, si, dy, dx, dg, db);
    sim_sums(m, c, dy, x, sm, sms, s1, s2);
    for (int ch = 0; ch < c; ch++) {
        bn_bwd_k k = bn_bwd_channel(s1[ch], s2[ch], m, gamma[ch], si[ch], dgd + ch, dbd + ch);
        for (int r = 0; r < m; r++) {
            size_t i = (size_t)r * c + ch;
            dxd[i] += bn_bwd_1(k, x[i], sm[ch], dy[i]);
        }
    }
    close_rel(dgd, dg, c, 1e-5, "dgamma");
    close_rel(dbd, db, c, 1e-5, "dbeta");
    close_rel(dxd, dx, n, 1e-4, "bn dx");
    batchnorm_forward_infer(m, c, x, gamma, beta, rm, rv, BN_EPS, y);
    for (size_t i = 0; i < n; i++)
        yd[i] =
            bn_norm_1(x[i], rm[i % c], bn_eval_scale(gamma[i % c], rv[i % c], BN_EPS), beta[i % c]);
    same_bits(yd, y, n, "bn eval y");
    free(x), free(dy), free(gamma), free(beta), free(rm), free(rv), free(rmd), free(rvd);
    free(dx0), free(y), free(yd), free(sm), free(si), free(smd), free(sid), free(scale);
    free(dx), free(dxd), free(dg), free(db), free(dgd), free(dbd), free(s1), free(s2);
}

/* The fused backward's sums of channel ch as bn_sums_k and chunk_total add them: lanes of a chunk
 * in lane order, then chunks in chunk order. */
static void sim_silu_sums(int m, int c, int ch, const float *x, const float *dy, float mean,
                          float scale, float beta, int sms, double *s1, double *s2) {
    bn_split s = bn_split_rows(m, c, sms);
    double t1 = 0, t2 = 0;
    for (int k = 0; k < s.chunks; k++) {
        size_t r0 = (size_t)k * s.rows_per_chunk, r1 = r0 + s.rows_per_chunk;
        double c1 = 0, c2 = 0;
        for (int l = 0; l < BN_LANES; l++) {
            double p1, p2;
            bn_silu_lane_sums(x, dy, mean, scale, beta, c, ch, r0, r1 < (size_t)m ? r1 : (size_t)m,
                              l, BN_LANES, &p1, &p2);
            c1 += p1, c2 += p2;
        }
        t1 += c1, t2 += c2;
    }
    *s1 = t1, *s2 = t2;
}

/* The fused BN + SiLU backward: z and dz recomputed per element in the sums and in dx. */
static void bn_silu_case(int m, int c, int sms) {
    size_t n = (size_t)m * c;
    float *x = rnd(n, 140, -2, 3), *dy = rnd(n, 141, -1, 1), *g = rnd(c, 142, 0.5, 1.5);
    float *b = rnd(c, 143, -1, 1), *sm = rnd(c, 144, -1, 1), *si = rnd(c, 145, 0.5, 2);
    float *dx = rnd(n, 146, -1, 1), *dxd = dup(dx, n), *dg = rnd(c, 147, -1, 1), *dgd = dup(dg, c);
    float *db = rnd(c, 148, -1, 1), *dbd = dup(db, c);
    float *dxs = rnd(n, 151, -1, 1), *dxsd = malloc(n * 4); /* the write form: overwritten */
    batchnorm_silu_backward(m, c, x, g, b, sm, si, dy, dx, dg, db);
    batchnorm_silu_backward_set(m, c, x, g, b, sm, si, dy, dxs, NULL, NULL);
    for (int ch = 0; ch < c; ch++) {
        float scale = batchnorm_silu_scale(g[ch], si[ch]);
        double t1, t2;
        sim_silu_sums(m, c, ch, x, dy, sm[ch], scale, b[ch], sms, &t1, &t2);
        bn_bwd_k k = bn_bwd_channel(t1, t2, m, g[ch], si[ch], dgd + ch, dbd + ch);
        for (int r = 0; r < m; r++) {
            size_t i = (size_t)r * c + ch;
            float dz = silu_bwd_1(bn_norm_1(x[i], sm[ch], scale, b[ch]), dy[i]);
            dxd[i] += bn_bwd_1(k, x[i], sm[ch], dz);
            dxsd[i] = bn_silu_bwd_set_1(k, x[i], sm[ch], scale, b[ch], dy[i]); /* bn_bwd_dx_k */
            cr_assert(!memcmp(&(float){bn_bwd_1(k, x[i], sm[ch], dz) + 0.0f}, dxsd + i, 4));
        }
    }
    close_rel(dgd, dg, c, 1e-5, "fused dgamma");
    close_rel(dbd, db, c, 1e-5, "fused dbeta");
    close_norm(dxd, dx, n, 1e-6, "fused dx");
    close_norm(dxsd, dxs, n, 1e-6, "fused dx, written");
    float *y = malloc(n * 4), *y2 = malloc(n * 4), *rm = rnd(c, 149, -1, 1),
          *rv = rnd(c, 150, 1, 2);
    batchnorm_silu_forward_infer(m, c, x, g, b, rm, rv, BN_EPS, y);
    batchnorm_forward_infer(m, c, x, g, b, rm, rv, BN_EPS, y2);
    for (size_t i = 0; i < n; i++) y2[i] = silu_fwd_1(y2[i]);
    same_bits(y2, y, n, "fused eval");
    free(x), free(dy), free(g), free(b), free(sm), free(si), free(dx), free(dxd), free(dg);
    free(dgd), free(db), free(dbd), free(y), free(y2), free(rm), free(rv), free(dxs), free(dxsd);
}

Test(cuda_hd, batchnorm_silu_fused_match_cpu, .init = one_thread) {
    bn_silu_case(37, 16, 132);
    bn_silu_case(2000, 40, 7);
}

Test(cuda_hd, batchnorm_split_sums_match_cpu, .init = one_thread) {
    bn_case(1, 3, 132);
    bn_case(37, 16, 132);
    bn_case(1000, 24, 4);
    bn_case(5000, 40, 132); /* 2 channel tiles, many chunks */
    for (int m = 1; m < 3000; m += 37)
        for (int sms = 1; sms < 300; sms += 131) {
            bn_split s = bn_split_rows(m, 64, sms);
            cr_assert(s.chunks >= 1 && s.rows_per_chunk * (size_t)s.chunks >= (size_t)m &&
                      s.rows_per_chunk * (size_t)(s.chunks - 1) < (size_t)m);
        }
}

/* ---- the bf16 copies: to_bf16 and the BN + SiLU ops that write them ---- */

static bool bf16_within_ulp(bf16 a, bf16 b) {
    float fa = bf16_to_float(a), fb = bf16_to_float(b);
    return fabs((double)fa - fb) <= fabs((double)fb) / 128.0 + 1e-30;
}

/* to_bf16_k's element (bf16_from_float) against bf16_from_f32 (AVX512_BF16's vcvtneps2bf16 where
 * the CPU has it): every class of float (ties, denormals, NaN, infinities, signed zeros). */
Test(cuda_hd, to_bf16_bitwise) {
    enum { N = 200003 };
    uint32_t *u = malloc(N * sizeof *u);
    bf16 *cpu = malloc(N * sizeof *cpu);
    rng r = rng_keyed(19, 9, 9);
    static const uint32_t edge[] = {0x00000000u, 0x80000000u, 0x00000001u, 0x807fffffu,
                                    0x00800000u, 0x7f7fffffu, 0x7f800000u, 0xff800000u,
                                    0x7fc00001u, 0x7f800001u, 0xffa00000u, 0x3f808000u,
                                    0x3f818000u, 0x3f80ffffu, 0x7f7f8000u};
    for (size_t i = 0; i < N; i++) u[i] = i < sizeof edge / sizeof *edge ? edge[i] : rng_u32(&r);
    bf16_from_f32(N, (const float *)u, cpu);
    for (size_t i = 0; i < N; i++) {
        float x;
        memcpy(&x, u + i, 4);
        bf16 d = bf16_from_float(x);
        cr_assert_eq(d, cpu[i], "0x%08x: device function 0x%04x, CPU 0x%04x", u[i], d, cpu[i]);
        /* the conv ops' from_bf16 / store kernels read it back exactly */
        float back;
        bf16_to_f32(1, &d, &back);
        cr_assert(!memcmp(&back, &(float){bf16_to_float(d)}, 4));
    }
    free(u), free(cpu);
}

/* The _bf16 BN + SiLU ops: bn_norm_k writes bf16_from_float(y); bn_bwd_dx_k<silu, write> with dxb
 * writes bf16_from_float of the written dx. Eval: bitwise (no sums); train and backward: where the
 * float value is the CPU's, the same bits, elsewhere within a bf16 ulp. */
static void bn_silu_bf16_case(int m, int c, int sms) {
    size_t n = (size_t)m * c;
    float *x = rnd(n, 240, -2, 3), *dy = rnd(n, 241, -1, 1), *g = rnd(c, 242, 0.5, 1.5);
    float *b = rnd(c, 243, -1, 1), *rm = rnd(c, 244, -1, 1), *rv = rnd(c, 245, 0.5, 2);
    float *rmd = dup(rm, c), *rvd = dup(rv, c), *y = malloc(n * 4), *yd = calloc(n, 4);
    float *sm = malloc(c * 4), *si = malloc(c * 4), *smd = malloc(c * 4), *sid = malloc(c * 4);
    float *scale = malloc(c * 4), *dxs = malloc(n * 4), *scratch = malloc(n * 4);
    float *dxsd = malloc(n * 4), *dg = calloc(c, 4), *db = calloc(c, 4);
    bf16 *yb = malloc(n * 2), *yb_only = malloc(n * 2), *dxb = malloc(n * 2);
    double *s1 = malloc(c * 8), *s2 = malloc(c * 8);
    /* eval, with and without the float output */
    batchnorm_silu_forward_infer_bf16(m, c, x, g, b, rm, rv, BN_EPS, y, yb);
    batchnorm_silu_forward_infer_bf16(m, c, x, g, b, rm, rv, BN_EPS, NULL, yb_only);
    for (size_t i = 0; i < n; i++) {
        int ch = (int)(i % (size_t)c);
        float v = bn_silu_fwd_1(x[i], rm[ch], bn_eval_scale(g[ch], rv[ch], BN_EPS), b[ch]);
        cr_assert(!memcmp(&v, y + i, 4), "eval y[%zu]", i);
        cr_assert_eq(bf16_from_float(v), yb[i], "eval yb[%zu]", i);
        cr_assert_eq(yb_only[i], yb[i], "eval yb without y [%zu]", i);
    }
    /* train */
    batchnorm_silu_forward_train_bf16(m, c, x, g, b, BN_EPS, BN_MOMENTUM, rm, rv, sm, si, y, yb);
    sim_sums(m, c, x, NULL, NULL, sms, s1, s2);
    for (int ch = 0; ch < c; ch++)
        scale[ch] = bn_train_channel(s1[ch], s2[ch], m, g[ch], BN_EPS, BN_MOMENTUM, rmd + ch,
                                     rvd + ch, smd + ch, sid + ch);
    close_rel(smd, sm, c, 1e-6, "save_mean");
    close_rel(rvd, rv, c, 1e-6, "running_var");
    for (size_t i = 0; i < n; i++) {
        int ch = (int)(i % (size_t)c);
        yd[i] = bn_silu_fwd_1(x[i], smd[ch], scale[ch], b[ch]);
        bf16 d = bf16_from_float(yd[i]);
        if (!memcmp(yd + i, y + i, 4))
            cr_assert_eq(d, yb[i], "train yb[%zu]", i);
        else
            cr_assert(bf16_within_ulp(d, yb[i]), "train yb[%zu]: 0x%04x vs 0x%04x", i, d, yb[i]);
    }
    close_rel(yd, y, n, 1e-5, "train y");
    /* backward (_set_bf16): the CPU's dxb is bf16 of its float write form */
    batchnorm_silu_backward_set(m, c, x, g, b, sm, si, dy, dxs, NULL, NULL);
    batchnorm_silu_backward_set_bf16(m, c, x, g, b, sm, si, dy, scratch, dxb, dg, db);
    for (size_t i = 0; i < n; i++) cr_assert_eq(bf16_from_float(dxs[i]), dxb[i], "CPU dxb[%zu]", i);
    for (int ch = 0; ch < c; ch++) {
        float sc = batchnorm_silu_scale(g[ch], si[ch]);
        double t1, t2;
        sim_silu_sums(m, c, ch, x, dy, sm[ch], sc, b[ch], sms, &t1, &t2);
        bn_bwd_k k = bn_bwd_channel(t1, t2, m, g[ch], si[ch], NULL, NULL);
        for (int r = 0; r < m; r++) {
            size_t i = (size_t)r * c + ch;
            dxsd[i] = bn_silu_bwd_set_1(k, x[i], sm[ch], sc, b[ch], dy[i]);
            bf16 d = bf16_from_float(dxsd[i]);
            if (!memcmp(dxsd + i, dxs + i, 4)) cr_assert_eq(d, dxb[i], "dxb[%zu]", i);
        }
    }
    close_norm(dxsd, dxs, n, 1e-6, "dx (written, before bf16)");
    free(x), free(dy), free(g), free(b), free(rm), free(rv), free(rmd), free(rvd), free(y);
    free(yd), free(sm), free(si), free(smd), free(sid), free(scale), free(dxs), free(scratch);
    free(dxsd), free(dg), free(db), free(yb), free(yb_only), free(dxb), free(s1), free(s2);
}

Test(cuda_hd, batchnorm_silu_bf16_copies_match_cpu, .init = one_thread) {
    bn_silu_bf16_case(37, 16, 132);
    bn_silu_bf16_case(2000, 40, 7);
    bn_silu_bf16_case(300, 300, 132); /* rows longer than the CPU's 256-value bf16 chunks */
}

/* ---- optimizer, EMA, clip, bf16 ---- */

Test(cuda_hd, bf16_round_bitwise) {
    rng r = rng_keyed(9, 9, 9);
    for (int i = 0; i < 200000; i++) {
        uint32_t u = rng_u32(&r);
        if (i < 8)
            u = (uint32_t[]){0x7f800000u, 0xff800000u, 0x7fc00001u, 0x7f800001u,
                             0x00000001u, 0x7f7fffffu, 0x3f808000u, 0x3f818000u}[i];
        float x;
        memcpy(&x, &u, 4);
        float a = bf16_round_hd(x), b = optim_bf16_round(x);
        cr_assert(!memcmp(&a, &b, 4), "0x%08x", u);
    }
}

/* optim_step with the fused pass (map + per-group constants) and, for MuSGD, the per-tensor
 * Muon path with the CPU's NS5, against the CPU optimizer: the same bits. */
static void step_sim(optimizer *o, float *p, const float *g) {
    o->step++;
    optim_step_k k = optim_step_consts(o);
    uint8_t *map = malloc(o->n);
    optim_fill_map(o, map);
    for (size_t i = 0; i < o->n; i++)
        optim_fused_1(&k, map[i], p + i, g[i], o->m1 + i, o->m2 ? o->m2 + i : NULL);
    for (int t = 0; t < o->ntensors; t++) {
        const optim_tensor *ti = &o->tensors[t];
        if (!optim_is_muon(o, ti)) continue;
        muon_k mk = optim_muon_consts(o, ti);
        size_t n = ti->numel, off = ti->offset;
        int rows = ti->shape[0], cols = (int)(n / (size_t)rows);
        float *u = malloc(n * 4), *ws = malloc(optim_ns5_work_floats(rows, cols) * 4);
        for (size_t i = 0; i < n; i++)
            u[i] = muon_momentum_1(o->m1 + off + i, g[off + i], mk.mu, mk.w, o->nesterov);
        optim_ns5(u, rows, cols, o->ns_bf16, ws);
        for (size_t i = 0; i < n; i++) {
            p[off + i] = muon_apply_1(p[off + i], u[i], mk.scale, mk.alpha, o->ns_bf16);
            sgd_1(&mk.sgd, o->nesterov, p + off + i, g[off + i], o->m2 + off + i);
        }
        free(u), free(ws);
    }
    free(map);
}

static void optim_case(optim_kind kind, double mu, int nesterov) {
    optim_group gr[OPTIM_MAX_GROUPS];
    int ng = optim_default_groups(kind, 0.01, mu, 5e-4, gr);
    /* a conv weight (2-D for Muon), a gap never touched, BN weights, biases */
    optim_tensor t[4] = {
        {.offset = 0, .numel = 48, .ndim = 4, .shape = {4, 3, 2, 2}},
        {.offset = 60, .numel = 7, .ndim = 1, .shape = {7}},
        {.offset = 67, .numel = 5, .ndim = 1, .shape = {5}},
        {.offset = 72, .numel = 6, .ndim = 2, .shape = {3, 2}},
    };
    t[0].group = optim_group_index(kind, kind == OPTIM_MUSGD ? PG_MUON : PG_WEIGHT, 0);
    t[1].group = optim_group_index(kind, PG_BN, 0);
    t[2].group = optim_group_index(kind, PG_BIAS, 1);
    t[3].group = optim_group_index(kind, kind == OPTIM_MUSGD ? PG_MUON : PG_WEIGHT, 1);
    optimizer a, b;
    const size_t n = 80;
    cr_assert_eq(optim_init(&a, kind, n, t, 4, gr, ng, NULL, 0), 0);
    cr_assert_eq(optim_init(&b, kind, n, t, 4, gr, ng, NULL, 0), 0);
    a.nesterov = b.nesterov = nesterov;
    float *p = rnd(n, 50, -1, 1), *pd = dup(p, n);
    for (int s = 0; s < 4; s++) {
        float *g = rnd(n, 60 + s, -1, 1);
        optim_step(&a, p, g);
        step_sim(&b, pd, g);
        free(g);
    }
    same_bits(pd, p, n, "params");
    same_bits(b.m1, a.m1, n, "m1");
    if (a.m2) same_bits(b.m2, a.m2, n, "m2");
    free(p), free(pd);
    optim_free(&a), optim_free(&b);
}

Test(cuda_hd, optimizer_fused_pass_bitwise, .init = one_thread) {
    optim_case(OPTIM_SGD, 0.937, 1);
    optim_case(OPTIM_SGD, 0.9, 0);
    optim_case(OPTIM_SGD, 0.0, 1);
    optim_case(OPTIM_ADAMW, 0.9, 1);
    optim_case(OPTIM_ADAMW, 0.3, 1); /* the other branch of torch.lerp */
    optim_case(OPTIM_MUSGD, 0.95, 1);
    optim_case(OPTIM_MUSGD, 0.9, 0);
}

Test(cuda_hd, ema_and_clip_match_cpu, .init = one_thread) {
    enum { N = 100003, BLOCKS = 264, THREADS = 256 };
    float *e = rnd(N, 70, -1, 1), *m = rnd(N, 71, -1, 1), *ed = dup(e, N);
    double d = 0.9987;
    ema_blend(e, m, N, d);
    for (size_t i = 0; i < N; i++) ed[i] = ema_1(ed[i], m[i], (float)d, (float)(1.0 - d));
    same_bits(ed, e, N, "ema");
    for (int pass = 0; pass < 2; pass++) {
        double max_norm = pass ? 1e9 : 10.0; /* clipping, then not */
        float *g = rnd(N, 72, -1, 1), *gd = dup(g, N);
        double total = optim_clip_grad_norm(g, N, max_norm);
        double part[BLOCKS], t[THREADS];
        for (int b = 0; b < BLOCKS; b++) {
            for (int th = 0; th < THREADS; th++)
                t[th] = sumsq_thread(gd, N, (size_t)b * THREADS + th, (size_t)BLOCKS * THREADS);
            part[b] = sum_in_order(t, THREADS);
        }
        double td = sqrt(sum_in_order(part, BLOCKS));
        cr_assert(fabs(td - total) <= 1e-12 * total, "norm %.17g vs %.17g", td, total);
        float f = clip_factor(td, max_norm);
        cr_assert_eq(f != 0.0f, !pass);
        if (f != 0.0f)
            for (size_t i = 0; i < N; i++) gd[i] *= f;
        same_bits(gd, g, N, "clipped grads");
        free(g), free(gd);
    }
    cr_assert_eq(clip_factor(NAN, 10.0), 0.0f, "a NaN norm leaves the gradients");
    free(e), free(m), free(ed);
}

/* ---- decode, attention, depthwise ---- */

Test(cuda_hd, detect_decode_rows_match_cpu, .init = one_thread) {
    for (int xyxy = 0; xyxy < 2; xyxy++)
        for (int rm = 1; rm <= 16; rm += 15) {
            detect_decode_desc d = {.rows = 2 * 21,
                                    .anchors = 21,
                                    .reg_max = rm,
                                    .nc = 3,
                                    .ld = 4 * rm + 3,
                                    .xyxy = xyxy};
            float *l = rnd((size_t)d.rows * d.ld, 80, -4, 4), *pts = rnd(42, 81, 0, 20);
            float *str = rnd(21, 82, 8, 32), *o = malloc((size_t)d.rows * 7 * 4);
            float *od = malloc((size_t)d.rows * 7 * 4);
            detect_decode(&d, l, pts, str, o);
            for (size_t r = 0; r < (size_t)d.rows; r++) detect_decode_row(&d, l, pts, str, r, od);
            /* box columns: differences of two pixel coordinates (x1 = (point - left) * stride)
             * cancel, so against the largest coordinate; class scores relative */
            float ob[2 * 21 * 4], odb[2 * 21 * 4], oc[2 * 21 * 3], odc[2 * 21 * 3];
            for (int r = 0; r < d.rows; r++)
                for (int j = 0; j < 7; j++) {
                    if (j < 4)
                        ob[r * 4 + j] = o[r * 7 + j], odb[r * 4 + j] = od[r * 7 + j];
                    else
                        oc[r * 3 + j - 4] = o[r * 7 + j], odc[r * 3 + j - 4] = od[r * 7 + j];
                }
            close_norm(odb, ob, (size_t)d.rows * 4, 1e-6, "decode boxes");
            close_rel(odc, oc, (size_t)d.rows * 3, 1e-5, "decode scores");
            free(l), free(pts), free(str), free(o), free(od);
        }
}

/* A naive attention over attn_offsets' operands, against the CPU's: checks the offsets. */
Test(cuda_hd, attention_offsets_give_cpu_attention, .init = one_thread) {
    attention_desc d = {.n = 2, .hw = 6, .heads = 2, .kd = 3, .hd = 4};
    d.scale = 1.0f / sqrtf((float)d.kd);
    int cq = d.heads * (2 * d.kd + d.hd), co = d.heads * d.hd;
    size_t nq = (size_t)d.n * d.hw * cq, no = (size_t)d.n * d.hw * co;
    float *qkv = rnd(nq, 90, -1, 1), *out = malloc(no * 4), *vo = malloc(no * 4);
    float *outd = malloc(no * 4), *vod = malloc(no * 4);
    float *pr = malloc((size_t)d.n * d.heads * d.hw * d.hw * 4);
    attention_forward(&d, qkv, out, vo, pr);
    for (int bh = 0; bh < d.n * d.heads; bh++) {
        attn_at a = attn_offsets(&d, bh);
        for (int i = 0; i < d.hw; i++) {
            double s[16], mx = -1e30, sum = 0;
            for (int j = 0; j < d.hw; j++) {
                double dot = 0;
                for (int e = 0; e < d.kd; e++)
                    dot += (double)qkv[a.q + (size_t)i * cq + e] * qkv[a.k + (size_t)j * cq + e];
                s[j] = dot * d.scale;
                mx = s[j] > mx ? s[j] : mx;
            }
            for (int j = 0; j < d.hw; j++) sum += (s[j] = exp(s[j] - mx));
            for (int e = 0; e < d.hd; e++) {
                double o = 0;
                for (int j = 0; j < d.hw; j++) o += s[j] / sum * qkv[a.v + (size_t)j * cq + e];
                outd[a.o + (size_t)i * co + e] = (float)o;
            }
        }
    }
    for (size_t e = 0; e < no; e++) vod[e] = qkv[attn_v_src(&d, e)];
    close_rel(outd, out, no, 1e-4, "attention out");
    same_bits(vod, vo, no, "v_out");
    free(qkv), free(out), free(vo), free(outd), free(vod), free(pr);
}

static void dw_case(int h, int w, int c, int k, int stride, int pad) {
    conv2d_desc d = conv2d_make(2, h, w, c, c, k, stride, pad, c);
    size_t nx = (size_t)d.n * h * w * c, ny = (size_t)d.n * d.oh * d.ow * c, nw = (size_t)c * k * k;
    float *x = rnd(nx, 100, -1, 1), *wt = rnd(nw, 101, -1, 1), *b = rnd(c, 102, -1, 1);
    float *dy = rnd(ny, 103, -1, 1), *y = malloc(ny * 4), *yd = malloc(ny * 4);
    float *dx = rnd(nx, 104, -1, 1), *dxd = dup(dx, nx), *dw = rnd(nw, 105, -1, 1);
    float *dwd = dup(dw, nw), *db = rnd(c, 106, -1, 1), *dbd = dup(db, c);
    conv2d_ctx *cx = conv2d_ctx_create(CONV2D_DIRECT);
    float *ws = malloc((conv2d_ctx_workspace_floats(cx, &d) + 1) * 4);
    conv2d_ctx_forward(cx, &d, x, wt, b, y, ws);
    conv2d_ctx_backward_data(cx, &d, wt, dy, dx, ws);
    conv2d_ctx_backward_filter(cx, &d, x, dy, dw, db, ws);
    for (size_t o = 0; o < ny; o++) yd[o] = dw_fwd_1(&d, x, wt, b, o);
    for (size_t i = 0; i < nx; i++) dxd[i] += dw_bwd_data_1(&d, wt, dy, i);
    /* the forward is bitwise (the same taps in the same order, with fmaf); the filter sums in 3
     * chunks of output pixels, added in order */
    size_t pixels = (size_t)d.n * d.oh * d.ow, per = (pixels + 2) / 3;
    double acc[DW_MAX_TAPS + 1];
    for (int ch = 0; ch < c; ch++) {
        double tot[DW_MAX_TAPS + 1] = {0};
        for (size_t p0 = 0; p0 < pixels; p0 += per) {
            dw_filter_sums(&d, x, dy, ch, p0, p0 + per < pixels ? p0 + per : pixels, acc);
            for (int t = 0; t <= k * k; t++) tot[t] += acc[t];
        }
        for (int t = 0; t < k * k; t++) dwd[(size_t)ch * k * k + t] += (float)tot[t];
        dbd[ch] += (float)tot[k * k];
    }
    cr_assert(dw_is_depthwise(&d));
    same_bits(yd, y, ny, "dw y");
    close_norm(dxd, dx, nx, 1e-6, "dw dx");
    close_norm(dwd, dw, nw, 1e-6, "dw dw");
    close_norm(dbd, db, c, 1e-6, "dw dbias");
    conv2d_ctx_destroy(cx);
    free(x), free(wt), free(b), free(dy), free(y), free(yd), free(dx), free(dxd), free(dw);
    free(dwd), free(db), free(dbd), free(ws);
}

Test(cuda_hd, depthwise_match_cpu, .init = one_thread) {
    dw_case(9, 7, 5, 3, 1, 1);
    dw_case(9, 8, 12, 3, 2, 1);
    dw_case(10, 6, 17, 5, 1, 2);
    dw_case(7, 7, 8, 7, 1, 3);
    dw_case(5, 11, 3, 3, 2, 0);
}
