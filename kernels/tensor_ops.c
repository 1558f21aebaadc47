/* Layout ops on NHWC tensors and elementwise helpers: plain copies and adds, parallel over rows.
 * Each output element is written by exactly one iteration, so results do not depend on the thread
 * count. */
#include "kernels/tensor_ops.h"

#include "kernels/threads.h"

#include <string.h>

/* Elements below which a parallel region is not worth starting. */
#define OPS_PAR_MIN 65536

void add_forward(size_t n, const float *a, const float *b, float *y) {
#pragma omp parallel for num_threads(kernels_threads()) schedule(static) if (n >= OPS_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void accumulate(size_t n, const float *x, float *y) {
#pragma omp parallel for num_threads(kernels_threads()) schedule(static) if (n >= OPS_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

void scale_inplace(size_t n, float s, float *y) {
#pragma omp parallel for num_threads(kernels_threads()) schedule(static) if (n >= OPS_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] *= s;
}

void normalize_u8(size_t n, const uint8_t *x, float s, float *y) {
#pragma omp parallel for num_threads(kernels_threads()) schedule(static) if (n >= OPS_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = x[i] * s;
}

static int channel_total(int k, const int *cs) {
    int t = 0;
    for (int i = 0; i < k; i++) t += cs[i];
    return t;
}

void concat_forward(size_t m, int k, const float *const *xs, const int *cs, float *y) {
    int ct = channel_total(k, cs);
#pragma omp parallel for num_threads(kernels_threads()) schedule(static) if (m * ct >= OPS_PAR_MIN)
    for (size_t r = 0; r < m; r++) {
        float *yr = y + r * ct;
        for (int i = 0; i < k; i++) {
            memcpy(yr, xs[i] + r * cs[i], sizeof(float) * cs[i]);
            yr += cs[i];
        }
    }
}

void concat_backward(size_t m, int k, const int *cs, const float *dy, float *const *dxs) {
    int ct = channel_total(k, cs);
#pragma omp parallel for num_threads(kernels_threads()) schedule(static) if (m * ct >= OPS_PAR_MIN)
    for (size_t r = 0; r < m; r++) {
        const float *dyr = dy + r * ct;
        for (int i = 0; i < k; i++) {
            if (dxs[i]) {
                float *dxr = dxs[i] + r * cs[i];
                for (int j = 0; j < cs[i]; j++) dxr[j] += dyr[j];
            }
            dyr += cs[i];
        }
    }
}

void slice_channels_forward(size_t m, int cx, int off, int c, const float *x, float *y) {
#pragma omp parallel for num_threads(kernels_threads()) schedule(static) if (m * c >= OPS_PAR_MIN)
    for (size_t r = 0; r < m; r++) memcpy(y + r * c, x + r * cx + off, sizeof(float) * c);
}

void slice_channels_backward(size_t m, int cx, int off, int c, const float *dy, float *dx) {
#pragma omp parallel for num_threads(kernels_threads()) schedule(static) if (m * c >= OPS_PAR_MIN)
    for (size_t r = 0; r < m; r++) {
        const float *dyr = dy + r * c;
        float *dxr = dx + r * cx + off;
        for (int j = 0; j < c; j++) dxr[j] += dyr[j];
    }
}

/* One iteration per output row (image b, output row oy): both output pixels of an input pixel. */
void upsample2x_forward(int n, int h, int w, int c, const float *x, float *y) {
    size_t total = (size_t)n * h * w * c * 4;
#pragma omp parallel for num_threads(kernels_threads()) schedule(static) if (total >= OPS_PAR_MIN)
    for (int row = 0; row < n * 2 * h; row++) {
        int b = row / (2 * h), oy = row % (2 * h);
        const float *xr = x + ((size_t)b * h + oy / 2) * w * c;
        float *yr = y + (size_t)row * 2 * w * c;
        for (int ix = 0; ix < w; ix++) {
            memcpy(yr + (size_t)(2 * ix) * c, xr + (size_t)ix * c, sizeof(float) * c);
            memcpy(yr + (size_t)(2 * ix + 1) * c, xr + (size_t)ix * c, sizeof(float) * c);
        }
    }
}

/* One iteration per input row: dx[b][iy][ix] += the 2x2 block of dy it was copied to. */
void upsample2x_backward(int n, int h, int w, int c, const float *dy, float *dx) {
    size_t total = (size_t)n * h * w * c * 4;
    size_t orow = (size_t)2 * w * c; /* floats per output row */
#pragma omp parallel for num_threads(kernels_threads()) schedule(static) if (total >= OPS_PAR_MIN)
    for (int row = 0; row < n * h; row++) {
        const float *d0 = dy + (size_t)row * 2 * orow, *d1 = d0 + orow;
        float *dxr = dx + (size_t)row * w * c;
        for (int ix = 0; ix < w; ix++) {
            const float *a = d0 + (size_t)2 * ix * c, *b = d1 + (size_t)2 * ix * c;
            float *o = dxr + (size_t)ix * c;
            for (int ch = 0; ch < c; ch++) o[ch] += (a[ch] + a[c + ch]) + (b[ch] + b[c + ch]);
        }
    }
}
