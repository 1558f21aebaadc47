/* Internal to kernels/ (batchnorm.c, batchnorm_silu.c): the per-channel sums of batch norm over
 * [m][c] (NHWC flattened), in double, over fixed chunks of BN_CHUNK_ROWS rows whose partials are
 * added in chunk order. Inside a chunk each channel's sum runs over its rows in order, so the
 * result is the same for any thread count and any vector width (the AVX-512 path gives the bits of
 * the scalar one). */
#pragma once
#include "kernels/fast_exp.h"

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
                       (b: x, a: dy of the SiLU output: bn_silu_dz) */
} bn_sums_kind;

typedef struct bn_sums_in {
    bn_sums_kind kind;
    int m, c;
    const float *a, *b;               /* see the kinds */
    const float *mean, *scale, *beta; /* [c]: mean for DY_X and DZ_SILU; scale, beta: DZ_SILU */
    float *dz; /* DZ_SILU, may be NULL: also stores each dz here ([m][c]), so that a second pass
                  over the rows need not recompute it */
} bn_sums_in;

void bn_channel_sums(const bn_sums_in *in, double *s1, double *s2);
/* The scalar reference order on one thread (tests compare the vector path with it, bit for bit). */
void bn_channel_sums_scalar(const bn_sums_in *in, double *s1, double *s2);

/* dz = dy * silu'(z) as silu_backward computes it (kernels/activation.c: the same expression, so
 * the same bits): silu'(z) = s (1 + z (1 - s)), s = 1 / (1 + exp_fast(-z)). */
static inline float bn_silu_dz(float z, float dy) {
    float s = 1.0f / (1.0f + exp_fast(-z));
    return dy * s * (1.0f + z * (1.0f - s));
}
