/* Internal to kernels/: a vectorisable expf for SiLU, softmax and DFL (glibc's expf is a scalar
 * call that the compiler cannot vectorise without -ffast-math, and it made SiLU ~10x a memcpy).
 * exp(x) = 2^n e^r with n = rint(x / ln2), |r| <= ln2/2, and e^r by its degree-7 Taylor polynomial
 * (truncation < 5e-9 relative); about 2 float ulp overall. x is clamped to [-87, 88], so the result
 * is a finite normal float (exp(-87) = 1.6e-38 stands in for smaller values, exp(88) for larger
 * ones, including infinities); NaN gives NaN.
 * Vectorises only when float compares may be if-converted: kernels/ builds with
 * -fno-trapping-math (Makefile). The CUDA kernels call the same function (kernels/cuda/hd.h). */
#pragma once
#include "kernels/cuda/hd.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

YOLO_HD float exp_fast(float x0) {
    /* written so that NaN becomes -87 here (no undefined float -> int conversion below) */
    float x = x0 >= -87.0f ? x0 : -87.0f;
    x = x <= 88.0f ? x : 88.0f;
    float n = rintf(x * 1.44269504088896341f);
    /* ln 2 split in two so that n * hi is exact for |n| <= 128; fused multiply-adds (one
     * instruction each where the CPU has FMA, and one rounding) */
    float r = fmaf(-n, 0.693145751953125f, x);
    r = fmaf(-n, 1.42860682030941723e-6f, r);
    float p = 1.0f / 5040;
    p = fmaf(p, r, 1.0f / 720);
    p = fmaf(p, r, 1.0f / 120);
    p = fmaf(p, r, 1.0f / 24);
    p = fmaf(p, r, 1.0f / 6);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    int32_t bits = ((int32_t)n + 127) << 23; /* 2^n as a float */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x0 == x0 ? p * scale : x0;
}

#ifdef __AVX512F__
#include <immintrin.h>
/* exp_fast on 16 lanes, lane for lane the same bits (the same operations in the same order, the
 * same fused multiply-adds); NaN gives a NaN (not necessarily x0's bits). */
static inline __m512 exp_fast16(__m512 x0) {
    /* clamped by max and min, which give their second operand where one is NaN: a NaN stays NaN
     * through every step below (the scalar version returns x0 itself instead) */
    __m512 x = _mm512_min_ps(_mm512_set1_ps(88.0f), _mm512_max_ps(_mm512_set1_ps(-87.0f), x0));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723e-6f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512i bits =
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
}
#endif

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
/* exp_fast on 8 lanes (AVX2 + FMA), lane for lane the same bits as exp_fast (and exp_fast16; NaN
 * as there). */
static inline __m256 exp_fast8(__m256 x0) {
    __m256 x = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-87.0f), x0));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860682030941723e-6f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i bits =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}
#endif
