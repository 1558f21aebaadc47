// Page-locked host memory and uploads on a copy stream for the CUDA backend
// (backend_host_alloc, backend_to_device_async): the trainer's batch ring copies the next batch
// while the compute stream runs the current step.
#include "kernels/cuda/ops.cuh"

static void *cu_host_alloc(backend *be, size_t bytes) {
    cuda_ctx *c = cuda_enter(be, "host_alloc");
    void *p = NULL;
    cudaError_t e = cudaMallocHost(&p, bytes ? bytes : 1);
    if (e != cudaSuccess)
        FATAL("CUDA backend %s: cudaMallocHost of %zu bytes failed: %s", c->name, bytes,
              cudaGetErrorString(e));
    c->op = NULL;
    return p;
}

static void cu_host_free(backend *be, void *p) {
    cuda_ctx *c = cuda_enter(be, "host_free");
    CUDA_CHECK(cudaFreeHost(p));
    c->op = NULL;
}

static void cu_to_device_async(backend *be, void *dst, const void *src, size_t bytes,
                               backend_event *after, backend_event *done) {
    cuda_ctx *c = cuda_enter(be, "to_device_async");
    if (!c->copy_stream)
        CUDA_CHECK(cudaStreamCreateWithFlags(&c->copy_stream, cudaStreamNonBlocking));
    if (after) CUDA_CHECK(cudaStreamWaitEvent(c->copy_stream, (cudaEvent_t)after->handle, 0));
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->copy_stream));
    if (done) CUDA_CHECK(cudaEventRecord((cudaEvent_t)done->handle, c->copy_stream));
    cuda_leave(c);
}

void cuda_fill_transfer(backend_i *f) {
    f->host_alloc = cu_host_alloc;
    f->host_free = cu_host_free;
    f->to_device_async = cu_to_device_async;
}

void cuda_release_transfer(cuda_ctx *c) {
    if (c->copy_stream) CUDA_CHECK(cudaStreamDestroy(c->copy_stream));
    c->copy_stream = NULL;
}
