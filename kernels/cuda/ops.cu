// The CUDA backend's op table: every family's entries. An entry left NULL is reported "not
// supported" by backend_supports and the op harness.
#include "kernels/cuda/ops.cuh"

void cuda_ops_fill(backend_i *f, backend_precision p) {
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
    if (p != BACKEND_PRECISION_BF16) {
        // The bf16 convolutions run on the plans of the backend's precision (bf16 descriptors
        // only at BF16), and the other bf16 ops serve only them: without them a CONV2D_BF16
        // graph is not offered here (backend_supports says no), and the fp32 ops convert nothing.
        f->to_bf16 = NULL;
        f->conv2d_forward_bf16 = NULL;
        f->conv2d_backward_bf16 = NULL;
        f->batchnorm_silu_forward_train_bf16 = NULL;
        f->batchnorm_silu_forward_eval_bf16 = NULL;
        f->batchnorm_silu_backward_set_bf16 = NULL;
    }
}

void cuda_ops_release(cuda_ctx *c) {
    cuda_release_optim(c);
    cuda_release_conv(c);
    cuda_release_detloss(c);
    cuda_release_nms(c);
    cuda_release_transfer(c);
}
