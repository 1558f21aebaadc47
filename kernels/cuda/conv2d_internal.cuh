// Internal to the CUDA backend's convolutions: conv2d_cudnn.cu (the backend's conv ops, cuDNN)
// and conv2d_depthwise.cu (our depthwise kernels).
#pragma once
#include "kernels/cuda/ops.cuh"

// Whether this shape runs on our depthwise kernels (by the backend's choice).
bool cuda_dw_own(const cuda_ctx *c, const conv2d_desc *d);
void cuda_dw_forward(cuda_ctx *c, const conv2d_desc *d, const float *x, const float *w,
                     const float *bias, float *y);
void cuda_dw_backward_data(cuda_ctx *c, const conv2d_desc *d, const float *w, const float *dy,
                           float *dx);
void cuda_dw_backward_filter(cuda_ctx *c, const conv2d_desc *d, const float *x, const float *dy,
                             float *dw, float *dbias);
