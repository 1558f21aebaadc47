// Internal to the CUDA backend's convolutions: conv2d_cudnn.cu (the backend's conv ops, cuDNN)
// and conv2d_depthwise.cu (our depthwise kernels).
#pragma once
#include "kernels/cuda/ops.cuh"

// Whether our depthwise kernels can run this shape (depthwise, window up to DW_MAX_TAPS); which
// of them run it is backend_cuda_opts.depthwise's choice (conv2d_cudnn.cu).
bool cuda_dw_fits(const conv2d_desc *d);
void cuda_dw_forward(cuda_ctx *c, const conv2d_desc *d, const float *x, const float *w,
                     const float *bias, float *y);
void cuda_dw_backward_data(cuda_ctx *c, const conv2d_desc *d, const float *w, const float *dy,
                           float *dx);
void cuda_dw_backward_filter(cuda_ctx *c, const conv2d_desc *d, const float *x, const float *dy,
                             float *dw, float *dbias);
