/* Max pooling, NHWC. Only in-bounds taps compete (PyTorch's padding never wins); ties keep the
 * first tap in (ky, kx) order and a NaN wins, as PyTorch's CPU kernel does. */
#include "kernels/pool.h"

#include "common/log.h"
#include "kernels/threads.h"

#include <math.h>

#define POOL_PAR_MIN 16384

/* One tap of the window over all channels: take x when larger (or NaN); branch-free, vectorised. */
static void tap_update(int c, const float *restrict xi, int32_t base, float *restrict y,
                       int32_t *restrict am) {
#pragma omp simd
    for (int ch = 0; ch < c; ch++) {
        float v = xi[ch];
        int take = v > y[ch] || v != v;
        y[ch] = take ? v : y[ch];
        am[ch] = take ? base + ch : am[ch];
    }
}

void maxpool_forward(int n, int h, int w, int c, int k, int stride, int pad, const float *x,
                     float *y, int32_t *argmax) {
    if (k < 1 || stride < 1 || pad < 0 || 2 * pad > k)
        FATAL("maxpool: bad k=%d stride=%d pad=%d (need pad <= k/2)", k, stride, pad);
    if ((double)n * h * w * c > INT32_MAX)
        FATAL("maxpool: input of %d x %d x %d x %d overflows the int32 argmax", n, h, w, c);
    int oh = (h + 2 * pad - k) / stride + 1, ow = (w + 2 * pad - k) / stride + 1;
    long long work = (long long)n * oh * ow * c * k * k;
#pragma omp parallel for num_threads(kernels_threads()) schedule(static) if (work >= POOL_PAR_MIN)
    for (int row = 0; row < n * oh; row++) {
        int b = row / oh, oy = row % oh;
        int y0 = oy * stride - pad, y1 = y0 + k;
        if (y0 < 0) y0 = 0;
        if (y1 > h) y1 = h;
        for (int ox = 0; ox < ow; ox++) {
            int x0 = ox * stride - pad, x1 = x0 + k;
            if (x0 < 0) x0 = 0;
            if (x1 > w) x1 = w;
            size_t o = ((size_t)row * ow + ox) * c;
            float *yo = y + o;
            int32_t *ao = argmax + o;
            /* start from the first in-bounds tap (pad <= k/2 guarantees there is one) */
            int32_t first = (int32_t)((((size_t)b * h + y0) * w + x0) * c);
            for (int ch = 0; ch < c; ch++) {
                yo[ch] = x[first + ch];
                ao[ch] = first + ch;
            }
            for (int iy = y0; iy < y1; iy++)
                for (int ix = x0; ix < x1; ix++) {
                    int32_t base = (int32_t)((((size_t)b * h + iy) * w + ix) * c);
                    tap_update(c, x + base, base, yo, ao);
                }
        }
    }
}

/* An argmax of image b, channel ch always points into image b, channel ch, so splitting the work
 * by (image, channel block) needs no atomics and adds in a fixed order. */
#define POOL_CBLOCK 32

void maxpool_backward(int n, int oh, int ow, int c, const float *dy, const int32_t *argmax,
                      float *dx) {
    int ncb = (c + POOL_CBLOCK - 1) / POOL_CBLOCK;
    long long work = (long long)n * oh * ow * c;
#pragma omp parallel for num_threads(kernels_threads()) schedule(static)                           \
    collapse(2) if (work >= POOL_PAR_MIN)
    for (int b = 0; b < n; b++)
        for (int cb = 0; cb < ncb; cb++) {
            int c0 = cb * POOL_CBLOCK, c1 = c0 + POOL_CBLOCK < c ? c0 + POOL_CBLOCK : c;
            size_t o0 = (size_t)b * oh * ow;
            for (size_t p = o0; p < o0 + (size_t)oh * ow; p++)
                for (int ch = c0; ch < c1; ch++) dx[argmax[p * c + ch]] += dy[p * c + ch];
        }
}
