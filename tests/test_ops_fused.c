/* Fused kernels (suite ops): BN + SiLU against the plain ops it replaces (forward: the same bits;
 * backward: within float rounding, its sigmoid comes from the output), the vector channel sums
 * against the scalar reference order, exp_fast16 against exp_fast. */
#include "kernels/activation.h"
#include "kernels/batchnorm.h"
#include "kernels/bn_sums.h"
#include "kernels/fast_exp.h"
#include "kernels/threads.h"
#include "tests/gradcheck.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* max |a - b| <= rtol * max |b| (b: the reference) */
static void assert_close(const char *what, const float *a, const float *b, size_t n, double rtol) {
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    cr_assert(scale > 0 && worst <= rtol * scale, "%s: max difference %.3g of max %.3g", what,
              worst, scale);
}

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
                  *y = malloc(n * sizeof *y);
            float *zf = malloc(n * sizeof *zf), *yf = malloc(n * sizeof *yf);
            float *gb = malloc(2 * c * sizeof *gb), *run = malloc(4 * c * sizeof *run);
            float *save = malloc(5 * c * sizeof *save);
            bf16 *yb = malloc(n * sizeof *yb);
            fill_uniform(x, n, -3, 4, 3, (unsigned)k);
            fill_uniform(gb, 2 * c, 0.5, 1.5, 3, 100 + k);
            fill_uniform(run, 4 * c, 0.5, 1.0, 3, 200 + k);
            memcpy(run + 2 * c, run, 2 * c * sizeof *run); /* the same running stats for both */
            batchnorm_forward_train(m, c, x, gb, gb + c, BN_EPS, BN_MOMENTUM, run, run + c, save,
                                    save + c, z);
            silu_forward(n, z, y);
            bn_silu_forward_train(m, c, x, gb, gb + c, BN_EPS, BN_MOMENTUM, run + 2 * c,
                                  run + 3 * c, save + 2 * c, yf, zf, yb);
            assert_same_bits("y", y, yf, n);
            assert_same_bits("z", z, zf, n);
            for (size_t i = 0; i < n; i++) cr_assert_eq(yb[i], bf16_from_float(y[i]), "yb[%zu]", i);
            assert_same_bits("save_mean, save_invstd", save, save + 2 * c, 2 * c);
            assert_same_bits("running stats", run, run + 2 * c, 2 * c);
            for (int ch = 0; ch < c; ch++) { /* the scale that backward recomputes z with */
                double want = (double)save[3 * c + ch] * gb[ch];
                cr_assert(fabs(save[4 * c + ch] - want) <= 1e-6 * fabs(want), "scale[%d]", ch);
            }
            /* without z: the same y */
            bn_silu_forward_train(m, c, x, gb, gb + c, BN_EPS, BN_MOMENTUM, NULL, NULL,
                                  save + 2 * c, zf, NULL, NULL);
            assert_same_bits("y without z", y, zf, n);
            /* eval */
            batchnorm_forward_infer(m, c, x, gb, gb + c, run, run + c, BN_EPS, z);
            silu_forward(n, z, y);
            bn_silu_forward_infer(m, c, x, gb, gb + c, run, run + c, BN_EPS, yf, yb);
            assert_same_bits("eval y", y, yf, n);
            for (size_t i = 0; i < n; i++) cr_assert_eq(yb[i], bf16_from_float(y[i]), "eval yb");
            free(x), free(z), free(y), free(zf), free(yf), free(gb), free(run), free(save),
                free(yb);
        }
    }
    kernels_set_threads(1);
}

/* The sigmoid from y / z: finite, within a few ulps of 1 / (1 + exp(-z)); the edges. */
Test(ops, bn_silu_sigmoid_from_the_output) {
    for (int i = -2000; i <= 2000; i++) {
        float z = (float)i * 0.01f, s = 1.0f / (1.0f + exp_fast(-z));
        float y = z / (1.0f + exp_fast(-z)); /* what silu_forward stores */
        float r = bn_silu_sigmoid(z, y);
        cr_assert(fabsf(r - s) <= 4e-7f * s + 1e-30f, "z %g: %.9g vs %.9g", (double)z, (double)r,
                  (double)s);
    }
    cr_assert_eq(bn_silu_sigmoid(0.0f, 0.0f), 0.5f);
    cr_assert_eq(bn_silu_sigmoid(-0.0f, -0.0f), 0.5f);
    cr_assert_eq(bn_silu_sigmoid(INFINITY, INFINITY), 1.0f);
    cr_assert_eq(bn_silu_sigmoid(-INFINITY, -INFINITY), 0.0f);
    cr_assert(isnan(bn_silu_dz(NAN, NAN, 1.0f)), "NaN propagates");
}

Test(ops, bn_silu_backward_equals_silu_then_bn_backward) {
    for (int threads = 1; threads <= 2; threads++) {
        kernels_set_threads(threads);
        for (size_t k = 0; k < sizeof SHAPES / sizeof *SHAPES; k++) {
            int m = SHAPES[k][0], c = SHAPES[k][1];
            size_t n = (size_t)m * c;
            float *x = malloc(n * sizeof *x), *z = malloc(n * sizeof *z),
                  *y = malloc(n * sizeof *y);
            float *dy = malloc(n * sizeof *dy), *dz = calloc(n, sizeof *dz);
            float *dx = calloc(n, sizeof *dx), *dxf = malloc(n * sizeof *dxf);
            float *dzf = malloc(n * sizeof *dzf);
            float *gb = malloc(2 * c * sizeof *gb), *save = malloc(3 * c * sizeof *save);
            float *dgb = malloc(4 * c * sizeof *dgb);
            fill_uniform(x, n, -3, 4, 4, (unsigned)k);
            fill_uniform(dy, n, -1, 1, 4, 50 + k);
            fill_uniform(gb, 2 * c, 0.5, 1.5, 4, 100 + k);
            fill_uniform(dgb, 2 * c, -1, 1, 4, 150 + k);
            memcpy(dgb + 2 * c, dgb, 2 * c * sizeof *dgb); /* non-zero: both must accumulate */
            fill_uniform(dxf, n, -5, 5, 4, 300 + k);       /* garbage: the fused op writes dx */
            bn_silu_forward_train(m, c, x, gb, gb + c, BN_EPS, BN_MOMENTUM, NULL, NULL, save, y, z,
                                  NULL);
            /* the plain pair: SiLU backward into a zeroed dz, then BN backward into a zeroed dx */
            silu_backward(n, z, dy, dz);
            batchnorm_backward(m, c, x, gb, save, save + c, dz, dx, dgb, dgb + c);
            bn_silu_backward(m, c, x, gb, gb + c, save, y, dy, dxf, NULL, dgb + 2 * c, dgb + 3 * c,
                             dzf);
            /* the same up to the sigmoid's ulps (y / z instead of the exp) */
            assert_close("dz", dzf, dz, n, 1e-6);
            assert_close("dx", dxf, dx, n, 1e-5);
            assert_close("dgamma", dgb + 2 * c, dgb, c, 1e-5);
            assert_close("dbeta", dgb + 3 * c, dgb + c, c, 1e-5);
            /* without dz, dgamma, dbeta: the same dx bits */
            fill_uniform(dzf, n, -5, 5, 4, 400 + k);
            bf16 *dxb = malloc(n * sizeof *dxb);
            bn_silu_backward(m, c, x, gb, gb + c, save, y, dy, dzf, dxb, NULL, NULL, NULL);
            assert_same_bits("dx without dz, dgamma, dbeta", dxf, dzf, n);
            for (size_t i = 0; i < n; i++) cr_assert_eq(dxb[i], bf16_from_float(dxf[i]), "dxb");
            memset(dxb, 0, n * sizeof *dxb); /* bf16 only: the same bf16 */
            bn_silu_backward(m, c, x, gb, gb + c, save, y, dy, NULL, dxb, NULL, NULL, NULL);
            for (size_t i = 0; i < n; i++)
                cr_assert_eq(dxb[i], bf16_from_float(dxf[i]), "dxb only");
            free(dxb);
            free(x), free(z), free(y), free(dy), free(dz), free(dx), free(dxf), free(dzf);
            free(gb), free(save), free(dgb);
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
        float *dz1 = malloc(n * sizeof *dz1), *dz2 = malloc(n * sizeof *dz2);
        fill_uniform(a, n, -2, 3, 5, (unsigned)k);
        fill_uniform(b, n, -4, 4, 5, 10 + k);
        fill_uniform(p, 3 * c, 0.3, 1.7, 5, 20 + k);
        double *s = malloc(4 * c * sizeof *s);
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
                                 .beta = p + 2 * c,
                                 .y = b,
                                 .dz_out = kind == BN_SUMS_DZ_SILU ? dz1 : NULL};
                bn_channel_sums(&in, s, s + c);
                in.dz_out = in.dz_out ? dz2 : NULL;
                bn_channel_sums_scalar(&in, s + 2 * c, s + 3 * c);
                cr_assert_eq(memcmp(s, s + 2 * c, 2 * c * sizeof *s), 0,
                             "kind %d, %dx%d, %d threads: sums differ from the scalar order",
                             (int)kind, m, c, threads);
                if (kind == BN_SUMS_DZ_SILU) assert_same_bits("dz_out", dz1, dz2, n);
            }
        free(a), free(b), free(p), free(dz1), free(dz2), free(s);
    }
    kernels_set_threads(1);
}

Test(ops, exp_fast16_equals_exp_fast_lane_by_lane) {
#ifdef __AVX512F__
    float in[4096], out[4096];
    fill_uniform(in, 4000, -100, 100, 6, 0);
    const float special[] = {0.0f,   -0.0f,      -87.0f,   88.0f,     -87.5f, 88.5f,
                             1e-30f, -1e-30f,    INFINITY, -INFINITY, NAN,    0.5f,
                             -0.5f,  0.3465736f, 1e6f,     -1e6f};
    for (int i = 0; i < 16; i++) in[4000 + i] = special[i];
    for (int i = 4016; i < 4096; i++) in[i] = (float)(i - 4056) * 0.01f;
    for (int i = 0; i < 4096; i += 16)
        _mm512_storeu_ps(out + i, exp_fast16(_mm512_loadu_ps(in + i)));
    for (int i = 0; i < 4096; i++) {
        float r = exp_fast(in[i]);
        cr_assert(memcmp(&r, &out[i], sizeof r) == 0 || (isnan(r) && isnan(out[i])),
                  "exp_fast16(%.9g) = %.9g, exp_fast gives %.9g", (double)in[i], (double)out[i],
                  (double)r);
    }
#else
    cr_skip_test("built without AVX-512: exp_fast16 is not compiled");
#endif
}
