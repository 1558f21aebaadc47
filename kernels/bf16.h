/* bfloat16 conversions for the mixed-precision (bf16) convolutions: float -> bf16 rounds to
 * nearest even, NaN stays a quiet NaN and denormal floats become a zero of their sign, exactly as
 * AVX512_BF16's vcvtneps2bf16 (PyTorch's cast keeps denormals; they are below 1.2e-38);
 * bf16 -> float is exact. Each element is converted on its own, so results
 * do not depend on the thread count or on which path (AVX512_BF16 or portable) ran. */
#pragma once
#include "kernels/cuda/hd.h"

#include <stddef.h>
#include <stdint.h>

typedef uint16_t bf16;

/* y[i] = bf16(x[i]) */
void bf16_from_f32(size_t n, const float *x, bf16 *y);
/* y[i] = float(x[i]) */
void bf16_to_f32(size_t n, const bf16 *x, float *y);
/* y[i] = float(bf16(x[i])): x rounded to bf16 precision, kept as float (y may be x). The CPU
 * reference of a bf16 op runs the float op on inputs rounded this way. */
void bf16_round_f32(size_t n, const float *x, float *y);
/* Whether this CPU converts and multiplies bf16 in hardware (AVX512_BF16). */
int bf16_cpu_has_native(void);

/* One value (also the CUDA kernels' conversion: kernels/cuda/hd.h, so a bf16 copy made on a GPU
 * has the CPU's bits). */
YOLO_HD bf16 bf16_from_float(float f) {
    union {
        float f;
        uint32_t u;
    } v;
    v.f = f;
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (bf16)((v.u >> 16) | 0x40); /* quiet NaN */
    if ((v.u & 0x7f800000u) == 0) return (bf16)((v.u >> 16) & 0x8000);        /* denormal */
    return (bf16)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}
YOLO_HD float bf16_to_float(bf16 h) {
    union {
        uint32_t u;
        float f;
    } v;
    v.u = (uint32_t)h << 16;
    return v.f;
}
#ifdef __AVX512BF16__
#include <immintrin.h>
#endif
/* One short row (no threads): the same bits as bf16_from_f32. */
static inline void bf16_from_f32_row(size_t n, const float *x, bf16 *y) {
    size_t i = 0;
#ifdef __AVX512BF16__
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(y + i),
                            (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + i)));
#endif
    for (; i < n; i++) y[i] = bf16_from_float(x[i]);
}
