// The CUDA backend's op table: every family's entries. An entry left NULL is reported "not
// supported" by backend_supports and the op harness.
#include "kernels/cuda/ops.cuh"

void cuda_ops_fill(backend_i *f) {
    cuda_fill_elementwise(f);
    cuda_fill_layout(f);
    cuda_fill_pool(f);
    cuda_fill_batchnorm(f);
    cuda_fill_optim(f);
    cuda_fill_dfl(f);
    cuda_fill_attention(f);
    cuda_fill_conv(f);
    cuda_fill_detloss(f);
    cuda_fill_nms(f);
    cuda_fill_transfer(f);
}

void cuda_ops_release(cuda_ctx *c) {
    cuda_release_optim(c);
    cuda_release_conv(c);
    cuda_release_detloss(c);
    cuda_release_nms(c);
    cuda_release_transfer(c);
}
