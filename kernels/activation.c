/* SiLU, elementwise and vectorised (exp_fast); each element is computed on its own, so results do
 * not depend on the thread count. */
#include "kernels/activation.h"

#include "kernels/fast_exp.h"
#include "kernels/threads.h"

#include <math.h>

#define ACT_PAR_MIN 65536

void silu_forward(size_t n, const float *x, float *y) {
#pragma omp parallel for simd num_threads(kernels_threads()) schedule(static) if (n >= ACT_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = v / (1.0f + exp_fast(-v));
    }
}

/* silu'(x) = s (1 + x (1 - s)) with s = sigmoid(x). */
void silu_backward(size_t n, const float *x, const float *dy, float *dx) {
#pragma omp parallel for simd num_threads(kernels_threads()) schedule(static) if (n >= ACT_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float s = 1.0f / (1.0f + exp_fast(-v));
        dx[i] += dy[i] * s * (1.0f + v * (1.0f - s));
    }
}
