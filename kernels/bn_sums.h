/* Internal to kernels/ (batchnorm.c, bn_silu.c): the per-channel sums of batch norm over [m][c]
 * (NHWC flattened), in double, over fixed chunks of BN_CHUNK_ROWS rows whose partials are added in
 * chunk order. Inside a chunk each channel's sum runs over its rows in order, so the result is the
 * same for any thread count and any vector width (the AVX-512 path gives the bits of the scalar
 * one). */
#pragma once
#include <stddef.h>

/* Rows per partial sum: big enough to amortise the partial buffers, small enough to spread the
 * work of a 20x20 feature map over 2+ threads. */
#define BN_CHUNK_ROWS 256
/* Below this many elements a parallel region costs more than it saves. */
#define BN_PAR_MIN 32768

typedef enum bn_sums_kind {
    BN_SUMS_X,      /* s1 = sum a, s2 = sum a^2 (a: x) */
    BN_SUMS_DY_X,   /* s1 = sum a, s2 = sum a (b - mean) (a: dy, b: x) */
    BN_SUMS_DZ_SILU /* as BN_SUMS_DY_X with a = dz = dy * silu'(z), z = (x - mean) scale + beta
                       (b: x, a: dy of the SiLU output y, silu' from y: bn_silu_dz) */
} bn_sums_kind;

typedef struct bn_sums_in {
    bn_sums_kind kind;
    int m, c;
    const float *a, *b;               /* see the kinds */
    const float *mean, *scale, *beta; /* [c]: mean for DY_X and DZ_SILU; scale, beta: DZ_SILU */
    const float *y;                   /* DZ_SILU: the forward output silu(z) [m][c] */
    float *dz_out;                    /* DZ_SILU: receives dz [m][c] when not NULL */
} bn_sums_in;

void bn_channel_sums(const bn_sums_in *in, double *s1, double *s2);
/* The scalar reference order on one thread (tests compare the vector path with it, bit for bit). */
void bn_channel_sums_scalar(const bn_sums_in *in, double *s1, double *s2);

/* dz = dy * silu'(z), silu'(z) = s (1 + z (1 - s)) as silu_backward computes it, with the sigmoid
 * s = sigmoid(z) recovered from the forward's output y = silu(z) = z s as y / z (0.5 at z = 0, and
 * 0 or 1 where y / z is not finite, i.e. z = -inf or +inf): one division instead of an exp, within
 * a few float ulps of silu_backward's own sigmoid. */
static inline float bn_silu_sigmoid(float z, float y) {
    if (z == 0.0f) return 0.5f;
    float s = y / z;
    return s - s == 0.0f ? s : z > 0.0f ? 1.0f : 0.0f;
}
static inline float bn_silu_dz(float z, float y, float dy) {
    float s = bn_silu_sigmoid(z, y);
    return dy * s * (1.0f + z * (1.0f - s));
}
