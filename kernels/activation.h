/* SiLU(x) = x * sigmoid(x), elementwise. y may alias x in forward.
 * Backward accumulates: dx += dy * silu'(x), where x is the forward input. */
#pragma once
#include <stddef.h>

void silu_forward(size_t n, const float *x, float *y);
void silu_backward(size_t n, const float *x, const float *dy, float *dx);
