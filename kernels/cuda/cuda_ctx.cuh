// Internal to the CUDA backend (kernels/backend_cuda.cu, kernels/cuda/*.cu): the backend's
// context, the checked-call macros and launch helpers. Callers use kernels/backend.h.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "common/log.h"
#include "kernels/backend_cuda.h"
#include "kernels/backend_impl.h"
}

struct conv_plan;       // kernels/cuda/conv2d_cudnn.cu: the cached algorithms of one shape
struct optim_tables;    // kernels/cuda/optim.cu: the optimizer's tables on the device
struct detloss_scratch; // kernels/cuda/detloss.cu: the loss's device scratch
struct nms_scratch;     // kernels/cuda/nms.cu: validation NMS / top-k device scratch

struct cuda_ctx {
    backend_cuda_opts opts;
    char name[16]; // "cuda:0"
    int sm_count;
    cudaStream_t stream;
    cudnnHandle_t cudnn;
    cublasHandle_t cublas;
    const char *op; // the op running now, for messages
    // One scratch region for the ops' temporaries (reduction partials, pointer arrays, bf16
    // copies), reused by every op in stream order; grown (after a synchronisation) when an op
    // needs more.
    void *scratch;
    size_t scratch_bytes;
    // The shared cuDNN workspace (the largest that a chosen algorithm needs).
    void *ws;
    size_t ws_bytes;
    conv_plan *plans; // a list: one per conv shape seen
    optim_tables *optim;
    double *gnorm; // device: the last clip_grad_norm's total norm (stays on the device)
    detloss_scratch *loss;
    nms_scratch *nms;
    cudaStream_t copy_stream; // uploads that overlap the compute stream (transfer.cu), lazily made
};

static inline cuda_ctx *cuda_ctx_of(const backend *be) {
    return (cuda_ctx *)be->ctx;
}

// ---- checked calls: file:line, the call, the error, the backend and the op -------------------

[[noreturn]] void cuda_fail(const cuda_ctx *c, const char *file, int line, const char *call,
                            const char *what);

static inline void cuda_check_at(const cuda_ctx *c, cudaError_t e, const char *file, int line,
                                 const char *call) {
    if (e != cudaSuccess) cuda_fail(c, file, line, call, cudaGetErrorString(e));
}
static inline void cudnn_check_at(const cuda_ctx *c, cudnnStatus_t s, const char *file, int line,
                                  const char *call) {
    if (s != CUDNN_STATUS_SUCCESS) cuda_fail(c, file, line, call, cudnnGetErrorString(s));
}
const char *cublas_status_name(cublasStatus_t s);
static inline void cublas_check_at(const cuda_ctx *c, cublasStatus_t s, const char *file, int line,
                                   const char *call) {
    if (s != CUBLAS_STATUS_SUCCESS) cuda_fail(c, file, line, call, cublas_status_name(s));
}

// Each needs a `cuda_ctx *c` in scope (the backend whose op is running).
#define CUDA_CHECK(call) cuda_check_at(c, (call), __FILE__, __LINE__, #call)
#define CUDNN_CHECK(call) cudnn_check_at(c, (call), __FILE__, __LINE__, #call)
#define CUBLAS_CHECK(call) cublas_check_at(c, (call), __FILE__, __LINE__, #call)
// After a kernel launch: a bad configuration is reported here, a fault inside the kernel by a
// later call (or at once with sync_each_op).
#define CUDA_LAUNCHED(kernel_name)                                                                 \
    cuda_check_at(c, cudaGetLastError(), __FILE__, __LINE__, kernel_name)

// ---- entering and leaving an op ----------------------------------------------------------------

// Makes the backend's device current on this thread and names the op for messages.
cuda_ctx *cuda_enter(backend *be, const char *op);
// With sync_each_op: waits for the op and reports a failure as this op's.
void cuda_leave(cuda_ctx *c);

// At least `bytes` of scratch device memory, valid until the next call (stream-ordered reuse).
void *cuda_scratch(cuda_ctx *c, size_t bytes);

// A device buffer an op family keeps between calls (detloss.cu, nms.cu).
struct cuda_buf {
    void *p;
    size_t cap;
};
// At least `bytes` of b (16 when 0); a larger one replaces it once the stream has finished with
// the old one, whose contents are not kept.
void *cuda_buf_need(cuda_ctx *c, cuda_buf *b, size_t bytes);
void cuda_buf_free(cuda_ctx *c, cuda_buf *b);

// ---- launch geometry -------------------------------------------------------------------------

enum { CUDA_BLOCK = 256 };

// Blocks for a grid-stride loop over n items: enough to fill the device, never more than needed.
static inline unsigned cuda_blocks(const cuda_ctx *c, size_t n, int block = CUDA_BLOCK) {
    size_t need = (n + (size_t)block - 1) / (size_t)block, cap = (size_t)c->sm_count * 32;
    if (need < 1) need = 1;
    return (unsigned)(need < cap ? need : cap);
}

#define GRID_STRIDE(i, n)                                                                          \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                        \
         i += (size_t)gridDim.x * blockDim.x)
