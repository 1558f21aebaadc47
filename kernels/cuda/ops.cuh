// Internal to the CUDA backend: each op family (kernels/cuda/<family>.cu) fills its entries of
// the function table, and releases what it kept in the context.
#pragma once
#include "kernels/cuda/cuda_ctx.cuh"

// every family below; the bf16 graph's ops (to_bf16, the bf16 convolutions, the BN + SiLU ops
// writing bf16 copies) only at BACKEND_PRECISION_BF16, whose cuDNN plans are bf16
void cuda_ops_fill(backend_i *f, backend_precision p);
void cuda_ops_release(cuda_ctx *c); // what the families cached (conv plans, optimizer tables)

void cuda_fill_elementwise(backend_i *f); // elementwise.cu
void cuda_fill_layout(backend_i *f);      // layout.cu
void cuda_fill_pool(backend_i *f);        // pool.cu
void cuda_fill_batchnorm(backend_i *f);   // batchnorm.cu
void cuda_fill_optim(backend_i *f);       // optim.cu
void cuda_fill_dfl(backend_i *f);         // dfl.cu
void cuda_fill_attention(backend_i *f);   // attention.cu
void cuda_fill_conv(backend_i *f);        // conv2d_cudnn.cu (+ conv2d_depthwise.cu)
void cuda_fill_detloss(backend_i *f);     // detloss.cu
void cuda_release_detloss(cuda_ctx *c);
void cuda_fill_nms(backend_i *f); // nms.cu
void cuda_release_nms(cuda_ctx *c);
void cuda_fill_transfer(backend_i *f); // transfer.cu: page-locked memory, the copy stream
void cuda_release_transfer(cuda_ctx *c);
void cuda_release_conv(cuda_ctx *c);
void cuda_release_optim(cuda_ctx *c);

// y[i] = bf16_from_float(x[i]) (kernels/bf16.h: the CPU's bits), on the stream.
void cuda_to_bf16(cuda_ctx *c, size_t n, const float *x, bf16 *y);
// y += x over n floats, on the stream (for other families' use).
void cuda_accumulate(cuda_ctx *c, size_t n, const float *x, float *y);
// acc[ch] += sum over the m rows of a[r][ch] (deterministic; batchnorm.cu's sums).
void cuda_channel_sum_add(cuda_ctx *c, int m, int ch, const float *a, float *acc);
// Row-major C[m][n] = alpha op(A) op(B) + beta C on cuBLAS (fp32).
void cuda_gemm_rm(cuda_ctx *c, bool ta, bool tb, int m, int n, int k, float alpha, const float *a,
                  int lda, const float *b, int ldb, float beta, float *cm, int ldc);
