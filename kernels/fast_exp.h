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
    /* ln 2 split in two so that n * hi is exact for |n| <= 128 */
    float r = x - n * 0.693145751953125f;
    r = r - n * 1.42860682030941723e-6f;
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23; /* 2^n as a float */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x0 == x0 ? p * scale : x0;
}
