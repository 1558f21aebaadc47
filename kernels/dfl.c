/* DFL decode: per side, softmax over reg_max bins, then the expected bin index. */
#include "kernels/dfl.h"

#include "kernels/fast_exp.h"
#include "kernels/threads.h"

#include <math.h>
#include <stddef.h>

#define DFL_PAR_MIN 512

/* p[b] = softmax(l)[b] (p has reg_max entries); returns sum_b b p[b]. */
static float side_softmax(int reg_max, const float *l, float *p) {
    float mx = l[0];
    for (int b = 1; b < reg_max; b++) mx = l[b] > mx ? l[b] : mx;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int b = 0; b < reg_max; b++) {
        p[b] = exp_fast(l[b] - mx);
        sum += p[b];
    }
    float inv = 1.0f / sum, e = 0.0f;
#pragma omp simd reduction(+ : e)
    for (int b = 0; b < reg_max; b++) {
        p[b] *= inv;
        e += (float)b * p[b];
    }
    return e;
}

void dfl_forward(int rows, int reg_max, const float *logits, int ld, float *dist) {
#pragma omp parallel num_threads(kernels_threads()) if (rows >= DFL_PAR_MIN)
    {
        float p[reg_max];
#pragma omp for schedule(static)
        for (int r = 0; r < rows; r++)
            for (int s = 0; s < 4; s++)
                dist[(size_t)r * 4 + s] =
                    side_softmax(reg_max, logits + (size_t)r * ld + s * reg_max, p);
    }
}

/* d dist / d l[b] = p[b] (b - dist). */
void dfl_backward(int rows, int reg_max, const float *logits, int ld, const float *ddist,
                  float *dlogits) {
#pragma omp parallel num_threads(kernels_threads()) if (rows >= DFL_PAR_MIN)
    {
        float p[reg_max];
#pragma omp for schedule(static)
        for (int r = 0; r < rows; r++)
            for (int s = 0; s < 4; s++) {
                const float *l = logits + (size_t)r * ld + s * reg_max;
                float *dl = dlogits + (size_t)r * ld + s * reg_max;
                float e = side_softmax(reg_max, l, p), g = ddist[(size_t)r * 4 + s];
                for (int b = 0; b < reg_max; b++) dl[b] += g * p[b] * ((float)b - e);
            }
    }
}
