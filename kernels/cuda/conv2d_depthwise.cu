// Depthwise convolutions on the GPU, our kernels (the other choice is cuDNN with a group count:
// backend_cuda_opts.depthwise; conv2d_cudnn.cu routes each direction). Twin:
// kernels/conv2d_depthwise.c; per-element math in kernels/cuda/conv2d_depthwise_hd.h. fp32 in every
// precision (memory-bound, no tensor cores). The filter gradient is summed in double over fixed
// chunks of output pixels, chunks added in order: deterministic.
#include "kernels/cuda/conv2d_depthwise_hd.h"
#include "kernels/cuda/conv2d_internal.cuh"

enum { DW_CH_BLOCK = 64 };

__global__ void dw_fwd_k(conv2d_desc d, size_t total, const float *x, const float *w,
                         const float *bias, float *y) {
    GRID_STRIDE(o, total) y[o] = dw_fwd_1(&d, x, w, bias, o);
}
__global__ void dw_bwd_data_k(conv2d_desc d, size_t total, const float *w, const float *dy,
                              float *dx) {
    GRID_STRIDE(i, total) dx[i] += dw_bwd_data_1(&d, w, dy, i);
}
// part[k][t][ch], t in [0, kh kw]: chunk k's sums (see dw_filter_sums)
__global__ void dw_filter_part_k(conv2d_desc d, size_t pixels, size_t per_chunk, const float *x,
                                 const float *dy, double *part) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x, k = blockIdx.y, KK = d.kh * d.kw;
    if (ch >= d.cin) return;
    size_t p0 = (size_t)k * per_chunk, p1 = p0 + per_chunk < pixels ? p0 + per_chunk : pixels;
    double acc[DW_MAX_TAPS + 1];
    dw_filter_sums(&d, x, dy, ch, p0, p1, acc);
    for (int t = 0; t <= KK; t++) part[((size_t)k * (KK + 1) + t) * d.cin + ch] = acc[t];
}
__global__ void dw_filter_finish_k(conv2d_desc d, int chunks, const double *part, float *dw,
                                   float *dbias) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x, KK = d.kh * d.kw;
    if (ch >= d.cin) return;
    for (int t = 0; t <= KK; t++) {
        double s = 0;
        for (int k = 0; k < chunks; k++) s += part[((size_t)k * (KK + 1) + t) * d.cin + ch];
        if (t < KK)
            dw[(size_t)ch * KK + t] += (float)s;
        else if (dbias)
            dbias[ch] += (float)s;
    }
}

bool cuda_dw_fits(const conv2d_desc *d) {
    return dw_is_depthwise(d) && d->kh * d->kw <= DW_MAX_TAPS;
}

void cuda_dw_forward(cuda_ctx *c, const conv2d_desc *d, const float *x, const float *w,
                     const float *bias, float *y) {
    size_t total = (size_t)d->n * d->oh * d->ow * d->cout;
    dw_fwd_k<<<cuda_blocks(c, total), CUDA_BLOCK, 0, c->stream>>>(*d, total, x, w, bias, y);
    CUDA_LAUNCHED("dw_fwd_k");
}

void cuda_dw_backward_data(cuda_ctx *c, const conv2d_desc *d, const float *w, const float *dy,
                           float *dx) {
    size_t total = (size_t)d->n * d->h * d->w * d->cin;
    dw_bwd_data_k<<<cuda_blocks(c, total), CUDA_BLOCK, 0, c->stream>>>(*d, total, w, dy, dx);
    CUDA_LAUNCHED("dw_bwd_data_k");
}

void cuda_dw_backward_filter(cuda_ctx *c, const conv2d_desc *d, const float *x, const float *dy,
                             float *dw, float *dbias) {
    size_t pixels = (size_t)d->n * d->oh * d->ow;
    int tiles = (d->cin + DW_CH_BLOCK - 1) / DW_CH_BLOCK, KK = d->kh * d->kw;
    long chunks = (long)c->sm_count * 16 / tiles, by_pixels = (long)((pixels + 63) / 64);
    if (chunks > by_pixels) chunks = by_pixels;
    if (chunks < 1) chunks = 1;
    size_t per_chunk = (pixels + (size_t)chunks - 1) / (size_t)chunks;
    chunks = (long)((pixels + per_chunk - 1) / per_chunk);
    double *part = (double *)cuda_scratch(c, (size_t)chunks * (KK + 1) * d->cin * sizeof(double));
    dw_filter_part_k<<<dim3((unsigned)tiles, (unsigned)chunks), DW_CH_BLOCK, 0, c->stream>>>(
        *d, pixels, per_chunk, x, dy, part);
    CUDA_LAUNCHED("dw_filter_part_k");
    dw_filter_finish_k<<<(unsigned)tiles, DW_CH_BLOCK, 0, c->stream>>>(*d, (int)chunks, part, dw,
                                                                       dbias);
    CUDA_LAUNCHED("dw_filter_finish_k");
}
