/* The BN + SiLU variants with a bf16 copy (suite ops; kernels/batchnorm_silu.h: the _bf16 ops
 * that bf16 convolutions read from): forward (train, eval) against batchnorm_silu_forward_* then
 * bf16_from_f32, with and without the float output; the backward's bf16 dx against
 * batchnorm_silu_backward_set then bf16_from_f32. The same bits, at 1 and 2 threads. */
#include "kernels/batchnorm.h"
#include "kernels/batchnorm_silu.h"
#include "kernels/bf16.h"
#include "kernels/threads.h"
#include "tests/gradcheck.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

/* Channel tails, more channels than one conversion chunk (256), and sizes that run threaded. */
static const int SHAPES[][2] = {{7, 3}, {300, 17}, {513, 80}, {40, 300}, {9, 600}, {2100, 64}};

static void assert_same_bf16(const char *what, const bf16 *a, const bf16 *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(a[i], b[i], "%s[%zu]: 0x%04x vs 0x%04x", what, i, a[i], b[i]);
}

/* x spread wide, with inputs far below the mean: SiLU outputs that are tiny (denormal floats,
 * which bf16 flushes to a signed zero) and exact zeros. */
static void fill_x(float *x, size_t n, unsigned k) {
    fill_uniform(x, n, -3, 4, 9, k);
    for (size_t i = 0; i < n; i += 11) x[i] = -60.0f - (float)(i % 50);
    for (size_t i = 5; i < n; i += 13) x[i] *= 1e3f;
}

Test(ops, bn_silu_forward_bf16_equals_forward_then_conversion) {
    for (int threads = 1; threads <= 2; threads++) {
        kernels_set_threads(threads);
        for (size_t k = 0; k < sizeof SHAPES / sizeof *SHAPES; k++) {
            int m = SHAPES[k][0], c = SHAPES[k][1];
            size_t n = (size_t)m * c;
            float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y),
                  *yf = malloc(n * sizeof *yf);
            bf16 *want = malloc(n * sizeof *want), *yb = malloc(n * sizeof *yb);
            float *gb = malloc(2 * c * sizeof *gb), *run = malloc(4 * c * sizeof *run);
            float *save = malloc(4 * c * sizeof *save);
            fill_x(x, n, (unsigned)k);
            fill_uniform(gb, 2 * c, 0.5, 1.5, 9, 100 + k);
            fill_uniform(run, 4 * c, 0.5, 1.0, 9, 200 + k);
            memcpy(run + 2 * c, run, 2 * c * sizeof *run);
            batchnorm_silu_forward_train(m, c, x, gb, gb + c, BN_EPS, BN_MOMENTUM, run, run + c,
                                         save, save + c, y);
            bf16_from_f32(n, y, want);
            batchnorm_silu_forward_train_bf16(m, c, x, gb, gb + c, BN_EPS, BN_MOMENTUM, run + 2 * c,
                                              run + 3 * c, save + 2 * c, save + 3 * c, yf, yb);
            cr_assert_eq(memcmp(y, yf, n * sizeof *y), 0, "%dx%d: float y differs", m, c);
            cr_assert_eq(memcmp(save, save + 2 * c, 2 * c * sizeof *save), 0, "saved stats");
            cr_assert_eq(memcmp(run, run + 2 * c, 2 * c * sizeof *run), 0, "running stats");
            assert_same_bf16("train yb", yb, want, n);
            memset(yb, 0xff, n * sizeof *yb);
            batchnorm_silu_forward_train_bf16(m, c, x, gb, gb + c, BN_EPS, BN_MOMENTUM, NULL, NULL,
                                              save + 2 * c, save + 3 * c, NULL, yb);
            assert_same_bf16("train yb without y", yb, want, n);
            batchnorm_silu_forward_infer(m, c, x, gb, gb + c, run, run + c, BN_EPS, y);
            bf16_from_f32(n, y, want);
            batchnorm_silu_forward_infer_bf16(m, c, x, gb, gb + c, run, run + c, BN_EPS, yf, yb);
            cr_assert_eq(memcmp(y, yf, n * sizeof *y), 0, "%dx%d: eval float y differs", m, c);
            assert_same_bf16("eval yb", yb, want, n);
            memset(yb, 0xff, n * sizeof *yb);
            batchnorm_silu_forward_infer_bf16(m, c, x, gb, gb + c, run, run + c, BN_EPS, NULL, yb);
            assert_same_bf16("eval yb without y", yb, want, n);
            free(x), free(y), free(yf), free(want), free(yb), free(gb), free(run), free(save);
        }
    }
    kernels_set_threads(1);
}

Test(ops, bn_silu_backward_set_bf16_equals_backward_set_then_conversion) {
    for (int threads = 1; threads <= 2; threads++) {
        kernels_set_threads(threads);
        for (size_t k = 0; k < sizeof SHAPES / sizeof *SHAPES; k++) {
            int m = SHAPES[k][0], c = SHAPES[k][1];
            size_t n = (size_t)m * c;
            float *x = malloc(n * sizeof *x), *dy = malloc(n * sizeof *dy),
                  *y = malloc(n * sizeof *y);
            float *dx = malloc(n * sizeof *dx), *scratch = malloc(n * sizeof *scratch);
            bf16 *want = malloc(n * sizeof *want), *dxb = malloc(n * sizeof *dxb);
            float *gb = malloc(2 * c * sizeof *gb), *save = malloc(2 * c * sizeof *save);
            float *dgb = malloc(4 * c * sizeof *dgb);
            fill_x(x, n, 20 + (unsigned)k);
            fill_uniform(dy, n, -1, 1, 9, 50 + k);
            for (size_t i = 0; i < n; i += 7) dy[i] = 0.0f;     /* zero terms: their sign */
            for (size_t i = 3; i < n; i += 17) dy[i] *= 1e-36f; /* tiny gradients */
            fill_uniform(gb, 2 * c, 0.5, 1.5, 9, 100 + k);
            fill_uniform(dgb, 2 * c, -1, 1, 9, 150 + k);
            memcpy(dgb + 2 * c, dgb, 2 * c * sizeof *dgb); /* both accumulate */
            fill_uniform(dx, n, -5, 5, 9, 300 + k);
            fill_uniform(scratch, n, -5, 5, 9, 400 + k);
            memset(dxb, 0xff, n * sizeof *dxb);
            batchnorm_silu_forward_train(m, c, x, gb, gb + c, BN_EPS, BN_MOMENTUM, NULL, NULL, save,
                                         save + c, y);
            batchnorm_silu_backward_set(m, c, x, gb, gb + c, save, save + c, dy, dx, dgb, dgb + c);
            bf16_from_f32(n, dx, want);
            batchnorm_silu_backward_set_bf16(m, c, x, gb, gb + c, save, save + c, dy, scratch, dxb,
                                             dgb + 2 * c, dgb + 3 * c);
            assert_same_bf16("dxb", dxb, want, n);
            cr_assert_eq(memcmp(dgb, dgb + 2 * c, 2 * c * sizeof *dgb), 0, "%dx%d: dgamma, dbeta",
                         m, c);
            free(x), free(dy), free(y), free(dx), free(scratch), free(want), free(dxb);
            free(gb), free(save), free(dgb);
        }
    }
    kernels_set_threads(1);
}
