/* Fused kernels (suite ops): BN + SiLU (kernels/batchnorm_silu.h) against the plain ops it
 * replaces (the same bits, forward and backward), its write variant against it, the vector channel
 * sums against the scalar reference order, exp_fast16 and exp_fast8 against exp_fast. */
#include "kernels/activation.h"
#include "kernels/batchnorm.h"
#include "kernels/batchnorm_silu.h"
#include "kernels/bn_sums.h"
#include "kernels/fast_exp.h"
#include "kernels/threads.h"
#include "tests/gradcheck.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void assert_same_bits(const char *what, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof *a))
            cr_assert_fail("%s[%zu]: %.9g vs %.9g (bits differ)", what, i, (double)a[i],
                           (double)b[i]);
}

/* Shapes with channel tails (not multiples of 16), rows that are not a multiple of the 256-row
 * chunk, and one over several threads' worth of chunks. */
static const int SHAPES[][2] = {{7, 3}, {300, 17}, {513, 80}, {1000, 200}, {2100, 64}};

Test(ops, bn_silu_forward_train_equals_bn_then_silu) {
    for (int threads = 1; threads <= 2; threads++) {
        kernels_set_threads(threads);
        for (size_t k = 0; k < sizeof SHAPES / sizeof *SHAPES; k++) {
            int m = SHAPES[k][0], c = SHAPES[k][1];
            size_t n = (size_t)m * c;
            float *x = malloc(n * sizeof *x), *z = malloc(n * sizeof *z),
                  *y = malloc(n * sizeof *y), *yf = malloc(n * sizeof *yf);
            float *gb = malloc(2 * c * sizeof *gb), *run = malloc(4 * c * sizeof *run);
            float *save = malloc(4 * c * sizeof *save);
            fill_uniform(x, n, -3, 4, 3, (unsigned)k);
            fill_uniform(gb, 2 * c, 0.5, 1.5, 3, 100 + k);
            fill_uniform(run, 4 * c, 0.5, 1.0, 3, 200 + k);
            memcpy(run + 2 * c, run, 2 * c * sizeof *run); /* the same running stats for both */
            batchnorm_forward_train(m, c, x, gb, gb + c, BN_EPS, BN_MOMENTUM, run, run + c, save,
                                    save + c, z);
            silu_forward(n, z, y);
            batchnorm_silu_forward_train(m, c, x, gb, gb + c, BN_EPS, BN_MOMENTUM, run + 2 * c,
                                         run + 3 * c, save + 2 * c, save + 3 * c, yf);
            assert_same_bits("y", y, yf, n);
            assert_same_bits("save_mean, save_invstd", save, save + 2 * c, 2 * c);
            assert_same_bits("running stats", run, run + 2 * c, 2 * c);
            /* without running statistics: the same y */
            batchnorm_silu_forward_train(m, c, x, gb, gb + c, BN_EPS, BN_MOMENTUM, NULL, NULL,
                                         save + 2 * c, save + 3 * c, yf);
            assert_same_bits("y without running stats", y, yf, n);
            /* eval */
            batchnorm_forward_infer(m, c, x, gb, gb + c, run, run + c, BN_EPS, z);
            silu_forward(n, z, y);
            batchnorm_silu_forward_infer(m, c, x, gb, gb + c, run, run + c, BN_EPS, yf);
            assert_same_bits("eval y", y, yf, n);
            free(x), free(z), free(y), free(yf), free(gb), free(run), free(save);
        }
    }
    kernels_set_threads(1);
}

/* The fused backward against the pair it replaces, as the header defines it: z recomputed with
 * batchnorm_silu_scale, silu_backward into a zeroed dz, batchnorm_backward; every output
 * accumulates into random values. The same bits. */
Test(ops, bn_silu_backward_equals_silu_then_bn_backward) {
    for (int threads = 1; threads <= 2; threads++) {
        kernels_set_threads(threads);
        for (size_t k = 0; k < sizeof SHAPES / sizeof *SHAPES; k++) {
            int m = SHAPES[k][0], c = SHAPES[k][1];
            size_t n = (size_t)m * c;
            float *x = malloc(n * sizeof *x), *z = malloc(n * sizeof *z),
                  *y = malloc(n * sizeof *y);
            float *dy = malloc(n * sizeof *dy), *dz = calloc(n, sizeof *dz);
            float *dx = malloc(n * sizeof *dx), *dxf = malloc(n * sizeof *dxf);
            float *gb = malloc(2 * c * sizeof *gb), *save = malloc(2 * c * sizeof *save);
            float *dgb = malloc(4 * c * sizeof *dgb);
            fill_uniform(x, n, -3, 4, 4, (unsigned)k);
            fill_uniform(dy, n, -1, 1, 4, 50 + k);
            fill_uniform(gb, 2 * c, 0.5, 1.5, 4, 100 + k);
            fill_uniform(dgb, 2 * c, -1, 1, 4, 150 + k);
            memcpy(dgb + 2 * c, dgb, 2 * c * sizeof *dgb); /* non-zero: both must accumulate */
            fill_uniform(dx, n, -5, 5, 4, 300 + k);
            memcpy(dxf, dx, n * sizeof *dx);
            batchnorm_silu_forward_train(m, c, x, gb, gb + c, BN_EPS, BN_MOMENTUM, NULL, NULL, save,
                                         save + c, y);
            for (int r = 0; r < m; r++)
                for (int ch = 0; ch < c; ch++) {
                    size_t i = (size_t)r * c + ch;
                    z[i] =
                        (x[i] - save[ch]) * batchnorm_silu_scale(gb[ch], save[c + ch]) + gb[c + ch];
                }
            silu_backward(n, z, dy, dz);
            batchnorm_backward(m, c, x, gb, save, save + c, dz, dx, dgb, dgb + c);
            batchnorm_silu_backward(m, c, x, gb, gb + c, save, save + c, dy, dxf, dgb + 2 * c,
                                    dgb + 3 * c);
            assert_same_bits("dx", dxf, dx, n);
            assert_same_bits("dgamma", dgb + 2 * c, dgb, c);
            assert_same_bits("dbeta", dgb + 3 * c, dgb + c, c);
            /* without dx: the same parameter gradients; without those: the same dx */
            batchnorm_silu_backward(m, c, x, gb, gb + c, save, save + c, dy, NULL, dgb + 2 * c,
                                    dgb + 3 * c);
            batchnorm_backward(m, c, x, gb, save, save + c, dz, NULL, dgb, dgb + c);
            assert_same_bits("dgamma without dx", dgb + 2 * c, dgb, c);
            batchnorm_silu_backward(m, c, x, gb, gb + c, save, save + c, dy, dxf, NULL, NULL);
            batchnorm_backward(m, c, x, gb, save, save + c, dz, dx, NULL, NULL);
            assert_same_bits("dx without dgamma, dbeta", dxf, dx, n);
            free(x), free(z), free(y), free(dy), free(dz), free(dx), free(dxf);
            free(gb), free(save), free(dgb);
        }
    }
    kernels_set_threads(1);
}

/* The write variant: the bits of the accumulating op into a zeroed dx (the zero's sign included),
 * whatever dx held; the same parameter gradients; dx NULL allowed. */
Test(ops, bn_silu_backward_set_equals_backward_into_zeros) {
    for (int threads = 1; threads <= 2; threads++) {
        kernels_set_threads(threads);
        for (size_t k = 0; k < sizeof SHAPES / sizeof *SHAPES; k++) {
            int m = SHAPES[k][0], c = SHAPES[k][1];
            size_t n = (size_t)m * c;
            float *x = malloc(n * sizeof *x), *dy = malloc(n * sizeof *dy);
            float *dx = calloc(n, sizeof *dx), *dxs = malloc(n * sizeof *dxs);
            float *gb = malloc(2 * c * sizeof *gb), *save = malloc(2 * c * sizeof *save);
            float *dgb = malloc(4 * c * sizeof *dgb), *y = malloc(n * sizeof *y);
            fill_uniform(x, n, -3, 4, 7, (unsigned)k);
            fill_uniform(dy, n, -1, 1, 7, 50 + k);
            for (size_t i = 0; i < n; i += 7) dy[i] = 0.0f; /* zero terms: their sign */
            fill_uniform(gb, 2 * c, 0.5, 1.5, 7, 100 + k);
            fill_uniform(dgb, 2 * c, -1, 1, 7, 150 + k);
            memcpy(dgb + 2 * c, dgb, 2 * c * sizeof *dgb);
            fill_uniform(dxs, n, -5, 5, 7, 300 + k);
            batchnorm_silu_forward_train(m, c, x, gb, gb + c, BN_EPS, BN_MOMENTUM, NULL, NULL, save,
                                         save + c, y);
            batchnorm_silu_backward(m, c, x, gb, gb + c, save, save + c, dy, dx, dgb, dgb + c);
            batchnorm_silu_backward_set(m, c, x, gb, gb + c, save, save + c, dy, dxs, dgb + 2 * c,
                                        dgb + 3 * c);
            assert_same_bits("dx", dxs, dx, n);
            assert_same_bits("dgamma, dbeta", dgb + 2 * c, dgb, 2 * c);
            batchnorm_silu_backward_set(m, c, x, gb, gb + c, save, save + c, dy, NULL, dgb + 2 * c,
                                        dgb + 3 * c);
            batchnorm_silu_backward(m, c, x, gb, gb + c, save, save + c, dy, NULL, dgb, dgb + c);
            assert_same_bits("dgamma, dbeta without dx", dgb + 2 * c, dgb, 2 * c);
            free(x), free(dy), free(dx), free(dxs), free(gb), free(save), free(dgb), free(y);
        }
    }
    kernels_set_threads(1);
}

Test(ops, bn_channel_sums_vector_equals_scalar_order) {
    for (size_t k = 0; k < sizeof SHAPES / sizeof *SHAPES; k++) {
        int m = SHAPES[k][0], c = SHAPES[k][1];
        size_t n = (size_t)m * c;
        float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b),
              *p = malloc(3 * c * sizeof *p);
        fill_uniform(a, n, -2, 3, 5, (unsigned)k);
        fill_uniform(b, n, -4, 4, 5, 10 + k);
        fill_uniform(p, 3 * c, 0.3, 1.7, 5, 20 + k);
        double *s = malloc(4 * c * sizeof *s);
        float *dz = malloc(2 * n * sizeof *dz);
        for (bn_sums_kind kind = BN_SUMS_X; kind <= BN_SUMS_DZ_SILU; kind++)
            for (int threads = 1; threads <= 2; threads++) {
                kernels_set_threads(threads);
                bn_sums_in in = {.kind = kind,
                                 .m = m,
                                 .c = c,
                                 .a = a,
                                 .b = kind == BN_SUMS_X ? NULL : b,
                                 .mean = p,
                                 .scale = p + c,
                                 .beta = p + 2 * c};
                bn_channel_sums(&in, s, s + c);
                bn_channel_sums_scalar(&in, s + 2 * c, s + 3 * c);
                cr_assert_eq(memcmp(s, s + 2 * c, 2 * c * sizeof *s), 0,
                             "kind %d, %dx%d, %d threads: sums differ from the scalar order",
                             (int)kind, m, c, threads);
                if (kind != BN_SUMS_DZ_SILU) continue;
                /* storing dz: the same sums, and dz = bn_silu_dz of the scalar path */
                in.dz = dz;
                bn_channel_sums(&in, s, s + c);
                in.dz = dz + n;
                bn_channel_sums_scalar(&in, s + 2 * c, s + 3 * c);
                cr_assert_eq(memcmp(s, s + 2 * c, 2 * c * sizeof *s), 0, "sums with dz stored");
                for (int r = 0; r < m; r++)
                    for (int ch = 0; ch < c; ch++) {
                        size_t i = (size_t)r * c + ch;
                        float z = (b[i] - p[ch]) * p[c + ch] + p[2 * c + ch];
                        float want = bn_silu_dz(z, a[i]);
                        cr_assert(!memcmp(&dz[i], &dz[n + i], sizeof *dz) &&
                                      !memcmp(&dz[i], &want, sizeof want),
                                  "dz[%zu] %.9g vs scalar %.9g", i, (double)dz[i],
                                  (double)dz[n + i]);
                    }
            }
        free(a), free(b), free(p), free(s), free(dz);
    }
    kernels_set_threads(1);
}

/* Inputs for the vector exps: random ones, the clamp bounds, infinities, NaN, tiny and huge. */
enum { EXP_N = 4096 };
static void exp_inputs(float *in, unsigned seed) {
    fill_uniform(in, 4000, -100, 100, 6, seed);
    const float special[] = {0.0f,   -0.0f,      -87.0f,   88.0f,     -87.5f, 88.5f,
                             1e-30f, -1e-30f,    INFINITY, -INFINITY, NAN,    0.5f,
                             -0.5f,  0.3465736f, 1e6f,     -1e6f};
    for (int i = 0; i < 16; i++) in[4000 + i] = special[i];
    for (int i = 4016; i < EXP_N; i++) in[i] = (float)(i - 4056) * 0.01f;
}
/* out = the vector exp of in: exp_fast's bits lane for lane (any NaN for a NaN) */
static void exp_check(const char *name, const float *in, const float *out) {
    for (int i = 0; i < EXP_N; i++) {
        float r = exp_fast(in[i]);
        cr_assert(memcmp(&r, &out[i], sizeof r) == 0 || (isnan(r) && isnan(out[i])),
                  "%s(%.9g) = %.9g, exp_fast gives %.9g", name, (double)in[i], (double)out[i],
                  (double)r);
    }
}

Test(ops, exp_fast16_equals_exp_fast_lane_by_lane) {
#ifdef __AVX512F__
    float in[EXP_N], out[EXP_N];
    exp_inputs(in, 0);
    for (int i = 0; i < EXP_N; i += 16)
        _mm512_storeu_ps(out + i, exp_fast16(_mm512_loadu_ps(in + i)));
    exp_check("exp_fast16", in, out);
#else
    cr_skip_test("built without AVX-512: exp_fast16 is not compiled");
#endif
}

Test(ops, exp_fast8_equals_exp_fast_lane_by_lane) {
#if defined(__AVX2__) && defined(__FMA__)
    float in[EXP_N], out[EXP_N];
    exp_inputs(in, 1);
    for (int i = 0; i < EXP_N; i += 8)
        _mm256_storeu_ps(out + i, exp_fast8(_mm256_loadu_ps(in + i)));
    exp_check("exp_fast8", in, out);
#else
    cr_skip_test("built without AVX2 + FMA: exp_fast8 is not compiled");
#endif
}
