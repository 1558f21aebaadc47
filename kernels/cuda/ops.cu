// The CUDA backend's op table: every family's entries. An entry left NULL is reported "not
// supported" by backend_supports and the op harness.
#include "kernels/cuda/ops.cuh"

void cuda_ops_fill(backend_i *f) {
    (void)f;
}

void cuda_ops_release(cuda_ctx *c) {
    (void)c;
}
