/* bfloat16 conversions (bf16.h): AVX512_BF16 where the compiler targets it, else the portable
 * rounding (the same bits). */
#include "kernels/bf16.h"

#include "kernels/threads.h"

#define BF16_PAR_MIN 65536

void bf16_from_f32(size_t n, const float *x, bf16 *y) {
    size_t nv = n / 16 * 16;
#ifdef __AVX512BF16__
#pragma omp parallel for num_threads(kernels_threads()) schedule(static) if (n >= BF16_PAR_MIN)
    for (size_t i = 0; i < nv; i += 16)
        _mm256_storeu_si256((__m256i *)(y + i),
                            (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + i)));
#else
    nv = 0;
#endif
#pragma omp parallel for simd num_threads(kernels_threads()) schedule(static) if (n >= BF16_PAR_MIN)
    for (size_t i = nv; i < n; i++) y[i] = bf16_from_float(x[i]);
}

void bf16_to_f32(size_t n, const bf16 *x, float *y) {
#pragma omp parallel for simd num_threads(kernels_threads()) schedule(static) if (n >= BF16_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = bf16_to_float(x[i]);
}

void bf16_round_f32(size_t n, const float *x, float *y) {
#pragma omp parallel for simd num_threads(kernels_threads()) schedule(static) if (n >= BF16_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = bf16_to_float(bf16_from_float(x[i]));
}

int bf16_cpu_has_native(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16");
}
